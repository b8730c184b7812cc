//! `POST /import`: hands the broker a grant someone already holds (a refresh token from another
//! tool, such as Digi-Key's hosted callback page), with the API key, instead of a browser login.
//!
//! The token is refreshed at once, which proves that the provider honours it for this client and
//! yields a fresh pair; only that pair is stored. A token the provider refuses stores nothing,
//! and the answer says why. The body is JSON (`{"refresh_token": "..."}`) or a form with the same
//! field; the connection is `?connection=` as on every route.

use lambda_http::{Body, Response, http::StatusCode, http::header};
use serde::Deserialize;
use serde_json::json;

use crate::{
    base::{
        record::{ConnectionRecord, Grant, TokenSet},
        secret::Secret,
        store::{Expect, Store, ttl},
    },
    http::{
        error::BrokerError,
        request::{self, Query},
        response,
        routes::Call,
    },
    oauth::{app::App, provider::ProviderError, webhooks},
};

/// A refresh token is at most a few kilobytes.
const MAX_BODY_BYTES: usize = 8192;

#[derive(Deserialize)]
struct Imported {
    refresh_token: Secret,
}

pub async fn import<S: Store>(app: &App<S>, call: Call<'_>) -> Result<Response<Body>, BrokerError> {
    let connection = request::connection(&call.query)?;
    let refresh_token = refresh_token(call.request)?;
    let grant = app
        .provider
        .refresh(&refresh_token)
        .await
        .map_err(|error| match error {
            // Revoked, expired, spent, or issued to another client: this grant cannot be kept.
            ProviderError::Refused { error, description, .. } => {
                tracing::info!(connection, error, "import refused by the provider; nothing stored");
                BrokerError::ImportRefused { error, description }
            }
            error => BrokerError::from(error),
        })?;
    let now = app.clock.now();
    // A provider that does not rotate sends no new refresh token: the imported one stays valid.
    let grant = Grant {
        refresh_token: Some(grant.refresh_token.unwrap_or(refresh_token)),
        ..grant
    };
    let tokens = TokenSet::from_authorization(grant, now, app.config.refresh_lifetime)
        .expect("the grant was given a refresh token above");
    let key = app.keys.tokens(&connection);
    let record = app.seal_record(&key, &ConnectionRecord::Active(tokens.clone()))?;
    let generation = app
        .store
        .write(&key, Expect::Any, &record, ttl(tokens.refresh_valid_for(now)))
        .await?;
    // Generations start at 1 on a key with no live record, so a later one means a record was
    // there and is now replaced.
    let replaced = generation.is_some_and(|generation| generation > 1);
    let created =
        json!({"via": "import", "refresh_token_expires_at": tokens.refresh_expires_at, "scope": tokens.scope});
    webhooks::raise(app, webhooks::Kind::Created, &connection, created).await;
    let (access, refresh) = (tokens.access_valid_for(now), tokens.refresh_valid_for(now));
    app.metrics.authorized(&connection, refresh);
    tracing::info!(
        connection,
        replaced,
        access_expires_in = access,
        refresh_expires_in = refresh,
        "grant imported"
    );
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "status": "imported",
            "connection": connection,
            "replaced": replaced,
            "access_token_expires_in": access,
            "refresh_token_expires_in": refresh,
            "scope": tokens.scope,
        }),
    ))
}

/// The `refresh_token` field of a JSON or form body.
fn refresh_token(request: &lambda_http::Request) -> Result<Secret, BrokerError> {
    let body = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(BrokerError::BadRequest(format!(
            "the body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    let token = if json {
        serde_json::from_slice::<Imported>(body)
            .map(|imported| imported.refresh_token)
            .map_err(|_| BrokerError::BadRequest("the body must be {\"refresh_token\": \"...\"}".to_owned()))?
    } else {
        Secret::new(Query::parse_form(request)?.require("refresh_token")?)
    };
    let plain = !token.expose().is_empty()
        && token.expose().len() <= 4096
        && token.expose().bytes().all(|b| b.is_ascii_graphic());
    if !plain {
        return Err(BrokerError::BadRequest(
            "refresh_token must be 1 to 4096 printable characters".to_owned(),
        ));
    }
    Ok(token)
}
