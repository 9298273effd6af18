//! Application-integration uplinks, already decrypted by a network server:
//! ChirpStack v4 (`application/{id}/device/{devEui}/event/up`, `deviceInfo.devEui`,
//! `fCnt`, `fPort`, `data`) and the loraserver v3 application server
//! (`devEUI` in base64 or hex, `rxInfo[].gatewayID`, `loRaSNR`).

use serde::Deserialize;

use super::bridge::{b64, gateway_id, MessageError};
use crate::lorawan::Eui64;
use crate::pipeline::uplink::RxMeta;

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

pub fn decode(payload: &[u8]) -> Result<AppUplink, MessageError> {
    let m: Msg = serde_json::from_slice(payload).map_err(|e| MessageError::Json(e.to_string()))?;
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
    let mut best: Option<RxMeta> = None;
    for r in &m.rx_info {
        let Some(gw) = r.gateway_id.as_deref() else {
            continue;
        };
        let rx = RxMeta {
            time_ns,
            gps_time_ns: None,
            station: None,
            gateway: gateway_id(gw)?,
            rssi: r.rssi,
            snr: r.snr.unwrap_or(0.0),
            tmst: None,
            frequency: None,
            datr: None,
        };
        if best.is_none_or(|b| rx.better_than(&b)) {
            best = Some(rx);
        }
    }
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
        rx: best.unwrap_or(RxMeta {
            time_ns,
            gps_time_ns: None,
            station: None,
            gateway: Eui64::default(),
            rssi: 0,
            snr: 0.0,
            tmst: None,
            frequency: None,
            datr: None,
        }),
        gateways: m.rx_info.len() as u32,
    })
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

    #[test]
    fn missing_fields_are_errors() {
        assert!(decode(br#"{"fCnt":1}"#).is_err());
        assert!(decode(br#"{"deviceInfo":{"devEui":"0004a30b001c0530"}}"#).is_err());
        assert!(decode(br#"{"deviceInfo":{"devEui":"xyz"},"fCnt":1}"#).is_err());
    }
}
