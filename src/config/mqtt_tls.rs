//! TLS to an MQTT broker (the gateway-bridge ingest and the EdgeX message
//! bus): the CA that signed the broker's certificate, and optionally our
//! client certificate and key. rustls with the ring provider, as for the
//! service's other TLS; checked at load, errors naming the key and file.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct MqttTls {
    /// PEM: the CA(s) the broker's certificate must chain to.
    pub ca: PathBuf,
    /// PEM: our certificate chain and its key, for brokers that require one.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl MqttTls {
    /// The client configuration, or why not (the file named, never its contents).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = |p: &PathBuf, what: &str| -> Result<Vec<CertificateDer<'static>>, String> {
            let v: Vec<_> = CertificateDer::pem_file_iter(p)
                .map_err(|e| format!("{what} {}: {e}", p.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{what} {}: {e}", p.display()))?;
            if v.is_empty() {
                return Err(format!("{what} {}: no certificate in it", p.display()));
            }
            Ok(v)
        };
        for c in certs(&self.ca, "CA")? {
            roots
                .add(c)
                .map_err(|e| format!("CA {}: {e}", self.ca.display()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => {
                let chain = certs(c, "certificate")?;
                let key = PrivateKeyDer::from_pem_file(k)
                    .map_err(|_| format!("key {}: not a readable PEM private key", k.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!("certificate {} and key {}: {e}", c.display(), k.display())
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("Cert and Key go together".into()),
        };
        Ok(Arc::new(config))
    }
}
