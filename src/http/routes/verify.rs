//! `GET /verify`: a connection's health for monitoring, without any token value.
//!
//! 200: both tokens valid. 202: the access token expired but the refresh token is valid (the
//! next `/token` call refreshes). 404: no usable refresh token; a person must log in again.
//! Without `?connection=`, the answer is the default connection's, and the body also lists every
//! connection, so existing monitors keep working and operators see everything in one call.
//!
//! It reads a connection's health, never its tokens: deployed, its function has no encryption key
//! and reads what a sealed record keeps in clear ([`App::health_of`]).

use lambda_http::{Body, Response, http::StatusCode};
use serde_json::{Value, json};

use crate::{
    base::{
        connection,
        record::Health,
        store::{Store, Versioned},
    },
    http::{error::BrokerError, request, response, routes::Call},
    oauth::app::App,
};

pub async fn verify<S: Store>(app: &App<S>, call: Call<'_>) -> Result<Response<Body>, BrokerError> {
    let named = call.query.get("connection").is_some();
    let connection = request::connection(&call.query)?;
    if named {
        let (status, body) = health(app, &connection).await?;
        return Ok(response::json(status, &body));
    }
    // Every connection's record in one listing (one round trip on DynamoDB and on Redis), the
    // asked-for one among them.
    let mut own = None;
    let mut all = Vec::new();
    let records = connection::records(&app.store, &app.keys).await?;
    // A key limited to some connections sees only those.
    let visible = records
        .into_iter()
        .filter(|(name, _)| call.key.is_none_or(|key| key.may_touch(name)));
    for (name, stored) in visible {
        let described = stored
            .map_err(BrokerError::from)
            .and_then(|stored| describe(app, &name, Some(stored)));
        let mut entry = match described {
            Ok((status, entry)) => {
                if name == connection {
                    own = Some((status, entry.clone()));
                }
                entry
            }
            Err(error) if name == connection => return Err(error),
            // One unreadable connection must not blind the monitor to all the others.
            Err(error) => json!({"connection": name, "status": error.reply().error}),
        };
        if let Some(entry) = entry.as_object_mut() {
            // The per-connection list says what state each is in; the error wording is for
            // single-connection callers.
            entry.remove("error");
            entry.remove("error_description");
        }
        all.push(entry);
    }
    let (status, mut body) = match own {
        Some(own) => own,
        // Not listed: most likely nothing is stored, but a record written by a version without
        // the connection index is read rather than assumed absent.
        None => health(app, &connection).await?,
    };
    body["connections"] = Value::Array(all);
    Ok(response::json(status, &body))
}

/// The status code and body `/verify` gives for one connection.
pub async fn health<S: Store>(app: &App<S>, connection: &str) -> Result<(StatusCode, Value), BrokerError> {
    let stored = app.store.load(&app.keys.tokens(connection)).await?;
    describe(app, connection, stored)
}

/// [`health`] of a record already read.
fn describe<S: Store>(
    app: &App<S>,
    connection: &str,
    stored: Option<Versioned>,
) -> Result<(StatusCode, Value), BrokerError> {
    let key = app.keys.tokens(connection);
    let health = stored.map(|s| app.health_of(&key, s.data)).transpose()?;
    let now = app.clock.now();
    let (status, mut body) = match health {
        None => (
            StatusCode::NOT_FOUND,
            json!({
                "error": "reauthorization_required",
                "error_description": "no tokens are stored; a person must log in through the provider",
                "status": "not_authorized",
            }),
        ),
        Some(Health::ReauthorizationRequired { reason, since }) => (
            StatusCode::NOT_FOUND,
            json!({
                "error": "reauthorization_required",
                "error_description": format!("a person must log in again through the provider ({reason})"),
                "status": "refresh_token_rejected",
                "reason": reason,
                "since": since,
            }),
        ),
        Some(Health::Active {
            scope,
            access_expires_at,
            refresh_expires_at,
            issued_at,
        }) => {
            let access = access_expires_at - now;
            let refresh = refresh_expires_at - now;
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
            body["access_token_expires_in"] = json!(access.max(0));
            body["access_token_expires_at"] = json!(access_expires_at);
            body["refresh_token_expires_in"] = json!(refresh.max(0));
            body["refresh_token_expires_at"] = json!(refresh_expires_at);
            body["issued_at"] = json!(issued_at);
            body["scope"] = json!(scope);
            (status, body)
        }
    };
    body["connection"] = json!(connection);
    Ok((status, body))
}
