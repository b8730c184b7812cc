//! AWS without the SDK: the Secrets Manager call a cold start makes, the request signing it and
//! the DynamoDB store need, and what they share.

pub mod secrets;
pub mod sigv4;

use std::time::Duration;

use reqwest::{Client, Url};

use crate::base::{aws::sigv4::Credentials, secret::Secret};

/// An HTTP client for signed AWS calls: the broker's TLS set-up, `timeout` to connect and in
/// total, and no redirects (a signed request must go nowhere but the endpoint it was signed for).
pub fn client(tls: rustls::ClientConfig, timeout: Duration) -> Result<Client, reqwest::Error> {
    Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(concat!("token-broker/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The `Host` header reqwest sends for `url`, which SigV4 signs: with the port only when it is
/// not the scheme's default.
pub fn host_header(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}

/// The credentials of the function's execution role, which Lambda puts in the environment (the
/// same variables work locally). Without one of them, the name of the missing variable.
pub fn credentials(var: impl Fn(&str) -> Option<String>) -> Result<Credentials, &'static str> {
    Ok(Credentials {
        access_key_id: var("AWS_ACCESS_KEY_ID").ok_or("AWS_ACCESS_KEY_ID")?,
        secret_access_key: Secret::new(var("AWS_SECRET_ACCESS_KEY").ok_or("AWS_SECRET_ACCESS_KEY")?),
        session_token: var("AWS_SESSION_TOKEN").map(Secret::new),
    })
}
