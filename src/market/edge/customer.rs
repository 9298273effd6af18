//! A customer on the market, when no provider is configured: it names its
//! devices' DevAddrs in a demand, waits for bids, checks each bid's heard
//! frames under its own keys (in its pipeline: no key leaves), tells the
//! market what each proved, and contracts with the winner: the handover
//! offer and image go to the winner as `handover offer` sends them, and
//! the market countersigns. The answered receipt of a holding (kept by the
//! handover at hand-back) goes to the market's arbitrator; once the market
//! has settled the contract, the handover contract is revoked and the next
//! round buys cover again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::control::mailbox::Control;
use crate::market::client::MarketClient;
use crate::market::dmu::CustomerRules;
use crate::market::state::State;
use crate::market::types::{AwardRequest, Location, ProvenBid};

pub struct CustomerEdge {
    pub config: Arc<Config>,
    pub rules: CustomerRules,
    pub client: MarketClient,
    pub control: tokio::sync::mpsc::UnboundedSender<Control>,
}

/// The answered receipt of a holding under `contract`, if one was kept.
fn answered_receipt(
    data_dir: &Path,
    contract: &str,
) -> anyhow::Result<Option<crate::handover::receipt::SignedReceipt>> {
    let dir = data_dir.join(crate::handover::receipt::CUSTOMER_DIR);
    if !dir.exists() {
        return Ok(None);
    }
    Ok(crate::handover::receipt::load_dir(&dir)?
        .into_iter()
        .filter(|r| r.receipt.contract_id == contract && r.answer.is_some())
        .min_by_key(|r| r.receipt.epoch))
}

/// What one round came to.
enum Round {
    /// Covered (or nothing to do): look again later.
    Wait,
    /// Try again soon.
    Retry,
}

impl CustomerEdge {
    pub async fn run(self) {
        loop {
            let wait = match self.round().await {
                Ok(Round::Wait) => self.config.market.poll_every,
                Ok(Round::Retry) => self.config.market.poll_every * 2,
                Err(e) => {
                    tracing::warn!(error = %e, "market round failed; trying again");
                    self.config.market.poll_every * 5
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn round(&self) -> anyhow::Result<Round> {
        let dir = &self.config.service.data_dir;
        if let Some(state) = State::load(dir) {
            let mut c = self.client.get_contract(&state.contract_id).await?;
            if c.state == "active" {
                // A holding ended: its answered receipt (kept by the
                // handover at hand-back) goes to the arbitrator.
                let Some(receipt) = answered_receipt(dir, &c.id)? else {
                    return Ok(Round::Wait);
                };
                let s = self.client.settle(&c.id, &receipt).await?;
                tracing::info!(contract = %s.contract_id, epoch = s.epoch, outcome = %s.outcome, reasons = ?s.reasons, provider_reputation = s.provider.reputation, "the market settled the holding");
                c.state = s.outcome;
            }
            // Settled: this cover has ended. The handover contract goes
            // (revoked, signed by both; withdrawn here if the provider
            // cannot be reached), and a new round buys cover again.
            tracing::info!(contract = %c.id, outcome = %c.state, "the market contract is settled: buying cover again");
            if let Err(e) = crate::handover::operator::revoke(&self.config, &c.id).await {
                tracing::warn!(contract = %c.id, error = %e, "revocation failed; withdrawing the contract here");
                let _ = std::fs::remove_file(dir.join(format!("handover/customer/{}.json", c.id)));
            }
            State::clear(dir);
        }
        let contracts = crate::handover::customer::contracts(dir)?;
        if !crate::handover::customers::in_force(contracts).is_empty() {
            // A provider configured by hand: the market is not needed.
            return Ok(Round::Wait);
        }
        let addrs = Control::ask(&self.control, |reply| Control::Addresses { reply }).await?;
        if addrs.is_empty() {
            return Ok(Round::Retry);
        }
        let m = &self.config.market;
        let dev_addrs: Vec<String> = addrs.iter().map(|(_, a)| a.to_string()).collect();
        let demand = self.rules.demand(
            &super::region(&self.config),
            Location {
                lat: m.lat,
                lon: m.lon,
            },
            dev_addrs,
        );
        let (posted, offers) = self.client.demand(&demand).await?;
        tracing::info!(demand = %posted.id, devices = addrs.len(), offers = offers.len(), "demand posted on the market");
        tokio::time::sleep(m.bid_window).await;
        let bids = self.client.bids(&posted.id).await?;
        let mut proven = Vec::new();
        for b in &bids {
            let frames: Vec<Vec<u8>> = b
                .body
                .heard
                .iter()
                .map(|f| hex::decode(&f.phy).unwrap_or_default())
                .collect();
            let verified =
                Control::ask(&self.control, |reply| Control::ProveHeard { frames, reply }).await?;
            let p = crate::market::coverage::proven(&b.body.heard, &verified, addrs.len());
            tracing::info!(bid = %b.id, provider = %b.provider, price = b.body.price, frames = b.body.heard.len(), coverage = p.coverage, margin_db = p.margin_db, "bid checked under this edge's keys");
            if p.coverage >= self.rules.min_coverage && p.coverage > 0.0 {
                proven.push(ProvenBid {
                    bid_id: b.id.clone(),
                    coverage: p.coverage,
                    margin_db: p.margin_db,
                });
            }
        }
        if proven.is_empty() {
            tracing::warn!(demand = %posted.id, bids = bids.len(), "no bid proved it hears this edge's devices");
            return Ok(Round::Retry);
        }
        let won = self
            .client
            .award(&posted.id, &AwardRequest { proven })
            .await?;
        let id = format!("market-{}", &posted.id[..8]);
        tracing::info!(demand = %posted.id, bid = %won.id, provider = %won.provider, address = %won.offer.address, "auction won: contracting");
        let args = crate::handover::operator::OfferArgs {
            to: won.offer.address.clone(),
            provider_key: won.provider.clone(),
            provider_id: "market-provider".into(),
            id: id.clone(),
            customer_id: self.config.service.name.clone(),
            devices: Vec::new(),
            image: None,
            heartbeat: Duration::from_millis(250),
            at_expiry: Default::default(),
            rank: 0,
            missed: 4,
            memory_mib: self.rules.memory_mib,
            cpu_millis: self.rules.cpu_millis as u32,
            valid_for: Duration::from_secs(30 * 24 * 3600),
        };
        let signed = crate::handover::operator::offer(&self.config, args).await?;
        let mc = self.client.contract(&posted.id, &signed).await?;
        State {
            contract_id: mc.id.clone(),
            demand_id: posted.id,
        }
        .save(dir)?;
        tracing::info!(contract = %mc.id, price = mc.price, provider_stake = mc.provider_stake, "market contract active: countersigned, stakes held");
        Ok(Round::Wait)
    }
}
