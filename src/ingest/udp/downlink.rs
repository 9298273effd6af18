//! Downlinks to a Semtech UDP packet forwarder (v2): PULL_RESP carrying a
//! `txpk`, answered by TX_ACK with a `txpk_ack.error` (`NONE` when sent).
//! The gateway's side (reading a PULL_RESP, writing the TX_ACK) is here
//! too, for the simulator's gateways and the round-trip tests.

use base64::Engine;
use serde::Deserialize;

use crate::downlink::{Transmission, TxRequest};
use crate::ingest::bridge::{b64 as unb64, MessageError};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::downlink::testing::req;

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
}
