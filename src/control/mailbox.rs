//! The pipeline's mailbox: what the API, the EdgeX bus, provisioning and
//! the handover ask of the one task that owns per-device state, and how
//! they wait for its answer. A leaf: it names the messages' types and
//! nothing that sends or answers them, so every side imports it and none
//! imports another.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::lorawan::{Eui64, FcntState};
use crate::store::secrets::Session;

/// The sending end every side holds.
pub type Mailbox = mpsc::UnboundedSender<Control>;

/// The pipeline has stopped (the service is shutting down): nothing
/// answers a message any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline has stopped")]
pub struct Stopped;

/// What the API and the handover ask of the pipeline, which owns the
/// device registry and the counters.
#[derive(Debug)]
pub enum Control {
    /// Keys that arrived through `POST /api/v3/secret` (already stored).
    Session { device: u32, session: Session },
    /// A device from EdgeX or discovery, with its keys: served from now on.
    AddDevice {
        entry: crate::devices::DeviceEntry,
        profile: Arc<crate::codec::DeviceProfile>,
    },
    /// A served device changed in EdgeX (profile, codec, admin state...).
    UpdateDevice {
        entry: crate::devices::DeviceEntry,
        profile: Arc<crate::codec::DeviceProfile>,
    },
    /// A device deleted in EdgeX: no longer served.
    RemoveDevice { dev_eui: Eui64 },
    /// Devices handed over by another edge: decode them, and hold their
    /// uplinks (standby) until told to publish. Known devices get the
    /// sessions given, keep their counters, and keep publishing if they did.
    Adopt {
        devices: Vec<Adopted>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Stop publishing these devices: hold their uplinks instead.
    Standby {
        devices: Vec<Eui64>,
        done: oneshot::Sender<()>,
    },
    /// Publish these devices again: first the held uplinks after the
    /// counter given (what the other edge delivered), then live.
    Resume {
        after: Vec<(Eui64, FcntState)>,
        /// The join state of devices the other edge answered joins of.
        joins: Vec<(Eui64, crate::lorawan::otaa::JoinState)>,
        /// The MAC state of the devices as the other edge left it.
        macs: Vec<(Eui64, crate::lorawan::mac::MacState)>,
        /// Answered with the held frames at or before `after`: heard here,
        /// delivered by the other edge (what its receipt must list).
        done: oneshot::Sender<Vec<(Eui64, FcntState)>>,
    },
    /// The uplink counter and next FCntDown of these devices.
    Counters {
        devices: Vec<Eui64>,
        reply: oneshot::Sender<Vec<(Eui64, FcntState, u32)>>,
    },
    /// Whether this edge answers the JoinRequests of these devices (a
    /// container taking them over answers them: the joins it would not
    /// know of are left to it).
    AnswerJoins {
        devices: Vec<Eui64>,
        answer: bool,
        done: oneshot::Sender<()>,
    },
    /// The join state of these devices (the OTAA ones).
    JoinStates {
        devices: Vec<Eui64>,
        reply: oneshot::Sender<Vec<(Eui64, crate::lorawan::otaa::JoinState)>>,
    },
    /// Which device each frame authenticates as under this edge's own
    /// session keys (a market bid's heard frames; no key leaves).
    ProveHeard {
        frames: Vec<Vec<u8>>,
        reply: oneshot::Sender<Vec<Option<Eui64>>>,
    },
    /// Every device with a session, and its DevAddr.
    Addresses {
        reply: oneshot::Sender<Vec<(Eui64, crate::lorawan::DevAddr)>>,
    },
    /// The MAC state of these devices (those that have one).
    MacStates {
        devices: Vec<Eui64>,
        reply: oneshot::Sender<Vec<(Eui64, crate::lorawan::mac::MacState)>>,
    },
}

impl Control {
    /// Send the request `make` builds to the pipeline behind `control` and
    /// wait for its answer.
    pub async fn ask<T>(
        control: &Mailbox,
        make: impl FnOnce(oneshot::Sender<T>) -> Control,
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        control.send(make(tx)).map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// A device handed over, as the pipeline takes it.
pub struct Adopted {
    pub entry: crate::devices::DeviceEntry,
    pub profile: Arc<crate::codec::DeviceProfile>,
    pub up: FcntState,
    pub down: u32,
    /// OTAA devices: their join state as the other edge had it.
    pub join: Option<crate::lorawan::otaa::JoinState>,
    /// Its MAC state as the other edge had it.
    pub mac: Option<crate::lorawan::mac::MacState>,
}

impl std::fmt::Debug for Adopted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Adopted({}, keys redacted)", self.entry.name)
    }
}
