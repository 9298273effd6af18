//! Settlement receipts (seed §3.11: on return, "cross reference that
//! operation went smoothly (data logged, keys updated, no packet was
//! lost)").
//!
//! When it hands the devices back, the provider states what it delivered
//! while it held them: per device the counter it took over after, the
//! frames it delivered (as ranges of counters) and a hash chain of their
//! EdgeX event ids, with the holding's interval and how long its takeover
//! took. It signs that. The customer checks it against what it knows
//! itself (the frames its own gateways heard meanwhile, and the counters it
//! had delivered) and signs its answer: accepted, or a dispute naming the
//! frames missing or published twice. Both edges keep the receipt.
//!
//! Event ids are UUIDv5 of (DevEUI, counter epoch, FCnt), so the chain can
//! be recomputed from the ranges alone: a receipt is checked offline
//! (`handover receipt verify FILE`) with nothing but the two public keys
//! it names. Everything here is pure: no I/O but [`save`] and [`load_dir`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::identity::{verify, Identity, PublicKey};
use crate::lorawan::{Eui64, FcntState};

/// What the signatures cover, so that they sign nothing else.
const DOMAIN: &[u8] = b"device-lorawan handover receipt v1\n";
const ANSWER_DOMAIN: &[u8] = b"device-lorawan handover receipt answer v1\n";

/// A run of frames of one counter epoch: FCnt `first..=last`, each once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Run {
    pub epoch: u32,
    pub first: u32,
    pub last: u32,
}

/// One device's frames as the provider delivered them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delivery {
    /// DevEUI, hex.
    pub dev_eui: String,
    /// The counter the provider took over after (what the customer had
    /// delivered, as it last said): `None`, nothing yet.
    pub after: Option<Frame>,
    pub runs: Vec<Run>,
    pub count: u64,
    /// SHA-256 chain over the event ids, in delivery order, hex.
    pub chain: String,
}

/// A frame: counter epoch and FCnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Frame {
    pub epoch: u32,
    pub fcnt: u32,
}

impl Frame {
    pub fn of(s: FcntState) -> Option<Self> {
        s.last.map(|fcnt| Self {
            epoch: s.epoch,
            fcnt,
        })
    }
}

/// How the provider learnt its customer had stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Detected {
    /// The heartbeat stream closed without a goodbye (a crash).
    Closed,
    /// The customer said it was stopping.
    Leaving,
    /// Heartbeats missed past the activation condition (a lost link).
    Silent,
}

/// What the provider states at hand-back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    pub contract_id: String,
    /// The parties' public keys (hex), as the contract names them.
    pub customer_key: String,
    pub provider_key: String,
    /// The fencing epoch the provider held the devices under.
    pub epoch: u64,
    /// Unix milliseconds: the takeover and the hand-back.
    pub from_ms: u64,
    pub to_ms: u64,
    pub detected: Detected,
    /// From the customer's last sign of life to the provider publishing,
    /// as the provider measured it.
    pub takeover_ms: u64,
    /// The runs list every frame delivered while the provider held the
    /// devices. Not so when the customer's image ran them in a container:
    /// then they list what the provider published itself, and a frame
    /// missing from them is no evidence.
    pub complete: bool,
    pub devices: Vec<Delivery>,
}

/// The customer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, tag = "verdict")]
pub enum Verdict {
    Accepted,
    Disputed {
        /// Frames the customer's gateways heard, after the counter the
        /// provider took over from, that the receipt does not list.
        missing: Vec<(String, Frame)>,
        /// Frames listed that the customer had delivered itself (at or
        /// before the counter the provider took over after), or twice.
        repeated: Vec<(String, Frame)>,
        /// Frames listed that EdgeX's core-data has no event for (see
        /// [`crate::handover::records`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unrecorded: Vec<(String, Frame)>,
        /// What else did not hold (a chain that does not match its runs).
        reasons: Vec<String>,
    },
}

/// The customer's signed answer. (Its verdict is flattened in, which
/// serde cannot combine with refusing unknown fields.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    #[serde(flatten)]
    pub verdict: Verdict,
    /// When the customer stopped cleanly, how long from its goodbye to the
    /// provider's takeover as it saw it; after a crash it cannot know.
    pub customer_takeover_ms: Option<u64>,
    pub signature: String,
}

/// A receipt with the provider's signature and, once given, the
/// customer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    pub provider_signature: String,
    pub answer: Option<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the {0}'s public key is not a 32-byte hex Ed25519 key")]
    BadKey(&'static str),
    #[error(
        "the {0}'s signature does not verify: the receipt was altered or signed by another key"
    )]
    BadSignature(&'static str),
    #[error("device {device}: {what}")]
    Device { device: String, what: String },
    #[error("the receipt is not answered by the customer")]
    Unanswered,
}

/// The chain over `frames` of `dev_eui` (hex), in order.
pub fn chain(dev_eui: &str, frames: impl IntoIterator<Item = Frame>) -> String {
    let mut h = [0u8; 32];
    for f in frames {
        let id = crate::edgex::event::event_id(dev_eui, f.epoch, f.fcnt);
        let mut d = Sha256::new();
        d.update(h);
        d.update(id.as_bytes());
        h = d.finalize().into();
    }
    hex::encode(h)
}

/// The frames `runs` list, in order.
pub fn frames(runs: &[Run]) -> impl Iterator<Item = Frame> + '_ {
    runs.iter().flat_map(|r| {
        (r.first..=r.last).map(move |fcnt| Frame {
            epoch: r.epoch,
            fcnt,
        })
    })
}

impl Delivery {
    /// A device's delivery from the frames delivered, in delivery order.
    pub fn of(dev_eui: Eui64, after: FcntState, delivered: &[FcntState]) -> Self {
        let hex = dev_eui.to_string();
        let listed: Vec<Frame> = delivered.iter().filter_map(|s| Frame::of(*s)).collect();
        let mut runs: Vec<Run> = Vec::new();
        for f in &listed {
            match runs.last_mut() {
                Some(r) if r.epoch == f.epoch && r.last.checked_add(1) == Some(f.fcnt) => {
                    r.last = f.fcnt
                }
                _ => runs.push(Run {
                    epoch: f.epoch,
                    first: f.fcnt,
                    last: f.fcnt,
                }),
            }
        }
        Self {
            chain: chain(&hex, listed.iter().copied()),
            count: listed.len() as u64,
            dev_eui: hex,
            after: Frame::of(after),
            runs,
        }
    }

    /// The runs add up to the count and the chain; each frame once, in
    /// increasing order.
    fn check(&self) -> Result<(), ReceiptError> {
        let bad = |what: String| ReceiptError::Device {
            device: self.dev_eui.clone(),
            what,
        };
        if self.runs.iter().any(|r| r.first > r.last) {
            return Err(bad("a run ends before it starts".into()));
        }
        let n: u64 = self
            .runs
            .iter()
            .map(|r| u64::from(r.last - r.first) + 1)
            .sum();
        if n != self.count {
            return Err(bad(format!(
                "the runs list {n} frames, the count says {}",
                self.count
            )));
        }
        if chain(&self.dev_eui, frames(&self.runs)) != self.chain {
            return Err(bad("the chain does not match its frames".into()));
        }
        Ok(())
    }
}

impl Receipt {
    fn bytes(&self) -> Vec<u8> {
        let mut b = DOMAIN.to_vec();
        b.extend_from_slice(&serde_json::to_vec(self).expect("a receipt serialises"));
        b
    }

    /// The provider signs what it states.
    pub fn sign(self, provider: &Identity) -> SignedReceipt {
        let sig = provider.sign(&self.bytes());
        SignedReceipt {
            receipt: self,
            provider_signature: hex::encode(sig),
            answer: None,
        }
    }

    /// The customer's verdict: `heard` are the frames its own gateways
    /// heard while the provider held the devices (and that it therefore did
    /// not publish). A frame heard after the counter the provider took over
    /// from and not listed is missing; a listed frame at or before that
    /// counter, or listed twice, is repeated. `unrecorded` are the listed
    /// frames EdgeX's core-data does not have.
    pub fn judge(&self, heard: &[(Eui64, FcntState)], unrecorded: &[(String, Frame)]) -> Verdict {
        let mut missing = Vec::new();
        let mut repeated = Vec::new();
        let mut reasons = Vec::new();
        for d in &self.devices {
            if let Err(e) = d.check() {
                reasons.push(e.to_string());
                continue;
            }
            let mut seen = std::collections::HashSet::new();
            for f in frames(&d.runs) {
                if d.after.is_some_and(|a| f <= a) || !seen.insert(f) {
                    repeated.push((d.dev_eui.clone(), f));
                }
            }
            let eui = Eui64::from_hex(&d.dev_eui).ok();
            for f in heard
                .iter()
                .filter(|(e, _)| Some(*e) == eui)
                .filter_map(|(_, s)| Frame::of(*s))
            {
                if self.complete && d.after.is_none_or(|a| f > a) && !seen.contains(&f) {
                    missing.push((d.dev_eui.clone(), f));
                }
            }
        }
        missing.sort();
        missing.dedup();
        let unrecorded = unrecorded.to_vec();
        if missing.is_empty() && repeated.is_empty() && unrecorded.is_empty() && reasons.is_empty()
        {
            Verdict::Accepted
        } else {
            Verdict::Disputed {
                missing,
                repeated,
                unrecorded,
                reasons,
            }
        }
    }
}

impl SignedReceipt {
    fn answer_bytes(&self, verdict: &Verdict, customer_takeover_ms: Option<u64>) -> Vec<u8> {
        let mut b = ANSWER_DOMAIN.to_vec();
        b.extend_from_slice(self.provider_signature.as_bytes());
        b.push(b'\n');
        b.extend_from_slice(
            &serde_json::to_vec(&(verdict, customer_takeover_ms)).expect("a verdict serialises"),
        );
        b
    }

    /// The customer signs its verdict over the provider's signed receipt.
    pub fn answer(
        mut self,
        customer: &Identity,
        verdict: Verdict,
        customer_takeover_ms: Option<u64>,
    ) -> Self {
        let sig = customer.sign(&self.answer_bytes(&verdict, customer_takeover_ms));
        self.answer = Some(Answer {
            verdict,
            customer_takeover_ms,
            signature: hex::encode(sig),
        });
        self
    }

    /// The provider's signature and every device's chain; the customer's
    /// answer too if `answered`.
    pub fn verify(&self, answered: bool) -> Result<(), ReceiptError> {
        let r = &self.receipt;
        let pk = PublicKey::from_hex(&r.provider_key).ok_or(ReceiptError::BadKey("provider"))?;
        let sig = hex::decode(&self.provider_signature)
            .map_err(|_| ReceiptError::BadSignature("provider"))?;
        if !verify(&pk, &r.bytes(), &sig) {
            return Err(ReceiptError::BadSignature("provider"));
        }
        for d in &r.devices {
            d.check()?;
        }
        match &self.answer {
            None if answered => Err(ReceiptError::Unanswered),
            None => Ok(()),
            Some(a) => {
                let ck =
                    PublicKey::from_hex(&r.customer_key).ok_or(ReceiptError::BadKey("customer"))?;
                let sig = hex::decode(&a.signature)
                    .map_err(|_| ReceiptError::BadSignature("customer"))?;
                if !verify(
                    &ck,
                    &self.answer_bytes(&a.verdict, a.customer_takeover_ms),
                    &sig,
                ) {
                    return Err(ReceiptError::BadSignature("customer"));
                }
                Ok(())
            }
        }
    }

    /// Its file name: contract and epoch name one holding.
    pub fn file_name(&self) -> String {
        format!("{}-{}.json", self.receipt.contract_id, self.receipt.epoch)
    }
}

/// Where each side keeps its receipts, under the DataDir.
pub const CUSTOMER_DIR: &str = "handover/customer/receipts";
pub const PROVIDER_DIR: &str = "handover/provider/receipts";

/// Which side of a holding an edge was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Customer,
    Provider,
}

/// Every receipt this edge keeps, as customer and as provider.
pub fn kept(data_dir: &Path) -> anyhow::Result<Vec<(Role, SignedReceipt)>> {
    let mut v: Vec<(Role, SignedReceipt)> = load_dir(&data_dir.join(CUSTOMER_DIR))?
        .into_iter()
        .map(|r| (Role::Customer, r))
        .collect();
    v.extend(
        load_dir(&data_dir.join(PROVIDER_DIR))?
            .into_iter()
            .map(|r| (Role::Provider, r)),
    );
    Ok(v)
}

impl SignedReceipt {
    /// One line for `handover receipts`.
    pub fn summary(&self) -> String {
        let r = &self.receipt;
        let frames: u64 = r.devices.iter().map(|d| d.count).sum();
        let answer = match &self.answer {
            None => "not answered".to_string(),
            Some(Answer {
                verdict: Verdict::Accepted,
                ..
            }) => "accepted".to_string(),
            Some(Answer {
                verdict:
                    Verdict::Disputed {
                        missing,
                        repeated,
                        unrecorded,
                        reasons,
                    },
                ..
            }) => format!(
                "disputed: {} missing, {} repeated, {} not in EdgeX{}",
                missing.len(),
                repeated.len(),
                unrecorded.len(),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(", {}", reasons.join("; "))
                }
            ),
        };
        format!(
            "{} epoch {}: held {} ms ({:?}, taken over in {} ms), {} devices, {} frames; {}",
            r.contract_id,
            r.epoch,
            r.to_ms.saturating_sub(r.from_ms),
            r.detected,
            r.takeover_ms,
            r.devices.len(),
            frames,
            answer
        )
    }
}

/// Keep `r` in `dir` (replacing an unanswered copy by the answered one).
pub fn save(dir: &Path, r: &SignedReceipt) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(r.file_name());
    let json = serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&path, &json, 0o644)?;
    Ok(path)
}

/// The receipts kept in `dir`, oldest holding first; one that does not
/// read is an error naming its file.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<SignedReceipt>> {
    let mut v = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", dir.display())),
    };
    for e in rd {
        let p = e?.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let r: SignedReceipt = serde_json::from_slice(&std::fs::read(&p)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        v.push(r);
    }
    v.sort_by(|a, b| {
        (a.receipt.from_ms, &a.receipt.contract_id)
            .cmp(&(b.receipt.from_ms, &b.receipt.contract_id))
    });
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(fcnt: u32) -> FcntState {
        FcntState {
            last: Some(fcnt),
            epoch: 0,
        }
    }

    fn eui() -> Eui64 {
        Eui64::from_u64(0x70b3d57ed0000001)
    }

    fn receipt(provider: &Identity, customer: &Identity, delivered: &[u32]) -> SignedReceipt {
        let d: Vec<FcntState> = delivered.iter().map(|f| st(*f)).collect();
        Receipt {
            contract_id: "c1".into(),
            customer_key: customer.public().to_hex(),
            provider_key: provider.public().to_hex(),
            epoch: 2,
            from_ms: 1_000,
            to_ms: 9_000,
            detected: Detected::Closed,
            takeover_ms: 40,
            complete: true,
            devices: vec![Delivery::of(eui(), st(9), &d)],
        }
        .sign(provider)
    }

    #[test]
    fn an_answered_receipt_reads_back_as_written() {
        let (p, c) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let r = receipt(&p, &c, &[10, 12]);
        let verdict = r.receipt.judge(&[(eui(), st(11))], &[]);
        let a = r.answer(&c, verdict, Some(3));
        let back: SignedReceipt =
            serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        back.verify(true).unwrap();
    }

    #[test]
    fn runs_count_and_chain_follow_the_frames() {
        let d = Delivery::of(eui(), st(9), &[st(10), st(11), st(12), st(14)]);
        assert_eq!(
            d.runs,
            [
                Run {
                    epoch: 0,
                    first: 10,
                    last: 12
                },
                Run {
                    epoch: 0,
                    first: 14,
                    last: 14
                }
            ]
        );
        assert_eq!(d.count, 4);
        assert_eq!(d.chain, chain(&d.dev_eui, frames(&d.runs)));
        assert_ne!(
            d.chain,
            Delivery::of(eui(), st(9), &[st(10), st(11), st(12)]).chain
        );
        d.check().unwrap();
    }

    #[test]
    fn signed_answered_and_verified_offline_and_tampering_is_caught() {
        let (p, c) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let r = receipt(&p, &c, &[10, 11, 12]);
        r.verify(false).unwrap();
        assert_eq!(r.verify(true), Err(ReceiptError::Unanswered));
        let verdict = r.receipt.judge(&[(eui(), st(10)), (eui(), st(12))], &[]);
        assert_eq!(verdict, Verdict::Accepted);
        let answered = r.clone().answer(&c, verdict, None);
        answered.verify(true).unwrap();

        // A count or a run changed: the provider's signature fails.
        let mut t = answered.clone();
        t.receipt.devices[0].count = 2;
        assert_eq!(t.verify(true), Err(ReceiptError::BadSignature("provider")));
        // The verdict changed: the customer's signature fails.
        let mut t = answered.clone();
        t.answer.as_mut().unwrap().verdict = Verdict::Disputed {
            unrecorded: Vec::new(),
            missing: vec![],
            repeated: vec![],
            reasons: vec!["x".into()],
        };
        assert_eq!(t.verify(true), Err(ReceiptError::BadSignature("customer")));
        // Answered by another key.
        let other = Identity::generate().unwrap();
        let t = r.answer(&other, Verdict::Accepted, None);
        assert_eq!(t.verify(true), Err(ReceiptError::BadSignature("customer")));
    }

    #[test]
    fn a_chain_that_does_not_match_its_runs_is_refused_even_when_signed() {
        let (p, c) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let mut r = receipt(&p, &c, &[10, 11]).receipt;
        r.devices[0].chain = chain(&r.devices[0].dev_eui, [Frame { epoch: 0, fcnt: 10 }]);
        let s = r.sign(&p);
        assert!(matches!(s.verify(false), Err(ReceiptError::Device { .. })));
        assert!(
            matches!(s.receipt.judge(&[], &[]), Verdict::Disputed { reasons, .. } if reasons.len() == 1)
        );
    }

    #[test]
    fn heard_frames_not_listed_are_missing_and_frames_before_the_takeover_repeated() {
        let (p, c) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        // Took over after 9; delivered 9 (the customer's already) to 11, not 12.
        let r = receipt(&p, &c, &[9, 10, 11]);
        let heard = [(eui(), st(8)), (eui(), st(10)), (eui(), st(12))];
        let f = |fcnt| ("70b3d57ed0000001".to_string(), Frame { epoch: 0, fcnt });
        assert_eq!(
            r.receipt.judge(&heard, &[]),
            Verdict::Disputed {
                unrecorded: Vec::new(),
                missing: vec![f(12)],
                repeated: vec![f(9)],
                reasons: vec![],
            }
        );
        // Another device's frames say nothing about this one.
        let other = Eui64::from_u64(2);
        assert_eq!(r.receipt.judge(&[(other, st(50))], &[]), {
            Verdict::Disputed {
                unrecorded: Vec::new(),
                missing: vec![],
                repeated: vec![f(9)],
                reasons: vec![],
            }
        });
    }

    #[test]
    fn frames_edgex_does_not_have_are_disputed_and_old_answers_still_read() {
        let (p, c) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let r = receipt(&p, &c, &[10, 11]);
        let gone = ("70b3d57ed0000001".to_string(), Frame { epoch: 0, fcnt: 11 });
        let verdict = r.receipt.judge(&[], std::slice::from_ref(&gone));
        assert_eq!(
            verdict,
            Verdict::Disputed {
                missing: vec![],
                repeated: vec![],
                unrecorded: vec![gone],
                reasons: vec![],
            }
        );
        let answered = r.clone().answer(&c, verdict, None);
        answered.verify(true).unwrap();
        assert!(answered.summary().contains("1 not in EdgeX"));
        // A dispute without the field (written before it existed) reads,
        // and an accepted answer does not carry it.
        let old: Verdict = serde_json::from_str(
            r#"{"verdict":"disputed","missing":[],"repeated":[],"reasons":["x"]}"#,
        )
        .unwrap();
        assert!(matches!(old, Verdict::Disputed { unrecorded, .. } if unrecorded.is_empty()));
        let json = serde_json::to_string(&Verdict::Accepted).unwrap();
        assert!(!json.contains("unrecorded"), "{json}");
    }
}
