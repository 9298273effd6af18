pub mod auth;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use http_body_util::{BodyExt, Limited};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::Config;
use crate::control::answer::{refuse, Answer, Refusal, API_VERSION};
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

pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response parts")
}

fn respond((status, body): Answer) -> Response {
    json_response(status, body)
}

type Plain = State<Arc<Plane>>;

/// The routes, each answered by the control plane. What every route
/// shares (correlation ids, authorisation, the body's limits) is in the
/// layers [`serve`] puts around this; paths keep their percent-encoding
/// for the handlers, which decode them as the spec's names are.
pub fn router(plane: Arc<Plane>) -> Router {
    Router::new()
        .route("/api/v3/ping", get(ping))
        .route("/api/v3/version", get(version))
        .route("/api/v3/config", get(config))
        .route("/api/v3/secret", post(secret_post))
        .route("/api/v3/handover", get(|State(p): Plain| async move { respond(status::handover_status(&p)) }))
        .route("/api/v3/handover/receipts", get(|State(p): Plain| async move { respond(status::handover_receipts(&p)) }))
        .route("/api/v3/lorawan/gateways", get(|State(p): Plain| async move { respond(status::gateways(&p)) }))
        .route(
            "/api/v3/registration",
            get(|State(p): Plain| async move { respond(status::registration_status(&p)) })
                .post(|State(p): Plain| async move { respond(status::registration_again(&p)) }),
        )
        .route(
            "/api/v3/discovery",
            post(|State(p): Plain| async move { respond(status::discover(&p)) })
                .delete(|State(p): Plain| async move { respond(status::stop_discovery(&p, None)) }),
        )
        .route("/api/v3/discovery/requestId/{id}", delete(stop_discovery))
        .route(
            "/api/v3/profilescan",
            post(|| async {
                respond(refuse(
                    Refusal::NotImplemented,
                    "profile scanning is not supported: LoRaWAN devices are described by their profile and codec",
                ))
            }),
        )
        .route(
            "/api/v3/profilescan/device/name/{name}",
            delete(|| async { respond(refuse(Refusal::NotImplemented, "profile scanning is not supported")) }),
        )
        .route("/api/v3/device/name/{name}/{command}", get(device_command).put(device_command))
        .route("/api/v3/lorawan/device/{name}", get(lorawan_device))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|method: Method| async move {
            respond(refuse(Refusal::NotAllowed, format_args!("{method} not allowed")))
        })
        .fallback(|| async { respond(refuse(Refusal::NotFound, "no such route")) })
        .with_state(plane)
}

async fn ping(State(p): Plain) -> Response {
    json_response(
        StatusCode::OK,
        json!({"apiVersion": API_VERSION, "timestamp": httpdate::fmt_http_date(std::time::SystemTime::now()), "serviceName": p.service_name}),
    )
}

async fn version(State(p): Plain) -> Response {
    json_response(
        StatusCode::OK,
        json!({"apiVersion": API_VERSION, "version": env!("CARGO_PKG_VERSION"),
               "sdk_version": concat!("device-lorawan/", env!("CARGO_PKG_VERSION")), "serviceName": p.service_name}),
    )
}

async fn config(State(p): Plain) -> Response {
    json_response(
        StatusCode::OK,
        json!({"apiVersion": API_VERSION, "serviceName": p.service_name, "config": p.config}),
    )
}

async fn secret_post(State(p): Plain, body: Bytes) -> Response {
    respond(secret::post(&p, &body).await)
}

/// The path's last segment as it came (still percent-encoded).
fn raw_tail<'a>(uri: &'a hyper::Uri, prefix: &str) -> &'a str {
    uri.path().strip_prefix(prefix).unwrap_or_default()
}

async fn stop_discovery(State(p): Plain, uri: hyper::Uri) -> Response {
    respond(status::stop_discovery(
        &p,
        Some(raw_tail(&uri, "/api/v3/discovery/requestId/")),
    ))
}

async fn device_command(State(p): Plain, method: Method, uri: hyper::Uri, body: Bytes) -> Response {
    let options = command::Options::from_query(uri.query());
    let rest = raw_tail(&uri, "/api/v3/device/name/");
    respond(command::route(&p, &method, rest, &options, &body))
}

async fn lorawan_device(State(p): Plain, uri: hyper::Uri) -> Response {
    respond(status::lorawan_device(
        &p,
        raw_tail(&uri, "/api/v3/lorawan/device/"),
    ))
}

async fn metrics(State(p): Plain) -> Response {
    Response::builder()
        .header("content-type", crate::metrics::exposition::CONTENT_TYPE)
        .body(Body::from(p.metrics.render()))
        .expect("static response parts")
}

/// One request through the routes alone (no layers): what the REST API
/// answers once a request is authorised and its body read. For tests and
/// tools that drive the API without a socket.
pub async fn route(
    plane: &Arc<Plane>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    let uri = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let Ok(req) = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(Body::from(body.to_vec()))
    else {
        return respond(refuse(Refusal::BadRequest, "not a valid request target"));
    };
    match router(plane.clone()).oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
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
        Some(
            "ping" | "version" | "config" | "handover" | "handover/receipts" | "lorawan/gateways",
        ) => "GET",
        Some("secret" | "profilescan") => "POST",
        Some("discovery") => "POST, DELETE",
        Some("registration") => "GET, POST",
        _ if path == "/metrics" => "GET",
        _ => return None,
    })
}

/// Layer: the request's correlation id, checked or made, on the answer and
/// on every log line of the request; HEAD is not served (the spec has
/// none), and a 405 says which methods the path has (`Allow`).
async fn correlate(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let path = req.uri().path().to_owned();
    let (id, mut reply) = match correlation_id(req.method(), &path, req.headers()) {
        Ok(id) if req.method() == Method::HEAD => {
            let a = match allowed(&path) {
                Some(_) => refuse(Refusal::NotAllowed, "HEAD not allowed"),
                None => refuse(Refusal::NotFound, "no such route"),
            };
            (id, respond(a))
        }
        Ok(id) => {
            let span = tracing::info_span!("api", correlation_id = %id);
            let reply = next.run(req).instrument(span).await;
            (id, reply)
        }
        Err(()) => (
            uuid::Uuid::new_v4().to_string(),
            respond(refuse(
                Refusal::BadRequest,
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

/// Layer: who may call this route (`Service.ApiToken`, or EdgeX JWTs in
/// secure mode), decided before the body is read.
async fn authorise(State(api): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match api.guard.check(&parts).await {
        auth::Verdict::Allowed => next.run(Request::from_parts(parts, body)).await,
        auth::Verdict::Refused(why) => {
            api.plane
                .metrics
                .api_unauthorised
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(method = %parts.method, path = parts.uri.path(), why, "API request refused");
            let mut r = respond(refuse(Refusal::Unauthorised, api.guard.wanted()));
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            r
        }
        auth::Verdict::Unavailable => respond(refuse(
            Refusal::Internal,
            "the JWT could not be checked with the secret store",
        )),
    }
}

/// Layer: the body, read whole within `MAX_BODY` bytes and `BODY_TIME`
/// (413 and 408 otherwise), so no handler waits on a slow client.
async fn read_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(BODY_TIME, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return respond(refuse(
                Refusal::TooLarge,
                format_args!("request bodies are limited to {MAX_BODY} bytes"),
            ))
        }
        Err(_) => {
            return respond(refuse(
                Refusal::Timeout,
                format_args!("the request body did not arrive within {BODY_TIME:?}"),
            ))
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Serve until the task is aborted: at most `Service.ApiMaxConnections`
/// connections (more are closed at once, counted), headers within
/// `HEADER_TIME`, each request through the layers and the routes.
pub async fn serve(listener: TcpListener, state: Arc<ApiState>) {
    let app = router(state.plane.clone())
        .layer(axum::middleware::from_fn(read_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorise,
        ))
        .layer(axum::middleware::from_fn(correlate));
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
        let svc = hyper_util::service::TowerToHyperService::new(
            app.clone()
                .map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(Body::new)),
        );
        tokio::spawn(async move {
            let _slot = slot;
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
