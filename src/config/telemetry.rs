//! `Edgex.Telemetry`: the service metrics device-sdk-go publishes on the
//! message bus (EdgeX's `Writable.Telemetry`), switchable per metric.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// How often the metrics are published (0s: never).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Which metrics: `EventsSent`, `ReadingsSent`, `LastConnected`.
    pub metrics: BTreeMap<String, bool>,
    /// Tags added to every metric (besides `service`).
    pub tags: BTreeMap<String, String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            metrics: BTreeMap::from([
                ("EventsSent".into(), true),
                ("ReadingsSent".into(), true),
                ("LastConnected".into(), false),
            ]),
            tags: BTreeMap::new(),
        }
    }
}

impl TelemetryConfig {
    pub fn enabled(&self, metric: &str) -> bool {
        self.metrics.get(metric).copied().unwrap_or(false)
    }
}
