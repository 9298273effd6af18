//! The control plane's state: what a command reads and whom it asks, built
//! once at start from finished parts (the composition root makes each part
//! before it builds this), and shared by every transport — the REST API,
//! the EdgeX message bus, the secret-store poller.

use std::sync::{Arc, Mutex};

use super::mailbox::Mailbox;
use crate::config::Config;
use crate::downlink::queue::DownlinkQueue;
use crate::edgex::discovery::DiscoveryService;
use crate::edgex::outbox::EventPusher;
use crate::edgex::provisioning::Provisioning;
use crate::edgex::registration::Registration;
use crate::edgex::secret_store::SecretStoreClient;
use crate::handover::provider::Provider;
use crate::metrics::Metrics;
use crate::pipeline::device_state::DeviceStates;
use crate::store::secrets::SecretStore;

pub struct Plane {
    pub service_name: String,
    /// The configuration as JSON, secrets already blanked.
    pub config: serde_json::Value,
    pub metrics: Arc<Metrics>,
    pub devices: Arc<DeviceStates>,
    pub secrets: Mutex<SecretStore>,
    /// The EdgeX secret store (secure mode): where secrets are kept.
    pub store: Option<Arc<SecretStoreClient>>,
    /// To the pipeline.
    pub control: Mailbox,
    /// An application stream is ingested: devices need no keys of ours.
    pub app_stream: bool,
    /// Where PUT commands wait for their device's next uplink.
    pub downlinks: Arc<DownlinkQueue>,
    pub downlinks_enabled: bool,
    /// Where customer contracts are kept.
    pub data_dir: std::path::PathBuf,
    /// This edge's handover provider, when it listens.
    pub provider: Option<Arc<Provider>>,
    /// Registration with core-metadata, when enabled.
    pub registration: Option<Arc<Registration>>,
    /// Where a GET command's `ds-pushevent` event goes (the EdgeX outbox,
    /// when EdgeX delivery is on).
    pub events: Option<EventPusher>,
    /// Device discovery (`/api/v3/discovery`).
    pub discovery: Option<Arc<DiscoveryService>>,
    /// Devices served from EdgeX or discovery (waiting for keys, or served).
    pub provisioning: Option<Arc<Provisioning>>,
}

impl Plane {
    /// The parts every service has; the optional ones (`provider`,
    /// `registration`, `events`, `discovery`, `provisioning`) are set by
    /// the caller, before the plane is shared, when they exist.
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        devices: Arc<DeviceStates>,
        secrets: SecretStore,
        control: Mailbox,
        downlinks: Arc<DownlinkQueue>,
    ) -> Self {
        let redacted: serde_json::Value = serde_yaml_ng::from_str(&config.redacted_yaml())
            .expect("config YAML is JSON-compatible");
        Self {
            service_name: config.service.name.clone(),
            config: redacted,
            metrics,
            devices,
            secrets: Mutex::new(secrets),
            store: config.secret_store.enabled.then(|| {
                Arc::new(SecretStoreClient::new(
                    &config.secret_store,
                    &config.service.name,
                ))
            }),
            control,
            app_stream: config.app_stream(),
            downlinks,
            downlinks_enabled: config.downlink.enabled,
            data_dir: config.service.data_dir.clone(),
            provider: None,
            registration: None,
            events: None,
            discovery: None,
            provisioning: None,
        }
    }

    /// The id of `name` if the devices file defines it (not a device from
    /// EdgeX or discovery, which the table also holds once served).
    pub fn file_device(&self, name: &str) -> Option<u32> {
        let id = self.devices.id(name)?;
        match &self.provisioning {
            Some(p) if !p.in_file(name) => None,
            _ => Some(id),
        }
    }

    /// The data of the secret named `name` (one not of a devices-file
    /// device), if there is one.
    pub fn secret_data(&self, name: &str) -> Option<Vec<(String, String)>> {
        let secrets = self.secrets.lock().expect("secrets lock");
        let data = secrets.other(name)?;
        Some(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}
