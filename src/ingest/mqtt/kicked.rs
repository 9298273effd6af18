//! Telling "another client has our id" from "the broker is down".
//!
//! MQTT allows one connection per client id: when a second client connects
//! with an id in use, the broker closes the first one's connection (3.1.1
//! §3.1.4; mosquitto, EMQX and HiveMQ all do). Two clients with one id
//! then take turns throwing each other off, each connection living only as
//! long as the other's reconnect backoff, and what is published to either
//! while it is off is lost for it. From inside one client this looks like
//! a connection the broker accepted (CONNACK) and closed again soon after,
//! over and over; a broker that is down never sends the CONNACK. This
//! watch, pure and clock-free, counts such short sessions and says when to
//! raise the alarm: once per streak.

use std::time::{Duration, Instant};

/// A session closed within this of its CONNACK is short. Far below any
/// keep-alive (at least 5 s here), so a dead link is not taken for a clash.
pub const SHORT: Duration = Duration::from_secs(3);
/// Short sessions in a row before the alarm.
pub const STREAK: u32 = 3;

#[derive(Debug, Default)]
pub struct KickWatch {
    connected_at: Option<Instant>,
    streak: u32,
}

impl KickWatch {
    /// The broker accepted the connection.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The connection is gone. True when this completes a streak of short
    /// sessions: the id is very likely in use by another client.
    pub fn lost(&mut self, now: Instant) -> bool {
        match self.connected_at.take() {
            Some(at) if now.saturating_duration_since(at) < SHORT => {
                self.streak += 1;
                self.streak == STREAK
            }
            // A long session, or no CONNACK at all (broker down): not a clash.
            _ => {
                self.streak = 0;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_sessions_in_a_row_raise_one_alarm() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = KickWatch::default();
        let mut alarms = Vec::new();
        for i in 0..6u64 {
            w.connected(ms(i * 200));
            alarms.push(w.lost(ms(i * 200 + 100)));
        }
        assert_eq!(alarms, [false, false, true, false, false, false]);
    }

    #[test]
    fn long_sessions_and_a_down_broker_are_not_clashes() {
        let t0 = Instant::now();
        let mut w = KickWatch::default();
        for i in 0..10u32 {
            // Never connected: the broker is down.
            assert!(!w.lost(t0 + SHORT * i));
        }
        w.connected(t0);
        assert!(!w.lost(t0 + Duration::from_millis(10)));
        w.connected(t0);
        assert!(!w.lost(t0 + Duration::from_millis(10)));
        // A long session breaks the streak.
        w.connected(t0);
        assert!(!w.lost(t0 + SHORT * 2));
        w.connected(t0);
        assert!(!w.lost(t0 + Duration::from_millis(10)));
        w.connected(t0);
        assert!(!w.lost(t0 + Duration::from_millis(10)));
        w.connected(t0);
        assert!(w.lost(t0 + Duration::from_millis(10)));
    }
}
