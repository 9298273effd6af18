//! The Semtech UDP packet-forwarder protocol (v2, v1 accepted), so a
//! gateway Pi needs no ChirpStack: PUSH_DATA is answered with PUSH_ACK and
//! its `rxpk` frames are ingested; PULL_DATA is answered with PULL_ACK and
//! the gateway's address remembered for downlinks, which go out as
//! PULL_RESP and come back acknowledged by TX_ACK.

pub mod downlink;
pub mod gate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::bridge::{b64, GatewayUplink, MessageError};
use super::IngestEvent;
use crate::downlink::{TxAck, TxRequest};
use crate::lorawan::{DataRate, Eui64};
use crate::metrics::{Metrics, Reason, Source};
use crate::pipeline::uplink::RxMeta;
use downlink::{pull_resp, tx_ack_result, TX_ACK};

pub const PUSH_DATA: u8 = 0x00;
pub const PUSH_ACK: u8 = 0x01;
pub const PULL_DATA: u8 = 0x02;
pub const PULL_ACK: u8 = 0x04;

/// Why a datagram was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DatagramError {
    #[error("datagram of {0} bytes is too short")]
    TooShort(usize),
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("unknown packet type {0:#04x}")]
    Type(u8),
    #[error("PUSH_DATA body: {0}")]
    Body(MessageError),
}

/// What a datagram from a gateway asks of us.
#[derive(Debug, PartialEq)]
pub enum Packet {
    Push {
        token: [u8; 2],
        gateway: Eui64,
        frames: Vec<Result<GatewayUplink, MessageError>>,
    },
    Pull {
        version: u8,
        token: [u8; 2],
        gateway: Eui64,
    },
    /// The answer to our PULL_RESP `token`: sent, or the refusal's name.
    TxAck {
        token: [u8; 2],
        gateway: Eui64,
        result: Result<(), String>,
    },
}

#[derive(Deserialize)]
struct PushBody {
    #[serde(default)]
    rxpk: Vec<Rxpk>,
}

#[derive(Deserialize)]
struct Rxpk {
    data: String,
    #[serde(default)]
    tmst: Option<u32>,
    /// GPS time of the reception (ms since the GPS epoch), GPS gateways only.
    #[serde(default)]
    tmms: Option<u64>,
    /// UTC time of the reception (RFC 3339), GPS gateways only.
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    freq: Option<f64>,
    #[serde(default)]
    datr: Option<serde_json::Value>,
    #[serde(default)]
    stat: Option<i8>,
    #[serde(default)]
    rssi: Option<i32>,
    #[serde(default)]
    lsnr: Option<f32>,
    /// Multi-antenna gateways (v2 `rsig`) report per-antenna signal here.
    #[serde(default)]
    rsig: Vec<Rsig>,
}

#[derive(Deserialize)]
struct Rsig {
    #[serde(default)]
    rssic: Option<i32>,
    #[serde(default)]
    lsnr: Option<f32>,
}

/// Parse one datagram.
pub fn parse(dgram: &[u8]) -> Result<Packet, DatagramError> {
    if dgram.len() < 4 {
        return Err(DatagramError::TooShort(dgram.len()));
    }
    if !matches!(dgram[0], 1 | 2) {
        return Err(DatagramError::Version(dgram[0]));
    }
    let token = [dgram[1], dgram[2]];
    let eui = || -> Result<Eui64, DatagramError> {
        dgram
            .get(4..12)
            .map(|b| Eui64(b.try_into().expect("8 bytes")))
            .ok_or(DatagramError::TooShort(dgram.len()))
    };
    match dgram[3] {
        PUSH_DATA => {
            let gateway = eui()?;
            let body: PushBody = serde_json::from_slice(&dgram[12..])
                .map_err(|e| DatagramError::Body(MessageError::Json(e.to_string())))?;
            let frames = body
                .rxpk
                .into_iter()
                .map(|p| rxpk_uplink(gateway, p))
                .collect();
            Ok(Packet::Push {
                token,
                gateway,
                frames,
            })
        }
        PULL_DATA => Ok(Packet::Pull {
            version: dgram[0],
            token,
            gateway: eui()?,
        }),
        TX_ACK => Ok(Packet::TxAck {
            token,
            gateway: eui()?,
            result: tx_ack_result(&dgram[12..]).map_err(DatagramError::Body)?,
        }),
        other => Err(DatagramError::Type(other)),
    }
}

fn rxpk_uplink(gateway: Eui64, p: Rxpk) -> Result<GatewayUplink, MessageError> {
    if p.stat == Some(-1) {
        return Err(MessageError::BadCrc);
    }
    let first = p.rsig.first();
    Ok(GatewayUplink {
        phy: b64("rxpk.data", &p.data)?,
        rx: RxMeta {
            station: None,
            gateway,
            rssi: p.rssi.or(first.and_then(|r| r.rssic)).unwrap_or(0),
            snr: p.lsnr.or(first.and_then(|r| r.lsnr)).unwrap_or(0.0),
            tmst: p.tmst,
            time_ns: p
                .time
                .as_deref()
                .and_then(crate::ingest::bridge::rfc3339_unix_ns),
            gps_time_ns: p.tmms.and_then(|ms| ms.checked_mul(1_000_000)).or_else(|| {
                p.time
                    .as_deref()
                    .and_then(crate::ingest::bridge::utc_to_gps_ns)
            }),
            frequency: p.freq.map(|mhz| (mhz * 1e6).round() as u32),
            // FSK frames carry a number here; only LoRa is answered.
            datr: p
                .datr
                .as_ref()
                .and_then(|d| d.as_str())
                .and_then(DataRate::parse),
        },
    })
}

/// Build a PUSH_DATA datagram (simulated gateways, tests).
pub fn push_data(token: u16, gateway: Eui64, frames: &[GatewayUplink]) -> Vec<u8> {
    use base64::Engine;
    let rxpk: Vec<_> = frames
        .iter()
        .map(|f| {
            let mut v = serde_json::json!({
                "tmst": f.rx.tmst.unwrap_or(0), "chan": 0, "rfch": 0,
                "freq": f.rx.frequency.unwrap_or(868_100_000) as f64 / 1e6, "stat": 1, "modu": "LORA",
                "datr": f.rx.datr.map_or("SF7BW125".to_string(), |d| d.to_string()), "codr": "4/5", "rssi": f.rx.rssi, "lsnr": f.rx.snr, "size": f.phy.len(),
                "data": base64::engine::general_purpose::STANDARD.encode(&f.phy),
            });
            if let Some(ns) = f.rx.gps_time_ns {
                v["tmms"] = (ns / 1_000_000).into();
            }
            v
        })
        .collect();
    let mut d = vec![2, (token >> 8) as u8, token as u8, PUSH_DATA];
    d.extend_from_slice(&gateway.0);
    d.extend_from_slice(&serde_json::to_vec(&serde_json::json!({ "rxpk": rxpk })).expect("json"));
    d
}

/// Serve the packet-forwarder protocol on `socket` until `tx` closes.
pub async fn serve(
    socket: UdpSocket,
    tx: mpsc::Sender<IngestEvent>,
    mut downlinks: mpsc::Receiver<TxRequest>,
    metrics: Arc<Metrics>,
    max_bytes: usize,
    gate: gate::Gate,
) {
    let mut buf = vec![0u8; 65_536];
    // Where each gateway pulls from, and its protocol version.
    let mut pull_addrs: HashMap<Eui64, (SocketAddr, u8)> = HashMap::new();
    // PULL_RESP token → (downlink id, gateway).
    let mut tokens: HashMap<u16, (u32, Eui64)> = HashMap::new();
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            Some(req) = downlinks.recv() => {
                let answer = send_downlink(&socket, &pull_addrs, &mut tokens, &req).await;
                if let Some(result) = answer {
                    if tx.send(IngestEvent::TxAck(TxAck { id: req.id, result })).await.is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        let (n, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                continue;
            }
        };
        if n > max_bytes {
            metrics.reject(
                Reason::Oversize,
                &format_args!("{n}-byte datagram from {peer}"),
            );
            continue;
        }
        match parse(&buf[..n]) {
            Ok(Packet::Push {
                token,
                gateway,
                frames,
            }) => {
                if let Err(why) = gate.allows(gateway) {
                    metrics.reject(
                        Reason::GatewayRefused,
                        &format_args!("PUSH_DATA from {peer}: {why}"),
                    );
                    continue;
                }
                let ack = [2, token[0], token[1], PUSH_ACK];
                let _ = socket.send_to(&ack, peer).await;
                for f in frames {
                    match f {
                        Ok(up) => {
                            metrics.received(Source::Udp);
                            let ev = IngestEvent::Phy {
                                phy: up.phy,
                                rx: up.rx,
                                source: Source::Udp,
                                ack: None,
                            };
                            if tx.send(ev).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            metrics.reject(e.reason(), &format_args!("gateway {gateway}: {e}"))
                        }
                    }
                }
            }
            Ok(Packet::Pull {
                version,
                token,
                gateway,
            }) => {
                if let Err(why) = gate.pull(&mut pull_addrs, gateway, peer, version) {
                    metrics.reject(Reason::GatewayRefused, &why);
                    continue;
                }
                let ack = [version, token[0], token[1], PULL_ACK];
                let _ = socket.send_to(&ack, peer).await;
            }
            Ok(Packet::TxAck {
                token,
                gateway,
                result,
            }) => {
                let token = u16::from_be_bytes(token);
                match tokens.remove(&token) {
                    Some((id, gw)) if gw == gateway => {
                        if tx
                            .send(IngestEvent::TxAck(TxAck { id, result }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    _ => tracing::debug!(%gateway, token, "TX_ACK for no downlink of ours"),
                }
            }
            Err(DatagramError::Body(e)) => {
                metrics.reject(e.reason(), &format_args!("datagram from {peer}: {e}"))
            }
            Err(e) => metrics.reject(
                Reason::MalformedUdp,
                &format_args!("datagram from {peer}: {e}"),
            ),
        }
    }
}

/// Send `req` as a PULL_RESP to its gateway's pull address. Returns the
/// outcome when it is already known: refused (gateway never pulled), or sent
/// to a protocol v1 forwarder, which never answers with TX_ACK.
async fn send_downlink(
    socket: &UdpSocket,
    pull_addrs: &HashMap<Eui64, (SocketAddr, u8)>,
    tokens: &mut HashMap<u16, (u32, Eui64)>,
    req: &TxRequest,
) -> Option<Result<(), String>> {
    let Some(&(addr, version)) = pull_addrs.get(&req.gateway) else {
        return Some(Err(format!(
            "gateway {} has not sent PULL_DATA: no address to send to",
            req.gateway
        )));
    };
    let token = req.id as u16;
    let mut d = pull_resp(token, req);
    d[0] = version;
    if let Err(e) = socket.send_to(&d, addr).await {
        return Some(Err(format!("sending PULL_RESP to {addr}: {e}")));
    }
    if version == 1 {
        return Some(Ok(()));
    }
    // Tokens are reused after 65,536 downlinks; an entry that old was answered or lost.
    tokens.insert(token, (req.id, req.gateway));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_data_round_trips() {
        let up = GatewayUplink {
            phy: vec![0x40, 1, 2, 3],
            rx: RxMeta {
                time_ns: None,
                gps_time_ns: None,
                station: None,
                gateway: Eui64::from_u64(7),
                rssi: -90,
                snr: -2.5,
                tmst: Some(42),
                frequency: Some(868_500_000),
                datr: DataRate::parse("SF10BW125"),
            },
        };
        let Packet::Push {
            token,
            gateway,
            frames,
        } = parse(&push_data(
            0xabcd,
            Eui64::from_u64(7),
            std::slice::from_ref(&up),
        ))
        .unwrap()
        else {
            panic!("not a push")
        };
        assert_eq!((token, gateway), ([0xab, 0xcd], Eui64::from_u64(7)));
        assert_eq!(frames, vec![Ok(up)]);
    }

    #[test]
    fn bad_datagrams() {
        assert_eq!(parse(&[2, 0]), Err(DatagramError::TooShort(2)));
        assert_eq!(parse(&[9, 0, 0, 0]), Err(DatagramError::Version(9)));
        assert_eq!(parse(&[2, 0, 0, 0x77]), Err(DatagramError::Type(0x77)));
        assert_eq!(
            parse(&[2, 0, 0, PUSH_DATA, 1, 2]),
            Err(DatagramError::TooShort(6))
        );
        assert!(matches!(
            parse(b"\x02\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08{bad"),
            Err(DatagramError::Body(_))
        ));
        let crc = b"\x02\x00\x00\x00\x01\x02\x03\x04\x05\x06\x07\x08{\"rxpk\":[{\"data\":\"QA==\",\"stat\":-1}]}";
        let Ok(Packet::Push { frames, .. }) = parse(crc) else {
            panic!()
        };
        assert_eq!(frames, vec![Err(MessageError::BadCrc)]);
    }

    #[test]
    fn pull_data_and_tx_ack() {
        let mut d = vec![2, 0x12, 0x34, PULL_DATA];
        d.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            parse(&d),
            Ok(Packet::Pull {
                version: 2,
                token: [0x12, 0x34],
                gateway: Eui64([1, 2, 3, 4, 5, 6, 7, 8])
            })
        );
        d[3] = TX_ACK;
        d.extend_from_slice(br#"{"txpk_ack":{"error":"TX_FREQ"}}"#);
        let Ok(Packet::TxAck { token, result, .. }) = parse(&d) else {
            panic!("not a TX_ACK")
        };
        assert_eq!((token, result), ([0x12, 0x34], Err("TX_FREQ".to_string())));
    }
}
