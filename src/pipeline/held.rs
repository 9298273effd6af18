//! What the pipeline holds between decoding an uplink and publishing it:
//! frames in the de-duplication window ([`Held`]) and counter resets
//! waiting for the device's next frame ([`Tentative`]).

use crate::ingest::Ack;
use crate::lorawan::{FcntState, Late};
use crate::pipeline::dedup::{FrameKey, GatewaySet};
use crate::pipeline::uplink::{RxMeta, Uplink};

/// A frame that would reset its device's counter. After a reboot, an LMIC
/// mote's frames are byte-identical to the previous boot's frames with the
/// same counter, so one frame cannot tell a reboot from a replay of a
/// recorded frame. What comes next can: a rebooted device continues from the
/// low counter, while after a replay the real device continues from the old
/// one. So the reset is held here, unpublished and uncommitted, until the
/// device's next frame confirms it (a higher low counter) or disproves it
/// (a counter past the old one).
pub(super) struct Tentative {
    pub(super) key: FrameKey,
    pub(super) fcnt: u32,
    pub(super) held: Held,
}

/// An uplink waiting to be published, with what publishing it settles: the
/// device's counter state to persist and the MQTT messages to acknowledge.
/// Both happen only after the sinks (the outbox first) took the uplink, so a
/// crash before that leaves the broker to redeliver and the stored counter
/// ready to accept the redelivery.
pub(super) struct Held {
    pub(super) uplink: Uplink,
    pub(super) device: u32,
    pub(super) persist: FcntState,
    /// The late counters to persist with `persist`: an unordered stream's
    /// (a network server's application stream); none for a gateway stream.
    pub(super) late: Late,
    pub(super) acks: Vec<Ack>,
    /// The distinct gateways heard so far (`uplink.gateways` counts them).
    heard: GatewaySet,
}

impl Held {
    pub(super) fn new(uplink: Uplink, device: u32, persist: FcntState, ack: Option<Ack>) -> Self {
        Self {
            heard: GatewaySet::new(uplink.rx.gateway),
            uplink,
            device,
            persist,
            late: Late(0),
            acks: ack.into_iter().collect(),
        }
    }

    /// Another copy: the best reception wins; a gateway counts once however
    /// often it forwards the frame.
    pub(super) fn add_copy(&mut self, rx: &RxMeta, ack: Option<Ack>) {
        if self.heard.insert(rx.gateway) {
            self.uplink.gateways = self.heard.count();
        }
        self.uplink.add_reception(rx);
        self.acks.extend(ack);
    }
}

/// Uplinks held in the de-duplication window at most (about 2 MB): at a
/// 200 ms window, 20,000 distinct uplinks a second.
pub(super) const MAX_HELD: usize = 4096;
