//! `Market`: the IoT Edge Market, for the market process itself
//! (`device-lorawan market serve`) and for edges that use one.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct MarketConfig {
    /// The market this edge uses (`http://host:port`); empty: none. A
    /// customer with no handover contract then finds its provider there; a
    /// provider with `Offer` set offers and bids there.
    pub url: String,
    /// `market serve`: where the market listens.
    pub listen: String,
    /// `market serve`: its database. Empty: SQLite in
    /// `<DataDir>/market.db`; `postgres://user:pass@host/db` for several
    /// market processes serving one federation.
    pub database: String,
    /// This edge's decision rules (YAML, see `docs/market.md`); empty: the
    /// defaults.
    pub rules: String,
    /// Where this edge and its gateways stand.
    pub lat: f64,
    pub lon: f64,
    /// Set on a provider: what it offers (needs `Handover.Listen`).
    pub offer: Option<OfferConfig>,
    /// How often an edge looks at the market (open demands, bids, its
    /// contract's state).
    #[serde(with = "humantime_serde")]
    pub poll_every: std::time::Duration,
    /// A customer waits this long for bids before it closes its auction.
    #[serde(with = "humantime_serde")]
    pub bid_window: std::time::Duration,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            listen: "127.0.0.1:59990".into(),
            database: String::new(),
            rules: String::new(),
            lat: 0.0,
            lon: 0.0,
            offer: None,
            poll_every: std::time::Duration::from_secs(1),
            bid_window: std::time::Duration::from_secs(3),
        }
    }
}

/// A provider's standing offer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct OfferConfig {
    /// Credits per holding.
    pub price: u64,
    /// Credits in escrow per contract.
    pub stake: u64,
    pub memory_mib: u64,
    pub cpu_millis: u64,
    pub storage_mib: u64,
    pub bandwidth_kbps: u64,
    pub uptime_permille: u64,
    /// The handover endpoint customers reach (`host:port`); empty:
    /// `Handover.Listen`.
    pub address: String,
    /// How long each posted offer stands.
    #[serde(with = "humantime_serde")]
    pub valid_for: std::time::Duration,
    /// The gateways this edge listens through, with their positions: a
    /// demand's distance is to the nearest (none: `Market.Lat`/`Lon`).
    pub gateways: Vec<GatewayPlace>,
}

/// A gateway's EUI (hex) and position.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GatewayPlace {
    pub eui: String,
    pub lat: f64,
    pub lon: f64,
}

impl Default for OfferConfig {
    fn default() -> Self {
        Self {
            price: 10,
            stake: 100,
            memory_mib: 256,
            cpu_millis: 1000,
            storage_mib: 1024,
            bandwidth_kbps: 1000,
            uptime_permille: 990,
            address: String::new(),
            valid_for: std::time::Duration::from_secs(24 * 3600),
            gateways: Vec::new(),
        }
    }
}
