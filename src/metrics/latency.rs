//! How long a frame takes, from its reception at the gateway (or network
//! server) to each step that matters to a user: decoded into readings,
//! durable in the outbox, acknowledged by EdgeX. Histograms in seconds,
//! exposed as `lorawan_reception_to_decode_seconds`,
//! `lorawan_reception_to_outbox_seconds` and
//! `edgex_reception_to_acknowledged_seconds`.

use prometheus_client::metrics::histogram::Histogram;

/// The three latencies. A reception time that is not plausible (ahead of
/// now, or older than a day: a backlog's frames keep their own) is not
/// observed, so a replayed backlog does not drown the figures.
pub struct Latency {
    pub decode: Histogram,
    pub outbox: Histogram,
    pub acknowledged: Histogram,
}

/// From 1 ms to about 33 s, doubling: the 200 ms de-duplication window and
/// an EdgeX outage both land in a bucket.
fn buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16)
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            decode: Histogram::new(buckets()),
            outbox: Histogram::new(buckets()),
            acknowledged: Histogram::new(buckets()),
        }
    }
}

impl Latency {
    /// Observe `h` for a frame received at `received_ns` (Unix ns).
    pub fn since(h: &Histogram, received_ns: i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let ns = now - received_ns;
        if received_ns > 0 && (0..86_400_000_000_000).contains(&ns) {
            h.observe(ns as f64 / 1e9);
        }
    }

    /// Name, help and histogram of each, for the exposition.
    pub(super) fn all(&self) -> [(&'static str, &'static str, &Histogram); 3] {
        [
            (
                "lorawan_reception_to_decode_seconds",
                "Seconds from a frame's reception to its readings",
                &self.decode,
            ),
            (
                "lorawan_reception_to_outbox_seconds",
                "Seconds from a frame's reception to its event in the outbox",
                &self.outbox,
            ),
            (
                "edgex_reception_to_acknowledged_seconds",
                "Seconds from a frame's reception to EdgeX acknowledging its event",
                &self.acknowledged,
            ),
        ]
    }
}
