//! TLS for every outbound connection: the provider, Secrets Manager and `rediss://` Redis.
//!
//! ring and the bundled webpki roots: both start in microseconds, where aws-lc's entropy set-up
//! and reading the OS certificate store cost milliseconds of every cold start.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider};

/// Makes ring the process-wide provider, which the Redis client's TLS uses; the first call wins
/// and later ones change nothing.
pub fn install_default_provider() {
    let _ = CryptoProvider::install_default(rustls::crypto::ring::default_provider());
}

/// A client configuration for HTTPS: TLS 1.2 and 1.3, certificates checked against the bundled
/// roots.
pub fn client_config() -> Result<ClientConfig, rustls::Error> {
    install_default_provider();
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
