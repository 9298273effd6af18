//! The devices file: each device's identity, activation (ABP session or
//! OTAA root keys), profile, codec and region, read with errors that name
//! the file and the device and never quote a key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use super::rx_windows::RxWindows;
use crate::codec::{CodecError, CodecKind};
use crate::lorawan::region::{MacVersionName, RegionName};
use crate::lorawan::{AesKey, DevAddr, Eui64, FcntPolicy};

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("cannot read devices file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("devices file {path}: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("device {device}: unknown profile {profile}")]
    UnknownProfile { device: String, profile: String },
    #[error("device {device}: {source}")]
    Codec { device: String, source: CodecError },
    #[error("device {0}: give devAddr, nwkSKey and appSKey together, or none of them")]
    PartialSession(String),
    #[error("device {0} is defined twice (by name or DevEUI)")]
    Duplicate(String),
    #[error("devices file {path}: the devices {first} and {second} {what}: each device needs its own name and DevEUI")]
    DuplicateInFile {
        path: PathBuf,
        first: String,
        second: String,
        /// "share the DevEUI 70b3…" or "share the name"
        what: String,
    },
    #[error("device {device}: {message}")]
    Activation {
        device: String,
        message: &'static str,
    },
}

/// How a device gets its session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// By personalization: the session is in the entry, or arrives through
    /// `POST /api/v3/secret`.
    #[default]
    Abp,
    /// Over the air: the device joins with its AppKey, and this service is
    /// its join server.
    Otaa,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesFile {
    devices: Vec<DeviceEntry>,
}

/// One device as written in the devices file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceEntry {
    pub name: String,
    #[serde(deserialize_with = "eui")]
    pub dev_eui: Eui64,
    /// DevAddr and session keys: needed to decode gateway streams; absent
    /// for devices only heard through a network server's application stream.
    #[serde(default, deserialize_with = "devaddr")]
    pub dev_addr: Option<DevAddr>,
    #[serde(default, rename = "nwkSKey", deserialize_with = "key")]
    pub nwk_s_key: Option<AesKey>,
    #[serde(default, rename = "appSKey", deserialize_with = "key")]
    pub app_s_key: Option<AesKey>,
    pub profile: String,
    #[serde(default)]
    pub codec: CodecKind,
    #[serde(default)]
    pub fcnt_policy: FcntPolicy,
    /// `LOCKED` devices still report, but refuse commands (EdgeX admin state).
    #[serde(default)]
    pub admin_state: AdminState,
    /// Where the device listens after an uplink, if not at the defaults.
    #[serde(default)]
    pub rx_windows: RxWindows,
    /// Its band plan, if not the site's (`Region.Name`).
    #[serde(default)]
    pub region: Option<RegionName>,
    #[serde(default)]
    pub activation: Activation,
    /// OTAA: the JoinEUI (AppEUI) its JoinRequests carry.
    #[serde(default, deserialize_with = "eui_opt")]
    pub join_eui: Option<Eui64>,
    /// OTAA: the root key (never logged, never in an error or API answer).
    #[serde(default, deserialize_with = "key")]
    pub app_key: Option<AesKey>,
    /// The LoRaWAN version it speaks (1.0.2, 1.0.3 default, 1.0.4): how its
    /// DevNonces are checked.
    #[serde(default)]
    pub mac_version: MacVersionName,
    /// Adaptive data rate for this device, when `Mac.Adr` is on and the
    /// device sets the ADR bit (default: on).
    #[serde(default = "yes")]
    pub adr: bool,
    /// Values a JavaScript codec reads as `input.variables` (ChirpStack's
    /// device variables): not secret, not keys.
    #[serde(default)]
    pub variables: std::collections::BTreeMap<String, String>,
    /// `A` (default): it listens only after its uplinks. `C`: it listens
    /// on RX2 all the time, so commands go out at once.
    #[serde(default)]
    pub class: DeviceClass,
}

/// When a device listens for downlinks (LoRaWAN device classes; B, beacon
/// timed, is not supported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum DeviceClass {
    /// RX1 and RX2 after each uplink.
    #[default]
    A,
    /// RX2 whenever it is not sending: downlinks need no uplink first.
    C,
}

fn yes() -> bool {
    true
}

impl DeviceEntry {
    /// A device of `profile` with nothing else set: no session, default
    /// codec, counter policy, windows and region (fill the rest with
    /// struct update syntax).
    pub fn new(name: impl Into<String>, dev_eui: Eui64, profile: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            dev_eui,
            dev_addr: None,
            nwk_s_key: None,
            app_s_key: None,
            profile: profile.into(),
            codec: Default::default(),
            fcnt_policy: Default::default(),
            admin_state: Default::default(),
            rx_windows: Default::default(),
            region: None,
            activation: Default::default(),
            join_eui: None,
            app_key: None,
            mac_version: Default::default(),
            adr: true,
            variables: Default::default(),
            class: DeviceClass::A,
        }
    }
}

/// EdgeX admin state of a device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AdminState {
    #[default]
    Unlocked,
    Locked,
}

/// Read a hex field without ever echoing what was written: for keys, the
/// text is the secret. serde's stock errors quote the offending value, so
/// every non-string shape gets our own value-free message.
fn hex_field<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: fn(&str) -> Result<T, crate::lorawan::keys::KeyError>,
) -> Result<T, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a quoted hex string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<String, E> {
            Err(E::custom(NOT_TEXT))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<String, E> {
            Err(E::custom(NOT_TEXT))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<String, E> {
            Err(E::custom(NOT_TEXT))
        }
        fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<String, E> {
            Err(E::custom(NOT_TEXT))
        }
        fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<String, E> {
            Err(E::custom(NOT_TEXT))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<String, E> {
            Err(E::custom(NOT_TEXT))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<String, E> {
            Err(E::custom(NOT_TEXT))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
            Err(serde::de::Error::custom(NOT_TEXT))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
            Err(serde::de::Error::custom(NOT_TEXT))
        }
    }
    const NOT_TEXT: &str = "expected a quoted hex string";
    let text = d.deserialize_any(Text)?;
    parse(&text).map_err(serde::de::Error::custom)
}
fn key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AesKey>, D::Error> {
    hex_field(d, AesKey::from_hex).map(Some)
}
fn eui<'de, D: Deserializer<'de>>(d: D) -> Result<Eui64, D::Error> {
    hex_field(d, Eui64::from_hex)
}
fn eui_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Eui64>, D::Error> {
    hex_field(d, Eui64::from_hex).map(Some)
}
fn devaddr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DevAddr>, D::Error> {
    hex_field(d, DevAddr::from_hex).map(Some)
}

/// Parse a devices file's text.
pub fn parse(path: &Path, text: &str) -> Result<Vec<DeviceEntry>, DevicesError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let f: DevicesFile = serde_path_to_error::deserialize(de).map_err(|e| DevicesError::Yaml {
        path: path.to_owned(),
        // Never a key: serde quotes the scalars it refuses.
        message: crate::fsutil::redact_values(&format!("at `{}`: {}", e.path(), e.inner())),
    })?;
    let mut by_eui = std::collections::HashMap::new();
    let mut by_name = std::collections::HashMap::new();
    for (i, d) in f.devices.iter().enumerate() {
        let dup = |j: usize, what: String| DevicesError::DuplicateInFile {
            path: path.to_owned(),
            first: format!("{} (entry {})", f.devices[j].name, j + 1),
            second: format!("{} (entry {})", d.name, i + 1),
            what,
        };
        if let Some(&j) = by_eui.get(&d.dev_eui) {
            return Err(dup(j, format!("share the DevEUI {}", d.dev_eui)));
        }
        if let Some(&j) = by_name.get(d.name.as_str()) {
            return Err(dup(
                j,
                format!(
                    "share the name (DevEUIs {} and {})",
                    f.devices[j].dev_eui, d.dev_eui
                ),
            ));
        }
        by_eui.insert(d.dev_eui, i);
        by_name.insert(d.name.as_str(), i);
    }
    Ok(f.devices)
}

/// The devices file text for `entries`, as [`parse`] reads it back. Keys
/// are in hex: the file is secret (mode 0600 it).
pub fn to_yaml(entries: &[DeviceEntry]) -> String {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let mut v = serde_json::json!({
                "name": e.name,
                "devEui": e.dev_eui.to_string(),
                "profile": e.profile,
                "codec": e.codec,
                "fcntPolicy": e.fcnt_policy,
                "adminState": e.admin_state,
            });
            // A device heard only through a network server has no session.
            if let (Some(a), Some(n), Some(k)) = (e.dev_addr, &e.nwk_s_key, &e.app_s_key) {
                v["devAddr"] = a.to_string().into();
                v["nwkSKey"] = hex::encode(n.expose()).into();
                v["appSKey"] = hex::encode(k.expose()).into();
            }
            if !e.rx_windows.is_default() {
                v["rxWindows"] = e.rx_windows.to_json();
            }
            if let Some(r) = e.region {
                v["region"] = r.to_string().into();
            }
            if !e.adr {
                v["adr"] = false.into();
            }
            if e.class != DeviceClass::A {
                v["class"] = serde_json::to_value(e.class).expect("a name");
            }
            if !e.variables.is_empty() {
                v["variables"] = serde_json::to_value(&e.variables).expect("strings");
            }
            if let (Activation::Otaa, Some(j), Some(k)) = (e.activation, e.join_eui, &e.app_key) {
                v["activation"] = "otaa".into();
                v["joinEui"] = j.to_string().into();
                v["appKey"] = hex::encode(k.expose()).into();
                v["macVersion"] = serde_json::to_value(e.mac_version).expect("a version");
            }
            v
        })
        .collect();
    serde_yaml_ng::to_string(&serde_json::json!({ "devices": list }))
        .expect("plain values serialise")
}

/// Read the devices file, warning when others can read its keys (a file
/// of names, DevEUIs and profiles only, as behind a network server, holds
/// none and may be read by anyone).
pub fn load(path: &Path) -> Result<Vec<DeviceEntry>, DevicesError> {
    let text = std::fs::read_to_string(path).map_err(|source| DevicesError::Io {
        path: path.to_owned(),
        source,
    })?;
    let entries = parse(path, &text)?;
    if let Some(mode) = group_or_world_readable(path).filter(|_| holds_keys(&entries)) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "devices file holds session keys but is readable by group or others: chmod 600 it"
        );
    }
    Ok(entries)
}

/// Whether any entry carries a key (a session's or a root key).
pub fn holds_keys(entries: &[DeviceEntry]) -> bool {
    entries
        .iter()
        .any(|e| e.nwk_s_key.is_some() || e.app_s_key.is_some() || e.app_key.is_some())
}

/// The file's permission bits if group or others may read it.
pub fn group_or_world_readable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::radio::RxSettings;
    use crate::lorawan::DataRate;

    const ONE: &str = r#"
devices:
  - name: mote-1
    devEui: "0004a30b001c0530"
    devAddr: "26011bda"
    nwkSKey: "2b7e151628aed2a6abf7158809cf4f3c"
    appSKey: "3c4fcf098815f7aba6d2ae2816157e2b"
    profile: p
"#;

    #[test]
    fn written_files_read_back() {
        let mut d = parse(Path::new("d.yaml"), ONE).unwrap();
        let mut app_only = d[0].clone();
        app_only.name = "mote-2".into();
        app_only.dev_eui = Eui64::from_u64(2);
        (app_only.dev_addr, app_only.nwk_s_key, app_only.app_s_key) = (None, None, None);
        app_only.codec = CodecKind::Raw;
        app_only.admin_state = AdminState::Locked;
        d.push(app_only);
        d[1].region = Some(RegionName::AS923_2);
        d[0].rx_windows = RxWindows {
            rx1_delay: Some(5),
            rx2_data_rate: DataRate::parse("SF9BW125"),
            ..Default::default()
        };
        let back = parse(Path::new("d.yaml"), &to_yaml(&d)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{d:?}"));
        assert_eq!(
            back[0].nwk_s_key.unwrap().expose(),
            d[0].nwk_s_key.unwrap().expose()
        );
    }

    #[test]
    fn parses_with_defaults() {
        let d = parse(Path::new("d.yaml"), ONE).unwrap();
        assert_eq!(d[0].dev_addr, Some(DevAddr(0x26011bda)));
        assert_eq!(d[0].fcnt_policy, FcntPolicy::ResetTolerant);
        assert_eq!(d[0].codec, CodecKind::CayenneLpp);
    }

    #[test]
    fn a_duplicate_names_the_file_both_devices_and_what_they_share() {
        let entries = crate::sim::mote::entries(2, 4);
        let mut same_eui = entries.clone();
        same_eui[1].dev_eui = same_eui[0].dev_eui;
        let e = parse(Path::new("site.yaml"), &to_yaml(&same_eui))
            .unwrap_err()
            .to_string();
        for part in [
            "site.yaml",
            "sim-mote-1",
            "sim-mote-2",
            &format!("DevEUI {}", entries[0].dev_eui),
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        let mut same_name = entries.clone();
        same_name[1].name = same_name[0].name.clone();
        let e = parse(Path::new("site.yaml"), &to_yaml(&same_name))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("share the name") && e.contains(&entries[1].dev_eui.to_string()),
            "{e}"
        );
    }

    #[test]
    fn key_errors_never_show_the_key() {
        let bad = ONE.replace(
            "2b7e151628aed2a6abf7158809cf4f3c",
            "2b7e151628aed2a6abf7158809cf4f3",
        );
        let e = parse(Path::new("d.yaml"), &bad).unwrap_err().to_string();
        assert!(
            e.contains("devices[0].nwkSKey") && e.contains("32 hex digits"),
            "{e}"
        );
        assert!(!e.contains("2b7e1516"), "{e}");
        let unquoted = ONE.replace(
            "\"3c4fcf098815f7aba6d2ae2816157e2b\"",
            "12345678901234567890123456789012",
        );
        let e = parse(Path::new("d.yaml"), &unquoted)
            .unwrap_err()
            .to_string();
        assert!(e.contains("appSKey") && !e.contains("1234567890"), "{e}");
    }

    #[test]
    fn rx_windows_are_checked_and_fall_back_to_the_defaults() {
        let with = |rx: &str| format!("{ONE}    rxWindows: {rx}\n");
        let d = parse(
            Path::new("d.yaml"),
            &with("{ rx2DataRate: SF9BW125, rx1DrOffset: 2 }"),
        )
        .unwrap();
        let s = d[0].rx_windows.over(RxSettings::EU868);
        assert_eq!(s.rx2_datr, DataRate::parse("SF9BW125").unwrap());
        assert_eq!(s.rx1_dr_offset, 2);
        assert_eq!(s.rx2_frequency, RxSettings::EU868.rx2_frequency);
        assert_eq!(s.rx1_delay, RxSettings::EU868.rx1_delay);
        for (bad, says) in [
            ("{ rx1Delay: 0 }", "rx1Delay"),
            ("{ rx1DrOffset: 6 }", "rx1DrOffset"),
            ("{ rx2Frequency: 869 }", "rx2Frequency"),
            ("{ rx2DataRate: DR3 }", "SF9BW125"),
            ("{ rx2Dr: 3 }", "rx2Dr"),
        ] {
            let e = parse(Path::new("d.yaml"), &with(bad))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("devices[0].rxWindows") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn warns_about_readable_files() {
        use std::os::unix::fs::PermissionsExt;
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(group_or_world_readable(f.path()), None);
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(group_or_world_readable(f.path()), Some(0o644));
    }

    /// The warning is about keys: a file without any (the devices a network
    /// server in front holds the sessions of) gives none.
    #[test]
    fn only_a_file_with_keys_needs_mode_600() {
        let p = Path::new("devices.yaml");
        assert!(holds_keys(&parse(p, ONE).unwrap()));
        let keyless =
            "devices:\n  - { name: a, devEui: \"0004a30b001c0530\", profile: Dragino-LPP-Mote }\n";
        assert!(!holds_keys(&parse(p, keyless).unwrap()));
        let keyless = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/chirpstack/devices.example.yaml"),
        )
        .unwrap();
        assert!(!holds_keys(&parse(p, &keyless).unwrap()));
    }
}
