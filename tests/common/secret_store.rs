//! A stand-in of the EdgeX secret store (OpenBao, Vault before EdgeX 4):
//! KV version 1 secrets under `/v1/secret/` (a write's body is the
//! key/value map, a read answers `{"data": {...}}`, an unknown path 404),
//! for the one service token it was started with (anything else 403), as
//! go-mod-secrets sees the real store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::standin::StandIn;

pub type Secrets = Arc<Mutex<BTreeMap<String, Map<String, Value>>>>;

pub struct SecretStore {
    pub server: StandIn,
    /// By path under `/v1/secret/` (`edgex/<service>/<name>`).
    pub secrets: Secrets,
    /// The token file the service is configured with.
    pub token_file: PathBuf,
}

super::standin::serves_through!(SecretStore);

impl SecretStore {
    /// Started with `token` written, as `security-secretstore-setup` does,
    /// to `secrets-token.json` in `dir`.
    pub async fn start(dir: &Path, token: &'static str) -> Self {
        let token_file = dir.join("secrets-token.json");
        std::fs::write(
            &token_file,
            format!(r#"{{"auth":{{"client_token":"{token}"}}}}"#),
        )
        .unwrap();
        let secrets: Secrets = Default::default();
        let kept = secrets.clone();
        let server = StandIn::start_with_headers(Arc::new(move |method, path, headers, body| {
            if headers.get("x-vault-token").and_then(|v| v.to_str().ok()) != Some(token) {
                return (
                    StatusCode::FORBIDDEN,
                    json!({"errors": ["permission denied"]}),
                );
            }
            let Some(key) = path.strip_prefix("/v1/secret/") else {
                return (StatusCode::NOT_FOUND, json!({"errors": []}));
            };
            let mut secrets = kept.lock().unwrap();
            match *method {
                Method::GET => match secrets.get(key) {
                    Some(data) => (StatusCode::OK, json!({ "data": data })),
                    None => (StatusCode::NOT_FOUND, json!({"errors": []})),
                },
                Method::POST | Method::PUT => match serde_json::from_slice::<Value>(body) {
                    Ok(Value::Object(data)) => {
                        secrets.insert(key.to_string(), data);
                        (StatusCode::NO_CONTENT, Value::Null)
                    }
                    _ => (
                        StatusCode::BAD_REQUEST,
                        json!({"errors": ["not a JSON object"]}),
                    ),
                },
                _ => (StatusCode::METHOD_NOT_ALLOWED, json!({"errors": []})),
            }
        }))
        .await;
        Self {
            server,
            secrets,
            token_file,
        }
    }

    /// What an operator (or another service) puts in the store.
    pub fn put(&self, path: &str, data: &[(&str, String)]) {
        let data = data
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        self.secrets.lock().unwrap().insert(path.to_string(), data);
    }

    pub fn get(&self, path: &str) -> Option<Map<String, Value>> {
        self.secrets.lock().unwrap().get(path).cloned()
    }

    /// The service's `SecretStore` section pointed here (secure mode on).
    pub fn configure(&self, c: &mut device_lorawan::config::Config) {
        c.secret_store.enabled = true;
        c.secret_store.host = "127.0.0.1".into();
        c.secret_store.port = self.server.addr.port();
        c.secret_store.token_file = self.token_file.clone();
    }
}
