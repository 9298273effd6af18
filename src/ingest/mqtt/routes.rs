//! Where each device heard on an application stream takes commands (its
//! network server's `command/down` topic and marshaler), kept per device so
//! that an uplink carries a shared route rather than a new allocation; and
//! which of the commands published there the broker has acknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::ingest::application::AppRoute;
use crate::lorawan::Eui64;

/// Devices remembered at most: DevEUIs beyond it (a stream naming ever new
/// devices is either misconfigured or hostile) get a route of their own per
/// uplink, which the pipeline drops for a device it does not know.
const MAX_DEVICES: usize = 65_536;

#[derive(Default)]
pub struct Routes {
    by_device: HashMap<Eui64, Arc<AppRoute>>,
}

impl Routes {
    /// The route of `dev_eui`'s uplink published on `topic`: the one kept
    /// if it is still the same, else a new one.
    pub fn of(&mut self, dev_eui: Eui64, topic: &str, payload: &[u8]) -> Option<Arc<AppRoute>> {
        let base = topic.strip_suffix("/event/up")?;
        let protobuf = payload.first() != Some(&b'{');
        if let Some(r) = self.by_device.get(&dev_eui) {
            let same = r.protobuf == protobuf
                && r.command_topic.strip_suffix("/command/down") == Some(base);
            if same {
                return Some(r.clone());
            }
        }
        let route = Arc::new(AppRoute::of(topic, payload)?);
        if self.by_device.len() < MAX_DEVICES || self.by_device.contains_key(&dev_eui) {
            self.by_device.insert(dev_eui, route.clone());
        }
        Some(route)
    }
}

/// Commands published for a network server, answered once the broker
/// acknowledges them: only then do they leave our durable queue, so a
/// command is never lost between the client and the broker (if we die in
/// between, it goes again after the restart: at least once).
///
/// The client numbers a publish (its packet id) only when it writes it,
/// in the order it was asked to publish; every publish of this client is at
/// QoS 1 (gateways' downlinks too, `None` here), and one written again
/// after a reconnect keeps its packet id.
#[derive(Default)]
pub struct Unacked {
    /// Asked to publish, not yet written: each a command id or `None`.
    asked: VecDeque<Option<u32>>,
    /// Written, not yet acknowledged: packet id → command id.
    written: HashMap<u16, Option<u32>>,
}

impl Unacked {
    /// A publish was handed to the client (`Some(id)`: a command).
    pub fn published(&mut self, command: Option<u32>) {
        self.asked.push_back(command);
    }

    /// The client wrote publish `pkid`: the oldest asked, unless it is one
    /// written before and sent again after a reconnect.
    pub fn written(&mut self, pkid: u16) {
        if self.written.contains_key(&pkid) {
            return;
        }
        if let Some(command) = self.asked.pop_front() {
            self.written.insert(pkid, command);
        }
    }

    /// The broker acknowledged publish `pkid`: the command it carried.
    pub fn acknowledged(&mut self, pkid: u16) -> Option<u32> {
        self.written.remove(&pkid).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_route_per_device_until_it_changes() {
        let mut routes = Routes::default();
        let eui = Eui64::from_u64(1);
        let topic = "application/a1/device/0000000000000001/event/up";
        let a = routes.of(eui, topic, b"{}").unwrap();
        assert_eq!(
            *a,
            AppRoute {
                command_topic: "application/a1/device/0000000000000001/command/down".into(),
                protobuf: false,
            }
        );
        assert!(Arc::ptr_eq(
            &a,
            &routes.of(eui, topic, b"{\"x\":1}").unwrap()
        ));
        // ChirpStack switched to protobuf: a new route.
        let b = routes.of(eui, topic, &[0x0a, 0x24]).unwrap();
        assert!(b.protobuf && !Arc::ptr_eq(&a, &b));
        // loraserver v3's topic has no command/down.
        assert!(routes
            .of(eui, "application/1/device/0000000000000001/rx", b"{}")
            .is_none());
    }

    #[test]
    fn a_command_is_answered_by_its_own_puback() {
        let mut u = Unacked::default();
        u.published(Some(7)); // a command
        u.published(None); // a gateway's downlink
        u.published(Some(8));
        u.written(1);
        u.written(2);
        assert_eq!(u.acknowledged(2), None);
        // Reconnect: 1 is written again (same packet id), then 3 for the next.
        u.written(1);
        u.written(3);
        assert_eq!(u.acknowledged(3), Some(8));
        assert_eq!(u.acknowledged(1), Some(7));
        assert_eq!(u.acknowledged(1), None);
    }
}
