//! Local mode's HTTP/1 server: hyper on a TCP listener, each request turned into the same
//! `lambda_http` request a Lambda function gets and answered by the same route table.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Bytes, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use lambda_http::{Body, Request, Response};
use tokio::net::TcpListener;

use crate::{
    base::store::Store,
    http::{
        audit,
        error::BrokerError,
        routes::{self, Route},
    },
    oauth::app::App,
};

/// No route takes a body today; anything beyond this is refused rather than buffered.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long in-flight requests get to finish once a shutdown signal arrives.
const DRAIN: Duration = Duration::from_secs(15);

/// Serves until `shutdown` completes, then lets in-flight requests finish (up to [`DRAIN`]).
pub async fn serve<S: Store + 'static>(
    app: Arc<App<S>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let app = app.clone();
                let service = service_fn(move |request| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(handle(&app, request, peer).await) }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("some requests did not finish in time");
    }
    Ok(())
}

async fn handle<S: Store>(
    app: &App<S>,
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> hyper::Response<Full<Bytes>> {
    let started = Instant::now();
    let method = request.method().clone();
    // The path only: the query of /callback carries the authorization code.
    let path = request.uri().path().to_owned();
    let response = match Route::from_path(&path) {
        Some(route) => match into_lambda_request(request).await {
            Ok(mut request) => {
                // The audit trail's caller address, which API Gateway would report on Lambda.
                request.extensions_mut().insert(audit::Peer(peer));
                routes::handle(app, route, request).await
            }
            Err(error) => error.into_json(),
        },
        None => BrokerError::NotFound {
            serves: Route::<S>::ALL.map(|route| route.path()).to_vec(),
        }
        .into_json(),
    };
    tracing::info!(%method, path, status = response.status().as_u16(), latency_ms = started.elapsed().as_millis() as u64, "request");
    from_lambda_response(response)
}

async fn into_lambda_request(request: hyper::Request<Incoming>) -> Result<Request, BrokerError> {
    let (parts, body) = request.into_parts();
    let bytes = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| BrokerError::BadRequest(format!("the request body is larger than {MAX_BODY_BYTES} bytes")))?
        .to_bytes();
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Binary(bytes.to_vec())
    };
    Ok(Request::from_parts(parts, body))
}

fn from_lambda_response(response: Response<Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}
