//! The pipeline's side of devices served beyond the devices file: unknown
//! DevEUIs' JoinRequests remembered for discovery, devices from EdgeX or
//! discovery added, changed and removed (see `edgex::provisioning`).

use std::sync::Arc;

use super::Pipeline;
use crate::codec::DeviceProfile;
use crate::devices::DeviceEntry;
use crate::edgex::discovery::FoundDevice;
use crate::lorawan::Eui64;

impl Pipeline {
    /// A device from EdgeX or discovery, with its keys: served from now on.
    pub(super) fn add_device(&mut self, entry: DeviceEntry, profile: Arc<DeviceProfile>) {
        let eui = entry.dev_eui;
        let name = entry.name.clone();
        let known = self.registry.by_eui(eui).is_some();
        match self.registry.adopt(entry, profile) {
            Ok(_) if known => {}
            Ok(id) => {
                self.states.push(self.store.get(eui));
                // The API serves it too: commands, its last values.
                self.devices.put(id, self.registry.get(id));
                tracing::info!(device = %name, dev_eui = %eui, "device added; its next JoinRequest is answered");
            }
            Err(e) => tracing::error!(device = %name, error = %e, "discovered device not added"),
        }
    }

    /// A served device changed in EdgeX: applied in place (its session,
    /// counters and join state stay).
    pub(super) fn update_device(&mut self, entry: DeviceEntry, profile: Arc<DeviceProfile>) {
        let Some(id) = self.registry.by_eui(entry.dev_eui) else {
            return self.add_device(entry, profile);
        };
        let name = entry.name.clone();
        let admin = entry.admin_state;
        match self.registry.update(id, entry, profile) {
            Ok(()) => {
                self.devices.put(id, self.registry.get(id));
                tracing::info!(device = %name, ?admin, "device updated");
            }
            Err(e) => tracing::error!(device = %name, error = %e, "device update not applied"),
        }
    }

    /// A device deleted in EdgeX: its frames are unknown from now on.
    pub(super) fn remove_device(&mut self, dev_eui: Eui64) {
        if let Some(id) = self.registry.by_eui(dev_eui) {
            self.registry.remove(id);
            self.devices.remove(id);
            tracing::info!(device = %self.registry.get(id).name, "device removed");
        }
    }

    /// Remember a JoinRequest of an unknown DevEUI for discovery.
    pub(super) fn found(
        &self,
        dev_eui: Eui64,
        join_eui: Eui64,
        rx: &crate::pipeline::uplink::RxMeta,
    ) {
        let Some(d) = &self.discovery else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        d.heard(FoundDevice {
            dev_eui,
            join_eui,
            gateway: rx.gateway,
            rssi: rx.rssi,
            snr: rx.snr,
            region: self.config.site_region().name(),
            first_seen: now,
            last_seen: now,
            join_requests: 0,
        });
    }
}
