//! The route table: every route the broker serves, with the methods it accepts, who may call it
//! and its handler, which is named after the route. The opening every request goes through runs
//! from the table ([`handle`]), for a Lambda function (one route each) and for local mode (all of
//! them) alike: the method check, the query (or form) parse, the API key check. A handler starts
//! where that ends, with a [`Call`].

pub mod callback;
pub mod import;
pub mod login;
pub mod revoke;
pub mod token;
pub mod verify;

use std::{fmt, future::Future, pin::Pin};

use lambda_http::{Body, Request, Response, http::StatusCode};
use tracing::Instrument;

use crate::{
    base::{
        api_keys::{Action, Key},
        config::Uses,
        store::Store,
    },
    http::{
        audit,
        error::BrokerError,
        request::{self, Query},
    },
    oauth::app::App,
};

/// Who may call a route, and where their key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the provider's redirect, which proves itself with the state.
    Open,
    /// An API key in a header; nothing of the route runs without a valid one.
    Key,
    /// A person's browser without a key (shown the login form), the key in the form it posts, or
    /// the key in a header (for operators who want JSON).
    KeyOrForm,
}

/// How a route's refusals are written, the opening's (a wrong method, an unreadable query) and
/// its handler's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errors {
    /// JSON, for API clients.
    Json,
    /// An HTML page, unless the client prefers JSON: a person's browser arrives here.
    Page,
    /// An HTML page: the login form and what it posts.
    Html,
}

/// What a handler gets once the opening is done.
pub struct Call<'r> {
    pub request: &'r Request,
    /// The query string; for a posted form, its fields.
    pub query: Query,
    /// Whether a valid API key came with the request: always on [`Access::Key`] routes.
    pub keyed: bool,
    /// Which key, already checked against the route and the connection the request names.
    pub key: Option<&'r Key>,
}

type Answer<'a> = Pin<Box<dyn Future<Output = Result<Response<Body>, BrokerError>> + Send + 'a>>;
type Handler<S> = for<'a> fn(&'a App<S>, Call<'a>) -> Answer<'a>;

/// One row of the table.
pub struct Route<S> {
    path: &'static str,
    /// As the `Allow` header lists them. HEAD is never offered: every route has side effects or
    /// secrets.
    methods: &'static str,
    access: Access,
    /// What a key must be allowed to do here; `None` on the open route.
    action: Option<Action>,
    errors: Errors,
    /// What the route's function reads of the configuration ([`Route::uses`]).
    reads: Uses,
    handler: Handler<S>,
}

/// The table. A row's handler is a closure so that the row can be a constant: a Lambda function
/// names its one row and links only that route's code.
/// `reads` is what the route's function reads of the configuration beside the store (and the
/// keys, on a route with a key check): only what its handler does. Every route but `/verify`
/// opens or seals records and so reads the encryption keys; `/verify` reads what a sealed record
/// keeps in clear.
#[rustfmt::skip]
impl<S: Store> Route<S> {
    pub const LOGIN: Self =    Self::row("/login",    "GET, POST", Access::KeyOrForm, Some(Action::Login),  Errors::Json, Uses::LOGIN.and(Uses::SEALING),                                                 |a, c| Box::pin(login::login(a, c)));
    pub const CALLBACK: Self = Self::row("/callback", "GET",       Access::Open,      None,                 Errors::Page, Uses::CALLBACK.and(Uses::TOKEN_ENDPOINT).and(Uses::SEALING).and(Uses::EVENTS),  |a, c| Box::pin(callback::callback(a, c)));
    pub const TOKEN: Self =    Self::row("/token",    "GET",       Access::Key,       Some(Action::Token),  Errors::Json, Uses::TOKEN_ENDPOINT.and(Uses::ON_DEMAND).and(Uses::SEALING).and(Uses::EVENTS), |a, c| Box::pin(token::token(a, c)));
    pub const VERIFY: Self =   Self::row("/verify",   "GET",       Access::Key,       Some(Action::Verify), Errors::Json, Uses::STORE,                                                                    |a, c| Box::pin(verify::verify(a, c)));
    pub const REVOKE: Self =   Self::row("/revoke",   "POST",      Access::Key,       Some(Action::Revoke), Errors::Json, Uses::REVOCATION.and(Uses::SEALING).and(Uses::EVENTS),                          |a, c| Box::pin(revoke::revoke(a, c)));
    pub const IMPORT: Self =   Self::row("/import",   "POST",      Access::Key,       Some(Action::Import), Errors::Json, Uses::TOKEN_ENDPOINT.and(Uses::SEALING).and(Uses::EVENTS),                      |a, c| Box::pin(import::import(a, c)));
}

/// What the scheduled keep-alive function reads of the configuration.
pub const KEEPALIVE_USES: Uses = Uses::TOKEN_ENDPOINT.and(Uses::KEEPALIVE).and(Uses::SEALING);

impl<S: Store> Route<S> {
    const fn row(
        path: &'static str,
        methods: &'static str,
        access: Access,
        action: Option<Action>,
        errors: Errors,
        reads: Uses,
        handler: Handler<S>,
    ) -> Self {
        Self {
            path,
            methods,
            access,
            action,
            errors,
            reads,
            handler,
        }
    }

    /// What this route's function reads of the configuration: its own part, and the keys where
    /// it checks them.
    pub const fn uses(&self) -> Uses {
        match self.access {
            Access::Open => self.reads,
            Access::Key | Access::KeyOrForm => self.reads.and(Uses::KEYS),
        }
    }

    /// Every route, in the order the banner and the not-found answer list them.
    pub const ALL: [Self; 6] = [
        Self::LOGIN,
        Self::CALLBACK,
        Self::TOKEN,
        Self::VERIFY,
        Self::REVOKE,
        Self::IMPORT,
    ];

    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|route| route.path == path)
    }

    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The methods it accepts, as the `Allow` header lists them.
    pub fn methods(&self) -> &'static str {
        self.methods
    }
}

impl<S> Clone for Route<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Route<S> {}

/// A route is its path: no two rows share one.
impl<S> PartialEq for Route<S> {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl<S> fmt::Debug for Route<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Route({})", self.path)
    }
}

/// Answers every request: failures become error responses here or in the handler, so nothing
/// escapes as an opaque Lambda error. Every answer gets its audit line, refusals included.
pub async fn handle<S: Store>(app: &App<S>, route: Route<S>, request: Request) -> Response<Body> {
    let key;
    let mut connection = None;
    let answer = match open(app, &route, &request) {
        Ok(call) => {
            key = call.key.map(Key::name);
            if route.action.is_some() {
                connection = request::connection(&call.query).ok();
            }
            // Every line the handler logs names the key it runs for (never the key itself).
            let span = call
                .key
                .map(|key| tracing::info_span!("caller", key = key.name(), request_id = audit::request_id(&request)));
            let handled = (route.handler)(app, call);
            match span {
                Some(span) => handled.instrument(span).await,
                None => handled.await,
            }
            .map_err(|error| (error, route.errors))
        }
        Err(refused) => {
            key = refused.key.map(Key::name);
            Err((refused.error, refused.errors))
        }
    };
    let (response, outcome) = match answer {
        Ok(response) => {
            // The login form shown again for a wrong key.
            if response.status() == StatusCode::UNAUTHORIZED {
                app.metrics.refused_key("unknown_key");
            }
            let outcome = audit::outcome_of(&response);
            (response, outcome)
        }
        Err((error, errors)) => {
            if let Some(reason) = audit::refusal(&error) {
                app.metrics.refused_key(reason);
            }
            if connection.is_none() && route.action.is_some() {
                connection = Query::parse(&request).ok().and_then(|q| request::connection(&q).ok());
            }
            let outcome = error.reply().error.to_string();
            let response = match errors {
                Errors::Page if !request::prefers_json(&request) => error.into_html(),
                Errors::Html => error.into_html(),
                _ => error.into_json(),
            };
            (response, outcome)
        }
    };
    let named = response.extensions().get::<audit::Connection>().map(|c| c.0.as_str());
    audit::record(
        &request,
        &audit::Entry {
            action: route.action.map_or("callback", Action::as_str),
            key,
            connection: connection.as_deref().or(named),
            outcome: &outcome,
            status: response.status().as_u16(),
        },
    );
    response
}

/// The opening: what every route checks before its handler runs, as its row says. A refusal
/// comes with how to write it.
fn open<'r, S: Store>(app: &'r App<S>, route: &Route<S>, request: &'r Request) -> Result<Call<'r>, Refusal<'r>> {
    let plain = |errors| {
        move |error| Refusal {
            error,
            errors,
            key: None,
        }
    };
    request::require_method(request, route.methods).map_err(plain(route.errors))?;
    let call = |query, key: Option<&'r Key>| Call {
        request,
        query,
        keyed: key.is_some(),
        key,
    };
    match route.access {
        Access::Open => Ok(call(Query::parse(request).map_err(plain(route.errors))?, None)),
        Access::Key => keyed(app, route, request).map(|(query, key)| call(query, Some(key))),
        // The form's answer and the form are pages; the header-keyed variant is JSON.
        Access::KeyOrForm if request.method() == "POST" => {
            let form = Query::parse_form(request).map_err(plain(Errors::Html))?;
            let key = form
                .get("api_key")
                .and_then(|key| app.config.api_keys.identify(key.trim()));
            if let (Some(key), Some(action)) = (key, route.action) {
                request::authorize(key, action, &form).map_err(|error| Refusal {
                    error,
                    errors: Errors::Html,
                    key: Some(key),
                })?;
            }
            Ok(call(form, key))
        }
        Access::KeyOrForm if request::has_key(request) || request::prefers_json(request) => {
            keyed(app, route, request).map(|(query, key)| call(query, Some(key)))
        }
        Access::KeyOrForm => Ok(call(Query::parse(request).map_err(plain(Errors::Html))?, None)),
    }
}

/// Why the opening refused a request, how to write that, and the key if it was a valid one
/// outside its scope (the audit line names it).
struct Refusal<'r> {
    error: BrokerError,
    errors: Errors,
    key: Option<&'r Key>,
}

/// The query of a request that must carry a valid key in a header (and none in the URL), and
/// the key, once it is known to cover the route and the connection. Refusals are JSON.
fn keyed<'r, S>(app: &'r App<S>, route: &Route<S>, request: &Request) -> Result<(Query, &'r Key), Refusal<'r>> {
    let refused = |error, key| Refusal {
        error,
        errors: Errors::Json,
        key,
    };
    let query = Query::parse(request).map_err(|e| refused(e, None))?;
    let key = request::authenticate(request, &query, &app.config.api_keys).map_err(|e| refused(e, None))?;
    if let Some(action) = route.action {
        request::authorize(key, action, &query).map_err(|e| refused(e, Some(key)))?;
    }
    Ok((query, key))
}
