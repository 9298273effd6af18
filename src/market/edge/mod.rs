//! An edge on the market, run by its service when `Market.Url` is set: a
//! provider ([`provider`], with `Market.Offer` and `Handover.Listen`)
//! offers and bids with the frames it heard; a customer with no provider
//! configured ([`customer`]) demands, proves, awards, contracts, and
//! submits its receipts for settlement.

pub mod customer;
pub mod provider;

use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::control::mailbox::Control;
use crate::market::client::MarketClient;
use crate::market::coverage::HeardElsewhere;

/// What the market tasks of a service need.
pub struct EdgeParts {
    pub config: Arc<Config>,
    pub control: tokio::sync::mpsc::UnboundedSender<Control>,
    /// The provider's frames heard from devices it does not serve.
    pub heard: Option<Arc<Mutex<HeardElsewhere>>>,
    /// The provider's handover endpoint, once bound.
    pub listening: Option<std::net::SocketAddr>,
}

/// Whether this edge remembers frames of devices it does not serve (a
/// provider on a market).
pub fn remembers_heard(config: &Config) -> bool {
    !config.market.url.is_empty() && config.market.offer.is_some()
}

/// The region's name as the market compares it (`EU868`).
pub fn region(config: &Config) -> String {
    config.region.name.to_string()
}

/// Spawn this edge's market tasks (into `tasks`).
pub fn start(parts: EdgeParts, tasks: &mut Vec<tokio::task::JoinHandle<()>>) -> anyhow::Result<()> {
    let config = parts.config.clone();
    if config.market.url.is_empty() {
        return Ok(());
    }
    let me = Arc::new(crate::handover::operator::identity(&config)?);
    let rules = crate::market::dmu::load(&config.market.rules)?;
    let client = MarketClient::new(&config.market.url, me.clone());
    match (&config.market.offer, parts.listening, parts.heard) {
        (Some(offer), Some(listening), Some(heard)) => {
            let p = provider::ProviderEdge {
                config: config.clone(),
                offer: offer.clone(),
                rules: rules.provider,
                client,
                heard,
                listening,
            };
            tasks.push(tokio::spawn(p.run()));
        }
        (Some(_), _, _) => anyhow::bail!(
            "Market.Offer needs Handover.Listen: a provider's customers reach it there"
        ),
        (None, _, _) => {
            let c = customer::CustomerEdge {
                config: config.clone(),
                rules: rules.customer,
                client,
                control: parts.control,
            };
            tasks.push(tokio::spawn(c.run()));
        }
    }
    tracing::info!(market = %config.market.url, role = if config.market.offer.is_some() { "provider" } else { "customer" }, "on the market");
    Ok(())
}
