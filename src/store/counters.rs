//! Durable frame-counter state, so replays stay rejected after a restart
//! and a downlink never reuses a counter the device has seen.
//!
//! An append-only log of fixed 32-byte records, one per accepted frame or
//! acknowledged downlink, each with a CRC-32 (format 2 adds the downlink
//! counter; format 1 records, from before downlinks, still read; format 3,
//! written for a device heard on a network server's application stream,
//! adds which counters below the last one were delivered, so that a late
//! frame is taken once and a redelivery is refused, across restarts too). Every record is handed to the kernel with one `write`
//! before the frame is published, so a `kill -9` loses nothing; `sync`
//! (called on a timer) bounds what a power cut can lose. At open, a torn or
//! corrupt tail is detected by its CRC and dropped, and the log is compacted
//! to one record per device via a temp file, fsync and rename.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::lorawan::{Eui64, FcntState, Late};

const RECORD: usize = 32;
const MAGIC_V1: [u8; 2] = [0xfc, 0x01];
const MAGIC: [u8; 2] = [0xfc, 0x02];
const MAGIC_V3: [u8; 2] = [0xfc, 0x03];
const LOG: &str = "fcnt.log";

#[derive(Debug, thiserror::Error)]
pub enum CounterStoreError {
    #[error("counter store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The counter log of one service instance.
pub struct CounterStore {
    path: PathBuf,
    file: File,
    records: usize,
    compact_at: usize,
    states: HashMap<Eui64, Counters>,
    /// Records dropped at open because their CRC or length was wrong.
    pub torn_records: usize,
}

/// Both counters of one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    up: FcntState,
    /// The FCntDown of the device's next downlink.
    down: u32,
    /// The late counters an unordered stream delivered (24 bits).
    late: Late,
}

fn encode(eui: Eui64, c: &Counters) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    // Format 2 while there is no late window to keep (every device of a
    // gateway stream): its record stays readable by a release from before
    // format 3.
    r[0..2].copy_from_slice(if c.late.0 == 0 { &MAGIC } else { &MAGIC_V3 });
    r[4..12].copy_from_slice(&eui.0);
    r[12] = u8::from(c.up.last.is_some());
    r[13..16].copy_from_slice(&c.late.0.to_le_bytes()[..3]);
    r[16..20].copy_from_slice(&c.up.last.unwrap_or(0).to_le_bytes());
    r[20..24].copy_from_slice(&c.up.epoch.to_le_bytes());
    r[24..28].copy_from_slice(&c.down.to_le_bytes());
    let crc = crc32fast::hash(&r[..28]);
    r[28..32].copy_from_slice(&crc.to_le_bytes());
    r
}

fn decode(r: &[u8]) -> Option<(Eui64, Counters)> {
    let word = |at: usize| {
        r.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let (down, late) = match r.get(0..2)? {
        m if m == MAGIC_V3 && crc32fast::hash(&r[..28]) == word(28)? => (
            word(24)?,
            Late(u32::from_le_bytes([r[13], r[14], r[15], 0])),
        ),
        m if m == MAGIC && crc32fast::hash(&r[..28]) == word(28)? => (word(24)?, Late(0)),
        m if m == MAGIC_V1 && crc32fast::hash(&r[..24]) == word(24)? => (0, Late(0)),
        _ => return None,
    };
    let up = FcntState {
        last: (r[12] == 1).then_some(word(16)?),
        epoch: word(20)?,
    };
    Some((
        Eui64(r[4..12].try_into().ok()?),
        Counters { up, down, late },
    ))
}

impl CounterStore {
    pub fn open(dir: &Path) -> Result<Self, CounterStoreError> {
        let io = |source| CounterStoreError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOG);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut states = HashMap::new();
        let mut torn = usize::from(bytes.len() % RECORD != 0);
        for r in bytes.chunks_exact(RECORD) {
            match decode(r) {
                Some((eui, s)) => {
                    states.insert(eui, s);
                }
                None => torn += 1,
            }
        }
        if torn > 0 {
            let kept = crate::fsutil::keep_aside(&path).map_err(io)?;
            tracing::warn!(path = %path.display(), torn, kept = %kept.display(), "dropped torn or corrupt counter records (the file as it was is kept)");
        }
        let file = Self::rewrite(&path, &states).map_err(io)?;
        let records = states.len();
        Ok(Self {
            path,
            file,
            records,
            compact_at: (records * 4).max(4096),
            states,
            torn_records: torn,
        })
    }

    /// Write `states` to a new log beside the old one and atomically replace it.
    fn rewrite(path: &Path, states: &HashMap<Eui64, Counters>) -> std::io::Result<File> {
        let mut buf = Vec::with_capacity(states.len() * RECORD);
        for (eui, s) in states {
            buf.extend_from_slice(&encode(*eui, s));
        }
        crate::fsutil::write_atomic(path, &buf, 0o644)?;
        OpenOptions::new().append(true).open(path)
    }

    /// The remembered state of a device (default before its first frame).
    pub fn get(&self, eui: Eui64) -> FcntState {
        self.states.get(&eui).map(|c| c.up).unwrap_or_default()
    }

    /// The FCntDown of the device's next downlink (0 before its first).
    pub fn down(&self, eui: Eui64) -> u32 {
        self.states.get(&eui).map_or(0, |c| c.down)
    }

    /// Record a device's new uplink state: one `write`, durable against a
    /// crash of this process once it returns.
    pub fn record(&mut self, eui: Eui64, state: FcntState) -> Result<(), CounterStoreError> {
        self.record_unordered(eui, state, Late(0))
    }

    /// The late counters an unordered stream delivered below the device's
    /// last one (none recorded: none).
    pub fn late(&self, eui: Eui64) -> Late {
        self.states.get(&eui).map_or(Late(0), |c| c.late)
    }

    /// [`record`](Self::record) for a frame of an unordered stream, with
    /// the late counters delivered below the last one.
    pub fn record_unordered(
        &mut self,
        eui: Eui64,
        state: FcntState,
        late: Late,
    ) -> Result<(), CounterStoreError> {
        let c = Counters {
            up: state,
            down: self.down(eui),
            late,
        };
        self.write(eui, c)
    }

    /// Record that the device's downlink counter `used` was spent: the
    /// next downlink takes `used + 1`.
    pub fn record_down(&mut self, eui: Eui64, used: u32) -> Result<(), CounterStoreError> {
        let c = Counters {
            up: self.get(eui),
            down: used.wrapping_add(1).max(self.down(eui)),
            late: self.late(eui),
        };
        self.write(eui, c)
    }

    /// A new session (an OTAA join the device started using): uplink
    /// counting starts again at 0 in `epoch` (a new one, so event ids of the
    /// new session never repeat the old one's), and FCntDown at 0.
    pub fn start_session(&mut self, eui: Eui64, epoch: u32) -> Result<(), CounterStoreError> {
        let c = Counters {
            up: FcntState { last: None, epoch },
            down: 0,
            late: Late(0),
        };
        self.write(eui, c)
    }

    fn write(&mut self, eui: Eui64, c: Counters) -> Result<(), CounterStoreError> {
        let io = |source| CounterStoreError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&encode(eui, &c)).map_err(io)?;
        self.states.insert(eui, c);
        self.records += 1;
        if self.records >= self.compact_at {
            self.file = Self::rewrite(&self.path, &self.states).map_err(io)?;
            self.records = self.states.len();
            self.compact_at = (self.records * 4).max(4096);
        }
        Ok(())
    }

    /// Flush to stable storage.
    pub fn sync(&mut self) -> Result<(), CounterStoreError> {
        self.file
            .sync_data()
            .map_err(|source| CounterStoreError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// Give every whole record of `bytes` the current magic and a correct
/// checksum, leaving the rest as it is: fuzzing's way past the checksum
/// (a mutated record is otherwise only ever a torn one).
#[doc(hidden)]
pub fn reseal(bytes: &mut [u8]) {
    for r in bytes.chunks_exact_mut(RECORD) {
        r[0..2].copy_from_slice(&MAGIC);
        let crc = crc32fast::hash(&r[..28]);
        r[28..32].copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(last: u32, epoch: u32) -> FcntState {
        FcntState {
            last: Some(last),
            epoch,
        }
    }

    #[test]
    fn survives_reopen_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Eui64::from_u64(1), Eui64::from_u64(2));
        {
            let mut s = CounterStore::open(dir.path()).unwrap();
            for i in 0..10_000 {
                s.record(a, st(i, 0)).unwrap();
            }
            s.record(b, st(7, 3)).unwrap();
        } // dropped without sync, as after kill -9: the kernel has the writes
        let s = CounterStore::open(dir.path()).unwrap();
        assert_eq!((s.get(a), s.get(b)), (st(9_999, 0), st(7, 3)));
        assert_eq!(s.get(Eui64::from_u64(3)), FcntState::default());
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG)).unwrap().len(),
            2 * RECORD as u64
        );
    }

    #[test]
    fn torn_tail_and_corruption_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = Eui64::from_u64(1);
        {
            let mut s = CounterStore::open(dir.path()).unwrap();
            s.record(a, st(5, 0)).unwrap();
            s.record(a, st(6, 0)).unwrap();
        }
        let path = dir.path().join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[RECORD + 17] ^= 0xff; // corrupt the second record
        let c = Counters {
            up: st(7, 0),
            down: 0,
            late: Late(0),
        };
        bytes.extend_from_slice(&encode(a, &c)[..10]); // and a torn third
        std::fs::write(&path, &bytes).unwrap();
        let s = CounterStore::open(dir.path()).unwrap();
        assert_eq!(s.get(a), st(5, 0));
        assert_eq!(s.torn_records, 2, "one corrupt record, one torn tail");
        // The file as it was is kept aside for inspection.
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("fcnt.log.damaged-"))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(std::fs::read(&kept[0]).unwrap(), bytes);
    }

    #[test]
    fn downlink_counter_survives_and_format_1_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Eui64::from_u64(1), Eui64::from_u64(2));
        // A format-1 record, as written before downlinks existed.
        let mut v1 = [0u8; RECORD];
        v1[0..2].copy_from_slice(&MAGIC_V1);
        v1[4..12].copy_from_slice(&b.0);
        v1[12] = 1;
        v1[16..20].copy_from_slice(&41u32.to_le_bytes());
        let crc = crc32fast::hash(&v1[..24]);
        v1[24..28].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(dir.path().join(LOG), v1).unwrap();
        {
            let mut s = CounterStore::open(dir.path()).unwrap();
            assert_eq!((s.get(b), s.down(b)), (st(41, 0), 0));
            s.record(a, st(5, 0)).unwrap();
            s.record_down(a, 0).unwrap();
            s.record_down(a, 1).unwrap();
            s.record(a, st(6, 0)).unwrap();
            // An older acknowledgement never moves the counter back.
            s.record_down(a, 0).unwrap();
        }
        let s = CounterStore::open(dir.path()).unwrap();
        assert_eq!((s.get(a), s.down(a)), (st(6, 0), 2));
        assert_eq!((s.get(b), s.down(b)), (st(41, 0), 0));
    }

    #[test]
    fn late_window_survives_and_format_2_stays_for_others() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Eui64::from_u64(1), Eui64::from_u64(2));
        {
            let mut s = CounterStore::open(dir.path()).unwrap();
            s.record_unordered(a, st(9, 0), Late(0b1011)).unwrap();
            s.record_down(a, 4).unwrap();
            s.record(b, st(3, 0)).unwrap();
        }
        let bytes = std::fs::read(dir.path().join(LOG)).unwrap();
        let magics: std::collections::BTreeSet<[u8; 2]> =
            bytes.chunks_exact(RECORD).map(|r| [r[0], r[1]]).collect();
        assert_eq!(magics, [MAGIC, MAGIC_V3].into(), "v3 only where late");
        let mut s = CounterStore::open(dir.path()).unwrap();
        assert_eq!(
            (s.get(a), s.down(a), s.late(a)),
            (st(9, 0), 5, Late(0b1011))
        );
        assert_eq!((s.get(b), s.late(b)), (st(3, 0), Late(0)));
        // A frame of an ordered stream starts the window afresh.
        s.record(a, st(10, 0)).unwrap();
        assert_eq!(s.late(a), Late(0));
    }
}
