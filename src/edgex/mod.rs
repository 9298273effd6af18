//! EdgeX Foundry v4 (API v3): the DTOs device-lorawan sends. Publishing
//! (core-data REST, the message bus), registration through core-metadata and
//! the device-service API build on these.

pub mod core_data;
pub mod event;
