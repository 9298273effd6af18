//! `SecretStore`: EdgeX secure mode. The EdgeX secret store (OpenBao, or
//! Vault before EdgeX 4) is where this service checks the JWTs other EdgeX
//! services send (`/v1/identity/oidc/introspect`, as go-mod-bootstrap does)
//! and keeps the secrets it is given, devices' keys among them
//! (`/v1/secret/edgex/<service>/<name>`), with the token
//! `security-secretstore-setup` left in `TokenFile`.
//!
//! As in EdgeX, `EDGEX_SECURITY_SECRET_STORE=true|false` switches secure mode
//! on or off and `EDGEX_DISABLE_JWT_VALIDATION=true` leaves JWTs unchecked
//! (the API gateway checks them instead).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct SecretStoreConfig {
    /// Secure mode: the API's guarded routes need an EdgeX JWT.
    pub enabled: bool,
    pub protocol: String,
    pub host: String,
    pub port: u16,
    /// The service's secret-store token: `{"auth":{"client_token":"…"}}`
    /// (what `security-secretstore-setup` writes) or the bare token.
    pub token_file: PathBuf,
    /// How long a JWT the store said is valid is believed without asking
    /// again (never past the token's own `exp`).
    #[serde(with = "humantime_serde")]
    pub jwt_cache: Duration,
    /// `EDGEX_DISABLE_JWT_VALIDATION`: secure mode without JWT checks.
    pub disable_jwt_validation: bool,
    /// How often the store is asked again for the keys devices still wait
    /// for (it is also asked the moment a device starts waiting).
    #[serde(with = "humantime_serde")]
    pub key_poll: Duration,
}

impl Default for SecretStoreConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            protocol: "http".into(),
            host: "localhost".into(),
            port: 8200,
            token_file: "/tmp/edgex/secrets/device-lorawan/secrets-token.json".into(),
            jwt_cache: Duration::from_secs(30),
            disable_jwt_validation: false,
            key_poll: Duration::from_secs(30),
        }
    }
}

impl SecretStoreConfig {
    /// The store's base URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}:{}", self.protocol, self.host, self.port)
    }

    /// EdgeX's environment switches, over what the file and the
    /// `SECRETSTORE_*` variables said.
    pub(super) fn apply_edgex_env(
        &mut self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        let flag = |name: &str| -> Result<Option<bool>, String> {
            env(name)
                .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "t" | "true" => Ok(true),
                    "0" | "f" | "false" => Ok(false),
                    _ => Err(format!("{name} must be true or false")),
                })
                .transpose()
        };
        if let Some(on) = flag("EDGEX_SECURITY_SECRET_STORE")? {
            self.enabled = on;
        }
        if let Some(off) = flag("EDGEX_DISABLE_JWT_VALIDATION")? {
            self.disable_jwt_validation = off;
        }
        Ok(())
    }

    /// The key at fault and why.
    pub(super) fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.protocol != "http" {
            // The store is reached over loopback or the EdgeX network; a
            // TLS client for it is not built yet.
            return Err(("SecretStore.Protocol", "must be http"));
        }
        if self.enabled && self.host.is_empty() {
            return Err(("SecretStore.Host", "is empty"));
        }
        if self.key_poll < Duration::from_secs(1) {
            return Err(("SecretStore.KeyPoll", "must be at least 1s"));
        }
        if self.jwt_cache > Duration::from_secs(300) {
            return Err((
                "SecretStore.JwtCache",
                "longer than 5 minutes keeps a revoked token working too long",
            ));
        }
        Ok(())
    }
}

/// The client token in a secret-store token file's text.
pub fn client_token(text: &str) -> Option<String> {
    let text = text.trim();
    let token = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.pointer("/auth/client_token")?.as_str()?.to_owned(),
        Err(_) => text.to_owned(),
    };
    (!token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())).then_some(token)
}
