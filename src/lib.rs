//! token-broker: holds a provider's OAuth 2.0 tokens for clients that cannot log in themselves.
//!
//! Four layers, each importing only from those below it (`tests/layers.rs` checks):
//!
//! 1. [`base`]: what the broker keeps and where: records, secrets, sealing, the clock,
//!    configuration, the store trait, its backends and its key layout. Knows nothing of OAuth
//!    flows or HTTP.
//! 2. [`oauth`]: the protocol: the provider's token endpoint, starting a login (state and PKCE),
//!    refreshing with one refresh in flight, keep-alive.
//! 3. [`http`]: requests, responses, pages, every error mapped to a status code, and the route
//!    table with one handler per route.
//! 4. [`serve`]: the two ways to run it: one Lambda function per route, or local mode's single
//!    process. Each binary in `src/bin/` is a few lines over this layer.

pub mod base;
pub mod http;
pub mod oauth;
pub mod serve;
