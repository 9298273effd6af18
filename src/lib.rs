//! device-lorawan
pub mod lorawan;
