//! The Lambda entry point shared by every function binary.

use std::convert::Infallible;

use lambda_http::{Request, service_fn};

use crate::{app::App, logging, routes};

/// Builds the shared state once, then serves `route` for every invocation. A configuration error
/// fails the function's init, so a misconfigured function never answers a request.
pub fn run(route: routes::Route) -> Result<(), lambda_http::Error> {
    logging::init();
    // A Lambda instance handles one request at a time: a single-threaded runtime does that with
    // about half the CPU per call of the multi-threaded one.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = App::from_env().inspect_err(|error| tracing::error!(%error, "initialization failed"))?;
        let app = &app;
        lambda_http::run(service_fn(move |request: Request| async move {
            Ok::<_, Infallible>(routes::handle(app, route, request).await)
        }))
        .await
    })
}
