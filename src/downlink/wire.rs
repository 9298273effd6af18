//! Downlinks on the wire, both ways a gateway speaks:
//! - Semtech UDP packet forwarder (v2): PULL_RESP carrying a `txpk`, answered
//!   by TX_ACK with a `txpk_ack.error` (`NONE` when sent);
//! - ChirpStack gateway bridge v4: a `DownlinkFrame` on
//!   `gateway/{id}/command/down` (protobuf or its JSON mapping, as the
//!   gateway's uplinks came), answered by a `DownlinkTxAck` on `event/ack`.

use base64::Engine;
use prost::Message;
use serde::Deserialize;

use super::{TxAck, TxRequest};
use crate::ingest::gateway::{pb, MessageError};

pub const PULL_RESP: u8 = 0x03;
pub const TX_ACK: u8 = 0x05;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The PULL_RESP datagram for `req` (protocol v2: `token` comes back in the TX_ACK).
pub fn pull_resp(token: u16, req: &TxRequest) -> Vec<u8> {
    let w = &req.window;
    let txpk = serde_json::json!({"txpk": {
        "imme": false, "tmst": req.tmst(), "freq": f64::from(w.frequency) / 1e6, "rfch": 0,
        "powe": req.power_dbm, "modu": "LORA", "datr": w.datr.to_string(), "codr": "4/5",
        "ipol": true, "size": req.phy.len(), "data": b64(&req.phy),
    }});
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

/// How a gateway bridge marshals its messages; downlinks go back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marshaler {
    Protobuf,
    Json,
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
                    parameters: Some(pb::timing::Parameters::Delay(pb::DelayTimingInfo {
                        delay: Some(prost_types::Duration {
                            seconds: w.delay.as_secs() as i64,
                            nanos: w.delay.subsec_nanos() as i32,
                        }),
                    })),
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
                    "timing": {"delay": {"delay": format!("{}s", w.delay.as_secs_f64())}},
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

/// A `DownlinkTxAck` from `event/ack` (JSON if it starts with `{`).
pub fn decode_tx_ack(payload: &[u8]) -> Result<TxAck, MessageError> {
    let (id, statuses): (u32, Vec<String>) = if payload.first() == Some(&b'{') {
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
