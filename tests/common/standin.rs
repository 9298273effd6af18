//! The HTTP skeleton of the stand-in EdgeX services: a hyper server on a
//! loopback port that hands each request (method, path, body) to a handler,
//! and can be stopped (listener and open connections closed) and restarted
//! on the same port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub type Handler =
    Arc<dyn Fn(&Method, &str, &[u8]) -> (StatusCode, serde_json::Value) + Send + Sync>;

/// A handler that also sees the request's headers.
pub type HeaderHandler = Arc<
    dyn Fn(&Method, &str, &hyper::HeaderMap, &[u8]) -> (StatusCode, serde_json::Value)
        + Send
        + Sync,
>;

pub struct StandIn {
    pub addr: SocketAddr,
    handler: HeaderHandler,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl StandIn {
    pub async fn start(handler: Handler) -> Self {
        Self::start_with_headers(Arc::new(move |m, p, _, b| handler(m, p, b))).await
    }

    #[allow(dead_code)]
    pub async fn start_with_headers(handler: HeaderHandler) -> Self {
        Self::start_on("127.0.0.1", handler).await
    }

    /// On `host` (a test's own veth address, not loopback, when services in
    /// network namespaces must reach it).
    #[allow(dead_code)]
    pub async fn start_on(host: &str, handler: HeaderHandler) -> Self {
        let listener = tokio::net::TcpListener::bind((host, 0)).await.unwrap();
        let mut s = Self {
            addr: listener.local_addr().unwrap(),
            handler,
            task: None,
        };
        s.serve(listener);
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let handler = self.handler.clone();
        self.task = Some(tokio::spawn(async move {
            // Connections live in this set: aborting the task closes them all.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(handler.clone(), req));
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
            // Aborting is asynchronous: until another worker drops the task,
            // its listener (and a kept-alive connection) still answer. Wait,
            // bounded, so that the stand-in is gone once this returns.
            let wait = || {
                let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
                while !t.is_finished() && std::time::Instant::now() < end {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            };
            if tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            {
                tokio::task::block_in_place(wait);
            }
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
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn handle(
    handler: HeaderHandler,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, json) = handler(&method, &path, &headers, &body);
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap())
}

/// A stand-in service is its server: `url`, `stop` and `restart` reach the
/// `server` field.
macro_rules! serves_through {
    ($t:ty) => {
        impl std::ops::Deref for $t {
            type Target = super::standin::StandIn;
            fn deref(&self) -> &Self::Target {
                &self.server
            }
        }
        impl std::ops::DerefMut for $t {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.server
            }
        }
    };
}
pub(crate) use serves_through;
