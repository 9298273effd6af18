//! The outbox's side facing the pipeline: every uplink becomes an EdgeX
//! `AddEventRequest`, appended to the durable [`Journal`] before the uplink's
//! source is acknowledged. The transports ([`super::bus`], [`super::core_data`])
//! drain it.
//!
//! A record is transport-neutral: core-data's REST path, a newline, then the
//! JSON body. The message bus derives its topic from the path, so switching
//! `Edgex.Delivery` between runs loses nothing that waits in the journal.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::event::{add_event_request, event_path};
use crate::metrics::Metrics;
use crate::pipeline::sink::Sink;
use crate::pipeline::uplink::Uplink;
use crate::store::outbox::{Journal, JournalError};

/// A record is the request path, a newline, then the JSON body.
fn record(service: &str, up: &Uplink) -> Vec<u8> {
    let mut r = event_path(service, up).into_bytes();
    r.push(b'\n');
    serde_json::to_writer(&mut r, &add_event_request(up)).expect("event serialises");
    r
}

/// The event's `origin` (its frame's reception, Unix ns) in a journal
/// record, read without parsing the record: for the latency to EdgeX's
/// acknowledgement, on the delivery path.
pub fn origin_of(record: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"origin\":";
    let at = record.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = record[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&record[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

pub fn split(record: &[u8]) -> Option<(&str, &[u8])> {
    let nl = record.iter().position(|b| *b == b'\n')?;
    Some((std::str::from_utf8(&record[..nl]).ok()?, &record[nl + 1..]))
}

/// Appends an event built outside the pipeline (a GET command answered with
/// `ds-pushevent=true`) to the same journal, so it is delivered as durably.
#[derive(Clone)]
pub struct EventPusher {
    pub service: String,
    pub journal: Arc<Mutex<Journal>>,
    pub wake: Arc<Notify>,
}

impl EventPusher {
    /// `event` is an EdgeX `Event` DTO of `profile`/`device`/`source`.
    pub fn push(
        &self,
        profile: &str,
        device: &str,
        source: &str,
        event: &serde_json::Value,
    ) -> Result<(), JournalError> {
        let seg = super::event::encode_segment;
        let mut r = format!(
            "/api/v3/event/{}/{}/{}/{}\n",
            seg(&self.service),
            seg(profile),
            seg(device),
            seg(source)
        )
        .into_bytes();
        let body = serde_json::json!({"apiVersion": "v3", "requestId": uuid::Uuid::new_v4(), "event": event});
        serde_json::to_writer(&mut r, &body).expect("event serialises");
        self.journal.lock().expect("journal lock").append(&r)?;
        self.wake.notify_one();
        Ok(())
    }
}

/// Appends every uplink's event to the outbox and wakes the delivery task.
pub struct OutboxSink {
    pub service: String,
    pub journal: Arc<Mutex<Journal>>,
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// Where a handover learns which frames EdgeX has (if one is set up).
    pub delivered: Option<Arc<crate::edgex::delivered::Delivered>>,
}

impl Sink for OutboxSink {
    fn publish(&mut self, up: &Uplink) -> std::io::Result<()> {
        let rec = record(&self.service, up);
        let mut j = self.journal.lock().expect("journal lock");
        match j.append(&rec) {
            Ok(seq) => {
                crate::metrics::Latency::since(&self.metrics.latency.outbox, up.received_ns);
                if let Some(d) = &self.delivered {
                    d.journaled(seq, up.dev_eui, up.counter());
                }
                self.metrics.outbox_depth.store(j.pending(), Relaxed);
                self.wake.notify_one();
                Ok(())
            }
            Err(e @ JournalError::Full { .. }) => {
                self.metrics.outbox_full.fetch_add(1, Relaxed);
                Err(std::io::Error::other(e.to_string()))
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.journal
            .lock()
            .expect("journal lock")
            .sync()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Events confirmed between two writes of the cursor file.
pub const CURSOR_EVERY: usize = 32;

/// How each transport moves the outbox cursor over what EdgeX confirmed,
/// in journal order: counted as it is confirmed, written to the cursor file
/// every [`CURSOR_EVERY`] events or when the transport asks (nothing left in
/// flight, a batch's or a session's end, a wait for EdgeX). A stale cursor
/// only means a harmless redelivery: event ids are deterministic.
#[derive(Debug, Default)]
pub struct Cursor {
    since: usize,
    pending: Option<u64>,
}

impl Cursor {
    /// Record `seq` as done: `delivered` (EdgeX has it; counted, with the
    /// latency from its frame's reception when known), or set aside.
    pub fn confirmed(
        &mut self,
        metrics: &Metrics,
        seq: u64,
        delivered: bool,
        received_ns: Option<i64>,
    ) {
        if delivered {
            metrics.events_delivered.fetch_add(1, Relaxed);
            if let Some(ns) = received_ns {
                crate::metrics::Latency::since(&metrics.latency.acknowledged, ns);
            }
        }
        self.since += 1;
        self.pending = Some(seq);
    }

    /// Write the cursor file if `now`, or once [`CURSOR_EVERY`] events wait.
    pub fn save(&mut self, journal: &Mutex<Journal>, metrics: &Metrics, now: bool) {
        if !now && self.since < CURSOR_EVERY {
            return;
        }
        let Some(seq) = self.pending.take() else {
            return;
        };
        self.since = 0;
        let mut j = journal.lock().expect("journal lock");
        if let Err(e) = j.ack(seq) {
            tracing::error!(seq, error = %e, "outbox cursor not saved; events may be delivered again (idempotent)");
        }
        metrics.outbox_depth.store(j.pending(), Relaxed);
    }
}

/// Keep a record no transport will ever deliver (JSON lines), so nothing
/// vanishes silently. A failure to write is logged: there is nowhere else.
pub fn dead_letter(file: &Path, seq: u64, why: &str, rec: &[u8]) {
    let line = serde_json::json!({"seq": seq, "why": why, "record": String::from_utf8_lossy(rec)});
    if let Err(e) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| writeln!(f, "{line}"))
    {
        tracing::error!(seq, file = %file.display(), error = %e, "dead letter not written");
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn the_origin_is_read_from_a_record() {
        assert_eq!(
            super::origin_of(b"/api/v3/event/a\n{\"event\":{\"id\":\"x\",\"origin\":1733450000123456789,\"readings\":[]}}"),
            Some(1_733_450_000_123_456_789)
        );
        assert_eq!(super::origin_of(b"/x\n{\"event\":{}}"), None);
    }

    #[test]
    fn records_split_into_path_and_body() {
        assert_eq!(
            split(b"/api/v3/event/a/b/c/d\n{}"),
            Some(("/api/v3/event/a/b/c/d", &b"{}"[..]))
        );
        assert_eq!(split(b"no newline"), None);
    }
}
