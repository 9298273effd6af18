//! EdgeX v3 `AddEventRequest`s from decoded uplinks (core-data API,
//! `POST /api/v3/event/{service}/{profile}/{device}/{source}`).
//!
//! Event ids are deterministic: a UUIDv5 of (DevEUI, counter epoch, full
//! FCnt), the identity of a frame on air. A redelivery, or the same frame
//! published by a second edge after a handover, carries the same id, so
//! core-data's "already stored" answer makes delivery idempotent.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;
use uuid::Uuid;

use crate::codec::{DeviceProfile, Value, ValueType};
use crate::pipeline::uplink::Uplink;

pub const API_VERSION: &str = "v3";

/// The namespace of device-lorawan's event ids (a fixed random UUID).
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_8a0e_6f4b_4c41_9b6d_2f0a_d3e7_1a52);

/// The id of the event for frame `fcnt` of device `dev_eui` in counter epoch `epoch`.
pub fn event_id(dev_eui: &str, epoch: u32, fcnt: u32) -> Uuid {
    Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!("{dev_eui}/{epoch}/{fcnt}").as_bytes(),
    )
}

/// Source name for an uplink's event: the resource when there is one
/// reading, else `uplink` (the profiles ship an `uplink` command covering
/// every uplink resource).
pub fn source_name(up: &Uplink) -> &str {
    match up.readings.as_slice() {
        [one] => &up.profile.device_resources[usize::from(one.resource)].name,
        _ => "uplink",
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AddEventRequest<'a> {
    pub api_version: &'static str,
    pub request_id: Uuid,
    pub event: Event<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<'a> {
    pub api_version: &'static str,
    pub id: Uuid,
    pub device_name: &'a str,
    pub profile_name: &'a str,
    pub source_name: &'a str,
    pub origin: i64,
    pub readings: Vec<Reading<'a>>,
    pub tags: BTreeMap<&'static str, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading<'a> {
    pub id: Uuid,
    pub origin: i64,
    pub device_name: &'a str,
    pub resource_name: &'a str,
    pub profile_name: &'a str,
    pub value_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
    /// `Object` resources: the value as JSON text. core-data's OpenAPI
    /// types `objectValue` as a string (device-sdk-go sends the object
    /// itself; core-data stores either).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub units: &'a str,
}

/// The reading of `value` for resource `resource` (an index into the
/// profile's resources): EdgeX value string, or base64 and a media type for
/// Binary resources.
pub fn reading<'a>(
    id: Uuid,
    origin: i64,
    device: &'a str,
    profile: &'a DeviceProfile,
    resource: usize,
    value: &Value,
) -> Reading<'a> {
    let res = &profile.device_resources[resource];
    let vt = res.properties.value_type;
    let mut object_value = None;
    let (value, binary_value) = match (value, vt) {
        (Value::Binary(b), ValueType::Binary) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
        // A codec's structure, as JSON text.
        (Value::Text(t), ValueType::Object) => {
            object_value = Some(t.clone());
            (None, None)
        }
        (v, vt) => (Some(v.to_edgex_string(vt)), None),
    };
    Reading {
        id,
        origin,
        device_name: device,
        resource_name: &res.name,
        profile_name: &profile.name,
        value_type: vt.as_str(),
        media_type: binary_value.as_ref().map(|_| {
            res.properties
                .media_type
                .as_deref()
                .unwrap_or("application/octet-stream")
        }),
        value,
        binary_value,
        object_value,
        units: &res.properties.units,
    }
}

/// The request publishing `up`.
pub fn add_event_request(up: &Uplink) -> AddEventRequest<'_> {
    let eui = up.dev_eui.to_string();
    let id = event_id(&eui, up.epoch, up.fcnt);
    let profile = &up.profile;
    let readings = up
        .readings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rid = Uuid::new_v5(&id, &(i as u32).to_be_bytes());
            reading(
                rid,
                up.received_ns,
                &up.device,
                profile,
                r.resource.into(),
                &r.value,
            )
        })
        .collect();
    let mut tags = BTreeMap::new();
    tags.insert("devEui", eui);
    tags.insert("fcnt", up.fcnt.to_string());
    tags.insert("counterEpoch", up.epoch.to_string());
    if let Some(p) = up.fport {
        tags.insert("fport", p.to_string());
    }
    tags.insert("gateway", up.rx.gateway.to_string());
    tags.insert("gateways", up.gateways.to_string());
    tags.insert("rssi", up.rx.rssi.to_string());
    tags.insert("snr", up.rx.snr.to_string());
    if up.confirmed {
        tags.insert("confirmed", "true".into());
    }
    AddEventRequest {
        api_version: API_VERSION,
        request_id: Uuid::new_v5(&id, b"request"),
        event: Event {
            api_version: API_VERSION,
            id,
            device_name: &up.device,
            profile_name: &profile.name,
            source_name: source_name(up),
            origin: up.received_ns,
            readings,
            tags,
        },
    }
}

/// `s` as one URL path segment or topic level: unreserved characters as
/// they are, everything else percent-encoded (EdgeX encodes names in both).
pub fn encode_segment(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// core-data's path for `up`'s event (segments percent-encoded).
pub fn event_path(service: &str, up: &Uplink) -> String {
    let seg = encode_segment;
    format!(
        "/api/v3/event/{}/{}/{}/{}",
        seg(service),
        seg(&up.profile.name),
        seg(&up.device),
        seg(source_name(up))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_frame() {
        let a = event_id("70b3d57ed0000001", 0, 12);
        assert_eq!(
            a,
            event_id("70b3d57ed0000001", 0, 12),
            "stable across calls and processes"
        );
        assert_ne!(
            a,
            event_id("70b3d57ed0000001", 1, 12),
            "a reboot's frame 12 is another frame"
        );
        assert_ne!(a, event_id("70b3d57ed0000002", 0, 12));
        assert_eq!(a.get_version_num(), 5);
    }
}
