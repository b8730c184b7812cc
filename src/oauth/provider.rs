//! The provider's token endpoint (RFC 6749 §4.1.3 code exchange, §6 refresh), and nothing else
//! that talks to the provider.

use std::{sync::OnceLock, time::Duration};

use reqwest::{Client, StatusCode, header};
use serde::Deserialize;
use thiserror::Error;

use crate::base::{
    config::{Config, TokenAuthMethod},
    record::Grant,
    secret::Secret,
    tls,
};

/// Token responses are a few kilobytes; anything far larger is not one, and reading it whole
/// would let a broken or hostile endpoint exhaust a 128 MB function.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Lifetimes beyond this are treated as a malformed answer rather than trusted: a provider bug
/// must not make the broker hand out a token for years.
const MAX_LIFETIME_SECS: i64 = 10 * 365 * 86400;

#[derive(Debug, Error)]
pub enum ProviderError {
    /// The provider answered with an OAuth error (RFC 6749 §5.2), e.g. `invalid_grant`.
    #[error("provider refused the request: {error}")]
    Refused {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The provider could not be reached, timed out, or answered 5xx / 429: worth retrying later.
    #[error("provider unavailable: {outage}")]
    Unavailable {
        outage: Outage,
        /// Seconds, from the provider's `Retry-After` when it sent one.
        retry_after: Option<u64>,
    },
    /// The provider answered, but not with a usable token response.
    #[error("provider answered with an unusable response: {detail}")]
    Malformed { status: u16, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Outage {
    #[error("timed out")]
    Timeout,
    #[error("connection failed")]
    Connect,
    #[error("response could not be read")]
    Interrupted,
    #[error("HTTP {0}")]
    Status(u16),
}

impl ProviderError {
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, Self::Refused { error, .. } if error == "invalid_grant")
    }
}

pub struct Provider {
    /// Built on the first call to the provider: most invocations (`/token` with a fresh token,
    /// `/verify`) never make one, and the TLS and HTTP client set-up costs a cold start about
    /// 70 µs and the pages its code touches (BENCHMARKS.md).
    http: OnceLock<Client>,
    timeout: Duration,
    token_url: String,
    revocation_url: Option<String>,
    client_id: String,
    client_secret: Secret,
    auth_method: TokenAuthMethod,
    quirks: Quirks,
}

/// How this provider's answers depart from RFC 6749, from its preset or the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quirks {
    /// The access token's lifetime when an answer has no `expires_in`.
    pub default_expires_in: Option<i64>,
    /// Error codes that mean `invalid_grant` (GitHub: `bad_refresh_token`).
    pub invalid_grant_codes: &'static [&'static str],
    /// The provider answers OAuth errors with HTTP 200 (GitHub, Zoho). From any other, a 200
    /// without a token is a broken answer, not a refusal, and cannot end a connection.
    pub errors_with_200: bool,
}

impl Provider {
    pub fn new(config: &Config) -> Self {
        Self {
            http: OnceLock::new(),
            timeout: config.provider_timeout,
            token_url: config.token_url.clone(),
            revocation_url: config.revocation_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            auth_method: config.token_auth_method,
            quirks: Quirks {
                default_expires_in: config.default_expires_in,
                invalid_grant_codes: config.invalid_grant_codes,
                errors_with_200: config.errors_with_200,
            },
        }
    }

    fn http(&self) -> Result<&Client, ProviderError> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let unavailable = |error: &dyn std::fmt::Display| {
            tracing::error!(%error, "the HTTP client for the provider could not be built");
            ProviderError::Unavailable {
                outage: Outage::Connect,
                retry_after: None,
            }
        };
        let tls = tls::client_config().map_err(|e| unavailable(&e))?;
        let client = Client::builder()
            .tls_backend_preconfigured(tls)
            // A token endpoint that redirects is misconfigured or hijacked; following it would
            // send the client secret elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .timeout(self.timeout)
            .user_agent(concat!("token-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unavailable(&e))?;
        // Two first calls at once both build one; the loser's is dropped.
        Ok(self.http.get_or_init(|| client))
    }

    /// Redeems an authorization code, with the PKCE verifier of the login that asked for it
    /// (RFC 7636 §4.5) and the redirect URI that login sent (§4.1.3 requires the same one).
    /// Never retried: codes are single-use, and some providers revoke everything issued from a
    /// code that is presented twice (RFC 6749 §4.1.2).
    pub async fn exchange_code(
        &self,
        code: &Secret,
        code_verifier: Option<&Secret>,
        redirect_uri: &str,
    ) -> Result<Grant, ProviderError> {
        let mut params = vec![
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(verifier) = code_verifier {
            params.push(("code_verifier", verifier.expose()));
        }
        let answer = self.post(&self.token_url, &params).await?;
        let sent = [
            code.expose(),
            code_verifier.map_or("", Secret::expose),
            self.client_secret.expose(),
        ];
        parse_grant(answer.status, answer.retry_after, &answer.body, &sent, self.quirks)
    }

    /// RFC 6749 §6.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Grant, ProviderError> {
        let params = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let answer = self.post(&self.token_url, &params).await?;
        let sent = [refresh_token.expose(), self.client_secret.expose()];
        parse_grant(answer.status, answer.retry_after, &answer.body, &sent, self.quirks)
    }

    pub fn can_revoke(&self) -> bool {
        self.revocation_url.is_some()
    }

    /// RFC 7009 §2.1: revokes a refresh token (and, at most providers, the grant behind it).
    /// Without a configured endpoint there is nothing to call: `Ok(false)`.
    pub async fn revoke(&self, refresh_token: &Secret) -> Result<bool, ProviderError> {
        let Some(url) = &self.revocation_url else {
            return Ok(false);
        };
        let params = [("token", refresh_token.expose()), ("token_type_hint", "refresh_token")];
        let answer = self.post(url, &params).await?;
        // §2.2: 200 whether or not the token was still valid; the body carries nothing.
        if answer.status.is_success() {
            return Ok(true);
        }
        let sent = [refresh_token.expose(), self.client_secret.expose()];
        Err(failure(
            answer.status,
            answer.retry_after,
            &answer.body,
            &sent,
            self.quirks,
        ))
    }

    /// POSTs a form with the client's credentials to one of the provider's endpoints.
    async fn post(&self, url: &str, params: &[(&str, &str)]) -> Result<Answer, ProviderError> {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        let mut request = self.http()?.post(url).header(header::ACCEPT, "application/json");
        match self.auth_method {
            TokenAuthMethod::ClientSecretPost => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", self.client_secret.expose()));
            }
            TokenAuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
                let id: String = form_urlencoded::byte_serialize(self.client_id.as_bytes()).collect();
                let secret: String = form_urlencoded::byte_serialize(self.client_secret.expose().as_bytes()).collect();
                request = request.basic_auth(id, Some(secret));
            }
        }
        let mut response = request.form(&form).send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = read_capped(&mut response).await?;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

fn transport_error(error: reqwest::Error) -> ProviderError {
    let outage = if error.is_timeout() {
        Outage::Timeout
    } else if error.is_connect() {
        Outage::Connect
    } else {
        Outage::Interrupted
    };
    ProviderError::Unavailable {
        outage,
        retry_after: None,
    }
}

async fn read_capped(response: &mut reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ProviderError::Malformed {
                status: response.status().as_u16(),
                detail: format!("response larger than {MAX_RESPONSE_BYTES} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Some providers send lifetimes as strings; accept both, reject anything else.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(serde_json::Number),
    Text(String),
}

impl Seconds {
    fn value(&self) -> Option<i64> {
        match self {
            Self::Number(n) => n.as_i64(),
            Self::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct RawGrant {
    access_token: Option<String>,
    refresh_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<Seconds>,
    refresh_token_expires_in: Option<Seconds>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    error_description: Option<String>,
}

/// Parses a token endpoint answer. Public for the fuzz and unit tests: it must never panic.
pub fn parse_response(status: StatusCode, retry_after: Option<u64>, body: &[u8]) -> Result<Grant, ProviderError> {
    parse_grant(status, retry_after, body, &[], Quirks::default())
}

/// `sent`: the secrets the request carried, which a provider's error text must not carry back
/// into our answers and logs.
fn parse_grant(
    status: StatusCode,
    retry_after: Option<u64>,
    body: &[u8],
    sent: &[&str],
    quirks: Quirks,
) -> Result<Grant, ProviderError> {
    if !status.is_success() {
        return Err(failure(status, retry_after, body, sent, quirks));
    }
    let malformed = |detail: &str| ProviderError::Malformed {
        status: status.as_u16(),
        detail: detail.to_owned(),
    };
    let raw: RawGrant = serde_json::from_slice(body).map_err(|_| malformed("token response is not JSON"))?;
    let Some(access_token) = raw.access_token.filter(|t| !t.is_empty()) else {
        let refused = quirks
            .errors_with_200
            .then(|| refusal(status, body, sent, quirks))
            .flatten();
        return Err(refused.unwrap_or_else(|| malformed("token response has no access_token")));
    };
    let expires_in =
        match lifetime(raw.expires_in.as_ref()).ok_or_else(|| malformed("token response has no valid expires_in"))? {
            Some(seconds) => seconds,
            // RFC 6749 §5.1 only recommends it; the provider documents a default instead.
            None => quirks.default_expires_in.ok_or_else(|| {
                malformed("token response has no expires_in (ACCESS_TOKEN_TTL sets the lifetime to assume)")
            })?,
        };
    let refresh_token_expires_in = lifetime(raw.refresh_token_expires_in.as_ref())
        .ok_or_else(|| malformed("refresh_token_expires_in is invalid"))?;
    Ok(Grant {
        access_token: Secret::new(access_token),
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
        token_type: raw
            .token_type
            .map_or_else(|| "Bearer".to_owned(), |t| printable(&t, 32)),
        expires_in,
        refresh_token_expires_in,
        scope: raw.scope,
    })
}

/// What a non-2xx answer means.
fn failure(status: StatusCode, retry_after: Option<u64>, body: &[u8], sent: &[&str], quirks: Quirks) -> ProviderError {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return ProviderError::Unavailable {
            outage: Outage::Status(status.as_u16()),
            retry_after,
        };
    }
    // RFC 6749 §5.2 says 400 (or 401 for client authentication), but providers vary: take the
    // OAuth error from any answer that has one.
    refusal(status, body, sent, quirks).unwrap_or_else(|| ProviderError::Malformed {
        status: status.as_u16(),
        detail: format!("HTTP {} without an OAuth error body", status.as_u16()),
    })
}

/// The OAuth error in `body` (RFC 6749 §5.2), if it is one. A code the provider uses for a
/// grant that is gone is reported as `invalid_grant`, with its own code in the description.
fn refusal(status: StatusCode, body: &[u8], sent: &[&str], quirks: Quirks) -> Option<ProviderError> {
    let raw = serde_json::from_slice::<RawError>(body).ok()?;
    // Scrubbed before shortening, so no prefix of a secret survives the cut.
    let mut error = printable(&scrub(&raw.error, sent), 64);
    let mut description = raw.error_description.map(|d| printable(&scrub(&d, sent), 256));
    if quirks.invalid_grant_codes.contains(&error.as_str()) {
        description = Some(match description {
            Some(text) => format!("{error}: {text}"),
            None => error.clone(),
        });
        error = "invalid_grant".to_owned();
    }
    Some(ProviderError::Refused {
        status: status.as_u16(),
        error,
        description,
    })
}

/// `None` when present but unusable; `Some(None)` when absent.
fn lifetime(value: Option<&Seconds>) -> Option<Option<i64>> {
    match value {
        None => Some(None),
        Some(seconds) => seconds
            .value()
            .filter(|s| (1..=MAX_LIFETIME_SECS).contains(s))
            .map(Some),
    }
}

/// Some providers quote the offending token or secret in their error text.
fn scrub(text: &str, sent: &[&str]) -> String {
    sent.iter()
        .filter(|secret| secret.len() >= 4)
        .fold(text.to_owned(), |text, secret| text.replace(secret, "[redacted]"))
}

/// Provider-supplied text ends up in our answers and logs: keep it short and printable.
fn printable(text: &str, max_chars: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<Grant, ProviderError> {
        parse_response(StatusCode::OK, None, body.as_bytes())
    }

    #[test]
    fn digikey_style_response_parses() {
        let grant = ok(r#"{"access_token":"a","refresh_token":"r","expires_in":1799,
            "refresh_token_expires_in":7775999,"token_type":"Bearer"}"#)
        .unwrap();
        assert_eq!(grant.expires_in, 1799);
        assert_eq!(grant.refresh_token_expires_in, Some(7_775_999));
        assert_eq!(grant.refresh_token.unwrap().expose(), "r");
    }

    #[test]
    fn lifetimes_given_as_strings_are_accepted() {
        let grant = ok(r#"{"access_token":"a","expires_in":"3600","token_type":"bearer"}"#).unwrap();
        assert_eq!(grant.expires_in, 3600);
        assert!(grant.refresh_token.is_none());
    }

    #[test]
    fn missing_negative_or_absurd_lifetimes_are_malformed() {
        for body in [
            r#"{"access_token":"a"}"#,
            r#"{"access_token":"a","expires_in":-5}"#,
            r#"{"access_token":"a","expires_in":0}"#,
            r#"{"access_token":"a","expires_in":1e30}"#,
            r#"{"access_token":"a","expires_in":99999999999}"#,
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a","expires_in":60,"refresh_token_expires_in":-1}"#,
            r#"{"expires_in":60}"#,
            r#"{"access_token":"","expires_in":60}"#,
            "<html>oops</html>",
            "",
        ] {
            assert!(matches!(ok(body), Err(ProviderError::Malformed { .. })), "{body}");
        }
    }

    #[test]
    fn oauth_errors_are_parsed_from_any_4xx() {
        for status in [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            let error =
                parse_response(status, None, br#"{"error":"invalid_grant","error_description":"used"}"#).unwrap_err();
            assert!(error.is_invalid_grant(), "{status}");
        }
    }

    #[test]
    fn a_documented_default_stands_in_for_a_missing_expires_in() {
        let quirks = Quirks {
            default_expires_in: Some(900),
            ..Quirks::default()
        };
        let body = br#"{"access_token":"a","refresh_token":"r","instance_url":"https://x.my.salesforce.com"}"#;
        let grant = parse_grant(StatusCode::OK, None, body, &[], quirks).unwrap();
        assert_eq!(grant.expires_in, 900);
        // A figure the provider does send still wins, and a bad one is still refused.
        let body = br#"{"access_token":"a","expires_in":60}"#;
        assert_eq!(
            parse_grant(StatusCode::OK, None, body, &[], quirks).unwrap().expires_in,
            60
        );
        let body = br#"{"access_token":"a","expires_in":-1}"#;
        assert!(parse_grant(StatusCode::OK, None, body, &[], quirks).is_err());
    }

    #[test]
    fn an_oauth_error_answered_with_200_is_a_refusal_where_the_provider_does_that() {
        let quirks = Quirks {
            invalid_grant_codes: &["bad_refresh_token"],
            errors_with_200: true,
            ..Quirks::default()
        };
        let body =
            br#"{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}"#;
        let error = parse_grant(StatusCode::OK, None, body, &[], quirks).unwrap_err();
        assert!(error.is_invalid_grant(), "{error:?}");
        let ProviderError::Refused { description, .. } = error else {
            unreachable!()
        };
        assert!(description.unwrap().starts_with("bad_refresh_token: "));
        // From a provider that does not do this, it is a broken answer, which ends nothing.
        let error = parse_response(StatusCode::OK, None, body).unwrap_err();
        assert!(
            matches!(error, ProviderError::Malformed { status: 200, .. }),
            "{error:?}"
        );
        // A 400 with the provider's own code is a refusal, taken for invalid_grant only where
        // the preset says so.
        let error = parse_grant(StatusCode::BAD_REQUEST, None, body, &[], quirks).unwrap_err();
        assert!(error.is_invalid_grant());
        let error = parse_response(StatusCode::BAD_REQUEST, None, body).unwrap_err();
        assert!(matches!(&error, ProviderError::Refused { error, .. } if error == "bad_refresh_token"));
        assert!(!error.is_invalid_grant());
    }

    #[test]
    fn server_errors_and_rate_limits_are_unavailable() {
        let error = parse_response(StatusCode::TOO_MANY_REQUESTS, Some(30), b"slow down").unwrap_err();
        assert!(matches!(
            error,
            ProviderError::Unavailable {
                retry_after: Some(30),
                ..
            }
        ));
        let error = parse_response(StatusCode::BAD_GATEWAY, None, br#"{"error":"invalid_grant"}"#).unwrap_err();
        assert!(!error.is_invalid_grant());
    }

    #[test]
    fn secrets_quoted_in_provider_errors_are_scrubbed() {
        let body = br#"{"error":"invalid_grant","error_description":"refresh token rt-SECRET-123 was used twice"}"#;
        let sent = ["rt-SECRET-123", "client-secret"];
        match parse_grant(StatusCode::BAD_REQUEST, None, body, &sent, Quirks::default()).unwrap_err() {
            ProviderError::Refused { description, .. } => {
                assert_eq!(description.unwrap(), "refresh token [redacted] was used twice");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn html_error_pages_are_malformed_not_refusals() {
        let error = parse_response(StatusCode::BAD_REQUEST, None, b"<html>Bad Request</html>").unwrap_err();
        assert!(matches!(error, ProviderError::Malformed { status: 400, .. }));
    }

    #[test]
    fn provider_text_is_stripped_of_control_characters_and_shortened() {
        let long = "x".repeat(1000);
        let body = format!(r#"{{"error":"bad\u0007\nthing","error_description":"{long}"}}"#);
        match parse_response(StatusCode::BAD_REQUEST, None, body.as_bytes()).unwrap_err() {
            ProviderError::Refused { error, description, .. } => {
                assert_eq!(error, "badthing");
                assert_eq!(description.unwrap().len(), 256);
            }
            other => panic!("{other:?}"),
        }
    }
}
