//! Frame counters: rebuilding the 32-bit FCnt from the 16 bits on air, and
//! deciding whether a MIC-verified frame is new, a retransmission, a replay
//! or a device that restarted its counter.
//!
//! Pure state: [`FcntState`] is a value, [`candidates`] says which full
//! counters are worth a MIC check, [`judge`] takes the one that verified and
//! returns a [`Verdict`]. Persisting the new state is the caller's job.

use serde::{Deserialize, Serialize};

/// How a device's uplink counter is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FcntPolicy {
    /// Counters only go up; anything else is a replay.
    Strict,
    /// Like strict, but a frame whose MIC verifies only with a counter below
    /// the reset window is a device that rebooted (Arduino LMIC ABP motes
    /// restart at 0 on every boot): accepted, and recorded as a reset.
    #[default]
    ResetTolerant,
    /// No counter check at all (the MIC is still checked, and de-duplication
    /// across gateways still applies).
    Skip,
}

/// Everything we remember of a device's uplink counter. Small and `Copy`,
/// so the counter store can persist it as one fixed-size record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FcntState {
    /// The last accepted full uplink counter; `None` before the first frame.
    pub last: Option<u32>,
    /// How many counter resets were accepted: part of an uplink's identity,
    /// since after a reset the same counter value names a new frame.
    pub epoch: u32,
}

/// The full counters a frame might carry, most likely first. At most three:
/// the next one in sequence (with 16-bit rollover), the same 64 Ki window
/// without rollover (a frame from the past), and the low 16 bits alone (a
/// device that restarted while we were past 65535).
#[inline]
pub fn candidates(state: &FcntState, fcnt16: u16) -> Candidates {
    let low = u32::from(fcnt16);
    let Some(last) = state.last else {
        return Candidates::one(low);
    };
    let high = last & 0xffff_0000;
    let same = high | low;
    let next = if low >= last & 0xffff {
        Some(same)
    } else {
        high.checked_add(0x1_0000).map(|h| h | low)
    };
    let mut c = Candidates::default();
    for v in [next, Some(same), Some(low)].into_iter().flatten() {
        c.push(v);
    }
    c
}

/// A small fixed list of candidate counters (no allocation per frame).
#[derive(Debug, Default, Clone, Copy)]
pub struct Candidates {
    items: [u32; 3],
    len: u8,
}

impl Candidates {
    fn one(v: u32) -> Self {
        Self {
            items: [v, 0, 0],
            len: 1,
        }
    }
    fn push(&mut self, v: u32) {
        if !self.as_slice().contains(&v) {
            self.items[usize::from(self.len)] = v;
            self.len += 1;
        }
    }
    pub fn as_slice(&self) -> &[u32] {
        &self.items[..usize::from(self.len)]
    }
}

/// What a MIC-verified counter means for the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A new frame: publish it, and store `next` as the device's state.
    Fresh {
        fcnt: u32,
        next: FcntState,
        reset: bool,
    },
    /// The frame we accepted last, sent again (LMIC NbTrans, or a
    /// confirmed uplink that missed its ACK).
    Retransmission { fcnt: u32 },
    /// An older counter that is not an acceptable reset.
    Replay { fcnt: u32, last: u32 },
}

/// Judge the counter `fcnt` whose MIC verified, under `policy`.
/// `reset_window`: a reset is accepted only to a counter below this.
pub fn judge(state: &FcntState, policy: FcntPolicy, fcnt: u32, reset_window: u32) -> Verdict {
    let fresh = |reset: bool| Verdict::Fresh {
        fcnt,
        next: FcntState {
            last: Some(fcnt),
            epoch: state.epoch.wrapping_add(u32::from(reset)),
        },
        reset,
    };
    let Some(last) = state.last else {
        return fresh(false);
    };
    match policy {
        FcntPolicy::Skip => fresh(false),
        _ if fcnt > last => fresh(false),
        _ if fcnt == last => Verdict::Retransmission { fcnt },
        FcntPolicy::ResetTolerant if fcnt < reset_window => fresh(true),
        _ => Verdict::Replay { fcnt, last },
    }
}

/// How far behind the last counter a frame from a network server's
/// application stream may arrive and still be new. ChirpStack v4 handles
/// each de-duplicated uplink in a task of its own, so under a burst a
/// device's frame `n + 1` can be published before frame `n` (seen here:
/// 2 of 10,000 frames at 1,000 frames/s, each one frame late). 24 fits the
/// counter store's record beside the counters.
pub const LATE_WINDOW: u32 = 24;

/// Which of the [`LATE_WINDOW`] counters below the last one an unordered
/// stream already delivered: bit `i` is counter `last - 1 - i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Late(pub u32);

impl Late {
    const MASK: u32 = (1 << LATE_WINDOW) - 1;

    /// The window after the last counter moved up by `by` (at least 1): the
    /// old last counter is now `by - 1` behind, and delivered.
    fn advance(self, by: u32) -> Late {
        if by > LATE_WINDOW {
            return Late(0);
        }
        Late(((self.0 << by) | (1 << (by - 1))) & Self::MASK)
    }
}

/// [`judge`] for a stream a network server already verified, which may
/// deliver a device's frames out of order: a counter up to [`LATE_WINDOW`]
/// below the last one is new unless `late` says it was delivered (then it
/// is a redelivery, a [`Verdict::Retransmission`]). A counter the device's
/// policy takes as a reset stays a reset, as in [`judge`]: a late frame is
/// told from a rebooted device only above the reset window. Returns the
/// verdict and the window to keep with the state once the frame is
/// published.
pub fn judge_unordered(
    state: &FcntState,
    late: Late,
    policy: FcntPolicy,
    fcnt: u32,
    reset_window: u32,
) -> (Verdict, Late) {
    let reset = policy == FcntPolicy::ResetTolerant && fcnt < reset_window;
    if let Some(last) = state.last {
        let behind = last.wrapping_sub(fcnt);
        if policy != FcntPolicy::Skip && fcnt < last && behind <= LATE_WINDOW && !reset {
            let bit = 1 << (behind - 1);
            if late.0 & bit != 0 {
                return (Verdict::Retransmission { fcnt }, late);
            }
            let fresh = Verdict::Fresh {
                fcnt,
                next: *state,
                reset: false,
            };
            return (fresh, Late(late.0 | bit));
        }
    }
    let verdict = judge(state, policy, fcnt, reset_window);
    let next = match (verdict, state.last) {
        (Verdict::Fresh { reset: false, .. }, Some(last))
            if policy != FcntPolicy::Skip && fcnt > last =>
        {
            late.advance(fcnt - last)
        }
        (Verdict::Fresh { .. }, _) => Late(0),
        _ => late,
    };
    (verdict, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FcntPolicy::*;

    fn st(last: u32) -> FcntState {
        FcntState {
            last: Some(last),
            epoch: 0,
        }
    }

    #[test]
    fn candidate_table() {
        let cases: &[(Option<u32>, u16, &[u32])] = &[
            (None, 7, &[7]),
            (Some(5), 6, &[6]),                // next == same == low
            (Some(65_535), 0, &[65_536, 0]),   // rollover
            (Some(65_535), 65_535, &[65_535]), // retransmission
            (Some(70_000), 3, &[131_075, 65_539, 3]),
            (Some(u32::MAX), 1, &[0xffff_0001, 1]), // no overflow
        ];
        for (last, wire, want) in cases {
            let s = FcntState {
                last: *last,
                epoch: 0,
            };
            let got = candidates(&s, *wire);
            assert_eq!(got.as_slice(), *want, "last {last:?} wire {wire}");
        }
    }

    /// A verdict's name, for the tables below.
    fn name(v: Verdict) -> &'static str {
        match v {
            Verdict::Fresh { reset: true, .. } => "reset",
            Verdict::Fresh { .. } => "fresh",
            Verdict::Retransmission { .. } => "retransmission",
            Verdict::Replay { .. } => "replay",
        }
    }

    #[test]
    fn verdict_table() {
        let cases = [
            // (state, policy, fcnt, expected)
            (FcntState::default(), Strict, 0, "fresh"),
            (st(10), Strict, 11, "fresh"),
            (st(65_535), Strict, 65_536, "fresh"),
            (st(10), Strict, 10, "retransmission"),
            (st(10), Strict, 3, "replay"),
            (st(10), ResetTolerant, 3, "reset"),
            (st(10), ResetTolerant, 10, "retransmission"),
            (st(500), ResetTolerant, 200, "replay"), // above the reset window
            (st(10), Skip, 3, "fresh"),
            (st(10), Skip, 10, "fresh"),
        ];
        for (s, p, f, want) in cases {
            let got = name(judge(&s, p, f, 32));
            assert_eq!(got, want, "{s:?} {p:?} {f}");
        }
    }

    #[test]
    fn reset_bumps_the_epoch_and_rewinds() {
        let Verdict::Fresh { next, reset, .. } = judge(&st(900), ResetTolerant, 0, 32) else {
            panic!("reset not accepted")
        };
        assert!(reset);
        assert_eq!(
            next,
            FcntState {
                last: Some(0),
                epoch: 1
            }
        );
    }

    /// ChirpStack's burst order: 100, 102, 101, then 101 again (a
    /// redelivery), 103, 100 again, and 99 (late, never delivered).
    #[test]
    fn unordered_stream_takes_late_frames_once() {
        let mut state = FcntState::default();
        let mut late = Late::default();
        let mut got = Vec::new();
        for fcnt in [100, 102, 101, 101, 103, 100, 99] {
            let (v, l) = judge_unordered(&state, late, Strict, fcnt, 32);
            if let Verdict::Fresh { next, .. } = v {
                state = next;
                late = l;
                got.push(fcnt);
            }
        }
        // 99 was never seen but lies below the first counter we took: it is
        // 4 behind 103, inside the window, so it is new as well.
        assert_eq!(got, [100, 102, 101, 103, 99]);
        assert_eq!(state.last, Some(103));
        // 102, 101, 100 and 99 delivered: bits 0 to 3.
        assert_eq!(late, Late(0b1111));
    }

    #[test]
    fn unordered_verdicts() {
        let l = |bits| Late(bits);
        let cases = [
            // (last, late, policy, fcnt, expected)
            (10, l(0), Strict, 9, "fresh"),
            (10, l(1), Strict, 9, "retransmission"),
            (10, l(0), Strict, 10, "retransmission"),
            (100, l(0), Strict, 100 - LATE_WINDOW, "fresh"),
            (100, l(0), Strict, 99 - LATE_WINDOW, "replay"),
            // Below the reset window a lower counter stays a reset.
            (10, l(0), ResetTolerant, 9, "reset"),
            (100, l(0), ResetTolerant, 90, "fresh"),
            (100, l(1 << 9), ResetTolerant, 90, "retransmission"),
            (10, l(0), Skip, 3, "fresh"),
        ];
        for (last, late, p, f, want) in cases {
            let got = name(judge_unordered(&st(last), late, p, f, 32).0);
            assert_eq!(got, want, "last {last} {late:?} {p:?} {f}");
        }
    }

    #[test]
    fn the_window_moves_with_the_last_counter() {
        let (_, late) = judge_unordered(&st(10), Late(0b1), Strict, 12, 32);
        // 11 unseen (bit 0), 10 delivered (bit 1), 9 delivered (bit 2).
        assert_eq!(late, Late(0b110));
        let (_, late) = judge_unordered(&st(10), Late(0b1), Strict, 10 + LATE_WINDOW + 1, 32);
        assert_eq!(late, Late(0), "a jump past the window forgets it");
        let (_, late) = judge_unordered(&st(10), Late(Late::MASK), Strict, 11, 32);
        assert_eq!(late, Late(Late::MASK), "the oldest bit falls out");
    }
}
