//! The second layer: the OAuth 2.0 protocol over the base layer. The provider's token endpoint,
//! starting a login, getting a fresh access token with one refresh in flight, keep-alive, and
//! reading an authorization server's metadata.

pub mod app;
pub mod authorization;
pub mod discovery;
pub mod error;
pub mod keepalive;
pub mod provider;
pub mod refresh;
pub mod webhooks;
