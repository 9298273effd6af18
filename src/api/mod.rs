//! The device service's own HTTP API (EdgeX device-sdk routes under
//! `/api/v3`): `ping`, `version`, `config` (secrets blanked), the device
//! command routes, `secret`, discovery, this service's status routes, and
//! the Prometheus exposition of every counter at `/metrics`. The answers
//! come from the transport-neutral [`crate::control`]; this module adds what
//! HTTP needs: routing, authorisation ([`auth`]), correlation ids, body and
//! connection limits. Answers validate against the official device-sdk
//! OpenAPI spec (tested).

pub mod auth;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::control::answer::{error, Answer, API_VERSION};
use crate::control::plane::Plane;
use crate::control::{command, secret, status};

/// Request bodies larger than this are refused (413).
const MAX_BODY: usize = 64 << 10;

/// What the HTTP layer adds to the control plane: who may call which
/// route, and how many connections may be open.
pub struct ApiState {
    pub plane: Arc<Plane>,
    /// Who may call which route.
    guard: auth::Guard,
    /// `Service.ApiMaxConnections`.
    max_connections: usize,
}

impl ApiState {
    pub fn new(config: &Config, plane: Arc<Plane>) -> Self {
        Self {
            plane,
            guard: auth::Guard::new(config),
            max_connections: config.service.api_max_connections.max(1),
        }
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

fn respond((status, body): Answer) -> Reply {
    json_response(status, body)
}

/// Route one request.
pub async fn route(
    state: &Plane,
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
            &Method::GET => status::lorawan_device(state, name),
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
        (&Method::GET, "/api/v3/handover") => respond(status::handover_status(state)),
        (&Method::GET, "/api/v3/lorawan/gateways") => respond(status::gateways(state)),
        (&Method::GET, "/api/v3/registration") => respond(status::registration_status(state)),
        (&Method::POST, "/api/v3/registration") => respond(status::registration_again(state)),
        (&Method::POST, "/api/v3/discovery") => respond(status::discover(state)),
        (&Method::DELETE, "/api/v3/discovery") => respond(status::stop_discovery(state, None)),
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
            respond(status::stop_discovery(state, Some(id)))
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
                .plane
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
        &state.plane,
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
                .plane
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
