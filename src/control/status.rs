//! The answers that are not device commands or secrets: service status
//! this service adds (gateways, handover, registration, a device's LoRaWAN
//! session) and discovery, as the REST routes serve them.

use hyper::StatusCode;
use serde_json::json;

use super::answer::{refuse, Answer, Refusal, API_VERSION};
use super::plane::Plane;

/// The Basics Station gateways that connected since start: connected or
/// not, last seen, uplinks, downlinks, round trip. Not an EdgeX route.
pub fn gateways(state: &Plane) -> Answer {
    let stations = state.metrics.stations.lock().expect("metrics lock");
    let list: Vec<serde_json::Value> = stations
        .iter()
        .map(|(eui, s)| {
            let mut v = serde_json::to_value(s).expect("plain fields");
            v["gateway"] = eui.to_string().into();
            v["protocol"] = "basic-station".into();
            v
        })
        .collect();
    (
        StatusCode::OK,
        json!({"apiVersion": API_VERSION, "statusCode": 200, "gateways": list}),
    )
}

/// `POST /api/v3/discovery`: 202 and the request id (the running one's, if
/// a discovery runs); 503 when discovery is off, as device-sdk-go answers.
pub fn discover(state: &Plane) -> Answer {
    let Some(d) = state.discovery.as_ref().filter(|d| d.enabled) else {
        return refuse(
            Refusal::Unavailable,
            "device discovery is disabled (Devices.Discovery.Enabled)",
        );
    };
    let id = d.start(uuid::Uuid::new_v4().to_string(), |name| {
        state.secret_data(name)
    });
    (
        StatusCode::ACCEPTED,
        json!({"apiVersion": API_VERSION, "requestId": id, "statusCode": 202,
               "message": "device discovery is triggered"}),
    )
}

/// The handover contracts of this edge: as provider (holder, epoch,
/// sessions, image held) and as customer (provider, devices, image).
/// Not an EdgeX route: the orchestration status this service adds.
pub fn handover_status(state: &Plane) -> Answer {
    let provider = state
        .provider
        .as_ref()
        .map(|p| p.status())
        .unwrap_or_default();
    let customer = match crate::handover::customer::contracts(&state.data_dir) {
        Ok(v) => v,
        Err(e) => return refuse(Refusal::Internal, e),
    };
    let market = crate::market::state::State::load(&state.data_dir);
    let customer: Vec<serde_json::Value> = customer
        .iter()
        .map(|c| {
            let c = &c.contract;
            // Bought on the market: which demand, for its record there.
            let bought = market
                .as_ref()
                .filter(|m| m.contract_id == c.id)
                .map(|m| json!({"demandId": m.demand_id}));
            json!({"id": c.id, "provider": c.provider.id, "providerAddress": c.provider.address,
                   "devices": c.devices, "image": c.image.digest, "imageCid": c.image.cid,
                   "imageSize": c.image.size, "notAfter": c.not_after, "market": bought})
        })
        .collect();
    (
        StatusCode::OK,
        json!({"apiVersion": API_VERSION, "statusCode": 200,
               "provider": provider, "customer": customer}),
    )
}

/// The settlement receipts this edge keeps, as customer and provider.
pub fn handover_receipts(state: &Plane) -> Answer {
    match crate::handover::receipt::kept(&state.data_dir) {
        Ok(kept) => {
            let receipts: Vec<serde_json::Value> = kept
                .iter()
                .map(|(role, r)| json!({"role": role, "receipt": r, "verified": r.verify(false).is_ok()}))
                .collect();
            (
                StatusCode::OK,
                json!({"apiVersion": API_VERSION, "statusCode": 200, "receipts": receipts}),
            )
        }
        Err(e) => refuse(Refusal::Internal, e),
    }
}

/// A device's LoRaWAN session as this service holds it: activation, DevAddr,
/// and for OTAA devices the join state. Never a key. Not an EdgeX route.
pub fn lorawan_device(state: &Plane, name: &str) -> Answer {
    let Some(name) = super::command::percent_decode(name) else {
        return refuse(
            Refusal::BadRequest,
            "the device name is not valid percent-encoding",
        );
    };
    // A device from EdgeX or discovery: waiting for its keys, or served.
    let p = state.provisioning.as_ref();
    if let Some(secret) = p.and_then(|p| p.waiting_for(&name)) {
        return (
            StatusCode::OK,
            json!({"apiVersion": API_VERSION, "statusCode": 200, "name": name,
                   "source": "edgex", "state": "waiting-for-keys", "secretName": secret}),
        );
    }
    let source = match state.file_device(&name) {
        Some(_) => "devices-file",
        None => "edgex",
    };
    let Some(id) = state.devices.id(&name) else {
        if p.is_some_and(|p| p.serves(&name)) {
            // Served a moment ago: the pipeline has yet to take it.
            return (
                StatusCode::OK,
                json!({"apiVersion": API_VERSION, "statusCode": 200, "name": name,
                       "source": "edgex", "state": "served"}),
            );
        }
        return refuse(Refusal::NotFound, format_args!("no device {name}"));
    };
    let d = state.devices.get(id);
    let dev_addr = *d.dev_addr.lock().expect("device state lock");
    let mut body = json!({"apiVersion": API_VERSION, "statusCode": 200, "name": &*d.name,
        "source": source, "state": "served",
        "devEui": d.dev_eui, "activation": if d.otaa { "otaa" } else { "abp" },
        "devAddr": dev_addr.map(|a| a.to_string())});
    if let Some(j) = d.join.lock().expect("device state lock").clone() {
        body["join"] = serde_json::to_value(j).expect("join view serialises");
    }
    (StatusCode::OK, body)
}

/// Where each item registered with core-metadata stands (the last pass).
/// Not an EdgeX route: the registration status this service adds.
pub fn registration_status(state: &Plane) -> Answer {
    let Some(r) = state.registration.as_ref() else {
        return (
            StatusCode::OK,
            json!({"apiVersion": API_VERSION, "statusCode": 200, "enabled": false, "items": []}),
        );
    };
    let mut body = serde_json::to_value(r.snapshot()).expect("report serialises");
    body["apiVersion"] = json!(API_VERSION);
    body["statusCode"] = json!(200);
    body["enabled"] = json!(true);
    (StatusCode::OK, body)
}

/// Ask for a new registration pass now (refused items are tried again).
pub fn registration_again(state: &Plane) -> Answer {
    match state.registration.as_ref() {
        Some(r) => {
            r.again.notify_one();
            (
                StatusCode::ACCEPTED,
                json!({"apiVersion": API_VERSION, "statusCode": 202,
                       "message": "a registration pass was started; GET /api/v3/registration shows its outcome"}),
            )
        }
        None => refuse(
            Refusal::Conflict,
            "registration with core-metadata is off (Edgex.Metadata.Enabled)",
        ),
    }
}

/// `DELETE /api/v3/discovery` (all) or `.../requestId/{id}` (one).
pub fn stop_discovery(state: &Plane, id: Option<&str>) -> Answer {
    let stopped = match (&state.discovery, id) {
        (Some(d), None) => {
            d.stop(None);
            true
        }
        (Some(d), Some(id)) => d.stop(Some(id)),
        (None, None) => true,
        (None, Some(_)) => false,
    };
    match stopped {
        true => (
            StatusCode::OK,
            json!({"apiVersion": API_VERSION, "statusCode": 200}),
        ),
        false => refuse(
            Refusal::NotFound,
            "no discovery with this request id is running",
        ),
    }
}
