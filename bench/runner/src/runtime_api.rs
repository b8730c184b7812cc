//! A stand-in for the Lambda Runtime API (the `2018-06-01` interface a function's runtime client
//! polls), on a loopback port of its own for each function process.
//!
//! The bench queues invocations; the function takes them with `GET /invocation/next` and posts
//! its answer, which comes back to the bench as an [`Outcome`] stamped with the time it arrived.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use tokio::{
    net::TcpListener,
    sync::{Mutex, mpsc},
    task::JoinHandle,
};

const PREFIX: &str = "/2018-06-01/runtime";

pub struct Invocation {
    pub id: String,
    pub event: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// `POST /invocation/<id>/response`
    Response,
    /// `POST /invocation/<id>/error`
    Error,
    /// `POST /init/error`
    InitError,
}

pub struct Outcome {
    pub kind: OutcomeKind,
    pub body: Bytes,
    /// When the whole answer had arrived.
    pub at: Instant,
}

struct Shared {
    next: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    polls: mpsc::UnboundedSender<Instant>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    invocations: mpsc::UnboundedSender<Invocation>,
    pub outcomes: mpsc::UnboundedReceiver<Outcome>,
    /// The time of every `GET /invocation/next`: the first one ends the function's init.
    pub polls: mpsc::UnboundedReceiver<Instant>,
    server: JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (invocations, next) = mpsc::unbounded_channel();
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let (polls_tx, polls) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            next: Mutex::new(next),
            outcomes: outcomes_tx,
            polls: polls_tx,
        });
        let server = crate::serve_http(listener, shared, handle);
        Ok(Self {
            addr,
            invocations,
            outcomes,
            polls,
            server,
        })
    }

    pub fn queue(&self, id: String, event: Bytes) {
        let _ = self.invocations.send(Invocation { id, event });
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let Some(route) = path.strip_prefix(PREFIX) else {
        return Ok(plain(StatusCode::NOT_FOUND, "not a Runtime API path"));
    };
    if request.method() == Method::GET && route == "/invocation/next" {
        let _ = shared.polls.send(Instant::now());
        // One function process polls once at a time, so waiting while holding the lock is fine.
        let invocation = shared.next.lock().await.recv().await;
        let Some(invocation) = invocation else {
            return Ok(plain(StatusCode::GONE, "the bench is shutting down"));
        };
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            + 900_000;
        let response = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", &invocation.id)
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:eu-west-1:123456789012:function:token-broker-bench",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
            )
            .body(Full::new(invocation.event))
            .expect("static headers are valid");
        return Ok(response);
    }
    if request.method() != Method::POST {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "unexpected method"));
    }
    let kind = if route == "/init/error" {
        OutcomeKind::InitError
    } else if route.starts_with("/invocation/") && route.ends_with("/response") {
        OutcomeKind::Response
    } else if route.starts_with("/invocation/") && route.ends_with("/error") {
        OutcomeKind::Error
    } else {
        return Ok(plain(StatusCode::NOT_FOUND, "unknown Runtime API path"));
    };
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "body could not be read")),
    };
    let _ = shared.outcomes.send(Outcome {
        kind,
        body,
        at: Instant::now(),
    });
    Ok(plain(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
