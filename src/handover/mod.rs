//! Edge-as-a-Service handover: a customer edge hands its devices and its
//! packaged service to a provider edge under a signed contract.
//!
//! [`identity`]: an edge's Ed25519 key pair; [`contract`]: what both edges
//! sign; [`fencing`]: the epochs that decide who publishes, as a pure state
//! machine; [`tls`]: mutual TLS pinned to those keys; [`transfer`]: the image,
//! over [`pb`] (gRPC); [`provider`] and [`customer`]: the two sides;
//! [`takeover`]: how the provider runs the devices (in its own pipeline, or
//! the customer's image in a [`container`] engine); [`operator`]: the
//! `handover` commands; [`receipt`]: what the provider states it delivered
//! while it held the devices, and the customer's signed answer. What EdgeX confirmed comes from
//! [`crate::edgex::delivered`].

pub mod bus_watch;
pub mod container;
pub mod contract;
pub mod customer;
pub mod customers;
pub mod fencing;
pub mod identity;
pub mod operator;
pub mod pb;
pub mod provider;
pub mod ranking;
pub mod receipt;
pub mod records;
pub mod resume_file;
pub mod settle;
pub mod takeover;
pub mod tls;
pub mod transfer;

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, TakeoverMode};
use crate::control::mailbox::Control;
use crate::lorawan::Eui64;

/// What a service starts for the handover: the customer's side for each
/// contract it holds, the provider's side if `Handover.Listen` is set.
pub struct Roles {
    pub config: Arc<Config>,
    pub contracts: Vec<contract::SignedContract>,
    pub control: tokio::sync::mpsc::UnboundedSender<Control>,
    /// What EdgeX confirmed, for heartbeats and hand-backs.
    pub delivered: Arc<crate::edgex::delivered::Delivered>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Turns true when the service stops: customers hand over first.
    pub leaving: tokio::sync::watch::Receiver<bool>,
}

pub struct Started {
    /// The customers' tasks: each ends once it has handed its devices over
    /// after `leaving` turned true.
    pub customers: Arc<customers::Customers>,
    /// Devices to hold until the customer has taken them back.
    pub standby: Vec<Eui64>,
    pub provider: Option<Arc<provider::Provider>>,
    pub listening: Option<std::net::SocketAddr>,
}

impl Roles {
    /// Spawn the tasks (into `tasks`, which the service aborts at shutdown).
    pub async fn start(
        self,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<Started> {
        let identity_dir = self.config.service.data_dir.join("identity");
        let customers = customers::Customers::new(customers::CustomerParts {
            config: self.config.clone(),
            control: self.control.clone(),
            delivered: self.delivered.clone(),
            metrics: self.metrics.clone(),
            leaving: self.leaving.clone(),
        });
        let mut standby = Vec::new();
        let valid = customers::in_force(self.contracts.clone());
        for c in self.contracts.iter().filter(|c| !valid.contains(c)) {
            tracing::warn!(contract = %c.contract.id, "handover contract expired: its devices are this edge's own");
        }
        for signed in valid {
            standby.extend(signed.dev_euis());
            tracing::info!(contract = %signed.contract.id, provider = %signed.contract.provider.address, "handover customer: taking the devices back before publishing them");
            customers.start(signed)?;
        }
        tasks.push(tokio::spawn(customers.clone().watch()));
        let listen = &self.config.handover.listen;
        if listen.is_empty() {
            return Ok(Started {
                customers,
                standby,
                provider: None,
                listening: None,
            });
        }
        let md = &self.config.edgex.metadata;
        // The watch reads MQTT; on NATS JetStream the stream itself drops a
        // second copy (the same `Nats-Msg-Id`) within its duplicate window.
        let bus = (self.config.edgex.delivery == crate::config::Delivery::MessageBus
            && self.config.edgex.message_bus.r#type == crate::config::BusType::Mqtt)
            .then(|| bus_watch::BusWatch::start(&self.config, tasks));
        let in_process = takeover::InProcess {
            control: self.control.clone(),
            delivered: self.delivered.clone(),
            bus,
            edgex: md.enabled.then(|| {
                Arc::new(crate::edgex::held::HeldInEdgex {
                    client: crate::edgex::http::JsonClient::new(&md.url, md.timeout),
                    service: self.config.service.name.clone(),
                    metrics: self.metrics.clone(),
                })
            }),
        };
        let dir = self.config.service.data_dir.join("handover/provider");
        let takeover: Arc<dyn takeover::Takeover> = match self.config.handover.takeover {
            TakeoverMode::InProcess => Arc::new(in_process),
            TakeoverMode::Container => Arc::new(container::Container::new(
                in_process,
                self.config.clone(),
                &dir,
                self.metrics.clone(),
            )?),
        };
        let p = Arc::new(provider::Provider::open(
            identity::Identity::load(&identity_dir)?,
            &dir,
            Some(takeover),
            self.metrics.clone(),
        )?);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the handover endpoint on {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, key = %p.public_key().to_hex(), "handover provider listening (mutual TLS)");
        let served = p.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = provider::service::serve(served, listener).await {
                tracing::error!(error = %e, "handover endpoint stopped");
            }
        }));
        tasks.push(tokio::spawn(p.clone().run()));
        Ok(Started {
            customers,
            standby,
            provider: Some(p),
            listening: Some(addr),
        })
    }
}
