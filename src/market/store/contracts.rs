//! Contracts with their stakes in escrow, and the arbitrator.

use sqlx::Row;

use super::{json, parse, refused, MarketError, Store};
use crate::handover::contract::SignedContract;
use crate::handover::receipt::{SignedReceipt, Verdict};
use crate::market::types::*;

impl Store {
    /// The awarded pair's signed handover contract: checked, countersigned,
    /// listed as active, with both stakes in escrow.
    pub async fn put_contract(
        &self,
        caller: &str,
        demand_id: &str,
        signed: SignedContract,
        now_ms: u64,
    ) -> Result<MarketContract, MarketError> {
        let d = self.demand(demand_id).await?;
        let winner = d
            .winner
            .clone()
            .filter(|_| d.state == "awarded")
            .ok_or_else(|| {
                MarketError::Conflict(format!("demand {demand_id} is {}, not awarded", d.state))
            })?;
        let bid = self
            .bids_of(demand_id)
            .await?
            .into_iter()
            .find(|b| b.id == winner)
            .ok_or_else(|| MarketError::NotFound(format!("no bid {winner}")))?;
        let canonical = signed.contract.canonical_bytes();
        let c = signed.contract.clone();
        if caller != d.customer && caller != bid.provider {
            return Err(refused("only the awarded pair lists their contract"));
        }
        if c.customer.public_key != d.customer || c.provider.public_key != bid.provider {
            return Err(refused("the contract's parties are not the awarded pair"));
        }
        signed
            .verify(now_ms / 1000)
            .map_err(|e| refused(format!("the contract: {e}")))?;
        let price = bid.body.price;
        let stake = bid.offer.stake;
        let mut tx = self.pool.begin().await?;
        let mut customer = Self::edge_in(&mut tx, &d.customer).await?;
        let mut provider = Self::edge_in(&mut tx, &bid.provider).await?;
        if customer.balance < price as i64 {
            return Err(refused("the customer's balance does not cover the price"));
        }
        if provider.balance < stake as i64 {
            return Err(refused("the provider's balance does not cover its stake"));
        }
        customer.balance -= price as i64;
        customer.held += price as i64;
        provider.balance -= stake as i64;
        provider.held += stake as i64;
        Self::put_edge(&mut tx, &customer).await?;
        Self::put_edge(&mut tx, &provider).await?;
        let market_signature = hex::encode(self.market.sign(&canonical));
        let mc = MarketContract {
            id: c.id.clone(),
            demand_id: demand_id.to_string(),
            bid_id: bid.id.clone(),
            customer: d.customer.clone(),
            provider: bid.provider.clone(),
            price,
            customer_stake: price,
            provider_stake: stake,
            max_takeover_ms: d.body.max_takeover_ms,
            state: "active".into(),
            signed,
            market_signature,
        };
        let r = sqlx::query("INSERT INTO contracts (id, body, state) VALUES ($1, $2, 'active') ON CONFLICT DO NOTHING")
            .bind(&mc.id)
            .bind(json(&mc))
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(MarketError::Conflict(format!(
                "contract {} is listed already",
                mc.id
            )));
        }
        sqlx::query("UPDATE demands SET state = 'contracted' WHERE id = $1")
            .bind(demand_id)
            .execute(&mut *tx)
            .await?;
        let record = serde_json::json!({
            "contractId": mc.id, "demandId": demand_id, "customer": mc.customer, "provider": mc.provider,
            "price": price, "held": {"customer": price, "provider": stake},
            "contractDigest": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&canonical)),
            "marketSignature": mc.market_signature,
        });
        self.append(&mut tx, now_ms, "contract", record.to_string())
            .await?;
        tx.commit().await?;
        Ok(mc)
    }

    pub async fn contract(&self, id: &str) -> Result<MarketContract, MarketError> {
        let row = sqlx::query("SELECT body, state FROM contracts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| MarketError::NotFound(format!("no contract {id}")))?;
        let mut c: MarketContract = parse(&row, "body")?;
        c.state = row.try_get("state")?;
        Ok(c)
    }

    /// The arbitrator: settle a holding from its answered receipt (see
    /// [`judge`]), move the stakes and the reputations.
    pub async fn settle(
        &self,
        caller: &str,
        contract_id: &str,
        receipt: SignedReceipt,
        now_ms: u64,
    ) -> Result<Settlement, MarketError> {
        let c = self.contract(contract_id).await?;
        if caller != c.customer && caller != c.provider {
            return Err(refused("only the contract's parties submit its receipts"));
        }
        let r = &receipt.receipt;
        if r.contract_id != c.id || r.customer_key != c.customer || r.provider_key != c.provider {
            return Err(refused("the receipt is not this contract's"));
        }
        receipt
            .verify(true)
            .map_err(|e| refused(format!("the receipt: {e}")))?;
        if c.state != "active" {
            // Both parties submit: the second finds it settled.
            let row =
                sqlx::query("SELECT body FROM settlements WHERE contract_id = $1 AND epoch = $2")
                    .bind(contract_id)
                    .bind(r.epoch as i64)
                    .fetch_optional(&self.pool)
                    .await?;
            return match row {
                Some(row) => parse(&row, "body"),
                None => Err(MarketError::Conflict(format!(
                    "contract {} is {}",
                    c.id, c.state
                ))),
            };
        }
        let (outcome, reasons) = judge(&receipt, c.max_takeover_ms);
        let honoured = outcome == "honoured";
        let mut tx = self.pool.begin().await?;
        let mut customer = Self::edge_in(&mut tx, &c.customer).await?;
        let mut provider = Self::edge_in(&mut tx, &c.provider).await?;
        let (price, stake) = (c.customer_stake as i64, c.provider_stake as i64);
        customer.held -= price;
        provider.held -= stake;
        if honoured {
            // The price to the provider, its stake back.
            provider.balance += price + stake;
            provider.honoured += 1;
            provider.reputation += (1.0 - provider.reputation) * 0.1;
        } else {
            // The customer's payment back, and the provider's stake.
            customer.balance += price + stake;
            provider.breached += 1;
            provider.reputation *= 0.7;
        }
        Self::put_edge(&mut tx, &customer).await?;
        Self::put_edge(&mut tx, &provider).await?;
        let state = if honoured { "honoured" } else { "breached" };
        let r2 = sqlx::query("UPDATE contracts SET state = $1 WHERE id = $2 AND state = 'active'")
            .bind(state)
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        if r2.rows_affected() == 0 {
            return Err(MarketError::Conflict(format!(
                "contract {} was settled meanwhile",
                c.id
            )));
        }
        let s = Settlement {
            contract_id: c.id.clone(),
            epoch: r.epoch,
            outcome: outcome.to_string(),
            reasons,
            customer,
            provider,
        };
        sqlx::query("INSERT INTO settlements (contract_id, epoch, body) VALUES ($1, $2, $3)")
            .bind(&c.id)
            .bind(r.epoch as i64)
            .bind(json(&s))
            .execute(&mut *tx)
            .await?;
        let record = serde_json::json!({
            "settlement": s,
            "receiptDigest": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(json(&receipt).as_bytes())),
        });
        self.append(&mut tx, now_ms, "settlement", record.to_string())
            .await?;
        tx.commit().await?;
        Ok(s)
    }
}

/// Honoured or breached, by the contract's terms: the customer accepted
/// the receipt (no frame missing, repeated or absent from EdgeX), and the
/// provider took over within the demand's `maxTakeoverMs`.
pub fn judge(receipt: &SignedReceipt, max_takeover_ms: u64) -> (&'static str, Vec<String>) {
    let mut reasons = Vec::new();
    match receipt.answer.as_ref().map(|a| &a.verdict) {
        Some(Verdict::Accepted) => {}
        Some(Verdict::Disputed {
            missing,
            repeated,
            unrecorded,
            reasons: why,
        }) => {
            reasons.push(format!(
                "disputed: {} frames missing, {} repeated, {} not in EdgeX",
                missing.len(),
                repeated.len(),
                unrecorded.len()
            ));
            reasons.extend(why.iter().cloned());
        }
        None => reasons.push("the customer has not answered the receipt".into()),
    }
    if receipt.receipt.takeover_ms > max_takeover_ms {
        reasons.push(format!(
            "took over in {} ms (the contract allows {max_takeover_ms})",
            receipt.receipt.takeover_ms
        ));
    }
    (
        if reasons.is_empty() {
            "honoured"
        } else {
            "breached"
        },
        reasons,
    )
}
