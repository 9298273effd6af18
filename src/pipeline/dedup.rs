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

/// The distinct gateways that heard one frame, kept inline (no allocation on
/// the per-frame path). A gateway that forwards one reception twice (a
/// repeated UDP datagram, an MQTT redelivery) is still one gateway. Past
/// [`GatewaySet::CAPACITY`] distinct gateways, a gateway not among the first
/// ones counts every time it is heard: a site with that many gateways
/// hearing one frame is beyond what this service is for.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewaySet {
    seen: [u64; Self::CAPACITY],
    len: u8,
    count: u32,
}

impl GatewaySet {
    pub const CAPACITY: usize = 16;

    /// One gateway heard the frame.
    pub fn new(first: crate::lorawan::Eui64) -> Self {
        let mut s = Self::default();
        s.insert(first);
        s
    }

    /// Another copy arrived from `gw`; true if `gw` had not been counted.
    pub fn insert(&mut self, gw: crate::lorawan::Eui64) -> bool {
        let gw = gw.as_u64();
        let len = usize::from(self.len);
        if self.seen[..len].contains(&gw) {
            return false;
        }
        if len < Self::CAPACITY {
            self.seen[len] = gw;
            self.len += 1;
        }
        self.count += 1;
        true
    }

    /// How many distinct gateways heard the frame.
    pub fn count(&self) -> u32 {
        self.count
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
        // After a burst, give back what it needed (the map keeps its
        // capacity otherwise, and its values are whole uplinks).
        if self.pending.is_empty() && self.pending.capacity() > 1024 {
            self.pending.shrink_to(64);
            self.order.shrink_to(64);
            crate::fsutil::release_free_memory();
        }
    }

    /// The pending items `pick` chooses, before their windows close (their
    /// deadlines are skipped when they come).
    pub fn take_where(&mut self, pick: impl Fn(&T) -> bool, mut emit: impl FnMut(T)) {
        let keys: Vec<FrameKey> = self
            .order
            .iter()
            .map(|(_, k)| *k)
            .filter(|k| self.pending.get(k).is_some_and(&pick))
            .collect();
        for k in keys {
            if let Some(item) = self.pending.remove(&k) {
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

    #[test]
    fn take_where_takes_the_chosen_items_in_arrival_order_and_leaves_the_rest() {
        let mut d = Dedup::new(Duration::from_millis(200));
        let now = Instant::now();
        for (i, phy) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            let k = d.key_of_bytes(*phy);
            d.insert(k, i, now);
        }
        let mut taken = Vec::new();
        d.take_where(|i| i % 2 == 1, |i| taken.push(i));
        assert_eq!(taken, [1, 3]);
        let mut rest = Vec::new();
        d.due(now + Duration::from_secs(1), |i| rest.push(i));
        assert_eq!(rest, [0, 2], "the others keep their windows");
        assert!(d.is_empty());
    }

    #[test]
    fn a_repeated_copy_is_not_another_gateway() {
        let gw = |n| crate::lorawan::Eui64::from_u64(n);
        let mut s = GatewaySet::new(gw(1));
        assert!(!s.insert(gw(1)), "the same gateway again");
        assert!(s.insert(gw(2)));
        assert!(!s.insert(gw(2)));
        assert!(!s.insert(gw(1)));
        assert_eq!(s.count(), 2);
        for n in 3..=GatewaySet::CAPACITY as u64 {
            assert!(s.insert(gw(n)));
        }
        assert!(!s.insert(gw(7)));
        assert_eq!(s.count(), GatewaySet::CAPACITY as u32);
    }
    use crate::lorawan::Eui64;
    use crate::metrics::Source;
    use crate::pipeline::uplink::{RxMeta, Uplink};
    use std::sync::Arc;

    fn rx(gw: u64, rssi: i32, snr: f32) -> RxMeta {
        RxMeta {
            time_ns: None,
            gps_time_ns: None,
            station: None,
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
            adr: false,
            adr_ack_req: false,
            ack: false,
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
        // What the pipeline holds: the uplink and the gateways heard.
        let first = rx(1, -100, -5.0);
        d.insert(k, (uplink(1, first), GatewaySet::new(first.gateway)), t0);
        let copy = |d: &mut Dedup<(Uplink, GatewaySet)>, r: RxMeta| {
            let (u, heard) = d.get_mut(k).expect("pending");
            if heard.insert(r.gateway) {
                u.gateways = heard.count();
            }
            u.add_reception(&r);
        };
        copy(&mut d, rx(2, -60, 7.5));
        copy(&mut d, rx(3, -50, 2.0));
        copy(&mut d, rx(3, -50, 2.0)); // gateway 3's datagram, repeated
        let mut out = Vec::new();
        d.due(t0 + Duration::from_millis(199), |(u, _)| out.push(u));
        assert!(out.is_empty(), "not before the window closes");
        d.due(t0 + Duration::from_millis(200), |(u, _)| out.push(u));
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
