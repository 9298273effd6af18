//! The EdgeX message bus over MQTT: zero-loss event delivery (the v4
//! default path to core-data) and the bus requests a device service answers.
//!
//! Events: each outbox record is published on
//! `{prefix}/events/device/{service}/{profile}/{device}/{source}` inside a v4
//! `MessageEnvelope` whose `payload` is the `AddEventRequest` as a JSON
//! object. Records are pipelined (up to `MaxInFlight` unacknowledged) and the
//! outbox cursor only moves over a prefix the broker acknowledged (PUBACK at
//! QoS 1). A lost connection drops the session: a fresh one starts again at
//! the cursor, so an event may be published twice but never lost; its
//! deterministic id makes the copy harmless at core-data.
//!
//! Requests: topics in [`Bus::subscriptions`] are forwarded to a channel,
//! and replies from another channel are published (QoS 0, as EdgeX does).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, Notify};

use super::outbox::{dead_letter, split};
use crate::config::MessageBusConfig;
use crate::metrics::Metrics;
use crate::store::outbox::Journal;

/// A message to or from the bus (request handling).
#[derive(Debug, Clone)]
pub struct BusMessage {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Where messages of our own go out on the bus (system events, telemetry),
/// when EdgeX delivery is on the bus: the bus task publishes them.
#[derive(Clone)]
pub struct BusOut {
    pub out: tokio::sync::mpsc::Sender<BusMessage>,
    pub prefix: String,
}

impl BusOut {
    /// `payload` in a v4 message envelope, on `topic` (under the prefix).
    pub async fn publish(&self, topic: &str, payload: serde_json::Value) -> bool {
        let envelope = serde_json::json!({
            "apiVersion": "v3", "receivedTopic": "", "correlationID": uuid::Uuid::new_v4(),
            "requestID": uuid::Uuid::new_v4(), "errorCode": 0,
            "payload": payload, "contentType": "application/json",
        });
        let m = BusMessage {
            topic: format!("{}/{topic}", self.prefix),
            payload: serde_json::to_vec(&envelope).expect("JSON"),
        };
        self.out.send(m).await.is_ok()
    }
}

/// The v4 `MessageEnvelope`, as written to and read from the bus.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<'a, P> {
    pub api_version: &'a str,
    #[serde(default)]
    pub received_topic: &'a str,
    #[serde(rename = "correlationID", default)]
    pub correlation_id: &'a str,
    #[serde(rename = "requestID", default)]
    pub request_id: &'a str,
    #[serde(default)]
    pub error_code: u8,
    pub payload: P,
    pub content_type: &'a str,
}

/// The topic core-data's REST path `/api/v3/event/{rest}` has on the bus
/// (the name segments stay percent-encoded, as EdgeX encodes them).
pub fn event_topic(prefix: &str, rest_path: &str) -> Option<String> {
    let rest = rest_path.strip_prefix("/api/v3/event/")?;
    Some(format!("{prefix}/events/device/{rest}"))
}

/// What delivery needs from an `AddEventRequest` body: its `requestId`
/// (the envelope's correlation id, and the id a NATS stream de-duplicates
/// by) and the event's `origin` (its frame's reception, for the latency to
/// the broker's acknowledgement), read in one pass.
pub fn event_head(body: &[u8]) -> Result<(&RawValue, &str, Option<i64>), serde_json::Error> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(rename = "requestId", borrow, default)]
        request_id: &'a str,
        #[serde(default)]
        event: Option<EventHead>,
    }
    #[derive(Deserialize)]
    struct EventHead {
        #[serde(default)]
        origin: Option<i64>,
    }
    let payload: &RawValue = serde_json::from_slice(body)?;
    let head: Head = serde_json::from_str(payload.get())?;
    Ok((payload, head.request_id, head.event.and_then(|e| e.origin)))
}

/// The message-bus envelope around an `AddEventRequest` body, and the
/// event's `origin`.
pub fn envelope(body: &[u8]) -> Result<(Vec<u8>, Option<i64>), serde_json::Error> {
    let (payload, request_id, origin) = event_head(body)?;
    Ok((envelope_of(payload, request_id)?, origin))
}

/// The envelope around an `AddEventRequest` whose head was read already.
pub fn envelope_of(payload: &RawValue, request_id: &str) -> Result<Vec<u8>, serde_json::Error> {
    let env = Envelope {
        api_version: "v3",
        received_topic: "",
        correlation_id: request_id,
        request_id,
        error_code: 0,
        payload,
        content_type: "application/json",
    };
    let mut out = Vec::with_capacity(payload.get().len() + 192);
    serde_json::to_writer(&mut out, &env)?;
    Ok(out)
}

/// A connection to the message bus `c` names, as client `client_id`.
pub fn options(c: &crate::config::MessageBusConfig, client_id: &str) -> rumqttc::MqttOptions {
    crate::ingest::mqtt::options(
        client_id,
        &c.host,
        c.port(),
        c.keep_alive,
        c.username.as_deref().zip(c.password.as_deref()),
        c.tls.as_ref(),
    )
}

/// The bus delivery task's inputs.
pub struct Bus {
    pub config: MessageBusConfig,
    pub journal: Arc<Mutex<Journal>>,
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    pub dead_letters: PathBuf,
    /// Request topics to subscribe to; what arrives on them goes to `requests`.
    pub subscriptions: Vec<String>,
    pub requests: Option<mpsc::Sender<BusMessage>>,
    pub replies: Option<mpsc::Receiver<BusMessage>>,
}

/// One event published and not yet acknowledged.
struct Slot {
    seq: u64,
    pkid: Option<u16>,
    done: bool,
    /// Its frame's reception (Unix ns), for the latency to the broker's ack.
    received_ns: Option<i64>,
}

/// What one connection has in flight. Publishes leave the event loop in the
/// order they were issued, so `issued` maps each outgoing packet id to its
/// record (or to a reply, `None`).
#[derive(Default)]
struct Session {
    slots: VecDeque<Slot>,
    issued: VecDeque<Option<u64>>,
    last_issued: u64,
    cursor: super::outbox::Cursor,
}

impl Bus {
    /// Deliver until the task is aborted, reconnecting with backoff.
    pub async fn run(mut self) {
        let c = &self.config;
        let mut opts = options(c, &c.client_id);
        opts.set_clean_session(true);
        opts.set_inflight(c.max_in_flight);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let cap = usize::from(c.max_in_flight) * 2 + 32;
        let mut backoff = Duration::from_millis(100);
        let mut kicks = crate::ingest::mqtt::kicked::KickWatch::default();
        loop {
            let (client, eventloop) = AsyncClient::new(opts.clone(), cap);
            // The CONNACK follows the start within a round trip.
            let started = std::time::Instant::now();
            let (why, was_up) = self.session(client, eventloop).await;
            self.metrics.bus_reconnects.fetch_add(1, Relaxed);
            if was_up {
                backoff = Duration::from_millis(100);
                kicks.connected(started);
            }
            if kicks.lost(std::time::Instant::now()) {
                self.metrics.bus_client_id_conflicts.fetch_add(1, Relaxed);
                tracing::error!(client_id = %self.config.client_id, host = %self.config.host, port = self.config.port(),
                    "the broker keeps closing the message-bus connection right after accepting it: \
                     another MQTT client is probably using this client id (Edgex.MessageBus.ClientId)");
            }
            tracing::warn!(host = %self.config.host, port = self.config.port(), error = %why, retry_in = ?backoff,
                "message bus unavailable; events wait in the outbox");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn qos(&self) -> QoS {
        rumqttc::qos(self.config.qos).unwrap_or(QoS::AtLeastOnce)
    }

    /// One connection, until it fails. Returns why, and whether it had come up.
    async fn session(&mut self, client: AsyncClient, mut el: EventLoop) -> (String, bool) {
        let mut s = Session {
            last_issued: self.journal.lock().expect("journal lock").delivered(),
            ..Session::default()
        };
        let mut connected = false;
        let max = usize::from(self.config.max_in_flight);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            // Keep the pipe full: refill whenever half of it is acknowledged;
            // a wake-up or the tick only brings the loop back here.
            if connected && s.slots.len() <= max / 2 {
                self.fill(&client, &mut s, max);
            }
            let room = connected && s.slots.len() <= max / 2;
            tokio::select! {
                ev = el.poll() => match ev {
                    Err(e) => {
                        self.settle(&mut s, true);
                        if !connected {
                            let (kind, why) =
                                crate::ingest::mqtt::refusal::classify(&e, "Edgex.MessageBus");
                            self.metrics.bus_connect_failures[kind.index()].fetch_add(1, Relaxed);
                            return (format!("could not connect ({}): {why}", kind.as_str()), false);
                        }
                        return (e.to_string(), connected);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        tracing::info!(host = %self.config.host, port = self.config.port(), "message bus connected");
                        for t in &self.subscriptions {
                            if let Err(e) = client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                                tracing::warn!(topic = %t, error = %e, "bus subscribe failed");
                            }
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        if let Some(Some(seq)) = s.issued.pop_front() {
                            if let Some(slot) = s.slots.iter_mut().find(|x| x.seq == seq) {
                                slot.pkid = Some(pkid);
                                slot.done = self.qos() == QoS::AtMostOnce;
                            }
                            self.settle(&mut s, false);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => self.acked(&mut s, a.pkid, QoS::AtLeastOnce),
                    Ok(Event::Incoming(Packet::PubComp(a))) => self.acked(&mut s, a.pkid, QoS::ExactlyOnce),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(tx) = &self.requests {
                            let m = BusMessage { topic: p.topic.clone(), payload: p.payload.to_vec() };
                            if tx.try_send(m).is_err() {
                                tracing::warn!(topic = %p.topic, "bus request dropped: handler busy");
                            }
                        }
                    }
                    Ok(_) => {}
                },
                Some(reply) = async { match &mut self.replies { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                    if client.try_publish(reply.topic, QoS::AtMostOnce, false, reply.payload).is_ok() {
                        s.issued.push_back(None);
                    } else {
                        tracing::warn!("bus reply dropped: client queue full");
                    }
                }
                _ = self.wake.notified(), if room => {}
                _ = tick.tick(), if room => {}
            }
        }
    }

    /// The records after `last_issued` that bring `in_flight` up to `max`
    /// (none while the outbox cannot be read: logged, tried again later).
    pub(super) fn next_batch(
        &self,
        last_issued: u64,
        in_flight: usize,
        max: usize,
    ) -> Vec<(u64, Vec<u8>)> {
        let want = max.saturating_sub(in_flight);
        if want == 0 {
            return Vec::new();
        }
        let peeked = self
            .journal
            .lock()
            .expect("journal lock")
            .peek_after(last_issued, want);
        peeked.unwrap_or_else(|e| {
            tracing::error!(error = %e, "outbox unreadable; retrying");
            Vec::new()
        })
    }

    /// Publish records after the last one issued until `max` are in flight.
    fn fill(&self, client: &AsyncClient, s: &mut Session, max: usize) {
        let batch = self.next_batch(s.last_issued, s.slots.len(), max);
        for (seq, rec) in batch {
            let msg = split(&rec).and_then(|(path, body)| {
                Some((
                    event_topic(&self.config.base_topic_prefix, path)?,
                    envelope(body).ok()?,
                ))
            });
            let Some((topic, (payload, received_ns))) = msg else {
                // Nothing can deliver it: set it aside and count it.
                self.metrics.events_dead_lettered.fetch_add(1, Relaxed);
                tracing::error!(
                    seq,
                    "unreadable outbox record; kept in {}",
                    self.dead_letters.display()
                );
                dead_letter(&self.dead_letters, seq, "not an event record", &rec);
                s.slots.push_back(Slot {
                    seq,
                    pkid: None,
                    done: true,
                    received_ns: None,
                });
                s.last_issued = seq;
                continue;
            };
            if client
                .try_publish(topic, self.qos(), false, payload)
                .is_err()
            {
                break;
            }
            s.issued.push_back(Some(seq));
            s.slots.push_back(Slot {
                seq,
                pkid: None,
                done: false,
                received_ns,
            });
            s.last_issued = seq;
        }
        self.settle(s, false);
    }

    fn acked(&self, s: &mut Session, pkid: u16, qos: QoS) {
        if self.qos() != qos {
            return;
        }
        if let Some(slot) = s.slots.iter_mut().find(|x| x.pkid == Some(pkid) && !x.done) {
            slot.done = true;
        }
        self.settle(s, false);
    }

    /// Move the outbox cursor over the acknowledged prefix (the file: see
    /// [`super::outbox::Cursor`]; also when nothing is left in flight or the
    /// session ends).
    fn settle(&self, s: &mut Session, force: bool) {
        while s.slots.front().is_some_and(|x| x.done) {
            let slot = s.slots.pop_front().expect("checked");
            s.cursor.confirmed(
                &self.metrics,
                slot.seq,
                slot.pkid.is_some(),
                slot.received_ns,
            );
        }
        s.cursor
            .save(&self.journal, &self.metrics, force || s.slots.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_edgex() {
        assert_eq!(
            event_topic("edgex", "/api/v3/event/device-lorawan/Mote%20A/m1/uplink").as_deref(),
            Some("edgex/events/device/device-lorawan/Mote%20A/m1/uplink")
        );
        assert_eq!(event_topic("edgex", "/elsewhere"), None);
    }

    #[test]
    fn envelope_carries_the_request_as_an_object() {
        let body = br#"{"apiVersion":"v3","requestId":"0d0e8a5a-1c61-5f0c-9a9e-3d1f2b7c4e11","event":{"id":"x"}}"#;
        let env: serde_json::Value = serde_json::from_slice(&envelope(body).unwrap().0).unwrap();
        assert_eq!(env["apiVersion"], "v3");
        assert_eq!(env["contentType"], "application/json");
        assert_eq!(env["requestID"], "0d0e8a5a-1c61-5f0c-9a9e-3d1f2b7c4e11");
        assert_eq!(env["payload"]["event"]["id"], "x", "an object, not base64");
        assert!(envelope(b"{not json").is_err());
    }
}
