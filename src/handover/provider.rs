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

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status, Streaming};

use super::contract::SignedContract;
use super::identity::{Identity, PublicKey};
use super::pb::handover_server::{Handover, HandoverServer};
use super::pb::*;
use super::takeover::{counter_msg, counter_of, Handed, Takeover};
use super::tls::PeerKey;
use super::transfer::{image_digest, now, receive};
use crate::edgex::delivered::{after_for, later};
use crate::image::store::BlobStore;
use crate::lorawan::{Eui64, FcntState};
use crate::metrics::Metrics;

use super::fencing::Fence;
pub use super::fencing::Holder;

/// A device's counter as stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredCounter {
    epoch: u32,
    fcnt: Option<u32>,
}

/// A DevEUI as a JSON map key (hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct Eui64Hex(Eui64);
impl TryFrom<String> for Eui64Hex {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Eui64::from_hex(&s).map(Self).map_err(|e| e.to_string())
    }
}
impl From<Eui64Hex> for String {
    fn from(e: Eui64Hex) -> String {
        e.0.to_string()
    }
}

/// What a provider keeps per contract across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Holding {
    epoch: u64,
    holder: Holder,
    /// The last delivered frame of each device, by either edge, as known.
    delivered: BTreeMap<Eui64Hex, StoredCounter>,
}

impl Holding {
    fn fence(&self) -> Fence {
        Fence {
            epoch: self.epoch,
            holder: self.holder,
        }
    }

    fn set_fence(&mut self, f: Fence) {
        self.epoch = f.epoch;
        self.holder = f.holder;
    }

    fn delivered(&self) -> HashMap<Eui64, FcntState> {
        self.delivered
            .iter()
            .map(|(eui, c)| {
                let s = FcntState {
                    last: c.fcnt,
                    epoch: c.epoch,
                };
                (eui.0, s)
            })
            .collect()
    }

    fn note(&mut self, counters: impl IntoIterator<Item = (Eui64, FcntState)>) {
        for (eui, s) in counters {
            let e = self
                .delivered
                .entry(Eui64Hex(eui))
                .or_insert(StoredCounter {
                    epoch: 0,
                    fcnt: None,
                });
            let known = FcntState {
                last: e.fcnt,
                epoch: e.epoch,
            };
            if later(s, known) {
                *e = StoredCounter {
                    epoch: s.epoch,
                    fcnt: s.last,
                };
            }
        }
    }
}

/// Why a takeover did not happen (it is tried again at the next tick).
#[derive(Debug, thiserror::Error)]
enum TakeOverFailed {
    #[error("saving the new epoch: {0}")]
    Save(std::io::Error),
    #[error("publishing the devices: {0}")]
    Activate(super::takeover::TakeoverError),
}

struct Entry {
    signed: SignedContract,
    holding: Holding,
    /// The customer's last heartbeat (or when this provider started).
    heard: Instant,
    sessions: Option<Vec<DeviceSession>>,
}

impl Entry {
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
    takeover: Option<Arc<dyn Takeover>>,
    metrics: Arc<Metrics>,
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
            entries.insert(
                id.to_owned(),
                Entry {
                    signed,
                    holding,
                    heard: Instant::now(),
                    sessions,
                },
            );
        }
        Ok(Self {
            identity,
            store: BlobStore::open(&dir.join("images"))?,
            dir: dir.to_owned(),
            entries: Mutex::new(entries),
            transitions: tokio::sync::Mutex::new(()),
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
            tick.tick().await;
            for id in self.silent_customers() {
                if let Err(e) = self.take_over(&id).await {
                    tracing::error!(contract = %id, error = %e, "takeover failed");
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
        self.entries
            .lock()
            .expect("entries")
            .iter()
            .filter(|(_, e)| {
                e.holding.holder == Holder::Customer
                    && e.sessions.is_some()
                    && e.heard.elapsed() > e.silence_limit()
                    && e.signed.verify(now_s).is_ok()
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    async fn take_over(&self, id: &str) -> Result<(), TakeOverFailed> {
        let _one = self.transitions.lock().await;
        let (holding, silent, signed, sessions) = {
            let mut m = self.entries.lock().expect("entries");
            let Some(e) = m.get_mut(id) else {
                return Ok(());
            };
            // Re-checked under the transition lock: a heartbeat or release
            // may have come in since.
            let silent = e.heard.elapsed() > e.silence_limit();
            let Some(next) = e.holding.fence().take_over(silent, e.sessions.is_some()) else {
                return Ok(());
            };
            e.holding.set_fence(next);
            (
                e.holding.clone(),
                e.heard.elapsed(),
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
        self.metrics.handover_takeovers.fetch_add(1, Relaxed);
        tracing::warn!(contract = %id, epoch = holding.epoch, silent_ms = silent.as_millis() as u64, "customer silent: took its devices over");
        Ok(())
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

    /// This provider as a gRPC service.
    pub fn service(self: &Arc<Self>) -> HandoverServer<Shared> {
        HandoverServer::new(Shared(self.clone()))
    }
}

/// A provider shared between the gRPC service and its watchdog.
pub struct Shared(pub Arc<Provider>);

/// Serve `provider` on `listener` over mutual TLS until the task is dropped.
pub async fn serve(
    provider: Arc<Provider>,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let config = super::tls::server_config(&provider.identity)?;
    tonic::transport::Server::builder()
        .add_service(provider.service())
        .serve_with_incoming(super::tls::incoming(listener, config))
        .await?;
    Ok(())
}

#[tonic::async_trait]
impl Handover for Shared {
    async fn offer(&self, req: Request<OfferRequest>) -> Result<Response<OfferReply>, Status> {
        let p = &self.0;
        let offer: SignedContract = serde_json::from_str(&req.get_ref().signed_contract_json)
            .map_err(|e| Status::invalid_argument(format!("not a signed contract: {e}")))?;
        let peer = PeerKey::of(&req)?;
        if Some(peer) != offer.customer_key() {
            p.metrics.handover_refused.fetch_add(1, Relaxed);
            return Err(Status::permission_denied(format!(
                "the caller {} is not the offer's customer",
                peer.to_hex()
            )));
        }
        // A contract id names one agreement: the same offer again is
        // answered as before; a different one under that id is refused.
        let known = p
            .entries
            .lock()
            .expect("entries")
            .get(&offer.contract.id)
            .map(|e| e.signed.clone());
        if let Some(known) = known {
            if known.contract == offer.contract
                && known.customer_signature == offer.customer_signature
            {
                return Ok(Response::new(OfferReply {
                    signed_contract_json: serde_json::to_string_pretty(&known).map_err(internal)?,
                }));
            }
            return Err(Status::already_exists(format!(
                "contract {} exists with other terms",
                offer.contract.id
            )));
        }
        let signed = offer.accept(&p.identity, now()).map_err(|e| {
            p.metrics.handover_refused.fetch_add(1, Relaxed);
            Status::permission_denied(format!("offer refused: {e}"))
        })?;
        let json = serde_json::to_string_pretty(&signed).map_err(internal)?;
        let id = signed.contract.id.clone();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Status::invalid_argument(
                "contract ids are letters, digits, - and _",
            ));
        }
        let holding = Holding {
            epoch: 1,
            ..Holding::default()
        };
        p.save_holding(&id, &holding).map_err(internal)?;
        let path = p.dir.join("contracts").join(format!("{id}.json"));
        crate::fsutil::write_atomic(&path, json.as_bytes(), 0o600).map_err(internal)?;
        tracing::info!(contract = %id, customer = %signed.contract.customer.id, devices = signed.contract.devices.len(), "handover contract accepted");
        p.entries.lock().expect("entries").insert(
            id,
            Entry {
                signed,
                holding,
                heard: Instant::now(),
                sessions: None,
            },
        );
        Ok(Response::new(OfferReply {
            signed_contract_json: json,
        }))
    }

    async fn image_offset(
        &self,
        req: Request<ImageOffsetRequest>,
    ) -> Result<Response<ImageOffsetReply>, Status> {
        let c = self.0.authorised(&req, &req.get_ref().contract_id)?;
        let (offset, complete) = self.0.store.held(&image_digest(&c)?);
        Ok(Response::new(ImageOffsetReply { offset, complete }))
    }

    async fn transfer_image(
        &self,
        req: Request<Streaming<ImageChunk>>,
    ) -> Result<Response<TransferReply>, Status> {
        let peer = PeerKey::of(&req)?;
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty transfer"))?;
        let mut probe = Request::new(());
        probe.extensions_mut().insert(super::tls::PeerInfo {
            key: peer,
            addr: None,
        });
        let c = self.0.authorised(&probe, &first.contract_id)?;
        receive(&self.0.store, &c, first, stream)
            .await
            .map(Response::new)
    }

    async fn sync_sessions(
        &self,
        req: Request<SyncRequest>,
    ) -> Result<Response<SyncReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        let c = p.authorised(&req, &id)?;
        let sync = req.into_inner();
        p.check_epoch(&id, sync.epoch)?;
        Provider::check_sessions(&c, &sync.devices)?;
        let path = p.dir.join("sessions").join(format!("{id}.pb"));
        crate::fsutil::write_atomic(&path, &sync.encode_to_vec(), 0o600).map_err(internal)?;
        if let Some(t) = &p.takeover {
            let handed = Handed {
                contract: &c,
                sessions: &sync.devices,
            };
            t.arm(handed)
                .await
                .map_err(|e| Status::internal(format!("arming the devices: {e}")))?;
        }
        let mut m = p.entries.lock().expect("entries");
        let e = m
            .get_mut(&id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        let first = e.sessions.is_none();
        e.sessions = Some(sync.devices);
        // The customer speaking is a sign of life, as a heartbeat is.
        e.heard = Instant::now();
        if first {
            tracing::info!(contract = %id, devices = e.sessions.as_ref().map_or(0, Vec::len), "customer sessions synced: armed");
        }
        Ok(Response::new(SyncReply {
            epoch: e.holding.epoch,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        p.authorised(&req, &id)?;
        let hb = req.into_inner();
        p.check_epoch(&id, hb.epoch)?;
        let mut m = p.entries.lock().expect("entries");
        let e = m
            .get_mut(&id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        e.heard = Instant::now();
        e.holding.note(hb.delivered.iter().map(counter_of));
        Ok(Response::new(HeartbeatReply {
            epoch: e.holding.epoch,
        }))
    }

    async fn release(
        &self,
        req: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        p.authorised(&req, &id)?;
        let epoch = req.get_ref().epoch;
        let _one = p.transitions.lock().await;
        let (current, signed, sessions) = {
            let m = p.entries.lock().expect("entries");
            let e = &m[&id];
            (
                e.holding.clone(),
                e.signed.clone(),
                e.sessions.clone().unwrap_or_default(),
            )
        };
        let granted = current.fence().release(epoch).map_err(|r| {
            p.metrics.handover_refused.fetch_add(1, Relaxed);
            Status::failed_precondition(r.to_string())
        })?;
        let mut holding = current.clone();
        let mut joins = Vec::new();
        let mut macs = Vec::new();
        if granted.stand_down {
            let t = p
                .takeover
                .as_ref()
                .ok_or_else(|| Status::internal("no takeover"))?;
            let mine = t
                .stand_down(Handed {
                    contract: &signed,
                    sessions: &sessions,
                })
                .await
                .map_err(|e| Status::internal(format!("standing down: {e}")))?;
            holding.note(mine);
            joins = t
                .join_states(Handed {
                    contract: &signed,
                    sessions: &sessions,
                })
                .await
                .map_err(|e| Status::internal(format!("join states: {e}")))?
                .into_iter()
                .map(|(eui, s)| super::pb::JoinStateMsg {
                    dev_eui: eui.as_u64(),
                    join_state: serde_json::to_string(&s).expect("join state serialises"),
                })
                .collect();
            macs = t
                .mac_states(Handed {
                    contract: &signed,
                    sessions: &sessions,
                })
                .await
                .map_err(|e| Status::internal(format!("MAC states: {e}")))?
                .into_iter()
                .map(|(eui, s)| super::pb::MacStateMsg {
                    dev_eui: eui.as_u64(),
                    mac_state: serde_json::to_string(&s).expect("MAC state serialises"),
                })
                .collect();
            p.metrics.handover_releases.fetch_add(1, Relaxed);
            tracing::warn!(contract = %id, epoch, "customer is back: handed its devices back");
        }
        holding.set_fence(granted.next);
        p.save_holding(&id, &holding).map_err(internal)?;
        let delivered = holding
            .delivered()
            .into_iter()
            .map(|(eui, s)| counter_msg(eui, s, 0))
            .collect();
        let mut m = p.entries.lock().expect("entries");
        let e = m.get_mut(&id).expect("present");
        e.holding = holding;
        e.heard = Instant::now();
        Ok(Response::new(ReleaseReply {
            epoch,
            delivered,
            joins,
            macs,
        }))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        let p = &self.0;
        let id = req.get_ref().contract_id.clone();
        let c = p.authorised(&req, &id)?;
        let (_, image_complete) = p.store.held(&image_digest(&c)?);
        let m = p.entries.lock().expect("entries");
        let e = &m[&id];
        Ok(Response::new(StatusReply {
            epoch: e.holding.epoch,
            holder: e.holding.holder.as_str().into(),
            image_complete,
            sessions_synced: e.sessions.is_some(),
            silent_ms: e.heard.elapsed().as_millis() as u64,
        }))
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
                    container: self.takeover.as_ref().and_then(|t| t.container(id)),
                }
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}
