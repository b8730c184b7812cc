//! Every failure a route can answer with, and the one place where each becomes an HTTP status,
//! an OAuth-style error code and the headers that go with it.

use lambda_http::{
    Body, Response,
    http::{HeaderValue, StatusCode, header},
};
use thiserror::Error;

use crate::{
    pages,
    provider::{Outage, ProviderError},
    record::DecodeError,
    response,
    store::StoreError,
};

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("API key sent in the query string")]
    KeyInQuery,
    #[error("missing or invalid API key")]
    Unauthorized { key_presented: bool },
    #[error("state does not match")]
    InvalidState,
    #[error("iss does not match ISSUER")]
    InvalidIssuer,
    /// The provider redirected the browser back with an error instead of a code.
    #[error("authorization failed at the provider: {error}")]
    AuthorizationDenied { error: String, description: Option<String> },
    #[error("re-authorization required")]
    ReauthorizationRequired { reason: String },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    StoreUnreadable(#[from] DecodeError),
    #[error("another caller's refresh did not finish in time")]
    RefreshBusy,
    /// A path no route serves (local mode; API Gateway answers these itself).
    #[error("no such route")]
    NotFound,
    /// A bug or an environment failure; the detail goes to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// An error ready to be written as JSON or as an HTML page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub status: StatusCode,
    pub error: String,
    pub description: String,
    pub retry_after: Option<u64>,
    pub www_authenticate: Option<&'static str>,
    pub allow: Option<&'static str>,
}

impl ErrorReply {
    fn decorate(&self, mut response: Response<Body>) -> Response<Body> {
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

/// Seconds a client should wait before retrying after a transient failure of ours or the
/// provider's.
const RETRY_STORE: u64 = 2;
const RETRY_PROVIDER: u64 = 5;
const RETRY_RATE_LIMITED: u64 = 30;
const RETRY_BUSY: u64 = 1;
/// Providers' Retry-After values beyond this are not passed on: a client told to sleep a day
/// by a confused upstream is worse off than one that retries.
const RETRY_MAX: u64 = 3600;

impl BrokerError {
    pub fn reply(&self) -> ErrorReply {
        let reply = |status: StatusCode, error: &str, description: String| ErrorReply {
            status,
            error: error.to_owned(),
            description,
            retry_after: None,
            www_authenticate: None,
            allow: None,
        };
        match self {
            Self::MethodNotAllowed { allow } => ErrorReply {
                allow: Some(allow),
                ..reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("this route accepts {allow} only"),
                )
            },
            Self::BadRequest(description) => reply(StatusCode::BAD_REQUEST, "invalid_request", description.clone()),
            Self::KeyInQuery => reply(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "API keys are accepted only in the Authorization or X-API-Key header, never in the URL, \
                 where access logs would keep them"
                    .to_owned(),
            ),
            Self::Unauthorized { key_presented } => ErrorReply {
                www_authenticate: Some(if *key_presented {
                    r#"Bearer realm="token-broker", error="invalid_token""#
                } else {
                    r#"Bearer realm="token-broker""#
                }),
                ..reply(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    if *key_presented {
                        "the API key is not valid".to_owned()
                    } else {
                        "send the API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'".to_owned()
                    },
                )
            },
            Self::InvalidState => reply(
                StatusCode::FORBIDDEN,
                "invalid_state",
                "the state parameter does not match; start the login again".to_owned(),
            ),
            Self::InvalidIssuer => reply(
                StatusCode::FORBIDDEN,
                "invalid_issuer",
                "the authorization response does not come from the configured issuer (RFC 9207)".to_owned(),
            ),
            Self::AuthorizationDenied { error, description } => reply(
                StatusCode::BAD_REQUEST,
                error,
                description
                    .clone()
                    .unwrap_or_else(|| "the provider did not grant access".to_owned()),
            ),
            Self::ReauthorizationRequired { reason } => reply(
                StatusCode::UNAUTHORIZED,
                "reauthorization_required",
                format!("a person must log in again through the provider ({reason})"),
            ),
            Self::Provider(ProviderError::Refused { error, description, .. }) => reply(
                StatusCode::BAD_GATEWAY,
                error,
                description
                    .clone()
                    .unwrap_or_else(|| "the provider refused the request".to_owned()),
            ),
            Self::Provider(ProviderError::Unavailable { outage, retry_after }) => {
                // 503 where waiting helps (the provider said so, or it was merely slow); 502 where
                // the provider is broken or unreachable.
                let (status, default) = match outage {
                    Outage::Status(429) => (StatusCode::SERVICE_UNAVAILABLE, RETRY_RATE_LIMITED),
                    Outage::Status(503) | Outage::Timeout => (StatusCode::SERVICE_UNAVAILABLE, RETRY_PROVIDER),
                    _ => (StatusCode::BAD_GATEWAY, RETRY_PROVIDER),
                };
                ErrorReply {
                    retry_after: Some(retry_after.unwrap_or(default).clamp(1, RETRY_MAX)),
                    ..reply(
                        status,
                        "provider_unavailable",
                        format!("the provider's token endpoint is unavailable ({outage}); stored tokens are kept"),
                    )
                }
            }
            Self::Provider(ProviderError::Malformed { detail, .. }) => ErrorReply {
                retry_after: Some(RETRY_PROVIDER),
                ..reply(
                    StatusCode::BAD_GATEWAY,
                    "provider_response_invalid",
                    format!("{detail}; stored tokens are kept"),
                )
            },
            Self::Store(StoreError::Unavailable(_)) => ErrorReply {
                retry_after: Some(RETRY_STORE),
                ..reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the token store is unreachable; try again shortly".to_owned(),
                )
            },
            Self::Store(StoreError::Protocol(_)) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                "the token store answered unexpectedly".to_owned(),
            ),
            Self::StoreUnreadable(_) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_unreadable",
                "the stored record cannot be read; it has been left as it is".to_owned(),
            ),
            Self::NotFound => reply(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no such route; the broker serves {}",
                    crate::routes::Route::ALL.map(|r| r.path()).join(", ")
                ),
            ),
            Self::Internal(_) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the broker failed unexpectedly; see its logs".to_owned(),
            ),
            Self::RefreshBusy => ErrorReply {
                retry_after: Some(RETRY_BUSY),
                ..reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "refresh_in_progress",
                    "another caller is refreshing the token; try again shortly".to_owned(),
                )
            },
        }
    }

    /// The response, or the error as JSON: the end of every API route.
    pub fn or_json(result: Result<Response<Body>, BrokerError>) -> Response<Body> {
        result.unwrap_or_else(BrokerError::into_json)
    }

    /// A JSON error body, for API clients.
    pub fn into_json(self) -> Response<Body> {
        let reply = self.reply();
        self.log(&reply);
        let body = serde_json::json!({"error": reply.error, "error_description": reply.description});
        reply.decorate(response::json(reply.status, &body))
    }

    /// An HTML page, for a person's browser.
    pub fn into_html(self) -> Response<Body> {
        let reply = self.reply();
        self.log(&reply);
        reply.decorate(response::html(reply.status, pages::failure(&reply)))
    }

    fn log(&self, reply: &ErrorReply) {
        // Client mistakes are routine; failures of ours or the provider's deserve attention.
        if reply.status.is_server_error() {
            tracing::warn!(status = reply.status.as_u16(), error = %reply.error, cause = %self, "request failed");
        } else {
            tracing::info!(status = reply.status.as_u16(), error = %reply.error, "request refused");
        }
    }
}
