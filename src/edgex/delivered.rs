//! Which frame of each device EdgeX has confirmed: what a customer's
//! heartbeats report, and what a provider answers when it hands back.
//!
//! The outbox sink notes each uplink's journal sequence number as it
//! appends it ([`Delivered::journaled`]); once the delivery task has moved
//! the journal's cursor past it, the frame counts as delivered. Frames that
//! only reached the journal do not: if this edge dies, they are not yet in
//! EdgeX, and the other edge must publish them again (the same event ids,
//! so a frame that did arrive is not stored twice).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::lorawan::{Eui64, FcntState};
use crate::store::outbox::Journal;

/// `a` names a later frame than `b`.
pub fn later(a: FcntState, b: FcntState) -> bool {
    (a.epoch, a.last) > (b.epoch, b.last)
}

#[derive(Default)]
struct Inner {
    /// Journaled, not yet known delivered: (sequence, device, counter).
    pending: VecDeque<(u64, Eui64, FcntState)>,
    last: HashMap<Eui64, FcntState>,
    /// Devices whose delivered frames are listed, in delivery order (a
    /// provider's holding, for its receipt).
    listed: HashMap<Eui64, Vec<FcntState>>,
    /// Frames known delivered so far: unchanged, nothing new to report.
    changes: u64,
}

impl Inner {
    fn delivered(&mut self, eui: Eui64, state: FcntState) {
        if let Some(l) = self.listed.get_mut(&eui) {
            l.push(state);
        }
        note(&mut self.last, eui, state);
        self.changes = self.changes.wrapping_add(1);
    }
}

pub struct Delivered {
    /// `None` when there is no outbox: a published frame is delivered.
    journal: Option<Arc<Mutex<Journal>>>,
    inner: Mutex<Inner>,
}

impl Delivered {
    pub fn new(journal: Option<Arc<Mutex<Journal>>>) -> Self {
        Self {
            journal,
            inner: Mutex::default(),
        }
    }

    /// An uplink appended to the journal as record `seq` (or, without an
    /// outbox, published).
    pub fn journaled(&self, seq: u64, eui: Eui64, state: FcntState) {
        let mut i = self.inner.lock().expect("delivered lock");
        if self.journal.is_some() {
            i.pending.push_back((seq, eui, state));
        } else {
            i.delivered(eui, state);
        }
    }

    /// The state, with what the journal's cursor has passed moved from
    /// pending to delivered.
    fn caught_up(&self) -> std::sync::MutexGuard<'_, Inner> {
        let cursor = self
            .journal
            .as_ref()
            .map(|j| j.lock().expect("journal lock").delivered());
        let mut i = self.inner.lock().expect("delivered lock");
        if let Some(cursor) = cursor {
            while i.pending.front().is_some_and(|(seq, _, _)| *seq <= cursor) {
                let (_, eui, state) = i.pending.pop_front().expect("checked");
                i.delivered(eui, state);
            }
        }
        i
    }

    /// The last delivered frame of each device seen so far.
    pub fn last(&self) -> HashMap<Eui64, FcntState> {
        self.caught_up().last.clone()
    }

    /// How many frames are known delivered: when it has not moved, neither
    /// has [`Delivered::last`] (so a caller polling often need not copy it).
    pub fn changes(&self) -> u64 {
        self.caught_up().changes
    }
}

impl Delivered {
    /// From now on, list each frame of `devices` delivered (frames
    /// journaled before are not this listing's).
    pub fn list(&self, devices: &[Eui64]) {
        let mut i = self.caught_up();
        for eui in devices {
            i.listed.insert(*eui, Vec::new());
        }
    }

    /// Stop listing `devices`: the frames delivered since [`Delivered::list`],
    /// in delivery order.
    pub fn listed(&self, devices: &[Eui64]) -> Vec<(Eui64, Vec<FcntState>)> {
        let mut i = self.caught_up();
        devices
            .iter()
            .map(|e| (*e, i.listed.remove(e).unwrap_or_default()))
            .collect()
    }

    /// No frame of `devices` is journaled and not yet confirmed: the
    /// counters [`Delivered::last`] gives for them are final until more
    /// arrive.
    pub fn settled(&self, devices: &[Eui64]) -> bool {
        !self
            .caught_up()
            .pending
            .iter()
            .any(|(_, eui, _)| devices.contains(eui))
    }

    /// Wait (up to `within`) until [`Delivered::settled`]; whether it is.
    pub async fn wait_settled(&self, devices: &[Eui64], within: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.settled(devices) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// For each of `devices`, the counter `known` has for it, or none yet:
/// what a `Resume` needs, since a device absent from it stays held.
pub fn after_for(devices: &[Eui64], known: &HashMap<Eui64, FcntState>) -> Vec<(Eui64, FcntState)> {
    devices
        .iter()
        .map(|e| (*e, known.get(e).copied().unwrap_or_default()))
        .collect()
}

/// A sink that counts what it publishes as delivered (no outbox, so
/// nothing is confirmed later).
pub struct Tracked {
    pub inner: Box<dyn crate::pipeline::sink::Sink>,
    pub delivered: Arc<Delivered>,
}

impl crate::pipeline::sink::Sink for Tracked {
    fn publish(&mut self, up: &crate::pipeline::uplink::Uplink) -> std::io::Result<()> {
        self.inner.publish(up)?;
        self.delivered.journaled(0, up.dev_eui, up.counter());
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn note(last: &mut HashMap<Eui64, FcntState>, eui: Eui64, state: FcntState) {
    let e = last.entry(eui).or_default();
    if later(state, *e) {
        *e = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::FullPolicy;

    fn st(fcnt: u32) -> FcntState {
        FcntState {
            last: Some(fcnt),
            epoch: 0,
        }
    }

    #[test]
    fn frames_count_as_delivered_once_the_journal_cursor_passes_them() {
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(Mutex::new(
            Journal::open(dir.path(), 1 << 20, FullPolicy::Reject).unwrap(),
        ));
        let d = Delivered::new(Some(j.clone()));
        let a = Eui64::from_u64(1);
        for fcnt in 1..=3 {
            let seq = j.lock().unwrap().append(b"x").unwrap();
            d.journaled(seq, a, st(fcnt));
        }
        assert!(d.last().is_empty(), "nothing delivered yet");
        let first = j.lock().unwrap().peek(2).unwrap();
        j.lock().unwrap().ack(first[1].0).unwrap();
        assert_eq!(d.last()[&a], st(2));
        let rest = j.lock().unwrap().peek(8).unwrap();
        j.lock().unwrap().ack(rest.last().unwrap().0).unwrap();
        assert_eq!(d.last()[&a], st(3));
        // A reset (new epoch, low counter) is later than any counter before it.
        let reset = FcntState {
            last: Some(0),
            epoch: 1,
        };
        assert!(later(reset, st(3)) && !later(st(3), reset));
    }

    #[test]
    fn a_listing_holds_the_frames_delivered_while_it_ran() {
        let d = Delivered::new(None);
        let (a, b) = (Eui64::from_u64(1), Eui64::from_u64(2));
        d.journaled(0, a, st(1));
        d.list(&[a]);
        d.journaled(0, a, st(2));
        d.journaled(0, b, st(7));
        d.journaled(0, a, st(3));
        assert_eq!(d.listed(&[a]), [(a, vec![st(2), st(3)])]);
        d.journaled(0, a, st(4));
        assert_eq!(d.listed(&[a]), [(a, vec![])], "listing stopped");
    }

    #[test]
    fn without_an_outbox_a_published_frame_is_delivered() {
        let d = Delivered::new(None);
        let a = Eui64::from_u64(7);
        d.journaled(0, a, st(5));
        d.journaled(0, a, st(4));
        assert_eq!(d.last()[&a], st(5));
    }
}
