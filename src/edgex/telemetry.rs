//! Service telemetry as device-sdk-go publishes it (go-mod-bootstrap's
//! message-bus reporter): every `Edgex.Telemetry.Interval`, each enabled
//! metric as a `Metric` DTO on `{prefix}/telemetry/{service}/{metric}`,
//! tagged with the service (and the configured tags). `EventsSent` and
//! `ReadingsSent` are counters (`counter-count`); `LastConnected` is one
//! gauge per device (`gauge-value`, ns since the epoch, tagged `device`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde_json::{json, Value};

use super::operating::OperatingState;
use crate::config::TelemetryConfig;
use crate::metrics::Metrics;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The metrics due now: (metric name, `Metric` DTO).
pub fn metrics(
    config: &TelemetryConfig,
    service: &str,
    metrics: &Metrics,
    operating: &OperatingState,
) -> Vec<(String, Value)> {
    let mut tags: Vec<Value> = config
        .tags
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    tags.push(json!({"name": "service", "value": service}));
    let metric = |name: &str, field: &str, value: i64, extra: Option<Value>| {
        let mut t = tags.clone();
        t.extend(extra);
        json!({"apiVersion": "v3", "name": name, "fields": [{"name": field, "value": value}],
               "tags": t, "timestamp": now_ns()})
    };
    let mut out = Vec::new();
    if config.enabled("EventsSent") {
        let n = metrics.published.load(Relaxed) as i64;
        out.push((
            "EventsSent".into(),
            metric("EventsSent", "counter-count", n, None),
        ));
    }
    if config.enabled("ReadingsSent") {
        let n = metrics.readings_published.load(Relaxed) as i64;
        out.push((
            "ReadingsSent".into(),
            metric("ReadingsSent", "counter-count", n, None),
        ));
    }
    if config.enabled("LastConnected") {
        for (device, at) in operating.last_seen() {
            let tag = json!({"name": "device", "value": &*device});
            out.push((
                "LastConnected".into(),
                metric("LastConnected", "gauge-value", at, Some(tag)),
            ));
        }
    }
    out
}

/// Publish the metrics every interval, while the bus is there.
pub async fn run(
    config: TelemetryConfig,
    service: String,
    metrics: Arc<Metrics>,
    operating: Arc<OperatingState>,
    bus: super::bus::BusOut,
) {
    let mut tick = tokio::time::interval(config.interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let seg = super::event::encode_segment(&service);
        for (name, dto) in self::metrics(&config, &service, &metrics, &operating) {
            if !bus.publish(&format!("telemetry/{seg}/{name}"), dto).await {
                return;
            }
        }
    }
}
