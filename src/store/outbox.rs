//! The outbox journal: events wait here, on disk, until EdgeX has them.
//!
//! File `outbox.log`: a header, then records
//! `len u32 | seq u64 | prev sha256 | payload | crc32`, appended with one
//! `write` each. The CRC detects a torn tail after a crash (it is cut off at
//! open); the SHA-256 chain (each record names the hash of the one before,
//! the first names the header's anchor) shows whether anything was altered,
//! removed or reordered: see [`verify`]. Delivery progress is a separate
//! `outbox.cursor` (the last delivered sequence number), replaced atomically.
//! Once enough of the log is delivered it is compacted: the undelivered tail
//! is copied to a new file whose anchor is the last delivered record's hash,
//! so the chain continues across compactions.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"DLOUTBX1";
/// magic | base seq u64 | anchor sha256
const HEADER: usize = 8 + 8 + 32;
/// len u32 | seq u64 | prev sha256 | ... | crc32
const OVERHEAD: usize = 4 + 8 + 32 + 4;
const LOG: &str = "outbox.log";
const CURSOR: &str = "outbox.cursor";
/// Largest payload accepted (an EdgeX event for one uplink is a few KiB).
pub const MAX_RECORD: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("outbox {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("outbox is full ({bytes} bytes pending, limit {limit})")]
    Full { bytes: u64, limit: u64 },
    #[error("event of {0} bytes exceeds the record limit")]
    TooLarge(usize),
    #[error("outbox {path} is not an outbox journal (bad header)")]
    BadHeader { path: PathBuf },
    #[error("no outbox journal at {0}")]
    Missing(PathBuf),
    #[error("outbox record {seq} at byte {offset}: {reason}")]
    Tampered {
        seq: u64,
        offset: u64,
        reason: &'static str,
    },
}

/// What to do when the journal holds `max_bytes` of undelivered events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FullPolicy {
    /// Refuse new events: the source is not acknowledged and redelivers
    /// later (MQTT QoS 1), so nothing acknowledged is lost.
    #[default]
    Reject,
    /// Drop the oldest undelivered events (counted), keep the newest.
    DropOldest,
}

type Hash = [u8; 32];

fn record_hash(seq: u64, prev: &Hash, payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update(prev);
    h.update(payload);
    h.finalize().into()
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    offset: u64,
    len: u32,
    hash: Hash,
}

impl Entry {
    /// Its size in the file, framing included.
    fn bytes(&self) -> u64 {
        u64::from(self.len) + OVERHEAD as u64
    }
}

/// The journal of one service instance.
pub struct Journal {
    dir: PathBuf,
    file: File,
    anchor: Hash,
    base_seq: u64,
    /// Records in the file, oldest first (delivered ones until compaction).
    entries: VecDeque<Entry>,
    delivered: u64,
    /// Bytes (with framing) of undelivered records, and of delivered ones
    /// still in the file: kept as running sums, so appends and acks cost
    /// the same however long the backlog.
    pending_bytes: u64,
    done_bytes: u64,
    end: u64,
    max_bytes: u64,
    policy: FullPolicy,
    /// Records cut off at open (torn tail).
    pub torn: u64,
    /// Events dropped by `DropOldest`.
    pub dropped: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Scan a log: header, then every intact record. Returns the entries and the
/// offset where intact data ends; `strict` turns any damage into an error
/// (for `verify`) instead of a torn tail to cut.
fn scan(path: &Path, strict: bool) -> Result<(u64, Hash, Vec<Entry>, u64), JournalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(JournalError::BadHeader {
            path: path.to_owned(),
        });
    }
    let base_seq = u64::from_le_bytes(bytes[8..16].try_into().expect("8"));
    // Sequences start at 1 and grow by one per event: a base of 0 (it
    // would make every record look delivered) or anywhere near u64::MAX
    // is damage, refused with the file named, never acted on.
    if base_seq == 0 || base_seq > u64::MAX / 2 {
        return Err(JournalError::BadHeader {
            path: path.to_owned(),
        });
    }
    let anchor: Hash = bytes[16..48].try_into().expect("32");
    let (mut at, mut prev, mut expect_seq) = (HEADER, anchor, base_seq);
    let mut entries = Vec::new();
    while at < bytes.len() {
        let damage = |reason| JournalError::Tampered {
            seq: expect_seq,
            offset: at as u64,
            reason,
        };
        let Some(head) = bytes.get(at..at + 4) else {
            if strict {
                return Err(damage("truncated record header"));
            }
            break;
        };
        let len = u32::from_le_bytes(head.try_into().expect("4")) as usize;
        let Some(rec) = bytes
            .get(at..at + OVERHEAD + len)
            .filter(|_| len <= MAX_RECORD)
        else {
            if strict {
                return Err(damage("truncated record"));
            }
            break;
        };
        let body = &rec[..rec.len() - 4];
        let crc = u32::from_le_bytes(rec[rec.len() - 4..].try_into().expect("4"));
        if crc32fast::hash(body) != crc {
            if strict {
                return Err(damage("checksum mismatch"));
            }
            break;
        }
        let seq = u64::from_le_bytes(rec[4..12].try_into().expect("8"));
        let rec_prev: Hash = rec[12..44].try_into().expect("32");
        if seq != expect_seq {
            return Err(damage("sequence gap or reorder"));
        }
        if rec_prev != prev {
            return Err(damage("hash chain broken"));
        }
        let hash = record_hash(seq, &prev, &rec[44..44 + len]);
        entries.push(Entry {
            seq,
            offset: at as u64,
            len: len as u32,
            hash,
        });
        prev = hash;
        expect_seq += 1;
        at += OVERHEAD + len;
    }
    Ok((base_seq, anchor, entries, at as u64))
}

fn write_log(
    path: &Path,
    base_seq: u64,
    anchor: &Hash,
    mut records: impl std::io::Read,
) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(&base_seq.to_le_bytes())?;
    f.write_all(anchor)?;
    // Streamed: a compaction behind a long backlog copies it without
    // holding it in memory.
    std::io::copy(&mut records, &mut f)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

impl Journal {
    pub fn open(dir: &Path, max_bytes: u64, policy: FullPolicy) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOG);
        if !path.exists() {
            write_log(&path, 1, &[0; 32], std::io::empty()).map_err(io(&path))?;
        }
        let (base_seq, anchor, entries, intact) = scan(&path, false)?;
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        let torn = u64::from(intact < len);
        if torn > 0 {
            let kept = crate::fsutil::keep_aside(&path).map_err(io(&path))?;
            tracing::warn!(path = %path.display(), cut = len - intact, kept = %kept.display(), "outbox: cutting a torn tail (the file as it was is kept)");
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(intact))
                .map_err(io(&path))?;
        }
        // Records before the base were compacted away: they were delivered.
        let delivered = read_cursor(&dir.join(CURSOR))?
            .unwrap_or(0)
            .max(base_seq - 1);
        let (done, pending): (Vec<&Entry>, Vec<&Entry>) =
            entries.iter().partition(|e| e.seq <= delivered);
        let pending_bytes = pending.iter().map(|e| e.bytes()).sum();
        let done_bytes = done.iter().map(|e| e.bytes()).sum();
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Self {
            dir: dir.to_owned(),
            file,
            anchor,
            base_seq,
            entries: entries.into(),
            delivered,
            pending_bytes,
            done_bytes,
            end: intact,
            max_bytes,
            policy,
            torn,
            dropped: 0,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(LOG)
    }

    /// The last sequence number delivered (the cursor).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Undelivered events.
    pub fn pending(&self) -> u64 {
        self.last_seq().saturating_sub(self.delivered)
    }

    /// Bytes of undelivered events.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// The sequence number of the newest record.
    pub fn last_seq(&self) -> u64 {
        self.entries.back().map_or(self.base_seq - 1, |e| e.seq)
    }

    /// Where record `seq` sits in `entries`.
    fn index_of(&self, seq: u64) -> Option<usize> {
        let first = self.entries.front()?.seq;
        let i = usize::try_from(seq.checked_sub(first)?).ok()?;
        (i < self.entries.len()).then_some(i)
    }

    /// Append an event; once this returns, a crash of this process cannot
    /// lose it. Returns its sequence number.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, JournalError> {
        if payload.len() > MAX_RECORD {
            return Err(JournalError::TooLarge(payload.len()));
        }
        let need = (payload.len() + OVERHEAD) as u64;
        while self.pending_bytes() + need > self.max_bytes {
            match self.policy {
                FullPolicy::Reject => {
                    return Err(JournalError::Full {
                        bytes: self.pending_bytes(),
                        limit: self.max_bytes,
                    })
                }
                FullPolicy::DropOldest if self.pending() > 0 => {
                    self.dropped += 1;
                    let next = self.delivered + 1;
                    tracing::warn!(
                        seq = next,
                        "outbox full: dropping the oldest undelivered event"
                    );
                    self.ack(next)?;
                }
                FullPolicy::DropOldest => {
                    return Err(JournalError::Full {
                        bytes: 0,
                        limit: self.max_bytes,
                    })
                }
            }
        }
        let (seq, prev) = match self.entries.back() {
            Some(e) => (e.seq + 1, e.hash),
            None => (self.base_seq, self.anchor),
        };
        let mut rec = Vec::with_capacity(payload.len() + OVERHEAD);
        rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&prev);
        rec.extend_from_slice(payload);
        let crc = crc32fast::hash(&rec);
        rec.extend_from_slice(&crc.to_le_bytes());
        let path = self.path();
        self.file.write_all(&rec).map_err(io(&path))?;
        self.entries.push_back(Entry {
            seq,
            offset: self.end,
            len: payload.len() as u32,
            hash: record_hash(seq, &prev, payload),
        });
        self.end += rec.len() as u64;
        self.pending_bytes += need;
        Ok(seq)
    }

    /// Up to `max` undelivered events, oldest first, with their sequence numbers.
    pub fn peek(&self, max: usize) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        self.peek_after(self.delivered, max)
    }

    /// Up to `max` undelivered events after `after` (a sequence number a
    /// pipelining sender already has in flight), oldest first.
    pub fn peek_after(&self, after: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        let after = after.max(self.delivered);
        if after >= self.last_seq() {
            return Ok(Vec::new());
        }
        let path = self.path();
        let mut f = File::open(&path).map_err(io(&path))?;
        let mut out = Vec::new();
        for e in self.entries.iter().skip_while(|e| e.seq <= after).take(max) {
            let mut buf = vec![0u8; e.len as usize];
            f.seek(SeekFrom::Start(e.offset + 44))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(io(&path))?;
            out.push((e.seq, buf));
        }
        Ok(out)
    }

    /// Everything up to and including `seq` reached EdgeX.
    pub fn ack(&mut self, seq: u64) -> Result<(), JournalError> {
        let seq = seq.min(self.last_seq());
        if seq <= self.delivered {
            return Ok(());
        }
        if let (Some(from), Some(to)) = (self.index_of(self.delivered + 1), self.index_of(seq)) {
            let bytes: u64 = self.entries.range(from..=to).map(Entry::bytes).sum();
            self.pending_bytes -= bytes;
            self.done_bytes += bytes;
        }
        self.delivered = seq;
        let cursor = self.dir.join(CURSOR);
        write_cursor(&cursor, seq).map_err(io(&cursor))?;
        self.maybe_compact()
    }

    /// Drop delivered records from the file once they are most of it.
    fn maybe_compact(&mut self) -> Result<(), JournalError> {
        let done = self.index_of(self.delivered).map_or(0, |i| i + 1);
        // Only once delivered records are half the file: each compaction then
        // copies at most as much as was delivered since the last, so the
        // cost per event stays constant however long the backlog.
        if done == 0 || self.done_bytes < (self.end / 2).max(64 << 10) {
            return Ok(());
        }
        let last_done = self.entries[done - 1];
        let keep_from = self.entries.get(done).map_or(self.end, |e| e.offset);
        let path = self.path();
        File::open(&path)
            .and_then(|mut rest| {
                rest.seek(SeekFrom::Start(keep_from))?;
                write_log(&path, last_done.seq + 1, &last_done.hash, rest)
            })
            .map_err(io(&path))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.anchor = last_done.hash;
        self.base_seq = last_done.seq + 1;
        let shift = keep_from - HEADER as u64;
        self.entries.drain(..done);
        if self.entries.capacity() > 4 * self.entries.len().max(1024) {
            self.entries.shrink_to(self.entries.len().max(1024));
        }
        for e in &mut self.entries {
            e.offset -= shift;
        }
        self.end -= shift;
        self.done_bytes = 0;
        Ok(())
    }

    /// Flush appended events to stable storage.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let path = self.path();
        self.file.sync_data().map_err(io(&path))
    }
}

fn read_cursor(path: &Path) -> Result<Option<u64>, JournalError> {
    match std::fs::read(path) {
        Ok(b) if b.len() == 12 && crc32fast::hash(&b[..8]).to_le_bytes() == b[8..12] => {
            Ok(Some(u64::from_le_bytes(b[..8].try_into().expect("8"))))
        }
        // A damaged cursor means "nothing known delivered": redelivering is
        // safe (event ids make it idempotent), skipping would not be.
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn write_cursor(path: &Path, seq: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut b = seq.to_le_bytes().to_vec();
    b.extend_from_slice(&crc32fast::hash(&seq.to_le_bytes()).to_le_bytes());
    std::fs::write(&tmp, b)?;
    std::fs::rename(&tmp, path)
}

/// What `journal verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub first_seq: u64,
    pub anchor: String,
    pub head: String,
}

/// Check the whole log: every record's checksum, the sequence, and the
/// SHA-256 chain from the header's anchor. Any damage is an error naming
/// the first bad record.
pub fn verify(dir: &Path) -> Result<Verified, JournalError> {
    let path = dir.join(LOG);
    if !path.exists() {
        return Err(JournalError::Missing(path));
    }
    let (base_seq, anchor, entries, _) = scan(&path, true)?;
    Ok(Verified {
        records: entries.len() as u64,
        first_seq: base_seq,
        anchor: hex::encode(anchor),
        head: hex::encode(entries.last().map_or(anchor, |e| e.hash)),
    })
}

/// Give `bytes` the journal's magic and every record it frames (by its
/// length field) a correct checksum, leaving the rest as it is: fuzzing's
/// way past the checksums to the sequence, chain and cursor checks.
#[doc(hidden)]
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() < HEADER {
        return;
    }
    bytes[..8].copy_from_slice(MAGIC);
    let mut at = HEADER;
    while let Some(head) = bytes.get(at..at + 4) {
        let len = u32::from_le_bytes(head.try_into().expect("4")) as usize;
        let end = at + OVERHEAD + len;
        if len > MAX_RECORD || end > bytes.len() {
            break;
        }
        let crc = crc32fast::hash(&bytes[at..end - 4]);
        bytes[end - 4..end].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running sums agree with a recount, through acks, compactions,
    /// drops and a reopen.
    #[test]
    fn a_damaged_base_sequence_is_refused_not_taken_as_delivered() {
        for base in [0u64, u64::MAX, u64::MAX / 2 + 1] {
            let d = tempfile::tempdir().unwrap();
            {
                let mut j = open(d.path());
                j.append(b"waiting").unwrap();
            }
            let path = d.path().join(LOG);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[8..16].copy_from_slice(&base.to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            let e = Journal::open(d.path(), 1 << 20, FullPolicy::Reject).err();
            assert!(
                matches!(e, Some(JournalError::BadHeader { .. })),
                "base {base}: {e:?}"
            );
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "the file is left as it is"
            );
        }
    }

    #[test]
    fn running_sums_match_a_recount() {
        let d = tempfile::tempdir().unwrap();
        let recount = |j: &Journal| {
            let p: Vec<&Entry> = j.entries.iter().filter(|e| e.seq > j.delivered).collect();
            (p.len() as u64, p.iter().map(|e| e.bytes()).sum::<u64>())
        };
        let mut j = Journal::open(d.path(), 400 << 10, FullPolicy::DropOldest).unwrap();
        let mut acked = 0;
        for i in 0..5000u64 {
            j.append(&vec![b'x'; 100 + (i % 300) as usize]).unwrap();
            if i % 7 == 0 {
                acked = (acked + 5).min(j.last_seq());
                j.ack(acked).unwrap();
            }
            assert_eq!((j.pending(), j.pending_bytes()), recount(&j), "after {i}");
        }
        assert!(j.dropped > 0, "the size bound was reached");
        let (n, b) = (j.pending(), j.pending_bytes());
        drop(j);
        let j = Journal::open(d.path(), 400 << 10, FullPolicy::DropOldest).unwrap();
        assert_eq!((j.pending(), j.pending_bytes()), (n, b));
        assert_eq!(recount(&j), (n, b));
    }

    fn open(dir: &Path) -> Journal {
        Journal::open(dir, 1 << 20, FullPolicy::Reject).unwrap()
    }

    #[test]
    fn append_peek_ack_survive_reopen() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut j = open(d.path());
            for i in 0..10u8 {
                assert_eq!(j.append(&[i; 100]).unwrap(), u64::from(i) + 1);
            }
            j.ack(4).unwrap();
        } // dropped as after kill -9: no sync
        let j = open(d.path());
        assert_eq!(j.pending(), 6);
        let next = j.peek(2).unwrap();
        assert_eq!(next, vec![(5, vec![4u8; 100]), (6, vec![5u8; 100])]);
        assert_eq!(verify(d.path()).unwrap().records, 10);
    }

    #[test]
    fn torn_tail_is_cut_and_appending_continues_the_chain() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut j = open(d.path());
            j.append(b"one").unwrap();
            j.append(b"two").unwrap();
        }
        let log = d.path().join(LOG);
        let len = std::fs::metadata(&log).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut j = open(d.path());
        assert_eq!((j.torn, j.pending()), (1, 1));
        assert_eq!(j.append(b"three").unwrap(), 2);
        drop(j);
        assert_eq!(verify(d.path()).unwrap().records, 2);
        assert_eq!(open(d.path()).peek(9).unwrap()[1].1, b"three");
    }

    #[test]
    fn verify_detects_alteration_removal_and_reorder() {
        let d = tempfile::tempdir().unwrap();
        let mut j = open(d.path());
        for p in [b"aaaa", b"bbbb", b"cccc"] {
            j.append(p).unwrap();
        }
        drop(j);
        let log = d.path().join(LOG);
        let good = std::fs::read(&log).unwrap();
        let rec = OVERHEAD + 4;
        // Altered payload with a recomputed CRC: only the hash chain catches it.
        let mut altered = good.clone();
        let r1 = HEADER + rec;
        altered[r1 + 44] = b'X';
        let crc = crc32fast::hash(&altered[r1..r1 + rec - 4]);
        altered[r1 + rec - 4..r1 + rec].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&log, &altered).unwrap();
        assert!(matches!(
            verify(d.path()),
            Err(JournalError::Tampered {
                seq: 3,
                reason: "hash chain broken",
                ..
            })
        ));
        // A record removed from the middle.
        let mut removed = good[..HEADER + rec].to_vec();
        removed.extend_from_slice(&good[HEADER + 2 * rec..]);
        std::fs::write(&log, &removed).unwrap();
        assert!(matches!(
            verify(d.path()),
            Err(JournalError::Tampered {
                reason: "sequence gap or reorder",
                ..
            })
        ));
        std::fs::write(&log, &good).unwrap();
        assert_eq!(verify(d.path()).unwrap().records, 3);
    }

    #[test]
    fn full_policies() {
        let d = tempfile::tempdir().unwrap();
        let mut j =
            Journal::open(d.path(), 3 * (OVERHEAD as u64 + 10), FullPolicy::Reject).unwrap();
        for _ in 0..3 {
            j.append(&[0; 10]).unwrap();
        }
        assert!(matches!(j.append(&[0; 10]), Err(JournalError::Full { .. })));
        j.ack(1).unwrap();
        j.append(&[1; 10]).unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let mut j = Journal::open(
            d2.path(),
            3 * (OVERHEAD as u64 + 10),
            FullPolicy::DropOldest,
        )
        .unwrap();
        for i in 0..5u8 {
            j.append(&[i; 10]).unwrap();
        }
        assert_eq!((j.pending(), j.dropped), (3, 2));
        assert_eq!(j.peek(1).unwrap()[0], (3, vec![2u8; 10]));
    }

    #[test]
    fn compaction_keeps_the_chain_verifiable() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path(), 8 << 20, FullPolicy::Reject).unwrap();
        let payload = vec![7u8; 4000];
        for _ in 0..400 {
            j.append(&payload).unwrap();
        }
        let head_before = verify(d.path()).unwrap().head;
        j.ack(390).unwrap();
        let v = verify(d.path()).unwrap();
        assert_eq!(
            (v.records, v.first_seq),
            (10, 391),
            "delivered records compacted away"
        );
        assert_eq!(v.head, head_before, "the chain's head is unchanged");
        assert_eq!(j.append(b"next").unwrap(), 401);
        drop(j);
        let j = Journal::open(d.path(), 8 << 20, FullPolicy::Reject).unwrap();
        assert_eq!(j.pending(), 11);
        assert_eq!(j.peek(20).unwrap().last().unwrap().1, b"next");
        assert_eq!(verify(d.path()).unwrap().records, 11);
    }
}
