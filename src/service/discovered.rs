//! The pipeline's side of discovery: unknown DevEUIs' JoinRequests
//! remembered, admitted devices added (see `service::discovery`).

use std::sync::Arc;

use super::Pipeline;
use crate::codec::DeviceProfile;
use crate::devices::DeviceEntry;
use crate::discovery::FoundDevice;
use crate::lorawan::Eui64;

impl Pipeline {
    /// A device discovery admitted, with its AppKey: served from now on.
    pub(super) fn add_device(&mut self, entry: DeviceEntry, profile: Arc<DeviceProfile>) {
        let eui = entry.dev_eui;
        let name = entry.name.clone();
        let known = self.registry.by_eui(eui).is_some();
        match self.registry.adopt(entry, profile) {
            Ok(_) if known => {}
            Ok(_) => {
                self.states.push(self.store.get(eui));
                tracing::info!(device = %name, dev_eui = %eui, "device added; its next JoinRequest is answered");
            }
            Err(e) => tracing::error!(device = %name, error = %e, "discovered device not added"),
        }
    }

    /// Remember a JoinRequest of an unknown DevEUI for discovery.
    pub(super) fn found(&self, dev_eui: Eui64, join_eui: Eui64, rx: &crate::uplink::RxMeta) {
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
