//! MQTT ingest with rumqttc: subscribes to the configured gateway and
//! application topics, decodes each message by its subscription's kind, and
//! survives broker restarts (rumqttc reconnects on the next poll; we
//! resubscribe on every CONNACK).
//!
//! Acks are manual and the session persistent: a QoS 1 message is
//! acknowledged by the pipeline only once its uplink is durable or rejected,
//! so if we die first the broker redelivers it to our client id.
//!
//! Downlinks go back to a gateway the way its uplinks came: on
//! `{prefix}gateway/{id}/command/down`, in the same marshaler; the bridge's
//! `event/ack` answers are read from the matching ack topics.

pub mod kicked;
pub mod quiet;
pub mod refusal;
mod routes;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet};
use tokio::sync::mpsc;

use super::bridge::downlink::{decode_tx_ack, downlink_frame, Marshaler};
use super::{application, bridge as gateway, topic_matches, Ack, AckQueue, IngestEvent};
use crate::config::{MqttConfig, StreamKind};
use crate::downlink::{AppCommand, TxAck, TxRequest};
use crate::lorawan::Eui64;
use crate::metrics::{Metrics, Reason, Source};

/// Messages read from the broker and not yet taken by the pipeline, at
/// most (the pipeline's own queue is in front of it).
const BACKLOG_MAX: usize = 512;

/// Connection options for one of our MQTT clients (this ingest, and the
/// EdgeX message bus): keep-alive of at least 5 s, credentials and TLS if
/// given (the TLS material was checked at load).
pub fn options(
    client_id: &str,
    host: &str,
    port: u16,
    keep_alive: Duration,
    credentials: Option<(&str, &str)>,
    tls: Option<&crate::config::MqttTls>,
) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_keep_alive(keep_alive.max(Duration::from_secs(5)));
    if let Some((u, p)) = credentials {
        opts.set_credentials(u, p);
    }
    if let Some(t) = tls {
        let config = t.client_config().expect("checked at load");
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    opts
}

/// The ack topic filter of a gateway uplink subscription
/// (`[prefix/]gateway/+/event/up` → `[prefix/]gateway/+/event/ack`).
fn ack_filter(up_filter: &str) -> Option<String> {
    up_filter
        .strip_suffix("event/up")
        .map(|p| format!("{p}event/ack"))
}

/// A gateway's topic prefix and id, from `{prefix}gateway/{id}/event/...`.
fn gateway_of(topic: &str) -> Option<(&str, Eui64)> {
    let mut levels = topic.rsplitn(4, '/');
    let (_kind, _event, id, rest) = (
        levels.next()?,
        levels.next()?,
        levels.next()?,
        levels.next()?,
    );
    let prefix = rest.strip_suffix("gateway")?;
    Some((prefix, Eui64::from_hex(id).ok()?))
}

/// Run the MQTT ingest until `tx` closes.
pub async fn run(
    cfg: MqttConfig,
    tx: mpsc::Sender<IngestEvent>,
    mut downlinks: mpsc::Receiver<TxRequest>,
    mut app_commands: mpsc::Receiver<AppCommand>,
    metrics: Arc<Metrics>,
    max_bytes: usize,
) {
    let ack_filters: Vec<String> = cfg
        .subscriptions
        .iter()
        .filter(|s| s.kind == StreamKind::Gateway)
        .filter_map(|s| ack_filter(&s.topic))
        .collect();
    // How to reach each gateway heard: its topic prefix and marshaler.
    let mut gateways: HashMap<Eui64, (String, Marshaler)> = HashMap::new();
    // How to reach each device's network server (application streams), and
    // the commands for it not yet acknowledged by the broker.
    let mut routes = routes::Routes::default();
    let mut commands = routes::Unacked::default();
    let mut opts = options(
        &cfg.client_id,
        &cfg.host,
        cfg.port,
        cfg.keep_alive,
        cfg.username.as_deref().zip(cfg.password.as_deref()),
        cfg.tls.as_ref(),
    );
    opts.set_clean_session(cfg.clean_session);
    opts.set_manual_acks(true);
    // rumqttc drops the connection on an oversize packet; let it take large
    // ones so that *we* reject them, counted, without a reconnect loop.
    opts.set_max_packet_size(max_bytes.max(1 << 20) + 1024, 1 << 16);
    let qos = rumqttc::qos(cfg.qos).unwrap_or(rumqttc::QoS::AtLeastOnce);
    // Acks come back from the pipeline as packet ids (`AckQueue`) and go on
    // the client's request queue as it has room.
    let (client, mut events) = AsyncClient::new(opts, 4096);
    let (ack_tx, mut acks) = AckQueue::new();
    let mut backoff = Duration::from_millis(100);
    // Connected (a CONNACK since the last error): an error then is a lost
    // connection, before it a failed attempt.
    let mut up = false;
    // Received but not yet taken by the pipeline. The event loop is polled
    // (acks and pings flow) while this queue is under BACKLOG_MAX; past it,
    // nothing more is read from the broker until the pipeline takes some:
    // TCP holds the rest back, so a broker that pushes a backlog of tens of
    // thousands (no in-flight limit) costs no more memory than a few hundred.
    let mut backlog: VecDeque<IngestEvent> = VecDeque::new();
    let mut drained = true;
    let mut kicks = kicked::KickWatch::default();
    let mut quiet = quiet::QuietWatch::new(cfg.subscriptions.len());
    loop {
        let polled = tokio::select! {
            biased;
            permit = tx.reserve(), if !backlog.is_empty() => match permit {
                Ok(p) => {
                    p.send(backlog.pop_front().expect("guarded"));
                    if backlog.is_empty() && !drained {
                        // After a burst: give the memory back.
                        drained = true;
                        backlog.shrink_to(BACKLOG_MAX / 8);
                        crate::fsutil::release_free_memory();
                    }
                    continue;
                }
                Err(_) => return,
            },
            Some(a) = acks.rx.recv() => {
                acks.push(a, &client);
                continue;
            }
            Some(req) = downlinks.recv() => {
                let sent = match gateways.get(&req.gateway) {
                    Some((prefix, m)) => client
                        .try_publish(
                            format!("{prefix}gateway/{}/command/down", req.gateway),
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            downlink_frame(&req, *m),
                        )
                        .map(|()| commands.published(None))
                        .map_err(|e| format!("publishing the downlink: {e}")),
                    None => Err(format!("gateway {} has not been heard on MQTT", req.gateway)),
                };
                if let Err(e) = sent {
                    backlog.push_back(IngestEvent::TxAck(TxAck { id: req.id, result: Err(e) }));
                }
                continue;
            }
            Some(cmd) = app_commands.recv() => {
                // QoS 1: answered once the broker acknowledges it (the
                // client retransmits it across reconnects until then).
                let sent = client.try_publish(
                    cmd.route.command_topic.clone(),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    cmd.route.command(cmd.dev_eui, cmd.fport, cmd.confirmed, &cmd.payload),
                );
                match sent {
                    Ok(()) => commands.published(Some(cmd.id)),
                    Err(e) => backlog.push_back(IngestEvent::TxAck(TxAck {
                        id: cmd.id,
                        result: Err(format!("publishing the command: {e}")),
                    })),
                }
                continue;
            }
            ev = events.poll(), if backlog.len() < BACKLOG_MAX => ev,
        };
        if backlog.len() >= BACKLOG_MAX / 2 {
            drained = false;
        }
        if acks.waiting() > 0 {
            acks.flush(&client);
        }
        for i in quiet.due(std::time::Instant::now()) {
            let topic = &cfg.subscriptions[i].topic;
            tracing::warn!(%topic, "no message has matched this Ingest.Mqtt subscription in {}s: if the gateway bridge or network server publishes under a prefix (eu868/gateway/..., say), subscribe to it with that prefix", quiet::QUIET_AFTER.as_secs());
        }
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                up = true;
                kicks.connected(std::time::Instant::now());
                backoff = Duration::from_millis(100);
                tracing::info!(host = %cfg.host, port = cfg.port, "MQTT connected; subscribing");
                let topics = cfg
                    .subscriptions
                    .iter()
                    .map(|s| &s.topic)
                    .chain(&ack_filters);
                for t in topics {
                    if let Err(e) = client.try_subscribe(t.clone(), qos) {
                        tracing::warn!(topic = %t, error = %e, "MQTT subscribe failed");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // Refusals are final: acknowledge them at once.
                let refuse = |reason: Reason, detail: &dyn std::fmt::Display| {
                    metrics.reject(reason, detail);
                    Ack::new(ack_tx.clone(), &p).send();
                };
                if ack_filters.iter().any(|f| topic_matches(f, &p.topic)) {
                    match decode_tx_ack(&p.payload) {
                        Ok(a) => backlog.push_back(IngestEvent::TxAck(a)),
                        Err(e) => {
                            metrics.reject(e.reason(), &format_args!("topic {}: {e}", p.topic))
                        }
                    }
                    Ack::new(ack_tx.clone(), &p).send();
                    continue;
                }
                let Some((i, sub)) = cfg
                    .subscriptions
                    .iter()
                    .enumerate()
                    .find(|(_, s)| topic_matches(&s.topic, &p.topic))
                else {
                    refuse(Reason::UnknownTopic, &format_args!("topic {}", p.topic));
                    continue;
                };
                quiet.matched(i);
                if p.payload.len() > max_bytes {
                    refuse(
                        Reason::Oversize,
                        &format_args!("{}-byte message on {}", p.payload.len(), p.topic),
                    );
                    continue;
                }
                let ack = || Some(Ack::new(ack_tx.clone(), &p));
                let ev = match sub.kind {
                    StreamKind::Gateway => gateway::decode(&p.payload).map(|up| {
                        metrics.received(Source::GatewayMqtt);
                        if let Some((prefix, id)) = gateway_of(&p.topic) {
                            let m = Marshaler::of(&p.payload);
                            if gateways
                                .get(&id)
                                .is_none_or(|(pre, old)| pre != prefix || *old != m)
                            {
                                gateways.insert(id, (prefix.to_string(), m));
                            }
                        }
                        IngestEvent::Phy {
                            phy: up.phy,
                            rx: up.rx,
                            source: Source::GatewayMqtt,
                            ack: ack(),
                        }
                    }),
                    StreamKind::Application => application::decode(&p.payload).map(|mut up| {
                        metrics.received(Source::ApplicationMqtt);
                        up.route = routes.of(up.dev_eui, &p.topic, &p.payload);
                        IngestEvent::App(up, ack())
                    }),
                };
                match ev {
                    Ok(ev) => backlog.push_back(ev),
                    Err(e) => refuse(e.reason(), &format_args!("topic {}: {e}", p.topic)),
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => commands.written(pkid),
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                if let Some(id) = commands.acknowledged(a.pkid) {
                    backlog.push_back(IngestEvent::TxAck(TxAck { id, result: Ok(()) }));
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::PubAck(_) | rumqttc::Outgoing::PubRec(_))) => {
                super::ack_written();
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                quiet.subscribed(std::time::Instant::now());
                metrics
                    .mqtt_subacks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                metrics
                    .mqtt_reconnects
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if !std::mem::take(&mut up) {
                    let (kind, why) = crate::ingest::mqtt::refusal::classify(&e, "Ingest.Mqtt");
                    metrics.mqtt_connect_failures[kind.index()]
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(host = %cfg.host, port = cfg.port, reason = kind.as_str(), retry_in = ?backoff,
                        "MQTT ingest could not connect: {why}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                if kicks.lost(std::time::Instant::now()) {
                    metrics
                        .mqtt_client_id_conflicts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(client_id = %cfg.client_id, host = %cfg.host, port = cfg.port,
                        "the broker keeps closing the ingest connection right after accepting it: \
                         another MQTT client is probably using this client id (Ingest.Mqtt.ClientId); \
                         messages published while we are off are lost for us");
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "MQTT connection lost");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_topics() {
        assert_eq!(
            ack_filter("gateway/+/event/up").as_deref(),
            Some("gateway/+/event/ack")
        );
        assert_eq!(
            ack_filter("eu868/gateway/+/event/up").as_deref(),
            Some("eu868/gateway/+/event/ack")
        );
        assert_eq!(ack_filter("gateway/#"), None);
        let id = Eui64::from_hex("0016c001f153a14c").unwrap();
        assert_eq!(
            gateway_of("gateway/0016c001f153a14c/event/up"),
            Some(("", id))
        );
        assert_eq!(
            gateway_of("eu868/gateway/0016c001f153a14c/event/up"),
            Some(("eu868/", id))
        );
        assert_eq!(gateway_of("eu868/gw/0016c001f153a14c/event/up"), None);
        assert_eq!(gateway_of("gateway/zz/event/up"), None);
    }
}
