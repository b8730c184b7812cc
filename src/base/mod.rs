//! The first layer: what the broker keeps and where, with no knowledge of OAuth flows or HTTP.

pub mod api_keys;
pub mod aws;
pub mod clock;
pub mod config;
pub mod connection;
pub mod layout;
pub mod logging;
pub mod metrics;
pub mod presets;
pub mod record;
pub mod sealing;
pub mod secret;
pub mod store;
pub mod tls;
