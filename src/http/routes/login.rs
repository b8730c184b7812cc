//! `/login`: the front door of the OAuth flow (RFC 6749 §4.1.1 with PKCE, RFC 7636).
//!
//! - `GET` in a browser: a form asking for the API key.
//! - `POST` of that form: 302 to the provider's authorization URL, with a fresh one-time state.
//! - `GET` with the API key in a header: JSON `{"authorization_url", "expires_at"}` for operators
//!   who open the URL elsewhere.

use lambda_http::{Body, Response, http::StatusCode};
use serde_json::json;

use crate::{
    base::store::Store,
    http::{error::BrokerError, pages, request, response, routes::Call},
    oauth::{app::App, authorization},
};

/// The page paths answer their own failures as pages; only the header-keyed JSON variant returns
/// an error, which the route table writes as JSON.
pub async fn login<S: Store>(app: &App<S>, call: Call<'_>) -> Result<Response<Body>, BrokerError> {
    let connection = request::connection(&call.query);
    if call.request.method() == "POST" {
        return Ok(submitted(app, connection, &call).await);
    }
    if !call.keyed {
        return Ok(match connection {
            Ok(connection) => form(app, StatusCode::OK, &connection, None),
            Err(error) => error.into_html(),
        });
    }
    let connection = connection?;
    let redirect_uri = request::callback_url(app.config.redirect_uri.as_deref(), call.request)?;
    let started = authorization::start(app, &connection, &redirect_uri).await?;
    tracing::info!(connection, expires_at = started.expires_at, "login started");
    Ok(response::json(
        StatusCode::OK,
        &json!({
            "authorization_url": started.authorization_url,
            "expires_at": started.expires_at,
        }),
    ))
}

/// The form came back: on to the provider if it carried a valid key, else the form again.
async fn submitted<S: Store>(app: &App<S>, connection: Result<String, BrokerError>, call: &Call<'_>) -> Response<Body> {
    let connection = match connection {
        Ok(connection) => connection,
        Err(error) => return error.into_html(),
    };
    if !call.keyed {
        tracing::info!(status = 401, "login refused: wrong API key");
        return form(
            app,
            StatusCode::UNAUTHORIZED,
            &connection,
            Some("That API key is not valid."),
        );
    }
    let redirect_uri = match request::callback_url(app.config.redirect_uri.as_deref(), call.request) {
        Ok(uri) => uri,
        Err(error) => return error.into_html(),
    };
    match authorization::start(app, &connection, &redirect_uri).await {
        Ok(started) => {
            tracing::info!(connection, expires_at = started.expires_at, "login started");
            response::redirect(&started.authorization_url)
        }
        Err(error) => BrokerError::from(error).into_html(),
    }
}

fn form<S>(app: &App<S>, status: StatusCode, connection: &str, error: Option<&str>) -> Response<Body> {
    response::html_with_form_target(
        status,
        pages::login_form(&app.config.provider_title, connection, error),
        &authorize_origin(app),
    )
}

/// Where the form's redirect goes: the provider's origin, which the page's policy must allow.
fn authorize_origin<S>(app: &App<S>) -> String {
    reqwest::Url::parse(&app.config.authorize_url)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default()
}
