//! Device discovery the device-sdk way. A JoinRequest from a DevEUI no
//! device has is a discovered device ([`found`]); a discovery matches what
//! was found against the provision watchers ([`watcher`], [`matches()`]) and
//! adds each match, with the watcher's profile and admin state, to the
//! service and to core-metadata. The device joins once its AppKey arrives
//! as a secret.
//!
//! In the running service ([`DiscoveryService`]): the pipeline records the
//! JoinRequests of unknown DevEUIs; `POST /api/v3/discovery` (or the
//! interval) runs a discovery, hands each match to
//! [`super::provisioning::Provisioning`] as an OTAA device
//! (served once its AppKey is a secret named for it), adds it to
//! core-metadata, and publishes the SDK's progress system events on the bus.

pub mod found;
pub mod watcher;

pub use found::{Found, FoundDevice};
pub use watcher::{ProvisionWatcher, WatcherError};

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::provisioning::Provisioning;
use crate::codec::CodecKind;
use crate::devices::{Activation, DeviceEntry};
use crate::edgex::bus::BusMessage;
use crate::lorawan::Eui64;
use crate::metrics::Metrics;

/// The devices of `found` that a watcher admits and that `known` does not
/// have yet, each with the first watcher (by name) that admits it.
pub fn matches<'a>(
    found: &'a [FoundDevice],
    watchers: &'a [ProvisionWatcher],
    known: impl Fn(&FoundDevice) -> bool,
) -> Vec<(&'a FoundDevice, &'a ProvisionWatcher)> {
    found
        .iter()
        .filter(|d| !known(d))
        .filter_map(|d| {
            let props = d.properties();
            watchers.iter().find(|w| w.admits(&props)).map(|w| (d, w))
        })
        .collect()
}

/// Where discovered devices are registered with core-metadata.
pub struct MetadataTarget {
    pub client: crate::edgex::http::JsonClient,
    pub service: String,
}

pub struct DiscoveryService {
    pub enabled: bool,
    service: String,
    found: Mutex<Found>,
    watchers: Vec<ProvisionWatcher>,
    /// The request id of the discovery running, if one is.
    running: Mutex<Option<(String, tokio::task::AbortHandle)>>,
    provisioning: Arc<Provisioning>,
    /// Where found devices are registered, when registration is on.
    metadata: Option<MetadataTarget>,
    /// Where discovery's system events go, when delivery is on the bus.
    events: Option<crate::edgex::bus::BusOut>,
    metrics: Arc<Metrics>,
}

/// The name a discovered device gets.
pub fn device_name(eui: Eui64) -> String {
    format!("lorawan-{eui}")
}

impl DiscoveryService {
    pub fn new(
        config: &crate::config::Config,
        provisioning: Arc<Provisioning>,
        metrics: Arc<Metrics>,
        metadata: Option<MetadataTarget>,
        events: Option<crate::edgex::bus::BusOut>,
    ) -> anyhow::Result<Self> {
        let watchers = match &config.devices.provision_watchers_dir {
            Some(dir) => crate::edgex::discovery::watcher::load_dir(dir)?,
            None => Vec::new(),
        };
        for w in &watchers {
            if provisioning.profile(&w.profile).is_none() {
                anyhow::bail!(
                    "provision watcher {}: no profile {:?} in {}",
                    w.name,
                    w.profile,
                    config.devices.profiles_dir.display()
                );
            }
        }
        let d = &config.devices.discovery;
        Ok(Self {
            enabled: d.enabled,
            service: config.service.name.clone(),
            found: Mutex::new(Found::new(d.max_found)),
            watchers,
            running: Mutex::new(None),
            provisioning,
            metadata,
            events,
            metrics,
        })
    }

    /// A JoinRequest from a DevEUI no device has.
    pub fn heard(&self, d: FoundDevice) {
        self.found.lock().expect("found lock").heard(d);
    }

    pub fn found(&self) -> Vec<FoundDevice> {
        self.found.lock().expect("found lock").all()
    }

    pub fn watchers(&self) -> &[ProvisionWatcher] {
        &self.watchers
    }

    /// Run a discovery (unless one runs: its request id is returned).
    /// `secret` looks a secret's data up by name (an admitted device's
    /// AppKey may be there already).
    pub fn start(
        self: &Arc<Self>,
        request_id: String,
        secret: impl Fn(&str) -> Option<Vec<(String, String)>>,
    ) -> String {
        let mut running = self.running.lock().expect("running lock");
        if let Some((id, task)) = running.as_ref() {
            if !task.is_finished() {
                return id.clone();
            }
        }
        let found = self.found();
        let picked: Vec<(FoundDevice, String)> =
            crate::edgex::discovery::matches(&found, &self.watchers, |_| false)
                .into_iter()
                .map(|(d, w)| (d.clone(), w.name.clone()))
                .collect();
        let mut added = Vec::new();
        for (d, watcher) in &picked {
            let w = self
                .watchers
                .iter()
                .find(|w| &w.name == watcher)
                .expect("matched");
            let entry = self.entry(d, w);
            self.found.lock().expect("found lock").remove(d.dev_eui);
            tracing::info!(device = %entry.name, dev_eui = %d.dev_eui, watcher = %w.name, "discovered device admitted");
            self.metrics.devices_discovered.fetch_add(1, Relaxed);
            added.push(dto(&self.service, &entry, w));
            let device = crate::edgex::device_dto::EdgexDevice {
                secret_name: entry.name.clone(),
                entry,
                uplink_interval: None,
            };
            self.provisioning.provide(device, &secret);
        }
        let me = self.clone();
        let id = request_id.clone();
        let task = tokio::spawn(async move { me.report(&id, added).await });
        *running = Some((request_id.clone(), task.abort_handle()));
        request_id
    }

    /// Stop the discovery `request_id` (any, if `None`); whether one ran.
    pub fn stop(&self, request_id: Option<&str>) -> bool {
        let mut running = self.running.lock().expect("running lock");
        match running.as_ref() {
            Some((id, task)) if request_id.is_none_or(|r| r == id) && !task.is_finished() => {
                task.abort();
                *running = None;
                true
            }
            _ => false,
        }
    }

    fn entry(&self, d: &FoundDevice, w: &ProvisionWatcher) -> DeviceEntry {
        let profile = self
            .provisioning
            .profile(&w.profile)
            .expect("checked at start");
        let prop = |k: &str| w.properties.get(k).cloned();
        let codec = prop("codec")
            .and_then(|v| serde_json::from_value::<CodecKind>(v).ok())
            .unwrap_or(if profile.script.is_some() {
                CodecKind::Javascript
            } else {
                CodecKind::CayenneLpp
            });
        DeviceEntry {
            activation: Activation::Otaa,
            join_eui: Some(d.join_eui),
            codec,
            admin_state: w.device_admin_state,
            region: Some(d.region),
            mac_version: prop("macVersion")
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            ..DeviceEntry::new(device_name(d.dev_eui), d.dev_eui, &w.profile)
        }
    }

    /// Register the added devices with core-metadata and publish progress.
    async fn report(&self, request_id: &str, added: Vec<serde_json::Value>) {
        self.progress(request_id, 0, 0, "").await;
        let n = added.len();
        if let (Some(md), false) = (self.metadata.as_ref(), added.is_empty()) {
            for dto in added {
                let body =
                    json!([{"apiVersion": "v3", "requestId": uuid::Uuid::new_v4(), "device": dto}]);
                let name = dto["name"].as_str().unwrap_or_default().to_string();
                match md
                    .client
                    .send(
                        hyper::Method::POST,
                        "/api/v3/device",
                        Some(serde_json::to_vec(&body).expect("JSON")),
                    )
                    .await
                {
                    Ok((status, reply)) if status.is_success() => {
                        let item = serde_json::from_slice::<serde_json::Value>(&reply)
                            .ok()
                            .and_then(|v| v[0]["statusCode"].as_u64());
                        tracing::info!(device = %name, status = ?item, "discovered device added to core-metadata");
                    }
                    Ok((status, reply)) => {
                        tracing::warn!(device = %name, %status, message = %crate::edgex::http::error_message(&reply), "core-metadata refused a discovered device");
                    }
                    Err(e) => {
                        tracing::warn!(device = %name, error = %e, "a discovered device could not be sent to core-metadata");
                    }
                }
            }
            self.progress(request_id, 50, n, "").await;
        }
        self.progress(request_id, 100, n, "").await;
    }

    /// The device SDK's discovery progress system event.
    async fn progress(&self, request_id: &str, progress: i32, count: usize, message: &str) {
        let Some(ev) = self.events.as_ref() else {
            return;
        };
        let svc = crate::edgex::event::encode_segment(&self.service);
        let system_event = json!({
            "apiVersion": "v3", "type": "device", "action": "discovery",
            "source": self.service, "owner": self.service,
            "details": {"requestId": request_id, "progress": progress,
                        "message": message, "discoveredDeviceCount": count},
            "timestamp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64),
        });
        let envelope = json!({
            "apiVersion": "v3", "receivedTopic": "", "correlationID": request_id,
            "requestID": uuid::Uuid::new_v4(), "errorCode": 0,
            "payload": system_event, "contentType": "application/json",
        });
        let m = BusMessage {
            topic: format!("{}/system-events/{svc}/device/discovery/{svc}", ev.prefix),
            payload: serde_json::to_vec(&envelope).expect("JSON"),
        };
        if ev.out.send(m).await.is_err() {
            tracing::warn!("discovery progress not published: the bus task has stopped");
        }
    }
}

/// The core-metadata `Device` DTO of a discovered device (never a key).
fn dto(service: &str, e: &DeviceEntry, w: &ProvisionWatcher) -> serde_json::Value {
    let mut labels = w.labels.clone();
    labels.push("lorawan".into());
    labels.push("discovered".into());
    json!({
        "name": e.name, "serviceName": service, "profileName": e.profile,
        "adminState": e.admin_state, "operatingState": "UP", "labels": labels,
        "description": format!("discovered by its JoinRequest; provision watcher {}", w.name),
        "protocols": {"lorawan": {
            "DevEUI": e.dev_eui.to_string(),
            "JoinEUI": e.join_eui.map(|j| j.to_string()).unwrap_or_default(),
            "Activation": "OTAA", "Class": "A",
            "Region": e.region.map(|r| r.to_string()).unwrap_or_default(),
        }},
    })
}

/// Run a discovery every `every` (the configured interval).
pub async fn every(
    discovery: Arc<DiscoveryService>,
    secret_data: impl Fn(&str) -> Option<Vec<(String, String)>> + Send + 'static,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        discovery.start(uuid::Uuid::new_v4().to_string(), &secret_data);
    }
}
