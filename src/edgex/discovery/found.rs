//! Devices heard but not known: a bounded table by DevEUI, fed by the
//! JoinRequests of unknown DevEUIs (never a key: a JoinRequest has none).

use std::collections::BTreeMap;

use crate::lorawan::region::RegionName;
use crate::lorawan::Eui64;

/// One device found by its JoinRequests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundDevice {
    pub dev_eui: Eui64,
    pub join_eui: Eui64,
    /// The gateway that heard it best, last time.
    pub gateway: Eui64,
    pub rssi: i32,
    pub snr: f32,
    pub region: RegionName,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
    pub join_requests: u32,
}

impl FoundDevice {
    /// Its `protocols.lorawan` properties, as watchers match them (EUIs in
    /// lower-case hex).
    pub fn properties(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("DevEUI", self.dev_eui.to_string()),
            ("JoinEUI", self.join_eui.to_string()),
            ("Gateway", self.gateway.to_string()),
            ("Region", self.region.to_string()),
            ("Activation", "OTAA".to_string()),
            ("Class", "A".to_string()),
        ])
    }
}

/// The table, at most `max` devices: the one heard longest ago goes first.
#[derive(Debug)]
pub struct Found {
    devices: BTreeMap<Eui64, FoundDevice>,
    max: usize,
}

impl Found {
    pub fn new(max: usize) -> Self {
        Self {
            devices: BTreeMap::new(),
            max: max.max(1),
        }
    }

    /// A JoinRequest of an unknown DevEUI, heard now.
    pub fn heard(&mut self, d: FoundDevice) {
        if let Some(old) = self.devices.get_mut(&d.dev_eui) {
            old.join_eui = d.join_eui;
            old.gateway = d.gateway;
            old.rssi = d.rssi;
            old.snr = d.snr;
            old.region = d.region;
            old.last_seen = d.last_seen;
            old.join_requests = old.join_requests.saturating_add(1);
            return;
        }
        if self.devices.len() >= self.max {
            let oldest = self
                .devices
                .values()
                .min_by_key(|d| d.last_seen)
                .map(|d| d.dev_eui);
            if let Some(e) = oldest {
                self.devices.remove(&e);
            }
        }
        self.devices.insert(
            d.dev_eui,
            FoundDevice {
                join_requests: 1,
                ..d
            },
        );
    }

    /// Every device found, by DevEUI.
    pub fn all(&self) -> Vec<FoundDevice> {
        self.devices.values().cloned().collect()
    }

    /// Forget a device (it was added).
    pub fn remove(&mut self, eui: Eui64) {
        self.devices.remove(&eui);
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(eui: u64, seen: u64) -> FoundDevice {
        FoundDevice {
            dev_eui: Eui64::from_u64(eui),
            join_eui: Eui64::from_u64(9),
            gateway: Eui64::from_u64(7),
            rssi: -80,
            snr: 5.0,
            region: RegionName::EU868,
            first_seen: seen,
            last_seen: seen,
            join_requests: 0,
        }
    }

    #[test]
    fn bounded_and_the_stalest_goes() {
        let mut f = Found::new(2);
        f.heard(found(1, 10));
        f.heard(found(2, 20));
        f.heard(found(1, 30)); // heard again: now the freshest
        f.heard(found(3, 40));
        let euis: Vec<u64> = f
            .all()
            .iter()
            .map(|d| u64::from_be_bytes(d.dev_eui.0))
            .collect();
        assert_eq!(euis, [1, 3]);
        assert_eq!(f.all()[0].join_requests, 2);
        assert_eq!(f.all()[0].first_seen, 10);
    }

    #[test]
    fn properties_are_what_watchers_match() {
        let p = found(0x70b3_d57e_d000_0001, 1).properties();
        assert_eq!(p["DevEUI"], "70b3d57ed0000001");
        assert_eq!(p["Region"], "EU868");
        assert_eq!(p["Activation"], "OTAA");
    }
}
