//! `/login`: the front door of the OAuth flow (RFC 6749 §4.1.1 with PKCE, RFC 7636).
//!
//! - `GET` in a browser: a form asking for the API key.
//! - `POST` of that form: 302 to the provider's authorization URL, with a fresh one-time state.
//! - `GET` with the API key in a header: JSON `{"authorization_url", "expires_at"}` for operators
//!   who open the URL elsewhere.

use lambda_http::{Body, Request, Response, http::StatusCode};
use serde_json::json;

use crate::{
    app::App,
    connection,
    error::BrokerError,
    login, pages,
    request::{self, Query},
    response,
    store::Store,
};

pub async fn handle<S: Store>(app: &App<S>, request: &Request) -> Response<Body> {
    if let Err(error) = request::require_method(request, "GET, POST") {
        return error.into_json();
    }
    if request.method() == "POST" {
        return submit(app, request).await;
    }
    if request::has_key(request) || request::prefers_json(request) {
        return BrokerError::or_json(start_json(app, request).await);
    }
    match Query::parse(request).and_then(|query| connection::from_query(&query)) {
        Ok(connection) => form(app, StatusCode::OK, &connection, None),
        Err(error) => error.into_html(),
    }
}

fn form<S>(app: &App<S>, status: StatusCode, connection: &str, error: Option<&str>) -> Response<Body> {
    response::html_with_form_target(status, pages::login_form(connection, error), &authorize_origin(app))
}

/// Where the form's redirect goes: the provider's origin, which the page's policy must allow.
fn authorize_origin<S>(app: &App<S>) -> String {
    reqwest::Url::parse(&app.config.authorize_url)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default()
}

async fn start_json<S: Store>(app: &App<S>, request: &Request) -> Result<Response<Body>, BrokerError> {
    let query = Query::parse(request)?;
    request::authenticate(request, &query, &app.config.api_keys)?;
    let connection = connection::from_query(&query)?;
    let started = login::start(app, &connection).await?;
    tracing::info!(connection, expires_at = started.expires_at, "login started");
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "authorization_url": started.authorization_url,
            "expires_at": started.expires_at,
        }),
    ))
}

async fn submit<S: Store>(app: &App<S>, request: &Request) -> Response<Body> {
    let (form_data, connection) = match Query::parse_form(request)
        .and_then(|form_data| connection::from_query(&form_data).map(|connection| (form_data, connection)))
    {
        Ok(parsed) => parsed,
        Err(error) => return error.into_html(),
    };
    let key_ok = form_data
        .get("api_key")
        .is_some_and(|key| app.config.api_keys.matches(key.trim()));
    if !key_ok {
        tracing::info!(status = 401, "login refused: wrong API key");
        return form(
            app,
            StatusCode::UNAUTHORIZED,
            &connection,
            Some("That API key is not valid."),
        );
    }
    match login::start(app, &connection).await {
        Ok(started) => {
            tracing::info!(connection, expires_at = started.expires_at, "login started");
            response::redirect(&started.authorization_url)
        }
        Err(error) => error.into_html(),
    }
}
