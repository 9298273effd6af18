//! EdgeX Foundry v4 (API v3): the DTOs device-lorawan sends, the outbox
//! they wait in, and the two ways they reach core-data: the message bus
//! ([`bus`], the v4 default) and REST ([`core_data`]).

pub mod bus;
pub mod core_data;
pub mod delivered;
pub mod device_dto;
pub mod device_files;
pub mod discovery;
pub mod event;
pub mod http;
pub mod keeper;
pub mod keys;
pub mod liveness;
pub mod metadata;
pub mod operating;
pub mod outbox;
pub mod provisioning;
pub mod registration;
pub mod requests;
pub mod secret_store;
pub mod telemetry;
