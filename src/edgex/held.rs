//! The devices a provider holds for another edge, in the provider's own
//! core-metadata: registered (with their profiles) when it takes them over,
//! so its EdgeX sees them and core-command routes their commands here, and
//! marked operating state `DOWN` when it hands them back (kept, so their
//! history stays attached; `UP` again at the next takeover).
//!
//! They carry the label [`LABEL`]: this service's own EdgeX provisioning
//! leaves such devices alone (their sessions come from the contract, not
//! from EdgeX). A core-metadata that cannot be reached or refuses is logged
//! and counted; the takeover goes on (events need no registration).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::http::JsonClient;
use crate::metrics::Metrics;

/// The label on devices held for another edge.
pub const LABEL: &str = "handover";

/// Whether a device DTO from core-metadata is one held for another edge.
pub fn is_held(device: &Value) -> bool {
    device["labels"]
        .as_array()
        .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(LABEL)))
}

/// A device held: its name, profile (EdgeX document as JSON) and DevEUI.
pub struct Held {
    pub name: String,
    pub profile: Value,
    pub dev_eui: String,
    pub dev_addr: Option<String>,
    pub otaa: bool,
}

pub struct HeldInEdgex {
    pub client: JsonClient,
    /// This (the provider's) device service's name.
    pub service: String,
    pub metrics: Arc<Metrics>,
}

fn request(key: &str, dto: Value) -> Value {
    json!({ "apiVersion": "v3", "requestId": uuid::Uuid::new_v4(), key: dto })
}

impl HeldInEdgex {
    /// Register `devices` held under `contract` (their profiles first), or
    /// set them `UP` again.
    pub async fn up(&self, contract: &str, devices: &[Held]) {
        let mut profiles: Vec<&Value> = Vec::new();
        for d in devices {
            if !profiles.iter().any(|p| p["name"] == d.profile["name"]) {
                profiles.push(&d.profile);
            }
        }
        let reqs: Vec<Value> = profiles
            .iter()
            .map(|p| request("profile", (*p).clone()))
            .collect();
        // 409: core-metadata has it already (from this edge's own files, or
        // an earlier takeover).
        self.send(
            "device profiles",
            Method::POST,
            "/api/v3/deviceprofile",
            reqs,
            &[409],
        )
        .await;
        let dtos: Vec<Value> = devices
            .iter()
            .map(|d| {
                let mut lorawan = serde_json::Map::new();
                lorawan.insert("DevEUI".into(), d.dev_eui.clone().into());
                if let Some(a) = &d.dev_addr {
                    lorawan.insert("DevAddr".into(), a.clone().into());
                }
                lorawan.insert("Class".into(), "A".into());
                lorawan.insert(
                    "Activation".into(),
                    if d.otaa { "OTAA" } else { "ABP" }.into(),
                );
                request(
                    "device",
                    json!({
                        "name": d.name,
                        "serviceName": self.service,
                        "profileName": d.profile["name"],
                        "adminState": "UNLOCKED",
                        "operatingState": "UP",
                        "labels": [LABEL, format!("contract:{contract}")],
                        "protocols": { "lorawan": lorawan },
                    }),
                )
            })
            .collect();
        let answers = self
            .send("devices", Method::POST, "/api/v3/device", dtos, &[409])
            .await;
        // Those it knew from an earlier takeover: UP again.
        let known: Vec<&str> = devices
            .iter()
            .zip(answers)
            .filter(|(_, s)| *s == 409)
            .map(|(d, _)| d.name.as_str())
            .collect();
        if !known.is_empty() {
            self.operating(&known, "UP").await;
        }
        tracing::info!(
            contract,
            devices = devices.len(),
            "held devices registered in core-metadata"
        );
    }

    /// The devices are handed back: marked `DOWN`.
    pub async fn down(&self, names: &[&str]) {
        self.operating(names, "DOWN").await;
    }

    async fn operating(&self, names: &[&str], state: &str) {
        let reqs = names
            .iter()
            .map(|n| request("device", json!({"name": n, "operatingState": state})))
            .collect();
        self.send("device states", Method::PATCH, "/api/v3/device", reqs, &[])
            .await;
    }

    /// Send a batch; the status of each item (0 when the whole batch
    /// failed). Items refused with a status not in `fine` are logged.
    async fn send(
        &self,
        what: &str,
        method: Method,
        path: &str,
        reqs: Vec<Value>,
        fine: &[u16],
    ) -> Vec<u16> {
        if reqs.is_empty() {
            return Vec::new();
        }
        let n = reqs.len();
        let body = serde_json::to_vec(&reqs).expect("JSON serialises");
        let statuses: Vec<(u16, String)> = match self.client.send(method, path, Some(body)).await {
            Ok((StatusCode::MULTI_STATUS | StatusCode::OK | StatusCode::CREATED, body)) => {
                serde_json::from_slice::<Vec<Value>>(&body)
                    .unwrap_or_default()
                    .iter()
                    .map(|v| {
                        (
                            v["statusCode"].as_u64().unwrap_or(0) as u16,
                            v["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            }
            Ok((status, body)) => {
                vec![(status.as_u16(), String::from_utf8_lossy(&body).into_owned()); n]
            }
            Err(e) => vec![(0, e.to_string()); n],
        };
        for (status, message) in &statuses {
            if !(200..300).contains(status) && !fine.contains(status) {
                self.metrics.registration_errors.fetch_add(1, Relaxed);
                tracing::warn!(
                    what,
                    status,
                    message,
                    "core-metadata did not take the held devices' change"
                );
            }
        }
        statuses.into_iter().map(|(s, _)| s).collect()
    }
}
