//! What the device-service API knows of each device: its name, profile and
//! admin state, and the last decoded value of every resource (LoRaWAN
//! devices push; a GET command answers from these). Shared between the
//! pipeline, which records values after publishing an uplink, and the API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use crate::codec::{DeviceProfile, Value};
use crate::devices::{AdminState, Device, Registry};
use crate::lorawan::region::Region;
use crate::lorawan::{DevAddr, Eui64};
use crate::pipeline::uplink::Uplink;

/// What the API shows of an OTAA device's joins: never a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinView {
    /// The JoinAccept's DevAddr the device has not used yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_dev_addr: Option<DevAddr>,
    /// Unix seconds of the last JoinRequest answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_join: Option<u64>,
    pub next_join_nonce: u32,
    /// 1.0.4: the next DevNonce must be above this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_dev_nonce: Option<u16>,
    /// 1.0.2/1.0.3: DevNonces remembered as used.
    pub used_dev_nonces: usize,
}

impl JoinView {
    pub fn of(s: &crate::lorawan::otaa::JoinState) -> Self {
        Self {
            pending_dev_addr: s.pending.map(|p| p.dev_addr),
            last_join: s.pending.or(s.active).map(|p| p.joined_at),
            next_join_nonce: s.next_join_nonce,
            last_dev_nonce: s.last_dev_nonce,
            used_dev_nonces: s.used_dev_nonces.len(),
        }
    }
}

/// A resource's last value and when it was received (ns since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct LastValue {
    pub value: Value,
    pub origin: i64,
}

pub struct DeviceState {
    pub name: Arc<str>,
    pub dev_eui: Eui64,
    pub profile: Arc<DeviceProfile>,
    /// Known once the device has a session (devices file, `secret`, a join).
    pub dev_addr: Mutex<Option<DevAddr>>,
    /// OTAA devices: their join state as the API shows it (no keys).
    pub join: Mutex<Option<JoinView>>,
    pub otaa: bool,
    /// The largest downlink payload its region allows at any data rate:
    /// a command longer than this could never be sent.
    pub max_downlink: usize,
    /// A JavaScript codec with `encodeDownlink`, and the device's variables:
    /// its settings go through the codec, not the profile's byte layout.
    pub js_encoder: Option<(Arc<crate::codec::js::JsCodec>, Arc<str>)>,
    locked: AtomicBool,
    /// Indexed like `profile.device_resources`; empty until the device's
    /// first reading (a device that never sends costs no room for values).
    last: Mutex<Vec<Option<LastValue>>>,
}

impl DeviceState {
    pub fn locked(&self) -> bool {
        self.locked.load(Relaxed)
    }
    pub fn set_admin_state(&self, s: AdminState) {
        self.locked.store(s == AdminState::Locked, Relaxed);
    }
    /// The last values of `resources` (indices), those that have one.
    pub fn last_values(&self, resources: &[usize]) -> Vec<(usize, LastValue)> {
        let last = self.last.lock().expect("device state lock");
        resources
            .iter()
            .filter_map(|&i| last.get(i)?.clone().map(|v| (i, v)))
            .collect()
    }
}

/// The API's table of devices, indexed like the pipeline's registry. It
/// grows when a device arrives from EdgeX or discovery (so commands reach
/// it), a device changed in EdgeX gets a new entry under the same id, and a
/// deleted one is no longer found by name (its id stays taken, as in the
/// registry).
pub struct DeviceStates {
    table: RwLock<Table>,
    site: Region,
}

#[derive(Default)]
struct Table {
    /// `None`: an id the API does not serve (a device adopted in a
    /// handover).
    devices: Vec<Option<Arc<DeviceState>>>,
    by_name: HashMap<Arc<str>, u32>,
}

impl DeviceStates {
    /// The devices of `registry`, those naming no region in `site`.
    pub fn new(registry: &Registry, site: &Region) -> Self {
        let states = Self {
            table: RwLock::new(Table::default()),
            site: site.clone(),
        };
        states
            .table
            .write()
            .expect("device table lock")
            .devices
            .reserve_exact(registry.len());
        for (id, d) in registry.iter().enumerate() {
            if !d.removed {
                states.put(id as u32, d);
            }
        }
        states
    }

    /// The API's view of registry device `id` (added, or changed: the
    /// session it knows and values of the same profile are kept).
    pub fn put(&self, id: u32, d: &Device) {
        let region = match d.region {
            Some(n) => Region::new(crate::lorawan::region::RegionSettings::new(n)),
            None => self.site.clone(),
        };
        let mut state = DeviceState {
            max_downlink: crate::downlink::windows::region_max_payload(&region, Default::default()),
            name: d.name.clone(),
            dev_eui: d.dev_eui,
            profile: d.codec.profile().clone(),
            dev_addr: Mutex::new(d.dev_addr),
            join: Mutex::new(None),
            otaa: d.otaa.is_some(),
            js_encoder: d
                .codec
                .js_encoder()
                .map(|j| (j.clone(), d.variables.clone())),
            locked: AtomicBool::new(d.admin_state == AdminState::Locked),
            last: Mutex::new(Vec::new()),
        };
        let mut t = self.table.write().expect("device table lock");
        let slot = id as usize;
        if t.devices.len() <= slot {
            t.devices.resize(slot + 1, None);
        }
        if let Some(old) = t.devices[slot].take() {
            t.by_name.remove(&old.name);
            if state.dev_addr.get_mut().expect("fresh lock").is_none() {
                *state.dev_addr.get_mut().expect("fresh lock") =
                    *old.dev_addr.lock().expect("device state lock");
            }
            *state.join.get_mut().expect("fresh lock") =
                old.join.lock().expect("device state lock").clone();
            if old.profile.name == state.profile.name {
                *state.last.get_mut().expect("fresh lock") =
                    old.last.lock().expect("device state lock").clone();
            }
        }
        t.by_name.insert(state.name.clone(), id);
        t.devices[slot] = Some(Arc::new(state));
    }

    /// Device `id` deleted: no longer found by name.
    pub fn remove(&self, id: u32) {
        let mut t = self.table.write().expect("device table lock");
        if let Some(d) = t.devices.get(id as usize).cloned().flatten() {
            if t.by_name.get(&d.name) == Some(&id) {
                t.by_name.remove(&d.name);
            }
        }
    }

    pub fn id(&self, name: &str) -> Option<u32> {
        let t = self.table.read().expect("device table lock");
        t.by_name.get(name).copied()
    }

    /// Device `id`, an id [`id`](Self::id) gave (its entry outlives a
    /// delete, so a request racing one still finds it).
    pub fn get(&self, id: u32) -> Arc<DeviceState> {
        self.get_opt(id).expect("an id the table gave")
    }

    /// Device `id`'s state, if the API knows it (devices adopted at run
    /// time in a handover are not in it).
    pub fn get_opt(&self, id: u32) -> Option<Arc<DeviceState>> {
        let t = self.table.read().expect("device table lock");
        t.devices.get(id as usize).cloned().flatten()
    }

    /// Keep the values of an uplink just published.
    pub fn record(&self, id: u32, up: &Uplink) {
        let t = self.table.read().expect("device table lock");
        let Some(Some(d)) = t.devices.get(id as usize) else {
            return;
        };
        let mut last = d.last.lock().expect("device state lock");
        if last.is_empty() && !up.readings.is_empty() {
            last.resize(d.profile.device_resources.len(), None);
        }
        for r in &up.readings {
            if let Some(slot) = last.get_mut(usize::from(r.resource)) {
                *slot = Some(LastValue {
                    value: r.value.clone(),
                    origin: up.received_ns,
                });
            }
        }
    }
}
