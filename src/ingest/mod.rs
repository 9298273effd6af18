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
pub struct Ack {
    client: rumqttc::AsyncClient,
    publish: rumqttc::Publish,
}

impl Ack {
    pub fn new(client: rumqttc::AsyncClient, publish: rumqttc::Publish) -> Self {
        Self { client, publish }
    }
    pub fn send(self) {
        if let Err(e) = self.client.try_ack(&self.publish) {
            tracing::warn!(error = %e, "MQTT ack not sent; the broker will redeliver (idempotent)");
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ack(pkid {})", self.publish.pkid)
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
