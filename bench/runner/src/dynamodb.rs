//! A fake DynamoDB on loopback for the functions configured with `DYNAMODB_TABLE`: `GetItem`
//! answers one fresh token record, `Query` lists it (with its data if asked for), anything else
//! succeeds with `{}`. It answers in microseconds, so a cold start's figure is the broker's own work (its HTTP client, the
//! signing, the JSON) and not an emulator's or a network's. It counts the calls by action.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming};
use tokio::{net::TcpListener, task::JoinHandle};

/// `{"format":1,"status":"active",...}` with both tokens valid until 2100, base64 as DynamoDB
/// sends a binary attribute.
const RECORD: &str = "eyJmb3JtYXQiOjEsInN0YXR1cyI6ImFjdGl2ZSIsImFjY2Vzc190b2tlbiI6ImJlbmNoLWFjY2Vzcy1keW5hbW9kYiIsInJlZnJlc2hfdG9rZW4iOiJiZW5jaC1yZWZyZXNoLWR5bmFtb2RiIiwidG9rZW5fdHlwZSI6IkJlYXJlciIsImFjY2Vzc19leHBpcmVzX2F0Ijo0MTAyNDQ0ODAwLCJyZWZyZXNoX2V4cGlyZXNfYXQiOjQxMDI0NDQ4MDAsImlzc3VlZF9hdCI6MTc2NDcyMDAwMH0=";
/// The record's key under the bench's `KEY_PREFIX`.
const KEY: &str = "bench:conn:default:tokens";

pub struct FakeDynamo {
    pub url: String,
    /// Calls answered, by action (`GetItem`, `Query`, ...).
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
    server: JoinHandle<()>,
}

impl FakeDynamo {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let calls = Arc::new(Mutex::new(BTreeMap::new()));
        let server = crate::serve_http(listener, calls.clone(), handle);
        Ok(Self { url, calls, server })
    }

    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeDynamo {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let action = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|target| target.strip_prefix("DynamoDB_20120810."))
        .map(str::to_owned)
        // Anything that is not an action shows by its method and path.
        .unwrap_or_else(|| format!("{} {}", request.method(), request.uri().path()));
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // What a real table returns: the data only when the projection names it.
    let with_data = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|call| Some(call.get("ProjectionExpression")?.as_str()?.contains("#d")))
        .unwrap_or(true);
    *calls.lock().unwrap().entry(action.clone()).or_default() += 1;
    let key = || serde_json::json!({"pk": {"S": "bench"}, "sk": {"S": KEY}});
    let item = || {
        let mut item = key();
        item["generation"] = serde_json::json!({"N": "1"});
        if with_data {
            item["data"] = serde_json::json!({"B": RECORD});
        }
        item
    };
    let answer = match action.as_str() {
        "GetItem" => serde_json::json!({ "Item": item() }),
        "Query" => serde_json::json!({"Items": [item()], "Count": 1}),
        _ => serde_json::json!({}),
    };
    Ok(Response::builder()
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(Bytes::from(answer.to_string())))
        .expect("a static response builds"))
}
