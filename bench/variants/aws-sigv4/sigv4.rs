//! The alternative measured by `make bench BENCH_VARIANTS=aws-sigv4`: the same interface as the
//! broker's `sigv4.rs` (what `aws_secrets.rs` calls), implemented with the `aws-sigv4` crate.
//! `scripts/bench.sh` swaps it in for the module file of the same name in a copy of the crate.

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials as AwsCredentials;
use aws_sigv4::{
    http_request::{self, SignableBody, SignableRequest, SigningSettings},
    sign::v4,
};

use crate::base::secret::Secret;

/// An access key with its secret, and the session token that temporary credentials come with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// The parts of an HTTP request that are signed.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The headers [`sign`] adds: `x-amz-date`, `x-amz-security-token` (with temporary
/// credentials) and `authorization`.
pub struct Signed {
    headers: Vec<(&'static str, Secret)>,
}

impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed").finish_non_exhaustive()
    }
}

impl Signed {
    pub fn headers(&self) -> Vec<(&'static str, &str)> {
        self.headers.iter().map(|(name, value)| (*name, value.expose())).collect()
    }
}

/// Signs `request` for `service` in `region` at `now` (Unix seconds), the session token signed
/// as well as sent.
pub fn sign(request: &Request<'_>, credentials: &Credentials, region: &str, service: &str, now: i64) -> Signed {
    let identity = AwsCredentials::new(
        credentials.access_key_id.clone(),
        credentials.secret_access_key.expose(),
        credentials.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "lambda-environment",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(UNIX_EPOCH + Duration::from_secs(now.max(0) as u64))
        .settings(SigningSettings::default())
        .build()
        .expect("identity, region, name, time and settings are all set")
        .into();
    let uri = if request.query.is_empty() {
        format!("https://{}{}", request.host, request.path)
    } else {
        format!("https://{}{}?{}", request.host, request.path, request.query)
    };
    let mut headers: Vec<(&str, &str)> = request.headers.to_vec();
    headers.push(("host", request.host));
    let signable = SignableRequest::new(
        request.method,
        uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .expect("the host comes from a parsed URL");
    let (instructions, _signature) = http_request::sign(signable, &params)
        .expect("SigV4 with credentials in hand does not fail")
        .into_parts();
    let (headers, _) = instructions.into_parts();
    Signed {
        headers: headers
            .into_iter()
            .map(|header| (header.name(), Secret::new(header.value())))
            .collect(),
    }
}
