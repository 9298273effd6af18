//! Downlinks to a ChirpStack gateway bridge v4: a `DownlinkFrame` on
//! `gateway/{id}/command/down` (protobuf or its JSON mapping, as the
//! gateway's uplinks came), answered by a `DownlinkTxAck` on `event/ack`.
//! The gateway's side of each is here too, for the simulator's gateways
//! and the round-trip tests.

use base64::Engine;
use prost::Message;
use serde::Deserialize;

use super::{b64 as unb64, pb, MessageError};
use crate::downlink::{Transmission, TxAck, TxRequest};
use crate::lorawan::{DataRate, Eui64};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn field(name: &'static str) -> MessageError {
    MessageError::Json(format!("missing or invalid {name}"))
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
    use crate::downlink::testing::req;

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
