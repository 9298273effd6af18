//! A provider on the market: its offer stands (posted again before it
//! lapses), and it bids on the open demands its offer matches when its
//! rules say so, with the frames its gateways heard of the demand's
//! DevAddrs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::config::{Config, OfferConfig};
use crate::market::client::{now_ms, MarketClient};
use crate::market::coverage::HeardElsewhere;
use crate::market::dmu::ProviderRules;
use crate::market::types::{BidBody, Location, OfferBody, Resources};

pub struct ProviderEdge {
    pub config: Arc<Config>,
    pub offer: OfferConfig,
    pub rules: ProviderRules,
    pub client: MarketClient,
    pub heard: Arc<Mutex<HeardElsewhere>>,
    pub listening: std::net::SocketAddr,
}

impl ProviderEdge {
    fn body(&self) -> OfferBody {
        let m = &self.config.market;
        let here = Location {
            lat: m.lat,
            lon: m.lon,
        };
        let o = &self.offer;
        OfferBody {
            region: super::region(&self.config),
            location: here,
            gateways: o
                .gateways
                .iter()
                .map(|g| crate::market::types::Gateway {
                    eui: g.eui.clone(),
                    location: Location {
                        lat: g.lat,
                        lon: g.lon,
                    },
                })
                .collect(),
            resources: Resources {
                memory_mib: o.memory_mib,
                cpu_millis: o.cpu_millis,
                storage_mib: o.storage_mib,
                bandwidth_kbps: o.bandwidth_kbps,
                uptime_permille: o.uptime_permille,
            },
            price: o.price,
            stake: o.stake,
            address: if o.address.is_empty() {
                self.listening.to_string()
            } else {
                o.address.clone()
            },
            valid_until_ms: now_ms() + o.valid_for.as_millis() as u64,
        }
    }

    pub async fn run(self) {
        let mut offer: Option<(String, OfferBody)> = None;
        let mut bid_on = HashSet::new();
        let mut submitted = HashSet::new();
        loop {
            let renew = offer.as_ref().is_none_or(|(_, b)| {
                b.valid_until_ms.saturating_sub(now_ms())
                    < self.offer.valid_for.as_millis() as u64 / 2
            });
            if renew {
                let body = self.body();
                match self.client.offer(&body).await {
                    Ok(o) => {
                        tracing::info!(offer = %o.id, price = body.price, stake = body.stake, "offer posted on the market");
                        offer = Some((o.id, body));
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot post the offer"),
                }
            }
            if let Some((id, body)) = &offer {
                if let Err(e) = self.bid(id, body, &mut bid_on).await {
                    tracing::warn!(error = %e, "cannot read the market's open demands");
                }
            }
            self.submit_receipts(&mut submitted).await;
            tokio::time::sleep(self.config.market.poll_every).await;
        }
    }

    /// The receipts its customers answered (kept at their `Settle`) go to
    /// the arbitrator too: both parties submit, the market settles once.
    /// A contract the market does not list (one offered by hand) is left
    /// alone.
    async fn submit_receipts(&self, submitted: &mut HashSet<(String, u64)>) {
        let dir = self
            .config
            .service
            .data_dir
            .join(crate::handover::receipt::PROVIDER_DIR);
        let Ok(kept) = crate::handover::receipt::load_dir(&dir) else {
            return;
        };
        for r in kept.into_iter().filter(|r| r.answer.is_some()) {
            let key = (r.receipt.contract_id.clone(), r.receipt.epoch);
            if submitted.contains(&key) {
                continue;
            }
            match self.client.settle(&key.0, &r).await {
                Ok(s) => {
                    tracing::info!(contract = %s.contract_id, epoch = s.epoch, outcome = %s.outcome, "the market settled the holding");
                    submitted.insert(key);
                }
                Err(e) if e.status().is_some_and(|s| s.is_client_error()) => {
                    // Not the market's, or settled on an earlier holding.
                    tracing::debug!(contract = %key.0, error = %e, "receipt not for the market");
                    submitted.insert(key);
                }
                Err(e) => {
                    tracing::warn!(contract = %key.0, error = %e, "cannot submit the receipt; trying again")
                }
            }
        }
    }

    async fn bid(
        &self,
        offer_id: &str,
        offer: &OfferBody,
        bid_on: &mut HashSet<String>,
    ) -> Result<(), crate::market::client::ClientError> {
        for d in self.client.open_demands().await? {
            if bid_on.contains(&d.id) {
                continue;
            }
            let (heard_of, sample) = {
                let h = self.heard.lock().expect("heard elsewhere");
                (h.heard_of(&d.body.dev_addrs), h.sample(&d.body.dev_addrs))
            };
            let Some(price) = self.rules.bid_price(&d.body, offer, heard_of) else {
                continue;
            };
            let body = BidBody {
                offer_id: offer_id.to_string(),
                price,
                heard: sample,
            };
            match self.client.bid(&d.id, &body).await {
                Ok(b) => {
                    tracing::info!(demand = %d.id, bid = %b.id, price, heard = heard_of, devices = d.body.dev_addrs.len(), "bid on a demand");
                    bid_on.insert(d.id);
                }
                Err(e) if e.status() == Some(hyper::StatusCode::CONFLICT) => {
                    bid_on.insert(d.id);
                }
                Err(e) => tracing::warn!(demand = %d.id, error = %e, "bid refused"),
            }
        }
        Ok(())
    }
}
