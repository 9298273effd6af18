//! The EdgeX message bus on NATS, core or JetStream, as EdgeX's own NATS
//! bus (go-mod-messaging) defines it: events on
//! `{prefix}.events.device.{service}.{profile}.{device}.{source}`, in the
//! `nats` format (the envelope's fields as headers, the `AddEventRequest` as
//! the body) or `json` (the whole envelope); requests and replies on the
//! same subjects EdgeX's MQTT topics map to.
//!
//! Zero loss works as on MQTT: records are pipelined (up to `MaxInFlight`)
//! and the outbox cursor only moves over a prefix the server confirmed.
//! On JetStream each publish carries a reply subject and counts once the
//! stream acknowledged it; its `Nats-Msg-Id` is the event's request id,
//! deterministic for an uplink, so a publish sent again (after a lost
//! connection, a leader election, a timeout) is stored once. On core NATS
//! a batch counts once a `PING` written after it is answered: the server
//! has it (core NATS itself keeps nothing for an absent subscriber).
//!
//! A lost connection, a refused publish or an acknowledgement that does not
//! come within `AckTimeout` ends the session; the next one starts at the
//! cursor, on the next server: the configured ones and those the cluster
//! announces (`connect_urls`).
//!
//! The protocol itself ([`proto`]) and EdgeX's names and shapes on NATS
//! ([`wire`]) do no I/O; this task does the sockets and the timers.

pub mod proto;
pub mod wire;

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::bus::{event_head, event_topic, Bus, BusMessage};
use super::outbox::{dead_letter, split};
use crate::config::{BusType, NatsFormat};
use crate::ingest::mqtt::refusal::ConnectFailure;
use proto::{Msg, ServerOp};
use wire::PubAck;

/// How long connecting, and each step of the handshake, may take.
const HANDSHAKE: Duration = Duration::from_secs(3);
/// The subscription id of our reply inbox; request subscriptions follow.
const INBOX_SID: u64 = 1;

/// The NATS delivery task: the same inputs as the MQTT one ([`Bus`]), whose
/// `config` names the NATS type.
pub struct Nats(pub Bus);

/// One event published and not yet confirmed.
struct Slot {
    seq: u64,
    done: bool,
    /// False for a record set aside as unreadable.
    published: bool,
    received_ns: Option<i64>,
    sent: Instant,
}

/// One connection's state.
struct Session {
    wr: OwnedWriteHalf,
    rd: OwnedReadHalf,
    reader: proto::Reader,
    out: Vec<u8>,
    inbox: String,
    slots: VecDeque<Slot>,
    last_issued: u64,
    /// Core NATS: the last record written before each `PING` in flight.
    pings: VecDeque<u64>,
    cursor: super::outbox::Cursor,
}

/// Why a session ended.
struct Ended {
    why: String,
    /// Whether it had come up (the handshake was done).
    up: bool,
}

fn ended(why: impl Into<String>, up: bool) -> Ended {
    Ended {
        why: why.into(),
        up,
    }
}

impl Nats {
    /// Deliver until the task is aborted, trying the servers in turn.
    pub async fn run(mut self) {
        let c = &self.0.config;
        let mut servers: Vec<String> = std::iter::once(format!("{}:{}", c.host, c.port()))
            .chain(
                c.nats
                    .servers
                    .iter()
                    .map(|s| s.trim_start_matches("nats://").to_owned()),
            )
            .collect();
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(100);
        loop {
            let addr = servers[next % servers.len()].clone();
            next += 1;
            let mut learned = Vec::new();
            let e = self.session(&addr, &mut learned).await;
            for u in learned {
                if !servers.contains(&u) {
                    servers.push(u);
                }
            }
            self.0.metrics.bus_reconnects.fetch_add(1, Relaxed);
            if e.up {
                backoff = Duration::from_millis(100);
            }
            tracing::warn!(server = %addr, error = %e.why, retry_in = ?backoff,
                "NATS message bus unavailable; events wait in the outbox");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    fn jetstream(&self) -> bool {
        self.0.config.r#type == BusType::NatsJetstream
    }

    fn failed(&self, kind: ConnectFailure, why: String) -> Ended {
        self.0.metrics.bus_connect_failures[kind.index()].fetch_add(1, Relaxed);
        ended(
            format!("could not connect ({}): {why}", kind.as_str()),
            false,
        )
    }

    /// Connect, shake hands, subscribe, provision; then deliver until the
    /// connection fails.
    async fn session(&mut self, addr: &str, learned: &mut Vec<String>) -> Ended {
        let tcp = match tokio::time::timeout(HANDSHAKE, tokio::net::TcpStream::connect(addr)).await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return self.failed(ConnectFailure::Network, e.to_string()),
            Err(_) => return self.failed(ConnectFailure::Network, "timed out".into()),
        };
        let _ = tcp.set_nodelay(true);
        let (rd, wr) = tcp.into_split();
        let mut s = Session {
            wr,
            rd,
            reader: proto::Reader::new(),
            out: Vec::with_capacity(64 << 10),
            inbox: format!("_INBOX.{}", uuid::Uuid::new_v4().simple()),
            slots: VecDeque::new(),
            last_issued: self.0.journal.lock().expect("journal lock").delivered(),
            pings: VecDeque::new(),
            cursor: Default::default(),
        };
        if let Err(e) = self.handshake(&mut s, learned).await {
            return e;
        }
        tracing::info!(server = addr, kind = ?self.0.config.r#type, "NATS message bus connected");
        let r = self.deliver(&mut s).await;
        self.settle(&mut s, true);
        r
    }

    async fn handshake(&mut self, s: &mut Session, learned: &mut Vec<String>) -> Result<(), Ended> {
        let info = match tokio::time::timeout(HANDSHAKE, next_op(s)).await {
            Ok(Ok(ServerOp::Info(i))) => i,
            Ok(Ok(op)) => {
                return Err(self.failed(ConnectFailure::Protocol, format!("{op:?} before INFO")))
            }
            Ok(Err(e)) => return Err(self.failed(ConnectFailure::Network, e)),
            Err(_) => return Err(self.failed(ConnectFailure::Protocol, "no INFO".into())),
        };
        if info.tls_required {
            return Err(self.failed(
                ConnectFailure::Tls,
                "the server requires TLS, which this service does not speak to NATS yet".into(),
            ));
        }
        if !info.headers && (self.0.config.nats.format == NatsFormat::Nats || self.jetstream()) {
            return Err(self.failed(
                ConnectFailure::Protocol,
                "the server does not support headers".into(),
            ));
        }
        learned.extend(info.connect_urls.iter().cloned());
        let c = &self.0.config;
        let user = c.username.as_deref().zip(c.password.as_deref());
        s.out.extend_from_slice(&proto::connect(&c.client_id, user));
        flush(s)
            .await
            .map_err(|e| self.failed(ConnectFailure::Network, e))?;
        loop {
            match tokio::time::timeout(HANDSHAKE, next_op(s)).await {
                Ok(Ok(ServerOp::Pong)) => break,
                Ok(Ok(ServerOp::Err(e))) => return Err(self.failed(ConnectFailure::Refused, e)),
                Ok(Ok(ServerOp::Info(i))) => learned.extend(i.connect_urls.iter().cloned()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(self.failed(ConnectFailure::Network, e)),
                Err(_) => {
                    return Err(self.failed(ConnectFailure::Protocol, "CONNECT not answered".into()))
                }
            }
        }
        proto::subscribe(&mut s.out, &format!("{}.*", s.inbox), INBOX_SID);
        for (i, t) in self.0.subscriptions.iter().enumerate() {
            proto::subscribe(&mut s.out, &wire::subject(t), INBOX_SID + 1 + i as u64);
        }
        if self.jetstream() && self.0.config.nats.auto_provision {
            self.provision(s).await?;
        }
        flush(s).await.map_err(|e| ended(e, true))
    }

    /// Make sure the stream taking our subject exists (JetStream).
    async fn provision(&self, s: &mut Session) -> Result<(), Ended> {
        let n = &self.0.config.nats;
        let topic = if n.subject.is_empty() {
            format!("{}/#", self.0.config.base_topic_prefix)
        } else {
            n.subject.clone()
        };
        let (api, body) = wire::create_stream(&wire::subject(&topic), n.replicas);
        let reply = format!("{}.stream", s.inbox);
        proto::publish(&mut s.out, &api, Some(&reply), &[], &body);
        flush(s).await.map_err(|e| ended(e, true))?;
        let deadline = tokio::time::Instant::now() + n.ack_timeout;
        loop {
            let op = tokio::time::timeout_at(deadline, next_op(s))
                .await
                .map_err(|_| {
                    ended(
                        "the JetStream API did not answer the stream's creation",
                        true,
                    )
                })?
                .map_err(|e| ended(e, true))?;
            match op {
                ServerOp::Ping => s.out.extend_from_slice(b"PONG\r\n"),
                ServerOp::Msg(m) if m.subject == reply => {
                    return match wire::stream_created(&m.payload) {
                        Ok(()) => Ok(()),
                        Err(why) => {
                            tracing::error!(stream = %wire::stream_name(&wire::subject(&topic)), why,
                                "the JetStream stream could not be created (Edgex.MessageBus.Nats)");
                            Err(ended(format!("stream not created: {why}"), true))
                        }
                    };
                }
                ServerOp::Msg(m) => self.request(m),
                _ => {}
            }
        }
    }

    /// The delivery loop of one connection.
    async fn deliver(&mut self, s: &mut Session) -> Ended {
        let max = usize::from(self.0.config.max_in_flight);
        let ack_timeout = self.0.config.nats.ack_timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut buf = vec![0u8; 32 << 10];
        loop {
            if s.slots.len() <= max / 2 {
                self.fill(s, max);
            }
            if !s.out.is_empty() {
                if let Err(e) = flush(s).await {
                    return ended(e, true);
                }
            }
            let room = s.slots.len() <= max / 2;
            tokio::select! {
                n = s.rd.read(&mut buf) => match n {
                    Ok(0) => return ended("the server closed the connection", true),
                    Err(e) => return ended(e.to_string(), true),
                    Ok(n) => {
                        s.reader.feed(&buf[..n]);
                        loop {
                            match s.reader.next_op() {
                                Ok(Some(op)) => if let Err(e) = self.on_op(s, op) { return e },
                                Ok(None) => break,
                                Err(e) => return ended(format!("protocol error: {e}"), true),
                            }
                        }
                    }
                },
                Some(reply) = async { match &mut self.0.replies { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                    self.reply(s, reply);
                }
                _ = self.0.wake.notified(), if room => {}
                _ = tick.tick() => {
                    if s.slots.front().is_some_and(|x| x.sent.elapsed() > ack_timeout) {
                        return ended(format!("not acknowledged within {ack_timeout:?}"), true);
                    }
                }
            }
        }
    }

    fn on_op(&self, s: &mut Session, op: ServerOp) -> Result<(), Ended> {
        match op {
            ServerOp::Ping => s.out.extend_from_slice(b"PONG\r\n"),
            ServerOp::Pong => {
                if let Some(upto) = s.pings.pop_front() {
                    for x in s.slots.iter_mut().take_while(|x| x.seq <= upto) {
                        x.done = true;
                    }
                    self.settle(s, false);
                }
            }
            ServerOp::Err(e) => {
                // Permission errors leave the connection open; the rest close it.
                tracing::error!(error = %e, "the NATS server reports an error");
                if !e.to_ascii_lowercase().contains("permissions violation") {
                    return Err(ended(format!("-ERR {e}"), true));
                }
            }
            ServerOp::Msg(m) if m.sid == INBOX_SID => {
                let seq = m
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok());
                let Some(seq) = seq else { return Ok(()) };
                match PubAck::read(&m) {
                    PubAck::Stored { duplicate } => {
                        if duplicate {
                            self.0.metrics.bus_stream_duplicates.fetch_add(1, Relaxed);
                        }
                        if let Some(x) = s.slots.iter_mut().find(|x| x.seq == seq) {
                            x.done = true;
                        }
                        self.settle(s, false);
                    }
                    PubAck::Failed(why) => {
                        return Err(ended(
                            format!("JetStream did not store event {seq}: {why}"),
                            true,
                        ));
                    }
                }
            }
            ServerOp::Msg(m) => self.request(m),
            ServerOp::Info(_) | ServerOp::Ok => {}
        }
        Ok(())
    }

    /// A request for us, to the handlers, as the envelope they read.
    fn request(&self, m: Msg) {
        let Some(tx) = &self.0.requests else { return };
        let payload = match self.0.config.nats.format {
            NatsFormat::Nats => wire::join_envelope(&m),
            NatsFormat::Json => m.payload,
        };
        let topic = wire::topic(&m.subject);
        if tx
            .try_send(BusMessage {
                topic: topic.clone(),
                payload,
            })
            .is_err()
        {
            tracing::warn!(%topic, "bus request dropped: handler busy");
        }
    }

    /// A reply or a message of our own (system event, telemetry): core NATS.
    fn reply(&self, s: &mut Session, m: BusMessage) {
        let subject = wire::subject(&m.topic);
        if !proto::clean(&subject) {
            // A request id with a dot run or a wildcard in it: no subject.
            self.0.metrics.bus_requests_malformed.fetch_add(1, Relaxed);
            tracing::warn!(topic = %m.topic, "no NATS subject for this reply; dropped");
            return;
        }
        match self.0.config.nats.format {
            NatsFormat::Nats => match wire::split_envelope(&m.payload) {
                Some((headers, body)) => {
                    let h: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    proto::publish(&mut s.out, &subject, None, &h, &body);
                }
                None => proto::publish(&mut s.out, &subject, None, &[], &m.payload),
            },
            NatsFormat::Json => proto::publish(&mut s.out, &subject, None, &[], &m.payload),
        }
    }

    /// Write records after the last one issued until `max` are in flight.
    fn fill(&self, s: &mut Session, max: usize) {
        let batch = self.0.next_batch(s.last_issued, s.slots.len(), max);
        if batch.is_empty() {
            return;
        }
        let now = Instant::now();
        for (seq, rec) in batch {
            let received_ns = match self.write_event(s, seq, &rec) {
                Ok(r) => r,
                Err(why) => {
                    self.0.metrics.events_dead_lettered.fetch_add(1, Relaxed);
                    tracing::error!(
                        seq,
                        why,
                        "unreadable outbox record; kept in {}",
                        self.0.dead_letters.display()
                    );
                    dead_letter(&self.0.dead_letters, seq, why, &rec);
                    s.slots.push_back(Slot {
                        seq,
                        done: true,
                        published: false,
                        received_ns: None,
                        sent: now,
                    });
                    s.last_issued = seq;
                    continue;
                }
            };
            s.slots.push_back(Slot {
                seq,
                done: false,
                published: true,
                received_ns,
                sent: now,
            });
            s.last_issued = seq;
        }
        if !self.jetstream() {
            s.out.extend_from_slice(b"PING\r\n");
            s.pings.push_back(s.last_issued);
        }
        self.settle(s, false);
    }

    /// One event, as EdgeX's NATS bus carries it.
    fn write_event(
        &self,
        s: &mut Session,
        seq: u64,
        rec: &[u8],
    ) -> Result<Option<i64>, &'static str> {
        let (path, body) = split(rec).ok_or("not an event record")?;
        let topic =
            event_topic(&self.0.config.base_topic_prefix, path).ok_or("not an event path")?;
        let subject = wire::into_subject(topic);
        if !proto::clean(&subject) {
            return Err("its NATS subject would hold whitespace, an empty level or a wildcard");
        }
        let reply = self.jetstream().then(|| format!("{}.{seq}", s.inbox));
        let (payload, request_id, origin) = event_head(body).map_err(|_| "not JSON")?;
        // JetStream keeps one message per Nats-Msg-Id: the last header here.
        let headers = [
            (wire::CORRELATION_ID, request_id),
            (wire::CONTENT_TYPE, "application/json"),
            (wire::REQUEST_ID, request_id),
            (wire::API_VERSION, "v3"),
            (wire::ERROR_CODE, "0"),
            (wire::MSG_ID, request_id),
        ];
        let (envelope_headers, msg_id) = headers.split_at(5);
        let msg_id = if self.jetstream() { msg_id } else { &[] };
        match self.0.config.nats.format {
            NatsFormat::Nats => {
                let h = if self.jetstream() {
                    &headers[..]
                } else {
                    envelope_headers
                };
                proto::publish(
                    &mut s.out,
                    &subject,
                    reply.as_deref(),
                    h,
                    payload.get().as_bytes(),
                );
            }
            NatsFormat::Json => {
                let env = super::bus::envelope_of(payload, request_id).map_err(|_| "not JSON")?;
                proto::publish(&mut s.out, &subject, reply.as_deref(), msg_id, &env);
            }
        }
        Ok(origin)
    }

    /// Move the outbox cursor over the confirmed prefix (as
    /// [`super::bus::Bus`] does).
    fn settle(&self, s: &mut Session, force: bool) {
        while s.slots.front().is_some_and(|x| x.done) {
            let slot = s.slots.pop_front().expect("checked");
            s.cursor
                .confirmed(&self.0.metrics, slot.seq, slot.published, slot.received_ns);
        }
        s.cursor.save(
            &self.0.journal,
            &self.0.metrics,
            force || s.slots.is_empty(),
        );
    }
}

/// Write what is buffered (bounded: a server that stops reading ends the
/// session rather than stalling it).
async fn flush(s: &mut Session) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(10), s.wr.write_all(&s.out)).await {
        Ok(Ok(())) => {
            s.out.clear();
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the server stopped reading".into()),
    }
}

/// The next server operation (during the handshake: reads as needed).
async fn next_op(s: &mut Session) -> Result<ServerOp, String> {
    let mut buf = [0u8; 4096];
    loop {
        match s.reader.next_op() {
            Ok(Some(ServerOp::Ping)) => {
                s.out.extend_from_slice(b"PONG\r\n");
                flush(s).await?;
            }
            Ok(Some(op)) => return Ok(op),
            Ok(None) => {}
            Err(e) => return Err(format!("protocol error: {e}")),
        }
        match s.rd.read(&mut buf).await {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => s.reader.feed(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}
