//! The simulated gateways' side: how receptions reach the service (a
//! Semtech UDP packet forwarder per gateway, or one gateway-bridge client on
//! MQTT), and how they take downlinks and acknowledge them.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::options::{gateway_eui, SimOptions, Target};
use crate::downlink::Transmission;
use crate::ingest::bridge::pb::TxAckStatus;
use crate::ingest::bridge::{self, GatewayUplink, WireFormat};
use crate::ingest::udp::downlink as wire;
use crate::lorawan::Eui64;

/// How simulated gateways deliver their receptions.
pub(super) enum Transport {
    Station {
        links: Vec<super::station_gw::StationLink>,
        region: crate::lorawan::region::Region,
    },
    Udp {
        socks: Vec<Arc<UdpSocket>>,
        token: u16,
    },
    Mqtt {
        client: AsyncClient,
        format: WireFormat,
        prefix: String,
        acks: tokio::sync::watch::Receiver<u64>,
        sent: u64,
    },
}

/// A gateway that, under `refuse_rx1`, refuses the first transmission of
/// each frame (TOO_LATE), so only the scheduler's second try, RX2, goes out.
#[derive(Default)]
struct Rx1Refuser {
    refuse: bool,
    tried: std::collections::HashSet<Vec<u8>>,
}

impl Rx1Refuser {
    fn new(refuse: bool) -> Self {
        Self {
            refuse,
            tried: Default::default(),
        }
    }

    fn accepts(&mut self, t: &Transmission) -> bool {
        if !self.refuse || self.tried.remove(&t.phy) {
            return true;
        }
        if self.tried.len() > 4096 {
            self.tried.clear();
        }
        self.tried.insert(t.phy.clone());
        false
    }
}

/// A UDP gateway's downlink side: PULL_DATA now and every few seconds (as
/// a packet forwarder keeps its NAT path open), PULL_RESP → TX_ACK.
async fn udp_gateway(
    sock: Arc<UdpSocket>,
    eui: Eui64,
    down: mpsc::Sender<Transmission>,
    refuse_rx1: bool,
    refused: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut pull = vec![2, 0, 0, crate::ingest::udp::PULL_DATA];
    pull.extend_from_slice(&eui.0);
    let mut keepalive = tokio::time::interval(Duration::from_secs(5));
    let mut buf = vec![0u8; 4096];
    let mut gate = Rx1Refuser::new(refuse_rx1);
    loop {
        let n = tokio::select! {
            _ = keepalive.tick() => {
                let _ = sock.send(&pull).await;
                continue;
            }
            r = sock.recv(&mut buf) => match r { Ok(n) => n, Err(_) => continue },
        };
        if n < 4 || buf[3] != wire::PULL_RESP {
            continue; // PUSH_ACK, PULL_ACK
        }
        let Ok(t) = wire::decode_pull_resp(&buf[4..n]) else {
            continue;
        };
        let ok = gate.accepts(&t);
        let error = if ok { "NONE" } else { "TOO_LATE" };
        let _ = sock.send(&wire::tx_ack([buf[1], buf[2]], eui, error)).await;
        if ok {
            if down.send(t).await.is_err() {
                return;
            }
        } else {
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Transport {
    pub(super) async fn connect(
        target: &Target,
        gateways: usize,
        down: mpsc::Sender<Transmission>,
        sim_opts: &SimOptions,
        refused: Arc<std::sync::atomic::AtomicU64>,
    ) -> anyhow::Result<Self> {
        match target {
            Target::Station(base) => {
                let region = crate::lorawan::region::Region::new(
                    crate::lorawan::region::RegionSettings::new(sim_opts.region),
                );
                let mut links = Vec::new();
                for g in 0..gateways {
                    links.push(
                        super::station_gw::connect(
                            base,
                            gateway_eui(g),
                            region.clone(),
                            down.clone(),
                            sim_opts.refuse_rx1,
                        )
                        .await?,
                    );
                }
                Ok(Transport::Station { links, region })
            }
            Target::Udp(addr) => {
                let mut socks = Vec::new();
                for g in 0..gateways {
                    let s = UdpSocket::bind(if addr.is_ipv4() {
                        "127.0.0.1:0"
                    } else {
                        "[::1]:0"
                    })
                    .await?;
                    s.connect(addr).await?;
                    let s = Arc::new(s);
                    tokio::spawn(udp_gateway(
                        s.clone(),
                        gateway_eui(g),
                        down.clone(),
                        sim_opts.refuse_rx1,
                        refused.clone(),
                    ));
                    socks.push(s);
                }
                // Let the service learn where to send before the first uplink.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Transport::Udp { socks, token: 0 })
            }
            Target::Mqtt {
                host,
                port,
                format,
                prefix,
            } => {
                let mut opts = MqttOptions::new(
                    format!("lorawan-sim-{}", std::process::id()),
                    host.clone(),
                    *port,
                );
                opts.set_keep_alive(Duration::from_secs(30));
                let (client, mut events) = AsyncClient::new(opts, 1024);
                let (ack_tx, acks) = tokio::sync::watch::channel(0u64);
                let commands = format!("{prefix}gateway/+/command/down");
                let (bridge, refuse_rx1) = (client.clone(), sim_opts.refuse_rx1);
                tokio::spawn(async move {
                    let mut n = 0;
                    let mut gate = Rx1Refuser::new(refuse_rx1);
                    loop {
                        match events.poll().await {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                let _ = bridge.try_subscribe(commands.clone(), QoS::AtLeastOnce);
                            }
                            Ok(Event::Incoming(Packet::PubAck(_))) => {
                                n += 1;
                                let _ = ack_tx.send(n);
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                let Ok((id, t)) =
                                    bridge::downlink::decode_downlink_frame(&p.payload)
                                else {
                                    continue;
                                };
                                let ok = gate.accepts(&t);
                                let status = if ok {
                                    TxAckStatus::Ok
                                } else {
                                    TxAckStatus::TooLate
                                };
                                let ack_topic = p.topic.replace("/command/down", "/event/ack");
                                let gw = ack_topic
                                    .rsplit('/')
                                    .nth(2)
                                    .and_then(|g| Eui64::from_hex(g).ok())
                                    .unwrap_or_default();
                                let ack = bridge::downlink::encode_tx_ack(
                                    bridge::downlink::Marshaler::of(&p.payload),
                                    gw,
                                    id,
                                    status,
                                );
                                // QoS 0: the PUBACK count is the uplinks' (see `finish`).
                                let _ = bridge.try_publish(ack_topic, QoS::AtMostOnce, false, ack);
                                if !ok {
                                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                } else if down.send(t).await.is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) if ack_tx.is_closed() => return,
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                });
                Ok(Transport::Mqtt {
                    client,
                    format: *format,
                    prefix: prefix.clone(),
                    acks,
                    sent: 0,
                })
            }
        }
    }

    pub(super) async fn send(
        &mut self,
        gw: usize,
        gw_eui: Eui64,
        up: &GatewayUplink,
    ) -> anyhow::Result<()> {
        match self {
            Transport::Station { links, region } => {
                if let Some(text) =
                    crate::ingest::station::messages::upstream(&up.phy, &up.rx, region)
                {
                    links[gw].send(text).await?;
                } else {
                    // Bytes no station would forward: sent as they are.
                    links[gw].send(hex::encode(&up.phy)).await?;
                }
            }
            Transport::Udp { socks, token } => {
                *token = token.wrapping_add(1);
                socks[gw]
                    .send(&crate::ingest::udp::push_data(
                        *token,
                        gw_eui,
                        std::slice::from_ref(up),
                    ))
                    .await?;
            }
            Transport::Mqtt {
                client,
                format,
                prefix,
                sent,
                ..
            } => {
                let topic = format!("{prefix}gateway/{gw_eui}/event/up");
                client
                    .publish(topic, QoS::AtLeastOnce, false, bridge::encode(up, *format))
                    .await?;
                *sent += 1;
            }
        }
        Ok(())
    }

    pub(super) async fn send_raw(
        &mut self,
        gw: usize,
        gw_eui: Eui64,
        bytes: Vec<u8>,
    ) -> anyhow::Result<()> {
        match self {
            Transport::Station { links, .. } => {
                links[gw]
                    .send(String::from_utf8_lossy(&bytes).into_owned())
                    .await?;
            }
            Transport::Udp { socks, .. } => {
                socks[gw].send(&bytes).await?;
            }
            Transport::Mqtt {
                client,
                prefix,
                sent,
                ..
            } => {
                client
                    .publish(
                        format!("{prefix}gateway/{gw_eui}/event/up"),
                        QoS::AtLeastOnce,
                        false,
                        bytes,
                    )
                    .await?;
                *sent += 1;
            }
        }
        Ok(())
    }

    /// Wait until the broker acknowledged everything published.
    pub(super) async fn finish(self) -> anyhow::Result<()> {
        if let Transport::Mqtt {
            client,
            mut acks,
            sent,
            ..
        } = self
        {
            let wait = acks.wait_for(|n| *n >= sent);
            tokio::time::timeout(Duration::from_secs(30), wait)
                .await
                .map_err(|_| anyhow::anyhow!("broker did not acknowledge all {sent} messages"))??;
            let _ = client.disconnect().await;
        }
        Ok(())
    }
}
