//! De-duplication of one frame heard by several gateways: the first copy is
//! decoded and held for the window; later copies are folded into it by the
//! caller (best reception, gateway count, acks); at the deadline one item is
//! emitted.
//!
//! A state machine without I/O: the caller passes `now` and asks for what
//! is due, so tests drive time by hand.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::time::{Duration, Instant};

/// Identity of a frame on air: the same bytes from any gateway. Made by a
/// [`Dedup`], whose hash key is random per process: with a known key, a
/// forged copy could be crafted to collide with a genuine frame and merge
/// into it (faking the best gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameKey(u64);

/// `FrameKey`s are already keyed hashes: the map uses them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub struct Dedup<T> {
    keys: RandomState,
    window: Duration,
    pending: HashMap<FrameKey, T, BuildHasherDefault<PassThrough>>,
    /// Deadlines in arrival order: the window is constant, so this is also
    /// deadline order.
    order: VecDeque<(Instant, FrameKey)>,
}

impl<T> Dedup<T> {
    pub fn new(window: Duration) -> Self {
        Self {
            keys: RandomState::new(),
            window,
            pending: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// The key of a raw PHYPayload.
    pub fn key_of_bytes(&self, phy: &[u8]) -> FrameKey {
        FrameKey(self.keys.hash_one(phy))
    }

    /// The key of an uplink a network server already decoded: device and counter.
    pub fn key_of_counter(&self, dev_eui: u64, fcnt: u32) -> FrameKey {
        FrameKey(self.keys.hash_one((b'c', dev_eui, fcnt)))
    }

    /// The pending item for `key`, to fold another copy into.
    pub fn get_mut(&mut self, key: FrameKey) -> Option<&mut T> {
        self.pending.get_mut(&key)
    }

    /// Hold a freshly decoded uplink until its window closes.
    pub fn insert(&mut self, key: FrameKey, item: T, now: Instant) {
        self.pending.insert(key, item);
        self.order.push_back((now + self.window, key));
    }

    /// When the next pending uplink is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(t, _)| *t)
    }

    /// Uplinks whose window has closed by `now`, oldest first.
    pub fn due(&mut self, now: Instant, mut emit: impl FnMut(T)) {
        while let Some(&(t, key)) = self.order.front() {
            if t > now {
                break;
            }
            self.order.pop_front();
            if let Some(item) = self.pending.remove(&key) {
                emit(item);
            }
        }
    }

    /// Everything pending, regardless of deadlines (at shutdown).
    pub fn drain(&mut self, emit: impl FnMut(T)) {
        self.due(Instant::now() + self.window + Duration::from_secs(1), emit);
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::Eui64;
    use crate::metrics::Source;
    use crate::uplink::{RxMeta, Uplink};
    use std::sync::Arc;

    fn rx(gw: u64, rssi: i32, snr: f32) -> RxMeta {
        RxMeta {
            gateway: Eui64::from_u64(gw),
            rssi,
            snr,
            tmst: None,
            frequency: None,
            datr: None,
        }
    }

    fn uplink(fcnt: u32, meta: RxMeta) -> Uplink {
        let profile =
            serde_json::from_value(serde_json::json!({"name": "p", "deviceResources": []}))
                .unwrap();
        Uplink {
            device: Arc::from("d"),
            dev_eui: Eui64::from_u64(1),
            profile: Arc::new(profile),
            fcnt,
            epoch: 0,
            counter_reset: false,
            fport: Some(1),
            confirmed: false,
            readings: vec![],
            mac_commands: vec![],
            rx: meta,
            gateways: 1,
            source: Source::Udp,
            received_ns: 0,
        }
    }

    #[test]
    fn copies_within_the_window_become_one_with_the_best_gateway() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_millis(200));
        let k = d.key_of_bytes(b"frame-1");
        assert_eq!(k, d.key_of_bytes(b"frame-1"));
        assert_ne!(k, d.key_of_bytes(b"frame-2"));
        assert!(d.get_mut(k).is_none());
        d.insert(k, uplink(1, rx(1, -100, -5.0)), t0);
        d.get_mut(k).expect("pending").add_copy(&rx(2, -60, 7.5));
        d.get_mut(k).expect("pending").add_copy(&rx(3, -50, 2.0));
        let mut out = Vec::new();
        d.due(t0 + Duration::from_millis(199), |u| out.push(u));
        assert!(out.is_empty(), "not before the window closes");
        d.due(t0 + Duration::from_millis(200), |u| out.push(u));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].gateways, out[0].rx.gateway),
            (3, Eui64::from_u64(2))
        );
        assert!(
            d.get_mut(k).is_none(),
            "after the window, a copy is new again"
        );
    }

    #[test]
    fn emits_in_deadline_order() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_millis(100));
        for i in 0..3u32 {
            d.insert(
                d.key_of_bytes(&i.to_le_bytes()),
                uplink(i, rx(1, 0, 0.0)),
                t0 + Duration::from_millis(i as u64 * 10),
            );
        }
        assert_eq!(d.next_deadline(), Some(t0 + Duration::from_millis(100)));
        let mut out = Vec::new();
        d.due(t0 + Duration::from_millis(115), |u| out.push(u.fcnt));
        assert_eq!(out, vec![0, 1]);
        d.drain(|u| out.push(u.fcnt));
        assert_eq!(out, vec![0, 1, 2]);
    }
}
