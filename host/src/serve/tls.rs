//! HTTPS: the server's certificate chain and private key (PEM files, `tls_cert` and `tls_key`),
//! served with rustls (TLS 1.2 and 1.3, ring).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::Error;

/// The acceptor of TLS connections with the certificate chain in `cert` and the key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let bad = |file: &Path, what: &str| {
        Error::Usage(format!(
            "server setting `{what}` ({}): {}",
            file.display(),
            match what {
                "tls_cert" =>
                    "expected a PEM file of the server's certificate chain (-----BEGIN CERTIFICATE-----)",
                _ =>
                    "expected a PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1)",
            }
        ))
    };
    let unreadable = |file: &Path, source: std::io::Error| Error::File {
        path: file.display().to_string(),
        source,
    };
    std::fs::metadata(cert).map_err(|e| unreadable(cert, e))?;
    std::fs::metadata(key).map_err(|e| unreadable(key, e))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|_| bad(cert, "tls_cert"))?
        .collect::<Result<_, _>>()
        .map_err(|_| bad(cert, "tls_cert"))?;
    if chain.is_empty() {
        return Err(bad(cert, "tls_cert"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|_| bad(key, "tls_key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            Error::Usage(format!(
                "server settings `tls_cert` ({}) and `tls_key` ({}) do not make a certificate: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
