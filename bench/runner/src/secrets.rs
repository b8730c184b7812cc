//! A fake AWS Secrets Manager and a fake Parameters and Secrets Lambda Extension on one loopback
//! port, for the functions configured with `SECRETS_ARN`: `POST /` answers `GetSecretValue` (the
//! signature is not checked here; tests/aws_secrets.rs does that), and `GET
//! /secretsmanager/get?secretId=…` with the session token in `X-Aws-Parameters-Secrets-Token`
//! answers as the extension does, with the same JSON.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use tokio::{net::TcpListener, task::JoinHandle};

pub const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-broker-bench-AbCdEf";
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEBENCH+session/token==";

pub struct SecretsState {
    secret_string: String,
    /// `GetSecretValue` calls answered, and extension requests answered.
    pub direct: AtomicU64,
    pub extension: AtomicU64,
}

pub struct FakeSecrets {
    pub addr: SocketAddr,
    pub state: Arc<SecretsState>,
    server: JoinHandle<()>,
}

impl FakeSecrets {
    /// Serves a secret whose `SecretString` holds `values`.
    pub async fn start(values: &[(&str, &str)]) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let object: serde_json::Map<String, serde_json::Value> =
            values.iter().map(|(k, v)| ((*k).to_owned(), (*v).into())).collect();
        let state = Arc::new(SecretsState {
            secret_string: serde_json::Value::Object(object).to_string(),
            direct: AtomicU64::new(0),
            extension: AtomicU64::new(0),
        });
        let server = crate::serve_http(listener, state.clone(), handle);
        Ok(Self { addr, state, server })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeSecrets {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(state: Arc<SecretsState>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let token_ok = request
        .headers()
        .get("x-aws-parameters-secrets-token")
        .is_some_and(|v| v.as_bytes() == SESSION_TOKEN.as_bytes());
    let signed = request.headers().contains_key("authorization");
    let _ = request.into_body().collect().await;
    let answer = serde_json::json!({
        "ARN": ARN,
        "Name": "token-broker-bench",
        "VersionId": "EXAMPLE1-90ab-cdef-fedc-ba987BENCH01",
        "SecretString": state.secret_string,
        "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1.523477145713E9,
    })
    .to_string();
    let asked_for_arn = query.split('&').any(|pair| {
        pair.strip_prefix("secretId=")
            .is_some_and(|v| v.replace("%3A", ":") == ARN)
    });
    let (status, body) = match (method, path.as_str()) {
        (Method::POST, "/") if signed => {
            state.direct.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, answer)
        }
        (Method::GET, "/secretsmanager/get") if token_ok && asked_for_arn => {
            state.extension.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, answer)
        }
        (Method::GET, "/secretsmanager/get") => (StatusCode::UNAUTHORIZED, "not authorized".to_owned()),
        _ => (
            StatusCode::BAD_REQUEST,
            r#"{"__type":"InvalidRequestException"}"#.to_owned(),
        ),
    };
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid");
    Ok(response)
}
