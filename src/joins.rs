//! Durable join state of OTAA devices (`DataDir/joins.log`): DevNonces used,
//! the next JoinNonce, the active and the pending session (no keys: they
//! are derived again from the AppKey). A JoinAccept is sent only after its
//! state is written, so a replayed JoinRequest stays refused across a
//! restart or `kill -9`, and a device that joined just before a crash finds
//! its session (pending or active) after it.
//!
//! An append-only log of lines `<crc32 hex> <json>`, each the whole state of
//! one device (the last line of a device wins), handed to the kernel with
//! one `write` each; `sync` (on the service's timer) bounds what a power cut
//! can lose, as for the frame counters. At open a line whose CRC is wrong
//! (a torn tail) is dropped and counted, and the log is compacted to one
//! line per device through `fsutil::write_atomic`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::lorawan::otaa::JoinState;
use crate::lorawan::Eui64;

const LOG: &str = "joins.log";

#[derive(Debug, thiserror::Error)]
pub enum JoinStoreError {
    #[error("join store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    dev_eui: Eui64,
    state: JoinState,
}

pub struct JoinStore {
    path: PathBuf,
    file: File,
    states: HashMap<Eui64, JoinState>,
    /// Lines dropped at open (torn or altered).
    pub torn_lines: usize,
}

fn line(eui: Eui64, state: &JoinState) -> String {
    let json = serde_json::to_string(&Line {
        dev_eui: eui,
        state: state.clone(),
    })
    .expect("join state serialises");
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

impl JoinStore {
    pub fn open(dir: &Path) -> Result<Self, JoinStoreError> {
        let path = dir.join(LOG);
        let io = |source| JoinStoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let mut states = HashMap::new();
        let mut torn_lines = 0;
        let mut lines = 0;
        for l in text.lines() {
            lines += 1;
            let parsed = l.split_once(' ').and_then(|(crc, json)| {
                let ok = u32::from_str_radix(crc, 16).ok()? == crc32fast::hash(json.as_bytes());
                ok.then(|| serde_json::from_str::<Line>(json).ok())
                    .flatten()
            });
            match parsed {
                Some(Line { dev_eui, state }) => {
                    states.insert(dev_eui, state);
                }
                None => torn_lines += 1,
            }
        }
        if torn_lines > 0 {
            tracing::warn!(path = %path.display(), torn_lines, "join log lines dropped (torn or altered)");
        }
        if lines > states.len() {
            let all: String = states.iter().map(|(e, s)| line(*e, s)).collect();
            crate::fsutil::write_atomic(&path, all.as_bytes(), 0o600).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        Ok(Self {
            path,
            file,
            states,
            torn_lines,
        })
    }

    /// A device's state (default: never joined).
    pub fn get(&self, eui: Eui64) -> JoinState {
        self.states.get(&eui).cloned().unwrap_or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Eui64, &JoinState)> {
        self.states.iter()
    }

    /// Record a device's new state (one `write`, before anything is sent).
    pub fn record(&mut self, eui: Eui64, state: JoinState) -> Result<(), JoinStoreError> {
        self.file
            .write_all(line(eui, &state).as_bytes())
            .map_err(|source| JoinStoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.states.insert(eui, state);
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), JoinStoreError> {
        self.file.sync_data().map_err(|source| JoinStoreError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
