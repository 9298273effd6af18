//! What the customer already put on the EdgeX message bus, as the provider
//! sees it there: closes the last gap between "EdgeX confirmed" and "the
//! provider knows it".
//!
//! The customer reports the counters EdgeX confirmed (every 5 ms), but an
//! event the broker acknowledged in the moment before a crash may not have
//! been reported yet; published again by the provider, it would reach the
//! bus twice. So a provider whose events go over the message bus watches
//! the held devices' event topics (`{prefix}/events/device/+/+/{device}/#`)
//! and remembers the event ids it saw. At takeover it first makes sure the
//! broker has passed it everything (a marker published to itself comes
//! back), then moves each device's starting counter past the frames whose
//! ids it saw: event ids are UUIDv5 of DevEUI, counter epoch and FCnt, so
//! the frames after the reported counter can be checked one by one.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Packet, QoS};
use uuid::Uuid;

use crate::config::Config;
use crate::lorawan::{Eui64, FcntState};

/// Event ids remembered (the oldest go first).
const REMEMBERED: usize = 8192;
/// How far past a reported counter the frames are checked.
const LOOK_AHEAD: u32 = 64;
/// How long the marker may take to come back.
const MARKER_WITHIN: Duration = Duration::from_millis(300);

#[derive(Default)]
struct Seen {
    ids: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    devices: HashSet<String>,
}

pub struct BusWatch {
    client: AsyncClient,
    prefix: String,
    marker_topic: String,
    seen: Mutex<Seen>,
    marker: tokio::sync::Notify,
}

impl BusWatch {
    /// Connect to `config`'s message bus (events go there) and watch it
    /// until the returned watch is dropped with the service's tasks.
    pub fn start(config: &Config, tasks: &mut Vec<tokio::task::JoinHandle<()>>) -> Arc<Self> {
        let c = &config.edgex.message_bus;
        let base = if c.client_id.is_empty() {
            format!("{}-bus", config.service.name)
        } else {
            c.client_id.clone()
        };
        let client_id = format!("{base}-watch");
        let mut opts = crate::edgex::bus::options(c, &client_id);
        opts.set_clean_session(true);
        opts.set_max_packet_size(1 << 20, 1 << 16);
        let (client, mut el) = AsyncClient::new(opts, 256);
        let prefix = c.base_topic_prefix.clone();
        let watch = Arc::new(Self {
            marker_topic: format!("{prefix}/handover/marker/{client_id}"),
            client,
            prefix,
            seen: Mutex::new(Seen::default()),
            marker: tokio::sync::Notify::new(),
        });
        let w = watch.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => w.subscribe_all(),
                    Ok(Event::Incoming(Packet::Publish(p))) => w.heard(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "handover bus watch: reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
        watch
    }

    fn topic(&self, device: &str) -> String {
        format!(
            "{}/events/device/+/+/{}/#",
            self.prefix,
            crate::edgex::event::encode_segment(device)
        )
    }

    fn subscribe_all(&self) {
        let devices: Vec<String> = self
            .seen
            .lock()
            .expect("seen")
            .devices
            .iter()
            .cloned()
            .collect();
        let _ = self
            .client
            .try_subscribe(self.marker_topic.clone(), QoS::AtLeastOnce);
        for d in devices {
            let _ = self.client.try_subscribe(self.topic(&d), QoS::AtLeastOnce);
        }
    }

    /// Watch these devices' events (by name) from now on.
    pub fn watch(&self, names: impl IntoIterator<Item = String>) {
        let mut fresh = Vec::new();
        {
            let mut s = self.seen.lock().expect("seen");
            for n in names {
                if s.devices.insert(n.clone()) {
                    fresh.push(n);
                }
            }
        }
        for n in fresh {
            let _ = self.client.try_subscribe(self.topic(&n), QoS::AtLeastOnce);
        }
    }

    fn heard(&self, topic: &str, payload: &[u8]) {
        if topic == self.marker_topic {
            self.marker.notify_waiters();
            return;
        }
        let id = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v["payload"]["event"]["id"].as_str().map(str::to_owned))
            .and_then(|s| Uuid::parse_str(&s).ok());
        let Some(id) = id else { return };
        let mut s = self.seen.lock().expect("seen");
        if s.ids.insert(id) {
            s.order.push_back(id);
            if s.order.len() > REMEMBERED {
                if let Some(old) = s.order.pop_front() {
                    s.ids.remove(&old);
                }
            }
        }
    }

    /// Wait (bounded) until the broker has passed on everything it had
    /// before now: a marker published to ourselves comes back after it.
    pub async fn settle(&self) -> bool {
        let back = self.marker.notified();
        tokio::pin!(back);
        back.as_mut().enable();
        if self
            .client
            .publish(
                self.marker_topic.clone(),
                QoS::AtLeastOnce,
                false,
                Vec::new(),
            )
            .await
            .is_err()
        {
            return false;
        }
        tokio::time::timeout(MARKER_WITHIN, back).await.is_ok()
    }

    /// Each device's counter moved past the frames after it whose events
    /// were seen on the bus.
    pub fn advance(&self, after: &[(Eui64, FcntState)]) -> Vec<(Eui64, FcntState)> {
        let s = self.seen.lock().expect("seen");
        after
            .iter()
            .map(|&(eui, state)| (eui, advanced(&s.ids, eui, state)))
            .collect()
    }
}

/// `state` moved to the last frame within [`LOOK_AHEAD`] after it whose
/// event id is in `seen`.
fn advanced(seen: &HashSet<Uuid>, eui: Eui64, state: FcntState) -> FcntState {
    let hex = eui.to_string();
    let from = state.last.map_or(0, |f| f.saturating_add(1));
    let mut out = state;
    for fcnt in from..from.saturating_add(LOOK_AHEAD) {
        if seen.contains(&crate::edgex::event::event_id(&hex, state.epoch, fcnt)) {
            out = FcntState {
                last: Some(fcnt),
                epoch: state.epoch,
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_moves_past_the_frames_seen_on_the_bus_only() {
        let eui = Eui64::from_u64(0x70b3d57ed0000001);
        let hex = eui.to_string();
        let id = |epoch, fcnt| crate::edgex::event::event_id(&hex, epoch, fcnt);
        let seen: HashSet<Uuid> = [id(0, 11), id(0, 12), id(0, 14), id(1, 13)].into();
        let at = |fcnt| FcntState {
            last: Some(fcnt),
            epoch: 0,
        };
        // 11 and 12 seen, 13 lost over the air, 14 seen: after 14.
        assert_eq!(advanced(&seen, eui, at(10)), at(14));
        assert_eq!(
            advanced(&seen, eui, at(14)),
            at(14),
            "nothing after it seen"
        );
        // Another epoch's ids do not count.
        assert_eq!(
            advanced(
                &seen,
                eui,
                FcntState {
                    last: Some(20),
                    epoch: 1
                }
            ),
            FcntState {
                last: Some(20),
                epoch: 1
            }
        );
        // No frame reported yet: from FCnt 0.
        let seen: HashSet<Uuid> = [id(0, 0), id(0, 1)].into();
        assert_eq!(advanced(&seen, eui, FcntState::default()), at(1));
    }
}
