//! Everything a handler needs, built once per cold start and shared by every invocation.

use std::sync::Arc;

use thiserror::Error;

use crate::{
    aws_secrets,
    clock::{Clock, SystemClock},
    config::{Config, ConfigError, StoreConfig},
    error::BrokerError,
    metrics::Metrics,
    provider::Provider,
    record::{ConnectionRecord, DecodeError},
    sealing::Sealer,
    store::{RedisStore, Store, StoreError},
    tls,
};

pub struct App<S> {
    pub config: Config,
    pub store: S,
    pub provider: Provider,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    /// Encryption at rest; passes records through unchanged without `TOKEN_ENCRYPTION_KEY`.
    pub sealer: Sealer,
}

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
    Secrets(#[from] aws_secrets::SecretsError),
    #[error(
        "REDIS_URL is not set; it is required on AWS Lambda, where the embedded store cannot work \
         (each instance would hold its own tokens)"
    )]
    EmbeddedStoreOnLambda,
}

/// True inside AWS Lambda (the runtime sets these for every function).
pub fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() || std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// What a connection's token record key ends with, after its name.
pub const TOKENS_SUFFIX: &str = ":tokens";

/// Where configuration variables come from.
type Lookup = dyn Fn(&str) -> Option<String>;

impl App<RedisStore> {
    /// The Lambda functions' start-up: configuration from the environment (completed from the
    /// Secrets Manager secret named by `SECRETS_ARN`, if any), Redis as the store.
    pub async fn from_env() -> Result<Self, InitError> {
        let env = |name: &str| std::env::var(name).ok();
        // One boxed lookup instead of two instances of the generic loader: smaller binary.
        let lookup: Box<Lookup> = match env(aws_secrets::ARN_VAR).filter(|arn| !arn.trim().is_empty()) {
            None => Box::new(env),
            Some(arn) => {
                let tls = tls::client_config().map_err(|e| InitError::Tls(e.to_string()))?;
                let http = aws_secrets::client(tls).map_err(|e| InitError::Http(e.to_string()))?;
                let secrets = aws_secrets::fetch(&arn, &http, &env).await?;
                Box::new(aws_secrets::env_then(secrets, env))
            }
        };
        let config = Config::from_lookup(lookup)?;
        let StoreConfig::Redis { url } = &config.store else {
            return Err(InitError::EmbeddedStoreOnLambda);
        };
        let store = RedisStore::new(url, config.redis_timeout)?;
        Self::new(config, store, Arc::new(SystemClock))
    }
}

impl<S: Store> App<S> {
    pub fn new(config: Config, store: S, clock: Arc<dyn Clock>) -> Result<Self, InitError> {
        let provider = Provider::new(&config);
        // EMF lines become CloudWatch metrics on Lambda; in a terminal they would only be noise.
        let metrics = if on_lambda() { Metrics::stdout() } else { Metrics::off() };
        let sealer = Sealer::new(&config.encryption_keys);
        Ok(Self {
            config,
            store,
            provider,
            clock,
            metrics,
            sealer,
        })
    }

    pub fn tokens_key(&self, connection: &str) -> String {
        format!("{}{connection}{TOKENS_SUFFIX}", self.connections_prefix())
    }

    /// What every connection's store keys start with.
    pub fn connections_prefix(&self) -> String {
        format!("{}:conn:", self.config.key_prefix)
    }

    /// A connection record as stored under `key`: encoded, and sealed when encryption is on.
    pub fn seal_record(&self, key: &str, record: &ConnectionRecord) -> Result<Vec<u8>, BrokerError> {
        self.sealer.seal(key, record.encode())
    }

    /// The connection record stored under `key`.
    pub fn open_record(&self, key: &str, data: Vec<u8>) -> Result<ConnectionRecord, DecodeError> {
        ConnectionRecord::decode(&self.sealer.open(key, data)?)
    }

    pub fn lock_key(&self, connection: &str) -> String {
        format!("{}:conn:{connection}:refresh-lock", self.config.key_prefix)
    }
}
