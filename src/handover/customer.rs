//! The customer edge's side, run beside its service while it holds a
//! contract (`<DataDir>/handover/customer/<id>.json`, left there by
//! `handover offer`).
//!
//! At start the contract's devices are in standby: decoded, held, not
//! published, since the provider may have taken them over while this edge
//! was down. The customer first takes them back: it asks the provider's
//! epoch, asks for release under a higher one, and publishes what it holds
//! after the counters the provider answers. Then it syncs its sessions and
//! sends a heartbeat every `heartbeatMs` with the counters EdgeX confirmed.
//! A heartbeat refused as stale means the provider took over (say, after a
//! network partition): back to standby, and take back again.
//!
//! If the provider cannot be reached for the contract's whole activation
//! window, the customer publishes anyway (the provider is down, so it is
//! not publishing) and keeps trying; deterministic event ids keep any
//! overlap from being stored twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::Code;

use super::contract::SignedContract;
use super::identity::Identity;
use super::pb::handover_client::HandoverClient;
use super::pb::*;
use super::takeover::{counter_msg, counter_of, enum_to_str};
use crate::config::Config;
use crate::control::mailbox::Control;
use crate::edgex::delivered::{after_for, Delivered};
use crate::lorawan::{Eui64, FcntState};

/// Where a customer keeps its contracts, under the DataDir.
pub const DIR: &str = "handover/customer";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct State {
    epoch: u64,
    /// When this edge last stopped cleanly (its goodbye), Unix ms: its
    /// measure of the takeover, for the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    left_ms: Option<u64>,
}

fn contract_paths(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = data_dir.join(DIR);
    let mut v = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(rd) => {
            for e in rd {
                let p = e?.path();
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.ends_with(".json") && !name.ends_with(".state.json") {
                    v.push(p);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    v.sort();
    Ok(v)
}

/// The contracts this edge holds as customer.
pub fn contracts(data_dir: &Path) -> anyhow::Result<Vec<SignedContract>> {
    contract_paths(data_dir)?
        .into_iter()
        .map(|p| {
            let c: SignedContract = serde_json::from_slice(&std::fs::read(&p)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            Ok(c)
        })
        .collect()
}

pub fn save_contract(data_dir: &Path, c: &SignedContract) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join(DIR);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", c.contract.id));
    crate::fsutil::write_atomic(&path, serde_json::to_string_pretty(c)?.as_bytes(), 0o600)?;
    Ok(path)
}

pub struct Customer {
    pub signed: SignedContract,
    pub identity: Arc<Identity>,
    pub config: Arc<Config>,
    pub control: mpsc::UnboundedSender<Control>,
    pub delivered: Arc<Delivered>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Turns true when the service stops: hand the devices over, then end.
    pub leaving: tokio::sync::watch::Receiver<bool>,
    /// Which of this edge's providers may take over.
    pub ranking: Arc<super::ranking::Ranking>,
}

/// How often counters EdgeX has just confirmed go to the provider.
const PUSH: Duration = Duration::from_millis(5);
/// How long a stopping customer waits for its journal to reach EdgeX.
const LEAVE_DRAIN: Duration = Duration::from_secs(3);

/// How a heartbeat stream ended.
enum Watched {
    /// This edge is stopping; the provider took the goodbye.
    Left,
    /// This edge is stopping; the provider could not be told.
    Stopping,
    Hitch(Hitch),
}

/// Why the customer could not go on with the provider right now.
enum Hitch {
    /// The provider holds a higher epoch: take back.
    Fenced(String),
    /// Unreachable or failing: try again next beat.
    Down(String),
}

fn hitch(s: tonic::Status) -> Hitch {
    if s.code() == Code::FailedPrecondition {
        Hitch::Fenced(s.message().to_owned())
    } else {
        Hitch::Down(format!("{:?}: {}", s.code(), s.message()))
    }
}

impl Customer {
    fn id(&self) -> &str {
        &self.signed.contract.id
    }

    fn state_path(&self) -> PathBuf {
        self.config
            .service
            .data_dir
            .join(DIR)
            .join(format!("{}.state.json", self.id()))
    }

    fn state(&self) -> State {
        std::fs::read(self.state_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<State>(&b).ok())
            .unwrap_or(State {
                epoch: 1,
                left_ms: None,
            })
    }

    fn epoch(&self) -> u64 {
        self.state().epoch
    }

    fn save_state(&self, s: &State) -> std::io::Result<()> {
        let json = serde_json::to_vec(s).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&self.state_path(), &json, 0o644)
    }

    fn beat(&self) -> Duration {
        Duration::from_millis(self.signed.contract.activation.heartbeat_ms)
    }

    /// Ask the pipeline; if it has stopped, so is the service.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Option<T> {
        Control::ask(&self.control, make).await.ok()
    }

    /// Run until the service stops: then hand the devices over (if the
    /// provider can be reached) and end.
    pub async fn run(mut self) {
        let Some(provider_key) = self.signed.provider_key() else {
            tracing::error!(contract = %self.id(), "the contract's provider key is malformed");
            return;
        };
        let addr = self.signed.contract.provider.address.clone();
        let mut client = match super::tls::connect(&addr, &self.identity, provider_key) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(contract = %self.id(), error = %e, "cannot set up the handover client");
                return;
            }
        };
        let mut epoch = self.epoch();
        epoch = self.take_back(&mut client, epoch).await;
        let mut down_logged = false;
        loop {
            let watched = self.watch(&mut client, epoch, &mut down_logged).await;
            self.ranking.reachable(self.id(), false);
            match watched {
                Watched::Left => return,
                Watched::Stopping => {
                    tracing::warn!(contract = %self.id(), "stopping without the provider: it takes over when it sees the silence");
                    return;
                }
                Watched::Hitch(Hitch::Fenced(why)) => {
                    tracing::warn!(contract = %self.id(), why, "the provider holds the devices: taking them back");
                    let devices = self.signed.dev_euis();
                    self.ask(|done| Control::Standby { devices, done }).await;
                    epoch = self.take_back(&mut client, epoch).await;
                }
                Watched::Hitch(Hitch::Down(why)) => {
                    if !down_logged {
                        tracing::warn!(contract = %self.id(), why, "provider unreachable; heartbeats continue");
                        down_logged = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(self.beat()) => {}
                        _ = self.leaving.changed() => {}
                    }
                }
            }
        }
    }

    fn is_leaving(&self) -> bool {
        *self.leaving.borrow()
    }

    /// One heartbeat stream, until it breaks, is refused, or this edge
    /// stops. A heartbeat every `heartbeatMs` carries every device's
    /// delivered counter; in between, the counters EdgeX has just confirmed
    /// go out within [`PUSH`], so that a provider taking over after a crash
    /// publishes as little as possible that was already delivered.
    async fn watch(
        &mut self,
        client: &mut HandoverClient<Channel>,
        epoch: u64,
        down_logged: &mut bool,
    ) -> Watched {
        if self.is_leaving() {
            return Watched::Stopping;
        }
        let (tx, rx) = mpsc::channel::<HeartbeatRequest>(8);
        let mut sent = HashMap::new();
        if let Err(h) = self.sync(client, epoch).await {
            return Watched::Hitch(h);
        }
        let mut synced_joins = self.joins_seen();
        let _ = tx.try_send(self.beat_msg(epoch, &mut sent, true, false));
        let mut replies = match client
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return Watched::Hitch(hitch(s)),
        };
        let window = self.beat() * self.signed.contract.activation.missed_heartbeats;
        let mut answered = Instant::now();
        let mut beats: u32 = 0;
        let mut tick = tokio::time::interval(self.beat());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut pushed = self.delivered.changes();
        let mut push = tokio::time::interval(PUSH);
        push.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                // The sender gone is the service gone: stopping too.
                _ = self.leaving.changed() => {
                    return self.leave(tx, replies, epoch, &mut sent).await;
                }
                r = replies.message() => match r {
                    Ok(Some(_)) => {
                        answered = Instant::now();
                        self.ranking.reachable(self.id(), true);
                        if *down_logged {
                            tracing::info!(contract = %self.id(), "provider reachable again");
                            *down_logged = false;
                        }
                    }
                    Ok(None) => return Watched::Hitch(Hitch::Down("the heartbeat stream closed".into())),
                    Err(s) => return Watched::Hitch(hitch(s)),
                },
                _ = tick.tick() => {
                    if answered.elapsed() > window {
                        // A link gone without a close: open a new stream.
                        return Watched::Hitch(Hitch::Down("no answer to heartbeats".into()));
                    }
                    beats = beats.wrapping_add(1);
                    let joins_now = self.joins_seen();
                    if beats % self.config.handover.sync_every == 0 || joins_now != synced_joins {
                        if let Err(h) = self.sync(client, epoch).await {
                            return Watched::Hitch(h);
                        }
                        synced_joins = joins_now;
                    }
                    let _ = tx.try_send(self.beat_msg(epoch, &mut sent, true, false));
                }
                // Another provider's reachability changed: say at once
                // whether this one must stand by.
                () = self.ranking.changed.notified() => {
                    let _ = tx.try_send(self.beat_msg(epoch, &mut sent, true, false));
                }
                _ = push.tick() => {
                    // Nothing newly confirmed: nothing to copy or send.
                    let now = self.delivered.changes();
                    if now != pushed {
                        pushed = now;
                        let msg = self.beat_msg(epoch, &mut sent, false, false);
                        if !msg.delivered.is_empty() {
                            let _ = tx.try_send(msg);
                        }
                    }
                }
            }
        }
    }

    /// This edge is stopping cleanly: stop publishing the devices, let what
    /// was journaled reach EdgeX, then tell the provider (with the final
    /// counters) to take over now, before this process exits.
    async fn leave(
        &self,
        tx: mpsc::Sender<HeartbeatRequest>,
        mut replies: tonic::Streaming<HeartbeatReply>,
        epoch: u64,
        sent: &mut HashMap<Eui64, FcntState>,
    ) -> Watched {
        let devices = self.signed.dev_euis();
        let list = devices.clone();
        self.ask(|done| Control::Standby {
            devices: list,
            done,
        })
        .await;
        self.delivered.wait_settled(&devices, LEAVE_DRAIN).await;
        if tx
            .send(self.beat_msg(epoch, sent, true, true))
            .await
            .is_err()
        {
            return Watched::Stopping;
        }
        // Its answer says the goodbye arrived.
        match tokio::time::timeout(self.beat() * 2, replies.message()).await {
            Ok(Ok(Some(_))) => {
                let state = State {
                    epoch,
                    left_ms: Some(super::provider::now_ms()),
                };
                if let Err(e) = self.save_state(&state) {
                    tracing::error!(contract = %self.id(), error = %e, "cannot save when this edge left");
                }
                tracing::info!(contract = %self.id(), "stopping: the provider takes the devices over");
                Watched::Left
            }
            _ => Watched::Stopping,
        }
    }

    fn joins_seen(&self) -> u64 {
        // Joins answered and joined sessions taken up change what the
        // provider needs to decode these devices: sync at the next beat.
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.joins_accepted.load(Relaxed) + self.metrics.sessions_activated.load(Relaxed)
    }

    /// A heartbeat: every device's delivered counter (`full`), or only those
    /// changed since the last one sent.
    fn beat_msg(
        &self,
        epoch: u64,
        sent: &mut HashMap<Eui64, FcntState>,
        full: bool,
        leaving: bool,
    ) -> HeartbeatRequest {
        let last = self.delivered.last();
        let delivered = self
            .signed
            .dev_euis()
            .into_iter()
            .filter_map(|e| {
                let s = *last.get(&e)?;
                let changed = sent.insert(e, s) != Some(s);
                (full || changed).then(|| counter_msg(e, s, 0))
            })
            .collect();
        HeartbeatRequest {
            contract_id: self.id().to_owned(),
            epoch,
            delivered,
            leaving,
            standby: self.ranking.standby(self.id()),
        }
    }

    /// Become the holder: release from the provider under a higher epoch
    /// and publish what is held after its counters. Returns the epoch held.
    async fn take_back(&self, client: &mut HandoverClient<Channel>, mut epoch: u64) -> u64 {
        let started = Instant::now();
        let window = self.beat() * self.signed.contract.activation.missed_heartbeats;
        let id = self.id().to_owned();
        loop {
            let attempt = async {
                let st = client
                    .status(StatusRequest {
                        contract_id: id.clone(),
                    })
                    .await?
                    .into_inner();
                let want = epoch.max(st.epoch) + 1;
                client
                    .release(ReleaseRequest {
                        contract_id: id.clone(),
                        epoch: want,
                    })
                    .await
                    .map(|r| r.into_inner())
            };
            match attempt.await {
                Ok(reply) => {
                    epoch = reply.epoch;
                    let left_ms = self.state().left_ms;
                    if let Err(e) = self.save_state(&State {
                        epoch,
                        left_ms: None,
                    }) {
                        tracing::error!(contract = %id, error = %e, "cannot save the epoch");
                    }
                    let known = reply.delivered.iter().map(counter_of).collect();
                    let after = after_for(&self.signed.dev_euis(), &known);
                    let joins = states(
                        &id,
                        "join",
                        reply.joins.iter().map(|j| (j.dev_eui, &j.join_state)),
                    );
                    let macs = states(
                        &id,
                        "MAC",
                        reply.macs.iter().map(|m| (m.dev_eui, &m.mac_state)),
                    );
                    let heard = self
                        .ask(|done| Control::Resume {
                            after,
                            joins,
                            macs,
                            done,
                        })
                        .await
                        .unwrap_or_default();
                    if !reply.receipt_json.is_empty() {
                        // Off the heartbeat path: checking EdgeX's record
                        // takes seconds, and a customer silent that long
                        // would be taken over again.
                        let (mut client, me, signed) =
                            (client.clone(), self.identity.clone(), self.signed.clone());
                        let config = self.config.clone();
                        let json = reply.receipt_json.clone();
                        tokio::spawn(async move {
                            let records = super::records::EdgexRecords::of(&config);
                            let known = super::settle::Known {
                                heard: &heard,
                                left_ms,
                                records: records.as_ref(),
                            };
                            let dir = &config.service.data_dir;
                            if let Err(e) =
                                super::settle::settle(&mut client, &me, &signed, dir, &json, known)
                                    .await
                            {
                                tracing::error!(contract = %signed.contract.id, error = %e, "the provider's receipt was not settled");
                            }
                        });
                    }
                    self.metrics
                        .handover_releases
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(contract = %id, epoch, "holding the handed-over devices");
                    return epoch;
                }
                Err(s) if s.code() == Code::FailedPrecondition => {
                    // Someone moved the epoch between Status and Release: again.
                    tracing::info!(contract = %id, why = s.message(), "release raced; retrying");
                }
                Err(s) => {
                    if started.elapsed() >= window {
                        tracing::warn!(contract = %id, error = %s.message(), "provider unreachable: publishing the devices without its counters");
                        let devices = self.signed.dev_euis();
                        let after = devices
                            .into_iter()
                            .map(|e| (e, FcntState::default()))
                            .collect();
                        self.ask(|done| Control::Resume {
                            after,
                            joins: Vec::new(),
                            macs: Vec::new(),
                            done,
                        })
                        .await;
                        return epoch;
                    }
                }
            }
            tokio::time::sleep(self.beat() / 4).await;
        }
    }

    async fn sync(&self, client: &mut HandoverClient<Channel>, epoch: u64) -> Result<(), Hitch> {
        let wanted = self.signed.dev_euis();
        let counters = self
            .ask(|reply| Control::Counters {
                devices: wanted.clone(),
                reply,
            })
            .await
            .unwrap_or_default();
        let joins = self
            .ask(|reply| Control::JoinStates {
                devices: wanted.clone(),
                reply,
            })
            .await
            .unwrap_or_default();
        let macs = self
            .ask(|reply| Control::MacStates {
                devices: wanted.clone(),
                reply,
            })
            .await
            .unwrap_or_default();
        let devices = match sessions(&self.config, &wanted, &counters, &joins, &macs) {
            Ok(d) => d,
            Err(e) => return Err(Hitch::Down(format!("collecting sessions: {e}"))),
        };
        client
            .sync_sessions(SyncRequest {
                contract_id: self.id().to_owned(),
                epoch,
                devices,
            })
            .await
            .map(|_| ())
            .map_err(hitch)
    }
}

/// The sessions of `wanted` devices as this edge runs them: the devices
/// file, keys set through the secret API, profiles, and counters.
/// Per-device states the provider gave back as JSON; one that does not
/// read is logged and left out (the customer keeps its own).
fn states<T: serde::de::DeserializeOwned>(
    contract: &str,
    what: &str,
    given: impl Iterator<Item = (u64, impl AsRef<str>)>,
) -> Vec<(Eui64, T)> {
    given
        .filter_map(|(eui, json)| match serde_json::from_str(json.as_ref()) {
            Ok(s) => Some((Eui64::from_u64(eui), s)),
            Err(e) => {
                tracing::error!(contract, error = %e, "unreadable {what} state from the provider");
                None
            }
        })
        .collect()
}

pub fn sessions(
    config: &Config,
    wanted: &[Eui64],
    counters: &[(Eui64, FcntState, u32)],
    joins: &[(Eui64, crate::lorawan::otaa::JoinState)],
    macs: &[(Eui64, crate::lorawan::mac::MacState)],
) -> anyhow::Result<Vec<DeviceSession>> {
    let profiles = crate::codec::profile::load_dir(&config.devices.profiles_dir)?;
    let entries = crate::devices::load(&config.devices.file)?;
    let secrets = crate::store::secrets::SecretStore::open(&config.service.data_dir)?.sessions()?;
    let mut out = Vec::new();
    for e in entries.into_iter().filter(|e| wanted.contains(&e.dev_eui)) {
        let secret = secrets.iter().find(|(n, _)| *n == e.name).map(|(_, s)| s);
        // An OTAA device's session is its join state's active one (none
        // yet: the provider gets its keys and join state only).
        let otaa = match (e.join_eui, e.app_key) {
            (Some(join_eui), Some(app_key)) => {
                let state = joins
                    .iter()
                    .find(|(eui, _)| *eui == e.dev_eui)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                Some((join_eui, app_key, state))
            }
            _ => None,
        };
        let (addr, nwk, app) = match (&otaa, e.dev_addr, &e.nwk_s_key, &e.app_s_key, secret) {
            (Some((_, key, state)), ..) => match state.active {
                Some(s) => {
                    let (n, a) = s.keys(key);
                    (s.dev_addr, n.expose().to_vec(), a.expose().to_vec())
                }
                None => (crate::lorawan::DevAddr(0), Vec::new(), Vec::new()),
            },
            (None, _, _, _, Some(s)) => (
                s.dev_addr,
                s.nwk_s_key.expose().to_vec(),
                s.app_s_key.expose().to_vec(),
            ),
            (None, Some(a), Some(n), Some(k), None) => {
                (a, n.expose().to_vec(), k.expose().to_vec())
            }
            _ => anyhow::bail!("device {} has no session to hand over", e.name),
        };
        let profile = profiles
            .get(&e.profile)
            .ok_or_else(|| anyhow::anyhow!("device {}: unknown profile {}", e.name, e.profile))?;
        let (state, down) = counters
            .iter()
            .find(|(eui, _, _)| *eui == e.dev_eui)
            .map_or((FcntState::default(), 0), |(_, s, d)| (*s, *d));
        out.push(DeviceSession {
            name: e.name.clone(),
            dev_eui: e.dev_eui.as_u64(),
            dev_addr: addr.0,
            nwk_s_key: nwk,
            app_s_key: app,
            profile_json: serde_json::to_string(profile)?,
            codec: enum_to_str(&e.codec),
            fcnt_policy: enum_to_str(&e.fcnt_policy),
            counter: Some(counter_msg(e.dev_eui, state, down)),
            rx_windows: Some(crate::handover::pb::RxWindows {
                rx1_delay_s: e.rx_windows.rx1_delay.map(u32::from),
                rx1_dr_offset: e.rx_windows.rx1_dr_offset.map(u32::from),
                rx2_frequency: e.rx_windows.rx2_frequency,
                rx2_data_rate: e.rx_windows.rx2_data_rate.map(|d| d.to_string()),
            }),
            region: e.region.map(|r| r.to_string()).unwrap_or_default(),
            otaa: otaa.map(|(join_eui, key, state)| crate::handover::pb::Otaa {
                join_eui: join_eui.as_u64(),
                app_key: key.expose().to_vec(),
                mac_version: enum_to_str(&e.mac_version),
                join_state: serde_json::to_string(&state).expect("join state serialises"),
            }),
            mac_state: macs
                .iter()
                .find(|(eui, _)| *eui == e.dev_eui)
                .map(|(_, m)| serde_json::to_string(m).expect("MAC state serialises"))
                .unwrap_or_default(),
        });
    }
    Ok(out)
}
