//! Registration through core-metadata, as a Go device service does at start:
//! the device service itself (created, or its address updated), every
//! profile in the profiles directory (added, or replaced when it exists),
//! and the devices of the devices file (added; ones that exist are left as
//! they are). Multi-status (207) answers are read item by item.
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
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::event::encode_segment;
use super::http::{error_message, HttpError, JsonClient};
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

/// What one registration pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Registered {
    pub service_created: bool,
    pub profiles_added: usize,
    pub profiles_updated: usize,
    pub devices_added: usize,
    pub devices_existing: usize,
    /// Devices core-metadata refused: (name, status, message).
    pub devices_refused: Vec<(String, u16, String)>,
}

pub struct Registrar {
    pub client: JsonClient,
    pub service: String,
    /// Our REST address as core-metadata and core-command should use it.
    pub base_address: String,
    pub profiles_dir: PathBuf,
    pub devices: Vec<DeviceSpec>,
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

/// Profile documents as they are on disk (EdgeX YAML), as JSON.
pub fn profile_documents(dir: &Path) -> Result<Vec<Value>, RegistrationError> {
    let bad =
        |e: &dyn std::fmt::Display| RegistrationError::Profiles(format!("{}: {e}", dir.display()));
    let paths = crate::codec::profile::yaml_files(dir).map_err(|e| bad(&e))?;
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| bad(&e))?;
            serde_yaml_ng::from_str(&text).map_err(|e| bad(&format_args!("{}: {e}", p.display())))
        })
        .collect()
}

impl Registrar {
    /// Register until it worked, retrying transient failures with backoff.
    /// Returns what the successful pass did (or the first permanent error).
    pub async fn run(self) -> Result<Registered, RegistrationError> {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.register_once().await {
                Ok(r) => {
                    self.metrics.registered.store(1, Relaxed);
                    for (name, status, message) in &r.devices_refused {
                        tracing::error!(device = %name, status, message, "core-metadata refused a device");
                    }
                    tracing::info!(
                        url = self.client.base(),
                        created = r.service_created,
                        profiles_added = r.profiles_added,
                        profiles_updated = r.profiles_updated,
                        devices_added = r.devices_added,
                        devices_existing = r.devices_existing,
                        devices_refused = r.devices_refused.len(),
                        "registered with core-metadata"
                    );
                    return Ok(r);
                }
                Err(e) if e.transient() => {
                    self.metrics.registration_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, retry_in = ?backoff, "registration with core-metadata failed; ingest goes on");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    self.metrics.registration_errors.fetch_add(1, Relaxed);
                    tracing::error!(error = %e, "registration with core-metadata failed for good");
                    return Err(e);
                }
            }
        }
    }

    /// One pass: service, profiles, devices.
    pub async fn register_once(&self) -> Result<Registered, RegistrationError> {
        let mut done = Registered {
            service_created: self.register_service().await?,
            ..Registered::default()
        };
        (done.profiles_added, done.profiles_updated) = self.register_profiles().await?;
        self.register_devices(&mut done).await?;
        Ok(done)
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
                    json!({"name": self.service, "description": "LoRaWAN ABP devices, no network server needed",
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

    /// Add every profile; replace the ones that exist. Returns (added, updated).
    async fn register_profiles(&self) -> Result<(usize, usize), RegistrationError> {
        let docs = profile_documents(&self.profiles_dir)?;
        if docs.is_empty() {
            return Ok((0, 0));
        }
        let adds: Vec<Value> = docs.iter().map(|d| request("profile", d.clone())).collect();
        let (_, body) = self
            .call(
                "the profiles",
                Method::POST,
                "/deviceprofile",
                Some(Value::Array(adds)),
            )
            .await?;
        let answers = items("the profiles", &body, docs.len())?;
        let mut added = 0;
        let mut existing = Vec::new();
        for (doc, (status, message)) in docs.iter().zip(answers) {
            match status {
                201 => added += 1,
                409 => existing.push(doc),
                _ => {
                    return Err(RegistrationError::item(
                        "a profile",
                        status,
                        format!("{}: {message}", doc["name"]),
                    ))
                }
            }
        }
        if existing.is_empty() {
            return Ok((added, 0));
        }
        let puts: Vec<Value> = existing
            .iter()
            .map(|d| request("profile", (*d).clone()))
            .collect();
        let n = puts.len();
        let (_, body) = self
            .call(
                "the profile updates",
                Method::PUT,
                "/deviceprofile",
                Some(Value::Array(puts)),
            )
            .await?;
        for (doc, (status, message)) in existing.iter().zip(items("the profile updates", &body, n)?)
        {
            if status != 200 {
                return Err(RegistrationError::item(
                    "a profile update",
                    status,
                    format!("{}: {message}", doc["name"]),
                ));
            }
        }
        Ok((added, n))
    }

    async fn register_devices(&self, done: &mut Registered) -> Result<(), RegistrationError> {
        if self.devices.is_empty() {
            return Ok(());
        }
        let adds: Vec<Value> = self
            .devices
            .iter()
            .map(|d| {
                request(
                    "device",
                    json!({"name": d.name, "adminState": "UNLOCKED", "operatingState": "UP",
                           "serviceName": self.service, "profileName": d.profile,
                           "labels": ["lorawan"], "protocols": d.protocols()}),
                )
            })
            .collect();
        let (_, body) = self
            .call(
                "the devices",
                Method::POST,
                "/device",
                Some(Value::Array(adds)),
            )
            .await?;
        for (d, (status, message)) in
            self.devices
                .iter()
                .zip(items("the devices", &body, self.devices.len())?)
        {
            match status {
                201 => done.devices_added += 1,
                409 => done.devices_existing += 1,
                s => done.devices_refused.push((d.name.clone(), s, message)),
            }
        }
        Ok(())
    }
}
