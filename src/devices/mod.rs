//! The devices a service serves: the devices file ([`file`](mod@file): ABP sessions,
//! OTAA root keys) and the registry built from it ([`registry`]: for each
//! device its prepared crypto and compiled codec, looked up by DevAddr on
//! the uplink path, by DevEUI for joins and application-integration
//! uplinks), with the RX windows a device uses ([`rx_windows`]).

pub mod file;
pub mod registry;
pub mod rx_windows;

pub use file::*;
pub use registry::{Device, Registry};
pub use rx_windows::RxWindows;
