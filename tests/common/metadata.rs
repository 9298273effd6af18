//! A stand-in EdgeX core-metadata: the device-service, device-profile and
//! device routes of the real API, answering multi-status (207) arrays item
//! by item as core-metadata does, validating every request item against the
//! official OpenAPI schema, and keeping every request body so a test can
//! check that no key was ever sent. As core-metadata does (its request
//! reader validates every DTO before any is stored), one invalid item gets
//! the whole request a plain-text 400.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

pub struct State {
    pub services: Mutex<BTreeMap<String, Value>>,
    pub profiles: Mutex<BTreeMap<String, Value>>,
    pub devices: Mutex<BTreeMap<String, Value>>,
    pub watchers: Mutex<BTreeMap<String, Value>>,
    /// Every request: "METHOD path body".
    pub requests: Mutex<Vec<String>>,
    pub invalid: Mutex<Vec<String>>,
    /// Devices to refuse (a per-item 400), to exercise partial success.
    pub refuse_devices: Mutex<BTreeSet<String>>,
    /// Profiles to find invalid, as core-metadata finds a profile it cannot
    /// take: the whole request that carries one is refused (400).
    pub refuse_profiles: Mutex<BTreeSet<String>>,
    validators: BTreeMap<&'static str, Option<jsonschema::Validator>>,
}

pub struct Metadata {
    pub state: Arc<State>,
    server: super::standin::StandIn,
}

impl Metadata {
    pub async fn start() -> Self {
        let validators = [
            "AddDeviceServiceRequest",
            "UpdateDeviceServiceRequest",
            "AddDeviceProfileRequest",
            "UpdateDeviceProfileRequest",
            "AddDeviceRequest",
            "UpdateDeviceRequest",
            "AddProvisionWatcherRequest",
        ]
        .into_iter()
        .map(|s| (s, super::openapi_validator("core-metadata.yaml", s)))
        .collect();
        let state = Arc::new(State {
            services: Mutex::default(),
            profiles: Mutex::default(),
            devices: Mutex::default(),
            watchers: Mutex::default(),
            requests: Mutex::default(),
            invalid: Mutex::default(),
            refuse_devices: Mutex::default(),
            refuse_profiles: Mutex::default(),
            validators,
        });
        let st = state.clone();
        let server =
            super::standin::StandIn::start(Arc::new(move |m, p, b| st.handle(m, p, b))).await;
        Self { state, server }
    }
}

super::standin::serves_through!(Metadata);

fn item(status: u16, message: &str) -> Value {
    let mut v = json!({"apiVersion": "v3", "statusCode": status});
    if status < 300 {
        v["id"] = json!(uuid::Uuid::new_v4());
    } else {
        v["message"] = json!(message);
    }
    v
}

/// core-metadata's answer to a request with an invalid item: `http.Error`,
/// a plain-text body (sent here as a JSON string, the stand-in's only body type).
fn whole_request_refused(message: &str) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, Value::String(message.to_string()))
}

impl State {
    fn handle(&self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
        self.requests
            .lock()
            .unwrap()
            .push(format!("{method} {path} {}", String::from_utf8_lossy(body)));
        let not_found = |what: &str| {
            (
                StatusCode::NOT_FOUND,
                json!({"apiVersion": "v3", "statusCode": 404, "message": format!("{what} not found")}),
            )
        };
        if method == Method::GET {
            if let Some(service) = path.strip_prefix("/api/v3/device/service/name/") {
                let devices: Vec<Value> = self
                    .devices
                    .lock()
                    .unwrap()
                    .values()
                    .filter(|d| d["serviceName"] == service)
                    .cloned()
                    .collect();
                return (
                    StatusCode::OK,
                    json!({"apiVersion": "v3", "statusCode": 200,
                           "totalCount": devices.len(), "devices": devices}),
                );
            }
            let Some(name) = path.strip_prefix("/api/v3/deviceservice/name/") else {
                return not_found(path);
            };
            return match self.services.lock().unwrap().get(name) {
                Some(s) => (
                    StatusCode::OK,
                    json!({"apiVersion": "v3", "statusCode": 200, "service": s}),
                ),
                None => not_found(&format!("device service {name}")),
            };
        }
        let (schema, key) = match (method.as_str(), path) {
            ("POST", "/api/v3/deviceservice") => ("AddDeviceServiceRequest", "service"),
            ("PATCH", "/api/v3/deviceservice") => ("UpdateDeviceServiceRequest", "service"),
            ("POST", "/api/v3/deviceprofile") => ("AddDeviceProfileRequest", "profile"),
            ("PUT", "/api/v3/deviceprofile") => ("UpdateDeviceProfileRequest", "profile"),
            ("POST", "/api/v3/device") => ("AddDeviceRequest", "device"),
            ("PATCH", "/api/v3/device") => ("UpdateDeviceRequest", "device"),
            ("POST", "/api/v3/provisionwatcher") => {
                ("AddProvisionWatcherRequest", "provisionwatcher")
            }
            _ => return not_found(path),
        };
        let Ok(Value::Array(reqs)) = serde_json::from_slice::<Value>(body) else {
            self.invalid
                .lock()
                .unwrap()
                .push(format!("{method} {path}: not a JSON array"));
            return (
                StatusCode::BAD_REQUEST,
                json!({"apiVersion": "v3", "statusCode": 400, "message": "not a JSON array"}),
            );
        };
        for r in &reqs {
            let errors = super::schema_errors(&self.validators[schema], r);
            if !errors.is_empty() {
                self.invalid
                    .lock()
                    .unwrap()
                    .push(format!("{method} {path}: {schema}: {errors:?}"));
                return whole_request_refused(&format!("{schema}: {errors:?}"));
            }
            let name = r[key]["name"].as_str().unwrap_or_default();
            if key == "profile" && self.refuse_profiles.lock().unwrap().contains(name) {
                return whole_request_refused(&format!(
                    "device profile {name}: Key: 'DeviceProfile.DeviceResources[0].Properties.ValueType' \
                     Error:Field validation for 'ValueType' failed on the 'oneof' tag"
                ));
            }
        }
        let answers = reqs
            .iter()
            .map(|r| self.apply(method, key, &r[key]))
            .collect();
        (StatusCode::MULTI_STATUS, Value::Array(answers))
    }

    /// One item of a multi-request, as core-metadata would treat it.
    fn apply(&self, method: &Method, key: &str, dto: &Value) -> Value {
        let name = dto["name"].as_str().unwrap_or_default().to_string();
        let table = match key {
            "service" => &self.services,
            "profile" => &self.profiles,
            "provisionwatcher" => &self.watchers,
            _ => &self.devices,
        };
        if key == "device" && *method == Method::POST {
            if self.refuse_devices.lock().unwrap().contains(&name) {
                return item(400, "refused by the test");
            }
            let profile = dto["profileName"].as_str().unwrap_or_default();
            if !self.profiles.lock().unwrap().contains_key(profile) {
                return item(404, &format!("device profile {profile} not found"));
            }
            let service = dto["serviceName"].as_str().unwrap_or_default();
            if !self.services.lock().unwrap().contains_key(service) {
                return item(404, &format!("device service {service} not found"));
            }
        }
        let mut table = table.lock().unwrap();
        match (method.as_str(), table.get_mut(&name)) {
            ("POST", Some(_)) => item(409, &format!("{key} {name} exists")),
            ("POST", None) => {
                table.insert(name, dto.clone());
                item(201, "")
            }
            ("PATCH", Some(existing)) => {
                for (k, v) in dto.as_object().into_iter().flatten() {
                    existing[k] = v.clone();
                }
                item(200, "")
            }
            (_, Some(existing)) => {
                *existing = dto.clone();
                item(200, "")
            }
            (_, None) => item(404, &format!("{key} {name} not found")),
        }
    }
}
