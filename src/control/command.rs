//! The device command routes: `GET /api/v3/device/name/{name}/{command}`
//! answers the last decoded values of the command's resources as an EdgeX
//! `EventResponse` (LoRaWAN devices push: 404 until the first uplink
//! carried one); `PUT` with a `SettingRequest` is checked against the
//! profile. A command is a profile `deviceCommand`, or a resource by name,
//! as in EdgeX.

use hyper::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use super::answer::{refuse, Answer, Refusal, API_VERSION};
use super::plane::Plane;
use crate::codec::profile::ReadWrite;
use crate::codec::DeviceProfile;
use crate::edgex::event::reading;
use crate::pipeline::device_state::DeviceState;

/// A command resolved against a profile: its resources and access.
#[derive(Debug, PartialEq)]
pub struct Resolved {
    pub resources: Vec<usize>,
    pub readable: bool,
    pub writable: bool,
}

fn access(rw: &str) -> (bool, bool) {
    (rw.contains('R'), rw.contains('W'))
}

/// `command` of `profile`: a deviceCommand, else a resource of that name.
pub fn resolve(profile: &DeviceProfile, command: &str) -> Option<Resolved> {
    let index = |name: &str| profile.resource_index(name);
    if let Some(c) = profile
        .device_commands
        .iter()
        .find(|c| c["name"].as_str() == Some(command))
    {
        let (readable, writable) = access(c["readWrite"].as_str().unwrap_or("R"));
        let resources = c["resourceOperations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|op| index(op["deviceResource"].as_str()?))
            .collect();
        return Some(Resolved {
            resources,
            readable,
            writable,
        });
    }
    let i = index(command)?;
    let rw = match profile.device_resources[i].properties.read_write {
        ReadWrite::R => "R",
        ReadWrite::W => "W",
        ReadWrite::RW | ReadWrite::WR => "RW",
    };
    let (readable, writable) = access(rw);
    Some(Resolved {
        resources: vec![i],
        readable,
        writable,
    })
}

pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A GET command's options (device-sdk query parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// `ds-pushevent=true`: the answer's event is also sent to EdgeX.
    pub push_event: bool,
    /// `ds-returnevent=false`: the answer carries no event.
    pub return_event: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            push_event: false,
            return_event: true,
        }
    }
}

impl Options {
    /// From `key=value` pairs (a URL query, or a bus request's queryParams).
    pub fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut o = Self::default();
        for (k, v) in pairs {
            let v = v.eq_ignore_ascii_case("true") || v == "yes";
            match k {
                "ds-pushevent" => o.push_event = v,
                "ds-returnevent" => o.return_event = v,
                _ => {}
            }
        }
        o
    }

    pub fn from_query(query: Option<&str>) -> Self {
        Self::from_pairs(
            query
                .unwrap_or("")
                .split('&')
                .filter_map(|kv| kv.split_once('=')),
        )
    }
}

/// `rest` is `{name}/{command}` (percent-encoded).
pub fn route(state: &Plane, method: &Method, rest: &str, options: &Options, body: &[u8]) -> Answer {
    let parts: Option<Vec<String>> = rest.split('/').map(percent_decode).collect();
    let Some([name, command]) = parts.as_deref() else {
        return refuse(Refusal::NotFound, "no such route");
    };
    execute(state, method, name, command, options, body)
}

/// Run `command` of device `name` (names already decoded).
pub fn execute(
    state: &Plane,
    method: &Method,
    name: &str,
    command: &str,
    options: &Options,
    body: &[u8],
) -> Answer {
    let Some(id) = state.devices.id(name) else {
        return refuse(Refusal::NotFound, format_args!("no device named {name:?}"));
    };
    let device = state.devices.get(id);
    let Some(cmd) = resolve(&device.profile, command) else {
        return refuse(
            Refusal::NotFound,
            format_args!(
                "profile {} has no command or resource {command:?}",
                device.profile.name
            ),
        );
    };
    match *method {
        Method::GET => get(state, &device, command, &cmd, options),
        Method::PUT => put(state, &device, command, &cmd, body),
        _ => refuse(Refusal::NotAllowed, format_args!("{method} not allowed")),
    }
}

fn get(
    state: &Plane,
    device: &DeviceState,
    command: &str,
    cmd: &Resolved,
    options: &Options,
) -> Answer {
    if !cmd.readable {
        return refuse(
            Refusal::NotAllowed,
            format_args!("{command} is not readable"),
        );
    }
    if device.locked() {
        return refuse(
            Refusal::Locked,
            format_args!("device {} is locked", device.name),
        );
    }
    let values = device.last_values(&cmd.resources);
    let Some(origin) = values.iter().map(|(_, v)| v.origin).max() else {
        return refuse(
            Refusal::NotFound,
            format_args!("device {} has not reported {command} yet", device.name),
        );
    };
    let readings: Vec<_> = values
        .iter()
        .map(|(i, v)| {
            reading(
                Uuid::new_v4(),
                v.origin,
                &device.name,
                &device.profile,
                *i,
                &v.value,
            )
        })
        .collect();
    let event = json!({
        "apiVersion": API_VERSION, "id": Uuid::new_v4(), "deviceName": &*device.name,
        "profileName": device.profile.name, "sourceName": command, "origin": origin,
        "readings": readings});
    if options.push_event {
        let Some(pusher) = state.events.as_ref() else {
            return refuse(
                Refusal::Internal,
                "ds-pushevent: no EdgeX delivery is configured (Edgex.Delivery)",
            );
        };
        if let Err(e) = pusher.push(&device.profile.name, &device.name, command, &event) {
            tracing::warn!(device = %device.name, command, error = %e, "ds-pushevent: event not queued");
            return refuse(
                Refusal::Internal,
                format_args!("ds-pushevent: the event could not be queued: {e}"),
            );
        }
    }
    let mut body = json!({"apiVersion": API_VERSION, "statusCode": 200});
    if options.return_event {
        body["event"] = event;
    }
    (StatusCode::OK, body)
}

/// Encode the setting into a downlink and queue it for the device's next
/// uplink (class A: a device can only be reached right after it speaks).
fn put(state: &Plane, device: &DeviceState, command: &str, cmd: &Resolved, body: &[u8]) -> Answer {
    if !cmd.writable {
        return refuse(Refusal::NotAllowed, format_args!("{command} is read-only"));
    }
    if device.locked() {
        return refuse(
            Refusal::Locked,
            format_args!("device {} is locked", device.name),
        );
    }
    // The spec lists no 400 for PUT: a body that names no resource of the
    // command (unreadable, empty, or others') is answered 404.
    let Ok(settings) = serde_json::from_slice::<std::collections::BTreeMap<String, String>>(body)
    else {
        return refuse(
            Refusal::NotFound,
            "no setting found: the body must be a SettingRequest (resource name to value string)",
        );
    };
    for key in settings.keys() {
        let known = cmd
            .resources
            .iter()
            .any(|&i| device.profile.device_resources[i].name == *key);
        if !known {
            return refuse(
                Refusal::NotFound,
                format_args!("{command} has no resource {key:?}"),
            );
        }
    }
    if settings.is_empty() {
        return refuse(
            Refusal::NotFound,
            format_args!("the request names none of {command}'s resources"),
        );
    }
    let encoded = match &device.js_encoder {
        Some((js, vars)) => crate::codec::setting::encode_js(&device.profile, &settings, js, vars),
        None => crate::codec::setting::encode(&device.profile, &settings),
    };
    let downlink = match encoded {
        Ok(d) => d,
        Err(e) => return refuse(Refusal::BadRequest, e),
    };
    if downlink.payload.len() > device.max_downlink {
        return refuse(
            Refusal::BadRequest,
            format_args!(
                "{command} encodes to {} bytes; the device's region allows at most {} in a downlink",
                downlink.payload.len(),
                device.max_downlink
            ),
        );
    }
    if !state.downlinks_enabled {
        return refuse(
            Refusal::Internal,
            "downlinks are disabled (Downlink.Enabled)",
        );
    }
    match state.downlinks.push(&device.name, downlink) {
        Ok(seq) => {
            tracing::info!(device = %device.name, command, seq, "downlink queued for the next uplink");
            (
                StatusCode::OK,
                json!({"apiVersion": API_VERSION, "statusCode": 200}),
            )
        }
        Err(e) => refuse(Refusal::Internal, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_like_edgex() {
        let profiles = crate::codec::profile::load_dir(std::path::Path::new("profiles")).unwrap();
        let p = &profiles["Dragino-LPP-Mote"];
        let climate = resolve(p, "climate").unwrap();
        assert_eq!(climate.resources.len(), 2);
        assert!(climate.readable && !climate.writable);
        let interval = resolve(p, "reportInterval").unwrap();
        assert!(
            interval.readable && interval.writable,
            "a resource is a command too"
        );
        assert_eq!(resolve(p, "nope"), None);
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("a%2"), None);
    }
}
