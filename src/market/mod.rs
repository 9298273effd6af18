//! The IoT Edge Market (seed §3.11): where edges find a provider that
//! really hears their sensors, contract with it, and settle afterwards.
//!
//! The market service (`device-lorawan market serve`) is the central market
//! and arbitrator in one process: edges post offers and demands over a
//! signed REST API ([`auth`], [`api`]), the market matches them and runs a
//! sealed-bid auction by a documented rule ([`auction`]), countersigns the
//! winning pair's handover contract with both stakes in escrow, and settles
//! each holding from its receipt ([`store::contracts::judge`]), moving stakes and
//! reputations. What it decides goes to an append-only, hash-chained,
//! signed log ([`ledger`]) that an edge checks offline.
//!
//! On the edges ([`edge`]): a provider remembers frames from devices it
//! does not serve and bids with a sample of them; a customer names its
//! devices' DevAddrs only, checks each bid's frames under its own keys
//! (no key leaves it before a contract), applies its decision rules
//! ([`dmu`]), and contracts with the winner.

// The market's server and its store (sqlx: SQLite, PostgreSQL) are the
// `market-server` feature; an edge's side of the market is always here.
#[cfg(feature = "market-server")]
pub mod api;
pub mod auction;
pub mod auth;
pub mod cli;
pub mod client;
pub mod coverage;
pub mod dmu;
pub mod edge;
pub mod ledger;
pub mod state;
#[cfg(feature = "market-server")]
pub mod store;
pub mod types;
