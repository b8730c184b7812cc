//! `GET /verify`: the connection's health for monitoring, without any token value.
//!
//! 200: both tokens valid. 202: the access token expired but the refresh token is valid (the
//! next `/token` call refreshes). 404: no usable refresh token; a person must log in again.

use lambda_http::{Body, Request, Response, http::StatusCode};
use serde_json::json;

use crate::{
    app::{App, DEFAULT_CONNECTION},
    error::BrokerError,
    record::ConnectionRecord,
    request::{self, Query},
    response,
    store::Store,
};

pub async fn handle<S: Store>(app: &App<S>, request: &Request) -> Response<Body> {
    match inspect(app, request).await {
        Ok(response) => response,
        Err(error) => error.into_json(),
    }
}

async fn inspect<S: Store>(app: &App<S>, request: &Request) -> Result<Response<Body>, BrokerError> {
    request::require_method(request, "GET")?;
    let query = Query::parse(request)?;
    request::authenticate(request, &query, &app.config.api_key)?;
    let stored = app.store.load(&app.tokens_key(DEFAULT_CONNECTION)).await?;
    let now = app.clock.now();
    let record = stored.map(|s| ConnectionRecord::decode(&s.data)).transpose()?;
    let (status, body) = match record {
        None => (
            StatusCode::NOT_FOUND,
            json!({
                "error": "reauthorization_required",
                "error_description": "no tokens are stored; a person must log in through the provider",
                "status": "not_authorized",
            }),
        ),
        Some(ConnectionRecord::ReauthorizationRequired { reason, since }) => (
            StatusCode::NOT_FOUND,
            json!({
                "error": "reauthorization_required",
                "error_description": format!("a person must log in again through the provider ({reason})"),
                "status": "refresh_token_rejected",
                "reason": reason,
                "since": since,
            }),
        ),
        Some(ConnectionRecord::Active(tokens)) => {
            let access = tokens.access_valid_for(now);
            let refresh = tokens.refresh_valid_for(now);
            let times = json!({
                "access_token_expires_in": access.max(0),
                "access_token_expires_at": tokens.access_expires_at,
                "refresh_token_expires_in": refresh.max(0),
                "refresh_token_expires_at": tokens.refresh_expires_at,
                "issued_at": tokens.issued_at,
                "scope": tokens.scope,
            });
            let (status, mut body) = if refresh <= 0 {
                (
                    StatusCode::NOT_FOUND,
                    json!({
                        "error": "reauthorization_required",
                        "error_description": "the refresh token has expired; a person must log in again",
                        "status": "refresh_token_expired",
                    }),
                )
            } else if access <= 0 {
                (StatusCode::ACCEPTED, json!({"status": "access_token_expired"}))
            } else {
                (StatusCode::OK, json!({"status": "valid"}))
            };
            if let (Some(body), Some(times)) = (body.as_object_mut(), times.as_object()) {
                body.extend(times.clone());
            }
            (status, body)
        }
    };
    Ok(response::json(status, &body))
}
