//! Who may call the API. Guarded are the routes that change state (and,
//! with `Service.ApiTokenForReads`, the reading ones; `/api/v3/ping` never):
//! outside EdgeX secure mode by `Service.ApiToken`, compared in constant
//! time; in secure mode by the caller's EdgeX JWT, which the secret store
//! judges (`POST /v1/identity/oidc/introspect`, as go-mod-bootstrap does)
//! and a short cache remembers. No token is ever logged or echoed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::edgex::http::JsonClient;
use crate::edgex::secret_store::{ServiceToken, StoreError};

/// What the guard says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// 401: no credential, or the wrong one.
    Refused(&'static str),
    /// 500 (as EdgeX answers): the secret store could not judge the JWT.
    Unavailable,
}

enum Mode {
    Open,
    Token(String),
    Jwt(Box<Introspector>),
}

pub struct Guard {
    mode: Mode,
    for_reads: bool,
}

/// Cached verdicts are bounded: a flood of distinct tokens cannot grow it.
const CACHE_MAX: usize = 1024;

struct Introspector {
    store: JsonClient,
    /// The service's own secret-store token.
    token: ServiceToken,
    /// sha256(JWT) → believed valid until.
    valid: Mutex<HashMap<[u8; 32], Instant>>,
    ttl: Duration,
}

impl Guard {
    pub fn new(config: &Config) -> Self {
        let s = &config.secret_store;
        let mode = if s.enabled && !s.disable_jwt_validation {
            Mode::Jwt(Box::new(Introspector {
                store: JsonClient::new(&s.base_url(), Duration::from_secs(5)),
                token: ServiceToken::new(s.token_file.clone()),
                valid: Mutex::new(HashMap::new()),
                ttl: s.jwt_cache,
            }))
        } else if let Some(t) = &config.service.api_token {
            Mode::Token(t.clone())
        } else {
            Mode::Open
        };
        Self {
            mode,
            for_reads: config.service.api_token_for_reads,
        }
    }

    /// Whether any route is guarded (a warning at start when not).
    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// What a refusal asks for, for the 401's message.
    pub fn wanted(&self) -> &'static str {
        match self.mode {
            Mode::Jwt(_) => "this route needs Authorization: Bearer <EdgeX JWT>",
            _ => "this route needs Authorization: Bearer <Service.ApiToken>",
        }
    }

    pub async fn check(&self, parts: &Parts) -> Verdict {
        let reading = matches!(parts.method, Method::GET | Method::HEAD);
        if parts.uri.path() == "/api/v3/ping" || (reading && !self.for_reads) {
            return Verdict::Allowed;
        }
        let given = parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match (&self.mode, given) {
            (Mode::Open, _) => Verdict::Allowed,
            (_, None) => Verdict::Refused("no bearer token"),
            (Mode::Token(t), Some(g)) => {
                if bool::from(subtle::ConstantTimeEq::ct_eq(g.as_bytes(), t.as_bytes())) {
                    Verdict::Allowed
                } else {
                    Verdict::Refused("wrong bearer token")
                }
            }
            (Mode::Jwt(i), Some(jwt)) => i.judge(jwt).await,
        }
    }
}

/// The `exp` claim of a JWT (unverified: it only bounds how long a verdict
/// of the store is cached).
fn expiry(jwt: &str) -> Option<u64> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?["exp"].as_u64()
}

impl Introspector {
    async fn judge(&self, jwt: &str) -> Verdict {
        let key: [u8; 32] = Sha256::digest(jwt.as_bytes()).into();
        let now = Instant::now();
        {
            let mut valid = self.valid.lock().expect("cache lock");
            match valid.get(&key) {
                Some(until) if *until > now => return Verdict::Allowed,
                Some(_) => {
                    valid.remove(&key);
                }
                None => {}
            }
        }
        let body = serde_json::json!({ "token": jwt }).to_string().into_bytes();
        let path = "/v1/identity/oidc/introspect";
        let (status, reply) = match self
            .token
            .exchange(&self.store, Method::POST, path, Some(body))
            .await
        {
            Ok(r) => r,
            Err(StoreError::NoToken { file }) => {
                tracing::error!(file = %file.display(), "no secret-store token in SecretStore.TokenFile: JWTs cannot be checked");
                return Verdict::Unavailable;
            }
            Err(e) => {
                tracing::error!(error = %e, "the secret store could not check a JWT");
                return Verdict::Unavailable;
            }
        };
        if status != StatusCode::OK {
            tracing::error!(%status, "the secret store refused to check a JWT");
            return Verdict::Unavailable;
        }
        let active = serde_json::from_slice::<serde_json::Value>(&reply)
            .ok()
            .and_then(|v| v["active"].as_bool());
        match active {
            Some(true) => {
                let mut ttl = self.ttl;
                if let Some(exp) = expiry(jwt) {
                    let unix = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    ttl = ttl.min(Duration::from_secs(exp.saturating_sub(unix)));
                }
                let mut valid = self.valid.lock().expect("cache lock");
                if valid.len() >= CACHE_MAX {
                    valid.retain(|_, until| *until > now);
                    if valid.len() >= CACHE_MAX {
                        valid.clear();
                    }
                }
                if !ttl.is_zero() {
                    valid.insert(key, now + ttl);
                }
                Verdict::Allowed
            }
            Some(false) => Verdict::Refused("the secret store says the JWT is not valid"),
            None => {
                tracing::error!("the secret store's introspection answer has no `active`");
                Verdict::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_the_exp_claim_only() {
        use base64::Engine;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"ES384"}"#),
            enc(r#"{"exp":1900000000,"sub":"x"}"#)
        );
        assert_eq!(expiry(&jwt), Some(1_900_000_000));
        assert_eq!(expiry("not-a-jwt"), None);
        assert_eq!(expiry("a.!!!.c"), None);
    }

    #[test]
    fn client_token_reads_the_setup_file_or_a_bare_token() {
        use crate::config::client_token;
        assert_eq!(
            client_token(r#"{"auth":{"client_token":"hvs.abc"}}"#).as_deref(),
            Some("hvs.abc")
        );
        assert_eq!(client_token("hvs.abc\n").as_deref(), Some("hvs.abc"));
        assert_eq!(client_token(r#"{"auth":{}}"#), None);
        assert_eq!(client_token(""), None);
    }
}
