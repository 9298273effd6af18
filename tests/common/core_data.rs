//! A stand-in EdgeX core-data: the event route of the real API on a loopback
//! port, validating every request against the official OpenAPI schema and
//! storing events by id (409 for an id it already has, as core-data does).
//! It can be stopped (listener and open connections closed) and restarted on
//! the same port.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub struct State {
    pub events: Mutex<BTreeMap<String, serde_json::Value>>,
    pub posts: AtomicU64,
    pub conflicts: AtomicU64,
    pub invalid: Mutex<Vec<String>>,
    validator: jsonschema::Validator,
}

pub struct CoreData {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl CoreData {
    pub async fn start() -> Self {
        let state = Arc::new(State {
            events: Mutex::new(BTreeMap::new()),
            posts: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            invalid: Mutex::new(Vec::new()),
            validator: super::openapi_validator("core-data.yaml", "AddEventRequest"),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut cd = Self {
            addr,
            state,
            task: None,
        };
        cd.serve(listener);
        cd
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let state = self.state.clone();
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the task closes them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }));
    }

    /// Go away: the port refuses connections until `restart`.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        self.serve(listener);
    }

    pub fn stored(&self) -> usize {
        self.state.events.lock().unwrap().len()
    }
}

impl Drop for CoreData {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if method != hyper::Method::POST || segs.len() != 7 || segs[..3] != ["api", "v3", "event"] {
        return reply(
            StatusCode::NOT_FOUND,
            serde_json::json!({"apiVersion": "v3", "statusCode": 404}),
        );
    }
    state.posts.fetch_add(1, Relaxed);
    let doc: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            state.invalid.lock().unwrap().push(format!("not JSON: {e}"));
            return reply(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"apiVersion": "v3", "statusCode": 400}),
            );
        }
    };
    let errors: Vec<String> = state
        .validator
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    let ev = &doc["event"];
    let decode = |s: &str| s.replace("%20", " ");
    let path_ok = ev["profileName"] == decode(segs[4])
        && ev["deviceName"] == decode(segs[5])
        && ev["sourceName"] == decode(segs[6]);
    if !errors.is_empty() || !path_ok {
        state
            .invalid
            .lock()
            .unwrap()
            .push(format!("{path}: {errors:?} path_ok={path_ok}"));
        return reply(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"apiVersion": "v3", "statusCode": 400}),
        );
    }
    let id = ev["id"].as_str().unwrap().to_string();
    let mut events = state.events.lock().unwrap();
    if events.contains_key(&id) {
        state.conflicts.fetch_add(1, Relaxed);
        return reply(
            StatusCode::CONFLICT,
            serde_json::json!({"apiVersion": "v3", "statusCode": 409, "message": "event already exists"}),
        );
    }
    events.insert(id.clone(), ev.clone());
    reply(
        StatusCode::CREATED,
        serde_json::json!({"apiVersion": "v3", "requestId": doc["requestId"], "statusCode": 201, "id": id}),
    )
}
