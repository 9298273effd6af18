//! device-lorawan: an EdgeX device service for LoRaWAN ABP sensors that needs
//! no network server.
//!
//! The layout follows the data, from radio to reading:
//!
//! - [`ingest`]: uplinks in. Semtech UDP packet forwarder ([`ingest::udp`]),
//!   gateway-bridge MQTT ([`ingest::gateway`] formats over [`ingest::mqtt`]),
//!   network-server application streams ([`ingest::application`]), and
//!   de-duplication across gateways ([`ingest::dedup`]).
//! - [`lorawan`]: pure LoRaWAN 1.0.x: framing, MIC, frame counters,
//!   decryption, as named steps. No I/O, no configuration.
//! - [`uplink`]: one frame through those steps and the codec, for the
//!   pipeline and the benchmark alike.
//! - [`codec`]: payload → readings typed by the device's EdgeX profile.
//! - [`service`]: the running pipeline, owning per-device state;
//!   [`counters`] keeps frame counters durable, [`joins`] the OTAA join
//!   state; [`sink`] is where readings go.
//! - [`downlink`]: class A commands back to the devices: queue, RX1/RX2
//!   scheduling, and the gateways' downlink protocols.
//! - [`edgex`]: EdgeX v3 DTOs (events with deterministic ids), the ways
//!   to core-data, core-metadata and core-keeper, and the secret store
//!   ([`edgex::secret_store`]) secure mode keeps secrets in; devices EdgeX
//!   defines or [`discovery`] finds are served by [`service::provisioning`]
//!   once [`service::keys`] or [`secrets`] hold their keys.
//! - [`config`], [`devices`]: the typed configuration and the devices file.
//! - [`outbox`]: the durable, hash-chained journal events wait in for EdgeX.
//! - [`metrics`]: counters for everything above, rate-limited rejection logs;
//!   [`api`] serves them, and the EdgeX device-service routes.
//! - [`handover`]: edge identities and the signed handover contract.
//! - [`image`]: the service packaged as a reproducible container image, and
//!   the content-addressed store images travel through.
//! - [`sim`], [`demo`]: simulated motes and gateways; the quickstart.
//! - [`sketch`]: the Arduino mote's settings, from the same devices file.

pub mod api;
pub mod cli;
pub mod codec;
pub mod config;
pub mod control;
pub mod devices;
pub mod downlink;
pub mod edgex;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod handover;
pub mod image;
pub mod ingest;
pub mod lorawan;
pub mod metrics;
pub mod pipeline;
pub mod service;
pub mod sim;
pub mod store;
