//! TLS configurations built from the configured PEM files (rustls, ring provider).
//!
//! * the internal listener requires a client certificate signed by the configured CA (mTLS);
//! * the optional gateway-side TLS listener accepts clients with or without a certificate (a
//!   trunk is identified by its address; a presented certificate must still verify);
//! * outbound connections (to the internal next hop, to TLS trunks) present our certificate
//!   and verify the server against the CA.
//!
//! [`TlsMaterial::load`] is called at start and again on SIGHUP; connections opened after a
//! reload use the new material, existing ones keep theirs.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{what} {path}: {reason}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA store could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// Everything TLS the daemon needs.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// Internal listener: client certificate required.
    pub int_server: Arc<ServerConfig>,
    /// Gateway-side TLS listener: client certificate optional.
    pub ext_server: Arc<ServerConfig>,
    /// Outbound connections: our certificate, server verified against the CA.
    pub client: Arc<ClientConfig>,
}

fn pem_err(
    what: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError {
    let path = path.display().to_string();
    move |e| TlsError::Pem {
        what,
        path,
        reason: e.to_string(),
    }
}

impl TlsMaterial {
    /// Loads certificate, key and CA and builds the three configurations.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .map_err(pem_err("certificate", &files.cert))?
            .collect::<Result<_, _>>()
            .map_err(pem_err("certificate", &files.cert))?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                what: "certificate",
                path: files.cert.display().to_string(),
                reason: "no certificate in file".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem_err("key", &files.key))?;
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&files.ca).map_err(pem_err("CA", &files.ca))? {
            let c = c.map_err(pem_err("CA", &files.ca))?;
            roots.add(c).map_err(TlsError::Rustls)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem {
                what: "CA",
                path: files.ca.display().to_string(),
                reason: "no certificate in file".into(),
            });
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let required =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let int_server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(required)
            .with_single_cert(certs.clone(), key.clone_key())?;

        let optional =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let ext_server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(optional)
            .with_single_cert(certs.clone(), key.clone_key())?;

        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(certs, key)?;

        Ok(TlsMaterial {
            int_server: Arc::new(int_server),
            ext_server: Arc::new(ext_server),
            client: Arc::new(client),
        })
    }
}
