//! The container takeover: a silent customer's own image, run by a
//! Docker-API engine (Docker, balenaEngine, `podman system service`) on
//! this edge, with the contract's memory and CPU limits.
//!
//! Activation, in order:
//! 1. This edge's pipeline publishes the held uplinks and goes live, as the
//!    in-process takeover does: the first event does not wait for the engine.
//! 2. The image is checked against the contract's digest and loaded from the
//!    store, streamed, unless the engine holds it already.
//! 3. The container's data directory gets a configuration derived from this
//!    edge's (the same broker and EdgeX; its own API port and MQTT client
//!    ids), the devices file with the synced sessions (0600), the profiles
//!    and the counters.
//! 4. The container runs on the host network, so it reaches the broker and
//!    EdgeX as this edge does.
//! 5. Once its MQTT ingest has its SUBACKs, this edge holds the devices
//!    again. Between that SUBACK and the hold both publish: the same frames
//!    under the same event ids, which core-data stores once.
//!
//! If the engine fails at any step, this edge goes on publishing (logged,
//! counted in `handover_container_failures_total`): nothing is lost for
//! want of a container. Stand-down stops and removes the container, then
//! reports what this edge itself delivered. That is never later than what
//! the container delivered, so the customer publishes again anything the
//! container took, under the same ids.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::takeover::{Handed, InProcess, RunningContainer, Takeover, TakeoverError};
use crate::config::Config;
use crate::edgex::delivered::later;
use crate::image::store::{BlobStore, Digest};
use crate::lorawan::{Eui64, FcntState};
use crate::metrics::Metrics;

mod data_dir;
// The engine's client (bollard) is the `container` feature; a lean build
// without it refuses `Takeover: container` when it starts.
#[cfg(feature = "container")]
mod engine;
#[cfg(feature = "container")]
pub use engine::{Engine, EngineError, RunSpec};
#[cfg(not(feature = "container"))]
mod no_engine;
#[cfg(not(feature = "container"))]
pub use no_engine::{Engine, EngineError, RunSpec};

/// How long a container has to stand by and answer at a hand-back.
const STAND_BY_WITHIN: Duration = Duration::from_secs(5);
pub use data_dir::{container_config, write_data_dir};

/// How long a started container may take to subscribe to the gateway stream.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The image id (`sha256:` of its config) named by a docker-save tar's
/// `manifest.json`.
pub fn image_id(tar: &Path) -> std::io::Result<String> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut archive = tar::Archive::new(std::fs::File::open(tar)?);
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        if entry.path()?.as_os_str() != "manifest.json" {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Item {
            #[serde(rename = "Config")]
            config: String,
        }
        let items: Vec<Item> =
            serde_json::from_reader(&mut entry).map_err(|e| bad(&format!("manifest.json: {e}")))?;
        let [item] = &items[..] else {
            return Err(bad("manifest.json must name one image"));
        };
        let hex = item
            .config
            .strip_prefix("blobs/sha256/")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad("manifest.json: Config is not blobs/sha256/<hex>"))?;
        return Ok(format!("sha256:{hex}"));
    }
    Err(bad("no manifest.json: not a docker-save image"))
}

/// The container takeover. Starting the container (loading the image, its
/// subscription) runs as a task of its own, after this edge went live: the
/// takeover does not wait for the engine. Each contract has a `Gate`: a
/// start holds it throughout, and a hand-back first says the container is
/// no longer wanted, then waits for the gate before it removes the
/// container. So a container never outlives a hand-back, even when the
/// hand-back's call is dropped while it waits (the customer asks again).
pub struct Container(Arc<Shared>);

#[derive(Default)]
struct Gate {
    lock: tokio::sync::Mutex<()>,
    /// Set by a takeover, cleared by a hand-back.
    wanted: std::sync::atomic::AtomicBool,
}

struct Shared {
    inner: InProcess,
    engine: String,
    /// This edge's configuration: the container's is derived from it.
    config: Arc<Config>,
    store: BlobStore,
    /// Data directories of the containers, one per contract.
    dir: PathBuf,
    running: Mutex<HashMap<String, RunningContainer>>,
    /// Contracts whose container ran until it was stood down: it answered
    /// the devices' joins, so its join states are the truth at hand-back.
    ran: Mutex<std::collections::HashSet<String>>,
    /// By contract; present once armed since start (the first arm clears a
    /// container left running by a provider that died).
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    metrics: Arc<Metrics>,
}

/// The container's name for contract `id` (ids are letters, digits, - and _).
pub fn container_name(id: &str) -> String {
    format!("device-lorawan-handover-{id}")
}

impl Container {
    /// `provider_dir` holds the image store (`images/`) and gets `containers/`.
    pub fn new(
        inner: InProcess,
        config: Arc<Config>,
        provider_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(Shared {
            inner,
            engine: config.handover.engine.clone(),
            store: BlobStore::open(&provider_dir.join("images"))?,
            dir: provider_dir.join("containers"),
            config,
            running: Mutex::new(HashMap::new()),
            ran: Mutex::new(Default::default()),
            gates: Mutex::new(HashMap::new()),
            metrics,
        })))
    }
}

impl Shared {
    /// Contract `id`'s gate, and whether it is new.
    fn gate(&self, id: &str) -> (Arc<Gate>, bool) {
        let mut gates = self.gates.lock().expect("gates");
        match gates.get(id) {
            Some(g) => (g.clone(), false),
            None => {
                let g = Arc::new(Gate::default());
                gates.insert(id.to_owned(), g.clone());
                (g, true)
            }
        }
    }

    /// Remove a container of contract `id` left by an earlier run, unless a
    /// takeover wants one (its start replaces it anyway).
    async fn clear_leftover(&self, id: &str, gate: &Gate) {
        let _held = gate.lock.lock().await;
        if gate.wanted.load(Relaxed) {
            return;
        }
        let removed = match Engine::connect(&self.engine).await {
            Ok(engine) => engine.remove(&container_name(id)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            tracing::warn!(contract = %id, error = %e, "cannot clear an old container");
        }
    }

    /// Steps 2 to 5 of the module doc, holding the gate; on failure this
    /// edge goes on publishing.
    async fn launch(&self, handed: Handed<'_>, delivered: &[(Eui64, FcntState)], gate: &Gate) {
        let _held = gate.lock.lock().await;
        if !gate.wanted.load(Relaxed) {
            return; // handed back before the start began
        }
        let id = &handed.contract.contract.id;
        let t = Instant::now();
        let result = match self.start(handed, delivered).await {
            // The container hears the stream now: hold ours again.
            // Then this edge stands down and names the counters the
            // container publishes after: each frame by exactly one of them.
            Ok(running) => match self.inner.stand_down(handed).await {
                Ok(mine) => {
                    let after: Vec<(Eui64, FcntState)> = delivered
                        .iter()
                        .map(|&(eui, s)| match mine.iter().find(|(e, _)| *e == eui) {
                            Some(&(_, m)) if later(m, s) => (eui, m),
                            _ => (eui, s),
                        })
                        .collect();
                    let path = self.dir.join(id).join(crate::handover::resume_file::RESUME);
                    match crate::handover::resume_file::write(&path, &after) {
                        Ok(()) => Ok(running),
                        Err(e) => {
                            if let Ok(engine) = Engine::connect(&self.engine).await {
                                let _ = engine.remove(&running.name).await;
                            }
                            Err(TakeoverError::Store {
                                what: "the container's resume file",
                                error: e.to_string(),
                            })
                        }
                    }
                }
                Err(e) => {
                    if let Ok(engine) = Engine::connect(&self.engine).await {
                        let _ = engine.remove(&running.name).await;
                    }
                    Err(e)
                }
            },
            Err(e) => Err(TakeoverError::Engine(e.to_string())),
        };
        match result {
            Ok(running) => {
                tracing::warn!(contract = %id, container = %running.name, api = %running.api, ms = t.elapsed().as_millis() as u64, "the customer's image runs its devices");
                self.running
                    .lock()
                    .expect("running")
                    .insert(id.clone(), running);
            }
            Err(e) => {
                self.metrics
                    .handover_container_failures
                    .fetch_add(1, Relaxed);
                tracing::error!(contract = %id, error = %e, "container takeover failed: this edge goes on publishing the devices itself");
                if let Err(e) = self.inner.answer_joins(handed, true).await {
                    tracing::error!(contract = %id, error = %e, "cannot take the devices' joins back");
                }
            }
        }
    }

    /// Steps 2 to 4, and the wait for the subscription.
    async fn start(
        &self,
        handed: Handed<'_>,
        delivered: &[(Eui64, FcntState)],
    ) -> Result<RunningContainer, EngineError> {
        let c = &handed.contract.contract;
        let digest = Digest::parse(&c.image.digest).map_err(|e| EngineError::Image {
            digest: c.image.digest.clone(),
            message: e.to_string(),
        })?;
        let image_err = |message: String| EngineError::Image {
            digest: digest.to_string(),
            message,
        };
        // A tampered or incomplete blob is refused before the engine sees it.
        self.store
            .verify(&digest)
            .map_err(|e| image_err(e.to_string()))?;
        let tar = self.store.path(&digest);
        let image_id = image_id(&tar).map_err(|e| image_err(e.to_string()))?;
        let engine = Engine::connect(&self.engine).await?;
        let loaded = engine.ensure_image(&tar, &image_id).await?;
        tracing::info!(contract = %c.id, image = %image_id, loaded, api = %engine.api_version(), "customer image in the engine");

        // The container starts after what either edge delivered: what this
        // edge published meanwhile is not accepted a second time.
        let mine = self.inner.delivered.last();
        let after: Vec<(Eui64, FcntState)> = delivered
            .iter()
            .map(|&(eui, s)| match mine.get(&eui) {
                Some(&m) if later(m, s) => (eui, m),
                _ => (eui, s),
            })
            .collect();
        let data = self.dir.join(&c.id);
        let api =
            free_port_beside(self.config.service.api_bind).map_err(|source| EngineError::Data {
                path: data.clone(),
                source,
            })?;
        write_data_dir(&data, &self.config, &c.id, api, handed.sessions, &after).map_err(
            |source| EngineError::Data {
                path: data.clone(),
                source,
            },
        )?;
        let name = container_name(&c.id);
        let id = engine
            .run(&RunSpec {
                name: &name,
                image_id: &image_id,
                data_dir: &data,
                memory_bytes: c.resources.memory_bytes,
                cpu_millis: c.resources.cpu_millis,
                contract: &c.id,
            })
            .await?;
        let subscriptions = self.config.ingest.mqtt.subscriptions.len() as u64;
        if let Err(e) = wait_subscribed(&engine, &name, api, subscriptions).await {
            let _ = engine.remove(&name).await;
            return Err(e);
        }
        Ok(RunningContainer {
            name,
            id,
            image: image_id,
            api,
        })
    }
}

#[tonic::async_trait]
impl Takeover for Container {
    async fn arm(&self, handed: Handed<'_>) -> Result<(), TakeoverError> {
        let me = &self.0;
        me.inner.arm(handed).await?;
        let id = handed.contract.contract.id.clone();
        let (gate, first) = me.gate(&id);
        if first {
            // A container left by a provider that died while holding the
            // devices must not publish beside the customer. In a task: an
            // engine that hangs must not hold up the customer's sync.
            let me = me.clone();
            tokio::spawn(async move { me.clear_leftover(&id, &gate).await });
        }
        Ok(())
    }

    async fn activate(
        &self,
        handed: Handed<'_>,
        delivered: &[(Eui64, FcntState)],
    ) -> Result<(), TakeoverError> {
        // The container answers the devices' joins: one answered here
        // before it runs would be a session it does not know.
        self.0.inner.answer_joins(handed, false).await?;
        self.0.inner.activate(handed, delivered).await?;
        let me = self.0.clone();
        let (gate, _) = me.gate(&handed.contract.contract.id);
        gate.wanted.store(true, Relaxed);
        let contract = handed.contract.clone();
        let sessions = handed.sessions.to_vec();
        let delivered = delivered.to_vec();
        tokio::spawn(async move {
            let handed = Handed {
                contract: &contract,
                sessions: &sessions,
            };
            me.launch(handed, &delivered, &gate).await
        });
        Ok(())
    }

    async fn stand_down(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, FcntState)>, TakeoverError> {
        let me = &self.0;
        let id = &handed.contract.contract.id;
        let (gate, _) = me.gate(id);
        gate.wanted.store(false, Relaxed);
        // Bounded: a start in progress ends within its image load and
        // READY_WITHIN.
        let _held = gate.lock.lock().await;
        let running = me.running.lock().expect("running").get(id).cloned();
        let mut theirs = Vec::new();
        if let Some(running) = running {
            // The container stands by first and says what it delivered, so
            // the customer publishes only what comes after (bounded: a
            // container that does not answer is removed all the same, and
            // the customer publishes again what it may have delivered).
            let dir = me.dir.join(id);
            let asked = std::fs::write(dir.join(crate::handover::resume_file::STANDBY), b"");
            if asked.is_ok() {
                let deadline = Instant::now() + STAND_BY_WITHIN;
                loop {
                    match crate::handover::resume_file::read(
                        &dir.join(crate::handover::resume_file::STOOD_BY),
                    ) {
                        Some(Ok(c)) => {
                            theirs = c;
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(contract = %id, error = %e, "the container's delivered counters do not read");
                            break;
                        }
                        None if Instant::now() >= deadline => {
                            tracing::warn!(contract = %id, "the container did not stand by in time");
                            break;
                        }
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
            // Refuse the release while the container may still publish
            // (the customer asks again).
            let engine = Engine::connect(&me.engine)
                .await
                .map_err(|e| TakeoverError::Engine(e.to_string()))?;
            engine
                .remove(&running.name)
                .await
                .map_err(|e| TakeoverError::Engine(e.to_string()))?;
            me.running.lock().expect("running").remove(id);
            me.ran.lock().expect("ran").insert(id.clone());
            tracing::info!(contract = %id, container = %running.name, "container stopped and removed");
        }
        let mut mine = me.inner.stand_down(handed).await?;
        for (eui, s) in theirs {
            match mine.iter_mut().find(|(e, _)| *e == eui) {
                Some((_, m)) if later(s, *m) => *m = s,
                Some(_) => {}
                None => mine.push((eui, s)),
            }
        }
        Ok(mine)
    }

    /// The joins this edge answered itself or, when the container ran,
    /// those the container did (its `joins.log`, in its data directory,
    /// read once it is removed). Not the later of the two: while the
    /// container ran, this edge only shadowed the JoinRequests it heard,
    /// including ones the container never answered (those heard while it
    /// started), so its state can be further along and wrong.
    async fn join_states(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, crate::lorawan::otaa::JoinState)>, TakeoverError> {
        let mut states = self.0.inner.join_states(handed).await?;
        let id = &handed.contract.contract.id;
        let ran = self.0.ran.lock().expect("ran").remove(id);
        let dir = self.0.dir.join(id);
        if !ran || !dir.join("joins.log").exists() {
            return Ok(states);
        }
        let store =
            crate::store::joins::JoinStore::open(&dir).map_err(|e| TakeoverError::Store {
                what: "the container's join states",
                error: e.to_string(),
            })?;
        for (eui, theirs) in store.iter() {
            match states.iter_mut().find(|(e, _)| e == eui) {
                Some((_, ours)) => *ours = theirs.clone(),
                None => states.push((*eui, theirs.clone())),
            }
        }
        // This edge goes back to shadowing the customer's joins from the
        // truth, not from its own guesses.
        self.0.inner.learn_joins(states.clone()).await?;
        Ok(states)
    }

    async fn deliveries(
        &self,
        handed: Handed<'_>,
    ) -> Result<Vec<(Eui64, Vec<FcntState>)>, TakeoverError> {
        self.0.inner.deliveries(handed).await
    }

    /// The container's own deliveries are not listed.
    fn lists_every_delivery(&self) -> bool {
        false
    }

    fn container(&self, contract: &str) -> Option<RunningContainer> {
        self.0
            .running
            .lock()
            .expect("running")
            .get(contract)
            .cloned()
    }
}

/// A free port on the address this edge's own API binds (reachable by the
/// same EdgeX services), for the container's API.
fn free_port_beside(api: SocketAddr) -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind(SocketAddr::new(api.ip(), 0))?.local_addr()
}

/// Poll the container's `/metrics` until its MQTT ingest has a SUBACK per
/// subscription; fail early if it stops.
async fn wait_subscribed(
    engine: &Engine,
    name: &str,
    api: SocketAddr,
    subscriptions: u64,
) -> Result<(), EngineError> {
    let t = Instant::now();
    loop {
        if let Some(n) = scrape(api, "lorawan_mqtt_subacks_total").await {
            if n >= subscriptions {
                return Ok(());
            }
        }
        engine.check_running(name).await?;
        if t.elapsed() > READY_WITHIN {
            return Err(EngineError::NotReady {
                name: name.to_owned(),
                what: format!("not subscribed to the gateway stream within {READY_WITHIN:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One counter from a service's `/metrics`.
async fn scrape(mut api: SocketAddr, metric: &str) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if api.ip().is_unspecified() {
        api.set_ip([127, 0, 0, 1].into());
    }
    let mut s = tokio::net::TcpStream::connect(api).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: container\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut text))
        .await
        .ok()?
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests;
