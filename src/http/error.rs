//! Every failure a route can answer with, and the one place where each becomes an HTTP status,
//! an OAuth-style error code and the headers that go with it.

use lambda_http::{
    Body, Response,
    http::{HeaderValue, StatusCode, header},
};
use thiserror::Error;

use crate::{
    base::{connection::InvalidName, store::StoreError},
    http::{pages, response},
    oauth::{
        error::FlowError,
        provider::{Outage, ProviderError},
    },
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
    /// A valid key whose scope does not cover the request: what it lacks, in words.
    #[error("insufficient scope: {0}")]
    Forbidden(String),
    #[error("state does not match")]
    InvalidState,
    #[error("iss does not match ISSUER")]
    InvalidIssuer,
    /// The provider redirected the browser back with an error instead of a code.
    #[error("authorization failed at the provider: {error}")]
    AuthorizationDenied { error: String, description: Option<String> },
    /// A path no route serves (local mode; API Gateway answers these itself). `serves` lists the
    /// paths that are.
    #[error("no such route")]
    NotFound { serves: Vec<&'static str> },
    /// `/import`: the provider refused the refresh token it was given; nothing was stored.
    #[error("imported refresh token refused: {error}")]
    ImportRefused { error: String, description: Option<String> },
    /// No `REDIRECT_URI` or `PUBLIC_URL`, and the request does not say where the broker is.
    #[error("no redirect URI")]
    NoRedirectUri,
    /// The protocol layer's failures: the provider, the store, a connection that needs a login.
    #[error(transparent)]
    Flow(FlowError),
}

/// Whatever the protocol layer can fail with (a provider, store, record or system error, or its
/// own), as the protocol failure it is.
impl<E: Into<FlowError>> From<E> for BrokerError {
    fn from(error: E) -> Self {
        Self::Flow(error.into())
    }
}

impl From<InvalidName> for BrokerError {
    fn from(error: InvalidName) -> Self {
        Self::BadRequest(error.to_string())
    }
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

/// A reply with no extra headers.
fn reply(status: StatusCode, error: &str, description: String) -> ErrorReply {
    ErrorReply {
        status,
        error: error.to_owned(),
        description,
        retry_after: None,
        www_authenticate: None,
        allow: None,
    }
}

/// The protocol layer's failures as HTTP: the status code, the error code and when to retry;
/// the description is the protocol layer's own.
fn flow_reply(flow: &FlowError) -> ErrorReply {
    let description = flow.description();
    let retry = |seconds: u64, reply: ErrorReply| ErrorReply {
        retry_after: Some(seconds),
        ..reply
    };
    match flow {
        FlowError::ReauthorizationRequired { .. } => {
            reply(StatusCode::UNAUTHORIZED, "reauthorization_required", description)
        }
        FlowError::Provider(ProviderError::Refused { error, .. }) => reply(StatusCode::BAD_GATEWAY, error, description),
        FlowError::Provider(ProviderError::Unavailable { outage, retry_after }) => {
            // 503 where waiting helps (the provider said so, or it was merely slow); 502 where
            // the provider is broken or unreachable.
            let (status, default) = match outage {
                Outage::Status(429) => (StatusCode::SERVICE_UNAVAILABLE, RETRY_RATE_LIMITED),
                Outage::Status(503) | Outage::Timeout => (StatusCode::SERVICE_UNAVAILABLE, RETRY_PROVIDER),
                _ => (StatusCode::BAD_GATEWAY, RETRY_PROVIDER),
            };
            retry(
                retry_after.unwrap_or(default).clamp(1, RETRY_MAX),
                reply(status, "provider_unavailable", description),
            )
        }
        FlowError::Provider(ProviderError::Malformed { .. }) => retry(
            RETRY_PROVIDER,
            reply(StatusCode::BAD_GATEWAY, "provider_response_invalid", description),
        ),
        FlowError::Store(StoreError::Unavailable(_)) => retry(
            RETRY_STORE,
            reply(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", description),
        ),
        FlowError::Store(StoreError::Protocol(_)) => {
            reply(StatusCode::INTERNAL_SERVER_ERROR, "store_error", description)
        }
        FlowError::StoreUnreadable(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "store_unreadable", description),
        FlowError::Internal(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", description),
        FlowError::RefreshBusy => retry(
            RETRY_BUSY,
            reply(StatusCode::SERVICE_UNAVAILABLE, "refresh_in_progress", description),
        ),
    }
}

impl BrokerError {
    pub fn reply(&self) -> ErrorReply {
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
            Self::ImportRefused { error, description } => reply(
                StatusCode::BAD_REQUEST,
                error,
                match description {
                    Some(description) => {
                        format!("the provider refused this refresh token ({description}); nothing was stored")
                    }
                    None => "the provider refused this refresh token; nothing was stored".to_owned(),
                },
            ),
            Self::NoRedirectUri => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "redirect_uri_unknown",
                "the request does not say which host the broker is served on; set REDIRECT_URI or PUBLIC_URL"
                    .to_owned(),
            ),
            Self::Forbidden(lacking) => reply(StatusCode::FORBIDDEN, "insufficient_scope", lacking.clone()),
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
            Self::NotFound { serves } => reply(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such route; the broker serves {}", serves.join(", ")),
            ),
            Self::Flow(flow) => flow_reply(flow),
        }
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
        reply.decorate(response::html(
            reply.status,
            pages::failure(&reply.error, &reply.description),
        ))
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
