//! AWS without the SDK: the Secrets Manager call a cold start makes, the request signing it and
//! the DynamoDB store need, and what they share.

pub mod secrets;
pub mod sigv4;

use std::time::Duration;

use reqwest::{
    Client, Url,
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue},
};

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

/// Where a call of AWS's JSON protocol goes and as what: a `POST /` with `X-Amz-Target`.
pub struct JsonCall<'a> {
    /// The `Host` header as sent ([`host_header`]).
    pub host: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// `application/x-amz-json-1.0` or `-1.1`, as the service speaks.
    pub content_type: &'static str,
    /// `<Service>_<version>.<Action>`.
    pub target: &'a str,
}

/// The headers of `call` with `body`, signed at `now` (Unix seconds). Credentials come from the
/// environment, and one holding a character no header may carry cannot be sent: the error is the
/// name of the header it would have gone in.
pub fn signed_headers(
    call: &JsonCall<'_>,
    body: &[u8],
    credentials: &Credentials,
    now: i64,
) -> Result<HeaderMap, &'static str> {
    let signed = sigv4::sign(
        &sigv4::Request {
            method: "POST",
            host: call.host,
            path: "/",
            query: "",
            headers: &[("content-type", call.content_type), ("x-amz-target", call.target)],
            body,
        },
        credentials,
        call.region,
        call.service,
        now,
    );
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(call.content_type));
    headers.insert(
        "x-amz-target",
        HeaderValue::from_str(call.target).map_err(|_| "x-amz-target")?,
    );
    for (name, value) in signed.headers() {
        let mut value = HeaderValue::from_str(value).map_err(|_| name)?;
        // Kept out of any Debug output of the request.
        value.set_sensitive(name != "x-amz-date");
        headers.insert(HeaderName::from_static(name), value);
    }
    Ok(headers)
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
