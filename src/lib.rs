//! device-lorawan
pub mod codec;
pub mod config;
pub mod counters;
pub mod demo;
pub mod devices;
pub mod ingest;
pub mod lorawan;
pub mod metrics;
pub mod service;
pub mod sim;
pub mod sink;
pub mod uplink;
