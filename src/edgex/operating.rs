//! Operating state in core-metadata, as device services keep it: a device
//! silent for `Devices.OperatingState.MissedUplinks` expected intervals is
//! set DOWN (`PATCH /api/v3/device`), and UP at its next uplink. The
//! published uplinks are observed by a sink wrapper; the silence is found by
//! a once-a-second tick ([`super::liveness`] decides).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::json;
use tokio::sync::mpsc;

use super::http::JsonClient;
use super::liveness::{Change, Liveness};
use crate::metrics::Metrics;
use crate::pipeline::sink::Sink;
use crate::pipeline::uplink::Uplink;

pub struct OperatingState {
    liveness: Mutex<Liveness>,
    /// Each device's last published uplink (ns since the epoch), for the
    /// `LastConnected` telemetry.
    last_seen: Mutex<std::collections::BTreeMap<Arc<str>, i64>>,
    default_interval: Option<Duration>,
    changes: mpsc::UnboundedSender<Change>,
    metrics: Arc<Metrics>,
}

impl OperatingState {
    pub fn new(
        missed: u32,
        default_interval: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Change>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Arc::new(Self {
            liveness: Mutex::new(Liveness::new(missed)),
            last_seen: Mutex::new(Default::default()),
            default_interval,
            changes: tx,
            metrics,
        });
        (s, rx)
    }

    /// Watch `device`: every `interval`, else the configured default (none:
    /// not watched).
    pub fn expect(&self, device: Arc<str>, interval: Option<Duration>) {
        if let Some(i) = interval.or(self.default_interval).filter(|i| !i.is_zero()) {
            self.liveness
                .lock()
                .expect("liveness lock")
                .expect(device, i, Instant::now());
        }
    }

    pub fn forget(&self, device: &str) {
        self.liveness.lock().expect("liveness lock").forget(device);
    }

    pub fn is_down(&self, device: &str) -> bool {
        self.liveness.lock().expect("liveness lock").is_down(device)
    }

    /// Every device's last published uplink (ns since the epoch).
    pub fn last_seen(&self) -> Vec<(Arc<str>, i64)> {
        let seen = self.last_seen.lock().expect("last seen lock");
        seen.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn heard(&self, device: &str) {
        let change = self
            .liveness
            .lock()
            .expect("liveness lock")
            .heard(device, Instant::now());
        if let Some(c) = change {
            let _ = self.changes.send(c);
        }
    }

    fn tick(&self) {
        let mut l = self.liveness.lock().expect("liveness lock");
        for c in l.due(Instant::now()) {
            let _ = self.changes.send(c);
        }
        self.metrics
            .devices_down
            .store(l.down_count() as u64, Relaxed);
    }
}

/// A sink that tells [`OperatingState`] which devices were just published.
pub struct Observed {
    pub inner: Box<dyn Sink>,
    pub state: Arc<OperatingState>,
}

impl Sink for Observed {
    fn publish(&mut self, up: &Uplink) -> std::io::Result<()> {
        self.inner.publish(up)?;
        self.state.heard(&up.device);
        let m = &self.state.metrics;
        m.readings_published
            .fetch_add(up.readings.len() as u64, Relaxed);
        let mut seen = self.state.last_seen.lock().expect("last seen lock");
        match seen.get_mut(&*up.device) {
            Some(t) => *t = up.received_ns,
            None => {
                seen.insert(up.device.clone(), up.received_ns);
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Find silent devices every second; report every change to core-metadata
/// (when registration is on), else only log it.
pub async fn run(
    state: Arc<OperatingState>,
    metadata: Option<JsonClient>,
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => state.tick(),
            c = changes.recv() => {
                let Some(c) = c else { return };
                let op = if c.up { "UP" } else { "DOWN" };
                state.metrics.operating_state_changes.fetch_add(1, Relaxed);
                if c.up {
                    tracing::info!(device = %c.device, "device heard again: operating state UP");
                } else {
                    tracing::warn!(device = %c.device, "device silent for its expected uplinks: operating state DOWN");
                }
                let Some(client) = &metadata else { continue };
                let body = json!([{"apiVersion": "v3", "requestId": uuid::Uuid::new_v4(),
                    "device": {"name": &*c.device, "operatingState": op}}]);
                match client
                    .send(Method::PATCH, "/api/v3/device", Some(serde_json::to_vec(&body).expect("JSON")))
                    .await
                {
                    Ok((s, _)) if s.is_success() => {}
                    Ok((s, reply)) => tracing::warn!(device = %c.device, status = %s,
                        message = %super::http::error_message(&reply), "core-metadata did not take the operating state"),
                    Err(e) => tracing::warn!(device = %c.device, error = %e, "operating state not sent to core-metadata"),
                }
            }
        }
    }
}
