//! LoRa Basics Station gateways, served directly (the LNS protocol): a
//! station asks `/router-info` where its traffic endpoint is, connects there
//! over a WebSocket (TLS optional, mutual optional), says `version`, gets a
//! `router_config` built from the region tables, then streams its uplinks
//! (`updf`, `jreq`) and takes downlinks (`dnmsg`), confirming each sent one
//! (`dntxed`).
//!
//! - [`messages`]: the JSON messages, pure (PHYPayloads rebuilt exactly).
//! - [`router_config`]: the channel plan a station is given.
//! - [`server`]: the listener, the connections, the transmitter.
//! - [`tls`]: server certificates and client authentication.

pub mod messages;
pub mod router_config;
pub mod server;
pub mod tls;

pub use messages::{eui_of, eui_of_text};
