//! AWS without the SDK: the Secrets Manager call a cold start makes, and the request signing it
//! needs.

pub mod secrets;
pub mod sigv4;
