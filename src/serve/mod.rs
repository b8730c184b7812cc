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
    config::{Config, ConfigError, StoreConfig},
    store::{AnyStore, DynamoStore, RedisStore, StoreError},
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
        "neither REDIS_URL nor DYNAMODB_TABLE is set; one is required on AWS Lambda, where the \
         embedded store cannot work (each instance would hold its own tokens)"
    )]
    EmbeddedStoreOnLambda,
}

/// The store every instance shares, as configured: Redis or DynamoDB. The embedded store is
/// refused, since it would give each Lambda instance tokens of its own. Connects to nothing yet.
pub fn shared_store(config: &Config) -> Result<AnyStore, InitError> {
    Ok(match &config.store {
        StoreConfig::Redis { url, cluster } => {
            AnyStore::Redis(RedisStore::new(url, *cluster, config.store_timeout, config.layout())?)
        }
        StoreConfig::DynamoDb(table) => AnyStore::DynamoDb(DynamoStore::new(table, config.store_timeout)?),
        StoreConfig::Embedded { .. } => return Err(InitError::EmbeddedStoreOnLambda),
    })
}
