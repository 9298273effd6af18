//! Which devices are silent: each device with an expected uplink interval
//! goes DOWN after `missed` intervals without an uplink, and UP again at its
//! next one. Pure: the caller says what time it is and sends the changes
//! to core-metadata.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Watched {
    interval: Duration,
    last: Instant,
    down: bool,
}

#[derive(Debug)]
pub struct Liveness {
    missed: u32,
    devices: HashMap<Arc<str>, Watched>,
}

/// An operating-state change to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub device: Arc<str>,
    pub up: bool,
}

impl Liveness {
    pub fn new(missed: u32) -> Self {
        Self {
            missed: missed.max(1),
            devices: HashMap::new(),
        }
    }

    /// Expect `device` every `interval` from `now` on (again, if watched).
    pub fn expect(&mut self, device: Arc<str>, interval: Duration, now: Instant) {
        let w = self.devices.entry(device).or_insert(Watched {
            interval,
            last: now,
            down: false,
        });
        w.interval = interval;
    }

    pub fn forget(&mut self, device: &str) {
        self.devices.remove(device);
    }

    /// An uplink of `device` was published: the change if it was DOWN.
    pub fn heard(&mut self, device: &str, now: Instant) -> Option<Change> {
        let (name, _) = self.devices.get_key_value(device)?;
        let name = name.clone();
        let w = self.devices.get_mut(&name).expect("present");
        w.last = now;
        std::mem::take(&mut w.down).then_some(Change {
            device: name,
            up: true,
        })
    }

    /// Devices silent for their `missed` intervals at `now`, newly DOWN.
    pub fn due(&mut self, now: Instant) -> Vec<Change> {
        let missed = self.missed;
        let mut out: Vec<Change> = self
            .devices
            .iter_mut()
            .filter(|(_, w)| !w.down && now.duration_since(w.last) > w.interval * missed)
            .map(|(name, w)| {
                w.down = true;
                Change {
                    device: name.clone(),
                    up: false,
                }
            })
            .collect();
        out.sort_by(|a, b| a.device.cmp(&b.device));
        out
    }

    /// Whether `device` is DOWN now.
    pub fn is_down(&self, device: &str) -> bool {
        self.devices.get(device).is_some_and(|w| w.down)
    }

    pub fn down_count(&self) -> usize {
        self.devices.values().filter(|w| w.down).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_the_missed_intervals_and_up_at_the_next_uplink() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut l = Liveness::new(3);
        l.expect("a".into(), Duration::from_secs(10), t0);
        l.expect("b".into(), Duration::from_secs(100), t0);
        assert!(l.due(s(30)).is_empty(), "three intervals are allowed");
        assert_eq!(l.heard("a", s(25)), None);
        assert!(l.due(s(55)).is_empty());
        let down = l.due(s(56));
        assert_eq!(
            down,
            vec![Change {
                device: "a".into(),
                up: false
            }]
        );
        assert!(l.due(s(80)).is_empty(), "reported once");
        assert!(l.is_down("a") && !l.is_down("b"));
        assert_eq!(
            l.heard("a", s(90)),
            Some(Change {
                device: "a".into(),
                up: true
            })
        );
        assert_eq!(l.heard("a", s(91)), None);
        assert_eq!(l.heard("unknown", s(91)), None);
        assert_eq!(l.down_count(), 0);
    }
}
