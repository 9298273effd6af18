//! The provider edge: accepts contracts and images, keeps the customer's
//! sessions, watches its heartbeats, takes its devices over when it falls
//! silent and hands them back when it asks.
//!
//! Every call must come from the contract's customer, proven by the TLS
//! peer key ([`PeerKey`]). Who publishes the devices is decided by a fencing
//! epoch that only increases: the customer holds its epoch while its
//! heartbeats arrive; a takeover moves to epoch + 1 (the provider's); a
//! release moves to the customer's higher one. A sync or heartbeat under an
//! older epoch is refused, so a customer that was taken over learns it and
//! asks for release before it publishes again.
//!
//! On disk under the provider directory: `contracts/<id>.json` (the signed
//! contract), `contracts/<id>.state.json` (epoch, holder, counters),
//! `sessions/<id>.pb` (the synced sessions, keys included: mode 0600) and
//! `images/`. A restart keeps all of it; a provider that held the devices
//! publishes them again at once.

pub mod holding;
pub mod service;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use serde::Serialize;
use tonic::{Request, Status};

use super::contract::SignedContract;
use super::identity::{Identity, PublicKey};
use super::pb::*;
use super::receipt::{Delivery, Detected, Receipt, SignedReceipt};
use super::takeover::{Handed, Takeover};
use super::tls::PeerKey;
use super::transfer::{image_digest, now};
use crate::edgex::delivered::after_for;
use crate::image::store::BlobStore;
use crate::lorawan::{Eui64, FcntState};
use crate::metrics::Metrics;
use holding::{Eui64Hex, Holding, Taken};

use super::fencing::Fence;
pub use super::fencing::Holder;

/// Why a takeover did not happen (it is tried again at the next tick).
#[derive(Debug, thiserror::Error)]
enum TakeOverFailed {
    #[error("saving the new epoch: {0}")]
    Save(std::io::Error),
    #[error("publishing the devices: {0}")]
    Activate(super::takeover::TakeoverError),
}

/// How the provider learnt that its customer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Gone {
    /// Its heartbeat stream closed without a goodbye: the process died
    /// (its sockets closed with it).
    Closed,
    /// It said it is stopping (SIGTERM, an update).
    Leaving,
}

struct Entry {
    signed: SignedContract,
    holding: Holding,
    /// The customer's last heartbeat (or when this provider started).
    heard: Instant,
    /// The customer's heartbeat stream now open (0: none), so that the end
    /// of an older one says nothing.
    watch: u64,
    /// Known stopped, without waiting for the silence limit, and since when.
    gone: Option<(Gone, Instant)>,
    /// The customer's last word: a provider ranked above this one is
    /// reachable, so this one must not take over.
    standby: bool,
    sessions: Option<Vec<DeviceSession>>,
}

impl Entry {
    fn new(signed: SignedContract, holding: Holding, sessions: Option<Vec<DeviceSession>>) -> Self {
        Self {
            signed,
            holding,
            heard: Instant::now(),
            watch: 0,
            gone: None,
            standby: false,
            sessions,
        }
    }

    /// A sign of life: a heartbeat, a sync, a release.
    fn alive(&mut self) {
        self.heard = Instant::now();
        self.gone = None;
    }

    /// Known stopped now.
    fn stopped(&mut self, how: Gone) {
        self.gone = Some((how, Instant::now()));
        self.watch = 0;
    }

    /// The customer is known gone, or silent past the activation
    /// condition, and this provider is the one it armed.
    fn silent(&self) -> bool {
        !self.standby && (self.gone.is_some() || self.heard.elapsed() > self.silence_limit())
    }

    fn silence_limit(&self) -> Duration {
        let a = self.signed.contract.activation;
        Duration::from_millis(
            a.heartbeat_ms
                .saturating_mul(u64::from(a.missed_heartbeats)),
        )
    }
}

/// The provider's side: its identity, contracts, sessions and image store.
pub struct Provider {
    identity: Identity,
    dir: PathBuf,
    store: BlobStore,
    entries: Mutex<HashMap<String, Entry>>,
    /// One change of holder at a time (takeover, release).
    transitions: tokio::sync::Mutex<()>,
    /// Wakes the watchdog when a customer is known gone.
    wake: tokio::sync::Notify,
    /// Numbers the heartbeat streams.
    watches: std::sync::atomic::AtomicU64,
    takeover: Option<Arc<dyn Takeover>>,
    metrics: Arc<Metrics>,
}

fn remove_if_there(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{}: {e}", path.display())
}

impl Provider {
    /// Open the provider state in `dir`: accepted contracts, their holding
    /// and sessions survive a restart. `takeover` is how this edge runs the
    /// devices (none: it stores contracts and images only).
    pub fn open(
        identity: Identity,
        dir: &Path,
        takeover: Option<Arc<dyn Takeover>>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let cdir = dir.join("contracts");
        let sdir = dir.join("sessions");
        for d in [&cdir, &sdir] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let mut entries = HashMap::new();
        for e in std::fs::read_dir(&cdir).map_err(io_err(&cdir))? {
            let path = e?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(id) = name
                .strip_suffix(".json")
                .filter(|n| !n.ends_with(".state"))
            else {
                continue;
            };
            let signed: SignedContract =
                serde_json::from_slice(&std::fs::read(&path).map_err(io_err(&path))?)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let state = cdir.join(format!("{id}.state.json"));
            let holding = match std::fs::read(&state) {
                Ok(b) => serde_json::from_slice(&b)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", state.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Holding {
                    epoch: 1,
                    ..Holding::default()
                },
                Err(e) => return Err(io_err(&state)(e)),
            };
            let spath = sdir.join(format!("{id}.pb"));
            let sessions = match std::fs::read(&spath) {
                Ok(b) => Some(
                    SyncRequest::decode(&b[..])
                        .map_err(|e| anyhow::anyhow!("{}: {e}", spath.display()))?
                        .devices,
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err(&spath)(e)),
            };
            entries.insert(id.to_owned(), Entry::new(signed, holding, sessions));
        }
        Ok(Self {
            identity,
            store: BlobStore::open(&dir.join("images"))?,
            dir: dir.to_owned(),
            entries: Mutex::new(entries),
            transitions: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            watches: std::sync::atomic::AtomicU64::new(1),
            takeover,
            metrics,
        })
    }

    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    pub fn public_key(&self) -> PublicKey {
        self.identity.public()
    }

    /// Arm every contract with synced sessions; publish at once those this
    /// provider held when it stopped. Then watch the heartbeats until the
    /// task is dropped.
    pub async fn run(self: Arc<Self>) {
        let ids: Vec<String> = self
            .entries
            .lock()
            .expect("entries")
            .keys()
            .cloned()
            .collect();
        for id in ids {
            let (signed, sessions, holding) = {
                let m = self.entries.lock().expect("entries");
                let e = &m[&id];
                (e.signed.clone(), e.sessions.clone(), e.holding.clone())
            };
            let (Some(sessions), Some(t)) = (sessions, &self.takeover) else {
                continue;
            };
            let handed = Handed {
                contract: &signed,
                sessions: &sessions,
            };
            let devices = signed.dev_euis();
            if let Err(e) = t.arm(handed).await {
                tracing::error!(contract = %id, error = %e, "cannot arm the handed-over devices");
                continue;
            }
            if holding.holder == Holder::Provider {
                let after = after_for(&devices, &holding.delivered());
                match t.activate(handed, &after).await {
                    Ok(()) => {
                        tracing::warn!(contract = %id, epoch = holding.epoch, "restarted holding the customer's devices: publishing them")
                    }
                    Err(e) => {
                        tracing::error!(contract = %id, error = %e, "cannot publish the customer's devices")
                    }
                }
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
            }
            for id in self.silent_customers() {
                if let Err(e) = self.take_over(&id).await {
                    tracing::error!(contract = %id, error = %e, "takeover failed");
                }
            }
            for id in self.lapsed() {
                if let Err(e) = self.lapse(&id).await {
                    tracing::error!(contract = %id, error = %e, "cannot stand down at the contract's end");
                }
            }
        }
    }

    /// Contracts whose customer holds the devices, has synced its
    /// sessions, and has been silent past the activation condition.
    fn silent_customers(&self) -> Vec<String> {
        if self.takeover.is_none() {
            return Vec::new();
        }
        let now_s = now();
        self.ids_where(|e| {
            e.holding.holder == Holder::Customer
                && e.sessions.is_some()
                && e.silent()
                && e.signed.verify(now_s).is_ok()
        })
    }

    /// The signed receipt of a holding that ends: per device, the frames
    /// delivered since the takeover.
    fn receipt(
        &self,
        signed: &SignedContract,
        epoch: u64,
        taken: Taken,
        frames: Vec<(Eui64, Vec<FcntState>)>,
        complete: bool,
    ) -> SignedReceipt {
        let c = &signed.contract;
        let devices = signed
            .dev_euis()
            .into_iter()
            .map(|eui| {
                let after = taken
                    .after
                    .get(&Eui64Hex(eui))
                    .map_or_else(FcntState::default, |s| FcntState {
                        last: s.fcnt,
                        epoch: s.epoch,
                    });
                let mine = frames
                    .iter()
                    .find(|(e, _)| *e == eui)
                    .map_or(&[][..], |(_, f)| &f[..]);
                Delivery::of(eui, after, mine)
            })
            .collect();
        Receipt {
            contract_id: c.id.clone(),
            customer_key: c.customer.public_key.clone(),
            provider_key: c.provider.public_key.clone(),
            epoch,
            from_ms: taken.at_ms,
            to_ms: now_ms(),
            detected: taken.detected,
            takeover_ms: taken.takeover_ms,
            complete,
            devices,
        }
        .sign(&self.identity)
    }

    /// The contracts whose entry `pick` chooses.
    fn ids_where(&self, pick: impl Fn(&Entry) -> bool) -> Vec<String> {
        self.entries
            .lock()
            .expect("entries")
            .iter()
            .filter(|(_, e)| pick(e))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Contract `id` as it stands: terms, synced sessions, holding.
    fn snapshot(&self, id: &str) -> Option<(SignedContract, Vec<DeviceSession>, Holding)> {
        let m = self.entries.lock().expect("entries");
        let e = m.get(id)?;
        Some((
            e.signed.clone(),
            e.sessions.clone().unwrap_or_default(),
            e.holding.clone(),
        ))
    }

    /// Contracts that ended while this provider held their devices.
    fn lapsed(&self) -> Vec<String> {
        let now_s = now();
        self.ids_where(|e| {
            e.holding.holder == Holder::Provider && now_s >= e.signed.contract.not_after
        })
    }

    /// Stand down a holding that ends (the contract's end, a revocation)
    /// and issue its receipt.
    async fn end_holding(
        &self,
        signed: &SignedContract,
        sessions: &[DeviceSession],
        holding: &mut Holding,
    ) -> anyhow::Result<()> {
        let t = self
            .takeover
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this edge runs no devices"))?;
        let handed = Handed {
            contract: signed,
            sessions,
        };
        let mine = t.stand_down(handed).await?;
        holding.note(mine);
        let frames = t.deliveries(handed).await?;
        if let Some(taken) = holding.taken.take() {
            let r = self.receipt(
                signed,
                holding.epoch,
                taken,
                frames,
                t.lists_every_delivery(),
            );
            super::receipt::save(&self.receipts_dir(), &r)?;
        }
        Ok(())
    }

    /// The contract ended while this provider held the devices: stop
    /// publishing them, issue the receipt of the holding, and (by its
    /// terms) keep or delete the sessions.
    async fn lapse(&self, id: &str) -> anyhow::Result<()> {
        let _one = self.transitions.lock().await;
        let Some((signed, sessions, mut holding)) = self.snapshot(id) else {
            return Ok(());
        };
        let Some(next) = holding.fence().lapse() else {
            return Ok(());
        };
        let epoch = holding.epoch;
        self.end_holding(&signed, &sessions, &mut holding).await?;
        holding.set_fence(next);
        holding.ended = true;
        self.save_holding(id, &holding)?;
        let release = signed.contract.at_expiry == super::contract::AtExpiry::Release;
        if release {
            let path = self.dir.join("sessions").join(format!("{id}.pb"));
            remove_if_there(&path)?;
        }
        let mut m = self.entries.lock().expect("entries");
        if let Some(e) = m.get_mut(id) {
            e.holding = holding;
            if release {
                e.sessions = None;
            }
        }
        tracing::warn!(contract = %id, epoch, at_expiry = ?signed.contract.at_expiry, "the contract ended while this edge held its devices: stopped publishing them");
        Ok(())
    }

    /// The customer revokes contract `id` (its signature checked): stand
    /// down if holding, counter-sign, keep the revocation and forget the
    /// contract and its sessions.
    pub async fn revoke(
        &self,
        id: &str,
        customer_signature: &str,
    ) -> Result<super::contract::Revocation, Status> {
        let _one = self.transitions.lock().await;
        let (signed, sessions, mut holding) = self
            .snapshot(id)
            .ok_or_else(|| Status::not_found(format!("no accepted contract {id:?}")))?;
        let bytes = signed.contract.revocation_bytes();
        let key = signed
            .customer_key()
            .ok_or_else(|| Status::internal("the contract's customer key is malformed"))?;
        let sig = hex::decode(customer_signature).unwrap_or_default();
        if !super::identity::verify(&key, &bytes, &sig) {
            self.metrics.handover_refused.fetch_add(1, Relaxed);
            return Err(Status::permission_denied(
                "the revocation is not signed by the contract's customer",
            ));
        }
        if holding.holder == Holder::Provider {
            self.end_holding(&signed, &sessions, &mut holding)
                .await
                .map_err(internal)?;
        }
        let revocation = super::contract::Revocation {
            contract: signed.contract.clone(),
            at: now(),
            customer_signature: customer_signature.to_owned(),
            provider_signature: hex::encode(self.identity.sign(&bytes)),
        };
        let rdir = self.dir.join("revoked");
        std::fs::create_dir_all(&rdir).map_err(internal)?;
        let json = serde_json::to_vec_pretty(&revocation).map_err(internal)?;
        crate::fsutil::write_atomic(&rdir.join(format!("{id}.json")), &json, 0o644)
            .map_err(internal)?;
        for path in [
            self.dir.join("contracts").join(format!("{id}.json")),
            self.dir.join("contracts").join(format!("{id}.state.json")),
            self.dir.join("sessions").join(format!("{id}.pb")),
        ] {
            remove_if_there(&path).map_err(internal)?;
        }
        self.entries.lock().expect("entries").remove(id);
        tracing::warn!(contract = %id, "contract revoked by its customer");
        Ok(revocation)
    }

    async fn take_over(&self, id: &str) -> Result<(), TakeOverFailed> {
        let _one = self.transitions.lock().await;
        let (mut holding, silent, gone, signed, sessions) = {
            let mut m = self.entries.lock().expect("entries");
            let Some(e) = m.get_mut(id) else {
                return Ok(());
            };
            // Re-checked under the transition lock: a heartbeat or release
            // may have come in since.
            let silent = e.silent();
            let Some(next) = e.holding.fence().take_over(silent, e.sessions.is_some()) else {
                return Ok(());
            };
            e.holding.set_fence(next);
            (
                e.holding.clone(),
                e.heard.elapsed(),
                e.gone,
                e.signed.clone(),
                e.sessions.clone().unwrap_or_default(),
            )
        };
        let devices = signed.dev_euis();
        let handed = Handed {
            contract: &signed,
            sessions: &sessions,
        };
        self.save_holding(id, &holding)
            .map_err(TakeOverFailed::Save)?;
        let after = after_for(&devices, &holding.delivered());
        let t = self.takeover.as_ref().expect("checked by silent_customers");
        if let Err(e) = t.activate(handed, &after).await {
            // Not publishing: leave the customer as holder (under the new
            // epoch), so the next tick tries again.
            let mut back = holding.clone();
            back.set_fence(holding.fence().activation_failed());
            if let Some(en) = self.entries.lock().expect("entries").get_mut(id) {
                en.holding = back.clone();
            }
            let _ = self.save_holding(id, &back);
            return Err(TakeOverFailed::Activate(e));
        }
        // What the receipt at hand-back states: when, how it was seen, how
        // long from the customer's last sign of life, and from which counters.
        let since = gone.map_or(silent, |(_, at)| at.elapsed());
        let (detected, last_sign) = match gone {
            Some((Gone::Closed, _)) => (Detected::Closed, since),
            Some((Gone::Leaving, _)) => (Detected::Leaving, since),
            None => (Detected::Silent, silent),
        };
        holding.taken = Some(Taken {
            at_ms: now_ms(),
            detected,
            takeover_ms: last_sign.as_millis() as u64,
            after: holding.counters(),
        });
        if let Some(en) = self.entries.lock().expect("entries").get_mut(id) {
            en.holding.taken = holding.taken.clone();
        }
        if let Err(e) = self.save_holding(id, &holding) {
            tracing::error!(contract = %id, error = %e, "cannot save the takeover's record");
        }
        self.metrics.handover_takeovers.fetch_add(1, Relaxed);
        match gone {
            Some((how, _)) => {
                tracing::warn!(contract = %id, epoch = holding.epoch, ?how, "customer stopped: took its devices over")
            }
            None => {
                tracing::warn!(contract = %id, epoch = holding.epoch, silent_ms = silent.as_millis() as u64, "customer silent: took its devices over")
            }
        }
        Ok(())
    }

    /// The customer's heartbeat stream `watch` ended: without a goodbye
    /// its process is gone, since a living customer keeps it open (an older
    /// stream's end says nothing).
    fn watch_ended(&self, id: &str, watch: u64, how: Gone) {
        let mut m = self.entries.lock().expect("entries");
        if let Some(e) = m.get_mut(id) {
            if e.watch == watch && e.holding.holder == Holder::Customer {
                e.stopped(how);
                drop(m);
                self.wake.notify_one();
            }
        }
    }

    /// Where this provider keeps its receipts.
    pub fn receipts_dir(&self) -> PathBuf {
        self.dir.join("receipts")
    }

    fn save_holding(&self, id: &str, h: &Holding) -> std::io::Result<()> {
        let path = self.dir.join("contracts").join(format!("{id}.state.json"));
        let json = serde_json::to_vec_pretty(h).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&path, &json, 0o644)
    }

    /// The contract `id`, in force, called by its customer.
    fn authorised<T>(&self, req: &Request<T>, id: &str) -> Result<SignedContract, Status> {
        let signed = self
            .entries
            .lock()
            .expect("entries")
            .get(id)
            .map(|e| e.signed.clone())
            .ok_or_else(|| Status::not_found(format!("no accepted contract {id:?}")))?;
        let refuse = |s: Status| {
            self.metrics.handover_refused.fetch_add(1, Relaxed);
            s
        };
        signed
            .verify(now())
            .map_err(|e| refuse(Status::permission_denied(format!("contract {id}: {e}"))))?;
        let peer = PeerKey::of(req).map_err(refuse)?;
        if Some(peer) != signed.customer_key() {
            return Err(refuse(Status::permission_denied(format!(
                "contract {id}: the caller {} is not its customer",
                peer.to_hex()
            ))));
        }
        Ok(signed)
    }

    /// Refuse a message under an epoch other than the current one.
    fn check_epoch(&self, id: &str, epoch: u64) -> Result<(), Status> {
        let m = self.entries.lock().expect("entries");
        let fence = m.get(id).map_or_else(Fence::default, |e| e.holding.fence());
        fence.check(epoch).map_err(|r| {
            self.metrics.handover_refused.fetch_add(1, Relaxed);
            Status::failed_precondition(r.to_string())
        })
    }

    fn check_sessions(c: &SignedContract, sessions: &[DeviceSession]) -> Result<(), Status> {
        for s in sessions {
            let eui = Eui64::from_u64(s.dev_eui);
            if !c
                .contract
                .devices
                .iter()
                .any(|d| Eui64::from_hex(d).ok() == Some(eui))
            {
                return Err(Status::permission_denied(format!(
                    "device {eui} is not handed over by contract {}",
                    c.contract.id
                )));
            }
            super::takeover::adopted(s).map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        Ok(())
    }
}

/// The state of every contract, for the REST status and `handover status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractStatus {
    pub id: String,
    pub customer: String,
    pub epoch: u64,
    pub holder: Holder,
    pub devices: usize,
    pub sessions_synced: bool,
    pub image: String,
    pub image_complete: bool,
    pub image_bytes_held: u64,
    pub silent_ms: u64,
    pub not_after: u64,
    /// The contract ended while this edge held the devices, and it stood
    /// down.
    pub ended: bool,
    /// The container running the devices (the container takeover).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<super::takeover::RunningContainer>,
}

impl Provider {
    pub fn status(&self) -> Vec<ContractStatus> {
        let m = self.entries.lock().expect("entries");
        let mut v: Vec<ContractStatus> = m
            .iter()
            .map(|(id, e)| {
                let c = &e.signed.contract;
                let (held, complete) = image_digest(&e.signed)
                    .map(|d| self.store.held(&d))
                    .unwrap_or((0, false));
                ContractStatus {
                    id: id.clone(),
                    customer: c.customer.id.clone(),
                    epoch: e.holding.epoch,
                    holder: e.holding.holder,
                    devices: c.devices.len(),
                    sessions_synced: e.sessions.is_some(),
                    image: c.image.digest.clone(),
                    image_complete: complete,
                    image_bytes_held: held,
                    silent_ms: e.heard.elapsed().as_millis() as u64,
                    not_after: c.not_after,
                    ended: e.holding.ended,
                    container: self.takeover.as_ref().and_then(|t| t.container(id)),
                }
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}
