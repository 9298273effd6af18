//! Devices served beyond the devices file: those core-metadata holds for
//! this service (added, changed or deleted live through its system events)
//! and those discovery admits. Each is served once its keys are in a secret
//! (`POST /api/v3/secret`, named by the device or its `SecretName`): ABP
//! session keys, or an OTAA AppKey. Until then it waits, and says so.
//!
//! The devices file wins: a device defined there (by name or DevEUI) is not
//! taken from EdgeX; the conflict is logged and counted.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::codec::DeviceProfile;
use crate::control::mailbox::Control;
use crate::devices::{Activation, DeviceEntry};
use crate::edgex::device_dto::EdgexDevice;
use crate::lorawan::{AesKey, Eui64};
use crate::metrics::Metrics;

/// What became of a device offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Served from now on.
    Added,
    /// Already served: changed live.
    Updated,
    /// Waiting for the secret with its keys (named here).
    WaitingForKeys(String),
    /// Not taken: the reason.
    Conflict(String),
}

struct Waiting {
    device: EdgexDevice,
    profile: Arc<DeviceProfile>,
}

/// A device served from EdgeX: its DevEUI, the secret its keys came in,
/// and its definition (for a new secret under that name: new keys).
#[derive(Clone)]
struct Served {
    dev_eui: Eui64,
    secret_name: String,
    entry: DeviceEntry,
    profile: Arc<DeviceProfile>,
}

impl Served {
    fn of(device: &EdgexDevice, profile: &Arc<DeviceProfile>) -> Self {
        Self {
            dev_eui: device.entry.dev_eui,
            secret_name: device.secret_name.clone(),
            entry: device.entry.clone(),
            profile: profile.clone(),
        }
    }
}

pub struct Provisioning {
    profiles: BTreeMap<String, Arc<DeviceProfile>>,
    /// Shared with the registry's names (no copy per device).
    file_names: HashSet<Arc<str>>,
    file_euis: HashSet<Eui64>,
    served: Mutex<BTreeMap<String, Served>>,
    /// By secret name.
    waiting: Mutex<BTreeMap<String, Waiting>>,
    control: mpsc::UnboundedSender<Control>,
    metrics: Arc<Metrics>,
    /// Told when a device starts waiting for its keys (in secure mode the
    /// EdgeX secret store is asked for them at once).
    pub keys_wanted: tokio::sync::Notify,
    /// Where served devices' expected uplink intervals go.
    operating: Option<Arc<crate::edgex::operating::OperatingState>>,
}

/// `entry` with the keys in a secret's `data`, or why they do not do.
fn with_keys(entry: &DeviceEntry, data: &[(String, String)]) -> Result<DeviceEntry, String> {
    match entry.activation {
        Activation::Otaa => {
            let key = data
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("AppKey"))
                .ok_or("no AppKey in the secret")?;
            let key = AesKey::from_hex(key.1.trim()).map_err(|_| "AppKey is not valid")?;
            Ok(DeviceEntry {
                app_key: Some(key),
                ..entry.clone()
            })
        }
        Activation::Abp => {
            let s =
                crate::store::secrets::session_from_secret_data(&entry.name, data, entry.dev_addr)
                    .map_err(|e| e.to_string())?;
            Ok(DeviceEntry {
                dev_addr: Some(s.dev_addr),
                nwk_s_key: Some(s.nwk_s_key),
                app_s_key: Some(s.app_s_key),
                ..entry.clone()
            })
        }
    }
}

impl Provisioning {
    pub fn new(
        profiles: BTreeMap<String, Arc<DeviceProfile>>,
        file: &crate::devices::Registry,
        control: mpsc::UnboundedSender<Control>,
        metrics: Arc<Metrics>,
        operating: Option<Arc<crate::edgex::operating::OperatingState>>,
    ) -> Self {
        Self {
            profiles,
            file_names: file.iter().map(|d| d.name.clone()).collect(),
            file_euis: file.iter().map(|d| d.dev_eui).collect(),
            served: Mutex::new(BTreeMap::new()),
            waiting: Mutex::new(BTreeMap::new()),
            keys_wanted: tokio::sync::Notify::new(),
            control,
            metrics,
            operating,
        }
    }

    fn watch(&self, device: &EdgexDevice) {
        if let Some(o) = self.operating.as_ref() {
            o.expect(device.entry.name.as_str().into(), device.uplink_interval);
        }
    }

    pub fn profile(&self, name: &str) -> Option<Arc<DeviceProfile>> {
        self.profiles.get(name).cloned()
    }

    /// Whether this device comes from the devices file (which wins).
    pub fn from_file(&self, name: &str, eui: Eui64) -> bool {
        self.file_names.contains(name) || self.file_euis.contains(&eui)
    }

    /// Serve `device` (or change it, if served): at once if `secret` finds
    /// its keys, else once they arrive.
    pub fn provide(
        &self,
        device: EdgexDevice,
        secret: impl Fn(&str) -> Option<Vec<(String, String)>>,
    ) -> Outcome {
        let name = device.entry.name.clone();
        let eui = device.entry.dev_eui;
        if self.from_file(&name, eui) {
            self.metrics.device_conflicts.fetch_add(1, Relaxed);
            let why = format!(
                "{name} (DevEUI {eui}) is also in the devices file, which wins: the EdgeX definition is not used"
            );
            tracing::warn!(device = %name, "{why}");
            return Outcome::Conflict(why);
        }
        let Some(profile) = self.profile(&device.entry.profile) else {
            return Outcome::Conflict(format!("no profile {:?}", device.entry.profile));
        };
        let mut served = self.served.lock().expect("served lock");
        if let Some(s) = served.get(&name).cloned() {
            if s.dev_eui == eui {
                self.watch(&device);
                served.insert(name.clone(), Served::of(&device, &profile));
                let _ = self.control.send(Control::UpdateDevice {
                    entry: device.entry,
                    profile,
                });
                tracing::info!(device = %name, "device changed in EdgeX: applied");
                return Outcome::Updated;
            }
            // Another DevEUI under the same name: another device.
            let _ = self
                .control
                .send(Control::RemoveDevice { dev_eui: s.dev_eui });
            served.remove(&name);
        }
        let keys = secret(&device.secret_name).map(|data| with_keys(&device.entry, &data));
        match keys {
            Some(Ok(entry)) => {
                self.watch(&device);
                served.insert(name.clone(), Served::of(&device, &profile));
                let _ = self.control.send(Control::AddDevice { entry, profile });
                Outcome::Added
            }
            other => {
                if let Some(Err(why)) = other {
                    tracing::warn!(device = %name, secret = %device.secret_name, why, "the device's secret does not hold its keys");
                }
                let secret_name = device.secret_name.clone();
                tracing::info!(device = %name, secret = %secret_name, "device waits for its keys (POST /api/v3/secret)");
                self.waiting
                    .lock()
                    .expect("waiting lock")
                    .insert(secret_name.clone(), Waiting { device, profile });
                self.keys_wanted.notify_one();
                Outcome::WaitingForKeys(secret_name)
            }
        }
    }

    /// A secret arrived: the device waiting for it is served if it holds
    /// its keys; devices served with keys from a secret of that name take
    /// the new ones. Whether a device was served or changed.
    pub fn secret_arrived(&self, secret_name: &str, data: &[(String, String)]) -> bool {
        let mut waiting = self.waiting.lock().expect("waiting lock");
        let Some(w) = waiting.get(secret_name) else {
            drop(waiting);
            return self.new_keys(secret_name, data);
        };
        let entry = match with_keys(&w.device.entry, data) {
            Ok(e) => e,
            Err(why) => {
                tracing::warn!(secret = %secret_name, why, "a waiting device's secret does not hold its keys");
                return false;
            }
        };
        let w = waiting.remove(secret_name).expect("present");
        drop(waiting);
        self.watch(&w.device);
        tracing::info!(device = %entry.name, "keys arrived: device served");
        self.served
            .lock()
            .expect("served lock")
            .insert(entry.name.clone(), Served::of(&w.device, &w.profile));
        let _ = self.control.send(Control::AddDevice {
            entry,
            profile: w.profile,
        });
        true
    }

    /// New keys for the served devices whose keys came in `secret_name`
    /// (a session re-keyed, an AppKey replaced): applied in place.
    fn new_keys(&self, secret_name: &str, data: &[(String, String)]) -> bool {
        let served = self.served.lock().expect("served lock");
        let mut changed = false;
        for s in served.values().filter(|s| s.secret_name == secret_name) {
            match with_keys(&s.entry, data) {
                Ok(entry) => {
                    tracing::info!(device = %entry.name, "new keys: applied");
                    let _ = self.control.send(Control::UpdateDevice {
                        entry,
                        profile: s.profile.clone(),
                    });
                    changed = true;
                }
                Err(why) => {
                    tracing::warn!(device = %s.entry.name, secret = %secret_name, why, "a served device's new secret does not hold its keys: the old ones stay")
                }
            }
        }
        changed
    }

    /// Stop serving a device deleted in EdgeX (or stop waiting for it).
    pub fn remove(&self, name: &str) -> bool {
        self.waiting
            .lock()
            .expect("waiting lock")
            .retain(|_, w| w.device.entry.name != name);
        if let Some(o) = self.operating.as_ref() {
            o.forget(name);
        }
        match self.served.lock().expect("served lock").remove(name) {
            Some(s) => {
                let _ = self
                    .control
                    .send(Control::RemoveDevice { dev_eui: s.dev_eui });
                tracing::info!(device = %name, secret = %s.secret_name, "device deleted in EdgeX: no longer served");
                true
            }
            None => false,
        }
    }

    /// Names of the devices waiting for their keys.
    pub fn waiting(&self) -> Vec<String> {
        self.waiting
            .lock()
            .expect("waiting lock")
            .values()
            .map(|w| w.device.entry.name.clone())
            .collect()
    }

    /// The secret device `name` waits for, if it waits.
    /// The names of the secrets devices wait for.
    pub fn waiting_secrets(&self) -> Vec<String> {
        self.waiting
            .lock()
            .expect("waiting lock")
            .keys()
            .cloned()
            .collect()
    }

    pub fn waiting_for(&self, name: &str) -> Option<String> {
        self.waiting
            .lock()
            .expect("waiting lock")
            .iter()
            .find(|(_, w)| w.device.entry.name == name)
            .map(|(secret, _)| secret.clone())
    }

    /// Whether `name` is served from EdgeX (or discovery).
    /// Whether the devices file defines `name`.
    pub fn in_file(&self, name: &str) -> bool {
        self.file_names.contains(name)
    }

    pub fn serves(&self, name: &str) -> bool {
        self.served.lock().expect("served lock").contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NWK: &str = "2b7e151628aed2a6abf7158809cf4f3c";
    const NWK2: &str = "00112233445566778899aabbccddeeff";
    const APP: &str = "000102030405060708090a0b0c0d0e0f";

    fn keys(nwk: &str) -> Vec<(String, String)> {
        vec![
            ("NwkSKey".into(), nwk.into()),
            ("AppSKey".into(), APP.into()),
        ]
    }

    fn provisioning() -> (Provisioning, mpsc::UnboundedReceiver<Control>) {
        let profile = DeviceProfile::from_yaml(
            "Dragino-LPP-Mote.yaml".as_ref(),
            include_str!("../../profiles/Dragino-LPP-Mote.yaml"),
        )
        .unwrap();
        let file = crate::devices::Registry::build(Vec::new(), &BTreeMap::new()).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let profiles = BTreeMap::from([(profile.name.clone(), Arc::new(profile))]);
        let p = Provisioning::new(profiles, &file, tx, Arc::new(Metrics::default()), None);
        (p, rx)
    }

    fn device() -> EdgexDevice {
        let dto = json!({"name": "field-7", "profileName": "Dragino-LPP-Mote",
            "adminState": "UNLOCKED", "serviceName": "device-lorawan",
            "protocols": {"lorawan": {"DevEUI": "a840410000000001", "DevAddr": "26011bda",
                "SecretName": "field-7-keys"}}});
        crate::edgex::device_dto::read(&dto, |_| true).unwrap()
    }

    fn nwk_key(c: &Control) -> String {
        match c {
            Control::AddDevice { entry, .. } | Control::UpdateDevice { entry, .. } => {
                hex::encode(entry.nwk_s_key.unwrap().expose())
            }
            _ => panic!("not a device change"),
        }
    }

    /// Waiting, served when its secret arrives, and re-keyed in place when
    /// a new secret of that name arrives (one without keys changes nothing).
    #[test]
    fn a_secret_serves_a_waiting_device_and_a_new_one_rekeys_it() {
        let (p, mut rx) = provisioning();
        assert_eq!(
            p.provide(device(), |_| None),
            Outcome::WaitingForKeys("field-7-keys".into())
        );
        assert_eq!(p.waiting_secrets(), ["field-7-keys"]);
        assert!(!p.secret_arrived("another", &keys(NWK)));
        assert!(p.secret_arrived("field-7-keys", &keys(NWK)));
        assert_eq!(nwk_key(&rx.try_recv().unwrap()), NWK);
        assert!(p.serves("field-7") && p.waiting_secrets().is_empty());

        assert!(p.secret_arrived("field-7-keys", &keys(NWK2)));
        assert_eq!(nwk_key(&rx.try_recv().unwrap()), NWK2);
        assert!(!p.secret_arrived("field-7-keys", &[("password".into(), "x".into())]));
        assert!(rx.try_recv().is_err());
    }
}
