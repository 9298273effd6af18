//! Getting uplinks in: the Semtech UDP packet forwarder ([`udp`]), gateway
//! bridge MQTT ([`gateway`] formats over [`mqtt`]), application-integration
//! MQTT ([`application`]); and de-duplication across gateways ([`dedup`]).
//! Every source turns its input into an [`IngestEvent`] or a counted
//! rejection; none of them decrypts anything.

pub mod application;
pub mod dedup;
pub mod gateway;
pub mod kicked;
pub mod mqtt;
pub mod mqtt_refusal;
pub mod station;
pub mod udp;
pub mod udp_gate;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::metrics::Source;
use crate::uplink::RxMeta;

/// One reception, handed to the uplink pipeline.
#[derive(Debug)]
pub enum IngestEvent {
    /// A raw PHYPayload heard by a gateway.
    Phy {
        phy: Vec<u8>,
        rx: RxMeta,
        source: Source,
        ack: Option<Ack>,
    },
    /// An uplink a network server already decoded.
    App(application::AppUplink, Option<Ack>),
    /// A gateway's answer to one of our downlinks.
    TxAck(crate::downlink::TxAck),
}

/// The acknowledgement of an MQTT QoS 1 message, sent by the pipeline only
/// once the uplink it carried is durable (journaled and its counter saved)
/// or was rejected. Until then the broker keeps the message and redelivers it
/// if we die: nothing acknowledged is lost.
///
/// It keeps only the packet id, not the message: a frame held in the
/// de-duplication window does not hold its MQTT payload too.
pub struct Ack {
    client: rumqttc::AsyncClient,
    pkid: u16,
    qos: rumqttc::QoS,
}

/// Acks that found the client's request queue full and were sent by a task
/// once it had room, and acks that could not be sent at all (the client is
/// gone: the broker redelivers those messages to our persistent session).
/// Process-wide, like the MQTT clients they count.
pub static ACKS_DEFERRED: AtomicU64 = AtomicU64::new(0);
pub static ACKS_LOST: AtomicU64 = AtomicU64::new(0);
/// When the last "ack not sent" line was logged (Unix s): one per 10 s.
static ACK_WARNED_AT: AtomicU64 = AtomicU64::new(0);

impl Ack {
    pub fn new(client: rumqttc::AsyncClient, publish: &rumqttc::Publish) -> Self {
        Self {
            client,
            pkid: publish.pkid,
            qos: publish.qos,
        }
    }

    fn publish(&self) -> rumqttc::Publish {
        let mut p = rumqttc::Publish::new("", self.qos, Vec::new());
        p.pkid = self.pkid;
        p
    }

    /// Queue the PUBACK. A full request queue never drops it: a task waits
    /// for room (the ingest reads no more from the broker meanwhile).
    pub fn send(self) {
        match self.client.try_ack(&self.publish()) {
            Ok(()) => {}
            Err(rumqttc::ClientError::TryRequest(rumqttc::Request::PubAck(_)))
                if tokio::runtime::Handle::try_current().is_ok() =>
            {
                ACKS_DEFERRED.fetch_add(1, Relaxed);
                tokio::spawn(async move {
                    if let Err(e) = self.client.ack(&self.publish()).await {
                        lost(&e);
                    }
                });
            }
            Err(e) => lost(&e),
        }
    }
}

fn lost(e: &rumqttc::ClientError) {
    let n = ACKS_LOST.fetch_add(1, Relaxed) + 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = ACK_WARNED_AT.load(Relaxed);
    if now >= last + 10
        && ACK_WARNED_AT
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    {
        tracing::warn!(error = %e, lost_so_far = n, "MQTT ack not sent (the client is gone); the broker will redeliver (idempotent)");
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ack(pkid {})", self.pkid)
    }
}

/// Send every ack in `acks`.
pub fn ack_all(acks: impl IntoIterator<Item = Ack>) {
    acks.into_iter().for_each(Ack::send);
}

/// MQTT topic filter matching (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn filters() {
        assert!(topic_matches(
            "gateway/+/event/up",
            "gateway/0016c001f153a14c/event/up"
        ));
        assert!(topic_matches(
            "eu868/gateway/+/event/up",
            "eu868/gateway/x/event/up"
        ));
        assert!(!topic_matches(
            "gateway/+/event/up",
            "gateway/x/event/stats"
        ));
        assert!(!topic_matches(
            "gateway/+/event/up",
            "gateway/x/event/up/extra"
        ));
        assert!(topic_matches(
            "application/#",
            "application/1/device/2/event/up"
        ));
        assert!(!topic_matches(
            "application/+/device/+/event/up",
            "application/1/device/2/event/join"
        ));
    }
}
