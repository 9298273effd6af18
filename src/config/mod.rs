//! One typed configuration: embedded defaults, then a YAML file, then
//! environment overrides in the EdgeX manner (`INGEST_UDP_BIND=...` sets
//! `Ingest.Udp.Bind`: the key path upper-cased and joined by `_`). Every
//! layer is validated, and errors name the bad key.
//!
//! The sections beyond this file: `Edgex` (edgex), MQTT clients' ids and
//! TLS (mqtt_clients, mqtt_tls), regions, joins, MAC and downlinks (radio),
//! Basics Station (station), secure mode (secret_store), discovery and
//! operating state (discovery), telemetry (telemetry).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

mod mqtt_clients;
mod mqtt_tls;
pub use mqtt_tls::MqttTls;
mod discovery;
mod edgex;
mod env;
mod market;
mod radio;
mod secret_store;
mod station;
mod telemetry;
pub use discovery::{DiscoveryConfig, OperatingStateConfig};
pub use edgex::{
    BusType, CoreDataConfig, Delivery, EdgexConfig, MessageBusConfig, MetadataConfig, NatsConfig,
    NatsFormat, OutboxConfig,
};
pub use market::{MarketConfig, OfferConfig};
pub use radio::{DownlinkConfig, JoinConfig, MacConfig, RegionConfig};
pub use secret_store::{client_token, SecretStoreConfig};
pub use station::{BasicStationConfig, StationTls};
pub use telemetry::TelemetryConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Yaml { origin: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(
        "config keys `{first}` and `{second}` both give the MQTT client id `{id}` on broker {broker}: \
         the broker disconnects one client whenever the other connects, and messages are lost; \
         give them different ids, or leave both empty for `{{Service.Name}}-ingest` and `{{Service.Name}}-bus`"
    )]
    ClientIdClash {
        first: &'static str,
        second: &'static str,
        id: String,
        broker: String,
    },
    /// The bad value came from the environment: the variable is named.
    #[error("{error} (the value comes from the environment variable {var})")]
    FromEnvironment {
        var: String,
        error: Box<ConfigError>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct Config {
    pub service: ServiceConfig,
    pub devices: DevicesConfig,
    pub ingest: IngestConfig,
    pub region: RegionConfig,
    pub join: JoinConfig,
    pub downlink: DownlinkConfig,
    pub mac: MacConfig,
    pub readings: ReadingsConfig,
    pub edgex: EdgexConfig,
    pub handover: HandoverConfig,
    pub market: MarketConfig,
    pub secret_store: SecretStoreConfig,
    pub log: LogConfig,
}

/// Edge-as-a-Service handover (see `src/handover`). The customer side needs
/// no settings here: it runs when `handover offer` has left a contract in
/// `<DataDir>/handover/customer`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct HandoverConfig {
    /// Serve the provider's handover endpoint (mutual TLS) on this
    /// address, e.g. `0.0.0.0:59996`; empty: this edge provides for no one.
    pub listen: String,
    /// Uplinks held per handed-over device while the other edge publishes
    /// them; the oldest go first (counted).
    pub buffer_frames: usize,
    /// Heartbeats between two session syncs from the customer.
    pub sync_every: u32,
    /// How a provider runs a silent customer's devices.
    pub takeover: TakeoverMode,
    /// The Docker-API engine the container takeover uses (Docker,
    /// balenaEngine, `podman system service`), as `DOCKER_HOST` names it.
    pub engine: String,
    /// Set by a provider in the configuration of the customer's image it
    /// runs: start with every device held, and publish them once this file
    /// names the counters to publish after. Empty: publish at once.
    pub resume_after: String,
}

/// How a provider takes a silent customer's devices over.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TakeoverMode {
    /// This edge's own running service publishes them: no engine needed.
    #[default]
    InProcess,
    /// The customer's own image runs in a container engine, with the
    /// contract's resource limits; this edge publishes only until the
    /// container has subscribed to the gateway stream.
    Container,
}

impl Default for HandoverConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            buffer_frames: 256,
            sync_every: 10,
            takeover: TakeoverMode::InProcess,
            engine: "unix:///var/run/docker.sock".into(),
            resume_after: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct ServiceConfig {
    pub name: String,
    /// The host name other EdgeX services reach us by (our registered
    /// `baseAddress` is `http://{Host}:{port of ApiBind}`).
    pub host: String,
    /// Address of the device-service API (`/api/v3/...`, `/metrics`).
    pub api_bind: SocketAddr,
    /// Where durable state (frame counters) lives.
    pub data_dir: PathBuf,
    /// How often durable state is fsync'd (writes themselves are immediate,
    /// so a killed process loses nothing; this bounds loss on power cut).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// A bearer token the API's write routes (POST `/secret`, PUT commands,
    /// POST `/registration`) require (`Authorization: Bearer <token>`);
    /// unset: they are open (a warning at start). Never echoed.
    pub api_token: Option<String>,
    /// The token is required for reading routes too (all but `/api/v3/ping`).
    pub api_token_for_reads: bool,
    /// API connections open at once; more are closed at accept, counted.
    pub api_max_connections: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// The devices file (YAML, holds session keys: keep it mode 0600).
    pub file: PathBuf,
    pub profiles_dir: PathBuf,
    /// Under `reset-tolerant`, a counter that went backwards is accepted as a
    /// device reboot only if it is below this.
    pub reset_window: u32,
    /// EdgeX device definition files (the device SDK's `deviceList`
    /// format): served once their keys arrive, registered with core-metadata.
    pub devices_dir: Option<PathBuf>,
    /// EdgeX provision watchers (one per YAML or JSON file, the device
    /// SDK's format): which discovered devices are added, and how.
    pub provision_watchers_dir: Option<PathBuf>,
    pub discovery: DiscoveryConfig,
    pub operating_state: OperatingStateConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Copies of one frame heard by several gateways within this window
    /// become one reading.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Larger MQTT messages or UDP datagrams are rejected unread.
    pub max_message_bytes: usize,
    pub udp: UdpConfig,
    pub mqtt: MqttConfig,
    pub basic_station: BasicStationConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct UdpConfig {
    pub enabled: bool,
    /// Semtech packet-forwarder port (protocol v2).
    pub bind: SocketAddr,
    /// Gateway EUIs allowed to send (empty: any).
    pub allowed_gateways: Vec<String>,
    /// A gateway's downlinks go to the IP its first PULL_DATA came from
    /// (the port may change); set this for gateways whose IP moves (DHCP).
    pub follow_address: bool,
}

impl UdpConfig {
    /// The gate the UDP ingest applies, or the allow-list entry that is not an EUI.
    pub fn gate(&self) -> Result<crate::ingest::udp::gate::Gate, String> {
        let allowed = match self.allowed_gateways.is_empty() {
            true => None,
            false => Some(
                self.allowed_gateways
                    .iter()
                    .map(|g| {
                        crate::ingest::station::eui_of_text(g)
                            .ok_or_else(|| format!("{g:?} is not a gateway EUI"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(crate::ingest::udp::gate::Gate::new(
            allowed,
            self.follow_address,
        ))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct MqttConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// Empty (default): `{Service.Name}-ingest`.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// EdgeX secure mode: `username` and `password` from this secret in the
    /// secret store (as EdgeX's `AuthMode: usernamepassword`), over the two
    /// above.
    pub secret_name: String,
    pub qos: u8,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    pub subscriptions: Vec<Subscription>,
    /// TLS to the broker (`mqtts`): its CA, and our certificate and key.
    pub tls: Option<MqttTls>,
    /// No session kept at the broker: nothing queued while away is
    /// delivered at the next connection. Off by default (a restart takes
    /// what the broker kept); a provider's takeover container sets it, since
    /// frames from before it subscribed are the provider's.
    pub clean_session: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Subscription {
    pub topic: String,
    pub kind: StreamKind,
}

/// What an MQTT topic carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StreamKind {
    /// Gateway-bridge uplinks: ChirpStack v4 protobuf or JSON, loraserver v3 JSON.
    Gateway,
    /// Application-integration uplinks (decrypted by a network server): ChirpStack v4 or v3 JSON.
    Application,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct ReadingsConfig {
    /// JSON lines of decoded uplinks: `-` for standard output, or a file path.
    pub json_lines: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `device_lorawan=debug`, ...
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            service: ServiceConfig::default(),
            devices: DevicesConfig::default(),
            ingest: IngestConfig::default(),
            region: RegionConfig::default(),
            join: JoinConfig::default(),
            downlink: DownlinkConfig::default(),
            mac: MacConfig::default(),
            readings: ReadingsConfig {
                json_lines: "-".into(),
            },
            edgex: EdgexConfig::default(),
            handover: HandoverConfig::default(),
            market: MarketConfig::default(),
            secret_store: SecretStoreConfig::default(),
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Text,
            },
        }
    }
}
impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            name: "device-lorawan".into(),
            host: "localhost".into(),
            api_bind: "0.0.0.0:59995".parse().expect("literal"),
            data_dir: "data".into(),
            sync_interval: Duration::from_secs(1),
            api_token: None,
            api_token_for_reads: false,
            api_max_connections: 64,
        }
    }
}
impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            file: "devices.yaml".into(),
            profiles_dir: "profiles".into(),
            reset_window: 32,
            devices_dir: None,
            provision_watchers_dir: None,
            discovery: DiscoveryConfig::default(),
            operating_state: OperatingStateConfig::default(),
        }
    }
}
impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            dedup_window: Duration::from_millis(200),
            max_message_bytes: 8192,
            udp: UdpConfig::default(),
            mqtt: MqttConfig::default(),
            basic_station: BasicStationConfig::default(),
        }
    }
}
impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "0.0.0.0:1700".parse().expect("literal"),
            allowed_gateways: Vec::new(),
            follow_address: false,
        }
    }
}
impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: String::new(),
            username: None,
            secret_name: String::new(),
            password: None,
            qos: 1,
            keep_alive: Duration::from_secs(30),
            clean_session: false,
            subscriptions: vec![
                Subscription {
                    topic: "gateway/+/event/up".into(),
                    kind: StreamKind::Gateway,
                },
                Subscription {
                    topic: "application/+/device/+/event/up".into(),
                    kind: StreamKind::Application,
                },
            ],
            tls: None,
        }
    }
}
impl Default for ReadingsConfig {
    fn default() -> Self {
        Self {
            json_lines: "-".into(),
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Defaults, overlaid with `path` (if given) and then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, |k| std::env::var(k).ok())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let origin = path.map_or("(no file)".to_string(), |p| p.display().to_string());
        Self::from_yaml(&origin, text.as_deref(), env)
    }

    /// Defaults, overlaid with the YAML `text` (read from `origin`) and then
    /// the environment.
    pub fn from_yaml(
        origin: &str,
        text: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // The defaults as a tree, built once (a fuzz campaign reads
        // millions of configurations).
        static DEFAULTS: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        let mut tree = DEFAULTS
            .get_or_init(|| serde_yaml_ng::to_value(Config::default()).expect("defaults serialise"))
            .clone();
        if let Some(text) = text {
            let file: Value = serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Yaml {
                origin: origin.to_string(),
                // Never a password or token: serde quotes what it refuses.
                message: crate::fsutil::redact_values(&e.to_string()),
            })?;
            env::merge(&mut tree, file);
        }
        let mut applied = Vec::new();
        env::apply(&mut tree, &mut Vec::new(), &env, &mut applied);
        // An error at a key the environment set names the variable.
        let from_env = |key: &str, e: ConfigError| match applied
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some((_, var)) => ConfigError::FromEnvironment {
                var: var.clone(),
                error: Box::new(e),
            },
            None => e,
        };
        let mut config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            let err = ConfigError::Yaml {
                origin: origin.to_string(),
                message: crate::fsutil::redact_values(&env::with_duration_forms(format!(
                    "at `{key}`: {}",
                    e.inner()
                ))),
            };
            from_env(&key, err)
        })?;
        config
            .secret_store
            .apply_edgex_env(&env)
            .map_err(|message| ConfigError::Invalid {
                key: "SecretStore.Enabled",
                message,
            })?;
        config.derive_client_ids();
        config.validate().map_err(|e| match &e {
            ConfigError::Invalid { key, .. } => from_env(key, e),
            _ => e,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.secret_store
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                key,
                message: message.into(),
            })?;
        let bad = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.ingest.mqtt.qos > 2 {
            return bad("Ingest.Mqtt.Qos", "must be 0, 1 or 2");
        }
        if self.ingest.dedup_window > Duration::from_secs(10) {
            return bad(
                "Ingest.DedupWindow",
                "longer than 10 s would delay every reading",
            );
        }
        if !(64..=1 << 20).contains(&self.ingest.max_message_bytes) {
            return bad("Ingest.MaxMessageBytes", "must be between 64 and 1048576");
        }
        if !self.handover.listen.is_empty() && self.handover.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "Handover.Listen",
                "must be host:port (an IP address), or empty",
            );
        }
        if self.handover.buffer_frames == 0 || self.handover.sync_every == 0 {
            return bad("Handover", "BufferFrames and SyncEvery must be at least 1");
        }
        if self.handover.takeover == TakeoverMode::Container {
            if cfg!(not(feature = "container")) {
                return bad(
                    "Handover.Takeover",
                    "container: this build has no container engine client (build with the cargo feature `container`, a default one)",
                );
            }
            if !self.handover.engine.starts_with("unix://") {
                return bad(
                    "Handover.Engine",
                    "the container takeover needs a unix:// socket (the engine is local)",
                );
            }
            if !self.ingest.mqtt.enabled || self.ingest.mqtt.subscriptions.is_empty() {
                return bad(
                    "Handover.Takeover",
                    "the container takeover needs Ingest.Mqtt: the container subscribes to the gateway stream beside this edge (a UDP port cannot be shared)",
                );
            }
        }
        if self.region.extra_channels.len() > crate::lorawan::region::MAX_EXTRA_CHANNELS {
            return bad("Region.ExtraChannels", "at most 13 extra channels");
        }
        if let Err(e) = crate::lorawan::region::Region::try_new(self.region.settings()) {
            return Err(ConfigError::Invalid {
                key: "Region.ExtraChannels",
                message: e,
            });
        }
        if self
            .service
            .api_token
            .as_deref()
            .is_some_and(|t| t.len() < 16)
        {
            return bad("Service.ApiToken", "must be at least 16 characters");
        }
        for (key, tls) in [
            ("Ingest.Mqtt.Tls", &self.ingest.mqtt.tls),
            ("Edgex.MessageBus.Tls", &self.edgex.message_bus.tls),
        ] {
            if let Some(t) = tls {
                t.client_config()
                    .map_err(|message| ConfigError::Invalid { key, message })?;
            }
        }
        for (key, name) in [
            ("Ingest.Mqtt.SecretName", &self.ingest.mqtt.secret_name),
            (
                "Edgex.MessageBus.SecretName",
                &self.edgex.message_bus.secret_name,
            ),
        ] {
            if !name.is_empty() && !self.secret_store.enabled {
                return bad(
                    key,
                    "needs EdgeX secure mode (SecretStore.Enabled): the credentials are read from the secret store",
                );
            }
        }
        if !(0.0..=30.0).contains(&self.mac.installation_margin) {
            return bad("Mac.InstallationMargin", "must be between 0 and 30 dB");
        }
        if self.mac.max_data_rate.is_some_and(|dr| dr > 15) {
            return bad("Mac.MaxDataRate", "a data rate index is 0..=15");
        }
        if !self.ingest.udp.enabled
            && !self.ingest.mqtt.enabled
            && !self.ingest.basic_station.enabled
        {
            return bad(
                "Ingest",
                "enable at least one of Udp, Mqtt and BasicStation",
            );
        }
        if let Err(message) = self.ingest.udp.gate() {
            return Err(ConfigError::Invalid {
                key: "Ingest.Udp.AllowedGateways",
                message,
            });
        }
        if let Err((key, message)) = self.ingest.basic_station.validate() {
            return Err(ConfigError::Invalid { key, message });
        }
        if self.ingest.mqtt.enabled && self.ingest.mqtt.subscriptions.is_empty() {
            return bad(
                "Ingest.Mqtt.Subscriptions",
                "MQTT is enabled with nothing to subscribe to",
            );
        }
        let not_http = |url: &str| {
            url.parse::<hyper::Uri>()
                .map_or(true, |u| u.scheme_str() != Some("http"))
        };
        if self.edgex.delivery == Delivery::Rest && not_http(&self.edgex.core_data.url) {
            return bad("Edgex.CoreData.Url", "must be an http:// URL");
        }
        if self.edgex.metadata.enabled && not_http(&self.edgex.metadata.url) {
            return bad("Edgex.Metadata.Url", "must be an http:// URL");
        }
        let bus = &self.edgex.message_bus;
        if bus.qos > 2 {
            return bad("Edgex.MessageBus.Qos", "must be 0, 1 or 2");
        }
        if !(1..=1024).contains(&bus.max_in_flight) {
            return bad("Edgex.MessageBus.MaxInFlight", "must be between 1 and 1024");
        }
        if bus.r#type != BusType::Mqtt {
            if bus.tls.is_some() {
                return bad("Edgex.MessageBus.Tls", "is not supported on NATS yet");
            }
            if !(1..=5).contains(&bus.nats.replicas) {
                return bad("Edgex.MessageBus.Nats.Replicas", "must be between 1 and 5");
            }
            if let Some(s) = bus.nats.servers.iter().find(|s| !edgex::is_nats_server(s)) {
                return bad(
                    "Edgex.MessageBus.Nats.Servers",
                    &format!("{s:?} is not host:port (nats:// may lead)"),
                );
            }
        }
        if bus.base_topic_prefix.is_empty() || bus.base_topic_prefix.contains(['+', '#']) {
            return bad(
                "Edgex.MessageBus.BaseTopicPrefix",
                "must be a non-empty topic without wildcards",
            );
        }
        if self.service.name.is_empty() {
            return bad("Service.Name", "must not be empty");
        }
        self.check_client_ids()?;
        let dl = &self.downlink;
        if dl
            .rx2_data_rate
            .as_deref()
            .is_some_and(|d| crate::lorawan::DataRate::parse(d).is_none())
        {
            return bad(
                "Downlink.Rx2DataRate",
                "must be a LoRa data rate like SF12BW125",
            );
        }
        if dl
            .rx1_delay
            .is_some_and(|d| !(Duration::from_secs(1)..=Duration::from_secs(15)).contains(&d))
        {
            return bad(
                "Downlink.Rx1Delay",
                "must be between 1 s and 15 s (LoRaWAN RxDelay)",
            );
        }
        if dl.rx1_dr_offset.is_some_and(|o| o > 7) {
            return bad("Downlink.Rx1DrOffset", "must be between 0 and 7");
        }
        if self.join.net_id.len() != 6 || u32::from_str_radix(&self.join.net_id, 16).is_err() {
            return bad("Join.NetId", "must be 6 hex digits, like 000013");
        }
        if !self.join.dev_addr_prefix.is_empty() {
            if let Err(e) = self
                .join
                .dev_addr_prefix
                .parse::<crate::lorawan::otaa::AddrPrefix>()
            {
                return Err(ConfigError::Invalid {
                    key: "Join.DevAddrPrefix",
                    message: e,
                });
            }
        }
        if self.region.sub_band > 8 {
            return bad(
                "Region.SubBand",
                "must be between 1 and 8, or 0 for the usual 2",
            );
        }
        if !(1..=64).contains(&dl.max_queued) || dl.max_attempts == 0 {
            return bad(
                "Downlink",
                "MaxQueued must be between 1 and 64 and MaxAttempts at least 1",
            );
        }
        Ok(())
    }

    /// The site's region, as configured.
    pub fn site_region(&self) -> crate::lorawan::region::Region {
        crate::lorawan::region::Region::new(self.region.settings())
    }

    /// The receive windows of a device of the site's region that sets none
    /// of its own.
    pub fn rx_defaults(&self) -> crate::lorawan::radio::RxSettings {
        self.downlink.rx_defaults(&self.site_region())
    }

    /// The configuration as YAML with secrets blanked (for `config` output and logs).
    /// Whether an application stream is ingested (then devices need no
    /// keys of ours: the network server decrypted their payloads).
    pub fn app_stream(&self) -> bool {
        self.ingest.mqtt.enabled
            && self
                .ingest
                .mqtt
                .subscriptions
                .iter()
                .any(|s| s.kind == StreamKind::Application)
    }

    pub fn redacted_yaml(&self) -> String {
        let mut c = self.clone();
        for p in [
            &mut c.ingest.mqtt.password,
            &mut c.edgex.message_bus.password,
            &mut c.service.api_token,
        ] {
            if p.is_some() {
                *p = Some("<redacted>".into());
            }
        }
        serde_yaml_ng::to_string(&c).expect("config serialises")
    }
}

#[cfg(test)]
mod tests;

impl Config {
    /// The variables in `vars` that look like this service's (they start
    /// with a section's name: `INGEST_`, `EDGEX_`, ...) but set no key: a
    /// typo the service would otherwise ignore. Each with why.
    pub fn unknown_env<'a>(vars: impl Iterator<Item = &'a str>) -> Vec<String> {
        let tree = serde_yaml_ng::to_value(Config::default()).expect("defaults serialise");
        let mut names = std::collections::BTreeSet::new();
        env::names(&tree, &mut Vec::new(), &mut names);
        let sections: Vec<String> = match &tree {
            Value::Mapping(m) => m
                .keys()
                .filter_map(|k| k.as_str())
                .map(|k| format!("{}_", k.to_uppercase()))
                .collect(),
            _ => Vec::new(),
        };
        // EdgeX's own variables, read by the secret store's settings.
        let edgex = ["EDGEX_SECURITY_SECRET_STORE", "EDGEX_COMMON_CONFIG"];
        vars.filter(|v| sections.iter().any(|s| v.starts_with(s.as_str())))
            .filter(|v| !names.contains(*v) && !edgex.contains(v))
            .map(|v| {
                let near = names
                    .iter()
                    .filter(|n| n.split('_').next() == v.split('_').next())
                    .min_by_key(|n| env::distance(n, v))
                    .map(|n| format!("; did you mean {n}?"))
                    .unwrap_or_default();
                format!("the environment variable {v} looks like a setting of this service but names no configuration key{near}")
            })
            .collect()
    }
}
