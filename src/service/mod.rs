//! The composition root: binds the configured gateways (gateways), the
//! way to EdgeX (delivery), the API and the bus requests over one control
//! plane, the handover's roles, and starts the [`crate::pipeline`], the one
//! task that owns all per-device state. The service's tasks are started
//! from here (the handover's roles into the list this passes them); a
//! server then starts its own helpers (its connections, a transmitter).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::{Config, Delivery};
use crate::control::plane::Plane;
use crate::devices::Registry;
use crate::downlink::queue::DownlinkQueue;
use crate::downlink::scheduler::Scheduler;
use crate::edgex::delivered::Delivered;
use crate::pipeline::device_state::DeviceStates;
use crate::store::counters::CounterStore;
use crate::store::secrets::SecretStore;

mod delivery;
mod gateways;
pub mod logging;
pub mod settle;
pub use crate::pipeline::Parts;
use crate::pipeline::{MacLayer, MacStore, Pipeline, Stores};

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
    let registry = Registry::build(entries, &profiles).map_err(|e| match e {
        crate::devices::DevicesError::UnknownProfile { .. } => anyhow::anyhow!(
            "{e}: profiles are read from Devices.ProfilesDir {} (one YAML file each), which holds {}",
            config.devices.profiles_dir.display(),
            match profiles.keys().map(String::as_str).collect::<Vec<_>>().join(", ") {
                s if s.is_empty() => "none".to_string(),
                s => s,
            }
        ),
        e => e.into(),
    })?;
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
///
/// The order is the data's: state first (if it cannot be opened, nothing
/// has started), then EdgeX's side and the gateways, then where readings
/// go (outbox, handover), then the control plane built once from those
/// finished parts and the transports that serve it, and last the pipeline.
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
    let config = crate::edgex::keys::broker_credentials(config).await?;
    // The data directory first: if it cannot be had, nothing has started.
    let claim = crate::store::data_dir::claim(&config.service.data_dir)?;
    let store = CounterStore::open(&config.service.data_dir)?;
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
    let mut parts = parts;
    let (secrets, keyless) = sessions(&config, &mut parts.registry)?;
    let devices = Arc::new(DeviceStates::new(&parts.registry, &config.site_region()));
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    // A customer's image run by a provider holds every device at first.
    let resume = (!config.handover.resume_after.is_empty()).then(|| {
        let devices: Vec<crate::lorawan::Eui64> =
            parts.registry.iter().map(|d| d.dev_eui).collect();
        (devices, control_tx.clone())
    });
    let queue = Arc::new(DownlinkQueue::open(
        &config.service.data_dir,
        config.downlink.max_queued,
        parts.metrics.clone(),
    )?);
    let mut tasks = Vec::new();

    // EdgeX's side: operating state, devices from EdgeX, discovery.
    let os = &config.devices.operating_state;
    let (operating, changes) = crate::edgex::operating::OperatingState::new(
        os.missed_uplinks,
        os.uplink_interval,
        parts.metrics.clone(),
    );
    for d in parts.registry.iter() {
        operating.expect(d.name.clone(), None);
    }
    // The bus's two directions exist before the bus task: discovery and
    // telemetry publish on it, its requests are answered by the plane.
    let bus = (config.edgex.delivery == Delivery::MessageBus).then(delivery::BusChannels::new);
    let bus_out = bus.as_ref().map(|b| crate::edgex::bus::BusOut {
        out: b.rep_tx.clone(),
        prefix: config.edgex.message_bus.base_topic_prefix.clone(),
    });
    let provisioning = Arc::new(crate::edgex::provisioning::Provisioning::new(
        profiles(&config)?,
        &parts.registry,
        control_tx.clone(),
        parts.metrics.clone(),
        Some(operating.clone()),
    ));
    // Device definition files: served once their keys are in, registered
    // with core-metadata (below) as device-sdk-go does.
    let definitions = match &config.devices.devices_dir {
        Some(dir) => crate::edgex::device_files::load_dir(dir, &config.service.name)?,
        None => Vec::new(),
    };
    let md = &config.edgex.metadata;
    let discovery = Arc::new(crate::edgex::discovery::DiscoveryService::new(
        &config,
        provisioning.clone(),
        parts.metrics.clone(),
        md.enabled.then(|| crate::edgex::discovery::MetadataTarget {
            client: crate::edgex::http::JsonClient::new(&md.url, md.timeout),
            service: config.service.name.clone(),
        }),
        bus_out.clone(),
    )?);

    // The gateways, each with its downlink transmitter.
    let (tx, rx) = mpsc::channel(4096);
    let transmitters = gateways::bind(&config, &mut bound, tx, &parts.metrics, &mut tasks).await?;

    // Where readings go: the outbox to EdgeX, what the handover tracks,
    // the operating state each uplink refreshes.
    let contracts = crate::handover::customer::contracts(&config.service.data_dir)?;
    let handover = !contracts.is_empty() || !config.handover.listen.is_empty();
    let mut delivered = None;
    let mut events = None;
    let mut bus_requests = None;
    if config.edgex.delivery != Delivery::None {
        let (mut outbox, requests) = delivery::start(&config, &parts.metrics, bus, &mut tasks)?;
        bus_requests = requests;
        events = Some(crate::edgex::outbox::EventPusher {
            service: outbox.service.clone(),
            journal: outbox.journal.clone(),
            wake: outbox.wake.clone(),
        });
        // Always: a contract offered while the service runs is taken up
        // at once, and its heartbeats need what EdgeX confirmed.
        let d = Arc::new(Delivered::new(Some(outbox.journal.clone())));
        outbox.delivered = Some(d.clone());
        delivered = Some(d);
        // The outbox first: once any other sink has shown an uplink, it is journaled.
        parts.sink = Box::new(crate::pipeline::sink::Fanout(vec![
            Box::new(outbox),
            parts.sink,
        ]));
    } else if handover {
        let d = Arc::new(Delivered::new(None));
        parts.sink = Box::new(crate::edgex::delivered::Tracked {
            inner: parts.sink,
            delivered: d.clone(),
        });
        delivered = Some(d);
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
        tasks.push(tokio::spawn(make().run()));
        make()
    });
    if let (false, Some(bus)) = (config.edgex.telemetry.interval.is_zero(), &bus_out) {
        tasks.push(tokio::spawn(crate::edgex::telemetry::run(
            config.edgex.telemetry.clone(),
            config.service.name.clone(),
            parts.metrics.clone(),
            operating.clone(),
            bus.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::edgex::operating::run(
        operating,
        md.enabled
            .then(|| crate::edgex::http::JsonClient::new(&md.url, md.timeout)),
        changes,
    )));
    // At shutdown, customers hand their devices over before the pipeline
    // stops (they need it to stop publishing and to drain the outbox).
    let (leave, leaving) = tokio::sync::watch::channel(false);
    // A provider on a market remembers frames of devices it does not serve.
    let heard_elsewhere = crate::market::edge::remembers_heard(&config)
        .then(|| Arc::new(std::sync::Mutex::new(Default::default())));
    let mut customers = None;
    let (standby, provider) = match &delivered {
        Some(d) => {
            let roles = crate::handover::Roles {
                config: config.clone(),
                contracts,
                control: control_tx.clone(),
                delivered: d.clone(),
                metrics: parts.metrics.clone(),
                leaving,
            };
            let started = roles.start(&mut tasks).await?;
            customers = Some(started.customers);
            bound.handover = started.listening;
            crate::market::edge::start(
                crate::market::edge::EdgeParts {
                    config: config.clone(),
                    control: control_tx.clone(),
                    heard: heard_elsewhere.clone(),
                    listening: started.listening,
                },
                &mut tasks,
            )?;
            (started.standby, started.provider)
        }
        None => (Vec::new(), None),
    };
    let registration = md
        .enabled
        .then(|| Arc::new(crate::edgex::registration::Registration::default()));

    // The control plane, from the finished parts; then what serves it.
    let mut plane = Plane::new(
        &config,
        parts.metrics.clone(),
        devices.clone(),
        secrets,
        control_tx,
        queue.clone(),
    );
    plane.provider = provider;
    plane.registration = registration.clone();
    plane.events = events;
    plane.discovery = Some(discovery.clone());
    plane.provisioning = Some(provisioning.clone());
    let plane = Arc::new(plane);
    for d in &definitions {
        crate::edgex::requests::serve_edgex_device(&plane, d);
    }
    let api_state = Arc::new(crate::api::ApiState::new(&config, plane.clone()));
    tasks.push(tokio::spawn(crate::api::serve(api, api_state)));
    if let Some(req_rx) = bus_requests {
        let bus_out = bus_out.clone().expect("the bus's channels exist with it");
        tasks.push(tokio::spawn(crate::edgex::requests::serve(
            req_rx,
            bus_out.out,
            plane.clone(),
            bus_out.prefix,
        )));
    }
    if let Some(store) = &plane.store {
        tasks.push(tokio::spawn(crate::edgex::keys::fetch(
            store.clone(),
            plane.clone(),
            provisioning.clone(),
            if plane.app_stream {
                Default::default()
            } else {
                keyless
            },
            config.secret_store.key_poll,
        )));
    }
    if discovery.enabled && !config.devices.discovery.interval.is_zero() {
        let plane = plane.clone();
        tasks.push(tokio::spawn(crate::edgex::discovery::every(
            discovery.clone(),
            move |name| plane.secret_data(name),
            config.devices.discovery.interval,
        )));
    }
    if let Some(shared) = registration {
        let api = plane.clone();
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
                // Devices held for another edge come with their contract.
                for d in devices.iter().filter(|d| !crate::edgex::held::is_held(d)) {
                    let name = d["name"].as_str().unwrap_or_default();
                    let served = api.provisioning.as_ref().is_some_and(|p| p.serves(name));
                    if api.devices.id(name).is_none() && !served {
                        crate::edgex::requests::serve_edgex_device(&api, d);
                    }
                }
            })),
            metrics: parts.metrics.clone(),
        };
        tasks.push(tokio::spawn(registrar.run(shared)));
    }

    // The pipeline, last: it owns the per-device state from here on.
    let scheduler = Scheduler::new(
        config.downlink.clone(),
        config.site_region(),
        queue,
        transmitters,
        parts.metrics.clone(),
    );
    let joins = crate::store::joins::JoinStore::open(&config.service.data_dir)?;
    let mac = MacLayer::new(
        config.mac.clone(),
        MacStore::open(&config.service.data_dir)?,
    );
    let stores = Stores {
        counters: store,
        joins,
        mac,
    };
    let mut pipeline = Pipeline::new(
        config.clone(),
        parts,
        stores,
        devices,
        control_rx,
        scheduler,
    );
    pipeline.discovery = Some(discovery);
    pipeline.heard_elsewhere = heard_elsewhere;
    for eui in standby {
        pipeline.stand_by(eui);
    }
    if let Some((devices, control)) = resume {
        // Until the provider has stood down and named the counters.
        for eui in &devices {
            pipeline.stand_by(*eui);
        }
        tasks.push(tokio::spawn(crate::handover::resume_file::wait_and_resume(
            config.handover.resume_after.clone().into(),
            devices,
            control,
            delivered.clone(),
        )));
    }
    let shutdown = async move {
        shutdown.await;
        let _ = leave.send(true);
        if let Some(c) = customers {
            c.left(HAND_OVER_AT_STOP).await;
        }
    };
    let handle = tokio::spawn(async move {
        let result = pipeline.run(rx, shutdown).await;
        for t in tasks {
            t.abort();
        }
        if let Some(k) = keeper {
            k.deregister().await;
        }
        drop(claim);
        result
    });
    Ok((bound, handle))
}

/// How long a stopping service waits for its handover customers to hand
/// their devices to the provider.
const HAND_OVER_AT_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// The sessions kept in `DataDir/secrets.yaml` (or, in secure mode, none
/// kept here) put into `registry`; and the devices-file devices that still
/// have no keys (secure mode reads them from the secret store).
fn sessions(
    config: &Config,
    registry: &mut Registry,
) -> anyhow::Result<(SecretStore, std::collections::BTreeSet<String>)> {
    let mut secrets = SecretStore::open(&config.service.data_dir)?;
    if config.secret_store.enabled {
        // Secure mode: the EdgeX secret store keeps what arrives.
        secrets = secrets.memory_only();
    }
    for (name, s) in secrets.sessions()? {
        match registry.by_name(&name) {
            Some(id) => registry.set_session(id, s.dev_addr, &s.nwk_s_key, &s.app_s_key),
            None => {
                tracing::warn!(device = %name, "stored session for a device not in the devices file")
            }
        }
    }
    // None are needed for an application stream.
    let keyless = registry
        .iter()
        .filter(|d| d.crypto.is_none() && d.otaa.is_none() && !d.removed)
        .map(|d| d.name.to_string())
        .collect();
    Ok((secrets, keyless))
}

/// Every profile a device from EdgeX or a watcher may name (the demo runs
/// on embedded profiles, with no profiles directory).
fn profiles(
    config: &Config,
) -> anyhow::Result<std::collections::BTreeMap<String, Arc<crate::codec::DeviceProfile>>> {
    if !config.devices.profiles_dir.is_dir() {
        return Ok(Default::default());
    }
    Ok(
        crate::codec::profile::load_dir(&config.devices.profiles_dir)?
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect(),
    )
}
