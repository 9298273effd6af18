//! Matching and the auction: pure functions of what the market holds.
//!
//! **Matching.** An offer matches a demand when it is still valid, in the
//! demand's region, within its distance (from the offer's nearest gateway,
//! or the edge when it lists none), gives at least the resources the
//! customer's image needs, asks at most the demand's price and comes from a
//! provider of at least its reputation.
//!
//! **The auction** (sealed bids, one round). Providers bid on a demand
//! without seeing each other's bids. The customer checks each bid's heard
//! frames under its own keys and tells the market what each proved (the
//! share of its devices heard, the best signal margin); bids it leaves out
//! failed its rules. Of the bids that pass the demand's thresholds (price,
//! reputation, distance, proven coverage), the market awards the one with
//! the highest score under the customer's weights:
//!
//! ```text
//! score = w.price      × (1 − price / maxPrice)
//!       + w.reputation × reputation
//!       + w.distance   × (1 − km / maxDistanceKm)
//!       + w.coverage   × (coverage + 0.1 × min(marginDb, 20) / 20)
//! ```
//!
//! Ties go to the lower price, then the earlier bid.

use super::types::{DemandBody, Location, OfferBody, Proven};

/// Distance from `to` to the nearest of the offer's gateways (or its edge).
pub fn distance_km(offer: &OfferBody, to: &Location) -> f64 {
    offer
        .gateways
        .iter()
        .map(|g| g.location.km_to(to))
        .fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.min(d))))
        .unwrap_or_else(|| offer.location.km_to(to))
}

/// Whether `offer` (from a provider of `reputation`) matches `demand`.
pub fn matches(demand: &DemandBody, offer: &OfferBody, reputation: f64, now_ms: u64) -> bool {
    offer.valid_until_ms > now_ms
        && offer.region.eq_ignore_ascii_case(&demand.region)
        && offer.resources.memory_mib >= demand.resources.memory_mib
        && offer.resources.cpu_millis >= demand.resources.cpu_millis
        && offer.price <= demand.max_price
        && reputation >= demand.min_reputation
        && distance_km(offer, &demand.location) <= demand.max_distance_km
}

/// One bid as the auction weighs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub bid_id: String,
    pub price: u64,
    pub reputation: f64,
    pub distance_km: f64,
    pub created_ms: u64,
    pub proven: Proven,
}

/// Whether `c` passes the demand's thresholds.
pub fn eligible(d: &DemandBody, c: &Candidate) -> bool {
    c.price <= d.max_price
        && c.reputation >= d.min_reputation
        && c.distance_km <= d.max_distance_km
        && c.proven.coverage >= d.min_coverage
        && c.proven.coverage > 0.0
}

/// `c`'s score under the demand's weights (see the module doc).
pub fn score(d: &DemandBody, c: &Candidate) -> f64 {
    let w = d.weights;
    let ratio = |x: f64, max: f64| if max > 0.0 { (x / max).min(1.0) } else { 1.0 };
    w.price * (1.0 - ratio(c.price as f64, d.max_price as f64))
        + w.reputation * c.reputation
        + w.distance * (1.0 - ratio(c.distance_km, d.max_distance_km))
        + w.coverage * (c.proven.coverage + 0.1 * c.proven.margin_db.clamp(0.0, 20.0) / 20.0)
}

/// The winning bid, if any passes.
pub fn award<'a>(d: &DemandBody, candidates: &'a [Candidate]) -> Option<&'a Candidate> {
    candidates.iter().filter(|c| eligible(d, c)).max_by(|a, b| {
        score(d, a)
            .total_cmp(&score(d, b))
            .then(b.price.cmp(&a.price))
            .then(b.created_ms.cmp(&a.created_ms))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::types::{Gateway, Resources, Weights};

    fn demand() -> DemandBody {
        DemandBody {
            region: "EU868".into(),
            location: Location {
                lat: 52.0,
                lon: 5.0,
            },
            dev_addrs: vec!["26011234".into()],
            resources: Resources {
                memory_mib: 64,
                cpu_millis: 250,
                ..Default::default()
            },
            max_price: 100,
            min_reputation: 0.3,
            max_distance_km: 20.0,
            min_coverage: 0.5,
            max_takeover_ms: 2000,
            weights: Weights::default(),
        }
    }

    fn offer(lat: f64, price: u64) -> OfferBody {
        OfferBody {
            region: "eu868".into(),
            location: Location {
                lat: 60.0,
                lon: 5.0,
            },
            gateways: vec![Gateway {
                eui: "b827ebfffe000001".into(),
                location: Location { lat, lon: 5.0 },
            }],
            resources: Resources {
                memory_mib: 128,
                cpu_millis: 500,
                ..Default::default()
            },
            price,
            stake: 50,
            address: "127.0.0.1:1".into(),
            valid_until_ms: 2_000,
        }
    }

    #[test]
    fn matching_takes_the_nearest_gateway_and_every_threshold() {
        let d = demand();
        assert!(matches(&d, &offer(52.05, 80), 0.5, 1_000));
        assert!(!matches(&d, &offer(52.05, 80), 0.5, 2_000), "expired");
        assert!(!matches(&d, &offer(52.05, 180), 0.5, 1_000), "price");
        assert!(!matches(&d, &offer(52.05, 80), 0.1, 1_000), "reputation");
        assert!(!matches(&d, &offer(53.0, 80), 0.5, 1_000), "111 km away");
        let mut small = offer(52.05, 80);
        small.resources.memory_mib = 32;
        assert!(!matches(&d, &small, 0.5, 1_000), "memory");
        let mut elsewhere = offer(52.05, 80);
        elsewhere.region = "US915".into();
        assert!(!matches(&d, &elsewhere, 0.5, 1_000), "region");
    }

    fn cand(id: &str, price: u64, coverage: f64, at: u64) -> Candidate {
        Candidate {
            bid_id: id.into(),
            price,
            reputation: 0.5,
            distance_km: 5.0,
            created_ms: at,
            proven: Proven {
                coverage,
                margin_db: 10.0,
            },
        }
    }

    #[test]
    fn proven_coverage_outweighs_a_lower_price_and_unproven_bids_never_win() {
        let d = demand();
        let bids = [
            cand("cheap-unproven", 10, 0.0, 1),
            cand("proven", 90, 1.0, 2),
            cand("half", 60, 0.5, 3),
        ];
        assert_eq!(award(&d, &bids).unwrap().bid_id, "proven");
        assert_eq!(
            award(&d, &bids[..1]),
            None,
            "nothing proven, nothing awarded"
        );
        // Equal in all but price: the cheaper; then the earlier.
        let tie = [cand("a", 50, 1.0, 5), cand("b", 40, 1.0, 6)];
        assert_eq!(award(&d, &tie).unwrap().bid_id, "b");
        let same = [cand("late", 50, 1.0, 9), cand("early", 50, 1.0, 1)];
        assert_eq!(award(&d, &same).unwrap().bid_id, "early");
    }
}
