//! `Edgex`: how events reach EdgeX (message bus or core-data), registration
//! with core-metadata and core-keeper, the outbox, and telemetry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mqtt_tls::MqttTls;
use super::telemetry::TelemetryConfig;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct EdgexConfig {
    /// Where events go: `none` (JSON lines only), `message-bus` (the EdgeX v4
    /// default: MQTT to core-data and any other subscriber) or `rest`
    /// (`POST` to core-data).
    pub delivery: Delivery,
    pub message_bus: MessageBusConfig,
    pub metadata: MetadataConfig,
    pub core_data: CoreDataConfig,
    pub outbox: OutboxConfig,
    pub telemetry: TelemetryConfig,
    /// core-keeper (EdgeX v4's registry).
    pub registry: crate::edgex::keeper::RegistryConfig,
}

/// How events reach EdgeX.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    #[default]
    None,
    MessageBus,
    Rest,
}

/// The EdgeX message bus (MQTT), as EdgeX's own `MessageBus` section names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct MessageBusConfig {
    pub host: String,
    pub port: u16,
    /// Topics start with this (`edgex/events/device/...`).
    pub base_topic_prefix: String,
    /// Empty (default): `{Service.Name}-bus`. Each of this service's MQTT
    /// clients needs its own id on a broker (see [`crate::config::Config::mqtt_clients`]).
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// EdgeX secure mode: `username` and `password` from this secret in the
    /// secret store (EdgeX's `message-bus` secret, `AuthMode:
    /// usernamepassword`), over the two above.
    pub secret_name: String,
    /// QoS of published events: 1 (default) is what zero loss needs; with 0
    /// an event counts as delivered once written to the socket.
    pub qos: u8,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Events published and not yet acknowledged by the broker, at most.
    pub max_in_flight: u16,
    /// TLS to the broker (`mqtts`): its CA, and our certificate and key.
    pub tls: Option<MqttTls>,
}

impl Default for MessageBusConfig {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 1883,
            base_topic_prefix: "edgex".into(),
            client_id: String::new(),
            username: None,
            password: None,
            secret_name: String::new(),
            qos: 1,
            keep_alive: Duration::from_secs(30),
            max_in_flight: 64,
            tls: None,
        }
    }
}

/// Registration through core-metadata (service, profiles, devices).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct MetadataConfig {
    pub enabled: bool,
    /// Base URL of core-metadata (EdgeX default port 59881).
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "http://localhost:59881".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct CoreDataConfig {
    /// Base URL of core-data (EdgeX default port 59880).
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Undelivered events kept on disk at most (bytes).
    pub max_bytes: u64,
    /// `reject` (default: new events are refused and counted) or `drop-oldest`.
    pub when_full: crate::store::outbox::FullPolicy,
}

impl Default for CoreDataConfig {
    fn default() -> Self {
        Self {
            url: "http://localhost:59880".into(),
            timeout: Duration::from_secs(5),
        }
    }
}
impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            when_full: Default::default(),
        }
    }
}
