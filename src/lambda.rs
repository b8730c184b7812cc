//! The Lambda entry points shared by every function binary.

use std::{convert::Infallible, future::Future};

use base64::{Engine, engine::general_purpose::STANDARD};
use lambda_http::{Adapter, Error, LambdaEvent, Request, Service, lambda_runtime, request::LambdaRequest, service_fn};
use serde_json::{Value, json};

use crate::{app::App, keepalive, logging, routes, store::RedisStore};

/// Serves `route` for every invocation of an HTTP function.
pub fn run(route: routes::Route) -> Result<(), Error> {
    with_app(|app| async move {
        let mut handler = Adapter::from(service_fn(move |request: Request| async move {
            Ok::<_, Infallible>(routes::handle(app, route, request).await)
        }));
        lambda_runtime::run(service_fn(move |event| handler.call(sanitize(event)))).await
    })
}

/// Repairs what lambda_http cannot turn into a request without panicking (it builds a URI from
/// the raw query, the Host and X-Forwarded-Proto headers, and decodes base64 bodies with
/// `expect`). API Gateway can pass such bytes through from any client, and a panic would end the
/// whole instance, since release builds abort on panic. Public for the tests and fuzz targets.
pub fn sanitize(mut event: LambdaEvent<LambdaRequest>) -> LambdaEvent<LambdaRequest> {
    if let LambdaRequest::ApiGatewayV2(request) = &mut event.payload {
        if let Some(query) = request.raw_query_string.as_mut()
            && (format!("/?{query}").parse::<lambda_http::http::Uri>().is_err() || query.contains('#'))
        {
            // Percent-encode what a URI cannot hold; the broker's strict query parser then
            // decides whether the result means anything.
            let mut repaired = String::with_capacity(query.len());
            for c in query.chars() {
                if c.is_ascii_control()
                    || matches!(c, ' ' | '"' | '<' | '>' | '#' | '\\' | '^' | '`' | '{' | '|' | '}')
                    || !c.is_ascii()
                {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        repaired.push_str(&format!("%{b:02X}"));
                    }
                } else {
                    repaired.push(c);
                }
            }
            *query = repaired;
        }
        // Only lambda_http's URI uses these; without them it falls back to the request context's
        // domain name and https, which API Gateway always sets.
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

/// The scheduled keep-alive function: each invocation (an EventBridge event, whatever its
/// content) runs one pass and returns the per-connection report. A pass that cannot reach the
/// store fails the invocation, so EventBridge's retry policy applies.
pub fn run_keepalive() -> Result<(), Error> {
    with_app(|app| async move {
        lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
            let reports = keepalive::run(app).await.map_err(|error| {
                tracing::error!(%error, "keep-alive could not run");
                Error::from(error.to_string())
            })?;
            Ok::<_, Error>(json!({ "connections": reports }))
        }))
        .await
    })
}

/// Builds the shared state once per cold start, then hands it to `serve`. A configuration error
/// fails the function's init, so a misconfigured function never answers a request.
fn with_app<F, Fut>(serve: F) -> Result<(), Error>
where
    F: FnOnce(&'static App<RedisStore>) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    logging::init();
    // A Lambda instance handles one request at a time: a single-threaded runtime does that with
    // about half the CPU per call of the multi-threaded one.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = App::from_env()
            .await
            .inspect_err(|error| tracing::error!(%error, "initialization failed"))?;
        // The state lives as long as the process, which serves until Lambda shuts it down.
        let app: &'static App<RedisStore> = Box::leak(Box::new(app));
        serve(app).await
    })
}
