//! A fake OAuth provider on loopback: a token endpoint that issues a new pair on every request
//! (after a configurable delay, with a configurable access token lifetime) and a revocation
//! endpoint that accepts everything.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use tokio::{net::TcpListener, task::JoinHandle};

#[derive(Default)]
pub struct ProviderState {
    /// `expires_in` of issued access tokens, in seconds.
    pub expires_in: AtomicI64,
    /// How long the token endpoint waits before answering.
    pub delay_ms: AtomicU64,
    /// Token endpoint requests answered so far.
    pub token_requests: AtomicU64,
    /// How long the provider itself held the last token request (its delay plus its own work),
    /// so that the bench can subtract exactly the provider's share.
    pub last_hold_ns: AtomicU64,
}

pub struct FakeProvider {
    pub addr: SocketAddr,
    pub state: Arc<ProviderState>,
    server: JoinHandle<()>,
}

impl FakeProvider {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProviderState::default());
        state.expires_in.store(1799, Ordering::SeqCst);
        let shared = state.clone();
        let server = crate::serve_http(listener, shared, handle);
        Ok(Self { addr, state, server })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set(&self, expires_in: i64, delay: Duration) {
        self.state.expires_in.store(expires_in, Ordering::SeqCst);
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn token_requests(&self) -> u64 {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    pub fn last_hold(&self) -> Duration {
        Duration::from_nanos(self.state.last_hold_ns.load(Ordering::SeqCst))
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(state: Arc<ProviderState>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = Instant::now();
    let path = request.uri().path().to_owned();
    let post = request.method() == Method::POST;
    let _ = request.into_body().collect().await;
    let (status, body) = match (post, path.as_str()) {
        (true, "/token") => {
            let n = state.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let body = serde_json::json!({
                "access_token": format!("bench-access-{n}"),
                "refresh_token": format!("bench-refresh-{n}"),
                "expires_in": state.expires_in.load(Ordering::SeqCst),
                "refresh_token_expires_in": 7_775_999,
                "token_type": "Bearer",
                "scope": "read",
            });
            (StatusCode::OK, Bytes::from(body.to_string()))
        }
        (true, "/revoke") => (StatusCode::OK, Bytes::new()),
        _ => (StatusCode::NOT_FOUND, Bytes::from_static(br#"{"error":"not_found"}"#)),
    };
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(body))
        .expect("static headers are valid");
    state
        .last_hold_ns
        .store(arrived.elapsed().as_nanos() as u64, Ordering::SeqCst);
    Ok(response)
}
