//! TLS for the Basics Station endpoints: the server's certificate chain and
//! key, and, with a client CA, mutual TLS (a gateway without a certificate
//! that CA signed is refused in the handshake).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use std::path::Path;

/// Where the server's certificate chain, its key and (for mutual TLS) the
/// client CA are: `Ingest.BasicStation.Tls`.
pub struct Files<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
}

/// The server configuration `tls` describes, or why not (naming the file).
pub fn server_config(tls: Files<'_>) -> Result<Arc<rustls::ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls.cert)
        .map_err(|e| format!("certificate {}: {e}", tls.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate {}: {e}", tls.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "certificate {}: no certificate in it",
            tls.cert.display()
        ));
    }
    // Key errors name the file, never its contents.
    let key = PrivateKeyDer::from_pem_file(tls.key)
        .map_err(|_| format!("key {}: not a readable PEM private key", tls.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("client CA {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("client CA {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "certificate {} and key {}: {e}",
            tls.cert.display(),
            tls.key.display()
        )
    })?;
    Ok(Arc::new(config))
}
