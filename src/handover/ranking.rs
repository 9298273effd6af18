//! Several providers for one customer, ranked (each contract's `rank`, 0
//! first): only the first one the customer can reach may take over. The
//! customer knows who it reaches (each contract's heartbeat stream) and
//! says so in every heartbeat: a provider told `standby` keeps the sessions
//! and its buffer but does not take over. When a higher-ranked provider
//! becomes unreachable, the next one is told at once (the customers'
//! streams are woken), so a crash right after still finds it armed.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::lorawan::Eui64;

struct Standing {
    rank: u32,
    devices: Vec<Eui64>,
    reachable: bool,
}

#[derive(Default)]
pub struct Ranking {
    contracts: Mutex<HashMap<String, Standing>>,
    /// Wakes every customer's stream when someone's reachability changed.
    pub changed: tokio::sync::Notify,
}

impl Ranking {
    /// Contract `id` is run, with its rank and devices (not reachable yet).
    pub fn enter(&self, id: &str, rank: u32, devices: Vec<Eui64>) {
        self.contracts.lock().expect("ranking").insert(
            id.to_owned(),
            Standing {
                rank,
                devices,
                reachable: false,
            },
        );
    }

    pub fn leave(&self, id: &str) {
        if self.contracts.lock().expect("ranking").remove(id).is_some() {
            self.changed.notify_waiters();
        }
    }

    /// Whether contract `id`'s provider answers its heartbeats now.
    pub fn reachable(&self, id: &str, now: bool) {
        let mut m = self.contracts.lock().expect("ranking");
        if let Some(s) = m.get_mut(id) {
            if s.reachable != now {
                s.reachable = now;
                drop(m);
                self.changed.notify_waiters();
            }
        }
    }

    /// Whether contract `id`'s provider must stand by: a provider ranked
    /// above it, for any of the same devices, is reachable.
    pub fn standby(&self, id: &str) -> bool {
        let m = self.contracts.lock().expect("ranking");
        let Some(me) = m.get(id) else { return false };
        m.iter().any(|(other, s)| {
            other != id
                && s.reachable
                && (s.rank, other.as_str()) < (me.rank, id)
                && s.devices.iter().any(|d| me.devices.contains(d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_reachable_provider_of_the_same_devices_is_armed() {
        let r = Ranking::default();
        let (a, b) = (Eui64::from_u64(1), Eui64::from_u64(2));
        r.enter("first", 0, vec![a, b]);
        r.enter("second", 1, vec![a, b]);
        r.enter("third", 2, vec![b]);
        r.enter("elsewhere", 0, vec![Eui64::from_u64(9)]);
        // Nobody reached yet: nobody is told to stand by.
        assert!(!r.standby("second"));
        r.reachable("first", true);
        r.reachable("second", true);
        r.reachable("third", true);
        r.reachable("elsewhere", true);
        assert!(!r.standby("first"));
        assert!(r.standby("second"));
        assert!(r.standby("third"));
        assert!(!r.standby("elsewhere"), "other devices, other ranking");
        // The first one is lost: the second takes its place.
        r.reachable("first", false);
        assert!(!r.standby("second"));
        assert!(r.standby("third"));
        r.leave("second");
        assert!(!r.standby("third"));
        // Equal ranks: the contract id decides, so exactly one is armed.
        r.enter("twin", 2, vec![b]);
        r.reachable("twin", true);
        assert_ne!(r.standby("third"), r.standby("twin"));
    }
}
