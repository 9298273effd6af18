//! The devices file (ABP sessions) and the registry built from it: for each
//! device its prepared crypto and compiled codec, looked up by DevAddr on the
//! uplink path and by DevEUI for application-integration uplinks.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use crate::codec::{Codec, CodecError, CodecKind, DeviceProfile};
use crate::lorawan::radio::RxSettings;
use crate::lorawan::region::RegionName;
use crate::lorawan::{AesKey, DataRate, DevAddr, Eui64, FcntPolicy, SessionCrypto};

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicesFile {
    devices: Vec<DeviceEntry>,
}

/// One ABP device as written in the devices file.
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
}

/// A device's receive windows (`rxWindows:` in the devices file): what its
/// firmware sets (for ABP; an OTAA join sets them). Each one left out is the
/// configuration's `Downlink` value, the region's default. The downlink
/// scheduler sends only where these say, so they must match the firmware:
/// `firmware/lorawan-mote/settings.h` is written from the same values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RxWindows {
    /// RECEIVE_DELAY1 in seconds, 1..=15 (RX2 opens a second later).
    #[serde(default, deserialize_with = "rx1_delay")]
    pub rx1_delay: Option<u8>,
    /// RX1DROffset, 0..=5: RX1 answers this many data rates below the uplink.
    #[serde(default, deserialize_with = "rx1_dr_offset")]
    pub rx1_dr_offset: Option<u8>,
    /// RX2 channel in Hz.
    #[serde(default, deserialize_with = "rx2_frequency")]
    pub rx2_frequency: Option<u32>,
    /// RX2 data rate, as the packet forwarder writes it (`SF9BW125`).
    #[serde(default, deserialize_with = "rx2_data_rate")]
    pub rx2_data_rate: Option<DataRate>,
}

impl RxWindows {
    /// These windows over `defaults`.
    pub fn over(&self, defaults: RxSettings) -> RxSettings {
        RxSettings {
            rx1_delay: self.rx1_delay.map_or(defaults.rx1_delay, |s| {
                std::time::Duration::from_secs(s.into())
            }),
            rx1_dr_offset: self.rx1_dr_offset.unwrap_or(defaults.rx1_dr_offset),
            rx2_frequency: self.rx2_frequency.unwrap_or(defaults.rx2_frequency),
            rx2_datr: self.rx2_data_rate.unwrap_or(defaults.rx2_datr),
        }
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    fn to_json(self) -> serde_json::Value {
        let mut v = serde_json::Map::new();
        if let Some(d) = self.rx1_delay {
            v.insert("rx1Delay".into(), d.into());
        }
        if let Some(o) = self.rx1_dr_offset {
            v.insert("rx1DrOffset".into(), o.into());
        }
        if let Some(f) = self.rx2_frequency {
            v.insert("rx2Frequency".into(), f.into());
        }
        if let Some(dr) = self.rx2_data_rate {
            v.insert("rx2DataRate".into(), dr.to_string().into());
        }
        v.into()
    }
}

fn ranged<'de, D: Deserializer<'de>, T>(
    d: D,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de> + PartialOrd + std::fmt::Display,
{
    let v = T::deserialize(d)?;
    if !range.contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{what} must be between {} and {}",
            range.start(),
            range.end()
        )));
    }
    Ok(Some(v))
}
fn rx1_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    ranged(d, 1..=15, "rx1Delay (seconds)")
}
fn rx1_dr_offset<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    ranged(d, 0..=5, "rx1DrOffset")
}
fn rx2_frequency<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    ranged(d, 137_000_000..=1_020_000_000, "rx2Frequency (Hz)")
}
fn rx2_data_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DataRate>, D::Error> {
    let text = String::deserialize(d)?;
    DataRate::parse(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom("rx2DataRate must be a LoRa data rate like SF9BW125")
    })
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
fn devaddr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DevAddr>, D::Error> {
    hex_field(d, DevAddr::from_hex).map(Some)
}

/// A device ready for the uplink path.
#[derive(Debug)]
pub struct Device {
    pub name: Arc<str>,
    pub dev_eui: Eui64,
    pub dev_addr: Option<DevAddr>,
    /// Prepared ABP session; `None` for application-stream-only devices.
    pub crypto: Option<SessionCrypto>,
    pub codec: Codec,
    pub fcnt_policy: FcntPolicy,
    pub admin_state: AdminState,
    pub rx_windows: RxWindows,
    /// `None`: the site's region.
    pub region: Option<RegionName>,
}

/// All devices, indexed for the uplink path. Device ids are indices.
#[derive(Debug, Default)]
pub struct Registry {
    devices: Vec<Device>,
    /// (DevAddr, device id), sorted: a binary search per uplink, no hashing
    /// of attacker-chosen addresses.
    by_addr: Vec<(DevAddr, u32)>,
    by_eui: HashMap<Eui64, u32>,
}

impl Registry {
    pub fn build(
        entries: Vec<DeviceEntry>,
        profiles: &BTreeMap<String, DeviceProfile>,
    ) -> Result<Self, DevicesError> {
        let profiles: BTreeMap<&str, Arc<DeviceProfile>> = profiles
            .iter()
            .map(|(k, v)| (k.as_str(), Arc::new(v.clone())))
            .collect();
        let mut reg = Registry::default();
        let mut names = std::collections::HashSet::new();
        for e in entries {
            let profile =
                profiles
                    .get(e.profile.as_str())
                    .ok_or_else(|| DevicesError::UnknownProfile {
                        device: e.name.clone(),
                        profile: e.profile.clone(),
                    })?;
            let codec =
                Codec::compile(profile.clone(), e.codec).map_err(|source| DevicesError::Codec {
                    device: e.name.clone(),
                    source,
                })?;
            let id = reg.devices.len() as u32;
            if !names.insert(e.name.clone()) || reg.by_eui.insert(e.dev_eui, id).is_some() {
                return Err(DevicesError::Duplicate(e.name));
            }
            let crypto = match (e.dev_addr, e.nwk_s_key, e.app_s_key) {
                (Some(addr), Some(nwk), Some(app)) => {
                    reg.by_addr.push((addr, id));
                    Some(SessionCrypto::new(&nwk, &app))
                }
                (None, None, None) => None,
                _ => return Err(DevicesError::PartialSession(e.name)),
            };
            reg.devices.push(Device {
                name: e.name.into(),
                dev_eui: e.dev_eui,
                dev_addr: e.dev_addr,
                crypto,
                codec,
                fcnt_policy: e.fcnt_policy,
                admin_state: e.admin_state,
                rx_windows: e.rx_windows,
                region: e.region,
            });
        }
        reg.by_addr.sort_unstable();
        Ok(reg)
    }

    /// Add a device at run time (one handed over by another edge), or give
    /// the device with its DevEUI the entry's session. Returns its id.
    pub fn adopt(
        &mut self,
        e: DeviceEntry,
        profile: Arc<DeviceProfile>,
    ) -> Result<u32, DevicesError> {
        if let Some(id) = self.by_eui(e.dev_eui) {
            if let (Some(addr), Some(nwk), Some(app)) = (e.dev_addr, e.nwk_s_key, e.app_s_key) {
                self.set_session(id, addr, &nwk, &app);
            }
            return Ok(id);
        }
        if self.by_name(&e.name).is_some() {
            return Err(DevicesError::Duplicate(e.name));
        }
        let mut one = Registry::build(
            vec![e],
            &BTreeMap::from([(profile.name.clone(), (*profile).clone())]),
        )?;
        let d = one.devices.pop().expect("built one");
        let id = self.devices.len() as u32;
        if let Some(addr) = d.dev_addr {
            self.by_addr.push((addr, id));
            self.by_addr.sort_unstable();
        }
        self.by_eui.insert(d.dev_eui, id);
        self.devices.push(d);
        Ok(id)
    }

    /// Give device `id` an ABP session (keys that arrived through the
    /// secret API), replacing any it had.
    pub fn set_session(&mut self, id: u32, addr: DevAddr, nwk: &AesKey, app: &AesKey) {
        let d = &mut self.devices[id as usize];
        d.dev_addr = Some(addr);
        d.crypto = Some(SessionCrypto::new(nwk, app));
        self.by_addr.retain(|(_, i)| *i != id);
        self.by_addr.push((addr, id));
        self.by_addr.sort_unstable();
    }

    pub fn by_name(&self, name: &str) -> Option<u32> {
        self.devices
            .iter()
            .position(|d| &*d.name == name)
            .map(|i| i as u32)
    }

    /// Devices sharing `addr` (usually one; the MIC tells them apart).
    pub fn by_addr(&self, addr: DevAddr) -> impl Iterator<Item = u32> + '_ {
        let start = self.by_addr.partition_point(|(a, _)| *a < addr);
        self.by_addr[start..]
            .iter()
            .take_while(move |(a, _)| *a == addr)
            .map(|(_, id)| *id)
    }
    pub fn by_eui(&self, eui: Eui64) -> Option<u32> {
        self.by_eui.get(&eui).copied()
    }
    pub fn get(&self, id: u32) -> &Device {
        &self.devices[id as usize]
    }
    pub fn len(&self) -> usize {
        self.devices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Device> {
        self.devices.iter()
    }
}

/// Parse a devices file's text.
pub fn parse(path: &Path, text: &str) -> Result<Vec<DeviceEntry>, DevicesError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let f: DevicesFile = serde_path_to_error::deserialize(de).map_err(|e| DevicesError::Yaml {
        path: path.to_owned(),
        message: format!("at `{}`: {}", e.path(), e.inner()),
    })?;
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
            v
        })
        .collect();
    serde_yaml_ng::to_string(&serde_json::json!({ "devices": list }))
        .expect("plain values serialise")
}

/// Read the devices file, warning when others can read its keys.
pub fn load(path: &Path) -> Result<Vec<DeviceEntry>, DevicesError> {
    let text = std::fs::read_to_string(path).map_err(|source| DevicesError::Io {
        path: path.to_owned(),
        source,
    })?;
    if let Some(mode) = group_or_world_readable(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "devices file holds session keys but is readable by group or others: chmod 600 it"
        );
    }
    parse(path, &text)
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
}
