//! Zero-loss delivery to core-data over REST.
//!
//! [`deliver`] drains the outbox journal (see [`super::outbox`]) in order: `POST /api/v3/event/{service}/{profile}/
//! {device}/{source}`, up to `IN_FLIGHT` (32) at once, their answers taken in
//! journal order. 201 (stored) or 409 (already stored: event ids are
//! deterministic, so a redelivery is harmless) acknowledges the record. A
//! connection error, a timeout or a 5xx is retried with backoff, the record
//! staying first in line. Any other 4xx will never succeed: the record goes to
//! `outbox.dead` (JSON lines) and is counted, so one bad event cannot block the
//! queue and nothing vanishes silently.

use futures_util::StreamExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::{Method, StatusCode};
use tokio::sync::Notify;

use super::http::{error_message, HttpError, JsonClient};
use super::outbox::{dead_letter, split, Cursor};
use crate::metrics::Metrics;
use crate::store::outbox::Journal;

/// What one delivery attempt came to.
enum Outcome {
    Stored,
    Refused(StatusCode, String),
    Retry(String),
}

/// Events posted to core-data at once (`cargo bench --bench end_to_end --
/// --rest`: 2,787/s one at a time, 3,723/s with 8, 4,514/s with 32, 7,379/s
/// (the offered rate) with the cursor written every 32 events
/// ([`Cursor`]); peak
/// RSS 23.8 → 25.5 MB).
const IN_FLIGHT: usize = 32;

/// Deliver the outbox to core-data (`client`) until the task is aborted.
pub async fn deliver(
    client: JsonClient,
    journal: Arc<Mutex<Journal>>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    dead_letters: std::path::PathBuf,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let peeked = journal.lock().expect("journal lock").peek(256);
        let batch = match peeked {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "outbox unreadable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            // A missed wake-up costs at most this long.
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        // core-data takes one event per request: several go out at once
        // (on the client's pooled connections), and their answers are
        // taken in journal order, so the cursor only moves past events
        // core-data has.
        let mut rest = batch.into_iter();
        let mut posts = futures_util::stream::FuturesOrdered::new();
        for (seq, rec) in rest.by_ref().take(IN_FLIGHT) {
            posts.push_back(post_record(client.clone(), seq, rec));
        }
        let mut cursor = Cursor::default();
        while let Some((seq, rec, outcome)) = posts.next().await {
            if let Some((s, r)) = rest.next() {
                posts.push_back(post_record(client.clone(), s, r));
            }
            match outcome {
                Outcome::Stored => {
                    cursor.confirmed(&metrics, seq, true, super::outbox::origin_of(&rec));
                    backoff = Duration::from_millis(100);
                }
                Outcome::Refused(status, why) => {
                    metrics.events_dead_lettered.fetch_add(1, Relaxed);
                    tracing::error!(seq, %status, why, "core-data refused an event for good; kept in {}", dead_letters.display());
                    dead_letter(&dead_letters, seq, &format!("{status}: {why}"), &rec);
                    cursor.confirmed(&metrics, seq, false, None);
                }
                Outcome::Retry(why) => {
                    metrics.delivery_errors.fetch_add(1, Relaxed);
                    tracing::warn!(seq, why, retry_in = ?backoff, "core-data unavailable; events wait in the outbox");
                    cursor.save(&journal, &metrics, true);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    break;
                }
            }
            cursor.save(&journal, &metrics, false);
        }
        cursor.save(&journal, &metrics, true);
    }
}

/// Post one outbox record; hands it back with the answer.
async fn post_record(client: JsonClient, seq: u64, rec: Vec<u8>) -> (u64, Vec<u8>, Outcome) {
    let outcome = match split(&rec) {
        Some((path, body)) => post(&client, path, body).await,
        None => Outcome::Refused(StatusCode::BAD_REQUEST, "unreadable outbox record".into()),
    };
    (seq, rec, outcome)
}

async fn post(client: &JsonClient, path: &str, body: &[u8]) -> Outcome {
    match client.send(Method::POST, path, Some(body.to_vec())).await {
        Err(e @ HttpError::Request { .. }) => {
            Outcome::Refused(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => Outcome::Retry(e.to_string()),
        Ok((s, _)) if s.is_success() || s == StatusCode::CONFLICT => Outcome::Stored,
        Ok((s, _)) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Outcome::Retry(s.to_string())
        }
        Ok((s, text)) => Outcome::Refused(s, error_message(&text)),
    }
}
