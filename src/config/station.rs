//! `Ingest.BasicStation`: gateways running Semtech's LoRa Basics Station
//! connect to this service directly over the LNS protocol (WebSockets,
//! optionally TLS with client authentication).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lorawan::Eui64;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct BasicStationConfig {
    pub enabled: bool,
    /// Discovery (`/router-info`) and traffic (`/traffic/<EUI>`) on one port.
    pub bind: SocketAddr,
    /// Gateway EUIs allowed to connect (empty: any).
    pub allowed_gateways: Vec<String>,
    /// `wss://`: the server certificate chain and key (PEM); with
    /// `ClientCa`, gateways must present a certificate it signed.
    pub tls: Option<StationTls>,
    /// Gateways that must send `Authorization: <token>` (by EUI).
    pub tokens: BTreeMap<String, String>,
    /// Connections open at once; more are refused at the handshake.
    pub max_connections: usize,
    /// A gateway silent this long (no message, no pong) is disconnected;
    /// it is pinged at a third of it.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct StationTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl StationTls {
    pub fn files(&self) -> crate::ingest::station::tls::Files<'_> {
        crate::ingest::station::tls::Files {
            cert: &self.cert,
            key: &self.key,
            client_ca: self.client_ca.as_deref(),
        }
    }
}

impl Default for BasicStationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            bind: "0.0.0.0:3001".parse().expect("literal"),
            allowed_gateways: Vec::new(),
            tls: None,
            tokens: BTreeMap::new(),
            max_connections: 256,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl BasicStationConfig {
    /// The allow-list as EUIs (`None`: any gateway), or the entry that is not one.
    pub fn allowed(&self) -> Result<Option<Vec<Eui64>>, String> {
        if self.allowed_gateways.is_empty() {
            return Ok(None);
        }
        self.allowed_gateways
            .iter()
            .map(|g| {
                crate::ingest::station::eui_of_text(g)
                    .ok_or_else(|| format!("{g:?} is not a gateway EUI"))
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// The tokens by EUI, or the key that is not one.
    pub fn tokens(&self) -> Result<BTreeMap<Eui64, String>, String> {
        self.tokens
            .iter()
            .map(|(g, t)| {
                let eui = crate::ingest::station::eui_of_text(g)
                    .ok_or_else(|| format!("{g:?} is not a gateway EUI"))?;
                if t.is_empty() {
                    return Err(format!("the token of {g} is empty"));
                }
                Ok((eui, t.clone()))
            })
            .collect()
    }

    /// Everything checked at load, as (key, message).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.enabled {
            return Ok(());
        }
        self.allowed()
            .map_err(|m| ("Ingest.BasicStation.AllowedGateways", m))?;
        self.tokens()
            .map_err(|m| ("Ingest.BasicStation.Tokens", m))?;
        if self.max_connections == 0 {
            return Err((
                "Ingest.BasicStation.MaxConnections",
                "must be at least 1".into(),
            ));
        }
        if self.idle_timeout < Duration::from_secs(3) {
            return Err((
                "Ingest.BasicStation.IdleTimeout",
                "must be at least 3 s".into(),
            ));
        }
        if let Some(tls) = &self.tls {
            crate::ingest::station::tls::server_config(tls.files())
                .map_err(|m| ("Ingest.BasicStation.Tls", m))?;
        }
        Ok(())
    }
}
