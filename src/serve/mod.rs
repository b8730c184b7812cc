//! The fourth layer: the two ways to run the broker. On AWS Lambda each route is its own function
//! ([`lambda`]); locally every route is served from one process ([`local`]).

#[cfg(feature = "local")]
mod http1;
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;

use thiserror::Error;

use crate::base::{
    aws::secrets::SecretsError,
    config::{ConfigError, StoreConfig},
    secret::Secret,
    store::StoreError,
};

/// Why a function could not start. It fails its init, so a misconfigured function never answers
/// a request.
#[derive(Debug, Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("HTTP client set-up failed: {0}")]
    Http(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the secrets from Secrets Manager failed: {0}")]
    Secrets(#[from] SecretsError),
    #[error(
        "REDIS_URL is not set; it is required on AWS Lambda, where the embedded store cannot work \
         (each instance would hold its own tokens)"
    )]
    EmbeddedStoreOnLambda,
}

/// The Redis URL, which every instance on Lambda must share: an embedded store there would give
/// each instance tokens of its own.
pub fn require_shared_store(config: &crate::base::config::Config) -> Result<&Secret, InitError> {
    match &config.store {
        StoreConfig::Redis { url } => Ok(url),
        StoreConfig::Embedded { .. } => Err(InitError::EmbeddedStoreOnLambda),
    }
}
