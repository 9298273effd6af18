//! The EdgeX secret store's key/value secrets (secure mode): where
//! `POST /api/v3/secret` puts a secret and where a device's keys are read.
//! As go-mod-secrets does, a secret lives at
//! `/v1/secret/edgex/<service>/<name>` (KV version 1: the body is the
//! key/value map, a read answers `{"data": {...}}`), reached with the
//! service's own token (`X-Vault-Token`, from `SecretStore.TokenFile`, read
//! again once when the store refuses it: it may have been rotated).
//!
//! In secure mode keys never touch this service's disk. Errors name the
//! secret and what went wrong, never a value.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use hyper::{Method, StatusCode};

use super::http::{HttpError, JsonClient};
use crate::config::SecretStoreConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no secret-store token in {}", file.display())]
    NoToken { file: PathBuf },
    #[error("the secret store answered {status} to the {op} of secret {name:?}")]
    Refused {
        op: &'static str,
        name: String,
        status: StatusCode,
    },
    #[error("the secret store's answer for secret {name:?} is not a key/value secret")]
    Malformed { name: String },
    #[error("the secret store holds no secret {name:?} with {key:?}")]
    Missing { name: String, key: &'static str },
    #[error("the secret store: {0}")]
    Http(#[from] HttpError),
}

/// The service's own secret-store token, read from its file when first
/// needed and again when the store refuses it.
pub struct ServiceToken {
    file: PathBuf,
    token: Mutex<Option<String>>,
}

impl ServiceToken {
    pub fn new(file: PathBuf) -> Self {
        Self {
            file,
            token: Mutex::new(None),
        }
    }

    /// The token (`fresh`: read the file again).
    pub fn get(&self, fresh: bool) -> Option<String> {
        let mut t = self.token.lock().expect("token lock");
        if fresh || t.is_none() {
            *t = std::fs::read_to_string(&self.file)
                .ok()
                .and_then(|text| crate::config::client_token(&text));
        }
        t.clone()
    }

    /// `path` on `store` with this token, the file read again once if the
    /// store answers 403.
    pub async fn exchange(
        &self,
        store: &JsonClient,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, hyper::body::Bytes), StoreError> {
        let mut fresh = false;
        loop {
            let token = self.get(fresh).ok_or_else(|| StoreError::NoToken {
                file: self.file.clone(),
            })?;
            let headers = [("X-Vault-Token", token.as_str())];
            let answer = store
                .send_with(method.clone(), path, &headers, body.clone())
                .await?;
            if answer.0 == StatusCode::FORBIDDEN && !fresh {
                fresh = true;
                continue;
            }
            return Ok(answer);
        }
    }
}

/// A secret's key/value pairs.
pub type SecretData = Vec<(String, String)>;

pub struct SecretStoreClient {
    http: JsonClient,
    token: ServiceToken,
    /// `/v1/secret/edgex/<service>/`.
    prefix: String,
}

impl SecretStoreClient {
    pub fn new(config: &SecretStoreConfig, service: &str) -> Self {
        Self {
            http: JsonClient::new(&config.base_url(), Duration::from_secs(5)),
            token: ServiceToken::new(config.token_file.clone()),
            prefix: format!("/v1/secret/edgex/{}/", segment(service)),
        }
    }

    /// The secret named `name`; `None` if the store has none by that name.
    pub async fn get(&self, name: &str) -> Result<Option<SecretData>, StoreError> {
        let path = format!("{}{}", self.prefix, segment(name));
        let (status, body) = self
            .token
            .exchange(&self.http, Method::GET, &path, None)
            .await?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => {
                return Err(StoreError::Refused {
                    op: "read",
                    name: name.to_string(),
                    status,
                })
            }
        }
        let malformed = || StoreError::Malformed {
            name: name.to_string(),
        };
        let value: serde_json::Value = serde_json::from_slice(&body).map_err(|_| malformed())?;
        let data = value
            .get("data")
            .and_then(|d| d.as_object())
            .ok_or_else(malformed)?;
        data.iter()
            .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect::<Option<SecretData>>()
            .map(Some)
            .ok_or_else(malformed)
    }

    /// The `username` and `password` of secret `name` (how EdgeX keeps a
    /// broker's credentials, its `message-bus` secret among them).
    pub async fn credentials(&self, name: &str) -> Result<(String, String), StoreError> {
        let data = self.get(name).await?.unwrap_or_default();
        let get = |key: &'static str| {
            data.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .ok_or(StoreError::Missing {
                    name: name.to_string(),
                    key,
                })
        };
        Ok((get("username")?, get("password")?))
    }

    /// Store `data` as the secret `name` (replacing what was there).
    pub async fn put(&self, name: &str, data: &[(String, String)]) -> Result<(), StoreError> {
        let path = format!("{}{}", self.prefix, segment(name));
        let body: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let body = serde_json::to_vec(&body).expect("a map serialises");
        let (status, _) = self
            .token
            .exchange(&self.http, Method::POST, &path, Some(body))
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(StoreError::Refused {
                op: "write",
                name: name.to_string(),
                status,
            })
        }
    }
}

/// `s` as one URL path segment: unreserved characters as they are, every
/// other byte percent-encoded (a name with `/` or `..` stays one segment).
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_always_one_segment() {
        assert_eq!(segment("sensor-1_a"), "sensor-1_a");
        assert_eq!(segment("../x/y"), "%2E%2E%2Fx%2Fy");
        assert_eq!(segment("a b?c#"), "a%20b%3Fc%23");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn errors_name_the_secret_not_its_data() {
        let e = StoreError::Refused {
            op: "write",
            name: "m1".into(),
            status: StatusCode::FORBIDDEN,
        };
        assert_eq!(
            e.to_string(),
            "the secret store answered 403 Forbidden to the write of secret \"m1\""
        );
    }
}
