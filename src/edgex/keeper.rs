//! Registration with core-keeper, EdgeX v4's registry, as EdgeX services
//! do when `Edgex.Registry.Enabled`: the service registers itself (its host,
//! API port and a health check on `/api/v3/ping`) at start, retrying with
//! backoff while core-keeper is away, and deregisters on a clean shutdown.

use std::time::Duration;

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::{error_message, JsonClient};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct RegistryConfig {
    pub enabled: bool,
    /// Base URL of core-keeper (EdgeX default port 59890).
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How often core-keeper checks our health.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            url: "http://localhost:59890".into(),
            timeout: Duration::from_secs(5),
            health_check_interval: Duration::from_secs(10),
        }
    }
}

/// This service as core-keeper registers it.
pub struct Keeper {
    pub client: JsonClient,
    pub service: String,
    pub host: String,
    pub port: u16,
    pub interval: Duration,
}

impl Keeper {
    fn registration(&self) -> serde_json::Value {
        json!({"serviceId": self.service, "status": "UP", "host": self.host,
               "port": self.port, "healthCheck": {
                   "interval": humantime::format_duration(self.interval).to_string(),
                   "path": "/api/v3/ping", "type": "http"}})
    }

    /// Register (or, if registered already, update) once.
    pub async fn register(&self) -> Result<(), String> {
        let body = |reg| {
            serde_json::to_vec(&json!({"apiVersion": "v3", "requestId": uuid::Uuid::new_v4(), "registration": reg}))
                .expect("JSON")
        };
        let (status, reply) = self
            .client
            .send(
                Method::POST,
                "/api/v3/registry",
                Some(body(self.registration())),
            )
            .await
            .map_err(|e| e.to_string())?;
        match status {
            StatusCode::CREATED => Ok(()),
            StatusCode::CONFLICT => {
                let (status, reply) = self
                    .client
                    .send(
                        Method::PUT,
                        "/api/v3/registry",
                        Some(body(self.registration())),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                match status {
                    s if s.is_success() => Ok(()),
                    s => Err(format!("{s}: {}", error_message(&reply))),
                }
            }
            s => Err(format!("{s}: {}", error_message(&reply))),
        }
    }

    /// Register, retrying with backoff until it succeeds.
    pub async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.register().await {
                Ok(()) => {
                    tracing::info!(url = self.client.base(), service = %self.service, "registered with core-keeper");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "registration with core-keeper failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Deregister (a clean shutdown).
    pub async fn deregister(&self) {
        let path = format!(
            "/api/v3/registry/serviceId/{}",
            super::event::encode_segment(&self.service)
        );
        match self.client.send(Method::DELETE, &path, None).await {
            Ok((s, _)) if s.is_success() || s == StatusCode::NOT_FOUND => {
                tracing::info!(service = %self.service, "deregistered from core-keeper");
            }
            Ok((s, reply)) => {
                tracing::warn!(status = %s, message = %error_message(&reply), "core-keeper did not deregister us")
            }
            Err(e) => tracing::warn!(error = %e, "core-keeper did not deregister us"),
        }
    }
}
