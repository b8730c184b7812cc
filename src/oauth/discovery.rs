//! Discovery: an authorization server's metadata (RFC 8414, or OpenID Connect Discovery 1.0)
//! read from its issuer, turned into the variables that configure the broker.
//!
//! It runs when the broker is set up, never on a request: `serve discover` prints the values to
//! pin (in `.env` or the stack's parameters), and local mode, started with `ISSUER` but without
//! endpoints, discovers them once before it serves. The Lambda functions read only what was
//! pinned, so no cold start waits for a metadata document.

use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;
use thiserror::Error;

use crate::base::{config::secure_url, tls};

/// A metadata document is a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DiscoveryError {
    #[error("ISSUER {0:?} is not an https:// URL without a query or fragment (http:// only on localhost)")]
    BadIssuer(String),
    #[error("the metadata at {url} could not be fetched: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("no metadata document at {0}")]
    NotFound(String),
    #[error("the document at {0} is not an authorization server's metadata (JSON with issuer and endpoints)")]
    NotMetadata(String),
    /// RFC 8414 §3.3: a document that names another issuer must not be used, or one server could
    /// impersonate another.
    #[error("the metadata at {url} names the issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        url: String,
        expected: String,
        found: String,
    },
    #[error("the metadata's {field} {value:?} is not an https:// URL")]
    BadEndpoint { field: &'static str, value: String },
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RFC 8414 §2: when absent, `client_secret_basic`.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// RFC 8414 §2: when absent, the server does not support PKCE.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207 §3: whether the authorization response carries `iss`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl Metadata {
    /// The variables that configure the broker for this server, in the order a person reads them.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let methods = self
            .token_endpoint_auth_methods_supported
            .clone()
            .unwrap_or_else(|| vec!["client_secret_basic".to_owned()]);
        // Basic is the one RFC 6749 §2.3.1 makes every server support; the form when it is the
        // only one offered.
        let auth = if methods.iter().any(|m| m == "client_secret_basic")
            || !methods.iter().any(|m| m == "client_secret_post")
        {
            "client_secret_basic"
        } else {
            "client_secret_post"
        };
        let pkce = self
            .code_challenge_methods_supported
            .as_ref()
            .is_some_and(|methods| methods.iter().any(|m| m == "S256"));
        let mut settings = vec![
            ("ISSUER", self.issuer.clone()),
            ("AUTHORIZE_URL", self.authorization_endpoint.clone()),
            ("TOKEN_URL", self.token_endpoint.clone()),
        ];
        if let Some(revocation) = &self.revocation_endpoint {
            settings.push(("REVOCATION_URL", revocation.clone()));
        }
        settings.push(("TOKEN_AUTH_METHOD", auth.to_owned()));
        settings.push(("PKCE", pkce.to_string()));
        // Without RFC 9207 support the server sends no `iss`, and requiring one would refuse
        // every login.
        settings.push((
            "REQUIRE_ISS",
            self.authorization_response_iss_parameter_supported.to_string(),
        ));
        settings
    }
}

/// Reads the metadata of `issuer`: the OpenID Connect location first, then RFC 8414's.
pub async fn discover(issuer: &str, timeout: Duration) -> Result<Metadata, DiscoveryError> {
    let locations = locations(issuer)?;
    let http = client(timeout).map_err(|reason| DiscoveryError::Unreachable {
        url: locations[0].to_string(),
        reason,
    })?;
    let mut last = None;
    for url in locations {
        match fetch(&http, &url).await {
            Ok(document) => return check(issuer, &url, &document),
            // Either location may be the one a server publishes.
            Err(error @ DiscoveryError::NotFound(_)) => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.expect("there are two locations"))
}

/// OpenID Connect Discovery §4: the issuer with `/.well-known/openid-configuration` appended.
/// RFC 8414 §3.1: `/.well-known/oauth-authorization-server` put between the host and the path.
fn locations(issuer: &str) -> Result<[Url; 2], DiscoveryError> {
    let bad = || DiscoveryError::BadIssuer(issuer.to_owned());
    let url = Url::parse(issuer).map_err(|_| bad())?;
    if !secure_url(&url) || url.query().is_some() || url.fragment().is_some() {
        return Err(bad());
    }
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    let oidc = format!("{origin}{path}/.well-known/openid-configuration");
    let oauth = format!("{origin}/.well-known/oauth-authorization-server{path}");
    Ok([
        Url::parse(&oidc).map_err(|_| bad())?,
        Url::parse(&oauth).map_err(|_| bad())?,
    ])
}

fn client(timeout: Duration) -> Result<Client, String> {
    let tls = tls::client_config().map_err(|e| e.to_string())?;
    Client::builder()
        .tls_backend_preconfigured(tls)
        // A metadata document that redirects elsewhere is not the issuer's.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("token-broker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

async fn fetch(http: &Client, url: &Url) -> Result<Vec<u8>, DiscoveryError> {
    let unreachable = |reason: String| DiscoveryError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let mut response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            unreachable(if e.is_timeout() {
                "timed out".into()
            } else {
                "connection failed".into()
            })
        })?;
    match response.status() {
        status if status.is_success() => {}
        StatusCode::NOT_FOUND | StatusCode::GONE => return Err(DiscoveryError::NotFound(url.to_string())),
        status => return Err(unreachable(format!("HTTP {}", status.as_u16()))),
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| unreachable("the answer broke off".into()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(DiscoveryError::NotMetadata(url.to_string()));
        }
    }
    Ok(body)
}

fn check(issuer: &str, url: &Url, document: &[u8]) -> Result<Metadata, DiscoveryError> {
    let metadata: Metadata =
        serde_json::from_slice(document).map_err(|_| DiscoveryError::NotMetadata(url.to_string()))?;
    // Compared as strings, as RFC 8414 §3.3 and OpenID Connect Discovery §4.3 say: no
    // normalising, except the trailing slash people add or leave out when they copy it.
    if metadata.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(DiscoveryError::IssuerMismatch {
            url: url.to_string(),
            expected: issuer.to_owned(),
            found: metadata.issuer,
        });
    }
    for (field, value) in [
        ("authorization_endpoint", Some(&metadata.authorization_endpoint)),
        ("token_endpoint", Some(&metadata.token_endpoint)),
        ("revocation_endpoint", metadata.revocation_endpoint.as_ref()),
    ] {
        let Some(value) = value else { continue };
        if !Url::parse(value).is_ok_and(|endpoint| secure_url(&endpoint)) {
            return Err(DiscoveryError::BadEndpoint {
                field,
                value: value.clone(),
            });
        }
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_well_known_locations_are_built_from_the_issuer() {
        let [oidc, oauth] = locations("https://auth.example.com/tenant/a/").unwrap();
        assert_eq!(
            oidc.as_str(),
            "https://auth.example.com/tenant/a/.well-known/openid-configuration"
        );
        assert_eq!(
            oauth.as_str(),
            "https://auth.example.com/.well-known/oauth-authorization-server/tenant/a"
        );
        let [oidc, oauth] = locations("https://accounts.example.com").unwrap();
        assert_eq!(
            oidc.as_str(),
            "https://accounts.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            oauth.as_str(),
            "https://accounts.example.com/.well-known/oauth-authorization-server"
        );
        for bad in [
            "http://auth.example.com",
            "auth.example.com",
            "https://a.example/?x=1",
            "https://a.example/#f",
        ] {
            assert!(matches!(locations(bad), Err(DiscoveryError::BadIssuer(_))), "{bad}");
        }
    }

    #[test]
    fn settings_follow_the_metadata_and_rfc_8414_defaults() {
        let mut metadata = Metadata {
            issuer: "https://auth.example.com".into(),
            authorization_endpoint: "https://auth.example.com/authorize".into(),
            token_endpoint: "https://auth.example.com/token".into(),
            revocation_endpoint: None,
            token_endpoint_auth_methods_supported: None,
            code_challenge_methods_supported: None,
            authorization_response_iss_parameter_supported: false,
        };
        let get = |metadata: &Metadata, name: &str| {
            metadata
                .settings()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        assert_eq!(
            get(&metadata, "TOKEN_AUTH_METHOD").as_deref(),
            Some("client_secret_basic")
        );
        assert_eq!(get(&metadata, "PKCE").as_deref(), Some("false"));
        assert_eq!(get(&metadata, "REQUIRE_ISS").as_deref(), Some("false"));
        assert_eq!(get(&metadata, "REVOCATION_URL"), None);
        metadata.token_endpoint_auth_methods_supported =
            Some(vec!["client_secret_post".into(), "private_key_jwt".into()]);
        metadata.code_challenge_methods_supported = Some(vec!["plain".into(), "S256".into()]);
        metadata.authorization_response_iss_parameter_supported = true;
        metadata.revocation_endpoint = Some("https://auth.example.com/revoke".into());
        assert_eq!(
            get(&metadata, "TOKEN_AUTH_METHOD").as_deref(),
            Some("client_secret_post")
        );
        assert_eq!(get(&metadata, "PKCE").as_deref(), Some("true"));
        assert_eq!(get(&metadata, "REQUIRE_ISS").as_deref(), Some("true"));
        assert_eq!(
            get(&metadata, "REVOCATION_URL").as_deref(),
            Some("https://auth.example.com/revoke")
        );
    }

    #[test]
    fn a_document_for_another_issuer_or_with_plain_http_endpoints_is_refused() {
        let url = Url::parse("https://auth.example.com/.well-known/openid-configuration").unwrap();
        let document = |issuer: &str, token: &str| {
            format!(
                r#"{{"issuer":"{issuer}","authorization_endpoint":"https://auth.example.com/a","token_endpoint":"{token}"}}"#
            )
        };
        let ok = document("https://auth.example.com/", "https://auth.example.com/t");
        assert!(check("https://auth.example.com", &url, ok.as_bytes()).is_ok());
        let other = document("https://evil.example", "https://auth.example.com/t");
        assert!(matches!(
            check("https://auth.example.com", &url, other.as_bytes()),
            Err(DiscoveryError::IssuerMismatch { .. })
        ));
        let plain = document("https://auth.example.com", "http://auth.example.com/t");
        assert!(matches!(
            check("https://auth.example.com", &url, plain.as_bytes()),
            Err(DiscoveryError::BadEndpoint {
                field: "token_endpoint",
                ..
            })
        ));
        for junk in ["<html></html>", "{}", r#"{"issuer":"https://auth.example.com"}"#] {
            assert!(matches!(
                check("https://auth.example.com", &url, junk.as_bytes()),
                Err(DiscoveryError::NotMetadata(_))
            ));
        }
    }
}
