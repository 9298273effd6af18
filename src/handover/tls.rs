//! Mutual TLS between edges, pinned to the contract's keys.
//!
//! Both sides authenticate with their Ed25519 identity as a raw public key
//! (TLS 1.3, RFC 7250): no certificates, no CA, nothing to expire apart from
//! the contract. The customer's client pins the provider's key from the
//! contract; the provider accepts any client that proves possession of an
//! Ed25519 key, and every call then checks that key against the contract it
//! names ([`PeerKey`] in the request's extensions). A handshake with the
//! wrong key fails before any request is read.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use super::identity::{Identity, PublicKey};
use super::pb::handover_client::HandoverClient;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {addr}: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The authenticated Ed25519 key of the peer on a connection; tonic puts it
/// in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerKey(pub PublicKey);

impl PeerKey {
    /// The peer key of a request that came through `serve`.
    pub fn of<T>(req: &tonic::Request<T>) -> Result<PublicKey, tonic::Status> {
        req.extensions()
            .get::<PeerInfo>()
            .map(|p| p.key)
            .ok_or_else(|| tonic::Status::unauthenticated("no authenticated TLS peer"))
    }
}

/// What tonic learns about a connection: the peer's key and address.
#[derive(Debug, Clone, Copy)]
pub struct PeerInfo {
    pub key: PublicKey,
    pub addr: Option<SocketAddr>,
}

/// ring's provider, built once: every handshake signature is checked with it.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::LazyLock<Arc<CryptoProvider>> =
        std::sync::LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));
    PROVIDER.clone()
}

fn spki(key: &PublicKey) -> Vec<u8> {
    key.0
        .to_public_key_der()
        .expect("an Ed25519 key encodes")
        .into_vec()
}

/// An Ed25519 key from a raw-public-key "certificate" (its SPKI DER).
fn key_of(spki: &[u8]) -> Option<PublicKey> {
    ed25519_dalek::VerifyingKey::from_public_key_der(spki)
        .ok()
        .map(PublicKey)
}

fn certified_key(id: &Identity) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let signing = ed25519_dalek::SigningKey::from_bytes(&id.seed());
    let der = signing
        .to_pkcs8_der()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let key = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    let signer = rustls::crypto::ring::sign::any_eddsa_type(&key)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(spki(&id.public()))],
        signer,
    )))
}

fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(cert.as_ref()),
        dss,
        &provider().signature_verification_algorithms,
    )
}

/// The handshake half both verifiers share: TLS 1.3 only, Ed25519 raw
/// public keys only, the signature checked against the key presented (which
/// `verify_*_cert` has already judged).
macro_rules! raw_ed25519_handshake {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not offered".into()))
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
        fn requires_raw_public_keys(&self) -> bool {
            true
        }
    };
}

fn refuse(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(std::io::Error::other(why)),
    )))
}

/// The customer's check of the provider: exactly the pinned key.
#[derive(Debug)]
struct Pinned(PublicKey);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match key_of(end_entity) {
            Some(k) if k == self.0 => Ok(ServerCertVerified::assertion()),
            Some(k) => Err(refuse(format!(
                "the peer is {}, not the contract's {}",
                k.to_hex(),
                self.0.to_hex()
            ))),
            None => Err(refuse("the peer's key is not Ed25519".into())),
        }
    }
    raw_ed25519_handshake!();
}

/// The provider's check of a client: any Ed25519 key it can prove; which
/// contract it may act on is decided per call.
#[derive(Debug)]
struct AnyEd25519;

impl ClientCertVerifier for AnyEd25519 {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        key_of(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .ok_or_else(|| refuse("the client's key is not Ed25519".into()))
    }
    raw_ed25519_handshake!();
}

const ALPN_H2: &[u8] = b"h2";

pub fn server_config(id: &Identity) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_client_cert_verifier(Arc::new(AnyEd25519))
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified_key(id)?),
        ));
    c.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(c))
}

pub fn client_config(
    id: &Identity,
    peer: PublicKey,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(peer)))
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified_key(id)?),
        ));
    c.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(c))
}

/// A server-side TLS connection that tells tonic who the peer is.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepted, authenticated connections from `listener`, for tonic's
/// `serve_with_incoming`. Each handshake runs in its own task (bounded by a
/// timeout), so a slow or hostile client holds up no one else; a failed one
/// is logged and dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<PeerStream>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "handover listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let out = tx.clone();
            tokio::spawn(async move {
                let hs = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                let tls = match hs {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::warn!(peer = %addr, error = %e, "handover TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(peer = %addr, "handover TLS handshake timed out");
                        return;
                    }
                };
                let key = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| key_of(c));
                let Some(key) = key else {
                    tracing::warn!(peer = %addr, "handover client without an Ed25519 key");
                    return;
                };
                let info = PeerInfo {
                    key,
                    addr: Some(addr),
                };
                let _ = out.send(Ok(PeerStream { inner: tls, info })).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A client to the provider at `addr` (`host:port`), authenticating as
/// `id` and accepting only `peer`'s key. Connects lazily; a wrong key
/// shows as the call's error.
pub fn connect(
    addr: &str,
    id: &Identity,
    peer: PublicKey,
) -> Result<HandoverClient<Channel>, TlsError> {
    let connector = tokio_rustls::TlsConnector::from(client_config(id, peer)?);
    let addr = addr.to_owned();
    let uri = format!("http://{addr}");
    // A link lost without a close must not hang a connect or a stream: the
    // connect is bounded, and HTTP/2 pings find a dead connection.
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .http2_keep_alive_interval(std::time::Duration::from_secs(1))
        .keep_alive_timeout(std::time::Duration::from_secs(2))
        .keep_alive_while_idle(true);
    let channel =
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let connector = connector.clone();
            let addr = addr.clone();
            async move {
                let tcp = TcpStream::connect(&addr)
                    .await
                    .map_err(|source| TlsError::Connect {
                        addr: addr.clone(),
                        source,
                    })?;
                tcp.set_nodelay(true).ok();
                let name = ServerName::try_from("handover.device-lorawan").expect("a valid name");
                let tls =
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|source| TlsError::Handshake {
                            addr: addr.clone(),
                            source,
                        })?;
                Ok::<_, TlsError>(hyper_util::rt::TokioIo::new(tls))
            }
        }));
    Ok(HandoverClient::new(channel))
}
