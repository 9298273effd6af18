//! Wiring the gateways: each enabled protocol bound (Semtech UDP, Basics
//! Station, MQTT — the gateway bridge or a network server's stream), its
//! uplinks into the pipeline's channel, and its downlink transmitter.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::Bound;
use crate::config::Config;
use crate::downlink::Transmitters;
use crate::ingest::IngestEvent;
use crate::metrics::Metrics;

/// Downlinks handed to one gateway transmitter and not yet taken by it.
const DOWNLINKS_IN_FLIGHT: usize = 256;

/// Bind every enabled gateway protocol; their tasks go into `tasks`, the
/// addresses bound into `bound`.
pub async fn bind(
    config: &Config,
    bound: &mut Bound,
    tx: mpsc::Sender<IngestEvent>,
    metrics: &Arc<Metrics>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<Transmitters> {
    let mut transmitters = Transmitters::default();
    let max = config.ingest.max_message_bytes;
    if config.ingest.udp.enabled {
        let sock = UdpSocket::bind(config.ingest.udp.bind)
            .await
            .with_context(|| format!("binding UDP {}", config.ingest.udp.bind))?;
        bound.udp = Some(sock.local_addr()?);
        tracing::info!(addr = %sock.local_addr()?, "Semtech UDP packet-forwarder listening");
        let (down_tx, down_rx) = mpsc::channel(DOWNLINKS_IN_FLIGHT);
        transmitters.udp = Some(down_tx);
        tasks.push(tokio::spawn(crate::ingest::udp::serve(
            sock,
            tx.clone(),
            down_rx,
            metrics.clone(),
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
        tasks.push(tokio::spawn(crate::ingest::station::server::serve(
            listener,
            cfg,
            max,
            config.site_region(),
            tx.clone(),
            down_rx,
            metrics.clone(),
        )));
    }
    if config.ingest.mqtt.enabled {
        let (down_tx, down_rx) = mpsc::channel(DOWNLINKS_IN_FLIGHT);
        transmitters.mqtt = Some(down_tx);
        let (app_tx, app_rx) = mpsc::channel(DOWNLINKS_IN_FLIGHT);
        transmitters.app = Some(app_tx);
        tasks.push(tokio::spawn(crate::ingest::mqtt::run(
            config.ingest.mqtt.clone(),
            tx,
            down_rx,
            app_rx,
            metrics.clone(),
            max,
        )));
    }
    Ok(transmitters)
}
