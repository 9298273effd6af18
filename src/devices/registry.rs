//! The devices of the devices file, ready for the uplink path: each with
//! its prepared session crypto and compiled codec, found by DevAddr (a
//! sorted list, binary-searched: no hashing of attacker-chosen addresses)
//! or by DevEUI.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::file::{Activation, AdminState, DeviceClass, DeviceEntry, DevicesError};
use super::rx_windows::RxWindows;
use crate::codec::{Codec, DeviceProfile};
use crate::lorawan::region::{MacVersionName, RegionName};
use crate::lorawan::{AesKey, DevAddr, Eui64, FcntPolicy, SessionCrypto};

/// A device ready for the uplink path.
#[derive(Debug)]
pub struct Device {
    pub name: Arc<str>,
    pub dev_eui: Eui64,
    pub dev_addr: Option<DevAddr>,
    /// Prepared ABP session; `None` for application-stream-only devices.
    pub crypto: Option<SessionCrypto>,
    /// Shared by every device of the same profile and codec kind.
    pub codec: Arc<Codec>,
    pub fcnt_policy: FcntPolicy,
    pub admin_state: AdminState,
    pub rx_windows: RxWindows,
    /// `None`: the site's region.
    pub region: Option<RegionName>,
    pub mac_version: MacVersionName,
    /// ADR wanted for this device (the devices file's `adr`).
    pub adr: bool,
    /// When it listens: class C devices get their commands at once.
    pub class: DeviceClass,
    /// Its codec variables, as the JSON object a JavaScript codec gets.
    pub variables: Arc<str>,
    /// OTAA devices: what their joins are checked and answered with.
    pub otaa: Option<OtaaKeys>,
    /// OTAA: the session of the last JoinAccept, until the device's first
    /// uplink under it (then it replaces `crypto`). Boxed: two AES key
    /// schedules are about 1.4 kB, and most devices have none pending.
    pub pending: Option<Box<(DevAddr, SessionCrypto)>>,
    /// Deleted at run time (core-metadata): no longer found by EUI, address
    /// or name; its id stays taken.
    pub removed: bool,
}

/// `text` as an `Arc<str>`, the one already in `seen` when equal.
fn one_copy(seen: &mut std::collections::HashSet<Arc<str>>, text: String) -> Arc<str> {
    if let Some(s) = seen.get(text.as_str()) {
        return s.clone();
    }
    let s: Arc<str> = text.into();
    seen.insert(s.clone());
    s
}

/// An OTAA device's JoinEUI and root key.
#[derive(Debug, Clone, Copy)]
pub struct OtaaKeys {
    pub join_eui: Eui64,
    pub app_key: AesKey,
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
        // Exactly: a `Vec` grown by doubling keeps up to half its room unused.
        reg.devices.reserve_exact(entries.len());
        let mut names = std::collections::HashSet::new();
        // One compiled codec per (profile, kind), shared by its devices.
        let mut compiled: Vec<(String, crate::codec::CodecKind, Arc<Codec>)> = Vec::new();
        // Equal codec variables (most devices have none: `{}`) share one string.
        let mut variables = std::collections::HashSet::new();
        for e in entries {
            let profile =
                profiles
                    .get(e.profile.as_str())
                    .ok_or_else(|| DevicesError::UnknownProfile {
                        device: e.name.clone(),
                        profile: e.profile.clone(),
                    })?;
            let shared = compiled
                .iter()
                .find(|(p, k, _)| *p == e.profile && *k == e.codec)
                .map(|(_, _, c)| c.clone());
            let codec = match shared {
                Some(c) => c,
                None => {
                    let c =
                        Arc::new(Codec::compile(profile.clone(), e.codec).map_err(|source| {
                            DevicesError::Codec {
                                device: e.name.clone(),
                                source,
                            }
                        })?);
                    compiled.push((e.profile.clone(), e.codec, c.clone()));
                    c
                }
            };
            let id = reg.devices.len() as u32;
            if !names.insert(e.name.clone()) || reg.by_eui.insert(e.dev_eui, id).is_some() {
                return Err(DevicesError::Duplicate(e.name));
            }
            let bad = |message| DevicesError::Activation {
                device: e.name.clone(),
                message,
            };
            let otaa = match (e.activation, e.join_eui, e.app_key) {
                (Activation::Otaa, Some(join_eui), Some(app_key)) => {
                    if e.dev_addr.is_some() || e.nwk_s_key.is_some() || e.app_s_key.is_some() {
                        return Err(bad("an OTAA device gets its DevAddr and session keys by joining: remove devAddr, nwkSKey and appSKey"));
                    }
                    Some(OtaaKeys { join_eui, app_key })
                }
                (Activation::Otaa, _, _) => {
                    return Err(bad("an OTAA device needs joinEui and appKey"))
                }
                (Activation::Abp, None, None) => None,
                (Activation::Abp, _, _) => {
                    return Err(bad(
                        "joinEui and appKey are for OTAA devices: add activation: otaa",
                    ))
                }
            };
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
                admin_state: e.admin_state,
                rx_windows: e.rx_windows,
                region: e.region,
                mac_version: e.mac_version,
                adr: e.adr,
                class: e.class,
                variables: one_copy(
                    &mut variables,
                    serde_json::to_string(&e.variables).expect("strings"),
                ),
                // An OTAA device rejoins when it reboots: no reset heuristics.
                fcnt_policy: if otaa.is_some() {
                    FcntPolicy::Strict
                } else {
                    e.fcnt_policy
                },
                otaa,
                pending: None,
                removed: false,
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

    /// Give device `id` a session (ABP keys that arrived through the
    /// secret API, or an OTAA device's joined session), replacing any it had.
    pub fn set_session(&mut self, id: u32, addr: DevAddr, nwk: &AesKey, app: &AesKey) {
        let d = &mut self.devices[id as usize];
        d.dev_addr = Some(addr);
        d.crypto = Some(SessionCrypto::new(nwk, app));
        self.index_addrs(id);
    }

    /// Give OTAA device `id` the session of the JoinAccept just sent: its
    /// uplinks are tried under it too, until one verifies (see [`Self::activate`]).
    pub fn set_pending(&mut self, id: u32, addr: DevAddr, nwk: &AesKey, app: &AesKey) {
        self.devices[id as usize].pending = Some(Box::new((addr, SessionCrypto::new(nwk, app))));
        self.index_addrs(id);
    }

    /// Forget device `id`'s pending session (another edge's join state
    /// replaced it: see the pipeline's `take_join_state`).
    pub fn clear_pending(&mut self, id: u32) {
        if self.devices[id as usize].pending.take().is_some() {
            self.index_addrs(id);
        }
    }

    /// The device used its pending session: it is its session now.
    pub fn activate(&mut self, id: u32) -> bool {
        let d = &mut self.devices[id as usize];
        let Some((addr, crypto)) = d.pending.take().map(|b| *b) else {
            return false;
        };
        d.dev_addr = Some(addr);
        d.crypto = Some(crypto);
        self.index_addrs(id);
        true
    }

    /// Whether `addr` is in use by a session, active or pending.
    pub fn addr_in_use(&self, addr: DevAddr) -> bool {
        self.by_addr(addr).next().is_some()
    }

    /// Put device `id`'s addresses (active, pending) in the DevAddr index.
    fn index_addrs(&mut self, id: u32) {
        self.by_addr.retain(|(_, i)| *i != id);
        let d = &self.devices[id as usize];
        let addrs = d.dev_addr.filter(|_| d.crypto.is_some()).into_iter();
        for a in addrs.chain(d.pending.as_ref().map(|p| p.0)) {
            self.by_addr.push((a, id));
        }
        self.by_addr.sort_unstable();
    }

    pub fn by_name(&self, name: &str) -> Option<u32> {
        self.devices
            .iter()
            .position(|d| !d.removed && &*d.name == name)
            .map(|i| i as u32)
    }

    /// Give device `id` what `e` says (profile, codec, policies, admin
    /// state: a core-metadata update), keeping its session and join keys
    /// unless `e` brings new ones.
    pub fn update(
        &mut self,
        id: u32,
        mut e: DeviceEntry,
        profile: Arc<DeviceProfile>,
    ) -> Result<(), DevicesError> {
        if let (None, Some(k)) = (e.app_key, self.devices[id as usize].otaa) {
            if e.activation == Activation::Otaa {
                e.app_key = Some(k.app_key);
                e.join_eui = e.join_eui.or(Some(k.join_eui));
            }
        }
        if e.nwk_s_key.is_none() {
            // No new session: the one it has stays (below).
            e.dev_addr = None;
        }
        let mut one = Registry::build(
            vec![e],
            &BTreeMap::from([(profile.name.clone(), (*profile).clone())]),
        )?;
        let mut d = one.devices.pop().expect("built one");
        let old = &mut self.devices[id as usize];
        if d.crypto.is_none() {
            d.crypto = old.crypto.take();
            d.dev_addr = old.dev_addr;
        }
        if d.otaa.is_none() {
            d.otaa = old.otaa;
        }
        d.pending = old.pending.take();
        *old = d;
        self.index_addrs(id);
        Ok(())
    }

    /// Stop serving device `id` (deleted in core-metadata).
    pub fn remove(&mut self, id: u32) {
        let d = &mut self.devices[id as usize];
        d.removed = true;
        let eui = d.dev_eui;
        self.by_eui.remove(&eui);
        self.by_addr.retain(|(_, i)| *i != id);
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
