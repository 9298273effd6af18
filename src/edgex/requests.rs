//! What arrives for us on the EdgeX message bus, and the answers:
//!
//! - `{prefix}/{service}/validate/device`: core-metadata asks whether we can
//!   serve a device before it stores it. We accept devices whose profile we
//!   have and that we hold an ABP session for (devices file or `secret`);
//!   anything else is refused with the reason. Reply on
//!   `{prefix}/response/{service}/{requestId}`.
//! - `{prefix}/device/command/request/{service}/{device}/{command}/{method}`:
//!   core-command's way to reach a device in v4. Served exactly like the REST
//!   command route; the answer (`EventResponse` or an error) goes back on the
//!   response topic.
//! - `{prefix}/system-events/core-metadata/device/{action}/{service}/...`:
//!   devices changed by others. An admin-state change takes effect at once
//!   (a LOCKED device refuses commands); devices added or deleted elsewhere
//!   are logged and counted (the devices file stays the source of sessions).
//!
//! Malformed requests are counted and logged, never answered with a panic.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::bus::BusMessage;
use crate::control::answer::{refuse, Answer, Refusal};
use crate::control::command::{execute, percent_decode};
use crate::control::plane::Plane;
use crate::devices::AdminState;

/// The topics to subscribe to for `service`.
pub fn subscriptions(prefix: &str, service: &str) -> Vec<String> {
    let s = super::event::encode_segment(service);
    vec![
        format!("{prefix}/{s}/validate/device"),
        format!("{prefix}/device/command/request/{s}/#"),
        format!("{prefix}/system-events/core-metadata/device/+/{s}/#"),
    ]
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Incoming {
    #[serde(rename = "requestID", default)]
    request_id: String,
    #[serde(rename = "correlationID", default)]
    correlation_id: String,
    #[serde(default)]
    payload: Value,
    #[serde(rename = "queryParams", default)]
    query_params: std::collections::BTreeMap<String, String>,
}

/// Answer requests from `rx` until it closes; replies go to `tx`.
pub async fn serve(
    mut rx: mpsc::Receiver<BusMessage>,
    tx: mpsc::Sender<BusMessage>,
    api: Arc<Plane>,
    prefix: String,
) {
    while let Some(m) = rx.recv().await {
        if let Some(reply) = handle(&api, &prefix, &m) {
            if tx.send(reply).await.is_err() {
                return;
            }
        }
    }
}

/// One message: its reply, if it wants one.
pub fn handle(api: &Plane, prefix: &str, m: &BusMessage) -> Option<BusMessage> {
    let service = super::event::encode_segment(&api.service_name);
    let rest = m
        .topic
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))?;
    let env: Incoming = match serde_json::from_slice(&m.payload) {
        Ok(e) => e,
        Err(e) => {
            api.metrics.bus_requests_malformed.fetch_add(1, Relaxed);
            tracing::warn!(topic = %m.topic, error = %e, "malformed message on the bus");
            return None;
        }
    };
    let levels: Vec<&str> = rest.split('/').collect();
    let answer = match levels.as_slice() {
        [s, "validate", "device"] if *s == service => validate(api, &env.payload),
        ["device", "command", "request", s, device, command, method] if *s == service => {
            let (Some(device), Some(command)) = (percent_decode(device), percent_decode(command))
            else {
                return None;
            };
            let method = match method.to_ascii_lowercase().as_str() {
                "get" => Method::GET,
                "set" | "put" => Method::PUT,
                _ => Method::PATCH, // answered 405
            };
            let body = serde_json::to_vec(&env.payload).unwrap_or_default();
            api.metrics.bus_commands.fetch_add(1, Relaxed);
            let options = crate::control::command::Options::from_pairs(
                env.query_params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            execute(api, &method, &device, &command, &options, &body)
        }
        ["system-events", "core-metadata", "device", action, ..] => {
            system_event(api, action, &env.payload);
            return None;
        }
        _ => return None,
    };
    if env.request_id.is_empty() {
        api.metrics.bus_requests_malformed.fetch_add(1, Relaxed);
        tracing::warn!(topic = %m.topic, "bus request without a requestID: cannot answer");
        return None;
    }
    Some(reply(prefix, &service, &env, answer))
}

fn reply(prefix: &str, service: &str, env: &Incoming, (status, body): Answer) -> BusMessage {
    let envelope = json!({
        "apiVersion": "v3",
        "receivedTopic": "",
        "correlationID": env.correlation_id,
        "requestID": env.request_id,
        "errorCode": u8::from(!status.is_success()),
        "payload": body,
        "contentType": "application/json",
    });
    BusMessage {
        topic: format!("{prefix}/response/{service}/{}", env.request_id),
        payload: serde_json::to_vec(&envelope).expect("JSON serialises"),
    }
}

/// Can we serve the device in this `AddDeviceRequest` (or bare device)?
fn validate(api: &Plane, payload: &Value) -> Answer {
    let device = payload.get("device").unwrap_or(payload);
    let name = device["name"].as_str().unwrap_or_default();
    let profile = device["profileName"].as_str().unwrap_or_default();
    let refuse = |why: String| {
        api.metrics.devices_refused.fetch_add(1, Relaxed);
        tracing::info!(
            device = name,
            why,
            "refused a device core-metadata asked about"
        );
        refuse(Refusal::BadRequest, why)
    };
    if super::held::is_held(device) && api.devices.id(name).is_some() {
        // One this edge holds for another edge, registering it itself.
        return (
            StatusCode::OK,
            json!({"apiVersion": "v3", "statusCode": 200}),
        );
    }
    let Some(id) = api.file_device(name) else {
        // Not in the devices file: served from EdgeX if we can read it (its
        // keys may come later, as a secret).
        let Some(p) = api.provisioning.as_ref() else {
            return refuse(format!("{name:?} is not in device-lorawan's devices file"));
        };
        return match super::device_dto::read(device, |n| p.profile(n).is_some()) {
            Ok(d) if p.from_file(&d.entry.name, d.entry.dev_eui) => refuse(format!(
                "{name:?}: its DevEUI {} belongs to a device of the devices file",
                d.entry.dev_eui
            )),
            Ok(_) => (
                StatusCode::OK,
                json!({"apiVersion": "v3", "statusCode": 200}),
            ),
            Err(why) => refuse(why),
        };
    };
    let state = api.devices.get(id);
    if state.profile.name != profile {
        return refuse(format!(
            "{name:?} uses profile {}, not {profile:?}",
            state.profile.name
        ));
    }
    let eui = device["protocols"]["lorawan"]["DevEUI"].as_str();
    if eui.is_some_and(|e| !e.eq_ignore_ascii_case(&state.dev_eui.to_string())) {
        return refuse(format!("{name:?} has another DevEUI here"));
    }
    if state.dev_addr.lock().expect("lock").is_none() && !api.app_stream {
        return refuse(format!(
            "no ABP session keys for {name:?}: POST them to /api/v3/secret first"
        ));
    }
    (
        StatusCode::OK,
        json!({"apiVersion": "v3", "statusCode": 200}),
    )
}

fn system_event(api: &Plane, action: &str, payload: &Value) {
    api.metrics.system_events.fetch_add(1, Relaxed);
    let device = &payload["details"];
    let name = device["name"].as_str().unwrap_or_default();
    if super::held::is_held(device) {
        // Held for another edge: its contract, not EdgeX, provides it.
        return;
    }
    let Some(id) = api.file_device(name) else {
        edgex_device_event(api, action, name, device);
        return;
    };
    match (action, device["adminState"].as_str()) {
        ("update", Some(s)) => {
            let state = if s == "LOCKED" {
                AdminState::Locked
            } else {
                AdminState::Unlocked
            };
            api.devices.get(id).set_admin_state(state);
            tracing::info!(
                device = name,
                admin_state = s,
                "admin state set by core-metadata"
            );
        }
        ("delete", _) => {
            api.devices.get(id).set_admin_state(AdminState::Locked);
            tracing::warn!(
                device = name,
                "device deleted in core-metadata: commands refused until it is back"
            );
        }
        _ => tracing::info!(action, device = name, "device event from core-metadata"),
    }
}

/// A device core-metadata holds for us that the devices file does not: added
/// or changed, it is served (once its keys are in); deleted, it is not.
fn edgex_device_event(api: &Plane, action: &str, name: &str, device: &Value) {
    let Some(p) = api.provisioning.as_ref() else {
        return;
    };
    match action {
        "add" | "update" => {
            if let Some(outcome) = serve_edgex_device(api, device) {
                tracing::info!(action, device = name, ?outcome, "device from core-metadata");
            }
        }
        "delete" => {
            p.remove(name);
        }
        _ => tracing::info!(action, device = name, "device event from core-metadata"),
    }
}

/// Serve `device` (a `Device` DTO from core-metadata or a definition file)
/// once its keys are in; `None` (logged, counted) when it cannot be served.
pub fn serve_edgex_device(
    api: &Plane,
    device: &Value,
) -> Option<crate::edgex::provisioning::Outcome> {
    let p = api.provisioning.as_ref()?;
    let name = device["name"].as_str().unwrap_or_default();
    match super::device_dto::read(device, |n| p.profile(n).is_some()) {
        Ok(d) => Some(p.provide(d, |secret| api.secret_data(secret))),
        Err(why) => {
            api.metrics.devices_refused.fetch_add(1, Relaxed);
            tracing::warn!(device = name, why, "device from EdgeX not served");
            None
        }
    }
}
