//! device-lorawan
pub mod codec;
pub mod lorawan;
