//! `GET /callback`: where the provider sends the person's browser after login (RFC 6749 §4.1.2).

use lambda_http::{Body, Response, http::StatusCode};
use serde_json::json;

use crate::{
    base::{
        connection,
        record::{ConnectionRecord, TokenSet},
        secret::Secret,
        store::{Expect, Store, StoreError, ttl},
    },
    http::{audit, error::BrokerError, pages, request, response, routes::Call},
    oauth::{
        app::App,
        authorization::{self, PendingLogin},
        provider::ProviderError,
        webhooks,
    },
};

pub async fn callback<S: Store>(app: &App<S>, call: Call<'_>) -> Result<Response<Body>, BrokerError> {
    let (connection, tokens) = authorize(app, &call).await?;
    let now = app.clock.now();
    let (access, refresh) = (tokens.access_valid_for(now), tokens.refresh_valid_for(now));
    app.metrics.authorized(&connection, refresh);
    tracing::info!(
        connection,
        access_expires_in = access,
        refresh_expires_in = refresh,
        "authorization stored"
    );
    let mut response = if request::prefers_json(call.request) {
        response::json(
            StatusCode::OK,
            &json!({
                "status": "authorized",
                "connection": connection,
                "access_token_expires_in": access,
                "refresh_token_expires_in": refresh,
                "scope": tokens.scope,
            }),
        )
    } else {
        response::html(StatusCode::OK, pages::success(&connection, access, refresh))
    };
    // The state named the connection, not the request: the audit line learns it here.
    response.extensions_mut().insert(audit::Connection(connection));
    Ok(response)
}

async fn authorize<S: Store>(app: &App<S>, call: &Call<'_>) -> Result<(String, TokenSet), BrokerError> {
    let query = &call.query;
    let state = match query.get("state") {
        Some(state) => check_state(app, state).await?,
        None => State::Invalid,
    };
    if let Some(error) = query.get("error") {
        return Err(denied(
            error,
            query.get("error_description"),
            !matches!(state, State::Invalid),
        ));
    }
    query.require("state")?;
    let code = Secret::new(query.require("code")?);
    if let Some(issuer) = &app.config.issuer {
        match query.get("iss") {
            Some(iss) if iss == issuer => {}
            None if !app.config.require_iss => {}
            _ => return Err(BrokerError::InvalidIssuer),
        }
    }
    let (verifier, connection, redirect_uri) = match state {
        State::Invalid => return Err(BrokerError::InvalidState),
        State::Static => {
            // Codes are single-use: make sure the store can take the result before spending one.
            // (A one-time state was just taken from the store, which proved the same.)
            // Only an outage matters here: a record that cannot be read is what a new login heals.
            if let Err(error @ StoreError::Unavailable(_)) = app.store.load(&app.keys.tokens(connection::DEFAULT)).await
            {
                return Err(error.into());
            }
            (None, connection::DEFAULT.to_owned(), None)
        }
        State::OneTime(pending) => (Some(pending.code_verifier), pending.connection, pending.redirect_uri),
    };
    // The one the login sent; else (a hand-built URL) this very request's own address.
    let redirect_uri = match redirect_uri {
        Some(uri) => uri,
        None => request::callback_url(app.config.redirect_uri.as_deref(), call.request)?,
    };
    let verifier = verifier.filter(|_| app.config.pkce);
    let grant = app
        .provider
        .exchange_code(&code, verifier.as_ref(), &redirect_uri)
        .await?;
    let now = app.clock.now();
    let tokens = TokenSet::from_authorization(grant, now, app.config.refresh_lifetime).map_err(|e| {
        BrokerError::from(ProviderError::Malformed {
            status: 200,
            detail: e.to_string(),
        })
    })?;
    // A fresh authorization replaces whatever was there, including a re-authorization mark.
    let key = app.keys.tokens(&connection);
    let record = app.seal_record(&key, &ConnectionRecord::Active(tokens.clone()))?;
    app.store
        .write(&key, Expect::Any, &record, ttl(tokens.refresh_valid_for(now)))
        .await?;
    let created = json!({"via": "login", "refresh_token_expires_at": tokens.refresh_expires_at, "scope": tokens.scope});
    webhooks::raise(app, webhooks::Kind::Created, &connection, created).await;
    Ok((connection, tokens))
}

enum State {
    /// The shared `OAUTH_STATE` of hand-built authorization URLs.
    Static,
    /// A state issued by `/login`, now used up.
    OneTime(PendingLogin),
    Invalid,
}

/// A one-time state is consumed here whatever happens next: a replayed callback URL must fail
/// even if the first attempt did.
async fn check_state<S: Store>(app: &App<S>, state: &str) -> Result<State, BrokerError> {
    if let Some(shared) = &app.config.oauth_state
        && shared.matches(state)
    {
        return Ok(State::Static);
    }
    Ok(match authorization::redeem(app, state).await? {
        Some(pending) => State::OneTime(pending),
        None => State::Invalid,
    })
}

/// The provider's error redirect is shown to the person, but its free-text description only when
/// the state proves the redirect came from a login we started: otherwise anyone could make our
/// domain display a message of their choosing.
fn denied(error: &str, description: Option<&str>, state_ok: bool) -> BrokerError {
    let error: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    let description = if state_ok {
        description.map(|d| d.chars().filter(|c| !c.is_control()).take(512).collect())
    } else {
        Some("the provider reported an error for a login this broker did not start".to_owned())
    };
    BrokerError::AuthorizationDenied {
        error: if error.is_empty() {
            "authorization_failed".to_owned()
        } else {
            error
        },
        description,
    }
}
