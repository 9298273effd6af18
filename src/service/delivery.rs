//! Wiring the way to EdgeX: the outbox readings are journaled in, and the
//! task that drains it to core-data (REST) or onto the message bus.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::{BusType, Config, Delivery};
use crate::edgex::bus::BusMessage;
use crate::edgex::outbox::OutboxSink;
use crate::metrics::Metrics;

/// The bus's own channels: requests that arrive for us, and what we send
/// (replies, system events, telemetry) beside the events.
pub struct BusChannels {
    pub req_tx: mpsc::Sender<BusMessage>,
    pub req_rx: mpsc::Receiver<BusMessage>,
    pub rep_tx: mpsc::Sender<BusMessage>,
    pub rep_rx: mpsc::Receiver<BusMessage>,
}

impl BusChannels {
    pub fn new() -> Self {
        let (req_tx, req_rx) = mpsc::channel(256);
        let (rep_tx, rep_rx) = mpsc::channel(256);
        Self {
            req_tx,
            req_rx,
            rep_tx,
            rep_rx,
        }
    }
}

/// Open the outbox and spawn the task draining it to EdgeX. On the bus,
/// also the receiver of the requests that arrive for us (answered by the
/// control plane, in their own task so a slow one never stalls delivery).
pub fn start(
    config: &Config,
    metrics: &Arc<Metrics>,
    bus: Option<BusChannels>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<(OutboxSink, Option<mpsc::Receiver<BusMessage>>)> {
    let dir = config.service.data_dir.join("outbox");
    let outbox = &config.edgex.outbox;
    let journal = crate::store::outbox::Journal::open(&dir, outbox.max_bytes, outbox.when_full)?;
    metrics.outbox_depth.store(journal.pending(), Relaxed);
    let journal = Arc::new(std::sync::Mutex::new(journal));
    let wake = Arc::new(tokio::sync::Notify::new());
    let pending = journal.lock().expect("journal lock").pending();
    let dead_letters = dir.join("outbox.dead");
    let mut requests = None;
    match (config.edgex.delivery, bus) {
        (Delivery::Rest, _) => {
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
        (Delivery::MessageBus, Some(channels)) => {
            let bus = &config.edgex.message_bus;
            tracing::info!(host = %bus.host, port = bus.port(), kind = ?bus.r#type, pending, "delivering events on the EdgeX message bus");
            requests = Some(channels.req_rx);
            let bus = crate::edgex::bus::Bus {
                config: bus.clone(),
                journal: journal.clone(),
                wake: wake.clone(),
                metrics: metrics.clone(),
                dead_letters,
                subscriptions: crate::edgex::requests::subscriptions(
                    &bus.base_topic_prefix,
                    &config.service.name,
                ),
                requests: Some(channels.req_tx),
                replies: Some(channels.rep_rx),
            };
            tasks.push(match bus.config.r#type {
                BusType::Mqtt => tokio::spawn(bus.run()),
                BusType::NatsCore | BusType::NatsJetstream => {
                    tokio::spawn(crate::edgex::nats::Nats(bus).run())
                }
            });
        }
        (Delivery::MessageBus, None) => {
            anyhow::bail!("delivery on the message bus needs the bus's channels")
        }
        (Delivery::None, _) => unreachable!("checked by the caller"),
    }
    Ok((
        OutboxSink {
            service: config.service.name.clone(),
            journal,
            wake,
            metrics: metrics.clone(),
            delivered: None,
        },
        requests,
    ))
}
