//! A stand-in EdgeX core-data: the event route of the real API on a loopback
//! port, validating every request against the official OpenAPI schema and
//! storing events by id (409 for an id it already has, as core-data does)
//! and answering `GET /api/v3/event/id/{id}`.
//! It can be stopped and restarted on the same port.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

pub struct State {
    pub events: Mutex<BTreeMap<String, Value>>,
    pub posts: AtomicU64,
    pub conflicts: AtomicU64,
    pub invalid: Mutex<Vec<String>>,
    validator: Option<jsonschema::Validator>,
}

pub struct CoreData {
    pub state: Arc<State>,
    server: super::standin::StandIn,
}

impl CoreData {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// Listening on `host` instead of loopback.
    pub async fn start_on(host: &str) -> Self {
        let state = Arc::new(State {
            events: Mutex::new(BTreeMap::new()),
            posts: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            invalid: Mutex::new(Vec::new()),
            validator: super::openapi_validator("core-data.yaml", "AddEventRequest"),
        });
        let st = state.clone();
        let server =
            super::standin::StandIn::start_on(host, Arc::new(move |m, p, _, b| st.handle(m, p, b)))
                .await;
        Self { state, server }
    }

    pub fn stored(&self) -> usize {
        self.state.events.lock().unwrap().len()
    }
}

super::standin::serves_through!(CoreData);

impl State {
    fn handle(&self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // GET /api/v3/event/id/{id}: the event, as core-data answers it.
        if method == Method::GET && segs.len() == 5 && segs[..4] == ["api", "v3", "event", "id"] {
            return match self.events.lock().unwrap().get(segs[4]) {
                Some(ev) => (
                    StatusCode::OK,
                    json!({"apiVersion": "v3", "statusCode": 200, "event": ev}),
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    json!({"apiVersion": "v3", "statusCode": 404, "message": "event not found"}),
                ),
            };
        }
        if method != Method::POST || segs.len() != 7 || segs[..3] != ["api", "v3", "event"] {
            return (
                StatusCode::NOT_FOUND,
                json!({"apiVersion": "v3", "statusCode": 404}),
            );
        }
        self.posts.fetch_add(1, Relaxed);
        let bad = json!({"apiVersion": "v3", "statusCode": 400});
        let doc: Value = match serde_json::from_slice(body) {
            Ok(d) => d,
            Err(e) => {
                self.invalid.lock().unwrap().push(format!("not JSON: {e}"));
                return (StatusCode::BAD_REQUEST, bad);
            }
        };
        let errors = super::schema_errors(&self.validator, &doc);
        let ev = &doc["event"];
        let decode = |s: &str| s.replace("%20", " ");
        let path_ok = ev["profileName"] == decode(segs[4])
            && ev["deviceName"] == decode(segs[5])
            && ev["sourceName"] == decode(segs[6]);
        if !errors.is_empty() || !path_ok {
            self.invalid
                .lock()
                .unwrap()
                .push(format!("{path}: {errors:?} path_ok={path_ok}"));
            return (StatusCode::BAD_REQUEST, bad);
        }
        let id = ev["id"].as_str().unwrap().to_string();
        let mut events = self.events.lock().unwrap();
        if events.contains_key(&id) {
            self.conflicts.fetch_add(1, Relaxed);
            return (
                StatusCode::CONFLICT,
                json!({"apiVersion": "v3", "statusCode": 409, "message": "event already exists"}),
            );
        }
        events.insert(id.clone(), ev.clone());
        (
            StatusCode::CREATED,
            json!({"apiVersion": "v3", "requestId": doc["requestId"], "statusCode": 201, "id": id}),
        )
    }
}
