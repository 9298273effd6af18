//! A core-metadata `Device` DTO as this service serves it: what its
//! `protocols.lorawan` properties say (never a key: keys arrive as
//! secrets), checked the way device validation refuses what we could never
//! serve. Pure, so validation over the bus and the system events that add
//! or change a device read DTOs the same way.
//!
//! Properties (names as EdgeX UIs write them, matched case-insensitively):
//! `DevEUI` (required), `Activation` (`OTAA` or `ABP`, default `ABP`),
//! `DevAddr` (ABP, optional: it may come with the keys), `JoinEUI` (OTAA,
//! required), `MacVersion` (`1.0.2`, `1.0.3`, `1.0.4`), `Region` (e.g.
//! `EU868`; default the site's), `FcntPolicy` (`strict`, `reset-tolerant`),
//! `Codec` (`cayenne-lpp`, `layout`, `raw`, `raw-hex`, `javascript`),
//! `UplinkInterval` (e.g. `10m`), `SecretName` (the secret carrying its keys;
//! default the device's name).

use std::time::Duration;

use serde_json::Value;

use crate::codec::CodecKind;
use crate::devices::{Activation, AdminState, DeviceEntry};
use crate::lorawan::region::{MacVersionName, RegionName};
use crate::lorawan::{DevAddr, Eui64, FcntPolicy};

/// A device core-metadata holds for us, ready to serve once its keys are in.
#[derive(Debug, Clone)]
pub struct EdgexDevice {
    pub entry: DeviceEntry,
    /// The secret its keys arrive in.
    pub secret_name: String,
    /// How often it is expected to send, if said.
    pub uplink_interval: Option<Duration>,
}

/// Why a DTO cannot be served (the validation answer's message).
pub type Refusal = String;

fn property<'a>(lorawan: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    lorawan
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn parse_enum<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(Value::String(text.to_string()))
        .or_else(|_| serde_json::from_value(Value::String(text.to_ascii_lowercase())))
        .or_else(|_| serde_json::from_value(Value::String(text.to_ascii_uppercase())))
        .ok()
}

/// Read `dto` (a `Device`), refusing with the reason what we could never
/// serve. `has_profile` says whether a profile of that name is loaded.
pub fn read(dto: &Value, has_profile: impl Fn(&str) -> bool) -> Result<EdgexDevice, Refusal> {
    let name = dto["name"].as_str().unwrap_or_default().trim();
    if name.is_empty() {
        return Err("the device has no name".into());
    }
    let profile = dto["profileName"].as_str().unwrap_or_default();
    if !has_profile(profile) {
        return Err(format!(
            "{name:?}: no profile {profile:?} in this service's ProfilesDir"
        ));
    }
    let Some(lorawan) = dto["protocols"]
        .as_object()
        .and_then(|p| p.iter().find(|(k, _)| k.eq_ignore_ascii_case("lorawan")))
        .and_then(|(_, v)| v.as_object())
    else {
        return Err(format!("{name:?} has no `lorawan` protocol"));
    };
    let get = |k: &str| property(lorawan, k);
    let bad = |what: &str, v: &str| format!("{name:?}: {what} {v:?} is not valid");
    let dev_eui_text = get("DevEUI").ok_or_else(|| format!("{name:?}: DevEUI is missing"))?;
    let dev_eui = Eui64::from_hex(dev_eui_text).map_err(|_| bad("DevEUI", dev_eui_text))?;
    let activation = match get("Activation") {
        None => Activation::Abp,
        Some(a) if a.eq_ignore_ascii_case("otaa") => Activation::Otaa,
        Some(a) if a.eq_ignore_ascii_case("abp") => Activation::Abp,
        Some(a) => return Err(bad("Activation", a)),
    };
    let dev_addr = get("DevAddr")
        .map(|a| DevAddr::from_hex(a).map_err(|_| bad("DevAddr", a)))
        .transpose()?;
    let join_eui = get("JoinEUI")
        .map(|j| Eui64::from_hex(j).map_err(|_| bad("JoinEUI", j)))
        .transpose()?;
    if activation == Activation::Otaa && join_eui.is_none() {
        return Err(format!("{name:?}: an OTAA device needs its JoinEUI"));
    }
    if activation == Activation::Otaa && dev_addr.is_some() {
        return Err(format!(
            "{name:?}: an OTAA device gets its DevAddr by joining: remove DevAddr"
        ));
    }
    let region = get("Region")
        .map(|r| parse_enum::<RegionName>(r).ok_or_else(|| bad("Region", r)))
        .transpose()?;
    let mac_version = get("MacVersion")
        .map(|v| parse_enum::<MacVersionName>(v).ok_or_else(|| bad("MacVersion", v)))
        .transpose()?
        .unwrap_or_default();
    let fcnt_policy = get("FcntPolicy")
        .map(|v| parse_enum::<FcntPolicy>(v).ok_or_else(|| bad("FcntPolicy", v)))
        .transpose()?
        .unwrap_or_default();
    let codec = get("Codec")
        .map(|v| parse_enum::<CodecKind>(v).ok_or_else(|| bad("Codec", v)))
        .transpose()?
        .unwrap_or_default();
    let uplink_interval = get("UplinkInterval")
        .map(|v| humantime::parse_duration(v).map_err(|_| bad("UplinkInterval", v)))
        .transpose()?;
    let admin_state = match dto["adminState"].as_str() {
        Some("LOCKED") => AdminState::Locked,
        _ => AdminState::Unlocked,
    };
    let entry = DeviceEntry {
        dev_addr,
        activation,
        join_eui,
        region,
        mac_version,
        fcnt_policy,
        codec,
        admin_state,
        ..DeviceEntry::new(name, dev_eui, profile)
    };
    Ok(EdgexDevice {
        secret_name: get("SecretName").unwrap_or(name).to_string(),
        entry,
        uplink_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dto(lorawan: Value) -> Value {
        json!({"name": "field-7", "profileName": "Dragino-LPP-Mote", "adminState": "UNLOCKED",
               "serviceName": "device-lorawan", "protocols": {"lorawan": lorawan}})
    }

    fn known(p: &str) -> bool {
        p == "Dragino-LPP-Mote"
    }

    #[test]
    fn an_otaa_device_reads_with_its_properties() {
        let d = read(
            &dto(json!({"DevEUI": "A840410000000001", "activation": "otaa", "JoinEUI": "0000000000000001",
                        "Region": "us915", "MacVersion": "1.0.4", "UplinkInterval": "15m",
                        "SecretName": "field-7-keys"})),
            known,
        )
        .unwrap();
        assert_eq!(d.entry.activation, Activation::Otaa);
        assert_eq!(d.entry.dev_eui.to_string(), "a840410000000001");
        assert_eq!(d.entry.region, Some(RegionName::US915));
        assert_eq!(d.entry.mac_version, MacVersionName::V1_0_4);
        assert_eq!(d.uplink_interval, Some(Duration::from_secs(900)));
        assert_eq!(d.secret_name, "field-7-keys");
    }

    #[test]
    fn what_we_could_never_serve_is_refused_with_the_reason() {
        for (lorawan, says) in [
            (json!({}), "DevEUI is missing"),
            (json!({"DevEUI": "xyz"}), "DevEUI \"xyz\""),
            (
                json!({"DevEUI": "a840410000000001", "DevAddr": "123"}),
                "DevAddr",
            ),
            (
                json!({"DevEUI": "a840410000000001", "Region": "MARS433"}),
                "Region",
            ),
            (
                json!({"DevEUI": "a840410000000001", "Activation": "OTAA"}),
                "JoinEUI",
            ),
            (
                json!({"DevEUI": "a840410000000001", "Codec": "xml"}),
                "Codec",
            ),
        ] {
            let e = read(&dto(lorawan.clone()), known).unwrap_err();
            assert!(e.contains(says), "{lorawan}: {e}");
        }
        let mut other = dto(json!({"DevEUI": "a840410000000001"}));
        other["profileName"] = "Unknown".into();
        assert!(read(&other, known).unwrap_err().contains("no profile"));
    }
}
