//! The HTTP routes. Each Lambda function serves one of them; a local server can serve them all.

pub mod callback;
pub mod login;
pub mod revoke;
pub mod token;
pub mod verify;

use lambda_http::{Body, Request, Response};

use crate::{app::App, store::Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Login,
    Callback,
    Token,
    Verify,
    Revoke,
}

impl Route {
    pub const ALL: [Route; 5] = [
        Route::Login,
        Route::Callback,
        Route::Token,
        Route::Verify,
        Route::Revoke,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Route::Login => "/login",
            Route::Callback => "/callback",
            Route::Token => "/token",
            Route::Verify => "/verify",
            Route::Revoke => "/revoke",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|route| route.path() == path)
    }
}

/// Answers every request: failures become error responses here, so nothing escapes as an opaque
/// Lambda error.
pub async fn handle<S: Store>(app: &App<S>, route: Route, request: Request) -> Response<Body> {
    match route {
        Route::Login => login::handle(app, &request).await,
        Route::Callback => callback::handle(app, &request).await,
        Route::Token => token::handle(app, &request).await,
        Route::Verify => verify::handle(app, &request).await,
        Route::Revoke => revoke::handle(app, &request).await,
    }
}
