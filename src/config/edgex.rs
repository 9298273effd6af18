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

/// The EdgeX message bus, as EdgeX's own `MessageBus` section names it:
/// MQTT (the default) or NATS, core or JetStream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct MessageBusConfig {
    /// `mqtt` (default), `nats-core` or `nats-jetstream`, EdgeX's names.
    pub r#type: BusType,
    pub host: String,
    /// Empty: the type's own (1883 for MQTT, 4222 for NATS).
    pub port: Option<u16>,
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
    /// NATS only: EdgeX's `MessageBus.Optional` settings for NATS.
    pub nats: NatsConfig,
}

impl MessageBusConfig {
    /// The port to connect to: configured, or the bus type's own.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.r#type {
            BusType::Mqtt => 1883,
            BusType::NatsCore | BusType::NatsJetstream => 4222,
        })
    }
}

/// The message bus implementations EdgeX has (`MessageBus.Type`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BusType {
    #[default]
    Mqtt,
    /// Core NATS: published is delivered once the server has it (a `PING`
    /// answered after the batch), as QoS 0 with flow control.
    NatsCore,
    /// NATS JetStream: each event counts once the stream acknowledged it
    /// (stored, on the stream's replicas).
    NatsJetstream,
}

/// How an event travels on NATS (EdgeX's `Optional.Format`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NatsFormat {
    /// EdgeX's default: the envelope's fields as NATS headers
    /// (`Content-Type`, `X-Correlation-ID`, `RequestId`, `ApiVersion`,
    /// `ErrorCode`), the `AddEventRequest` itself as the body.
    #[default]
    Nats,
    /// The whole `MessageEnvelope` as JSON, as on MQTT.
    Json,
}

/// NATS settings (EdgeX's `MessageBus.Optional` keys, where it has them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct NatsConfig {
    pub format: NatsFormat,
    /// More servers to try (`host:port`) beside `Host`/`Port`; a cluster's
    /// servers also announce each other, and those are tried too.
    pub servers: Vec<String>,
    /// JetStream: create the stream taking `Subject` when it is missing.
    pub auto_provision: bool,
    /// JetStream: the topic the stream takes, in EdgeX's topic form
    /// (empty: `{BaseTopicPrefix}/#`); the stream is named after it as
    /// EdgeX names it (`edgex/#` → `edgex`).
    pub subject: String,
    /// JetStream: replicas of a stream this service creates (at most 5;
    /// 3 in a three-server cluster survives a server's loss).
    pub replicas: u8,
    /// JetStream: a publish not acknowledged this long is sent again (under
    /// the same `Nats-Msg-Id`, so the stream keeps one copy).
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
}

/// `host:port`, `nats://` optional: a server to connect to.
pub fn is_nats_server(s: &str) -> bool {
    let s = s.strip_prefix("nats://").unwrap_or(s);
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

#[cfg(test)]
#[test]
fn nats_servers_are_host_and_port() {
    assert!(is_nats_server("127.0.0.1:4222"));
    assert!(is_nats_server("nats://nats-1:4222"));
    assert!(!is_nats_server("nats-1"));
    assert!(!is_nats_server(":4222"));
    assert!(!is_nats_server("h:99999"));
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            format: NatsFormat::Nats,
            servers: Vec::new(),
            auto_provision: true,
            subject: String::new(),
            replicas: 1,
            ack_timeout: Duration::from_secs(5),
        }
    }
}

impl Default for MessageBusConfig {
    fn default() -> Self {
        Self {
            r#type: BusType::Mqtt,
            host: "localhost".into(),
            port: None,
            base_topic_prefix: "edgex".into(),
            client_id: String::new(),
            username: None,
            password: None,
            secret_name: String::new(),
            qos: 1,
            keep_alive: Duration::from_secs(30),
            max_in_flight: 64,
            tls: None,
            nats: NatsConfig::default(),
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
