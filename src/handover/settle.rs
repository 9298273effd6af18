//! The customer's side of a receipt: when a release hands the devices back
//! with the provider's signed receipt, check it against what this edge
//! knows, sign the verdict, keep it and send it back (`Settle`).

use std::path::{Path, PathBuf};

use tonic::transport::Channel;

use super::contract::SignedContract;
use super::identity::Identity;
use super::pb::handover_client::HandoverClient;
use super::pb::SettleRequest;
use super::receipt::{Detected, SignedReceipt, Verdict};
use crate::lorawan::{Eui64, FcntState};

/// Why a receipt could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("the receipt does not read: {0}")]
    Unreadable(serde_json::Error),
    #[error("the receipt is not this contract's provider's: {0}")]
    Refused(String),
    #[error("keeping the receipt in {path}: {source}")]
    Keep {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the provider did not take the answer: {0}")]
    Send(tonic::Status),
}

/// What a customer knows when it answers a receipt.
pub struct Known<'a> {
    /// Frames its own gateways heard while the provider held the devices.
    pub heard: &'a [(Eui64, FcntState)],
    /// When it stopped cleanly (its goodbye), Unix milliseconds.
    pub left_ms: Option<u64>,
    /// EdgeX's core-data, to ask for the listed events (when this edge
    /// delivers to EdgeX).
    pub records: Option<&'a super::records::EdgexRecords>,
}

/// Check, answer, keep and send back the receipt `json` of `signed`.
/// Returns the answered receipt (kept under `data_dir`).
pub async fn settle(
    client: &mut HandoverClient<Channel>,
    me: &Identity,
    signed: &SignedContract,
    data_dir: &Path,
    json: &str,
    known: Known<'_>,
) -> Result<SignedReceipt, SettleError> {
    let r: SignedReceipt = serde_json::from_str(json).map_err(SettleError::Unreadable)?;
    let c = &signed.contract;
    if r.receipt.contract_id != c.id
        || r.receipt.provider_key != c.provider.public_key
        || r.receipt.customer_key != me.public().to_hex()
    {
        return Err(SettleError::Refused(
            "it names another contract or other keys".into(),
        ));
    }
    // A signature that fails is refused, not disputed: it proves nothing.
    if let Err(e) = r.verify(false) {
        if !matches!(e, super::receipt::ReceiptError::Device { .. }) {
            return Err(SettleError::Refused(e.to_string()));
        }
    }
    let unrecorded = match known.records {
        Some(records) => match records.check(&r.receipt.devices).await {
            Ok(checked) => {
                tracing::info!(contract = %c.id, asked = checked.asked, listed = checked.listed, unrecorded = checked.unrecorded.len(), "receipt checked against EdgeX's records");
                checked.unrecorded
            }
            Err(e) => {
                tracing::warn!(contract = %c.id, error = %e, "EdgeX's records could not be read: the receipt is judged without them");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let verdict = r.receipt.judge(known.heard, &unrecorded);
    let customer_ms = match (r.receipt.detected, known.left_ms) {
        (Detected::Leaving, Some(left)) => Some(r.receipt.from_ms.saturating_sub(left)),
        _ => None,
    };
    let answered = r.answer(me, verdict, customer_ms);
    let dir = data_dir.join(super::receipt::CUSTOMER_DIR);
    super::receipt::save(&dir, &answered).map_err(|source| SettleError::Keep {
        path: dir.clone(),
        source,
    })?;
    match &answered.answer.as_ref().map(|a| &a.verdict) {
        Some(Verdict::Accepted) => {
            tracing::info!(contract = %c.id, epoch = answered.receipt.epoch, frames = answered.receipt.devices.iter().map(|d| d.count).sum::<u64>(), "receipt checked and counter-signed")
        }
        Some(Verdict::Disputed {
            missing,
            repeated,
            unrecorded,
            ..
        }) => {
            tracing::warn!(contract = %c.id, epoch = answered.receipt.epoch, missing = missing.len(), repeated = repeated.len(), unrecorded = unrecorded.len(), "receipt disputed")
        }
        None => {}
    }
    client
        .settle(SettleRequest {
            contract_id: c.id.clone(),
            receipt_json: serde_json::to_string(&answered).expect("a receipt serialises"),
        })
        .await
        .map_err(SettleError::Send)?;
    Ok(answered)
}
