//! The MAC layer a network server owes its devices, pure: no I/O, no
//! timers (the caller passes `now` and the uplink's times).
//!
//! - [`commands`]: MAC commands on the wire, both directions.
//! - [`adr`]: the default ADR algorithm.
//! - [`state`]: one device's MAC state machine (answers, requests, what
//!   the device acknowledged).

pub mod adr;
pub mod commands;
pub mod state;

pub use commands::{DownCommand, MacCommand};
pub use state::{Decision, MacState, RxParams, UplinkMac, Wanted};
