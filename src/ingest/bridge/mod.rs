//! Gateway-bridge uplink messages, as the ChirpStack gateway bridge
//! publishes them on `[prefix/]gateway/{id}/event/up`:
//! - v4 protobuf (`gw.UplinkFrame`, the bridge's default marshaler);
//! - v4 JSON (protobuf JSON mapping: `gatewayId` hex, `snr`, `gwTime` or,
//!   in early v4, `time`);
//! - loraserver v3 JSON (`gatewayID` base64, `loRaSNR`, `timestamp`).
//!   v3 protobuf is v4's legacy fields 2 and 3, so it decodes too.

use base64::Engine;
use prost::Message;
use serde::Deserialize;

use crate::lorawan::mac::state::{gps_from_unix_ns, GPS_EPOCH_UNIX, GPS_LEAP_SECONDS};
use crate::lorawan::{DataRate, Eui64};
use crate::metrics::Reason;
use crate::pipeline::uplink::RxMeta;

/// Generated from `proto/gw.proto`.
pub mod downlink;

pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/gw.rs"));
}

/// Why a gateway message was refused, with its counter reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    #[error("invalid base64 in {0}")]
    Base64(&'static str),
    #[error("invalid {field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("frame failed the radio CRC")]
    BadCrc,
}

impl MessageError {
    pub fn reason(&self) -> Reason {
        match self {
            MessageError::Json(_) | MessageError::Field { .. } => Reason::MalformedJson,
            MessageError::Protobuf(_) => Reason::MalformedProtobuf,
            MessageError::Base64(_) => Reason::MalformedBase64,
            MessageError::BadCrc => Reason::CrcBad,
        }
    }
}

pub(crate) fn b64(field: &'static str, text: &str) -> Result<Vec<u8>, MessageError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| MessageError::Base64(field))
}

/// A gateway id written as 16 hex digits (v4) or as base64 of 8 bytes (v3).
pub(crate) fn gateway_id(text: &str) -> Result<Eui64, MessageError> {
    if text.len() == 16 {
        if let Ok(e) = Eui64::from_hex(text) {
            return Ok(e);
        }
    }
    let bytes = b64("gatewayID", text)?;
    let arr: [u8; 8] = bytes.try_into().map_err(|_| MessageError::Field {
        field: "gatewayID",
        message: "not 8 bytes".into(),
    })?;
    Ok(Eui64(arr))
}

/// A decoded gateway uplink: the PHYPayload and its reception.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayUplink {
    pub phy: Vec<u8>,
    pub rx: RxMeta,
}

/// Decode a gateway event, JSON if it starts with `{`, protobuf otherwise.
pub fn decode(payload: &[u8]) -> Result<GatewayUplink, MessageError> {
    if payload.first() == Some(&b'{') {
        decode_json(payload)
    } else {
        decode_protobuf(payload)
    }
}

fn tmst_from_context(ctx: &[u8]) -> Option<u32> {
    // The Semtech UDP backend of the gateway bridge puts the concentrator
    // counter in the context as 4 big-endian bytes.
    ctx.try_into().ok().map(u32::from_be_bytes)
}

/// The LoRa data rate of a v4 uplink.
fn pb_datr(tx: &pb::UplinkTxInfo) -> Option<DataRate> {
    match tx.modulation.as_ref()?.parameters.as_ref()? {
        pb::modulation::Parameters::Lora(l) => {
            DataRate::new(l.spreading_factor, l.bandwidth / 1000)
        }
    }
}

/// The gateway's GPS time of the uplink: its time since the GPS epoch, or
/// its UTC time converted.
fn pb_gps_time(
    gps: Option<prost_types::Duration>,
    utc: Option<prost_types::Timestamp>,
) -> Option<u64> {
    let ns = |s: i64, n: i32| {
        u64::try_from(s)
            .ok()?
            .checked_mul(1_000_000_000)?
            .checked_add(u64::try_from(n).ok()?)
    };
    match (gps, utc) {
        (Some(d), _) if d.seconds > 0 => ns(d.seconds, d.nanos),
        (_, Some(t)) if t.seconds > 0 => ns(t.seconds, t.nanos).map(gps_from_unix_ns),
        _ => None,
    }
}

/// A protobuf Timestamp as Unix ns; `None` before 1970 or beyond i64.
pub(super) fn pb_unix_ns(t: prost_types::Timestamp) -> Option<i64> {
    (t.seconds > 0)
        .then(|| {
            t.seconds
                .checked_mul(1_000_000_000)?
                .checked_add(i64::from(t.nanos))
        })
        .flatten()
}

/// An RFC 3339 time as Unix ns.
pub(crate) fn rfc3339_unix_ns(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    i64::try_from(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos()).ok()
}

fn decode_protobuf(payload: &[u8]) -> Result<GatewayUplink, MessageError> {
    let f = pb::UplinkFrame::decode(payload).map_err(|e| MessageError::Protobuf(e.to_string()))?;
    if f.phy_payload.is_empty() {
        return Err(MessageError::Protobuf("no phy_payload".into()));
    }
    let rx = if let Some(rx) = f.rx_info {
        if rx.crc_status == pb::CrcStatus::BadCrc as i32 {
            return Err(MessageError::BadCrc);
        }
        RxMeta {
            station: None,
            gateway: Eui64::from_hex(&rx.gateway_id).map_err(|e| MessageError::Field {
                field: "rx_info.gateway_id",
                message: e.to_string(),
            })?,
            rssi: rx.rssi,
            snr: rx.snr,
            tmst: tmst_from_context(&rx.context),
            time_ns: rx.gw_time.or(rx.ns_time).and_then(pb_unix_ns),
            gps_time_ns: pb_gps_time(rx.time_since_gps_epoch, rx.gw_time),
            datr: f.tx_info.as_ref().and_then(pb_datr),
            frequency: f.tx_info.map(|t| t.frequency),
        }
    } else if let Some(rx) = f.rx_info_legacy {
        if rx.crc_status == pb::CrcStatus::BadCrc as i32 {
            return Err(MessageError::BadCrc);
        }
        let gw: [u8; 8] = rx
            .gateway_id
            .as_slice()
            .try_into()
            .map_err(|_| MessageError::Field {
                field: "rx_info.gateway_id",
                message: "not 8 bytes".into(),
            })?;
        RxMeta {
            time_ns: rx.time.and_then(pb_unix_ns),
            gps_time_ns: None,
            station: None,
            gateway: Eui64(gw),
            rssi: rx.rssi,
            snr: rx.lora_snr as f32,
            tmst: tmst_from_context(&rx.context),
            frequency: f.tx_info_legacy.map(|t| t.frequency as u32),
            datr: None,
        }
    } else {
        return Err(MessageError::Protobuf("no rx_info".into()));
    };
    Ok(GatewayUplink {
        phy: f.phy_payload,
        rx,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonFrame {
    phy_payload: String,
    #[serde(default)]
    tx_info: Option<JsonTx>,
    rx_info: Option<JsonRx>,
}

#[derive(Deserialize)]
struct JsonTx {
    #[serde(default)]
    frequency: Option<u64>,
    /// v4: `{"lora": {"bandwidth": Hz, "spreadingFactor": n}}`; v3 has the string `"LORA"` here.
    #[serde(default)]
    modulation: Option<serde_json::Value>,
    /// v3: `{"bandwidth": kHz, "spreadingFactor": n}`.
    #[serde(default, rename = "loRaModulationInfo")]
    lora_v3: Option<serde_json::Value>,
}

impl JsonTx {
    fn datr(&self) -> Option<DataRate> {
        let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_u64());
        if let Some(l) = self.modulation.as_ref().and_then(|m| m.get("lora")) {
            return DataRate::new(
                num(l, "spreadingFactor")? as u32,
                (num(l, "bandwidth")? / 1000) as u32,
            );
        }
        let l = self.lora_v3.as_ref()?;
        DataRate::new(
            num(l, "spreadingFactor")? as u32,
            num(l, "bandwidth")? as u32,
        )
    }
}

#[derive(Deserialize)]
struct JsonRx {
    /// v4: hex.
    #[serde(rename = "gatewayId")]
    gateway_id: Option<String>,
    /// v3: base64.
    #[serde(rename = "gatewayID")]
    gateway_id_v3: Option<String>,
    #[serde(default)]
    rssi: i32,
    /// v4.
    snr: Option<f32>,
    /// v3.
    #[serde(rename = "loRaSNR")]
    lora_snr: Option<f32>,
    /// v3: the concentrator counter.
    timestamp: Option<u32>,
    /// v4: base64 context.
    context: Option<String>,
    #[serde(rename = "crcStatus")]
    crc_status: Option<String>,
    /// v4 `gwTime`, or `time` in early v4 and v3: the reception time, an
    /// event's origin when plausible (`uplink::reception_ns`).
    #[serde(rename = "gwTime", alias = "time")]
    time: Option<serde_json::Value>,
    /// v4 `nsTime`: when the network server (or bridge) received it.
    #[serde(rename = "nsTime")]
    ns_time: Option<String>,
    /// v4 JSON of a protobuf Duration: `"1234.5s"`.
    #[serde(rename = "timeSinceGpsEpoch")]
    time_since_gps_epoch: Option<String>,
}

/// `timeSinceGpsEpoch` (`"1234.5s"`), or the UTC time (RFC 3339) converted.
fn json_gps_time(gps: Option<&str>, utc: Option<&serde_json::Value>) -> Option<u64> {
    // Whole seconds and up to nine digits of fraction, exactly (an f64
    // cannot hold nanoseconds since 1980).
    let duration = |g: &str| -> Option<u64> {
        let (secs, frac) = g
            .strip_suffix('s')?
            .split_once('.')
            .unwrap_or((g.strip_suffix('s')?, ""));
        if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nanos: u64 = format!("{frac:0<9}").parse().ok()?;
        let secs: u64 = secs.parse().ok().filter(|s| *s > 0)?;
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    };
    if let Some(ns) = gps.and_then(duration) {
        return Some(ns);
    }
    utc.and_then(|v| v.as_str()).and_then(utc_to_gps_ns)
}

/// GPS time (ns) as an RFC 3339 UTC time (the simulator's gateways).
fn utc_of_gps_ns(ns: u64) -> String {
    let unix_ns = ns + (GPS_EPOCH_UNIX - GPS_LEAP_SECONDS) * 1_000_000_000;
    humantime::format_rfc3339_nanos(
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(unix_ns),
    )
    .to_string()
}

/// An RFC 3339 UTC time as ns since the GPS epoch.
pub(crate) fn utc_to_gps_ns(text: &str) -> Option<u64> {
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    let ns = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    u64::try_from(ns).ok().map(gps_from_unix_ns)
}

fn decode_json(payload: &[u8]) -> Result<GatewayUplink, MessageError> {
    let f: JsonFrame =
        serde_json::from_slice(payload).map_err(|e| MessageError::Json(e.to_string()))?;
    let rx = f
        .rx_info
        .ok_or_else(|| MessageError::Json("missing rxInfo".into()))?;
    if rx.crc_status.as_deref() == Some("BAD_CRC") {
        return Err(MessageError::BadCrc);
    }
    let gateway = match (&rx.gateway_id, &rx.gateway_id_v3) {
        (Some(hex), _) => Eui64::from_hex(hex).map_err(|e| MessageError::Field {
            field: "rxInfo.gatewayId",
            message: e.to_string(),
        })?,
        (None, Some(v3)) => gateway_id(v3)?,
        (None, None) => return Err(MessageError::Json("missing rxInfo.gatewayId".into())),
    };
    let context = rx
        .context
        .as_deref()
        .map(|c| b64("rxInfo.context", c))
        .transpose()?;
    Ok(GatewayUplink {
        phy: b64("phyPayload", &f.phy_payload)?,
        rx: RxMeta {
            station: None,
            gateway,
            rssi: rx.rssi,
            snr: rx.snr.or(rx.lora_snr).unwrap_or(0.0),
            tmst: rx
                .timestamp
                .or_else(|| context.as_deref().and_then(tmst_from_context)),
            frequency: f
                .tx_info
                .as_ref()
                .and_then(|t| t.frequency)
                .map(|f| f as u32),
            time_ns: rx
                .time
                .as_ref()
                .and_then(|t| t.as_str())
                .or(rx.ns_time.as_deref())
                .and_then(rfc3339_unix_ns),
            gps_time_ns: json_gps_time(rx.time_since_gps_epoch.as_deref(), rx.time.as_ref()),
            datr: f.tx_info.as_ref().and_then(JsonTx::datr),
        },
    })
}

/// Encode an uplink as a gateway bridge would (simulator and tests).
pub fn encode(up: &GatewayUplink, format: WireFormat) -> Vec<u8> {
    let b64e = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ctx = up
        .rx
        .tmst
        .map(|t| t.to_be_bytes().to_vec())
        .unwrap_or_default();
    let dr = up.rx.datr.unwrap_or(DataRate { sf: 7, bw_khz: 125 });
    match format {
        WireFormat::Protobuf => pb::UplinkFrame {
            phy_payload: up.phy.clone(),
            tx_info: Some(pb::UplinkTxInfo {
                frequency: up.rx.frequency.unwrap_or(868_100_000),
                modulation: up.rx.datr.map(|d| pb::Modulation {
                    parameters: Some(pb::modulation::Parameters::Lora(pb::LoraModulationInfo {
                        bandwidth: u32::from(d.bw_khz) * 1000,
                        spreading_factor: u32::from(d.sf),
                        code_rate: pb::CodeRate::Cr45 as i32,
                        ..Default::default()
                    })),
                }),
            }),
            rx_info: Some(pb::UplinkRxInfo {
                gateway_id: up.rx.gateway.to_string(),
                rssi: up.rx.rssi,
                snr: up.rx.snr,
                context: ctx,
                crc_status: pb::CrcStatus::CrcOk as i32,
                time_since_gps_epoch: up.rx.gps_time_ns.map(|ns| prost_types::Duration {
                    seconds: (ns / 1_000_000_000) as i64,
                    nanos: (ns % 1_000_000_000) as i32,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
        WireFormat::JsonV4 => {
            let mut v = serde_json::json!({
            "phyPayload": b64e(&up.phy),
            "txInfo": {"frequency": up.rx.frequency.unwrap_or(868_100_000),
                       "modulation": {"lora": {"bandwidth": u32::from(dr.bw_khz) * 1000, "spreadingFactor": dr.sf, "codeRate": "CR_4_5"}}},
            "rxInfo": {"gatewayId": up.rx.gateway.to_string(), "uplinkId": 1,
                       "rssi": up.rx.rssi, "snr": up.rx.snr, "context": b64e(&ctx), "crcStatus": "CRC_OK"},
            });
            if let Some(ns) = up.rx.gps_time_ns {
                v["rxInfo"]["timeSinceGpsEpoch"] =
                    format!("{}.{:09}s", ns / 1_000_000_000, ns % 1_000_000_000).into();
            }
            serde_json::to_vec(&v).expect("json")
        }
        WireFormat::JsonV3 => serde_json::to_vec(&serde_json::json!({
            "phyPayload": b64e(&up.phy),
            "txInfo": {"frequency": up.rx.frequency.unwrap_or(868_100_000), "modulation": "LORA",
                       "loRaModulationInfo": {"bandwidth": dr.bw_khz, "spreadingFactor": dr.sf, "codeRate": "4/5"}},
            "rxInfo": {"gatewayID": b64e(&up.rx.gateway.0), "time": up.rx.gps_time_ns.map(utc_of_gps_ns),
                       "timestamp": up.rx.tmst.unwrap_or(0), "rssi": up.rx.rssi, "loRaSNR": up.rx.snr,
                       "channel": 0, "rfChain": 0, "board": 0, "antenna": 0},
        }))
        .expect("json"),
    }
}

/// The gateway-bridge marshalers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum WireFormat {
    Protobuf,
    JsonV4,
    JsonV3,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GatewayUplink {
        GatewayUplink {
            phy: hex::decode("400403020180010001a694642615d6c3b582").unwrap(),
            rx: RxMeta {
                time_ns: None,
                gps_time_ns: None,
                station: None,
                gateway: Eui64::from_u64(0x0016c001f153a14c),
                rssi: -57,
                snr: 7.25,
                tmst: Some(123_456),
                frequency: Some(868_300_000),
                datr: DataRate::parse("SF9BW125"),
            },
        }
    }

    #[test]
    fn every_format_round_trips() {
        for f in [WireFormat::Protobuf, WireFormat::JsonV4, WireFormat::JsonV3] {
            assert_eq!(decode(&encode(&sample(), f)).unwrap(), sample(), "{f:?}");
            // A GPS gateway's time of the uplink, in each format's own field.
            let mut gps = sample();
            gps.rx.gps_time_ns = Some(1_451_260_818_250_000_000);
            let mut got = decode(&encode(&gps, f)).unwrap();
            // A format that writes it as UTC gives the reception time too
            // (2026-01-01T00:00:00.25Z).
            if let Some(t) = got.rx.time_ns.take() {
                assert_eq!(t, 1_767_225_600_250_000_000, "{f:?}");
            }
            assert_eq!(got, gps, "{f:?}");
        }
    }

    #[test]
    fn utc_times_become_gps_times() {
        // 2026-01-01T00:00:00Z is 1451260818 s of GPS time (18 leap seconds).
        let j = br#"{"phyPayload":"QAQDAgGAAQABppRkJhXWw7WC","rxInfo":{"gatewayId":"0016c001f153a14c","gwTime":"2026-01-01T00:00:00.5Z"}}"#;
        assert_eq!(
            decode(j).unwrap().rx.gps_time_ns,
            Some(1_451_260_818_500_000_000)
        );
        let bad = br#"{"phyPayload":"QAQDAgGAAQABppRkJhXWw7WC","rxInfo":{"gatewayId":"0016c001f153a14c","gwTime":"yesterday","timeSinceGpsEpoch":"-5s"}}"#;
        assert_eq!(decode(bad).unwrap().rx.gps_time_ns, None);
    }

    #[test]
    fn early_v4_time_field_and_hex_v3_gateway_ids() {
        let j = br#"{"phyPayload":"QAQDAgGAAQABppRkJhXWw7WC","rxInfo":{"gatewayId":"0016c001f153a14c","time":"2022-01-01T00:00:00Z","rssi":-1,"snr":1}}"#;
        assert_eq!(
            decode(j).unwrap().rx.gateway,
            Eui64::from_u64(0x0016c001f153a14c)
        );
        let v3 = br#"{"phyPayload":"QAQDAgGAAQABppRkJhXWw7WC","rxInfo":{"gatewayID":"0016c001f153a14c","loRaSNR":2.5}}"#;
        assert_eq!(decode(v3).unwrap().rx.snr, 2.5);
    }

    #[test]
    fn malformed_inputs_have_reasons() {
        let cases: &[(&[u8], Reason)] = &[
            (b"{not json", Reason::MalformedJson),
            (br#"{"phyPayload":"!!","rxInfo":{"gatewayId":"0016c001f153a14c"}}"#, Reason::MalformedBase64),
            (br#"{"phyPayload":"QA==","rxInfo":{"gatewayId":"zz"}}"#, Reason::MalformedJson),
            (br#"{"phyPayload":"QA==","rxInfo":{"gatewayId":"0016c001f153a14c","crcStatus":"BAD_CRC"}}"#, Reason::CrcBad),
            (&[0xff, 0xff, 0xff], Reason::MalformedProtobuf),
            (&[], Reason::MalformedProtobuf),
        ];
        for (input, reason) in cases {
            assert_eq!(
                decode(input).unwrap_err().reason(),
                *reason,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
