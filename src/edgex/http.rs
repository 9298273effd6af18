//! A small JSON-over-HTTP client for the EdgeX REST APIs (hyper's pooled
//! client, one timeout per request). Errors say which request failed and
//! whether retrying can help.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{method} {url}: unreachable: {reason}")]
    Unreachable {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        method: Method,
        url: String,
        timeout: Duration,
    },
    #[error("{method} {url}: bad request: {reason}")]
    Request {
        method: Method,
        url: String,
        reason: String,
    },
}

/// A client for one EdgeX service at `base` (`http://host:port`).
#[derive(Clone)]
pub struct JsonClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    timeout: Duration,
}

impl JsonClient {
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: base.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send `body` (JSON) to `path` and return the status and body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        self.send_with(method, path, &[], body).await
    }

    /// As [`send`](Self::send), with extra headers (never logged: they may
    /// carry a token).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .map_err(|e| HttpError::Request {
                method: method.clone(),
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(HttpError::Timeout {
                method,
                url,
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(HttpError::Unreachable {
                method,
                url,
                reason: e.to_string(),
            }),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

/// The `message` of an EdgeX error body, or the body itself, shortened.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect())
}
