//! EdgeX Foundry v4 (API v3) as this service meets it.
//!
//! - Events out: the DTOs ([`event`], [`device_dto`]) and the outbox sink
//!   ([`outbox`]) they wait in, delivered on the message bus ([`bus`], the
//!   v4 default, or [`nats`]) or by REST ([`core_data`] over [`http`]); [`delivered`]
//!   records what EdgeX confirmed, for the handover.
//! - The service in EdgeX: registration with core-keeper ([`keeper`]) and
//!   core-metadata ([`metadata`], [`registration`]), operating state
//!   ([`operating`], [`liveness`]), telemetry ([`telemetry`]), requests
//!   that arrive on the bus ([`requests`]).
//! - Devices from EdgeX: definition files ([`device_files`]), devices
//!   core-metadata adds ([`provisioning`]), discovery by JoinRequest
//!   ([`discovery`]), and their keys from the secret store ([`keys`],
//!   [`secret_store`]).

pub mod bus;
pub mod core_data;
pub mod delivered;
pub mod device_dto;
pub mod device_files;
pub mod discovery;
pub mod event;
pub mod held;
pub mod http;
pub mod keeper;
pub mod keys;
pub mod liveness;
pub mod metadata;
pub mod nats;
pub mod operating;
pub mod outbox;
pub mod provisioning;
pub mod registration;
pub mod requests;
pub mod secret_store;
pub mod telemetry;
