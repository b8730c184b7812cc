//! The smallest useful `lambda_http` function: answers every request with "Hello, world!".
//!
//! `BASELINE_RUNTIME=multi_thread` runs it on tokio's multi-threaded runtime (what
//! `#[tokio::main]` gives); the default is the `current_thread` runtime the broker uses.

use lambda_http::{Body, Error, Request, Response, service_fn};

fn main() -> Result<(), Error> {
    let mut builder = match std::env::var("BASELINE_RUNTIME").as_deref() {
        Ok("multi_thread") => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    builder
        .enable_all()
        .build()?
        .block_on(lambda_http::run(service_fn(hello)))
}

async fn hello(_request: Request) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(Body::from("Hello, world!"))?)
}
