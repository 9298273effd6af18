//! Durable per-device state as an append-only log of lines `<crc32 hex>
//! <json>`, each the whole state of one device (the last line of a device
//! wins), handed to the kernel with one `write` each; `sync` (on the
//! service's timer) bounds what a power cut can lose, as for the frame
//! counters. At open a line whose CRC is wrong (a torn tail) is dropped and
//! counted, and the log is compacted to one line per device through
//! `fsutil::write_atomic`. The join state ([`crate::store::joins`]) and the MAC
//! state ([`crate::lorawan::mac`]) are kept this way.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::lorawan::Eui64;

/// A per-device state kept in a log: its file name and what it is called in errors.
pub trait Logged: Clone + Default + serde::Serialize + serde::de::DeserializeOwned {
    const FILE: &'static str;
    const WHAT: &'static str;
}

#[derive(Debug, thiserror::Error)]
pub enum StateLogError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound = "T: Logged")]
struct Line<T> {
    dev_eui: Eui64,
    state: T,
}

pub struct StateLog<T> {
    path: PathBuf,
    file: File,
    states: HashMap<Eui64, T>,
    /// Lines dropped at open (torn or altered).
    pub torn_lines: usize,
}

fn line<T: Logged>(eui: Eui64, state: &T) -> String {
    let json = serde_json::to_string(&Line {
        dev_eui: eui,
        state: state.clone(),
    })
    .expect("state serialises");
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

impl<T: Logged> StateLog<T> {
    pub fn open(dir: &Path) -> Result<Self, StateLogError> {
        let path = dir.join(T::FILE);
        let io = |source| StateLogError::Io {
            what: T::WHAT,
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
                ok.then(|| serde_json::from_str::<Line<T>>(json).ok())
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
            let kept = crate::fsutil::keep_aside(&path).map_err(io)?;
            tracing::warn!(path = %path.display(), torn_lines, kept = %kept.display(), "{} lines dropped (torn or altered; the file as it was is kept)", T::WHAT);
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

    /// A device's state (the default if none was recorded).
    pub fn get(&self, eui: Eui64) -> T {
        self.states.get(&eui).cloned().unwrap_or_default()
    }

    /// A device's state, if one was recorded.
    pub fn find(&self, eui: Eui64) -> Option<&T> {
        self.states.get(&eui)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Eui64, &T)> {
        self.states.iter()
    }

    /// Record a device's new state (one `write`, before anything is sent).
    pub fn record(&mut self, eui: Eui64, state: T) -> Result<(), StateLogError> {
        self.file
            .write_all(line(eui, &state).as_bytes())
            .map_err(|source| StateLogError::Io {
                what: T::WHAT,
                path: self.path.clone(),
                source,
            })?;
        self.states.insert(eui, state);
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), StateLogError> {
        self.file.sync_data().map_err(|source| StateLogError::Io {
            what: T::WHAT,
            path: self.path.clone(),
            source,
        })
    }
}

/// Give every line of `text` a correct checksum of what follows its first
/// space: fuzzing's way past the checksum to the JSON and the states.
#[doc(hidden)]
pub fn reseal(text: &str) -> String {
    text.lines()
        .map(|l| match l.split_once(' ') {
            Some((_, json)) => format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())),
            None => format!("{l}\n"),
        })
        .collect()
}
