//! The device service's own HTTP API (EdgeX device-sdk routes under
//! `/api/v3`), served with hyper: `ping`, `version`, `config` (secrets
//! blanked), the device command routes ([`command`]), `secret`
//! ([`secret`]), and the Prometheus text exposition of every counter at
//! `/metrics`. Answers validate against the official device-sdk OpenAPI
//! spec (tested).

pub mod auth;
pub mod command;
pub mod secret;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::device_state::DeviceStates;
use crate::downlink::queue::DownlinkQueue;
use crate::metrics::Metrics;
use crate::secrets::SecretStore;
use crate::service::Control;

pub const API_VERSION: &str = "v3";

/// Request bodies larger than this are refused (413).
const MAX_BODY: usize = 64 << 10;

/// What the handlers read; built once at start.
pub struct ApiState {
    pub service_name: String,
    /// The configuration as JSON, secrets already blanked.
    pub config: serde_json::Value,
    pub metrics: Arc<Metrics>,
    pub devices: Arc<DeviceStates>,
    pub secrets: Mutex<SecretStore>,
    /// The EdgeX secret store (secure mode): where secrets are kept.
    pub store: Option<Arc<crate::edgex::secret_store::SecretStoreClient>>,
    /// To the pipeline (keys that arrived through `secret`).
    pub control: tokio::sync::mpsc::UnboundedSender<Control>,
    /// An application stream is ingested: devices need no keys of ours.
    pub app_stream: bool,
    /// Where PUT commands wait for their device's next uplink.
    pub downlinks: Arc<DownlinkQueue>,
    pub downlinks_enabled: bool,
    /// This edge's handover provider, when it listens (for the status routes).
    pub provider: std::sync::OnceLock<Arc<crate::handover::provider::Provider>>,
    /// Where customer contracts are kept.
    pub data_dir: std::path::PathBuf,
    /// Registration with core-metadata, when enabled.
    pub registration: std::sync::OnceLock<Arc<crate::edgex::registration::Registration>>,
    /// Who may call which route.
    guard: auth::Guard,
    /// Where a GET command's `ds-pushevent` event goes (the EdgeX outbox,
    /// when EdgeX delivery is on).
    pub events: std::sync::OnceLock<crate::edgex::outbox::EventPusher>,
    /// Device discovery (`/api/v3/discovery`).
    pub discovery: std::sync::OnceLock<Arc<crate::service::discovery::DiscoveryService>>,
    /// Our own messages out on the bus (when delivery is on the bus).
    pub bus_out: std::sync::OnceLock<crate::edgex::bus::BusOut>,
    /// Devices served from EdgeX or discovery (waiting for keys, or served).
    pub provisioning: std::sync::OnceLock<Arc<crate::service::provisioning::Provisioning>>,
    /// `Service.ApiMaxConnections`.
    max_connections: usize,
}

impl ApiState {
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        devices: Arc<DeviceStates>,
        secrets: SecretStore,
        control: tokio::sync::mpsc::UnboundedSender<Control>,
        downlinks: Arc<DownlinkQueue>,
    ) -> Self {
        let redacted: serde_json::Value = serde_yaml_ng::from_str(&config.redacted_yaml())
            .expect("config YAML is JSON-compatible");
        Self {
            service_name: config.service.name.clone(),
            config: redacted,
            guard: auth::Guard::new(config),
            events: std::sync::OnceLock::new(),
            discovery: std::sync::OnceLock::new(),
            provisioning: std::sync::OnceLock::new(),
            bus_out: std::sync::OnceLock::new(),
            max_connections: config.service.api_max_connections.max(1),
            metrics,
            devices,
            secrets: Mutex::new(secrets),
            store: config.secret_store.enabled.then(|| {
                Arc::new(crate::edgex::secret_store::SecretStoreClient::new(
                    &config.secret_store,
                    &config.service.name,
                ))
            }),
            control,
            downlinks,
            downlinks_enabled: config.downlink.enabled,
            provider: std::sync::OnceLock::new(),
            registration: std::sync::OnceLock::new(),
            data_dir: config.service.data_dir.clone(),
            app_stream: config.ingest.mqtt.enabled
                && config
                    .ingest
                    .mqtt
                    .subscriptions
                    .iter()
                    .any(|s| s.kind == crate::config::StreamKind::Application),
        }
    }
}

impl ApiState {
    /// The id of `name` if the devices file defines it (not a device from
    /// EdgeX or discovery, which the table also holds once served).
    pub fn file_device(&self, name: &str) -> Option<u32> {
        let id = self.devices.id(name)?;
        match self.provisioning.get() {
            Some(p) if !p.in_file(name) => None,
            _ => Some(id),
        }
    }

    /// The data of the secret named `name` (one not of a devices-file
    /// device), if there is one.
    pub fn secret_data(&self, name: &str) -> Option<Vec<(String, String)>> {
        let secrets = self.secrets.lock().expect("secrets lock");
        let data = secrets.other(name)?;
        Some(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

pub type Reply = Response<Full<Bytes>>;

pub fn json_response(status: StatusCode, body: serde_json::Value) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts")
}

/// A status and the EdgeX response DTO to send with it: what the command,
/// secret and bus handlers return, served over REST or the message bus.
pub type Answer = (StatusCode, serde_json::Value);

/// An EdgeX `ErrorResponse`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Answer {
    (
        status,
        json!({"apiVersion": API_VERSION, "statusCode": status.as_u16(), "message": message.to_string()}),
    )
}

fn respond((status, body): Answer) -> Reply {
    json_response(status, body)
}

/// Route one request.
pub async fn route(
    state: &ApiState,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Reply {
    let name = &state.service_name;
    if let Some(rest) = path.strip_prefix("/api/v3/device/name/") {
        let options = command::Options::from_query(query);
        return respond(command::route(state, method, rest, &options, body));
    }
    if let Some(name) = path.strip_prefix("/api/v3/lorawan/device/") {
        return respond(match method {
            &Method::GET => lorawan_device(state, name),
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                format_args!("{method} not allowed"),
            ),
        });
    }
    match (method, path) {
        (&Method::GET, "/api/v3/ping") => json_response(
            StatusCode::OK,
            json!({"apiVersion": API_VERSION, "timestamp": httpdate::fmt_http_date(std::time::SystemTime::now()), "serviceName": name}),
        ),
        (&Method::GET, "/api/v3/version") => json_response(
            StatusCode::OK,
            json!({"apiVersion": API_VERSION, "version": env!("CARGO_PKG_VERSION"),
                   "sdk_version": concat!("device-lorawan/", env!("CARGO_PKG_VERSION")), "serviceName": name}),
        ),
        (&Method::GET, "/api/v3/config") => json_response(
            StatusCode::OK,
            json!({"apiVersion": API_VERSION, "serviceName": name, "config": state.config}),
        ),
        (&Method::POST, "/api/v3/secret") => respond(secret::post(state, body).await),
        (&Method::GET, "/api/v3/handover") => respond(handover_status(state)),
        (&Method::GET, "/api/v3/lorawan/gateways") => respond(gateways(state)),
        (&Method::GET, "/api/v3/registration") => respond(registration_status(state)),
        (&Method::POST, "/api/v3/registration") => respond(registration_again(state)),
        (&Method::POST, "/api/v3/discovery") => respond(discover(state)),
        (&Method::DELETE, "/api/v3/discovery") => {
            if let Some(d) = state.discovery.get() {
                d.stop(None);
            }
            json_response(
                StatusCode::OK,
                json!({"apiVersion": API_VERSION, "statusCode": 200}),
            )
        }
        (&Method::POST, "/api/v3/profilescan") => respond(error(
            StatusCode::NOT_IMPLEMENTED,
            "profile scanning is not supported: LoRaWAN devices are described by their profile and codec",
        )),
        (&Method::GET, "/metrics") => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(state.metrics.render())))
            .expect("static response parts"),
        (
            _,
            "/api/v3/ping"
            | "/api/v3/version"
            | "/api/v3/config"
            | "/api/v3/secret"
            | "/api/v3/handover"
            | "/api/v3/lorawan/gateways"
            | "/api/v3/registration"
            | "/api/v3/discovery"
            | "/api/v3/profilescan"
            | "/metrics",
        ) => respond(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format_args!("{method} not allowed"),
        )),
        (&Method::DELETE, p) if p.starts_with("/api/v3/discovery/requestId/") => {
            let id = &p["/api/v3/discovery/requestId/".len()..];
            match state.discovery.get().is_some_and(|d| d.stop(Some(id))) {
                true => json_response(
                    StatusCode::OK,
                    json!({"apiVersion": API_VERSION, "statusCode": 200}),
                ),
                false => respond(error(
                    StatusCode::NOT_FOUND,
                    "no discovery with this request id is running",
                )),
            }
        }
        (&Method::DELETE, p) if p.starts_with("/api/v3/profilescan/device/name/") => {
            respond(error(
                StatusCode::NOT_IMPLEMENTED,
                "profile scanning is not supported",
            ))
        }
        (_, p)
            if p.starts_with("/api/v3/discovery/requestId/")
                || p.starts_with("/api/v3/profilescan/device/name/") =>
        {
            respond(error(
                StatusCode::METHOD_NOT_ALLOWED,
                format_args!("{method} not allowed"),
            ))
        }
        _ => respond(error(StatusCode::NOT_FOUND, "no such route")),
    }
}

/// The Basics Station gateways that connected since start: connected or
/// not, last seen, uplinks, downlinks, round trip. Not an EdgeX route.
fn gateways(state: &ApiState) -> Answer {
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

/// The handover contracts of this edge: as provider (holder, epoch,
/// sessions, image held) and as customer (provider, devices, image).
/// `POST /api/v3/discovery`: 202 and the request id (the running one's, if
/// a discovery runs); 503 when discovery is off, as device-sdk-go answers.
fn discover(state: &ApiState) -> Answer {
    let Some(d) = state.discovery.get().filter(|d| d.enabled) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
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

/// Not an EdgeX route: the orchestration status this service adds.
fn handover_status(state: &ApiState) -> Answer {
    let provider = state.provider.get().map(|p| p.status()).unwrap_or_default();
    let customer = match crate::handover::customer::contracts(&state.data_dir) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let customer: Vec<serde_json::Value> = customer
        .iter()
        .map(|c| {
            let c = &c.contract;
            json!({"id": c.id, "provider": c.provider.id, "providerAddress": c.provider.address,
                   "devices": c.devices, "image": c.image.digest, "imageCid": c.image.cid,
                   "imageSize": c.image.size, "notAfter": c.not_after})
        })
        .collect();
    (
        StatusCode::OK,
        json!({"apiVersion": API_VERSION, "statusCode": 200,
               "provider": provider, "customer": customer}),
    )
}

/// A device's LoRaWAN session as this service holds it: activation, DevAddr,
/// and for OTAA devices the join state. Never a key. Not an EdgeX route.
fn lorawan_device(state: &ApiState, name: &str) -> Answer {
    let Some(name) = command::percent_decode(name) else {
        return error(
            StatusCode::BAD_REQUEST,
            "the device name is not valid percent-encoding",
        );
    };
    // A device from EdgeX or discovery: waiting for its keys, or served.
    let p = state.provisioning.get();
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
        return error(StatusCode::NOT_FOUND, format_args!("no device {name}"));
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
fn registration_status(state: &ApiState) -> Answer {
    let Some(r) = state.registration.get() else {
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
fn registration_again(state: &ApiState) -> Answer {
    match state.registration.get() {
        Some(r) => {
            r.again.notify_one();
            (
                StatusCode::ACCEPTED,
                json!({"apiVersion": API_VERSION, "statusCode": 202,
                       "message": "a registration pass was started; GET /api/v3/registration shows its outcome"}),
            )
        }
        None => error(
            StatusCode::CONFLICT,
            "registration with core-metadata is off (Edgex.Metadata.Enabled)",
        ),
    }
}

/// A request's headers must arrive within this, and its body within
/// `BODY_TIME`: a slow client cannot hold a connection (or the API).
const HEADER_TIME: std::time::Duration = std::time::Duration::from_secs(10);
const BODY_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// The request's `X-Correlation-ID` (a UUID, as the spec has it), or a new
/// one: every answer carries it, and every log line of the request (a span
/// field). One that is not a UUID is replaced, except where the spec has
/// the route refuse bad input with 400 (the routes taking a request DTO):
/// there it is refused (`Err`).
fn correlation_id(method: &Method, path: &str, headers: &hyper::HeaderMap) -> Result<String, ()> {
    let given = headers.get("x-correlation-id").map(|h| {
        h.to_str()
            .ok()
            .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
    });
    match given {
        Some(Some(u)) => Ok(u.to_string()),
        Some(None)
            if *method == Method::POST
                && matches!(path, "/api/v3/secret" | "/api/v3/profilescan") =>
        {
            Err(())
        }
        _ => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// The methods a route serves (the `Allow` of a 405), by path.
fn allowed(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/v3/");
    Some(match rest {
        Some(r) if r.starts_with("device/name/") => "GET, PUT",
        Some(r) if r.starts_with("lorawan/device/") => "GET",
        Some(r) if r.starts_with("discovery/requestId/") => "DELETE",
        Some(r) if r.starts_with("profilescan/device/name/") => "DELETE",
        Some("ping" | "version" | "config" | "handover" | "lorawan/gateways") => "GET",
        Some("secret" | "profilescan") => "POST",
        Some("discovery") => "POST, DELETE",
        Some("registration") => "GET, POST",
        _ if path == "/metrics" => "GET",
        _ => return None,
    })
}

/// Answer one request: authorised, routed, with its correlation id (and
/// `Allow` on a 405).
async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Reply {
    use tracing::Instrument;
    let path = req.uri().path().to_owned();
    let (id, mut reply) = match correlation_id(req.method(), &path, req.headers()) {
        Ok(id) => {
            let span = tracing::info_span!("api", correlation_id = %id);
            let reply = answer(state, req).instrument(span).await;
            (id, reply)
        }
        Err(()) => (
            uuid::Uuid::new_v4().to_string(),
            respond(error(
                StatusCode::BAD_REQUEST,
                "X-Correlation-ID must be a UUID",
            )),
        ),
    };
    let headers = reply.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&id) {
        headers.insert("x-correlation-id", v);
    }
    if reply.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(methods) = allowed(&path) {
            reply.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static(methods),
            );
        }
    }
    reply
}

/// Read a request's body (bounded in size and time) and route it.
async fn answer(state: Arc<ApiState>, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    // Refused before its body is read.
    match state.guard.check(&parts).await {
        auth::Verdict::Allowed => {}
        auth::Verdict::Refused(why) => {
            state
                .metrics
                .api_unauthorised
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(method = %parts.method, path = parts.uri.path(), why, "API request refused");
            let mut r = respond(error(StatusCode::UNAUTHORIZED, state.guard.wanted()));
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
        auth::Verdict::Unavailable => {
            return respond(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the JWT could not be checked with the secret store",
            ))
        }
    }
    let body = match tokio::time::timeout(BODY_TIME, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return respond(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format_args!("request bodies are limited to {MAX_BODY} bytes"),
            ))
        }
        Err(_) => {
            return respond(error(
                StatusCode::REQUEST_TIMEOUT,
                format_args!("the request body did not arrive within {BODY_TIME:?}"),
            ))
        }
    };
    route(
        &state,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &body,
    )
    .await
}

/// Serve until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<ApiState>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(state.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "API accept failed");
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            state
                .metrics
                .api_connections_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%peer, "API connection refused: Service.ApiMaxConnections are open");
            continue; // dropped: closed at once
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIME)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
}
