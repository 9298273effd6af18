//! The running service: binds the configured ingest sources, the API,
//! EdgeX delivery and registration, and starts the uplink [`pipeline`], the
//! one task that owns all per-device state.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, Delivery};
use crate::counters::CounterStore;
use crate::device_state::DeviceStates;
use crate::devices::Registry;
use crate::downlink::queue::DownlinkQueue;
use crate::downlink::scheduler::Scheduler;
use crate::downlink::Transmitters;
use crate::edgex::outbox::OutboxSink;
use crate::handover::delivered::Delivered;
use crate::lorawan::{Eui64, FcntState};
use crate::metrics::Metrics;
use crate::secrets::{SecretStore, Session};
use crate::sink::Sink;

pub mod discovery;
mod held;
pub mod keys;
mod pipeline;
pub mod provisioning;
use pipeline::Pipeline;

/// What `run` needs besides the config: the devices, and where uplinks go.
pub struct Parts {
    pub registry: Registry,
    pub sink: Box<dyn Sink>,
    pub metrics: Arc<Metrics>,
}

/// Addresses actually bound (port 0 in config becomes a real port here).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub udp: Option<std::net::SocketAddr>,
    /// The Basics Station endpoints, when `Ingest.BasicStation` is on.
    pub station: Option<std::net::SocketAddr>,
    pub api: std::net::SocketAddr,
    /// The provider's handover endpoint, when `Handover.Listen` is set.
    pub handover: Option<std::net::SocketAddr>,
}

/// Load devices and profiles named by `config`.
pub fn load_registry(config: &Config) -> anyhow::Result<Registry> {
    let profiles = crate::codec::profile::load_dir(&config.devices.profiles_dir)?;
    let entries = crate::devices::load(&config.devices.file)?;
    let registry = Registry::build(entries, &profiles)?;
    tracing::info!(
        devices = registry.len(),
        profiles = profiles.len(),
        "devices loaded"
    );
    Ok(registry)
}

/// Bind every enabled source and start the pipeline. Returns once bound,
/// with the addresses and a handle that finishes when `shutdown` fires and
/// everything pending was published.
pub async fn start(
    config: Arc<Config>,
    parts: Parts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Bound, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    // A configuration built in code gets the ids a loaded one has.
    let config = if config.ingest.mqtt.client_id.is_empty()
        || config.edgex.message_bus.client_id.is_empty()
    {
        let mut c = (*config).clone();
        c.derive_client_ids();
        Arc::new(c)
    } else {
        config
    };
    let config = keys::broker_credentials(config).await?;
    // State first: if it cannot be opened, nothing has been started.
    let store = CounterStore::open(&config.service.data_dir)?;
    let (tx, rx) = mpsc::channel(4096);
    let api = tokio::net::TcpListener::bind(config.service.api_bind)
        .await
        .with_context(|| format!("binding the API on {}", config.service.api_bind))?;
    let mut bound = Bound {
        udp: None,
        station: None,
        api: api.local_addr()?,
        handover: None,
    };
    tracing::info!(addr = %bound.api, "device-service API listening");
    let jwt = config.secret_store.enabled && !config.secret_store.disable_jwt_validation;
    if config.service.api_token.is_none() && !jwt && !bound.api.ip().is_loopback() {
        tracing::warn!(addr = %bound.api, "neither Service.ApiToken nor EdgeX secure mode (SecretStore) is set: the API's write routes (secrets, commands) are open to anyone who can reach this address");
    }
    let max = config.ingest.max_message_bytes;
    let mut parts = parts;
    let mut secrets = SecretStore::open(&config.service.data_dir)?;
    if config.secret_store.enabled {
        // Secure mode: the EdgeX secret store keeps what arrives.
        secrets = secrets.memory_only();
    }
    for (name, s) in secrets.sessions()? {
        match parts.registry.by_name(&name) {
            Some(id) => parts
                .registry
                .set_session(id, s.dev_addr, &s.nwk_s_key, &s.app_s_key),
            None => {
                tracing::warn!(device = %name, "stored session for a device not in the devices file")
            }
        }
    }
    // Devices-file devices with no keys yet (none are needed for an
    // application stream): secure mode reads them from the secret store.
    let keyless: std::collections::BTreeSet<String> = parts
        .registry
        .iter()
        .filter(|d| d.crypto.is_none() && d.otaa.is_none() && !d.removed)
        .map(|d| d.name.to_string())
        .collect();
    let devices = Arc::new(DeviceStates::new(&parts.registry, &config.site_region()));
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let queue = Arc::new(DownlinkQueue::open(
        &config.service.data_dir,
        config.downlink.max_queued,
        parts.metrics.clone(),
    )?);
    let api_state = Arc::new(crate::api::ApiState::new(
        &config,
        parts.metrics.clone(),
        devices.clone(),
        secrets,
        control_tx.clone(),
        queue.clone(),
    ));
    // Every profile a device from EdgeX or a watcher may name (the demo
    // runs on embedded profiles, with no profiles directory).
    let profiles = if config.devices.profiles_dir.is_dir() {
        crate::codec::profile::load_dir(&config.devices.profiles_dir)?
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect()
    } else {
        Default::default()
    };
    let provisioning = Arc::new(provisioning::Provisioning::new(
        profiles,
        &parts.registry,
        control_tx.clone(),
        parts.metrics.clone(),
    ));
    let _ = api_state.provisioning.set(provisioning.clone());
    // Device definition files: served once their keys are in, registered
    // with core-metadata (below) as device-sdk-go does.
    let definitions = match &config.devices.devices_dir {
        Some(dir) => crate::edgex::device_files::load_dir(dir, &config.service.name)?,
        None => Vec::new(),
    };
    for d in &definitions {
        crate::edgex::requests::serve_edgex_device(&api_state, d);
    }
    let discovery = Arc::new(discovery::DiscoveryService::new(
        &config,
        provisioning,
        parts.metrics.clone(),
    )?);
    let _ = api_state.discovery.set(discovery.clone());
    let mut transmitters = Transmitters::default();
    let mut sources = vec![tokio::spawn(crate::api::serve(api, api_state.clone()))];
    if let (Some(store), Some(p)) = (&api_state.store, api_state.provisioning.get()) {
        sources.push(tokio::spawn(keys::fetch(
            store.clone(),
            api_state.clone(),
            p.clone(),
            if api_state.app_stream {
                Default::default()
            } else {
                keyless
            },
            config.secret_store.key_poll,
        )));
    }
    if discovery.enabled && !config.devices.discovery.interval.is_zero() {
        sources.push(tokio::spawn(discovery::every(
            discovery.clone(),
            api_state.clone(),
            config.devices.discovery.interval,
        )));
    }
    if config.ingest.udp.enabled {
        let sock = UdpSocket::bind(config.ingest.udp.bind)
            .await
            .with_context(|| format!("binding UDP {}", config.ingest.udp.bind))?;
        bound.udp = Some(sock.local_addr()?);
        tracing::info!(addr = %sock.local_addr()?, "Semtech UDP packet-forwarder listening");
        let (down_tx, down_rx) = mpsc::channel(DOWNLINKS_IN_FLIGHT);
        transmitters.udp = Some(down_tx);
        sources.push(tokio::spawn(crate::ingest::udp::serve(
            sock,
            tx.clone(),
            down_rx,
            parts.metrics.clone(),
            max,
            config.ingest.udp.gate().expect("validated at load"),
        )));
    }
    if config.ingest.basic_station.enabled {
        let cfg = config.ingest.basic_station.clone();
        let listener = tokio::net::TcpListener::bind(cfg.bind)
            .await
            .with_context(|| format!("binding Basics Station {}", cfg.bind))?;
        bound.station = Some(listener.local_addr()?);
        tracing::info!(addr = %listener.local_addr()?, tls = cfg.tls.is_some(), "Basics Station LNS listening");
        let (down_tx, down_rx) = mpsc::channel(DOWNLINKS_IN_FLIGHT);
        transmitters.station = Some(down_tx);
        sources.push(tokio::spawn(crate::ingest::station::server::serve(
            listener,
            cfg,
            max,
            config.site_region(),
            tx.clone(),
            down_rx,
            parts.metrics.clone(),
        )));
    }
    if config.ingest.mqtt.enabled {
        let m = parts.metrics.clone();
        let (down_tx, down_rx) = mpsc::channel(DOWNLINKS_IN_FLIGHT);
        transmitters.mqtt = Some(down_tx);
        sources.push(tokio::spawn(crate::ingest::mqtt::run(
            config.ingest.mqtt.clone(),
            tx.clone(),
            down_rx,
            m,
            max,
        )));
    }
    drop(tx);
    // Handover: the customer's side for each contract this edge holds, the
    // provider's side if it listens. Both need to know what EdgeX has.
    let contracts = crate::handover::customer::contracts(&config.service.data_dir)?;
    let handover = !contracts.is_empty() || !config.handover.listen.is_empty();
    let mut delivered = None;
    if config.edgex.delivery != Delivery::None {
        let mut outbox = start_delivery(&config, &parts.metrics, &api_state, &mut sources)?;
        let _ = api_state.events.set(crate::edgex::outbox::EventPusher {
            service: outbox.service.clone(),
            journal: outbox.journal.clone(),
            wake: outbox.wake.clone(),
        });
        if handover {
            let d = Arc::new(Delivered::new(Some(outbox.journal.clone())));
            outbox.delivered = Some(d.clone());
            delivered = Some(d);
        }
        // The outbox first: once any other sink has shown an uplink, it is journaled.
        parts.sink = Box::new(crate::sink::Fanout(vec![Box::new(outbox), parts.sink]));
    } else if handover {
        let d = Arc::new(Delivered::new(None));
        parts.sink = Box::new(crate::handover::delivered::Tracked {
            inner: parts.sink,
            delivered: d.clone(),
        });
        delivered = Some(d);
    }
    // Operating state: silent devices go DOWN in core-metadata.
    let os = &config.devices.operating_state;
    let (operating, changes) = crate::edgex::operating::OperatingState::new(
        os.missed_uplinks,
        os.uplink_interval,
        parts.metrics.clone(),
    );
    for d in parts.registry.iter() {
        operating.expect(d.name.clone(), None);
    }
    if let Some(p) = api_state.provisioning.get() {
        let _ = p.operating.set(operating.clone());
    }
    parts.sink = Box::new(crate::edgex::operating::Observed {
        inner: parts.sink,
        state: operating.clone(),
    });
    let keeper = config.edgex.registry.enabled.then(|| {
        let r = &config.edgex.registry;
        let make = || crate::edgex::keeper::Keeper {
            client: crate::edgex::http::JsonClient::new(&r.url, r.timeout),
            service: config.service.name.clone(),
            host: config.service.host.clone(),
            port: bound.api.port(),
            interval: r.health_check_interval,
        };
        sources.push(tokio::spawn(make().run()));
        make()
    });
    if !config.edgex.telemetry.interval.is_zero() {
        sources.push(tokio::spawn(crate::edgex::telemetry::run(
            config.edgex.telemetry.clone(),
            config.service.name.clone(),
            parts.metrics.clone(),
            operating.clone(),
            api_state.clone(),
        )));
    }
    sources.push(tokio::spawn(crate::edgex::operating::run(
        operating,
        config.edgex.metadata.enabled.then(|| {
            crate::edgex::http::JsonClient::new(
                &config.edgex.metadata.url,
                config.edgex.metadata.timeout,
            )
        }),
        changes,
    )));
    let standby = match &delivered {
        Some(d) => {
            let roles = crate::handover::Roles {
                config: config.clone(),
                contracts,
                control: control_tx.clone(),
                delivered: d.clone(),
                metrics: parts.metrics.clone(),
            };
            let started = roles.start(&mut sources).await?;
            bound.handover = started.listening;
            if let Some(p) = started.provider {
                let _ = api_state.provider.set(p);
            }
            started.standby
        }
        None => Vec::new(),
    };
    if config.edgex.metadata.enabled {
        let md = &config.edgex.metadata;
        let api = api_state.clone();
        let registrar = crate::edgex::metadata::Registrar {
            client: crate::edgex::http::JsonClient::new(&md.url, md.timeout),
            service: config.service.name.clone(),
            base_address: format!("http://{}:{}", config.service.host, bound.api.port()),
            profiles_dir: config.devices.profiles_dir.clone(),
            devices: crate::edgex::metadata::DeviceSpec::from_registry(&parts.registry),
            definitions: definitions.clone(),
            watchers: discovery
                .watchers()
                .iter()
                .map(|w| w.document.clone())
                .collect(),
            on_devices: Some(Arc::new(move |devices: Vec<serde_json::Value>| {
                for d in devices {
                    let name = d["name"].as_str().unwrap_or_default();
                    let served = api.provisioning.get().is_some_and(|p| p.serves(name));
                    if api.devices.id(name).is_none() && !served {
                        crate::edgex::requests::serve_edgex_device(&api, &d);
                    }
                }
            })),
            metrics: parts.metrics.clone(),
        };
        let _ = discovery.metadata.set(discovery::MetadataTarget {
            client: crate::edgex::http::JsonClient::new(&md.url, md.timeout),
            service: config.service.name.clone(),
        });
        let shared = Arc::new(crate::edgex::registration::Registration::default());
        let _ = api_state.registration.set(shared.clone());
        sources.push(tokio::spawn(registrar.run(shared)));
    }
    let scheduler = Scheduler::new(
        config.downlink.clone(),
        config.site_region(),
        queue,
        transmitters,
        parts.metrics.clone(),
    );
    let joins = crate::joins::JoinStore::open(&config.service.data_dir)?;
    let mac = pipeline::MacLayer::new(
        config.mac.clone(),
        pipeline::MacStore::open(&config.service.data_dir)?,
    );
    let mut pipeline = Pipeline::new(
        config.clone(),
        parts,
        store,
        devices,
        control_rx,
        scheduler,
        joins,
        mac,
    );
    pipeline.discovery = Some(discovery);
    for eui in standby {
        pipeline.stand_by(eui);
    }
    let handle = tokio::spawn(async move {
        let result = pipeline.run(rx, shutdown).await;
        for s in sources {
            s.abort();
        }
        if let Some(k) = keeper {
            k.deregister().await;
        }
        result
    });
    Ok((bound, handle))
}

/// Downlinks handed to one gateway transmitter and not yet taken by it.
const DOWNLINKS_IN_FLIGHT: usize = 256;

/// What the API and the handover ask of the pipeline, which owns the
/// device registry and the counters.
#[derive(Debug)]
pub enum Control {
    /// Keys that arrived through `POST /api/v3/secret` (already stored).
    Session { device: u32, session: Session },
    /// A device from EdgeX or discovery, with its keys: served from now on.
    AddDevice {
        entry: crate::devices::DeviceEntry,
        profile: Arc<crate::codec::DeviceProfile>,
    },
    /// A served device changed in EdgeX (profile, codec, admin state...).
    UpdateDevice {
        entry: crate::devices::DeviceEntry,
        profile: Arc<crate::codec::DeviceProfile>,
    },
    /// A device deleted in EdgeX: no longer served.
    RemoveDevice { dev_eui: Eui64 },
    /// Devices handed over by another edge: decode them, and hold their
    /// uplinks (standby) until told to publish. Known devices get the
    /// sessions given, keep their counters, and keep publishing if they did.
    Adopt {
        devices: Vec<Adopted>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Stop publishing these devices: hold their uplinks instead.
    Standby {
        devices: Vec<Eui64>,
        done: oneshot::Sender<()>,
    },
    /// Publish these devices again: first the held uplinks after the
    /// counter given (what the other edge delivered), then live.
    Resume {
        after: Vec<(Eui64, FcntState)>,
        /// The join state of devices the other edge answered joins of.
        joins: Vec<(Eui64, crate::lorawan::otaa::JoinState)>,
        /// The MAC state of the devices as the other edge left it.
        macs: Vec<(Eui64, crate::lorawan::mac::MacState)>,
        done: oneshot::Sender<()>,
    },
    /// The uplink counter and next FCntDown of these devices.
    Counters {
        devices: Vec<Eui64>,
        reply: oneshot::Sender<Vec<(Eui64, FcntState, u32)>>,
    },
    /// Whether this edge answers the JoinRequests of these devices (a
    /// container taking them over answers them: the joins it would not
    /// know of are left to it).
    AnswerJoins {
        devices: Vec<Eui64>,
        answer: bool,
        done: oneshot::Sender<()>,
    },
    /// The join state of these devices (the OTAA ones).
    JoinStates {
        devices: Vec<Eui64>,
        reply: oneshot::Sender<Vec<(Eui64, crate::lorawan::otaa::JoinState)>>,
    },
    /// The MAC state of these devices (those that have one).
    MacStates {
        devices: Vec<Eui64>,
        reply: oneshot::Sender<Vec<(Eui64, crate::lorawan::mac::MacState)>>,
    },
}

impl Control {
    /// Send the request `make` builds to the pipeline behind `control` and
    /// wait for its answer.
    pub async fn ask<T>(
        control: &mpsc::UnboundedSender<Control>,
        make: impl FnOnce(oneshot::Sender<T>) -> Control,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        control
            .send(make(tx))
            .map_err(|_| "the pipeline has stopped".to_string())?;
        rx.await.map_err(|_| "the pipeline has stopped".to_string())
    }
}

/// A device handed over, as the pipeline takes it.
pub struct Adopted {
    pub entry: crate::devices::DeviceEntry,
    pub profile: Arc<crate::codec::DeviceProfile>,
    pub up: FcntState,
    pub down: u32,
    /// OTAA devices: their join state as the other edge had it.
    pub join: Option<crate::lorawan::otaa::JoinState>,
    /// Its MAC state as the other edge had it.
    pub mac: Option<crate::lorawan::mac::MacState>,
}

impl std::fmt::Debug for Adopted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Adopted({}, keys redacted)", self.entry.name)
    }
}

/// Open the outbox and spawn the task draining it to EdgeX (bus or REST).
fn start_delivery(
    config: &Config,
    metrics: &Arc<Metrics>,
    api: &Arc<crate::api::ApiState>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<OutboxSink> {
    let dir = config.service.data_dir.join("outbox");
    let outbox = &config.edgex.outbox;
    let journal = crate::outbox::Journal::open(&dir, outbox.max_bytes, outbox.when_full)?;
    metrics.outbox_depth.store(journal.pending(), Relaxed);
    let journal = Arc::new(std::sync::Mutex::new(journal));
    let wake = Arc::new(tokio::sync::Notify::new());
    let pending = journal.lock().expect("journal lock").pending();
    let dead_letters = dir.join("outbox.dead");
    match config.edgex.delivery {
        Delivery::Rest => {
            let cd = &config.edgex.core_data;
            tracing::info!(url = %cd.url, pending, "delivering events to core-data (REST)");
            tasks.push(tokio::spawn(crate::edgex::core_data::deliver(
                crate::edgex::http::JsonClient::new(&cd.url, cd.timeout),
                journal.clone(),
                wake.clone(),
                metrics.clone(),
                dead_letters,
            )));
        }
        Delivery::MessageBus => {
            let bus = &config.edgex.message_bus;
            tracing::info!(host = %bus.host, port = bus.port, pending, "delivering events on the EdgeX message bus");
            // Bus requests (device validation, commands, system events) are
            // answered by their own task, so a slow one never stalls delivery.
            let (req_tx, req_rx) = mpsc::channel(256);
            let (rep_tx, rep_rx) = mpsc::channel(256);
            let prefix = bus.base_topic_prefix.clone();
            let bus_out = crate::edgex::bus::BusOut {
                out: rep_tx.clone(),
                prefix: prefix.clone(),
            };
            if let Some(d) = api.discovery.get() {
                let _ = d.events.set(bus_out.clone());
            }
            let _ = api.bus_out.set(bus_out);
            tasks.push(tokio::spawn(crate::edgex::requests::serve(
                req_rx,
                rep_tx,
                api.clone(),
                prefix.clone(),
            )));
            let bus = crate::edgex::bus::Bus {
                config: bus.clone(),
                journal: journal.clone(),
                wake: wake.clone(),
                metrics: metrics.clone(),
                dead_letters,
                subscriptions: crate::edgex::requests::subscriptions(&prefix, &config.service.name),
                requests: Some(req_tx),
                replies: Some(rep_rx),
            };
            tasks.push(tokio::spawn(bus.run()));
        }
        Delivery::None => unreachable!("checked by the caller"),
    }
    Ok(OutboxSink {
        service: config.service.name.clone(),
        journal,
        wake,
        metrics: metrics.clone(),
        delivered: None,
    })
}
