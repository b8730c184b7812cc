//! What only the DynamoDB store meets: an endpoint that goes away and comes back, throttling,
//! and a table that is not there. Every one of them is a 503 that loses nothing, never a 404
//! from `/verify`. (The store contract and the refresh guarantees run on DynamoDB in
//! `store_conformance.rs` and `refresh_guarantees.rs`, with everything else.)

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use token_broker::{
    base::store::{DynamoStore, Store, StoreError},
    http::routes::Route,
};
use tokio::net::{TcpListener, TcpStream};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate, matchers};

/// A TCP relay to the emulator that can be cut: while it is down, every connection it holds or
/// is offered is dropped, as when DynamoDB's endpoint is unreachable.
struct Switch {
    url: String,
    down: Arc<AtomicBool>,
}

impl Switch {
    async fn start() -> Self {
        let upstream = dynamodb_url().trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let down = Arc::new(AtomicBool::new(false));
        let cut = down.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = listener.accept().await.unwrap();
                let cut = cut.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if cut.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let watch = async {
                        while !cut.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = watch => {}
                    }
                });
            }
        });
        Self { url, down }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_503_everywhere_and_nothing_is_lost() {
    let switch = Switch::start().await;
    let h = Harness::dynamodb(&[("AWS_ENDPOINT_URL_DYNAMODB", &switch.url)]).await;
    h.seed(&tokens("access-0", "refresh-0", START + 1800, START + 86_400))
        .await;
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);

    switch.set_down(true);
    for (route, event) in [
        (Route::TOKEN, "token"),
        (Route::VERIFY, "verify"),
        (Route::REVOKE, "revoke"),
    ] {
        let reply = h.call(route, event).await;
        assert_eq!(reply.status, 503, "{event}: {}", reply.body);
        assert_eq!(reply.error(), "store_unavailable", "{event}");
        assert!(reply.header("retry-after").is_some(), "{event}");
    }

    switch.set_down(false);
    let reply = h.call(Route::TOKEN, "token").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["access_token"], "access-0");
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 200);
}

/// Answers like a throttled DynamoDB `times` times, then like one that found nothing.
struct Throttling {
    times: usize,
    calls: Arc<AtomicUsize>,
}

impl Respond for Throttling {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.times {
            ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "message": "Rate of requests exceeds the allowed throughput.",
            }))
        } else {
            ResponseTemplate::new(200).set_body_json(serde_json::json!({}))
        }
    }
}

async fn throttled_store(times: usize, timeout: Duration) -> (DynamoStore, Arc<AtomicUsize>, MockServer) {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    Mock::given(matchers::method("POST"))
        .respond_with(Throttling {
            times,
            calls: calls.clone(),
        })
        .mount(&server)
        .await;
    let store = DynamoStore::new(&dynamodb_config(server.uri()), timeout).unwrap();
    (store, calls, server)
}

#[tokio::test]
async fn throttling_is_retried_and_a_short_spell_goes_unnoticed() {
    let (store, calls, _server) = throttled_store(2, Duration::from_secs(2)).await;
    assert_eq!(store.load("tb:conn:default:tokens").await.unwrap(), None);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn throttling_that_outlasts_the_store_timeout_is_unavailable() {
    let (store, calls, _server) = throttled_store(usize::MAX, Duration::from_secs(1)).await;
    let started = Instant::now();
    let error = store.load("tb:conn:default:tokens").await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "retried only {} times",
        calls.load(Ordering::SeqCst)
    );
    // DynamoDB's message is not passed on: it can quote the request.
    assert!(!error.to_string().contains("Rate of requests"), "{error}");
}

#[tokio::test]
async fn a_missing_table_is_503_naming_the_table_never_404() {
    let table = format!("missing-{}", unique_prefix());
    let h = Harness::dynamodb(&[("DYNAMODB_TABLE", &table)]).await;
    for (route, event) in [(Route::VERIFY, "verify"), (Route::TOKEN, "token")] {
        let reply = h.call(route, event).await;
        assert_eq!(reply.status, 503, "{event}: {}", reply.body);
        assert_eq!(reply.error(), "store_unavailable", "{event}");
    }
    let error = h.app.store.load("x:y").await.unwrap_err();
    assert!(error.to_string().contains(&table), "{error}");
}

/// One item written to the emulator as it is, whatever the broker would make of it.
async fn put_raw_item(item: serde_json::Value) {
    let body = serde_json::json!({"TableName": DYNAMODB_TABLE, "Item": item});
    let response = reqwest::Client::new()
        .post(dynamodb_url())
        .header("x-amz-target", "DynamoDB_20120810.PutItem")
        .header("content-type", "application/x-amz-json-1.0")
        // The emulator checks that a request is signed, not the signature.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTOKENBROKERTEST/20261203/eu-west-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn items_of_a_foreign_shape_are_500_and_left_as_they_are() {
    let shapes = [
        (
            "data as a string",
            serde_json::json!({"generation": {"N": "1"}, "data": {"S": "x"}}),
        ),
        ("no generation", serde_json::json!({"data": {"B": "eA=="}})),
        (
            "a lock where the record is",
            serde_json::json!({"owner": {"S": "someone"}}),
        ),
    ];
    for (shape, attributes) in shapes {
        let h = Harness::dynamodb(&[]).await;
        let key = h.tokens_key();
        let mut item = attributes.clone();
        item["pk"] = serde_json::json!({"S": key.split(':').next().unwrap()});
        item["sk"] = serde_json::json!({"S": key});
        put_raw_item(item).await;
        for (route, event) in [(Route::TOKEN, "token"), (Route::VERIFY, "verify")] {
            let reply = h.call(route, event).await;
            assert_eq!(reply.status, 500, "{shape}, {event}: {}", reply.body);
            assert_eq!(reply.error(), "store_error", "{shape}, {event}");
        }
        // Still there: a new login is what replaces it.
        assert!(h.app.store.load(&key).await.is_err(), "{shape}");
    }
}

/// Nothing secret reaches a log line or an error on the DynamoDB path: not the tokens, not the
/// API key or client secret, not the AWS credentials the calls are signed with, not what an
/// error answer of DynamoDB quotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamodb_path_logs_and_answers_no_secret() {
    let logs = LogBuffer::default();
    token_broker::base::logging::init_with_writer(logs.writer());
    let secrets = [
        "SECRET-access-0",
        "SECRET-refresh-0",
        "SECRET-access-1",
        "SECRET-refresh-1",
        API_KEY,
        CLIENT_SECRET,
        "test-aws-secret-access-key",
    ];
    let h = Harness::dynamodb(&[]).await;
    h.seed(&tokens(
        "SECRET-access-0",
        "SECRET-refresh-0",
        START - 1,
        START + 86_400,
    ))
    .await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("SECRET-access-1", "SECRET-refresh-1")),
    )
    .await;
    let refreshed = h.call(Route::TOKEN, "token").await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.json()["access_token"], "SECRET-access-1");
    let mut answers = vec![refreshed.body];
    answers.push(h.call(Route::VERIFY, "verify").await.body);

    // An answer of DynamoDB's that quotes a token, as a validation error can quote a value.
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "__type": "com.amazon.coral.validate#ValidationException",
            "message": "One or more parameter values were invalid: SECRET-access-0",
        })))
        .mount(&server)
        .await;
    let quoting = Harness::dynamodb(&[
        ("DYNAMODB_TABLE", DYNAMODB_TABLE),
        ("AWS_ENDPOINT_URL_DYNAMODB", &server.uri()),
    ])
    .await;
    let reply = quoting.call(Route::TOKEN, "token").await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    answers.push(reply.body);
    let missing = Harness::dynamodb(&[("DYNAMODB_TABLE", "missing-table-for-leaks")]).await;
    answers.push(missing.call(Route::VERIFY, "verify").await.body);
    answers.push(format!("{:?}", h.app.config));

    let lines = logs.lines();
    assert!(
        lines.iter().any(|line| line.contains("missing-table-for-leaks")),
        "the missing table is not named"
    );
    for secret in secrets {
        for line in &lines {
            assert!(!line.contains(secret), "a log line holds {secret}: {line}");
        }
        for answer in &answers {
            assert!(
                !answer.contains(secret) || (secret == "SECRET-access-1" && answer.contains("access_token")),
                "an answer holds {secret}: {answer}"
            );
        }
    }
}
