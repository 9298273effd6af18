//! EdgeX provision watchers (the device SDK's `ProvisionWatchersDir`
//! format, one watcher per YAML or JSON file): `identifiers` are regular
//! expressions a discovered device's `lorawan` properties must all match,
//! `blockingIdentifiers` values that keep a device out; a match is added
//! with the watcher's `discoveredDevice` profile and admin state.
//!
//! Identifiers match case-insensitively, so a DevEUI prefix can be written
//! as printed on the device's label (`^A84041`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::devices::AdminState;

#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    #[error("provision watchers {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("provision watcher {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WatcherFile {
    name: String,
    #[serde(default)]
    service_name: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    identifiers: BTreeMap<String, String>,
    #[serde(default)]
    blocking_identifiers: BTreeMap<String, Vec<String>>,
    #[serde(default = "unlocked")]
    admin_state: AdminState,
    discovered_device: DiscoveredDeviceFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiscoveredDeviceFile {
    profile_name: String,
    #[serde(default = "unlocked")]
    admin_state: AdminState,
    #[serde(default)]
    properties: BTreeMap<String, serde_json::Value>,
}

fn unlocked() -> AdminState {
    AdminState::Unlocked
}

/// A provision watcher, its identifiers compiled.
#[derive(Debug, Clone)]
pub struct ProvisionWatcher {
    pub name: String,
    pub service_name: Option<String>,
    pub labels: Vec<String>,
    identifiers: Vec<(String, regex_lite::Regex)>,
    blocking: BTreeMap<String, Vec<String>>,
    /// A locked watcher admits nothing.
    pub admin_state: AdminState,
    /// What a device it admits becomes.
    pub profile: String,
    pub device_admin_state: AdminState,
    /// `discoveredDevice.properties` (e.g. `codec`).
    pub properties: BTreeMap<String, serde_json::Value>,
    /// The document as written (JSON), for core-metadata.
    pub document: serde_json::Value,
}

impl ProvisionWatcher {
    /// Read one watcher document (YAML or JSON).
    pub fn parse(path: &Path, text: &str) -> Result<Self, WatcherError> {
        let invalid = |message: String| WatcherError::Invalid {
            path: path.to_owned(),
            message,
        };
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let f: WatcherFile = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("at `{}`: {}", e.path(), e.inner())))?;
        let document: serde_json::Value =
            serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if f.name.trim().is_empty() {
            return Err(invalid("empty name".into()));
        }
        if f.identifiers.is_empty() {
            return Err(invalid(
                "no identifiers: a watcher must say which devices it admits".into(),
            ));
        }
        let identifiers = f
            .identifiers
            .into_iter()
            .map(|(k, pattern)| {
                regex_lite::RegexBuilder::new(&pattern)
                    .case_insensitive(true)
                    .size_limit(1 << 20)
                    .build()
                    .map(|r| (k.clone(), r))
                    .map_err(|e| invalid(format!("identifier {k}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name: f.name,
            service_name: f.service_name,
            labels: f.labels,
            identifiers,
            blocking: f.blocking_identifiers,
            admin_state: f.admin_state,
            profile: f.discovered_device.profile_name,
            device_admin_state: f.discovered_device.admin_state,
            properties: f.discovered_device.properties,
            document,
        })
    }

    /// Whether a device with these properties is added by this watcher:
    /// unlocked, every identifier matches, no blocking value equals its
    /// property (case-insensitively).
    pub fn admits(&self, props: &BTreeMap<&'static str, String>) -> bool {
        self.admin_state == AdminState::Unlocked
            && self
                .identifiers
                .iter()
                .all(|(k, r)| props.get(k.as_str()).is_some_and(|v| r.is_match(v)))
            && !self.blocking.iter().any(|(k, values)| {
                props
                    .get(k.as_str())
                    .is_some_and(|v| values.iter().any(|b| b.eq_ignore_ascii_case(v)))
            })
    }
}

/// Every watcher in `dir` (`*.yaml`, `*.yml`, `*.json`), by name; a file
/// that does not read stops the start, naming it.
pub fn load_dir(dir: &Path) -> Result<Vec<ProvisionWatcher>, WatcherError> {
    let io = |source| WatcherError::Io {
        path: dir.to_owned(),
        source,
    };
    let paths = crate::fsutil::definition_files(dir).map_err(io)?;
    let mut out: Vec<ProvisionWatcher> = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|source| WatcherError::Io {
            path: p.clone(),
            source,
        })?;
        let w = ProvisionWatcher::parse(&p, &text)?;
        if out.iter().any(|o| o.name == w.name) {
            return Err(WatcherError::Invalid {
                path: p,
                message: format!("a second watcher named {:?}", w.name),
            });
        }
        out.push(w);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAGINO: &str = r#"
name: "dragino-motes"
identifiers: { DevEUI: "^A84041", Region: "EU868" }
blockingIdentifiers: { DevEUI: ["a840410000000666"] }
adminState: "UNLOCKED"
discoveredDevice: { profileName: "Dragino-LPP-Mote", adminState: "UNLOCKED", properties: { codec: "cayenne-lpp" } }
"#;

    fn props(eui: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([("DevEUI", eui.to_string()), ("Region", "EU868".to_string())])
    }

    #[test]
    fn identifiers_must_all_match_and_blocking_ones_keep_out() {
        let w = ProvisionWatcher::parse("w.yaml".as_ref(), DRAGINO).unwrap();
        assert!(w.admits(&props("a840410000000001")));
        assert!(!w.admits(&props("70b3d57ed0000001")));
        assert!(!w.admits(&props("a840410000000666")), "blocked");
        let mut other = props("a840410000000001");
        other.insert("Region", "US915".into());
        assert!(!w.admits(&other));
        let mut locked = w.clone();
        locked.admin_state = AdminState::Locked;
        assert!(!locked.admits(&props("a840410000000001")));
        assert_eq!(w.profile, "Dragino-LPP-Mote");
    }

    #[test]
    fn a_bad_watcher_names_its_file_and_fault() {
        let e = ProvisionWatcher::parse(
            "w.yaml".as_ref(),
            "name: x\nidentifiers: { DevEUI: \"[\" }\ndiscoveredDevice: { profileName: p }",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("w.yaml") && e.contains("DevEUI"), "{e}");
        let e = ProvisionWatcher::parse(
            "w.yaml".as_ref(),
            "name: x\ndiscoveredDevice: { profileName: p }",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no identifiers"), "{e}");
    }
}
