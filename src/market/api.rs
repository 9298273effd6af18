//! The market's REST API (described by `openapi.yaml`, which it serves at
//! `/api/v3/market/openapi.yaml`). Reads of public records need no
//! signature; everything an edge asks for itself or changes is a signed
//! call ([`super::auth`]). Errors are EdgeX-style bodies (`apiVersion`,
//! `statusCode`, `message`), each counted by reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::auth;
use super::store::{MarketError, Store};
use super::types::*;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.yaml");

/// Bodies larger than this are refused (413).
const MAX_BODY: usize = 1 << 20;

/// The market process: its store and its counters.
pub struct Market {
    pub store: Store,
    requests: AtomicU64,
    refused: Mutex<BTreeMap<&'static str, u64>>,
}

/// What a request asks, read from the wire.
pub struct Call<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub header: &'a (dyn Fn(&'static str) -> Option<&'a str> + Sync),
    pub body: &'a [u8],
}

type Answer = (StatusCode, Value);

fn error(status: StatusCode, message: impl std::fmt::Display) -> Answer {
    (
        status,
        json!({"apiVersion": "v3", "statusCode": status.as_u16(), "message": message.to_string()}),
    )
}

fn ok<T: serde::Serialize>(status: StatusCode, v: &T) -> Answer {
    (
        status,
        serde_json::to_value(v).expect("market answers serialise"),
    )
}

impl Market {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            requests: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .expect("counters")
            .entry(reason)
            .or_default() += 1;
    }

    /// Prometheus text of the counters.
    pub fn metrics(&self) -> String {
        let mut out = format!(
            "# TYPE market_requests_total counter\nmarket_requests_total {}\n# TYPE market_refused_total counter\n",
            self.requests.load(Relaxed)
        );
        for (reason, n) in self.refused.lock().expect("counters").iter() {
            out.push_str(&format!(
                "market_refused_total{{reason=\"{reason}\"}} {n}\n"
            ));
        }
        out
    }

    /// Answer one call.
    pub async fn handle(&self, call: Call<'_>) -> Answer {
        self.requests.fetch_add(1, Relaxed);
        let (status, body) = self.route(call).await;
        if !status.is_success() {
            self.count(match status {
                StatusCode::UNAUTHORIZED => "unauthorised",
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::CONFLICT => "conflict",
                StatusCode::PAYLOAD_TOO_LARGE => "too_large",
                StatusCode::UNPROCESSABLE_ENTITY => "refused",
                StatusCode::BAD_REQUEST => "bad_request",
                _ => "error",
            });
        }
        (status, body)
    }

    async fn route(&self, c: Call<'_>) -> Answer {
        let segs: Vec<&str> = c.path.trim_start_matches('/').split('/').collect();
        let Some(rest) = segs.strip_prefix(&["api", "v3", "market"]) else {
            return error(StatusCode::NOT_FOUND, "no such route");
        };
        let now = crate::handover::provider::now_ms();
        // Public records first: no signature.
        match (c.method, rest) {
            (&Method::GET, ["ping"]) => {
                return (
                    StatusCode::OK,
                    json!({"apiVersion": "v3", "timestamp": now.to_string()}),
                )
            }
            (&Method::GET, ["identity"]) => {
                return (
                    StatusCode::OK,
                    json!({"apiVersion": "v3", "marketKey": self.store.market_key()}),
                )
            }
            (&Method::GET, ["log"]) => {
                let from = query_u64(c.query, "from").unwrap_or(1).max(1);
                return self
                    .store
                    .log(from)
                    .await
                    .map_or_else(db_error, |l| ok(StatusCode::OK, &l));
            }
            (&Method::GET, ["edges", key]) => {
                if crate::handover::identity::PublicKey::from_hex(key).is_none() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "an edge is named by its 64-hex-digit key",
                    );
                }
                return self
                    .store
                    .edge(key)
                    .await
                    .map_or_else(db_error, |e| ok(StatusCode::OK, &e));
            }
            _ => {}
        }
        let caller = match auth::verify(
            c.header,
            c.method.as_str(),
            &path_and_query(c.path, c.query),
            c.body,
            now,
        ) {
            Ok(k) => k,
            Err(e) => return error(StatusCode::UNAUTHORIZED, e),
        };
        let me = caller.key.to_hex();
        match self.store.fresh_nonce(&me, &caller.nonce, now).await {
            Ok(true) => {}
            Ok(false) => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    auth::AuthError::Replayed(caller.nonce),
                )
            }
            Err(e) => return db_error(e),
        }
        let r: Result<Answer, MarketError> = async {
            Ok(match (c.method, rest) {
                (&Method::POST, ["offers"]) => {
                    let body: OfferBody = read(c.body)?;
                    ok(
                        StatusCode::CREATED,
                        &self.store.put_offer(&me, body, now).await?,
                    )
                }
                (&Method::POST, ["match"]) => {
                    let body: DemandBody = read(c.body)?;
                    ok(StatusCode::OK, &self.store.matching(&body, now).await?)
                }
                (&Method::POST, ["demands"]) => {
                    let body: DemandBody = read(c.body)?;
                    let offers = self.store.matching(&body, now).await?;
                    let d = self.store.put_demand(&me, body, now).await?;
                    (StatusCode::CREATED, json!({"demand": d, "offers": offers}))
                }
                (&Method::GET, ["demands"]) => ok(
                    StatusCode::OK,
                    &self.store.open_demands_for(&me, now).await?,
                ),
                (&Method::GET, ["demands", id]) => {
                    ok(StatusCode::OK, &self.store.demand(id).await?)
                }
                (&Method::POST, ["demands", id, "bids"]) => {
                    let body: BidBody = read(c.body)?;
                    ok(
                        StatusCode::CREATED,
                        &self.store.put_bid(&me, id, body, now).await?,
                    )
                }
                (&Method::GET, ["demands", id, "bids"]) => {
                    ok(StatusCode::OK, &self.store.bids(&me, id).await?)
                }
                (&Method::POST, ["demands", id, "award"]) => {
                    let body: AwardRequest = read(c.body)?;
                    ok(StatusCode::OK, &self.store.award(&me, id, body, now).await?)
                }
                (&Method::POST, ["contracts"]) => {
                    let body: ContractRequest = read(c.body)?;
                    ok(
                        StatusCode::CREATED,
                        &self
                            .store
                            .put_contract(&me, &body.demand_id, body.signed, now)
                            .await?,
                    )
                }
                (&Method::GET, ["contracts", id]) => {
                    let mc = self.store.contract(id).await?;
                    if me != mc.customer && me != mc.provider {
                        return Err(MarketError::Refused(
                            "only the contract's parties read it".into(),
                        ));
                    }
                    ok(StatusCode::OK, &mc)
                }
                (&Method::POST, ["contracts", id, "receipts"]) => {
                    let body: crate::handover::receipt::SignedReceipt = read(c.body)?;
                    ok(
                        StatusCode::OK,
                        &self.store.settle(&me, id, body, now).await?,
                    )
                }
                _ => error(StatusCode::NOT_FOUND, "no such route"),
            })
        }
        .await;
        r.unwrap_or_else(|e| match e {
            MarketError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
            MarketError::Refused(m) => error(StatusCode::UNPROCESSABLE_ENTITY, m),
            MarketError::Conflict(m) => error(StatusCode::CONFLICT, m),
            MarketError::Db(e) => db_error(MarketError::Db(e)),
        })
    }
}

pub use super::types::ContractRequest;

/// What a signature covers of the target: the path, and the query if any.
pub fn path_and_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    }
}

fn query_u64(query: Option<&str>, name: &str) -> Option<u64> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn read<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, MarketError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de)
        .map_err(|e| MarketError::Refused(format!("the body does not read: {e}")))
}

fn db_error(e: MarketError) -> Answer {
    tracing::error!(error = %e, "market database");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the market's database failed; try again",
    )
}

/// Serve the market on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, market: Arc<Market>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "market accept failed");
                continue;
            }
        };
        let m = market.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let m = m.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&m, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "market connection ended");
            }
        });
    }
}

async fn answer(m: &Market, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let (status, value, text) = match Limited::new(body, MAX_BODY).collect().await {
        Err(_) => {
            m.count("too_large");
            let (s, v) = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("bodies are at most {MAX_BODY} bytes"),
            );
            (s, v, None)
        }
        Ok(b) => {
            let bytes = b.to_bytes();
            let path = parts.uri.path();
            match (&parts.method, path) {
                (&Method::GET, "/api/v3/market/openapi.yaml") => (
                    StatusCode::OK,
                    Value::Null,
                    Some(("application/yaml", OPENAPI.to_string())),
                ),
                (&Method::GET, "/metrics") => (
                    StatusCode::OK,
                    Value::Null,
                    Some(("text/plain; version=0.0.4", m.metrics())),
                ),
                _ => {
                    let headers = &parts.headers;
                    let header =
                        |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok());
                    let (s, v) = m
                        .handle(Call {
                            method: &parts.method,
                            path,
                            query: parts.uri.query(),
                            header: &header,
                            body: &bytes,
                        })
                        .await;
                    (s, v, None)
                }
            }
        }
    };
    let (ctype, body) = match text {
        Some((t, b)) => (t, b),
        None => ("application/json", value.to_string()),
    };
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .expect("a response builds")
}
