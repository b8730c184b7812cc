//! The audit trail: one line for every request to a route, saying who called (the key's name,
//! never the key; the caller's address and user agent as API Gateway reports them), what for (the
//! route's action), on which connection, how it ended, and under which API Gateway request id.
//! Refreshes add a line of their own ([`crate::oauth::refresh`]).
//!
//! The lines go through the logger like every other (one JSON object per line on Lambda) under
//! the target [`AUDIT_TARGET`], with the event in `fields.audit`, so CloudWatch Logs Insights
//! selects them with `filter fields.audit = "token"`. They are written at INFO, the template's
//! level: a function set to WARN writes none.

use std::net::SocketAddr;

use lambda_http::{Body, Request, RequestExt, Response, request::RequestContext};

use crate::{base::logging::AUDIT_TARGET, http::error::BrokerError};

/// The peer of a request in local mode, where no API Gateway reports one.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The connection a handler acted on when the request did not name it (`/callback`: the login's
/// state does), left in the response's extensions for the audit line.
#[derive(Debug, Clone)]
pub struct Connection(pub String);

/// What one audit line says besides the caller.
pub struct Entry<'a> {
    /// The route's action (`token`, `login`, ...), or `callback`.
    pub action: &'a str,
    /// The key's name, when a valid one came.
    pub key: Option<&'a str>,
    pub connection: Option<&'a str>,
    /// `ok`, or the error code the caller got.
    pub outcome: &'a str,
    pub status: u16,
}

/// A user agent is the caller's text: kept short, so a client cannot fill the log with it.
const MAX_USER_AGENT: usize = 256;

/// Writes the audit line of `request`.
pub fn record(request: &Request, entry: &Entry<'_>) {
    let (request_id, ip, user_agent) = caller(request);
    let user_agent: String = user_agent.chars().take(MAX_USER_AGENT).collect();
    tracing::info!(
        target: AUDIT_TARGET,
        audit = entry.action,
        key = entry.key.unwrap_or_default(),
        connection = entry.connection.unwrap_or_default(),
        outcome = entry.outcome,
        status = entry.status,
        ip,
        user_agent,
        request_id,
        "audit"
    );
}

/// API Gateway's id of the request (empty in local mode): what the caller's span carries, so the
/// refresh a request caused can be told by it.
pub fn request_id(request: &Request) -> &str {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.as_deref().unwrap_or_default(),
        _ => "",
    }
}

/// The request id, address and user agent of the caller: API Gateway's view on Lambda, the
/// connection's in local mode.
fn caller(request: &Request) -> (&str, String, &str) {
    let header_agent = || {
        request
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => (
            request_id(request),
            context.http.source_ip.clone().unwrap_or_default(),
            context.http.user_agent.as_deref().unwrap_or_else(header_agent),
        ),
        _ => (
            "",
            request
                .extensions()
                .get::<Peer>()
                .map(|peer| peer.0.ip().to_string())
                .unwrap_or_default(),
            header_agent(),
        ),
    }
}

/// Why a request's key was refused, if it was: what the `RefusedKeys` metric counts.
pub fn refusal(error: &BrokerError) -> Option<&'static str> {
    match error {
        BrokerError::Unauthorized { key_presented: false } => Some("missing_key"),
        BrokerError::Unauthorized { key_presented: true } => Some("unknown_key"),
        BrokerError::KeyInQuery => Some("key_in_url"),
        BrokerError::Forbidden(_) => Some("insufficient_scope"),
        _ => None,
    }
}

/// The outcome of an answer a handler gave (not an error it returned): `ok` below 400, else the
/// `error` of its JSON body (`/verify`'s 404 says `reauthorization_required`), else the status's
/// name.
pub fn outcome_of(response: &Response<Body>) -> String {
    let status = response.status();
    if status.as_u16() < 400 {
        return "ok".to_owned();
    }
    let from_body = match response.body() {
        Body::Text(text) if text.starts_with('{') => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|body| body["error"].as_str().map(str::to_owned)),
        _ => None,
    };
    from_body.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
            .replace(' ', "_")
    })
}
