//! The HTTP routes. Each Lambda function serves one of them; a local server can serve them all.

pub mod callback;
pub mod token;
pub mod verify;

use lambda_http::{Body, Request, Response};

use crate::{app::App, store::Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Callback,
    Token,
    Verify,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Callback, Route::Token, Route::Verify];

    pub fn path(self) -> &'static str {
        match self {
            Route::Callback => "/callback",
            Route::Token => "/token",
            Route::Verify => "/verify",
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
        Route::Callback => callback::handle(app, &request).await,
        Route::Token => token::handle(app, &request).await,
        Route::Verify => verify::handle(app, &request).await,
    }
}
