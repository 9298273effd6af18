//! The market's record: an append-only log of what it decided (offers
//! taken, awards, contracts countersigned, stakes held and moved,
//! settlements, reputations), each entry hash-chained to the one before and
//! signed by the market's key. A copy (`GET /api/v3/market/log`) is checked
//! offline by `market verify`, so an edge need not trust the market's
//! database: an entry changed, dropped or reordered breaks the chain, and
//! one the market did not sign fails its signature.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::handover::identity::{Identity, PublicKey};

const DOMAIN: &[u8] = b"device-lorawan market ledger v1\n";

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry {
    /// 1, 2, ... without gaps.
    pub seq: u64,
    pub time_ms: u64,
    /// `offer`, `demand`, `bid`, `award`, `contract`, `settlement`.
    pub kind: String,
    /// What was decided, as JSON text (hashed as is).
    pub body: String,
    /// The previous entry's hash ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 over the domain, seq, time, kind, body and prev (hex).
    pub hash: String,
    /// The market's Ed25519 signature over the hash (hex).
    pub signature: String,
}

/// A copy of the log as the market serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogCopy {
    pub market_key: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("entry {seq}: expected seq {want} (an entry is missing or out of order)")]
    Gap { seq: u64, want: u64 },
    #[error("entry {seq}: does not follow the entry before it (prev hash differs)")]
    Broken { seq: u64 },
    #[error("entry {seq}: its hash does not match its content (changed)")]
    Changed { seq: u64 },
    #[error("entry {seq}: the market's signature does not verify")]
    Unsigned { seq: u64 },
    #[error("the market key does not read")]
    Key,
}

fn hash(seq: u64, time_ms: u64, kind: &str, body: &str, prev: &str) -> String {
    let mut d = Sha256::new();
    d.update(DOMAIN);
    for part in [&seq.to_string(), &time_ms.to_string(), kind, body, prev] {
        d.update((part.len() as u64).to_be_bytes());
        d.update(part.as_bytes());
    }
    hex::encode(d.finalize())
}

/// The entry after `prev` (`None`: the first), signed by `market`.
pub fn next(
    market: &Identity,
    prev: Option<&Entry>,
    time_ms: u64,
    kind: &str,
    body: String,
) -> Entry {
    let (seq, prev) = match prev {
        Some(p) => (p.seq + 1, p.hash.clone()),
        None => (1, GENESIS.to_string()),
    };
    let h = hash(seq, time_ms, kind, &body, &prev);
    let signature = hex::encode(market.sign(h.as_bytes()));
    Entry {
        seq,
        time_ms,
        kind: kind.to_string(),
        body,
        prev,
        hash: h,
        signature,
    }
}

/// Check a whole copy from its first entry: order, chain, content,
/// signatures.
pub fn verify(copy: &LogCopy) -> Result<(), LedgerError> {
    let key = PublicKey::from_hex(&copy.market_key).ok_or(LedgerError::Key)?;
    let mut prev = GENESIS.to_string();
    for (i, e) in copy.entries.iter().enumerate() {
        let want = i as u64 + 1;
        if e.seq != want {
            return Err(LedgerError::Gap { seq: e.seq, want });
        }
        if e.prev != prev {
            return Err(LedgerError::Broken { seq: e.seq });
        }
        if hash(e.seq, e.time_ms, &e.kind, &e.body, &e.prev) != e.hash {
            return Err(LedgerError::Changed { seq: e.seq });
        }
        let sig = hex::decode(&e.signature).unwrap_or_default();
        if !crate::handover::identity::verify(&key, e.hash.as_bytes(), &sig) {
            return Err(LedgerError::Unsigned { seq: e.seq });
        }
        prev = e.hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(market: &Identity, n: u64) -> LogCopy {
        let mut entries: Vec<Entry> = Vec::new();
        for i in 0..n {
            let e = next(
                market,
                entries.last(),
                1000 + i,
                "offer",
                format!("{{\"n\":{i}}}"),
            );
            entries.push(e);
        }
        LogCopy {
            market_key: market.public().to_hex(),
            entries,
        }
    }

    #[test]
    fn a_chain_verifies_and_every_tampering_is_named() {
        let m = Identity::generate().unwrap();
        let good = log(&m, 4);
        verify(&good).unwrap();

        let mut c = good.clone();
        c.entries[2].body = "{\"n\":99}".into();
        assert_eq!(verify(&c), Err(LedgerError::Changed { seq: 3 }));

        let mut c = good.clone();
        c.entries.remove(1);
        assert_eq!(verify(&c), Err(LedgerError::Gap { seq: 3, want: 2 }));

        // Rewritten from entry 2 on with fresh hashes: the signatures fail.
        let mut c = good.clone();
        c.entries[1].body = "{}".into();
        c.entries[1].hash = hash(2, c.entries[1].time_ms, "offer", "{}", &c.entries[1].prev);
        assert_eq!(verify(&c), Err(LedgerError::Unsigned { seq: 2 }));

        // Signed by another key throughout.
        let other = Identity::generate().unwrap();
        let mut c = log(&other, 2);
        c.market_key = m.public().to_hex();
        assert_eq!(verify(&c), Err(LedgerError::Unsigned { seq: 1 }));

        let mut c = good.clone();
        c.entries[3].prev = GENESIS.into();
        assert_eq!(verify(&c), Err(LedgerError::Broken { seq: 4 }));
    }
}
