//! What edges post to the market and what it records, as JSON on the wire
//! (camelCase, unknown fields refused) and in its database.

use serde::{Deserialize, Serialize};

/// Where an edge or a gateway stands (WGS84 degrees).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl Location {
    /// Great-circle distance in kilometres (haversine).
    pub fn km_to(&self, o: &Location) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), o.lat.to_radians());
        let dp = p2 - p1;
        let dl = (o.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        6371.0 * 2.0 * a.sqrt().min(1.0).asin()
    }
}

/// A gateway a provider's edge listens through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// Its EUI, hex.
    pub eui: String,
    pub location: Location,
}

/// What a provider's edge has to give (seed §3.11.3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    pub memory_mib: u64,
    /// Thousandths of a core.
    pub cpu_millis: u64,
    #[serde(default)]
    pub storage_mib: u64,
    #[serde(default)]
    pub bandwidth_kbps: u64,
    /// Promised uptime, per mille.
    #[serde(default)]
    pub uptime_permille: u64,
}

/// A provider's offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferBody {
    /// Regional parameters its gateways work in (`EU868`, ...).
    pub region: String,
    pub location: Location,
    pub gateways: Vec<Gateway>,
    pub resources: Resources,
    /// Credits per holding (what the customer pays when a takeover is
    /// settled as honoured).
    pub price: u64,
    /// Credits the provider puts in escrow per contract: the customer's if
    /// the provider breaches it.
    pub stake: u64,
    /// Its handover endpoint (`host:port`).
    pub address: String,
    /// The offer stands until then (Unix ms).
    pub valid_until_ms: u64,
}

/// An offer as the market lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Offer {
    pub id: String,
    /// The provider's Ed25519 key, hex.
    pub provider: String,
    pub body: OfferBody,
    pub created_ms: u64,
    /// The provider's reputation when listed (0 to 1).
    pub reputation: f64,
}

/// How a customer's DMU weighs what it is offered (see
/// [`crate::market::auction`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Weights {
    pub price: f64,
    pub reputation: f64,
    pub distance: f64,
    pub coverage: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            price: 1.0,
            reputation: 1.0,
            distance: 0.5,
            coverage: 2.0,
        }
    }
}

/// What a customer's edge needs (seed §3.11.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DemandBody {
    pub region: String,
    pub location: Location,
    /// Its devices' DevAddrs (hex): nothing else of them leaves the edge
    /// before a contract.
    pub dev_addrs: Vec<String>,
    /// What its image needs (from its manifest).
    pub resources: Resources,
    /// The most it pays per holding.
    pub max_price: u64,
    /// The least reputation it accepts (0 to 1).
    pub min_reputation: f64,
    /// Farther offers are not matched (km).
    pub max_distance_km: f64,
    /// The share of its devices a bid must prove heard (0 to 1).
    pub min_coverage: f64,
    /// The longest takeover it accepts as honoured (ms): the receipt's
    /// latency is judged against it at settlement.
    pub max_takeover_ms: u64,
    pub weights: Weights,
}

/// One frame a provider's gateways heard from a device it does not serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeardFrame {
    /// The PHYPayload, hex.
    pub phy: String,
    pub rssi: i32,
    pub snr: f32,
    /// The data rate (`SF9BW125`), when the gateway said.
    pub datr: Option<String>,
    /// When it was heard (Unix ms).
    pub time_ms: u64,
}

/// A provider's sealed bid on a demand: its offer, its price, and the
/// frames it heard of the demand's DevAddrs (the customer checks their
/// MICs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BidBody {
    pub offer_id: String,
    pub price: u64,
    pub heard: Vec<HeardFrame>,
}

/// A bid as the customer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bid {
    pub id: String,
    pub demand_id: String,
    pub provider: String,
    pub body: BidBody,
    pub offer: OfferBody,
    pub reputation: f64,
    pub created_ms: u64,
}

/// A demand as the market lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Demand {
    pub id: String,
    pub customer: String,
    pub body: DemandBody,
    /// `open`, `awarded`, `contracted`.
    pub state: String,
    /// The winning bid, once awarded.
    pub winner: Option<String>,
    pub created_ms: u64,
}

/// What the customer proved of one bid: the share of its devices whose
/// frames in the bid verified under its own keys, and the best signal
/// margin over the data rate's demodulation floor (dB).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proven {
    pub coverage: f64,
    pub margin_db: f64,
}

/// What the customer proved of one bid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvenBid {
    pub bid_id: String,
    pub coverage: f64,
    pub margin_db: f64,
}

/// The customer closes its demand's auction with what it proved of each
/// bid (bids it leaves out did not pass its rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwardRequest {
    pub proven: Vec<ProvenBid>,
}

/// A contract the market countersigned, with its stakes and state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarketContract {
    pub id: String,
    pub demand_id: String,
    pub bid_id: String,
    pub customer: String,
    pub provider: String,
    pub price: u64,
    /// In escrow: the customer's payment and the provider's stake.
    pub customer_stake: u64,
    pub provider_stake: u64,
    pub max_takeover_ms: u64,
    /// `active`, `honoured`, `breached`.
    pub state: String,
    pub signed: crate::handover::contract::SignedContract,
    /// The market's signature over the signed contract's bytes (hex).
    pub market_signature: String,
}

/// An edge's standing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EdgeAccount {
    pub key: String,
    pub reputation: f64,
    /// Credits free to stake or pay.
    pub balance: i64,
    /// Credits in escrow.
    pub held: i64,
    pub honoured: u64,
    pub breached: u64,
}

/// The arbitrator's decision on one holding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settlement {
    pub contract_id: String,
    pub epoch: u64,
    /// `honoured` or `breached`.
    pub outcome: String,
    pub reasons: Vec<String>,
    pub customer: EdgeAccount,
    pub provider: EdgeAccount,
}

/// `POST /api/v3/market/contracts`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContractRequest {
    pub demand_id: String,
    pub signed: crate::handover::contract::SignedContract,
}
