//! token-broker: holds a provider's OAuth 2.0 tokens for clients that cannot log in themselves.
//!
//! The library holds all logic; each binary in `src/bin/` is one Lambda function serving one
//! route through [`lambda::run`].

pub mod api_keys;
pub mod app;
pub mod aws_secrets;
pub mod clock;
pub mod config;
pub mod connection;
pub mod error;
pub mod keepalive;
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod pages;
pub mod provider;
pub mod record;
pub mod refresh;
pub mod request;
pub mod response;
pub mod routes;
pub mod sealing;
pub mod secret;
pub mod sigv4;
pub mod store;
pub mod tls;
