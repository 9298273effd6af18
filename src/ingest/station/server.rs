//! The Basics Station listener: one port for discovery (`/router-info`)
//! and traffic (`/traffic/<EUI>`), WebSockets over TCP or TLS. Each traffic
//! connection is a task that feeds the pipeline (`updf`, `jreq` as frames
//! from [`Source::BasicStation`], `dntxed` as transmission acknowledgements)
//! and writes what the transmitter hands it (`dnmsg`). A malformed message
//! is counted and skipped; the connection stays. A gateway not on the
//! allow-list, or without its token, is refused at the handshake.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::messages::{self, Upstream};
use crate::config::BasicStationConfig;
use crate::downlink::{TxAck, TxRequest};
use crate::ingest::IngestEvent;
use crate::lorawan::region::Region;
use crate::lorawan::Eui64;
use crate::metrics::{Metrics, Reason, Source};

/// What every connection shares.
struct Shared {
    region: Region,
    allowed: Option<Vec<Eui64>>,
    tokens: BTreeMap<Eui64, String>,
    tx: mpsc::Sender<IngestEvent>,
    metrics: Arc<Metrics>,
    /// The writer of each connected gateway's socket.
    gateways: Mutex<HashMap<Eui64, mpsc::Sender<Message>>>,
    open: AtomicUsize,
    max_connections: usize,
    idle: Duration,
    ws: WebSocketConfig,
    scheme: &'static str,
}

impl Shared {
    fn allowed(&self, eui: Eui64) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.contains(&eui))
    }

    fn stats(&self, eui: Eui64, f: impl FnOnce(&mut crate::metrics::StationStats)) {
        let mut all = self.metrics.stations.lock().expect("metrics lock");
        f(all.entry(eui).or_default());
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serve stations on `listener` until the pipeline goes away.
pub async fn serve(
    listener: TcpListener,
    cfg: BasicStationConfig,
    max_message_bytes: usize,
    region: Region,
    tx: mpsc::Sender<IngestEvent>,
    downlinks: mpsc::Receiver<TxRequest>,
    metrics: Arc<Metrics>,
) {
    let tls = cfg
        .tls
        .as_ref()
        .map(|t| super::tls::server_config(t.files()).expect("validated at load"))
        .map(tokio_rustls::TlsAcceptor::from);
    // Small buffers: station messages are small, and an idle connection
    // should cost little on a Pi (tungstenite's default is 128 KiB each way).
    let ws = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let shared = Arc::new(Shared {
        region,
        allowed: cfg.allowed().expect("validated at load"),
        tokens: cfg.tokens().expect("validated at load"),
        tx,
        metrics,
        gateways: Mutex::new(HashMap::new()),
        open: AtomicUsize::new(0),
        max_connections: cfg.max_connections,
        idle: cfg.idle_timeout,
        ws,
        scheme: if tls.is_some() { "wss" } else { "ws" },
    });
    tokio::spawn(transmit(shared.clone(), downlinks));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Basics Station accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.tx.is_closed() {
            return;
        }
        if shared.open.load(Relaxed) >= shared.max_connections {
            shared.metrics.reject(
                Reason::GatewayRefused,
                &format_args!(
                    "{peer}: {} connections already open",
                    shared.max_connections
                ),
            );
            continue; // dropped: the station retries later
        }
        shared.open.fetch_add(1, Relaxed);
        let (shared, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            // A handshake (TLS and HTTP) that does not finish is dropped.
            let deadline = Duration::from_secs(10);
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, peer, &shared).await,
                        Ok(Err(e)) => shared.metrics.reject(
                            Reason::GatewayRefused,
                            &format_args!("{peer}: TLS handshake: {e}"),
                        ),
                        Err(_) => shared.metrics.reject(
                            Reason::GatewayRefused,
                            &format_args!("{peer}: TLS handshake timed out"),
                        ),
                    }
                }
                None => connection(tcp, peer, &shared).await,
            }
            shared.open.fetch_sub(1, Relaxed);
        });
    }
}

/// Where a handshake was heading.
enum Endpoint {
    Discovery { host: String },
    Traffic(Eui64),
}

async fn connection<S>(stream: S, peer: std::net::SocketAddr, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut endpoint = None;
    // tungstenite's handshake callback returns its own (large) error type.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let refuse = |code: StatusCode, why: String| {
            shared
                .metrics
                .reject(Reason::GatewayRefused, &format_args!("{peer}: {why}"));
            let mut r = ErrorResponse::new(Some(why));
            *r.status_mut() = code;
            Err(r)
        };
        let path = req.uri().path();
        if path == "/router-info" {
            let host = req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
                .to_string();
            endpoint = Some(Endpoint::Discovery { host });
            return Ok(resp);
        }
        let Some(eui) = path
            .strip_prefix("/traffic/")
            .and_then(messages::eui_of_text)
        else {
            return refuse(StatusCode::NOT_FOUND, format!("no endpoint {path:?}"));
        };
        if !shared.allowed(eui) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("gateway {eui} is not allowed"),
            );
        }
        if let Some(token) = shared.tokens.get(&eui) {
            let given = req
                .headers()
                .get("authorization")
                .and_then(|h| h.to_str().ok());
            let ok = given.is_some_and(|g| {
                let g = g.strip_prefix("Bearer ").unwrap_or(g);
                subtle::ConstantTimeEq::ct_eq(g.as_bytes(), token.as_bytes()).into()
            });
            if !ok {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    format!("gateway {eui}: wrong or missing token"),
                );
            }
        }
        endpoint = Some(Endpoint::Traffic(eui));
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(shared.ws))
        .await
    {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "Basics Station handshake failed");
            return;
        }
    };
    match endpoint {
        Some(Endpoint::Discovery { host }) => discovery(ws, &host, shared).await,
        Some(Endpoint::Traffic(eui)) => traffic(ws, eui, shared).await,
        None => {}
    }
}

/// `{"router": <id>}` → the traffic URI, or an error for a gateway not allowed.
async fn discovery<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, host: &str, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(Duration::from_secs(10), ws.next()).await
    else {
        return;
    };
    let asked: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
    let router = asked.get("router").cloned().unwrap_or_default();
    let answer = match messages::eui_of(&router) {
        None => {
            shared.metrics.reject(
                Reason::StationMessage,
                &format_args!("router-info without a gateway EUI: {text}"),
            );
            serde_json::json!({"router": router, "error": "router must be a gateway EUI"})
        }
        Some(eui) if !shared.allowed(eui) => {
            shared.metrics.reject(
                Reason::GatewayRefused,
                &format_args!("router-info: gateway {eui} is not allowed"),
            );
            serde_json::json!({"router": router, "error": format!("gateway {eui} is not allowed")})
        }
        Some(eui) => serde_json::json!({
            "router": router,
            "muxs": "muxs-::0",
            "uri": format!("{}://{host}/traffic/{}", shared.scheme, messages::eui_text(eui)),
        }),
    };
    let _ = ws.send(Message::text(answer.to_string())).await;
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}

/// One station's traffic connection.
async fn traffic<S>(ws: tokio_tungstenite::WebSocketStream<S>, eui: Eui64, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let mine = out_tx.clone();
    // A reconnect replaces the old connection as the gateway's writer.
    shared
        .gateways
        .lock()
        .expect("gateways lock")
        .insert(eui, out_tx);
    shared.stats(eui, |s| {
        s.connected = true;
        s.last_seen = unix_now();
    });
    tracing::info!(gateway = %eui, "Basics Station connected");
    let mut ping = tokio::time::interval(shared.idle / 3);
    ping.tick().await;
    let mut pinged: Option<Instant> = None;
    let mut heard = Instant::now();
    // How the connection ends, said in our close frame.
    let mut close = (CloseCode::Normal, "");
    loop {
        tokio::select! {
            m = stream.next() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        match classify(&e) {
                            Ended::Dropped => {
                                tracing::info!(gateway = %eui, error = %e, "Basics Station dropped its connection");
                            }
                            Ended::Refused(reason, code, why) => {
                                shared.metrics.reject(reason, &format_args!("gateway {eui}: {e}"));
                                close = (code, why);
                            }
                        }
                        break;
                    }
                    None => break,
                };
                heard = Instant::now();
                shared.stats(eui, |s| s.last_seen = unix_now());
                match m {
                    Message::Text(text) => {
                        if let Some(reply) = handle_text(text.as_str(), eui, shared).await {
                            if sink.send(Message::text(reply)).await.is_err() {
                                break;
                            }
                        }
                    }
                    Message::Pong(_) => {
                        if let Some(t) = pinged.take() {
                            let ms = t.elapsed().as_secs_f64() * 1e3;
                            shared.stats(eui, |s| s.round_trip_ms = Some(ms));
                        }
                    }
                    Message::Close(_) => break,
                    Message::Binary(b) => shared.metrics.reject(
                        Reason::StationMessage,
                        &format_args!("gateway {eui}: a {}-byte binary message", b.len()),
                    ),
                    _ => {}
                }
            }
            Some(out) = out_rx.recv() => {
                if sink.send(out).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() >= shared.idle {
                    tracing::warn!(gateway = %eui, "Basics Station silent for {:?}: disconnected", shared.idle);
                    close = (CloseCode::Away, "silent for too long");
                    break;
                }
                pinged = Some(Instant::now());
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    // A close frame with a status code (after the station's own close,
    // this completes the closing handshake); a dropped TCP connection
    // just fails here.
    let frame = CloseFrame {
        code: close.0,
        reason: close.1.into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = sink.send(Message::Close(Some(frame))).await;
        let _ = sink.close().await;
    })
    .await;
    // Unless a newer connection of the gateway took over, it is gone.
    let mut gateways = shared.gateways.lock().expect("gateways lock");
    if gateways.get(&eui).is_some_and(|s| s.same_channel(&mine)) {
        gateways.remove(&eui);
        shared.stats(eui, |s| s.connected = false);
    }
    drop(gateways);
    tracing::info!(gateway = %eui, "Basics Station disconnected");
}

/// How a traffic connection's read failed.
enum Ended {
    /// The station went away without a closing handshake (TCP reset or
    /// EOF: a reboot, a network change): not a malformed message.
    Dropped,
    /// The station broke the protocol: counted, and closed with `code`.
    Refused(Reason, CloseCode, &'static str),
}

fn classify(e: &WsError) -> Ended {
    match e {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Io(_)
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ended::Dropped,
        WsError::Capacity(_) => {
            Ended::Refused(Reason::Oversize, CloseCode::Size, "message too big")
        }
        WsError::Utf8(_) => Ended::Refused(
            Reason::StationMessage,
            CloseCode::Invalid,
            "text is not UTF-8",
        ),
        _ => Ended::Refused(
            Reason::StationMessage,
            CloseCode::Protocol,
            "WebSocket protocol error",
        ),
    }
}

/// One text message: into the pipeline, or answered (`router_config`,
/// `timesync`), or counted as malformed.
async fn handle_text(text: &str, eui: Eui64, shared: &Shared) -> Option<String> {
    match messages::parse(text, eui, &shared.region) {
        Ok(Upstream::Version { station, protocol }) => {
            tracing::info!(gateway = %eui, %station, protocol, "Basics Station version");
            match super::router_config::router_config(&shared.region) {
                Ok(c) => Some(c.to_string()),
                Err(e) => {
                    tracing::error!(gateway = %eui, error = %e, "no router_config for this region");
                    None
                }
            }
        }
        Ok(Upstream::Frame { phy, rx }) => {
            shared.metrics.received(Source::BasicStation);
            shared.stats(eui, |s| s.uplinks += 1);
            let ev = IngestEvent::Phy {
                phy,
                rx,
                source: Source::BasicStation,
                ack: None,
            };
            let _ = shared.tx.send(ev).await;
            None
        }
        Ok(Upstream::Proprietary) => {
            tracing::debug!(gateway = %eui, "proprietary frame ignored");
            None
        }
        Ok(Upstream::TxConfirmed { diid }) => {
            let ack = TxAck {
                id: diid as u32,
                result: Ok(()),
            };
            let _ = shared.tx.send(IngestEvent::TxAck(ack)).await;
            None
        }
        Ok(Upstream::Timesync { txtime }) => Some(messages::timesync(txtime)),
        Err(e) => {
            shared
                .metrics
                .reject(Reason::StationMessage, &format_args!("gateway {eui}: {e}"));
            None
        }
    }
}

/// Downlinks from the scheduler to their gateway's connection; a gateway
/// not connected is a refusal (the command stays queued).
async fn transmit(shared: Arc<Shared>, mut downlinks: mpsc::Receiver<TxRequest>) {
    while let Some(req) = downlinks.recv().await {
        let conn = shared
            .gateways
            .lock()
            .expect("gateways lock")
            .get(&req.gateway)
            .cloned();
        let result = match (conn, req.station) {
            (_, None) => Err("no station context: the uplink came another way".to_string()),
            (Some(c), Some(s)) => match c.try_send(Message::text(messages::dnmsg(&req, &s))) {
                Ok(()) => {
                    shared.stats(req.gateway, |st| st.downlinks += 1);
                    continue; // the station confirms with dntxed
                }
                Err(_) => Err(format!("gateway {} is not keeping up", req.gateway)),
            },
            (None, Some(_)) => Err(format!("gateway {} is not connected", req.gateway)),
        };
        if shared
            .tx
            .send(IngestEvent::TxAck(TxAck { id: req.id, result }))
            .await
            .is_err()
        {
            return;
        }
    }
}
