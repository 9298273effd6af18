//! Downlinks on the wire, both ways a gateway speaks:
//! - Semtech UDP packet forwarder (v2): PULL_RESP carrying a `txpk`, answered
//!   by TX_ACK with a `txpk_ack.error` (`NONE` when sent);
//! - ChirpStack gateway bridge v4: a `DownlinkFrame` on
//!   `gateway/{id}/command/down` (protobuf or its JSON mapping, as the
//!   gateway's uplinks came), answered by a `DownlinkTxAck` on `event/ack`.
//!
//! The gateway's side of each (reading a downlink, writing the answer) is
//! here too, for the simulator's gateways and the round-trip tests.

use base64::Engine;
use prost::Message;
use serde::Deserialize;

use super::{TxAck, TxRequest};
use crate::ingest::gateway::{b64 as unb64, pb, MessageError};
use crate::lorawan::{DataRate, Eui64};

pub const PULL_RESP: u8 = 0x03;
pub const TX_ACK: u8 = 0x05;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The PULL_RESP datagram for `req` (protocol v2: `token` comes back in the TX_ACK).
pub fn pull_resp(token: u16, req: &TxRequest) -> Vec<u8> {
    let w = &req.window;
    let mut txpk = serde_json::json!({"txpk": {
        "imme": req.immediately, "freq": f64::from(w.frequency) / 1e6, "rfch": 0,
        "powe": req.power_dbm, "modu": "LORA", "datr": w.datr.to_string(), "codr": "4/5",
        "ipol": true, "size": req.phy.len(), "data": b64(&req.phy),
    }});
    if !req.immediately {
        txpk["txpk"]["tmst"] = req.tmst().into();
    }
    let mut d = vec![2, (token >> 8) as u8, token as u8, PULL_RESP];
    d.extend_from_slice(&serde_json::to_vec(&txpk).expect("json"));
    d
}

#[derive(Deserialize)]
struct TxAckBody {
    txpk_ack: Option<TxpkAck>,
}

#[derive(Deserialize)]
struct TxpkAck {
    error: Option<String>,
}

/// The outcome a TX_ACK body reports. An empty body, or `"error":"NONE"`,
/// means sent (packet forwarder v2); anything else names the refusal.
pub fn tx_ack_result(body: &[u8]) -> Result<Result<(), String>, MessageError> {
    let body = body.trim_ascii();
    // Some forwarders end the body with a NUL.
    let body = body.strip_suffix(&[0]).unwrap_or(body);
    if body.is_empty() {
        return Ok(Ok(()));
    }
    let b: TxAckBody =
        serde_json::from_slice(body).map_err(|e| MessageError::Json(e.to_string()))?;
    Ok(match b.txpk_ack.and_then(|a| a.error) {
        None => Ok(()),
        Some(e) if e == "NONE" => Ok(()),
        Some(e) => Err(e),
    })
}

/// The TX_ACK datagram a packet forwarder answers PULL_RESP `token` with
/// (`error` is `NONE` when it sent the frame).
pub fn tx_ack(token: [u8; 2], gateway: Eui64, error: &str) -> Vec<u8> {
    let mut d = vec![2, token[0], token[1], TX_ACK];
    d.extend_from_slice(&gateway.0);
    let body = serde_json::json!({"txpk_ack": {"error": error}});
    d.extend_from_slice(&serde_json::to_vec(&body).expect("json"));
    d
}

/// What a gateway is asked to transmit, as it reads the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmission {
    pub phy: Vec<u8>,
    /// Concentrator time to transmit at (µs).
    pub tmst: u32,
    pub frequency: u32,
    pub datr: DataRate,
    /// Sent at once (class C), not at `tmst`.
    pub immediately: bool,
}

fn field(name: &'static str) -> MessageError {
    MessageError::Json(format!("missing or invalid {name}"))
}

/// The `txpk` of a PULL_RESP body.
pub fn decode_pull_resp(body: &[u8]) -> Result<Transmission, MessageError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| MessageError::Json(e.to_string()))?;
    let t = v.get("txpk").ok_or_else(|| field("txpk"))?;
    let datr = t
        .get("datr")
        .and_then(|d| d.as_str())
        .and_then(DataRate::parse);
    Ok(Transmission {
        phy: unb64(
            "txpk.data",
            t.get("data")
                .and_then(|d| d.as_str())
                .ok_or_else(|| field("txpk.data"))?,
        )?,
        immediately: t.get("imme").and_then(|x| x.as_bool()) == Some(true),
        tmst: match t.get("imme").and_then(|x| x.as_bool()) {
            Some(true) => 0,
            _ => t
                .get("tmst")
                .and_then(|x| x.as_u64())
                .ok_or_else(|| field("txpk.tmst"))? as u32,
        },
        frequency: (t
            .get("freq")
            .and_then(|x| x.as_f64())
            .ok_or_else(|| field("txpk.freq"))?
            * 1e6)
            .round() as u32,
        datr: datr.ok_or_else(|| field("txpk.datr"))?,
    })
}

/// How a gateway bridge marshals its messages; downlinks go back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marshaler {
    Protobuf,
    Json,
}

impl Marshaler {
    /// JSON if the message starts with `{`, as the bridge's marshalers differ.
    pub fn of(payload: &[u8]) -> Self {
        if payload.first() == Some(&b'{') {
            Marshaler::Json
        } else {
            Marshaler::Protobuf
        }
    }
}

/// A ChirpStack v4 `DownlinkFrame` for `req`, one item: the window is ours
/// to choose, so RX2 is a second frame after a refused RX1.
pub fn downlink_frame(req: &TxRequest, m: Marshaler) -> Vec<u8> {
    let w = &req.window;
    let context = req.uplink_tmst.to_be_bytes().to_vec();
    let frame = pb::DownlinkFrame {
        downlink_id: req.id,
        gateway_id: req.gateway.to_string(),
        items: vec![pb::DownlinkFrameItem {
            phy_payload: req.phy.clone(),
            tx_info: Some(pb::DownlinkTxInfo {
                frequency: w.frequency,
                power: req.power_dbm,
                modulation: Some(pb::Modulation {
                    parameters: Some(pb::modulation::Parameters::Lora(pb::LoraModulationInfo {
                        bandwidth: u32::from(w.datr.bw_khz) * 1000,
                        spreading_factor: u32::from(w.datr.sf),
                        code_rate: pb::CodeRate::Cr45 as i32,
                        polarization_inversion: true,
                        ..Default::default()
                    })),
                }),
                board: 0,
                antenna: 0,
                timing: Some(pb::Timing {
                    parameters: Some(if req.immediately {
                        pb::timing::Parameters::Immediately(pb::ImmediatelyTimingInfo {})
                    } else {
                        pb::timing::Parameters::Delay(pb::DelayTimingInfo {
                            delay: Some(prost_types::Duration {
                                seconds: w.delay.as_secs() as i64,
                                nanos: w.delay.subsec_nanos() as i32,
                            }),
                        })
                    }),
                }),
                context: context.clone(),
            }),
        }],
    };
    match m {
        Marshaler::Protobuf => frame.encode_to_vec(),
        // The protobuf JSON mapping, as the bridge's JSON marshaler reads it.
        Marshaler::Json => serde_json::to_vec(&serde_json::json!({
            "downlinkId": req.id,
            "gatewayId": req.gateway.to_string(),
            "items": [{
                "phyPayload": b64(&req.phy),
                "txInfo": {
                    "frequency": w.frequency, "power": req.power_dbm,
                    "modulation": {"lora": {"bandwidth": u32::from(w.datr.bw_khz) * 1000,
                        "spreadingFactor": w.datr.sf, "codeRate": "CR_4_5", "polarizationInversion": true}},
                    "board": 0, "antenna": 0,
                    "timing": if req.immediately {
                        serde_json::json!({"immediately": {}})
                    } else {
                        serde_json::json!({"delay": {"delay": format!("{}s", w.delay.as_secs_f64())}})
                    },
                    "context": b64(&context),
                },
            }],
        }))
        .expect("json"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonTxAck {
    #[serde(default)]
    downlink_id: u32,
    #[serde(default)]
    items: Vec<JsonTxAckItem>,
}

#[derive(Deserialize)]
struct JsonTxAckItem {
    #[serde(default)]
    status: Option<String>,
}

/// A `DownlinkFrame` as a gateway bridge reads it: its id and the first
/// item (we send one item per frame).
pub fn decode_downlink_frame(payload: &[u8]) -> Result<(u32, Transmission), MessageError> {
    let pbf = match Marshaler::of(payload) {
        Marshaler::Protobuf => {
            pb::DownlinkFrame::decode(payload).map_err(|e| MessageError::Protobuf(e.to_string()))?
        }
        Marshaler::Json => json_downlink_frame(payload)?,
    };
    let item = pbf.items.into_iter().next().ok_or_else(|| field("items"))?;
    let tx = item.tx_info.ok_or_else(|| field("txInfo"))?;
    let Some(pb::modulation::Parameters::Lora(l)) = tx.modulation.and_then(|m| m.parameters) else {
        return Err(field("txInfo.modulation.lora"));
    };
    let tmst = match tx.timing.and_then(|t| t.parameters) {
        Some(pb::timing::Parameters::Immediately(_)) => None,
        Some(pb::timing::Parameters::Delay(pb::DelayTimingInfo { delay: Some(d) })) => {
            let ctx: [u8; 4] = tx.context.try_into().map_err(|_| field("txInfo.context"))?;
            // A negative or absurd delay is refused, not wrapped (a class A
            // delay is a few seconds; the counter wraps at 2^32 µs anyway).
            let delay_us = u64::try_from(d.seconds)
                .ok()
                .filter(|s| *s <= 4_294)
                .zip(u64::try_from(d.nanos).ok())
                .map(|(s, n)| s * 1_000_000 + n / 1000)
                .ok_or_else(|| field("txInfo.timing.delay"))?;
            Some(u32::from_be_bytes(ctx).wrapping_add(delay_us as u32))
        }
        _ => return Err(field("txInfo.timing")),
    };
    Ok((
        pbf.downlink_id,
        Transmission {
            phy: item.phy_payload,
            tmst: tmst.unwrap_or(0),
            immediately: tmst.is_none(),
            frequency: tx.frequency,
            datr: DataRate::new(l.spreading_factor, l.bandwidth / 1000)
                .ok_or_else(|| field("modulation"))?,
        },
    ))
}

/// The JSON mapping of a `DownlinkFrame`, read into the protobuf types.
fn json_downlink_frame(payload: &[u8]) -> Result<pb::DownlinkFrame, MessageError> {
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| MessageError::Json(e.to_string()))?;
    let item = v.pointer("/items/0").ok_or_else(|| field("items"))?;
    let tx = item.get("txInfo").ok_or_else(|| field("txInfo"))?;
    let num = |p: &str, name: &'static str| {
        tx.pointer(p)
            .and_then(|x| x.as_u64())
            .ok_or_else(|| field(name))
    };
    let text = |v: &serde_json::Value, p: &str, name: &'static str| {
        v.pointer(p)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or_else(|| field(name))
    };
    let immediately = tx.pointer("/timing/immediately").is_some();
    let delay: f64 = if immediately {
        0.0
    } else {
        text(tx, "/timing/delay/delay", "timing.delay")?
            .strip_suffix('s')
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| field("timing.delay"))?
    };
    Ok(pb::DownlinkFrame {
        downlink_id: v
            .get("downlinkId")
            .and_then(|x| x.as_u64())
            .ok_or_else(|| field("downlinkId"))? as u32,
        gateway_id: text(&v, "/gatewayId", "gatewayId")?,
        items: vec![pb::DownlinkFrameItem {
            phy_payload: unb64("phyPayload", &text(item, "/phyPayload", "phyPayload")?)?,
            tx_info: Some(pb::DownlinkTxInfo {
                frequency: num("/frequency", "frequency")? as u32,
                modulation: Some(pb::Modulation {
                    parameters: Some(pb::modulation::Parameters::Lora(pb::LoraModulationInfo {
                        bandwidth: num("/modulation/lora/bandwidth", "bandwidth")? as u32,
                        spreading_factor: num(
                            "/modulation/lora/spreadingFactor",
                            "spreadingFactor",
                        )? as u32,
                        ..Default::default()
                    })),
                }),
                timing: Some(pb::Timing {
                    parameters: Some(if immediately {
                        pb::timing::Parameters::Immediately(pb::ImmediatelyTimingInfo {})
                    } else {
                        pb::timing::Parameters::Delay(pb::DelayTimingInfo {
                            delay: Some(prost_types::Duration {
                                seconds: delay.trunc() as i64,
                                nanos: (delay.fract() * 1e9).round() as i32,
                            }),
                        })
                    }),
                }),
                context: match text(tx, "/context", "context") {
                    Ok(c) => unb64("context", &c)?,
                    Err(e) if !immediately => return Err(e),
                    Err(_) => Vec::new(),
                },
                ..Default::default()
            }),
        }],
    })
}

/// The bridge's `event/ack` for downlink `id`, in marshaler `m`.
pub fn encode_tx_ack(m: Marshaler, gateway: Eui64, id: u32, status: pb::TxAckStatus) -> Vec<u8> {
    match m {
        Marshaler::Json => {
            serde_json::to_vec(&serde_json::json!({"gatewayId": gateway.to_string(),
            "downlinkId": id, "items": [{"status": status.as_str_name()}]}))
            .expect("json")
        }
        Marshaler::Protobuf => pb::DownlinkTxAck {
            downlink_id: id,
            items: vec![pb::DownlinkTxAckItem {
                status: status as i32,
            }],
            gateway_id: gateway.to_string(),
        }
        .encode_to_vec(),
    }
}

/// A `DownlinkTxAck` from `event/ack`.
pub fn decode_tx_ack(payload: &[u8]) -> Result<TxAck, MessageError> {
    let (id, statuses): (u32, Vec<String>) = if Marshaler::of(payload) == Marshaler::Json {
        let a: JsonTxAck =
            serde_json::from_slice(payload).map_err(|e| MessageError::Json(e.to_string()))?;
        let s = a
            .items
            .into_iter()
            .map(|i| i.status.unwrap_or_else(|| "IGNORED".into()))
            .collect();
        (a.downlink_id, s)
    } else {
        let a = pb::DownlinkTxAck::decode(payload)
            .map_err(|e| MessageError::Protobuf(e.to_string()))?;
        let s = a
            .items
            .iter()
            .map(|i| {
                pb::TxAckStatus::try_from(i.status).map_or_else(
                    |_| format!("status {}", i.status),
                    |s| s.as_str_name().to_string(),
                )
            })
            .collect();
        (a.downlink_id, s)
    };
    if id == 0 {
        return Err(MessageError::Json("missing downlinkId".into()));
    }
    // One item per frame we send: OK, or the first refusal.
    let result = match statuses.iter().find(|s| *s == "OK") {
        Some(_) => Ok(()),
        None => Err(statuses
            .first()
            .cloned()
            .unwrap_or_else(|| "no status".into())),
    };
    Ok(TxAck { id, result })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lorawan::radio::{rx1, RX1_DELAY};
    use crate::lorawan::{DataRate, Eui64};

    fn req() -> TxRequest {
        TxRequest {
            id: 7,
            gateway: Eui64::from_u64(0x0016_c001_f153_a14c),
            phy: vec![0x60, 1, 2, 3, 4, 0x20, 0, 0, 1, 2, 3, 4],
            uplink_tmst: u32::MAX - 10,
            window: rx1(868_300_000, DataRate::parse("SF9BW125").unwrap(), RX1_DELAY),
            power_dbm: 14,
            station: None,
            immediately: false,
        }
    }

    #[test]
    fn pull_resp_times_rx1_from_the_uplink() {
        let d = pull_resp(0xbeef, &req());
        assert_eq!(&d[..4], &[2, 0xbe, 0xef, PULL_RESP]);
        let v: serde_json::Value = serde_json::from_slice(&d[4..]).unwrap();
        let t = &v["txpk"];
        // The concentrator counter wraps.
        assert_eq!(t["tmst"], 999_989);
        assert_eq!(
            (t["freq"].as_f64(), &t["datr"]),
            (Some(868.3), &serde_json::json!("SF9BW125"))
        );
        assert_eq!(
            (&t["ipol"], &t["size"]),
            (&serde_json::json!(true), &serde_json::json!(12))
        );
        assert_eq!(t["data"], b64(&req().phy));
    }

    #[test]
    fn gateways_read_what_we_send() {
        let r = req();
        let t = decode_pull_resp(&pull_resp(1, &r)[4..]).unwrap();
        assert_eq!(
            (t.tmst, t.frequency, t.datr, &t.phy),
            (r.tmst(), 868_300_000, r.window.datr, &r.phy)
        );
        for m in [Marshaler::Protobuf, Marshaler::Json] {
            let (id, t2) = decode_downlink_frame(&downlink_frame(&r, m)).unwrap();
            assert_eq!((id, &t2), (7, &t), "{m:?}");
        }
        assert!(decode_pull_resp(b"{\"txpk\":{}}").is_err());
        assert!(decode_downlink_frame(b"{\"items\":[]}").is_err());
        // A negative delay (issue 17: an overflow in debug builds, a wrap
        // in release) is refused.
        let mut pbf =
            pb::DownlinkFrame::decode(&downlink_frame(&r, Marshaler::Protobuf)[..]).unwrap();
        if let Some(pb::timing::Parameters::Delay(pb::DelayTimingInfo { delay: Some(d) })) = pbf
            .items[0]
            .tx_info
            .as_mut()
            .and_then(|t| t.timing.as_mut())
            .and_then(|t| t.parameters.as_mut())
        {
            d.seconds = -1;
        }
        assert!(decode_downlink_frame(&pbf.encode_to_vec()).is_err());
        let d = tx_ack(*b"\x12\x34", r.gateway, "TOO_LATE");
        assert_eq!(tx_ack_result(&d[12..]), Ok(Err("TOO_LATE".into())));
    }

    #[test]
    fn tx_ack_bodies() {
        assert_eq!(tx_ack_result(b""), Ok(Ok(())));
        assert_eq!(
            tx_ack_result(b"{\"txpk_ack\":{\"error\":\"NONE\"}}\0"),
            Ok(Ok(()))
        );
        assert_eq!(
            tx_ack_result(b"{\"txpk_ack\":{\"error\":\"TOO_LATE\"}}"),
            Ok(Err("TOO_LATE".into()))
        );
        assert!(tx_ack_result(b"{oops").is_err());
    }

    #[test]
    fn downlink_frames_and_acks_round_trip_both_marshalers() {
        let r = req();
        let pbf = pb::DownlinkFrame::decode(&downlink_frame(&r, Marshaler::Protobuf)[..]).unwrap();
        let tx = pbf.items[0].tx_info.as_ref().unwrap();
        assert_eq!(
            (pbf.downlink_id, tx.frequency, &tx.context[..]),
            (7, 868_300_000, &r.uplink_tmst.to_be_bytes()[..])
        );
        let j: serde_json::Value =
            serde_json::from_slice(&downlink_frame(&r, Marshaler::Json)).unwrap();
        assert_eq!(j["items"][0]["txInfo"]["timing"]["delay"]["delay"], "1s");
        assert_eq!(j["gatewayId"], "0016c001f153a14c");

        let ack = pb::DownlinkTxAck {
            downlink_id: 7,
            items: vec![pb::DownlinkTxAckItem {
                status: pb::TxAckStatus::TooLate as i32,
            }],
            gateway_id: "0016c001f153a14c".into(),
        };
        assert_eq!(
            decode_tx_ack(&ack.encode_to_vec()).unwrap(),
            TxAck {
                id: 7,
                result: Err("TOO_LATE".into())
            }
        );
        let ok = br#"{"gatewayId":"0016c001f153a14c","downlinkId":9,"items":[{"status":"OK"}]}"#;
        assert_eq!(
            decode_tx_ack(ok).unwrap(),
            TxAck {
                id: 9,
                result: Ok(())
            }
        );
        assert!(decode_tx_ack(b"{}").is_err());
        assert!(decode_tx_ack(&[0xff, 0xff]).is_err());
    }
}
