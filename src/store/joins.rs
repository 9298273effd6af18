//! Durable join state of OTAA devices (`DataDir/joins.log`): DevNonces used,
//! the next JoinNonce, the active and the pending session (no keys: they
//! are derived again from the AppKey). A JoinAccept is sent only after its
//! state is written, so a replayed JoinRequest stays refused across a
//! restart or `kill -9`, and a device that joined just before a crash finds
//! its session (pending or active) after it.
//!
//! A [`StateLog`](crate::store::state_log::StateLog) in `joins.log`.

use crate::lorawan::otaa::JoinState;

impl crate::store::state_log::Logged for JoinState {
    const FILE: &'static str = "joins.log";
    const WHAT: &'static str = "join store";
}

pub type JoinStore = crate::store::state_log::StateLog<JoinState>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::Eui64;
    use std::fs::OpenOptions;
    use std::io::Write;
    const LOG: &str = "joins.log";
    use crate::lorawan::otaa::JoinedSession;
    use crate::lorawan::DevAddr;

    fn state(n: u32) -> JoinState {
        let mut s = JoinState {
            next_join_nonce: n,
            ..Default::default()
        };
        s.used_dev_nonces.extend([1, 2, n as u16]);
        s.pending = Some(JoinedSession {
            dev_addr: DevAddr(0x2601_0000 + n),
            dev_nonce: n as u16,
            join_nonce: n - 1,
            net_id: 0x13,
            joined_at: 1_700_000_000,
            epoch: None,
        });
        s
    }

    #[test]
    fn survives_reopen_keeps_the_last_state_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Eui64::from_u64(1), Eui64::from_u64(2));
        {
            let mut st = JoinStore::open(dir.path()).unwrap();
            st.record(a, state(1)).unwrap();
            st.record(b, state(5)).unwrap();
            st.record(a, state(2)).unwrap();
        }
        // A crash in the middle of a write.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        f.write_all(b"0badc0de {\"devEui\":\"00").unwrap();
        let st = JoinStore::open(dir.path()).unwrap();
        assert_eq!(st.torn_lines, 1);
        assert_eq!(st.get(a), state(2));
        assert_eq!(st.get(b), state(5));
        assert_eq!(st.get(Eui64::from_u64(3)), JoinState::default());
        // Compacted to one line per device.
        let text = std::fs::read_to_string(dir.path().join(LOG)).unwrap();
        assert_eq!(text.lines().count(), 2);
        // An altered line is refused, not believed.
        let bad = text.replacen("\"nextJoinNonce\":2", "\"nextJoinNonce\":0", 1);
        std::fs::write(dir.path().join(LOG), bad).unwrap();
        let st = JoinStore::open(dir.path()).unwrap();
        assert_eq!((st.torn_lines, st.get(a)), (1, JoinState::default()));
    }
}
