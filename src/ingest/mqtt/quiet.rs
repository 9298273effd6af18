//! Subscriptions that never match: a bridge publishing under a prefix
//! (`eu868/gateway/...`) the service does not subscribe to gives no
//! readings and no error. Each subscription that has matched nothing for
//! [`QUIET_AFTER`] since it was first made is reported once.

use std::time::{Duration, Instant};

/// How long a subscription may match nothing before it is reported.
pub const QUIET_AFTER: Duration = Duration::from_secs(60);

/// Per subscription (by index): matched yet, reported yet.
#[derive(Debug)]
pub struct QuietWatch {
    since: Option<Instant>,
    matched: Vec<bool>,
    reported: Vec<bool>,
}

impl QuietWatch {
    pub fn new(subscriptions: usize) -> Self {
        Self {
            since: None,
            matched: vec![false; subscriptions],
            reported: vec![false; subscriptions],
        }
    }

    /// Subscribed (the first time counts).
    pub fn subscribed(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    /// A message matched subscription `i`.
    pub fn matched(&mut self, i: usize) {
        if let Some(m) = self.matched.get_mut(i) {
            *m = true;
        }
    }

    /// The subscriptions to report now: quiet for [`QUIET_AFTER`], not yet
    /// reported.
    pub fn due(&mut self, now: Instant) -> Vec<usize> {
        let Some(since) = self.since else {
            return Vec::new();
        };
        if now.saturating_duration_since(since) < QUIET_AFTER {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, (m, r)) in self
            .matched
            .iter()
            .zip(self.reported.iter_mut())
            .enumerate()
        {
            if !*m && !*r {
                *r = true;
                out.push(i);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_subscription_is_reported_once_after_the_wait() {
        let t0 = Instant::now();
        let mut w = QuietWatch::new(2);
        assert!(w.due(t0 + QUIET_AFTER * 2).is_empty(), "not subscribed yet");
        w.subscribed(t0);
        w.matched(1);
        assert!(w.due(t0 + QUIET_AFTER / 2).is_empty());
        assert_eq!(w.due(t0 + QUIET_AFTER), vec![0]);
        assert!(w.due(t0 + QUIET_AFTER * 3).is_empty(), "once");
        // A reconnect does not start the wait again.
        w.subscribed(t0 + QUIET_AFTER * 4);
        assert!(w.due(t0 + QUIET_AFTER * 5).is_empty());
    }
}
