//! Commands waiting for their device's next uplink (class A), kept in
//! `DataDir/downlinks.json` so a restart does not forget an answered PUT.
//!
//! The API pushes, the pipeline reads the front and removes it once a
//! gateway acknowledged its transmission. Commands are rare next to
//! uplinks, so the file is simply rewritten atomically on every change; the
//! per-frame path only reads an atomic count while nothing is queued. That
//! count is the `lorawan_downlink_queue_depth` gauge itself, kept here, where
//! the queue changes.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::codec::setting::Downlink;
use crate::metrics::Metrics;

const FILE: &str = "downlinks.json";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "the downlink queue of device {device} is full ({max} commands wait for its next uplink)"
    )]
    Full { device: String, max: usize },
    #[error("downlink queue {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "downlink queue {path} is damaged ({message}); move it aside to start with an empty queue"
    )]
    Damaged { path: PathBuf, message: String },
}

/// One queued command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    /// Unique in this queue, increasing: names the command in logs and acks.
    pub seq: u64,
    pub fport: u8,
    #[serde(with = "hex::serde")]
    pub payload: Vec<u8>,
    /// Transmissions tried and refused by gateways (or, confirmed, not
    /// acknowledged by the device) so far.
    pub attempts: u32,
    /// The device must acknowledge it (confirmed data down).
    #[serde(default)]
    pub confirmed: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    next_seq: u64,
    devices: BTreeMap<String, VecDeque<Queued>>,
}

pub struct DownlinkQueue {
    path: PathBuf,
    max_per_device: usize,
    inner: Mutex<Stored>,
    metrics: Arc<Metrics>,
    /// Woken on every push: class C devices get their commands at once.
    pushed: tokio::sync::Notify,
}

impl DownlinkQueue {
    pub fn open(
        data_dir: &Path,
        max_per_device: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, QueueError> {
        let path = data_dir.join(FILE);
        let stored: Stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| QueueError::Damaged {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(source) => return Err(QueueError::Io { path, source }),
        };
        let queued: usize = stored.devices.values().map(VecDeque::len).sum();
        metrics.downlink_queue_depth.store(queued as u64, Relaxed);
        Ok(Self {
            path,
            max_per_device,
            inner: Mutex::new(stored),
            metrics,
            pushed: tokio::sync::Notify::new(),
        })
    }

    /// Commands queued, all devices together.
    pub fn len(&self) -> usize {
        self.metrics.downlink_queue_depth.load(Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queue `d` for `device`, durably. Returns the command's sequence number.
    pub fn push(&self, device: &str, d: Downlink) -> Result<u64, QueueError> {
        self.change(|s| {
            let seq = s.next_seq;
            let q = s.devices.entry(device.to_string()).or_default();
            if q.len() >= self.max_per_device {
                return Err(QueueError::Full {
                    device: device.to_string(),
                    max: self.max_per_device,
                });
            }
            q.push_back(Queued {
                seq,
                fport: d.fport,
                payload: d.payload,
                attempts: 0,
                confirmed: d.confirmed,
            });
            s.next_seq += 1;
            self.metrics.downlinks_queued.fetch_add(1, Relaxed);
            Ok(seq)
        })
        .inspect(|_| self.pushed.notify_one())
    }

    /// Resolves after the next push (or at once if one came since the last
    /// wait): the pipeline then sends class C devices' commands.
    pub async fn pushed(&self) {
        self.pushed.notified().await
    }

    /// The devices with commands waiting.
    pub fn waiting(&self) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let s = self.inner.lock().expect("queue lock");
        s.devices.keys().cloned().collect()
    }

    /// The command to send next to `device`, and how many wait behind it.
    pub fn front(&self, device: &str) -> Option<(Queued, usize)> {
        if self.is_empty() {
            return None;
        }
        let s = self.inner.lock().expect("queue lock");
        let q = s.devices.get(device)?;
        q.front().map(|f| (f.clone(), q.len() - 1))
    }

    /// Command `seq` of `device` was transmitted: remove it.
    pub fn done(&self, device: &str, seq: u64) -> Result<(), QueueError> {
        self.change(|s| {
            if let Some(q) = s.devices.get_mut(device) {
                q.retain(|c| c.seq != seq);
                if q.is_empty() {
                    s.devices.remove(device);
                }
            }
            Ok(())
        })
    }

    /// A transmission of command `seq` was refused. After `max_attempts`
    /// the command is dropped and returned, so the caller can report it.
    pub fn refused(
        &self,
        device: &str,
        seq: u64,
        max_attempts: u32,
    ) -> Result<Option<Queued>, QueueError> {
        self.change(|s| {
            let Some(q) = s.devices.get_mut(device) else {
                return Ok(None);
            };
            let Some(i) = q.iter().position(|c| c.seq == seq) else {
                return Ok(None);
            };
            q[i].attempts += 1;
            if q[i].attempts < max_attempts {
                return Ok(None);
            }
            let dropped = q.remove(i);
            if q.is_empty() {
                s.devices.remove(device);
            }
            Ok(dropped)
        })
    }

    /// Apply `f` and, whatever it changed, write the file before returning.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Stored) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let mut s = self.inner.lock().expect("queue lock");
        let out = f(&mut s)?;
        let bytes = serde_json::to_vec_pretty(&*s).expect("queue serialises");
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600).map_err(|source| {
            QueueError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        let queued: usize = s.devices.values().map(VecDeque::len).sum();
        self.metrics
            .downlink_queue_depth
            .store(queued as u64, Relaxed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: u8) -> Downlink {
        Downlink {
            fport: 2,
            payload: vec![0, b],
            confirmed: false,
        }
    }

    #[test]
    fn queue_is_ordered_bounded_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let q = DownlinkQueue::open(dir.path(), 2, Default::default()).unwrap();
        assert!(q.front("a").is_none());
        let s1 = q.push("a", d(1)).unwrap();
        let s2 = q.push("a", d(2)).unwrap();
        assert!(matches!(
            q.push("a", d(3)),
            Err(QueueError::Full { max: 2, .. })
        ));
        q.push("b", d(9)).unwrap();
        assert_eq!(q.len(), 3);
        let (front, behind) = q.front("a").unwrap();
        assert_eq!(
            (front.seq, front.payload.clone(), behind),
            (s1, vec![0, 1], 1)
        );
        // Refused twice with two attempts allowed: dropped and reported.
        assert_eq!(q.refused("a", s1, 2).unwrap(), None);
        assert_eq!(q.refused("a", s1, 2).unwrap().map(|c| c.attempts), Some(2));
        drop(q);
        // A restart keeps what is left, and sequence numbers keep increasing.
        let q = DownlinkQueue::open(dir.path(), 2, Default::default()).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.front("a").unwrap().0.seq, s2);
        q.done("a", s2).unwrap();
        assert!(q.front("a").is_none());
        assert!(q.push("a", d(4)).unwrap() > s2);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let e = DownlinkQueue::open(dir.path(), 2, Default::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
