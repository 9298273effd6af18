//! Registration through core-metadata, as a Go device service does at start:
//! the device service itself (created, or its address updated), every
//! profile in the profiles directory (added, or replaced when it exists),
//! and the devices of the devices file (added; ones that exist are left as
//! they are). Multi-status (207) answers are read item by item, and an
//! item core-metadata refuses does not stop the others: core-metadata
//! answers a whole request 400 when one item of it fails validation, so
//! such a batch is sent again item by item to learn which one it was.
//! Each item's outcome goes into a [`Report`] (see `registration.rs`).
//!
//! Devices are registered with a `lorawan` protocol carrying DevEUI, DevAddr
//! and class: never keys. If core-metadata cannot be reached the service
//! keeps running (ingest and the outbox do not depend on it) and
//! registration is retried with backoff.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use super::event::encode_segment;
use super::http::{error_message, HttpError, JsonClient};
use super::registration::{Item, Kind, Registration, Report, State};
use crate::devices::Registry;
use crate::metrics::Metrics;

const API: &str = "/api/v3";

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("core-metadata: {0}")]
    Http(#[from] HttpError),
    #[error("core-metadata refused {step}: {status}: {message}")]
    Refused {
        step: &'static str,
        status: StatusCode,
        message: String,
    },
    #[error("core-metadata answered {step} with something unreadable: {reason}")]
    Unreadable { step: &'static str, reason: String },
    #[error("profiles: {0}")]
    Profiles(String),
}

impl RegistrationError {
    /// One refused item of a multi-status answer.
    fn item(step: &'static str, status: u16, message: String) -> Self {
        Self::Refused {
            step,
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            message,
        }
    }

    /// Whether trying again later can help (core-metadata down or busy).
    pub fn transient(&self) -> bool {
        match self {
            Self::Http(_) => true,
            Self::Refused { status, .. } => status.is_server_error(),
            Self::Unreadable { .. } | Self::Profiles(_) => false,
        }
    }
}

/// A device as core-metadata should know it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSpec {
    pub name: String,
    pub profile: String,
    pub dev_eui: String,
    pub dev_addr: Option<String>,
}

impl DeviceSpec {
    pub fn from_registry(registry: &Registry) -> Vec<Self> {
        registry
            .iter()
            .map(|d| DeviceSpec {
                name: d.name.to_string(),
                profile: d.codec.profile().name.clone(),
                dev_eui: d.dev_eui.to_string(),
                dev_addr: d.dev_addr.map(|a| a.to_string()),
            })
            .collect()
    }

    /// The `protocols` map: what addresses the device, never its keys.
    pub fn protocols(&self) -> Value {
        let mut lorawan = serde_json::Map::new();
        lorawan.insert("DevEUI".into(), self.dev_eui.clone().into());
        if let Some(a) = &self.dev_addr {
            lorawan.insert("DevAddr".into(), a.clone().into());
        }
        lorawan.insert("Class".into(), "A".into());
        lorawan.insert("Activation".into(), "ABP".into());
        json!({ "lorawan": lorawan })
    }
}

pub struct Registrar {
    pub client: JsonClient,
    pub service: String,
    /// Our REST address as core-metadata and core-command should use it.
    pub base_address: String,
    pub profiles_dir: PathBuf,
    pub devices: Vec<DeviceSpec>,
    /// Device DTOs of the device definition files, registered as they are.
    pub definitions: Vec<Value>,
    /// The provision watchers' documents, registered as device-sdk-go does.
    pub watchers: Vec<Value>,
    /// Given the devices core-metadata holds for this service after each
    /// pass (it serves those the devices file lacks).
    pub on_devices: Option<Arc<dyn Fn(Vec<Value>) + Send + Sync>>,
    pub metrics: Arc<Metrics>,
}

fn request(key: &str, dto: Value) -> Value {
    json!({ "apiVersion": "v3", "requestId": Uuid::new_v4(), key: dto })
}

/// One 207 item: its status, and message when it is an error.
fn items(
    step: &'static str,
    body: &[u8],
    want: usize,
) -> Result<Vec<(u16, String)>, RegistrationError> {
    let arr: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| RegistrationError::Unreadable {
            step,
            reason: e.to_string(),
        })?;
    if arr.len() != want {
        return Err(RegistrationError::Unreadable {
            step,
            reason: format!("{} answers to {want} requests", arr.len()),
        });
    }
    Ok(arr
        .iter()
        .map(|v| {
            (
                v["statusCode"].as_u64().unwrap_or(0) as u16,
                v["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// One profile file: its name (the document's, else the file's) and the
/// document as JSON, or why it could not be read.
pub struct ProfileDocument {
    pub name: String,
    pub doc: Result<Value, String>,
}

/// Profile documents as they are on disk (EdgeX YAML), as JSON. A file that
/// does not parse is kept as a refusal of its own, so it cannot stop the
/// others.
pub fn profile_documents(dir: &Path) -> Result<Vec<ProfileDocument>, RegistrationError> {
    let paths = crate::codec::profile::yaml_files(dir)
        .map_err(|e| RegistrationError::Profiles(format!("{}: {e}", dir.display())))?;
    Ok(paths
        .iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let doc = std::fs::read_to_string(p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_yaml_ng::from_str::<Value>(&t).map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: {e}", p.display()));
            let name = doc
                .as_ref()
                .ok()
                .and_then(|d| d["name"].as_str())
                .map_or(stem, str::to_string);
            ProfileDocument { name, doc }
        })
        .collect())
}

impl Registrar {
    /// Register at start, then again whenever `shared.again` is notified
    /// (`POST /api/v3/registration`). A pass that failed as a whole, or had
    /// items core-metadata could not take *now* (5xx), is retried with
    /// backoff; refusals for good wait for the next trigger or start.
    pub async fn run(self, shared: Arc<Registration>) {
        let mut backoff = Duration::from_secs(1);
        let mut passes = 0;
        loop {
            let report = self.register_once().await;
            passes += 1;
            let transient = match &report {
                Err(e) => e.transient(),
                Ok(r) => r.items.iter().any(Item::transient),
            };
            let report = match report {
                Ok(r) => {
                    self.log(&r);
                    self.metrics.registered.store(1, Relaxed);
                    r
                }
                Err(e) => {
                    self.metrics.registration_errors.fetch_add(1, Relaxed);
                    if transient {
                        tracing::warn!(error = %e, retry_in = ?backoff, "registration with core-metadata failed; ingest goes on");
                    } else {
                        tracing::error!(error = %e, "registration with core-metadata failed; POST /api/v3/registration to try again");
                    }
                    Report {
                        error: Some(e.to_string()),
                        ..Report::default()
                    }
                }
            };
            let refused = report.refused().count() as u64;
            self.metrics.registration_refused.store(refused, Relaxed);
            if report.error.is_none() {
                self.take_devices().await;
            }
            *shared.report.lock().expect("registration lock") = Report { passes, ..report };
            if transient {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.again.notified() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            } else {
                backoff = Duration::from_secs(1);
                shared.again.notified().await;
            }
        }
    }

    /// Our provision watchers (a watcher already there is left as it is).
    async fn register_watchers(&self, report: &mut Report) -> Result<(), RegistrationError> {
        let dtos: Vec<Value> = self
            .watchers
            .iter()
            .map(|w| {
                let mut w = w.clone();
                if w.get("serviceName")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    w["serviceName"] = self.service.clone().into();
                }
                if w.get("adminState").is_none() {
                    w["adminState"] = "UNLOCKED".into();
                }
                // The spec's DiscoveredDevice names its service too.
                if let Some(d) = w.get_mut("discoveredDevice").and_then(Value::as_object_mut) {
                    d.entry("serviceName")
                        .or_insert_with(|| self.service.clone().into());
                    d.entry("adminState").or_insert_with(|| "UNLOCKED".into());
                }
                w
            })
            .collect();
        let answers = self
            .send_items(
                "the provision watchers",
                Method::POST,
                "/provisionwatcher",
                "provisionwatcher",
                &dtos,
            )
            .await?;
        for (w, (status, message)) in dtos.iter().zip(answers) {
            let name = w["name"].as_str().unwrap_or_default();
            report.items.push(match status {
                201 => Item::ok(Kind::ProvisionWatcher, name, State::Added),
                409 => Item::ok(Kind::ProvisionWatcher, name, State::Existing),
                s => Item::refused(Kind::ProvisionWatcher, name, Some(s), message),
            });
        }
        Ok(())
    }

    /// Hand the devices core-metadata holds for us to `on_devices` (those
    /// added while we were away are served as if their events had come).
    async fn take_devices(&self) {
        let Some(on_devices) = &self.on_devices else {
            return;
        };
        let path = format!(
            "{API}/device/service/name/{}?offset=0&limit=-1",
            super::event::encode_segment(&self.service)
        );
        match self.client.send(Method::GET, &path, None).await {
            Ok((StatusCode::OK, body)) => {
                let devices = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["devices"].as_array().cloned())
                    .unwrap_or_default();
                on_devices(devices);
            }
            Ok((status, body)) => {
                tracing::warn!(%status, message = %error_message(&body), "core-metadata did not list our devices");
            }
            Err(e) => tracing::warn!(error = %e, "core-metadata did not list our devices"),
        }
    }

    fn log(&self, r: &Report) {
        for i in r.refused() {
            self.metrics.registration_refusals.fetch_add(1, Relaxed);
            tracing::error!(kind = ?i.kind, name = %i.name, status = i.status_code, message = %i.message,
                "core-metadata refused this; the rest is registered");
        }
        tracing::info!(
            url = self.client.base(),
            created = r.count(Kind::Service, State::Added) == 1,
            profiles_added = r.count(Kind::Profile, State::Added),
            profiles_updated = r.count(Kind::Profile, State::Updated),
            devices_added = r.count(Kind::Device, State::Added),
            devices_existing = r.count(Kind::Device, State::Existing),
            refused = r.refused().count(),
            "registered with core-metadata"
        );
    }

    /// One pass: service, profiles, devices. Fails as a whole only when the
    /// device service itself cannot be registered (nothing else can be).
    pub async fn register_once(&self) -> Result<Report, RegistrationError> {
        let mut report = Report::default();
        let created = self.register_service().await?;
        report.items.push(Item::ok(
            Kind::Service,
            &self.service,
            if created {
                State::Added
            } else {
                State::Updated
            },
        ));
        self.register_profiles(&mut report).await?;
        self.register_devices(&mut report).await?;
        self.register_watchers(&mut report).await?;
        Ok(report)
    }

    async fn call(
        &self,
        step: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, hyper::body::Bytes), RegistrationError> {
        let body = body.map(|b| serde_json::to_vec(&b).expect("JSON serialises"));
        let (status, bytes) = self
            .client
            .send(method, &format!("{API}{path}"), body)
            .await?;
        if status.is_server_error() || status == StatusCode::BAD_REQUEST {
            return Err(RegistrationError::Refused {
                step,
                status,
                message: error_message(&bytes),
            });
        }
        Ok((status, bytes))
    }

    /// Send `dtos` (each wrapped as a request under `key`) in one call and
    /// return each one's status and message. A whole-request refusal (400:
    /// core-metadata validates every item before storing any) of a batch is
    /// followed by one call per item, so each refusal lands on its own item.
    async fn send_items(
        &self,
        step: &'static str,
        method: Method,
        path: &str,
        key: &str,
        dtos: &[Value],
    ) -> Result<Vec<(u16, String)>, RegistrationError> {
        if dtos.is_empty() {
            return Ok(Vec::new());
        }
        let batch = |dtos: &[Value]| {
            let reqs: Vec<Value> = dtos.iter().map(|d| request(key, d.clone())).collect();
            serde_json::to_vec(&reqs).expect("JSON serialises")
        };
        let url = format!("{API}{path}");
        let (status, body) = self
            .client
            .send(method.clone(), &url, Some(batch(dtos)))
            .await?;
        match status {
            StatusCode::MULTI_STATUS | StatusCode::OK | StatusCode::CREATED => {
                items(step, &body, dtos.len())
            }
            s if s.is_client_error() && dtos.len() > 1 => {
                let mut out = Vec::with_capacity(dtos.len());
                for d in dtos {
                    let (s, body) = self
                        .client
                        .send(method.clone(), &url, Some(batch(std::slice::from_ref(d))))
                        .await?;
                    out.push(match s {
                        StatusCode::MULTI_STATUS | StatusCode::OK | StatusCode::CREATED => {
                            items(step, &body, 1)?.remove(0)
                        }
                        s => (s.as_u16(), error_message(&body)),
                    });
                }
                Ok(out)
            }
            s if s.is_client_error() => Ok(vec![(s.as_u16(), error_message(&body))]),
            s => Err(RegistrationError::Refused {
                step,
                status: s,
                message: error_message(&body),
            }),
        }
    }

    /// Create the device service, or point the existing one at us. Returns
    /// whether it was created.
    async fn register_service(&self) -> Result<bool, RegistrationError> {
        let path = format!("/deviceservice/name/{}", encode_segment(&self.service));
        let (status, _) = self
            .call("the device service lookup", Method::GET, &path, None)
            .await?;
        let (step, method, dto) = match status {
            StatusCode::OK => (
                "the device service update",
                Method::PATCH,
                request(
                    "service",
                    json!({"name": self.service, "baseAddress": self.base_address}),
                ),
            ),
            StatusCode::NOT_FOUND => (
                "the device service creation",
                Method::POST,
                request(
                    "service",
                    json!({"name": self.service, "description": "LoRaWAN devices, no network server needed",
                           "adminState": "UNLOCKED", "baseAddress": self.base_address, "labels": ["lorawan"]}),
                ),
            ),
            other => {
                return Err(RegistrationError::Refused {
                    step: "the device service lookup",
                    status: other,
                    message: String::new(),
                })
            }
        };
        let created = method == Method::POST;
        let (_, body) = self
            .call(step, method, "/deviceservice", Some(json!([dto])))
            .await?;
        match items(step, &body, 1)?[0] {
            (200 | 201, _) => Ok(created),
            (409, _) if created => Ok(false), // created by someone else meanwhile
            (status, ref message) => Err(RegistrationError::item(step, status, message.clone())),
        }
    }

    /// Add every profile; replace the ones that exist (409 → PUT). Each
    /// profile's outcome goes into `report`.
    async fn register_profiles(&self, report: &mut Report) -> Result<(), RegistrationError> {
        let mut docs = Vec::new();
        for p in profile_documents(&self.profiles_dir)? {
            match p.doc {
                Ok(d) => docs.push((p.name, d)),
                Err(e) => report
                    .items
                    .push(Item::refused(Kind::Profile, p.name, None, e)),
            }
        }
        let dtos: Vec<Value> = docs.iter().map(|(_, d)| d.clone()).collect();
        let answers = self
            .send_items(
                "the profiles",
                Method::POST,
                "/deviceprofile",
                "profile",
                &dtos,
            )
            .await?;
        let mut existing = Vec::new();
        for ((name, doc), (status, message)) in docs.into_iter().zip(answers) {
            match status {
                201 => report
                    .items
                    .push(Item::ok(Kind::Profile, name, State::Added)),
                409 => existing.push((name, doc)),
                s => report
                    .items
                    .push(Item::refused(Kind::Profile, name, Some(s), message)),
            }
        }
        let dtos: Vec<Value> = existing.iter().map(|(_, d)| d.clone()).collect();
        let answers = self
            .send_items(
                "the profile updates",
                Method::PUT,
                "/deviceprofile",
                "profile",
                &dtos,
            )
            .await?;
        for ((name, _), (status, message)) in existing.into_iter().zip(answers) {
            report.items.push(match status {
                200 => Item::ok(Kind::Profile, name, State::Updated),
                s => Item::refused(Kind::Profile, name, Some(s), message),
            });
        }
        Ok(())
    }

    /// Add the devices; a device whose profile was refused is refused with
    /// that reason and not sent.
    async fn register_devices(&self, report: &mut Report) -> Result<(), RegistrationError> {
        let mut send = Vec::new();
        for d in &self.devices {
            match report.profile_refusal(&d.profile) {
                Some(p) => {
                    let why = format!("its profile {} was refused: {}", d.profile, p.message);
                    report
                        .items
                        .push(Item::refused(Kind::Device, &d.name, None, why));
                }
                None => send.push(d),
            }
        }
        let mut names: Vec<String> = send.iter().map(|d| d.name.clone()).collect();
        let mut dtos: Vec<Value> = send
            .iter()
            .map(|d| {
                json!({"name": d.name, "adminState": "UNLOCKED", "operatingState": "UP",
                       "serviceName": self.service, "profileName": d.profile,
                       "labels": ["lorawan"], "protocols": d.protocols()})
            })
            .collect();
        for d in &self.definitions {
            let name = d["name"].as_str().unwrap_or_default().to_string();
            let profile = d["profileName"].as_str().unwrap_or_default();
            if let Some(p) = report.profile_refusal(profile) {
                let why = format!("its profile {profile} was refused: {}", p.message);
                report
                    .items
                    .push(Item::refused(Kind::Device, &name, None, why));
                continue;
            }
            let mut dto = d.clone();
            if dto.get("adminState").is_none() {
                dto["adminState"] = "UNLOCKED".into();
            }
            if dto.get("operatingState").is_none() {
                dto["operatingState"] = "UP".into();
            }
            names.push(name);
            dtos.push(dto);
        }
        let answers = self
            .send_items("the devices", Method::POST, "/device", "device", &dtos)
            .await?;
        for (name, (status, message)) in names.into_iter().zip(answers) {
            report.items.push(match status {
                201 => Item::ok(Kind::Device, &name, State::Added),
                409 => Item::ok(Kind::Device, &name, State::Existing),
                s => Item::refused(Kind::Device, &name, Some(s), message),
            });
        }
        Ok(())
    }
}
