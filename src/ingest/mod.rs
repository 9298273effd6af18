//! Getting frames in, one module per way they arrive, each holding both
//! directions: the Semtech UDP packet forwarder ([`udp`]), the ChirpStack
//! gateway bridge ([`bridge`]'s formats over the [`mqtt`] client), LoRa
//! Basics Station ([`station`]), and a network server's application stream
//! ([`application`], also over [`mqtt`]). Every source turns its input into
//! an [`IngestEvent`] or a counted rejection; none of them decrypts anything.
//! De-duplication across gateways is the pipeline's (`pipeline::dedup`).

pub mod application;
pub mod bridge;
pub mod mqtt;
pub mod station;
pub mod udp;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use crate::metrics::{ack_written, ACKS_DEFERRED, ACKS_LOST, ACKS_PENDING};

use crate::metrics::Source;
use crate::pipeline::uplink::RxMeta;

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
/// It is only the packet id, handed back to the MQTT ingest task that
/// received the message ([`AckQueue`]): a frame held in the de-duplication
/// window does not hold its MQTT payload, and a backlog's acks waiting for
/// the client cost two bytes each, never a dropped ack.
pub struct Ack {
    to: tokio::sync::mpsc::UnboundedSender<PendingAck>,
    ack: PendingAck,
}

/// A PUBACK (or PUBREC) to send: packet id and QoS of the message.
#[derive(Debug, Clone, Copy)]
pub struct PendingAck {
    pub pkid: u16,
    pub qos: rumqttc::QoS,
}

impl PendingAck {
    /// The minimal `Publish` rumqttc's `try_ack` reads (its QoS and id).
    pub fn publish(self) -> rumqttc::Publish {
        let mut p = rumqttc::Publish::new("", self.qos, Vec::new());
        p.pkid = self.pkid;
        p
    }
}

/// When the last "ack not sent" line was logged (Unix s): one per 10 s.
static ACK_WARNED_AT: AtomicU64 = AtomicU64::new(0);

impl Ack {
    pub fn new(
        to: tokio::sync::mpsc::UnboundedSender<PendingAck>,
        publish: &rumqttc::Publish,
    ) -> Self {
        Self {
            to,
            ack: PendingAck {
                pkid: publish.pkid,
                qos: publish.qos,
            },
        }
    }

    /// Hand the ack to the ingest task, which queues it on its client.
    pub fn send(self) {
        if self.to.send(self.ack).is_err() {
            lost("the MQTT ingest stopped");
        }
    }
}

/// The MQTT ingest task's acks: received from the pipeline, queued on the
/// client as its request queue has room, the rest kept here in order.
pub struct AckQueue {
    pub rx: tokio::sync::mpsc::UnboundedReceiver<PendingAck>,
    waiting: std::collections::VecDeque<PendingAck>,
}

impl AckQueue {
    pub fn new() -> (tokio::sync::mpsc::UnboundedSender<PendingAck>, Self) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let waiting = std::collections::VecDeque::new();
        (tx, Self { rx, waiting })
    }

    /// Queue `a` and whatever waits before it on `client`, as far as its
    /// request queue takes them.
    pub fn push(&mut self, a: PendingAck, client: &rumqttc::AsyncClient) {
        ACKS_PENDING.fetch_add(1, Relaxed);
        self.waiting.push_back(a);
        self.flush(client);
        if !self.waiting.is_empty() {
            ACKS_DEFERRED.fetch_add(1, Relaxed);
        }
    }

    /// Queue waiting acks on `client` until its request queue is full.
    pub fn flush(&mut self, client: &rumqttc::AsyncClient) {
        while let Some(a) = self.waiting.front() {
            match client.try_ack(&a.publish()) {
                Ok(()) => {
                    self.waiting.pop_front();
                }
                // Full: the event loop sends some when next polled.
                Err(rumqttc::ClientError::TryRequest(_)) => return,
                Err(e) => {
                    lost(&e.to_string());
                    ack_written();
                    self.waiting.pop_front();
                }
            }
        }
        if self.waiting.capacity() > 4096 {
            self.waiting.shrink_to(1024);
        }
    }

    /// Acks not yet on the client.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

fn lost(e: &str) {
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
        write!(f, "Ack(pkid {})", self.ack.pkid)
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
