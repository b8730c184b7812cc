//! The Lambda entry points shared by every function binary.

use std::{convert::Infallible, future::Future};

use lambda_http::{Error, LambdaEvent, Request, lambda_runtime, service_fn};
use serde_json::{Value, json};

use crate::{app::App, keepalive, logging, routes, store::RedisStore};

/// Serves `route` for every invocation of an HTTP function.
pub fn run(route: routes::Route) -> Result<(), Error> {
    with_app(|app| async move {
        lambda_http::run(service_fn(move |request: Request| async move {
            Ok::<_, Infallible>(routes::handle(app, route, request).await)
        }))
        .await
    })
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
        let app = App::from_env().inspect_err(|error| tracing::error!(%error, "initialization failed"))?;
        // The state lives as long as the process, which serves until Lambda shuts it down.
        let app: &'static App<RedisStore> = Box::leak(Box::new(app));
        serve(app).await
    })
}
