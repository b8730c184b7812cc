//! The Lambda entry points shared by every function binary.

use std::{convert::Infallible, future::Future, sync::Arc};

use base64::{Engine, engine::general_purpose::STANDARD};
use lambda_http::{
    Adapter, Body, Error, LambdaEvent, Request, Response, Service, lambda_runtime, request::LambdaRequest, service_fn,
};
use serde_json::Value;

use crate::{
    base::{
        aws::secrets,
        clock::SystemClock,
        config::{Config, Uses},
        logging,
        store::AnyStore,
        tls,
    },
    http::routes::{self, Route},
    oauth::{app::App, keepalive},
    serve::{InitError, shared_store},
};

/// Serves every invocation of an HTTP function with `route`, its row of the route table. The
/// row holds only its own handler, so only that route's code is linked into the function: a
/// smaller binary that maps fewer pages at a cold start.
pub fn run(route: Route<AnyStore>) -> Result<(), Error> {
    with_app(route.uses(), |app| async move {
        let mut handler = Adapter::from(service_fn(move |request: Request| async move {
            Ok::<Response<Body>, Infallible>(routes::handle(app, route, request).await)
        }));
        lambda_runtime::run(service_fn(move |event| handler.call(sanitize(event)))).await
    })
}

/// Repairs what lambda_http cannot turn into a request without panicking: it builds a URI from
/// the stage, raw path and raw query, the Host and X-Forwarded-Proto headers or the request
/// context's domain name, and decodes base64 bodies, with `unwrap` and `expect`. API Gateway can
/// pass bytes through from any client, and a panic must not take an instance down. The broker's
/// functions read the path and the domain name only to derive a redirect URI (each serves one
/// route); the query is only re-encoded, so the strict query parser still sees, and refuses, whatever was wrong with it.
/// Public for the tests and fuzz targets.
pub fn sanitize(mut event: LambdaEvent<LambdaRequest>) -> LambdaEvent<LambdaRequest> {
    if let LambdaRequest::ApiGatewayV2(request) = &mut event.payload {
        if let Some(query) = request.raw_query_string.as_mut() {
            *query = uri_safe(query, b"/?");
        }
        let path = request.raw_path.as_deref().unwrap_or("/");
        let path = uri_safe(path, b"/");
        request.raw_path = Some(if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        });
        let plain =
            |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-$".contains(&b));
        if request
            .request_context
            .stage
            .as_deref()
            .is_some_and(|stage| !plain(stage))
        {
            request.request_context.stage = Some("$default".to_owned());
        }
        // API Gateway's own domain name is what a redirect URI is derived from; anything else
        // there is dropped, and without a host lambda_http builds a relative URI.
        if request.request_context.domain_name.as_deref().is_some_and(|domain| {
            domain.is_empty()
                || !domain.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
                // What lambda_http parses with an unwrap: "999.1.1.1" is only digits and dots,
                // and still no host.
                || reqwest::Url::parse(&format!("https://{domain}/")).is_err()
        }) {
            request.request_context.domain_name = None;
        }
        request.headers.remove("host");
        request.headers.remove("x-forwarded-proto");
        if request.is_base64_encoded
            && request
                .body
                .as_deref()
                .is_some_and(|body| STANDARD.decode(body).is_err())
        {
            request.body = None;
            request.is_base64_encoded = false;
        }
    }
    event
}

/// `text` with every byte a URI path or query cannot hold percent-encoded, including a `%` that
/// does not start a valid escape; `extra` are the delimiters the part may keep.
fn uri_safe(text: &str, extra: &[u8]) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (at, &byte) in bytes.iter().enumerate() {
        let escape_start = byte == b'%'
            && bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(at + 2).is_some_and(u8::is_ascii_hexdigit);
        let keep = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) || extra.contains(&byte);
        if keep || escape_start {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The scheduled keep-alive function: each invocation (an EventBridge event, whatever its
/// content) runs one pass and returns the per-connection report. A pass that cannot reach the
/// store fails the invocation, so EventBridge's retry policy applies.
pub fn run_keepalive() -> Result<(), Error> {
    with_app(routes::KEEPALIVE_USES, |app| async move {
        lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
            let report = keepalive::run(app).await.map_err(|error| {
                tracing::error!(%error, "keep-alive could not run");
                Error::from(error.to_string())
            })?;
            Ok::<_, Error>(report)
        }))
        .await
    })
}

/// Builds the shared state once per cold start, then hands it to `serve`. A configuration error
/// fails the function's init, so a misconfigured function never answers a request.
fn with_app<F, Fut>(uses: Uses, serve: F) -> Result<(), Error>
where
    F: FnOnce(&'static App<AnyStore>) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    logging::init();
    // A Lambda instance handles one request at a time: a single-threaded runtime does that with
    // about half the CPU per call of the multi-threaded one.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = app_from_env(uses)
            .await
            .inspect_err(|error| tracing::error!(%error, "initialization failed"))?;
        app.store.connect_early();
        // The state lives as long as the process, which serves until Lambda shuts it down.
        let app: &'static App<AnyStore> = Box::leak(Box::new(app));
        serve(app).await
    })
}

/// Where configuration variables come from.
type Lookup = dyn Fn(&str) -> Option<String>;

/// A function's start-up: the configuration its parts read (`uses`) from the environment (completed from the Secrets
/// Manager secret named by `SECRETS_ARN`, if any), Redis or DynamoDB as the store.
async fn app_from_env(uses: Uses) -> Result<App<AnyStore>, InitError> {
    let env = |name: &str| std::env::var(name).ok();
    // One boxed lookup instead of two instances of the generic loader: smaller binary.
    let lookup: Box<Lookup> = match env(secrets::ARN_VAR).filter(|arn| !arn.trim().is_empty()) {
        None => Box::new(env),
        Some(arn) => {
            let tls = tls::client_config().map_err(|e| InitError::Tls(e.to_string()))?;
            let http = secrets::client(tls).map_err(|e| InitError::Http(e.to_string()))?;
            let fetched = secrets::fetch(&arn, &http, &env).await?;
            Box::new(secrets::env_then(fetched, env))
        }
    };
    let config = Config::for_function(uses, lookup)?;
    let store = shared_store(&config)?;
    Ok(App::new(config, store, Arc::new(SystemClock)))
}
