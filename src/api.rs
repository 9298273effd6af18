//! The device service's own HTTP API (EdgeX device-sdk routes under
//! `/api/v3`), served with hyper: `ping`, `version`, `config` (secrets
//! blanked), and the Prometheus text exposition of every counter at
//! `/metrics`. The device command and secret routes arrive with issue 3.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::Metrics;

pub const API_VERSION: &str = "v3";

/// What the handlers read; built once at start.
pub struct ApiState {
    pub service_name: String,
    /// The configuration as JSON, secrets already blanked.
    pub config: serde_json::Value,
    pub metrics: Arc<Metrics>,
}

impl ApiState {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let redacted: serde_json::Value = serde_yaml_ng::from_str(&config.redacted_yaml())
            .expect("config YAML is JSON-compatible");
        Self {
            service_name: config.service.name.clone(),
            config: redacted,
            metrics,
        }
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts")
}

/// Route one request.
pub fn route(state: &ApiState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let name = &state.service_name;
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
        (&Method::GET, "/metrics") => Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(state.metrics.render())))
            .expect("static response parts"),
        (_, "/api/v3/ping" | "/api/v3/version" | "/api/v3/config" | "/metrics") => json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"apiVersion": API_VERSION, "statusCode": 405, "message": format!("{method} not allowed")}),
        ),
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"apiVersion": API_VERSION, "statusCode": 404, "message": "no such route"}),
        ),
    }
}

/// Serve until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<ApiState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "API accept failed");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = route(&state, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
}
