//! device-lorawan: an EdgeX device service for LoRaWAN sensors that needs no
//! separate network server — it is one (OTAA and ABP, regions, the MAC layer
//! and ADR, class A and C downlinks) — and that can hand its devices over to
//! a neighbouring edge when its own edge fails.
//!
//! The map follows a frame, from radio to reading and back:
//!
//! 1. [`ingest`]: one module per way frames arrive, each holding both
//!    directions — Semtech UDP ([`ingest::udp`]), the ChirpStack gateway
//!    bridge over MQTT ([`ingest::bridge`] on [`ingest::mqtt`]), LoRa Basics
//!    Station ([`ingest::station`]), and a network server's application
//!    stream ([`ingest::application`]).
//! 2. [`pipeline`]: the one task that owns per-device state. De-duplication
//!    across gateways ([`pipeline::dedup`]), the decode steps
//!    ([`pipeline::uplink`]: MIC, counters, decryption, codec), joins, the
//!    MAC layer, devices provisioned at run time; readings leave through a
//!    [`pipeline::sink`].
//! 3. [`lorawan`]: the protocol as pure code (framing, MIC, counters, OTAA,
//!    MAC commands, ADR, regions): no I/O, no configuration, table-tested.
//! 4. [`codec`]: a payload to readings typed by the device's EdgeX profile
//!    (Cayenne LPP, layouts, vendors' JavaScript codecs).
//! 5. [`store`]: every durable store (counters, joins, MAC and secrets, the
//!    outbox journal events wait in for EdgeX).
//! 6. [`edgex`]: EdgeX as the service meets it — events to core-data or the
//!    message bus, registration with core-metadata, devices EdgeX defines
//!    or discovery finds ([`edgex::provisioning`], [`edgex::discovery`]),
//!    keys from its secret store, requests arriving on the bus.
//! 7. [`downlink`]: commands back to the devices — the queue, class A
//!    windows and class C, the scheduler choosing a gateway.
//!
//! Around the frame path:
//!
//! - [`control`]: everything that is not a frame — device commands,
//!   secrets, discovery, status — answered the same way whichever transport
//!   asked (REST in [`api`], the bus in [`edgex::requests`]), and the
//!   pipeline's mailbox ([`control::mailbox`]) every side writes to.
//! - [`handover`]: Edge-as-a-Service — signed contracts between a customer
//!   and a provider edge, the provider taking the devices over (in its own
//!   pipeline or the customer's packaged [`image`]) and handing them back.
//! - [`service`]: the composition root: binds what the [`config`] enables
//!   and wires the parts above; the service's tasks are started from
//!   there (a server then starts its own helpers: connections, transmitter).
//! - [`config`], [`devices`]: the typed configuration and the devices file;
//!   [`metrics`]: counters for everything above; [`fsutil`]: durable writes.
//! - [`sim`], [`cli`]: simulated motes and gateways; the quickstart and the
//!   command-line tools. [`fuzzing`]: the fuzz targets' bodies.
//!
//! No module imports another that imports it (`tests/architecture.rs`).

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
pub mod market;
pub mod metrics;
pub mod pipeline;
pub mod service;
pub mod sim;
pub mod store;
