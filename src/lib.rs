//! device-lorawan
pub mod codec;
pub mod lorawan;
pub mod config;
pub mod devices;
