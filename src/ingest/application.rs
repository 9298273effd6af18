//! Application-integration uplinks, already decrypted by a network server:
//! ChirpStack v4 (`application/{id}/device/{devEui}/event/up`, `deviceInfo.devEui`,
//! `fCnt`, `fPort`, `data`) in either of its integration's marshalers (JSON,
//! the default, or protobuf `integration.UplinkEvent` with `json = false`),
//! and the loraserver v3 application server (`devEUI` in base64 or hex,
//! `rxInfo[].gatewayID`, `loRaSNR`).

use std::sync::Arc;

use prost::Message;
use serde::Deserialize;

use super::bridge::{b64, gateway_id, pb_unix_ns, MessageError};
use crate::lorawan::Eui64;
use crate::pipeline::uplink::RxMeta;

/// Generated from `proto/integration.proto`.
mod pb {
    // The generated code names the gateway bridge's types `super::gw::…`.
    use crate::ingest::bridge::pb as gw;
    pub mod integration {
        include!(concat!(env!("OUT_DIR"), "/integration.rs"));
    }
}

/// An uplink a network server already verified and decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct AppUplink {
    pub dev_eui: Eui64,
    pub fcnt: u32,
    pub fport: Option<u8>,
    pub confirmed: bool,
    pub data: Vec<u8>,
    /// Best reception and gateway count, as the network server reported.
    pub rx: RxMeta,
    pub gateways: u32,
    /// Where the network server takes commands for this device (set by the
    /// MQTT ingest, which knows the topic).
    pub route: Option<Arc<AppRoute>>,
}

/// Where a device's commands go back to its network server: ChirpStack v4's
/// `command/down` topic beside the `event/up` topic it published the
/// device's uplink on, in the marshaler it published it in (its MQTT
/// integration reads commands in the marshaler it writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRoute {
    pub command_topic: String,
    pub protobuf: bool,
}

impl AppRoute {
    /// The route of an uplink published on `event_topic`; `None` for a
    /// topic that is not ChirpStack v4's (`.../event/up`), e.g. loraserver
    /// v3's `.../rx`.
    pub fn of(event_topic: &str, payload: &[u8]) -> Option<Self> {
        let base = event_topic.strip_suffix("/event/up")?;
        Some(Self {
            command_topic: format!("{base}/command/down"),
            protobuf: payload.first() != Some(&b'{'),
        })
    }

    /// A command for ChirpStack's device queue (`integration.DownlinkCommand`,
    /// its id left for ChirpStack to make up), in this route's marshaler.
    pub fn command(&self, dev_eui: Eui64, fport: u8, confirmed: bool, data: &[u8]) -> Vec<u8> {
        let cmd = pb::integration::DownlinkCommand {
            id: String::new(),
            dev_eui: dev_eui.to_string(),
            confirmed,
            f_port: u32::from(fport),
            data: data.to_vec(),
        };
        if self.protobuf {
            cmd.encode_to_vec()
        } else {
            use base64::Engine;
            serde_json::to_vec(&serde_json::json!({
                "devEui": cmd.dev_eui,
                "confirmed": confirmed,
                "fPort": fport,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
            }))
            .expect("a JSON value serializes")
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Msg {
    device_info: Option<DeviceInfo>,
    #[serde(rename = "devEUI")]
    dev_eui_v3: Option<String>,
    f_cnt: Option<u32>,
    f_port: Option<u8>,
    #[serde(default)]
    confirmed: bool,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    rx_info: Vec<Rx>,
    /// v4: when the network server received the frame (RFC 3339).
    time: Option<String>,
    /// v4: set when a join server holds the AppSKey (`data` still encrypted).
    join_server_context: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceInfo {
    dev_eui: String,
}

#[derive(Deserialize)]
struct Rx {
    /// v3 (`time`), v4 (`nsTime`, `gwTime`): a reception time, RFC 3339.
    #[serde(alias = "nsTime", alias = "gwTime")]
    time: Option<String>,
    #[serde(rename = "gatewayId", alias = "gatewayID")]
    gateway_id: Option<String>,
    #[serde(default)]
    rssi: i32,
    #[serde(alias = "loRaSNR")]
    snr: Option<f32>,
}

fn dev_eui(text: &str) -> Result<Eui64, MessageError> {
    // v4 hex; v3 base64 (protobuf JSON) or hex (legacy JSON).
    gateway_id(text).map_err(|_| MessageError::Field {
        field: "devEui",
        message: "not a 64-bit EUI".into(),
    })
}

/// One application uplink: JSON (its first byte `{`, as ChirpStack and
/// loraserver write it) or ChirpStack v4's protobuf (which never starts
/// with `{`: that byte would be field 15 as a group).
pub fn decode(payload: &[u8]) -> Result<AppUplink, MessageError> {
    if payload.first() == Some(&b'{') {
        decode_json(payload)
    } else {
        decode_protobuf(payload)
    }
}

/// The payload is still encrypted: ChirpStack does not hold the AppSKey.
fn join_server_held() -> MessageError {
    MessageError::Field {
        field: "joinServerContext",
        message:
            "the payload is encrypted under a join server's AppSKey, which the network server \
                  does not hold"
                .into(),
    }
}

fn decode_json(payload: &[u8]) -> Result<AppUplink, MessageError> {
    let m: Msg = serde_json::from_slice(payload).map_err(|e| MessageError::Json(e.to_string()))?;
    if m.join_server_context.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(join_server_held());
    }
    let eui_text = m
        .device_info
        .as_ref()
        .map(|d| d.dev_eui.as_str())
        .or(m.dev_eui_v3.as_deref())
        .ok_or_else(|| MessageError::Json("missing deviceInfo.devEui / devEUI".into()))?;
    let fcnt = m
        .f_cnt
        .ok_or_else(|| MessageError::Json("missing fCnt".into()))?;
    // The network server's time of the frame, else the first gateway's.
    let time_ns = m
        .time
        .as_deref()
        .or_else(|| m.rx_info.iter().find_map(|r| r.time.as_deref()))
        .and_then(super::bridge::rfc3339_unix_ns);
    let rx = best(
        time_ns,
        m.rx_info.iter().filter_map(|r| {
            let gw = gateway_id(r.gateway_id.as_deref()?);
            Some(gw.map(|gw| (gw, r.rssi, r.snr.unwrap_or(0.0))))
        }),
    )?;
    Ok(AppUplink {
        dev_eui: dev_eui(eui_text)?,
        fcnt,
        fport: m.f_port,
        confirmed: m.confirmed,
        data: m
            .data
            .as_deref()
            .map(|d| b64("data", d))
            .transpose()?
            .unwrap_or_default(),
        rx,
        gateways: m.rx_info.len() as u32,
        route: None,
    })
}

fn decode_protobuf(payload: &[u8]) -> Result<AppUplink, MessageError> {
    let m = pb::integration::UplinkEvent::decode(payload)
        .map_err(|e| MessageError::Protobuf(e.to_string()))?;
    if m.join_server_context.is_some() {
        return Err(join_server_held());
    }
    let info = m
        .device_info
        .ok_or_else(|| MessageError::Protobuf("no device_info".into()))?;
    // proto3 cannot tell an absent f_port from 0: ChirpStack sends 0 for a
    // frame without FRMPayload (its JSON leaves `fPort` out), and a frame
    // with FPort 0 (MAC commands) never reaches the application stream.
    let fport = (m.f_port > 0)
        .then(|| u8::try_from(m.f_port))
        .transpose()
        .map_err(|_| MessageError::Field {
            field: "f_port",
            message: format!("{} is not a LoRaWAN port", m.f_port),
        })?;
    let time_ns = m.time.and_then(pb_unix_ns).or_else(|| {
        m.rx_info
            .iter()
            .find_map(|r| r.gw_time.or(r.ns_time).and_then(pb_unix_ns))
    });
    let rx = best(
        time_ns,
        m.rx_info
            .iter()
            .map(|r| gateway_id(&r.gateway_id).map(|gw| (gw, r.rssi, r.snr))),
    )?;
    Ok(AppUplink {
        dev_eui: dev_eui(&info.dev_eui)?,
        fcnt: m.f_cnt,
        fport,
        confirmed: m.confirmed,
        data: m.data,
        rx,
        gateways: m.rx_info.len() as u32,
        route: None,
    })
}

/// The best reception of a frame's gateways (`(gateway, rssi, snr)`), at
/// the network server's time; a default one when it named no gateway.
fn best(
    time_ns: Option<i64>,
    gateways: impl Iterator<Item = Result<(Eui64, i32, f32), MessageError>>,
) -> Result<RxMeta, MessageError> {
    let meta = |(gateway, rssi, snr): (Eui64, i32, f32)| RxMeta {
        time_ns,
        gps_time_ns: None,
        station: None,
        gateway,
        rssi,
        snr,
        tmst: None,
        frequency: None,
        datr: None,
    };
    let mut best: Option<RxMeta> = None;
    for g in gateways {
        let rx = meta(g?);
        if best.is_none_or(|b| rx.better_than(&b)) {
            best = Some(rx);
        }
    }
    Ok(best.unwrap_or_else(|| meta((Eui64::default(), 0, 0.0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chirpstack_v4() {
        let m = br#"{"deduplicationId":"3ac7e3c4","time":"2026-11-24T10:00:00Z",
            "deviceInfo":{"tenantId":"t","applicationId":"a","deviceName":"mote-1","devEui":"0004a30b001c0530"},
            "devAddr":"26011bda","adr":true,"dr":5,"fCnt":42,"fPort":1,"confirmed":false,"data":"A2cBEA==",
            "rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-80,"snr":1.0},{"gatewayId":"0016c001f153a14d","rssi":-60,"snr":9.0}]}"#;
        let u = decode(m).unwrap();
        assert_eq!(
            (u.dev_eui, u.fcnt, u.fport, u.gateways),
            (Eui64::from_u64(0x0004a30b001c0530), 42, Some(1), 2)
        );
        assert_eq!(u.data, vec![3, 0x67, 1, 0x10]);
        assert_eq!(u.rx.rssi, -60);
    }

    #[test]
    fn loraserver_v3() {
        let m = br#"{"applicationID":"1","applicationName":"app","deviceName":"mote-1","devEUI":"AASjCwAcBTA=",
            "rxInfo":[{"gatewayID":"ABbAAfFToUw=","rssi":-70,"loRaSNR":3.5}],"txInfo":{"frequency":868100000,"dr":5},
            "adr":false,"fCnt":7,"fPort":1,"data":"A2cBEA=="}"#;
        let u = decode(m).unwrap();
        assert_eq!(
            (u.dev_eui, u.fcnt, u.rx.snr),
            (Eui64::from_u64(0x0004a30b001c0530), 7, 3.5)
        );
        assert_eq!(u.rx.gateway, Eui64::from_u64(0x0016c001f153a14c));
    }

    /// The first event of `tests/peers/recorded/chirpstack-4.20/
    /// application-up.protobuf.jsonl` (a real ChirpStack 4.20 with `json =
    /// false`); the expected fields as PyPI `chirpstack-api` reads them.
    #[test]
    fn chirpstack_v4_protobuf_as_recorded() {
        let line = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/recorded/chirpstack-4.20/application-up.protobuf.jsonl"
        ))
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        let bytes = hex::decode(v["payload_hex"].as_str().unwrap()).unwrap();
        let u = decode(&bytes).unwrap();
        assert_eq!(
            (u.dev_eui, u.fcnt, u.fport, u.confirmed, u.gateways),
            (Eui64::from_u64(0x70b3d57ed0000001), 2300, Some(1), false, 2)
        );
        assert_eq!(
            b64("data", "AWcBGQJoZAOIB9wB//sEAA2sBHQBNg==").unwrap(),
            u.data
        );
        // time "2026-12-07T00:18:13.044288334Z"
        assert_eq!(u.rx.time_ns, Some(1_796_602_693_044_288_334));
    }

    fn device(dev_eui: &str) -> Option<pb::integration::DeviceInfo> {
        Some(pb::integration::DeviceInfo {
            dev_eui: dev_eui.into(),
            ..Default::default()
        })
    }

    /// Field 15 (`joinServerContext`) says `data` is still encrypted: refused
    /// in both marshalers rather than decoded as if it were plaintext.
    #[test]
    fn payloads_a_join_server_holds_the_key_of_are_refused() {
        let json =
            br#"{"deviceInfo":{"devEui":"0004a30b001c0530"},"fCnt":1,"fPort":1,"data":"AQI=",
            "joinServerContext":{"sessionKeyId":"abcd"}}"#;
        let ev = pb::integration::UplinkEvent {
            device_info: device("0004a30b001c0530"),
            f_cnt: 1,
            f_port: 1,
            data: vec![1, 2],
            join_server_context: Some(pb::integration::JoinServerContext {
                session_key_id: "abcd".into(),
            }),
            ..Default::default()
        };
        for message in [json.to_vec(), ev.encode_to_vec()] {
            let e = decode(&message).unwrap_err();
            assert!(
                matches!(
                    e,
                    MessageError::Field {
                        field: "joinServerContext",
                        ..
                    }
                ),
                "{e}"
            );
        }
        let plain = pb::integration::UplinkEvent {
            join_server_context: None,
            ..ev
        };
        assert_eq!(decode(&plain.encode_to_vec()).unwrap().data, [1, 2]);
    }

    #[test]
    fn malformed_protobuf_and_missing_device_are_errors() {
        assert!(matches!(
            decode(&[0x0a, 0xff, 0x01]),
            Err(MessageError::Protobuf(_))
        ));
        let no_device = pb::integration::UplinkEvent {
            f_cnt: 3,
            ..Default::default()
        };
        assert!(matches!(
            decode(&no_device.encode_to_vec()),
            Err(MessageError::Protobuf(_))
        ));
        let bad_port = pb::integration::UplinkEvent {
            device_info: device("0004a30b001c0530"),
            f_port: 300,
            ..Default::default()
        };
        assert!(matches!(
            decode(&bad_port.encode_to_vec()),
            Err(MessageError::Field {
                field: "f_port",
                ..
            })
        ));
    }

    #[test]
    fn missing_fields_are_errors() {
        assert!(decode(br#"{"fCnt":1}"#).is_err());
        assert!(decode(br#"{"deviceInfo":{"devEui":"0004a30b001c0530"}}"#).is_err());
        assert!(decode(br#"{"deviceInfo":{"devEui":"xyz"},"fCnt":1}"#).is_err());
    }
}
