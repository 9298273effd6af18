//! The customer contracts this edge runs, kept in step with
//! `<DataDir>/handover/customer/`: a contract that `handover offer` leaves
//! there while the service runs is taken up within a second (no restart),
//! and one that is revoked or expires is stood down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::contract::SignedContract;
use super::customer::{self, Customer};
use super::identity::Identity;
use crate::config::Config;
use crate::control::mailbox::Control;
use crate::edgex::delivered::Delivered;
use crate::metrics::Metrics;

/// How often the contracts directory is read again.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// What a customer task needs, shared by every contract.
pub struct CustomerParts {
    pub config: Arc<Config>,
    pub control: tokio::sync::mpsc::UnboundedSender<Control>,
    pub delivered: Arc<Delivered>,
    pub metrics: Arc<Metrics>,
    pub leaving: tokio::sync::watch::Receiver<bool>,
}

/// The running customer tasks, by contract id.
pub struct Customers {
    parts: CustomerParts,
    ranking: Arc<super::ranking::Ranking>,
    running: Mutex<HashMap<String, (SignedContract, JoinHandle<()>)>>,
}

impl Customers {
    pub fn new(parts: CustomerParts) -> Arc<Self> {
        Arc::new(Self {
            parts,
            ranking: Arc::default(),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Run the customer's side of `signed`.
    pub fn start(&self, signed: SignedContract) -> anyhow::Result<()> {
        let p = &self.parts;
        let identity = Identity::load(&p.config.service.data_dir.join("identity"))?;
        let id = signed.contract.id.clone();
        self.ranking
            .enter(&id, signed.contract.rank, signed.dev_euis());
        let c = Customer {
            signed: signed.clone(),
            identity: Arc::new(identity),
            config: p.config.clone(),
            control: p.control.clone(),
            delivered: p.delivered.clone(),
            metrics: p.metrics.clone(),
            leaving: p.leaving.clone(),
            ranking: self.ranking.clone(),
        };
        let task = tokio::spawn(c.run());
        if let Some((_, old)) = self
            .running
            .lock()
            .expect("customers")
            .insert(id, (signed, task))
        {
            old.abort();
        }
        Ok(())
    }

    /// Read the directory again: start new contracts (and renewed terms),
    /// stop those whose file is gone (revoked).
    pub fn refresh(&self) -> anyhow::Result<()> {
        let on_disk = in_force(customer::contracts(&self.parts.config.service.data_dir)?);
        let mut fresh = Vec::new();
        {
            let mut running = self.running.lock().expect("customers");
            running.retain(|id, (_, task)| {
                let kept = on_disk.iter().any(|c| &c.contract.id == id);
                if !kept {
                    tracing::warn!(contract = %id, "handover contract withdrawn or expired: no longer sending heartbeats");
                    task.abort();
                    self.ranking.leave(id);
                }
                kept
            });
            for c in on_disk {
                match running.get_mut(&c.contract.id) {
                    Some((known, _)) if *known == c => {}
                    // Renewed terms of the same agreement: the task goes on
                    // (a restart would close its heartbeat stream, which the
                    // provider takes for a crash).
                    Some((known, _)) if known.contract.check_renewal(&c.contract).is_ok() => {
                        tracing::info!(contract = %c.contract.id, not_after = c.contract.not_after, "handover contract renewed");
                        *known = c;
                    }
                    _ => fresh.push(c),
                }
            }
        }
        for c in fresh {
            tracing::info!(contract = %c.contract.id, provider = %c.contract.provider.address, "handover contract taken up");
            self.start(c)?;
        }
        Ok(())
    }

    /// Keep in step with the directory until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(LOOK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if *self.parts.leaving.borrow() {
                return;
            }
            // Keeps what waits for EdgeX's confirmation short when no
            // customer asks.
            let _ = self.parts.delivered.last();
            if let Err(e) = self.refresh() {
                tracing::error!(error = %e, "cannot read the handover contracts");
            }
        }
    }

    /// Wait (up to `within`) for every customer to hand its devices over
    /// after `leaving` turned true.
    pub async fn left(&self, within: Duration) {
        let tasks: Vec<JoinHandle<()>> = self
            .running
            .lock()
            .expect("customers")
            .drain()
            .map(|(_, (_, t))| t)
            .collect();
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("a handover customer did not finish handing over before the stop");
        }
    }
}

/// The contracts still valid now (an expired one hands nothing over: its
/// devices are this edge's own again).
pub fn in_force(contracts: Vec<SignedContract>) -> Vec<SignedContract> {
    let now = super::transfer::now();
    contracts
        .into_iter()
        .filter(|c| now < c.contract.not_after)
        .collect()
}
