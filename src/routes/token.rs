//! `GET /token`: a valid access token for a headless client, refreshed on demand.

use lambda_http::{Body, Request, Response, http::StatusCode};
use serde_json::json;

use crate::{
    app::{App, DEFAULT_CONNECTION},
    error::BrokerError,
    refresh,
    request::{self, Query},
    response,
    store::Store,
};

pub async fn handle<S: Store>(app: &App<S>, request: &Request) -> Response<Body> {
    match serve(app, request).await {
        Ok(response) => response,
        Err(error) => error.into_json(),
    }
}

async fn serve<S: Store>(app: &App<S>, request: &Request) -> Result<Response<Body>, BrokerError> {
    request::require_method(request, "GET")?;
    let query = Query::parse(request)?;
    request::authenticate(request, &query, &app.config.api_key)?;
    let min_valid = app.config.refresh_skew.as_secs() as i64;
    let tokens = refresh::access_token(app, DEFAULT_CONNECTION, min_valid).await?;
    let now = app.clock.now();
    // The refresh token never leaves the broker: a caller holding it could rotate it and end
    // the connection for everyone.
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "access_token": tokens.access_token.expose(),
            "token_type": tokens.token_type,
            "expires_in": tokens.access_valid_for(now),
            "expires_at": tokens.access_expires_at,
            "scope": tokens.scope,
        }),
    ))
}
