//! Offers, demands, sealed bids and the auction.

use sqlx::Row;

use super::{demand_of, json, new_id, parse, refused, MarketError, Store};
use crate::market::auction::{self, Candidate};
use crate::market::types::*;

impl Store {
    pub async fn put_offer(
        &self,
        provider: &str,
        body: OfferBody,
        now_ms: u64,
    ) -> Result<Offer, MarketError> {
        if body.valid_until_ms <= now_ms {
            return Err(refused("the offer has expired already"));
        }
        if body.address.is_empty() {
            return Err(refused("an offer names its handover endpoint (address)"));
        }
        let mut tx = self.pool.begin().await?;
        let edge = Self::edge_in(&mut tx, provider).await?;
        let id = new_id();
        let places: Vec<Location> = if body.gateways.is_empty() {
            vec![body.location]
        } else {
            body.gateways.iter().map(|g| g.location).collect()
        };
        let lat = places.iter().map(|l| l.lat);
        let lon = places.iter().map(|l| l.lon);
        sqlx::query("INSERT INTO offers (id, provider, region, memory_mib, cpu_millis, price, valid_until_ms, lat_min, lat_max, lon_min, lon_max, body, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
            .bind(&id)
            .bind(provider)
            .bind(body.region.to_ascii_uppercase())
            .bind(body.resources.memory_mib as i64)
            .bind(body.resources.cpu_millis as i64)
            .bind(body.price as i64)
            .bind(body.valid_until_ms as i64)
            .bind(lat.clone().fold(f64::INFINITY, f64::min))
            .bind(lat.fold(f64::NEG_INFINITY, f64::max))
            .bind(lon.clone().fold(f64::INFINITY, f64::min))
            .bind(lon.fold(f64::NEG_INFINITY, f64::max))
            .bind(json(&body))
            .bind(now_ms as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Offer {
            id,
            provider: provider.to_string(),
            body,
            created_ms: now_ms,
            reputation: edge.reputation,
        })
    }

    /// The offers that match `demand` now, best score first by price and
    /// reputation (before any coverage is proven).
    pub async fn matching(
        &self,
        demand: &DemandBody,
        now_ms: u64,
    ) -> Result<Vec<Offer>, MarketError> {
        // The box around the demand that holds every point within its
        // distance (a degree of latitude is 111.2 km; of longitude, that
        // times the cosine of the latitude, least at the box's far edge).
        let here = demand.location;
        let dlat = demand.max_distance_km / 111.2 + 1e-6;
        let far_lat = (here.lat.abs() + dlat).min(89.9).to_radians();
        let dlon = (demand.max_distance_km / (111.2 * far_lat.cos())).min(360.0) + 1e-6;
        let rows = sqlx::query(
            "SELECT o.id, o.provider, o.body, o.created_ms, e.reputation FROM offers o JOIN edges e ON e.key = o.provider \
             WHERE o.region = $1 AND o.valid_until_ms > $2 AND o.memory_mib >= $3 AND o.cpu_millis >= $4 AND o.price <= $5 AND e.reputation >= $6 \
             AND o.lat_min <= $7 AND o.lat_max >= $8 AND o.lon_min <= $9 AND o.lon_max >= $10",
        )
        .bind(demand.region.to_ascii_uppercase())
        .bind(now_ms as i64)
        .bind(demand.resources.memory_mib as i64)
        .bind(demand.resources.cpu_millis as i64)
        .bind(demand.max_price as i64)
        .bind(demand.min_reputation)
        .bind(here.lat + dlat)
        .bind(here.lat - dlat)
        .bind(here.lon + dlon)
        .bind(here.lon - dlon)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let body: OfferBody = parse(r, "body")?;
            let reputation: f64 = r.try_get("reputation")?;
            if auction::matches(demand, &body, reputation, now_ms) {
                out.push(Offer {
                    id: r.try_get("id")?,
                    provider: r.try_get("provider")?,
                    created_ms: r.try_get::<i64, _>("created_ms")? as u64,
                    body,
                    reputation,
                });
            }
        }
        out.sort_by(|a, b| {
            a.body
                .price
                .cmp(&b.body.price)
                .then(b.reputation.total_cmp(&a.reputation))
        });
        Ok(out)
    }

    pub async fn put_demand(
        &self,
        customer: &str,
        body: DemandBody,
        now_ms: u64,
    ) -> Result<Demand, MarketError> {
        if body.dev_addrs.is_empty() {
            return Err(refused("a demand names its devices' DevAddrs"));
        }
        if body
            .dev_addrs
            .iter()
            .any(|a| crate::lorawan::DevAddr::from_hex(a).is_err())
        {
            return Err(refused("a DevAddr is 8 hex digits"));
        }
        let mut tx = self.pool.begin().await?;
        Self::ensure_edge(&mut tx, customer).await?;
        let id = new_id();
        sqlx::query("INSERT INTO demands (id, customer, region, body, state, winner, created_ms) VALUES ($1, $2, $3, $4, 'open', NULL, $5)")
            .bind(&id)
            .bind(customer)
            .bind(body.region.to_ascii_uppercase())
            .bind(json(&body))
            .bind(now_ms as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Demand {
            id,
            customer: customer.to_string(),
            body,
            state: "open".into(),
            winner: None,
            created_ms: now_ms,
        })
    }

    pub async fn demand(&self, id: &str) -> Result<Demand, MarketError> {
        let row = sqlx::query(
            "SELECT id, customer, body, state, winner, created_ms FROM demands WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| MarketError::NotFound(format!("no demand {id}")))?;
        demand_of(&row)
    }

    /// Open demands a provider's offers match (its DMU then decides).
    pub async fn open_demands_for(
        &self,
        provider: &str,
        now_ms: u64,
    ) -> Result<Vec<Demand>, MarketError> {
        let offers = sqlx::query("SELECT o.body, e.reputation FROM offers o JOIN edges e ON e.key = o.provider WHERE o.provider = $1 AND o.valid_until_ms > $2")
            .bind(provider)
            .bind(now_ms as i64)
            .fetch_all(&self.pool)
            .await?;
        let offers: Vec<(OfferBody, f64)> = offers
            .iter()
            .map(|r| Ok((parse(r, "body")?, r.try_get("reputation")?)))
            .collect::<Result<_, MarketError>>()?;
        let rows = sqlx::query("SELECT id, customer, body, state, winner, created_ms FROM demands WHERE state = 'open' ORDER BY created_ms")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let d = demand_of(r)?;
            if d.customer != provider
                && offers
                    .iter()
                    .any(|(o, rep)| auction::matches(&d.body, o, *rep, now_ms))
            {
                out.push(d);
            }
        }
        Ok(out)
    }

    pub async fn put_bid(
        &self,
        provider: &str,
        demand_id: &str,
        body: BidBody,
        now_ms: u64,
    ) -> Result<Bid, MarketError> {
        let d = self.demand(demand_id).await?;
        if d.state != "open" {
            return Err(MarketError::Conflict(format!(
                "demand {demand_id} is {}",
                d.state
            )));
        }
        let row = sqlx::query("SELECT o.provider, o.body, e.reputation FROM offers o JOIN edges e ON e.key = o.provider WHERE o.id = $1")
            .bind(&body.offer_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| MarketError::NotFound(format!("no offer {}", body.offer_id)))?;
        let owner: String = row.try_get("provider")?;
        if owner != provider {
            return Err(refused("the offer is another edge's"));
        }
        let offer: OfferBody = parse(&row, "body")?;
        let reputation: f64 = row.try_get("reputation")?;
        if !auction::matches(&d.body, &offer, reputation, now_ms) {
            return Err(refused("the offer does not match the demand"));
        }
        if body.price > d.body.max_price {
            return Err(refused("the bid is above the demand's price"));
        }
        if body.heard.len() > 64 * d.body.dev_addrs.len().max(1) {
            return Err(refused("too many heard frames for the demand's devices"));
        }
        let id = new_id();
        let r = sqlx::query("INSERT INTO bids (id, demand_id, provider, offer_id, body, created_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
            .bind(&id)
            .bind(demand_id)
            .bind(provider)
            .bind(&body.offer_id)
            .bind(json(&body))
            .bind(now_ms as i64)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(MarketError::Conflict(
                "one sealed bid per provider and demand".into(),
            ));
        }
        Ok(Bid {
            id,
            demand_id: demand_id.to_string(),
            provider: provider.to_string(),
            body,
            offer,
            reputation,
            created_ms: now_ms,
        })
    }

    /// The bids on a demand: the customer's to see, nobody else's (sealed).
    pub async fn bids(&self, caller: &str, demand_id: &str) -> Result<Vec<Bid>, MarketError> {
        let d = self.demand(demand_id).await?;
        if d.customer != caller {
            return Err(refused(
                "bids are sealed: only the demand's customer sees them",
            ));
        }
        self.bids_of(demand_id).await
    }

    pub(super) async fn bids_of(&self, demand_id: &str) -> Result<Vec<Bid>, MarketError> {
        let rows = sqlx::query("SELECT b.id, b.provider, b.body, b.created_ms, o.body AS offer, e.reputation FROM bids b JOIN offers o ON o.id = b.offer_id JOIN edges e ON e.key = b.provider WHERE b.demand_id = $1 ORDER BY b.created_ms")
            .bind(demand_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Bid {
                    id: r.try_get("id")?,
                    demand_id: demand_id.to_string(),
                    provider: r.try_get("provider")?,
                    body: parse(r, "body")?,
                    offer: parse(r, "offer")?,
                    reputation: r.try_get("reputation")?,
                    created_ms: r.try_get::<i64, _>("created_ms")? as u64,
                })
            })
            .collect()
    }

    /// Close a demand's auction with what the customer proved of each bid.
    pub async fn award(
        &self,
        caller: &str,
        demand_id: &str,
        req: AwardRequest,
        now_ms: u64,
    ) -> Result<Bid, MarketError> {
        let d = self.demand(demand_id).await?;
        if d.customer != caller {
            return Err(refused("only the demand's customer closes its auction"));
        }
        if d.state != "open" {
            return Err(MarketError::Conflict(format!(
                "demand {demand_id} is {}",
                d.state
            )));
        }
        let bids = self.bids_of(demand_id).await?;
        let candidates: Vec<Candidate> = bids
            .iter()
            .filter_map(|b| {
                let p = req.proven.iter().find(|p| p.bid_id == b.id)?;
                let proven = Proven {
                    coverage: p.coverage,
                    margin_db: p.margin_db,
                };
                Some(Candidate {
                    bid_id: b.id.clone(),
                    price: b.body.price,
                    reputation: b.reputation,
                    distance_km: auction::distance_km(&b.offer, &d.body.location),
                    created_ms: b.created_ms,
                    proven,
                })
            })
            .collect();
        let won = auction::award(&d.body, &candidates)
            .ok_or_else(|| refused("no bid passes the demand's thresholds"))?;
        let bid = bids
            .into_iter()
            .find(|b| b.id == won.bid_id)
            .expect("a candidate is a bid");
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE demands SET state = 'awarded', winner = $1 WHERE id = $2 AND state = 'open'",
        )
        .bind(&bid.id)
        .bind(demand_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Err(MarketError::Conflict(format!(
                "demand {demand_id} was closed meanwhile"
            )));
        }
        let record = serde_json::json!({
            "demandId": demand_id, "customer": caller, "bidId": bid.id, "provider": bid.provider,
            "price": bid.body.price, "proven": won.proven, "score": auction::score(&d.body, won),
            "candidates": candidates.len(),
        });
        self.append(&mut tx, now_ms, "award", record.to_string())
            .await?;
        tx.commit().await?;
        Ok(bid)
    }
}
