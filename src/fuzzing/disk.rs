//! Targets for what the service reads back from its data directory (a torn
//! or corrupt file is input too) and for the files a handover moves.
//! Each is written into a scratch directory and opened by the real `open`.

use std::path::Path;
use std::sync::Arc;

use super::bytes::Bytes;
use super::scratch::scratch;
use crate::downlink::queue::DownlinkQueue;
use crate::lorawan::{mac::MacState, otaa::JoinState, Eui64, FcntState};
use crate::store::counters::CounterStore;
use crate::store::outbox::{FullPolicy, Journal};
use crate::store::state_log::{Logged, StateLog};

/// The counter log: what opens must reopen unchanged after a write. The
/// first byte's low bit reseals the records (magic and checksum), so most
/// inputs reach the record decoding rather than the torn-record path.
pub fn counter_log(data: &[u8]) {
    let dir = scratch();
    let Some((control, rest)) = data.split_first() else {
        return;
    };
    let mut log = rest.to_vec();
    if control & 1 == 1 {
        crate::store::counters::reseal(&mut log);
    }
    std::fs::write(dir.join("fcnt.log"), &log).expect("scratch write");
    let Ok(mut store) = CounterStore::open(&dir) else {
        return;
    };
    let eui = Eui64::from_u64(0x70b3_d57e_d000_0001);
    let next = FcntState {
        last: Some(store.get(eui).last.map_or(0, |l| l.wrapping_add(1))),
        epoch: store.get(eui).epoch,
    };
    store.record(eui, next).expect("record");
    drop(store);
    let again = CounterStore::open(&dir).expect("reopen after a write");
    assert_eq!(again.torn_records, 0, "the compacted log is torn");
    assert_eq!(again.get(eui), next, "a recorded counter did not survive");
}

/// The outbox journal and its cursor: a damaged file never marks anything
/// delivered that its cursor or compacted base does not say was, and every
/// event counted as waiting can be read. The first byte: bit 0, a cursor
/// follows; bit 1, the log is resealed (magic and record checksums), so
/// most inputs reach the sequence, chain and cursor checks.
pub fn outbox_journal(data: &[u8]) {
    let dir = scratch();
    let mut b = Bytes(data);
    let control = b.u8();
    let cursor = (control & 1 == 1).then(|| u64::from_le_bytes([0; 8].map(|_| b.u8())));
    let mut log = b.0.to_vec();
    if control & 2 == 2 {
        crate::store::outbox::reseal(&mut log);
    }
    let log = &log[..];
    if let Some(seq) = cursor {
        let mut c = seq.to_le_bytes().to_vec();
        c.extend_from_slice(&crc32fast::hash(&seq.to_le_bytes()).to_le_bytes());
        std::fs::write(dir.join("outbox.cursor"), c).expect("scratch write");
    }
    std::fs::write(dir.join("outbox.log"), log).expect("scratch write");
    let Ok(mut j) = Journal::open(&dir, 1 << 20, FullPolicy::Reject) else {
        return;
    };
    let base = log
        .get(8..16)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8")));
    let said = cursor.unwrap_or(0).max(base.saturating_sub(1));
    assert!(
        j.delivered() <= said,
        "delivered {} but the files say {said}",
        j.delivered()
    );
    let waiting = j.peek(usize::MAX).expect("waiting events read");
    assert_eq!(
        waiting.len() as u64,
        j.pending(),
        "waiting events unreadable"
    );
    if let Ok(seq) = j.append(b"event") {
        j.ack(seq).expect("ack");
        drop(j);
        let again = Journal::open(&dir, 1 << 20, FullPolicy::Reject).expect("reopen after a write");
        assert_eq!(again.pending(), 0, "an acknowledged event waits again");
        assert_eq!(again.last_seq(), seq, "the journal lost its newest record");
    }
}

/// The downlink queue (`downlinks.json`).
pub fn downlink_queue(data: &[u8]) {
    let dir = scratch();
    std::fs::write(dir.join("downlinks.json"), data).expect("scratch write");
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let Ok(q) = DownlinkQueue::open(&dir, 8, metrics.clone()) else {
        return;
    };
    let before = q.len();
    drop(q);
    let again = DownlinkQueue::open(&dir, 8, metrics).expect("reopen");
    assert_eq!(again.len(), before, "the queue changed on reopening");
}

fn reopened<T: Logged + PartialEq + std::fmt::Debug>(dir: &Path) {
    let Ok(log) = StateLog::<T>::open(dir) else {
        return;
    };
    let mut before: Vec<(Eui64, T)> = log.iter().map(|(e, s)| (*e, s.clone())).collect();
    drop(log);
    let again = StateLog::<T>::open(dir).expect("reopen");
    assert_eq!(again.torn_lines, 0, "the rewritten {} is torn", T::FILE);
    let mut after: Vec<(Eui64, T)> = again.iter().map(|(e, s)| (*e, s.clone())).collect();
    before.sort_by_key(|(e, _)| *e);
    after.sort_by_key(|(e, _)| *e);
    assert_eq!(before, after, "{} changed on reopening", T::FILE);
}

/// The join and MAC state logs (CRC-checked JSON lines); the first byte
/// picks which (bit 0) and whether the lines are resealed with correct
/// checksums (bit 1), so most inputs reach the JSON and the states.
pub fn state_log(data: &[u8]) {
    let dir = scratch();
    let Some((which, text)) = data.split_first() else {
        return;
    };
    let text = match which & 2 {
        2 => crate::store::state_log::reseal(&String::from_utf8_lossy(text)).into_bytes(),
        _ => text.to_vec(),
    };
    if which & 1 == 0 {
        std::fs::write(dir.join(JoinState::FILE), &text).expect("scratch write");
        reopened::<JoinState>(&dir);
    } else {
        std::fs::write(dir.join(MacState::FILE), &text).expect("scratch write");
        reopened::<MacState>(&dir);
    }
}

/// The secrets file: sessions read from it, errors never repeating a key.
pub fn secrets_file(data: &[u8]) {
    let dir = scratch();
    std::fs::write(dir.join("secrets.yaml"), data).expect("scratch write");
    if let Ok(store) = crate::store::secrets::SecretStore::open(&dir) {
        if let Err(e) = store.sessions() {
            // The error names the device (a name may look like anything);
            // what follows the name must not repeat a value.
            let message = match &e {
                crate::store::secrets::SecretError::Invalid { field, .. } => {
                    format!("{field} is not valid")
                }
                other => other.to_string(),
            };
            let text = String::from_utf8_lossy(data);
            for word in text.split(|c: char| !c.is_ascii_hexdigit()) {
                if word.len() == 32 {
                    assert!(
                        !message.contains(word),
                        "a secrets error repeats {word}: {message}"
                    );
                }
            }
        }
    }
}

/// A signed handover contract, as stored and as offered.
pub fn contract(data: &[u8]) {
    use crate::handover::contract::SignedContract;
    if let Ok(c) = serde_json::from_slice::<SignedContract>(data) {
        let _ = c.verify(1_800_000_000);
        let _ = c.contract.canonical_bytes();
        let _ = c.dev_euis();
        let _ = (c.customer_key(), c.provider_key());
    }
}

/// The content-addressed image store: a digest announced, a partial file
/// left by an interrupted transfer, then the rest; only the blob whose
/// bytes match its name is ever committed.
pub fn image_store(data: &[u8]) {
    use crate::image::store::{BlobStore, Digest};
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(digest) = Digest::parse(&String::from_utf8_lossy(&data[..nl])) else {
        return;
    };
    let rest = &data[nl + 1..];
    let (partial, more) = rest.split_at(rest.len() / 2);
    let dir = scratch();
    let store = BlobStore::open(&dir).expect("store");
    std::fs::write(store.path(&digest).with_extension("partial"), partial).expect("scratch write");
    let Ok(mut incoming) = store.incoming(&digest) else {
        return;
    };
    if incoming.write(more).is_ok() && incoming.commit().is_ok() {
        assert_eq!(
            Digest::of(rest),
            digest,
            "a blob committed under another's name"
        );
        store.verify(&digest).expect("a committed blob verifies");
    }
}

/// A docker-save tar, as the container takeover reads its image id.
pub fn image_tar(data: &[u8]) {
    let dir = scratch();
    let path = dir.join("image.tar");
    std::fs::write(&path, data).expect("scratch write");
    let _ = crate::handover::container::image_id(&path);
}

/// An executable's ELF headers, as the packager reads them.
pub fn elf(data: &[u8]) {
    let _ = crate::image::elf::parse("fuzz".as_ref(), data);
}
