//! Everything a handler needs, built once per cold start and shared by every invocation.

use std::sync::Arc;

use crate::{
    base::{
        clock::Clock,
        config::Config,
        layout::Layout,
        metrics::Metrics,
        record::{ConnectionRecord, DecodeError, Health},
        sealing::{Sealer, clear_part},
        secret::Fault,
        store::Store,
    },
    oauth::provider::Provider,
};

pub struct App<S> {
    pub config: Config,
    pub store: S,
    /// Where in the store everything lives, under `KEY_PREFIX`.
    pub keys: Layout,
    pub provider: Provider,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    /// Encryption at rest; passes records through unchanged without `TOKEN_ENCRYPTION_KEY`.
    pub sealer: Sealer,
}

/// True inside AWS Lambda (the runtime sets these for every function).
pub fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() || std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

impl<S: Store> App<S> {
    pub fn new(config: Config, store: S, clock: Arc<dyn Clock>) -> Self {
        let provider = Provider::new(&config);
        // EMF lines become CloudWatch metrics on Lambda; in a terminal they would only be noise.
        let metrics = if on_lambda() { Metrics::stdout() } else { Metrics::off() };
        let sealer = Sealer::new(&config.encryption_keys);
        let keys = config.layout();
        Self {
            config,
            store,
            keys,
            provider,
            clock,
            metrics,
            sealer,
        }
    }

    /// A connection record as stored under `key`: encoded, and sealed when encryption is on, with
    /// its health readable beside it.
    pub fn seal_record(&self, key: &str, record: &ConnectionRecord) -> Result<Vec<u8>, Fault> {
        self.sealer.seal(key, &record.health().encode(), record.encode())
    }

    /// The health of the connection record stored under `key`. A function with the encryption
    /// key opens the whole record; one without reads what is stored in clear beside it, which it
    /// cannot authenticate: whoever can write to the store could make it report a connection
    /// healthy, but could as well delete the record, and the functions that serve tokens refuse
    /// a record whose clear part was changed.
    pub fn health_of(&self, key: &str, data: Vec<u8>) -> Result<Health, DecodeError> {
        if self.sealer.is_enabled() {
            return Ok(self.open_record(key, data)?.health());
        }
        match clear_part(&data)? {
            Some(clear) => Health::decode(clear),
            None => Ok(ConnectionRecord::decode(&data)?.health()),
        }
    }

    /// The connection record stored under `key`.
    pub fn open_record(&self, key: &str, data: Vec<u8>) -> Result<ConnectionRecord, DecodeError> {
        ConnectionRecord::decode(&self.sealer.open(key, data)?)
    }
}
