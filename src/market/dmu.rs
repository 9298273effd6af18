//! An edge's Decision Making Unit (seed §3.11.2): the rules, in a YAML
//! file (`Market.Rules`), by which it bids on demands as a provider and
//! accepts offers as a customer. Unknown keys are refused.
//!
//! The file's keys and defaults: `docs/market.md`.

use serde::{Deserialize, Serialize};

use super::types::{DemandBody, Location, OfferBody, Resources, Weights};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct Rules {
    pub customer: CustomerRules,
    pub provider: ProviderRules,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct CustomerRules {
    pub max_price: u64,
    pub min_reputation: f64,
    pub min_coverage: f64,
    pub max_distance_km: f64,
    pub max_takeover_ms: u64,
    pub memory_mib: u64,
    pub cpu_millis: u64,
    pub weights: DmuWeights,
}

impl Default for CustomerRules {
    fn default() -> Self {
        Self {
            max_price: 100,
            min_reputation: 0.3,
            min_coverage: 0.5,
            max_distance_km: 50.0,
            max_takeover_ms: 2000,
            memory_mib: 128,
            cpu_millis: 500,
            weights: DmuWeights::default(),
        }
    }
}

/// [`Weights`] as the rules file spells them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct DmuWeights {
    pub price: f64,
    pub reputation: f64,
    pub distance: f64,
    pub coverage: f64,
}

impl Default for DmuWeights {
    fn default() -> Self {
        let w = Weights::default();
        Self {
            price: w.price,
            reputation: w.reputation,
            distance: w.distance,
            coverage: w.coverage,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct ProviderRules {
    pub min_price: u64,
    pub max_distance_km: f64,
    pub max_devices: usize,
    pub min_heard_share: f64,
}

impl Default for ProviderRules {
    fn default() -> Self {
        Self {
            min_price: 0,
            max_distance_km: 50.0,
            max_devices: 10_000,
            min_heard_share: 0.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("decision rules {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("decision rules {path}: {message}")]
    Yaml { path: String, message: String },
}

/// The rules in `path` (empty: the defaults).
pub fn load(path: &str) -> Result<Rules, RulesError> {
    if path.is_empty() {
        return Ok(Rules::default());
    }
    let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
        path: path.into(),
        source,
    })?;
    serde_yaml_ng::from_str(&text).map_err(|e| RulesError::Yaml {
        path: path.into(),
        message: e.to_string(),
    })
}

impl CustomerRules {
    /// The demand these rules make for devices at `dev_addrs`.
    pub fn demand(&self, region: &str, location: Location, dev_addrs: Vec<String>) -> DemandBody {
        DemandBody {
            region: region.to_string(),
            location,
            dev_addrs,
            resources: Resources {
                memory_mib: self.memory_mib,
                cpu_millis: self.cpu_millis,
                ..Default::default()
            },
            max_price: self.max_price,
            min_reputation: self.min_reputation,
            max_distance_km: self.max_distance_km,
            min_coverage: self.min_coverage,
            max_takeover_ms: self.max_takeover_ms,
            weights: Weights {
                price: self.weights.price,
                reputation: self.weights.reputation,
                distance: self.weights.distance,
                coverage: self.weights.coverage,
            },
        }
    }
}

impl ProviderRules {
    /// The price to bid on `demand` with `offer`, having heard `heard` of
    /// its devices; `None`: these rules do not bid.
    pub fn bid_price(&self, demand: &DemandBody, offer: &OfferBody, heard: usize) -> Option<u64> {
        let devices = demand.dev_addrs.len();
        let share = if devices == 0 {
            0.0
        } else {
            heard as f64 / devices as f64
        };
        let price = offer.price.max(self.min_price);
        let near = super::auction::distance_km(offer, &demand.location) <= self.max_distance_km;
        (near
            && devices <= self.max_devices
            && share >= self.min_heard_share
            && heard > 0
            && price <= demand.max_price)
            .then_some(price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/market.md shows the defaults, whole.
    #[test]
    fn the_documented_rules_are_the_defaults_and_unknown_keys_are_refused() {
        let doc = include_str!("../../docs/market.md");
        let yaml = doc
            .split("```yaml\n")
            .find(|b| b.starts_with("Customer:"))
            .and_then(|b| b.split("\n```").next())
            .expect("the rules block in docs/market.md");
        let r: Rules = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(r, Rules::default(), "the doc shows the defaults");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rules.yaml");
        std::fs::write(&p, "Customer: { MaxPrise: 3 }\n").unwrap();
        let e = load(p.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("MaxPrise"), "{e}");
        std::fs::write(&p, yaml).unwrap();
        assert_eq!(load(p.to_str().unwrap()).unwrap(), Rules::default());
    }

    #[test]
    fn a_provider_bids_only_on_devices_it_heard() {
        let r = ProviderRules::default();
        let d = CustomerRules::default().demand(
            "EU868",
            Location {
                lat: 52.0,
                lon: 5.0,
            },
            vec!["26011234".into()],
        );
        let offer = OfferBody {
            region: "EU868".into(),
            location: Location {
                lat: 52.0,
                lon: 5.0,
            },
            gateways: vec![],
            resources: Resources::default(),
            price: 30,
            stake: 10,
            address: "x:1".into(),
            valid_until_ms: u64::MAX,
        };
        assert_eq!(r.bid_price(&d, &offer, 1), Some(30));
        assert_eq!(r.bid_price(&d, &offer, 0), None, "heard none of them");
        let dear = OfferBody {
            price: 300,
            ..offer
        };
        assert_eq!(r.bid_price(&d, &dear, 1), None, "above the demand's price");
    }
}
