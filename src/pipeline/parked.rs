//! Frames under a DevAddr this edge does not know yet, kept while an OTAA
//! device is on standby here.
//!
//! A device another edge holds may join there: its next frames carry a
//! DevAddr this edge learns only when that edge's join state arrives (the
//! session sync, or the release at hand-back). A frame heard before that
//! would be refused as unknown and, if the holder had already stood by,
//! lost: nobody would publish it. So a frame under a DevAddr this
//! network's joins draw waits here (its broker message acknowledged, as a
//! refusal's would be: held, it could stall the broker's in-flight window)
//! and is decoded again once the join state has been applied. Bounded in
//! count and age: past either, it is refused as an unknown DevAddr, as it
//! would have been.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ingest::Ack;
use crate::metrics::Source;
use crate::pipeline::uplink::RxMeta;

/// At most this many frames wait (a hand-back takes well under a second;
/// the devices of one site send far fewer in that time).
pub(super) const PARK_AT_MOST: usize = 256;
/// A frame waits at most this long for its device's join state.
pub(super) const PARK_FOR: Duration = Duration::from_secs(30);

/// One frame waiting, as it was received.
pub(super) struct ParkedFrame {
    pub phy: Vec<u8>,
    pub rx: RxMeta,
    pub source: Source,
    pub ack: Option<Ack>,
    /// When it was first parked: a frame parked again keeps its age.
    pub at: Instant,
}

/// The waiting frames, oldest first.
#[derive(Default)]
pub(super) struct Parked {
    frames: VecDeque<ParkedFrame>,
}

impl Parked {
    /// Keep `frame`; the oldest one out if the queue is full.
    pub fn park(&mut self, frame: ParkedFrame) -> Option<ParkedFrame> {
        let out = (self.frames.len() >= PARK_AT_MOST)
            .then(|| self.frames.pop_front())
            .flatten();
        self.frames.push_back(frame);
        out
    }

    /// When the oldest frame has waited long enough.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.frames.front().map(|f| f.at + PARK_FOR)
    }

    /// The frames that waited [`PARK_FOR`] by `now`, oldest first.
    pub fn expired(&mut self, now: Instant) -> Vec<ParkedFrame> {
        let n = self
            .frames
            .iter()
            .take_while(|f| f.at + PARK_FOR <= now)
            .count();
        self.frames.drain(..n).collect()
    }

    /// Every waiting frame, oldest first, to decode again.
    pub fn take_all(&mut self) -> VecDeque<ParkedFrame> {
        std::mem::take(&mut self.frames)
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8, at: Instant) -> ParkedFrame {
        ParkedFrame {
            phy: vec![n],
            rx: RxMeta {
                gateway: crate::lorawan::Eui64::from_u64(1),
                rssi: -80,
                snr: 5.0,
                tmst: None,
                frequency: None,
                datr: None,
                gps_time_ns: None,
                time_ns: None,
                station: None,
            },
            source: Source::Udp,
            ack: None,
            at,
        }
    }

    #[test]
    fn bounded_in_count_oldest_out_first() {
        let now = Instant::now();
        let mut p = Parked::default();
        for n in 0..PARK_AT_MOST {
            assert!(p.park(frame(n as u8, now)).is_none());
        }
        let out = p.park(frame(0xff, now)).expect("full: the oldest leaves");
        assert_eq!(out.phy, vec![0]);
        let all = p.take_all();
        assert_eq!(all.len(), PARK_AT_MOST);
        assert_eq!(all.back().unwrap().phy, vec![0xff]);
        assert!(p.is_empty());
    }

    #[test]
    fn bounded_in_age() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        p.park(frame(1, t0));
        p.park(frame(2, t0 + Duration::from_secs(10)));
        assert_eq!(p.next_deadline(), Some(t0 + PARK_FOR));
        assert!(p
            .expired(t0 + PARK_FOR - Duration::from_millis(1))
            .is_empty());
        let gone = p.expired(t0 + PARK_FOR);
        assert_eq!(gone.iter().map(|f| f.phy[0]).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            p.next_deadline(),
            Some(t0 + Duration::from_secs(10) + PARK_FOR)
        );
    }
}
