//! Webhooks against a real HTTP receiver on 127.0.0.1: events are raised into the outbox by the
//! routes and delivered by keep-alive, signed (Standard Webhooks), with one id per event across
//! retries, retried with backoff until the receiver answers, and never with a token in them. A
//! receiver that hangs does not delay `/token`.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use common::*;
use serde_json::Value;
use token_broker::{
    base::{clock::Clock, record::ConnectionRecord},
    http::routes::Route,
    oauth::{keepalive, webhooks},
};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const SECRET_BYTES: [u8; 32] = [0x5a; 32];

fn secret() -> String {
    format!("whsec_{}", STANDARD.encode(SECRET_BYTES))
}

async fn with_receiver(receiver: &MockServer, extra: &[(&str, &str)]) -> Harness {
    let url = format!("{}/hooks", receiver.uri());
    let secret = secret();
    let mut vars = vec![("WEBHOOK_URLS", url.as_str()), ("WEBHOOK_SECRET", secret.as_str())];
    vars.extend_from_slice(extra);
    Harness::with(&vars).await
}

/// What the receiver got, oldest first: headers and body.
async fn received(receiver: &MockServer) -> Vec<(String, i64, String, Value)> {
    receiver
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request| {
            let header = |name: &str| {
                request
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let body = String::from_utf8(request.body.clone()).unwrap();
            let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
            // The receiver's side of the scheme, written from the specification.
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &SECRET_BYTES);
            let signed = format!("{}.{timestamp}.{body}", header("webhook-id"));
            let expected = format!("v1,{}", STANDARD.encode(ring::hmac::sign(&key, signed.as_bytes())));
            assert_eq!(header("webhook-signature"), expected, "the signature does not verify");
            assert_eq!(header("content-type"), "application/json");
            common::openapi::check_event(&body);
            (
                header("webhook-id"),
                timestamp,
                body.clone(),
                serde_json::from_str(&body).unwrap(),
            )
        })
        .collect()
}

/// The events of type `kind` among those received.
fn of_type<'a>(events: &'a [(String, i64, String, Value)], kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .map(|(.., event)| event)
        .filter(|event| event["type"] == kind)
        .collect()
}

/// The provider answers every token request with `answer` from now on.
async fn provider_now_answers(h: &Harness, answer: ResponseTemplate) {
    h.provider.reset().await;
    provider_answers(&h.provider, answer).await;
}

async fn receiver_answering(status: u16) -> MockServer {
    let receiver = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/hooks"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&receiver)
        .await;
    receiver
}

#[tokio::test]
async fn a_login_is_announced_signed_once_and_without_its_tokens() {
    let receiver = receiver_answering(200).await;
    let h = with_receiver(&receiver, &[]).await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&h.provider, Duration::ZERO).await;

    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 200);
    // The callback only queued it.
    assert!(received(&receiver).await.is_empty());

    let pass = keepalive::run(&h.app).await.unwrap();
    assert_eq!(pass.webhooks.delivered, 1, "{pass:?}");
    let events = received(&receiver).await;
    assert_eq!(events.len(), 1);
    let (id, timestamp, body, event) = &events[0];
    assert!(id.starts_with("evt_") && !id.contains('.'), "{id}");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["type"], "connection.created");
    assert_eq!(event["data"]["connection"], "default");
    assert_eq!(event["data"]["via"], "login");
    assert!(event["data"]["refresh_token_expires_at"].as_i64().unwrap() > START);
    assert_eq!(*timestamp, h.clock.now());
    for token in ["access-1", "refresh-1", CODE, CLIENT_SECRET, API_KEY] {
        assert!(!body.contains(token), "{token} in {body}");
    }

    // Delivered: the next pass sends nothing.
    let again = keepalive::run(&h.app).await.unwrap();
    assert_eq!(again.webhooks, webhooks::Deliveries::default());
    assert_eq!(received(&receiver).await.len(), 1);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_the_same_id_until_it_answers() {
    let receiver = MockServer::start().await;
    Mock::given(matchers::path("/hooks"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(matchers::path("/hooks"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&receiver)
        .await;
    let mut h = with_receiver(&receiver, &[]).await;
    let metrics = h.capture_metrics();
    h.seed(&tokens("access-0", "refresh-0", START + 600, START + 86_400 * 60))
        .await;
    revocation_answers(&h.provider).await;
    assert_eq!(h.call(Route::REVOKE, "revoke").await.status, 200);

    let first = keepalive::run(&h.app).await.unwrap();
    assert_eq!((first.webhooks.delivered, first.webhooks.retrying), (0, 1));
    // Not due again for a while: a pass right after sends nothing.
    let early = keepalive::run(&h.app).await.unwrap();
    assert_eq!(early.webhooks, webhooks::Deliveries::default());
    assert_eq!(received(&receiver).await.len(), 1);

    h.clock.advance(5);
    assert_eq!(keepalive::run(&h.app).await.unwrap().webhooks.retrying, 1);
    // The second pause is longer than the first.
    h.clock.advance(60);
    assert_eq!(keepalive::run(&h.app).await.unwrap().webhooks.delivered, 0);
    h.clock.advance(300);
    assert_eq!(keepalive::run(&h.app).await.unwrap().webhooks.delivered, 1);
    assert_eq!(
        keepalive::run(&h.app).await.unwrap().webhooks,
        webhooks::Deliveries::default()
    );

    let events = received(&receiver).await;
    assert_eq!(events.len(), 3, "two failures, then the success; nothing after");
    assert!(
        events.iter().all(|(id, ..)| *id == events[0].0),
        "one id for every attempt"
    );
    assert!(
        events[0].1 < events[1].1 && events[1].1 < events[2].1,
        "each attempt has its own time"
    );
    assert_eq!(events[2].3["type"], "connection.revoked");
    assert_eq!(events[2].3["data"]["revoked_at_provider"], true);
    let failures = metrics
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("WebhookDeliveryFailures"))
        .count();
    assert_eq!(failures, 2);
}

#[tokio::test]
async fn a_receiver_that_hangs_does_not_delay_token() {
    let hanging = MockServer::start().await;
    Mock::given(matchers::path("/hooks"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&hanging)
        .await;
    let with = with_receiver(&hanging, &[]).await;
    let without = Harness::new().await;
    // The provider refuses the refresh token: the one /token path that raises an event.
    for h in [&with, &without] {
        provider_answers(
            &h.provider,
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .await;
    }
    let mut took = Vec::new();
    for h in [&with, &without] {
        h.seed(&tokens("access-0", "refresh-0", START - 1, START + 86_400))
            .await;
        let started = Instant::now();
        let reply = h.call(Route::TOKEN, "token").await;
        took.push(started.elapsed());
        assert_eq!(
            (reply.status, reply.error().as_str()),
            (401, "reauthorization_required")
        );
    }
    // The receiver is never called from /token; a second's margin covers a busy machine.
    assert!(took[0] < took[1] + Duration::from_secs(1), "{took:?}");
    assert!(hanging.received_requests().await.unwrap().is_empty());
    assert!(matches!(
        with.stored().await,
        Some((_, ConnectionRecord::ReauthorizationRequired { .. }))
    ));
}

#[tokio::test]
async fn a_lost_grant_and_a_coming_lapse_are_announced_the_lapse_once() {
    let receiver = receiver_answering(204).await;
    let h = with_receiver(&receiver, &[("KEEPALIVE_WINDOW", "604800")]).await;
    // The provider is down: two days left, keep-alive tries and fails.
    provider_answers(&h.provider, ResponseTemplate::new(503)).await;
    h.seed_connection(
        "lab-1",
        &tokens("access-l", "refresh-l", START + 600, START + 2 * 86_400),
    )
    .await;
    for _ in 0..3 {
        let pass = keepalive::run(&h.app).await.unwrap();
        assert_eq!(pass.connections[0].outcome, "failed");
        h.clock.advance(3600);
    }
    let events = received(&receiver).await;
    let lapsing = of_type(&events, "connection.lapsing");
    assert_eq!(lapsing.len(), 1, "{events:?}");
    assert_eq!(lapsing[0]["data"]["connection"], "lab-1");
    assert_eq!(lapsing[0]["data"]["refresh_token_expires_at"], START + 2 * 86_400);

    // Now the provider refuses the refresh token.
    provider_now_answers(
        &h,
        ResponseTemplate::new(400)
            .set_body_json(serde_json::json!({"error": "invalid_grant", "error_description": "the token was revoked"})),
    )
    .await;
    keepalive::run(&h.app).await.unwrap();
    let events = received(&receiver).await;
    let lost = &events.last().unwrap().3;
    assert_eq!(lost["type"], "connection.reauthorization_required");
    assert_eq!(lost["data"]["connection"], "lab-1");
    assert!(
        lost["data"]["reason"].as_str().unwrap().contains("invalid_grant"),
        "{lost}"
    );
    assert_eq!(lost["data"]["since"], h.clock.now());
}

#[tokio::test]
async fn without_webhook_urls_nothing_is_queued_and_a_secret_is_required_with_them() {
    let h = Harness::new().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&h.provider, Duration::ZERO).await;
    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 200);
    use token_broker::base::store::Store;
    assert!(h.app.store.keys(&h.app.keys.webhooks()).await.unwrap().is_empty());

    let provider = MockServer::start().await;
    for (vars, named) in [
        (vec![("WEBHOOK_URLS", "https://hooks.example/in")], "WEBHOOK_SECRET"),
        (
            vec![
                ("WEBHOOK_URLS", "http://hooks.example/in"),
                ("WEBHOOK_SECRET", &*secret()),
            ],
            "WEBHOOK_URLS",
        ),
        (
            vec![
                ("WEBHOOK_URLS", "https://hooks.example/in"),
                ("WEBHOOK_SECRET", "whsec_c2hvcnQ="),
            ],
            "WEBHOOK_SECRET",
        ),
        (
            vec![
                ("WEBHOOK_URLS", "https://hooks.example/in"),
                ("WEBHOOK_SECRET", "plain-text-secret-value-here"),
            ],
            "WEBHOOK_SECRET",
        ),
    ] {
        let vars = base_vars(&provider, &redis_url(), &vars);
        let error = token_broker::base::config::Config::from_lookup(|name| vars.get(name).cloned()).unwrap_err();
        assert!(error.to_string().contains(named), "{error}");
        assert!(
            !error.to_string().contains("c2hvcnQ") && !error.to_string().contains("plain-text"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn with_encryption_on_the_outbox_is_sealed_and_a_planted_event_is_dropped() {
    use token_broker::base::store::{Expect, Store};
    let receiver = receiver_answering(200).await;
    let key = STANDARD.encode([3u8; 32]);
    let h = with_receiver(&receiver, &[("TOKEN_ENCRYPTION_KEY", &key)]).await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&h.provider, Duration::ZERO).await;
    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 200);
    let queued = h.app.store.keys(&h.app.keys.webhooks()).await.unwrap();
    assert_eq!(queued.len(), 1);
    let data = h.app.store.load(&queued[0]).await.unwrap().unwrap().data;
    assert!(data.starts_with(b"TBX2"));
    assert!(!String::from_utf8_lossy(&data).contains("connection.created"));

    // Someone with write access to the store queues an event of their own, in clear.
    let planted =
        br#"{"id":"evt_forged","url":0,"body":"{\"type\":\"connection.created\"}","attempts":0,"next_attempt_at":0}"#;
    h.app
        .store
        .write(&h.app.keys.webhook("evt_forged-0"), Expect::Any, planted, None)
        .await
        .unwrap();
    let pass = keepalive::run(&h.app).await.unwrap();
    assert_eq!((pass.webhooks.delivered, pass.webhooks.dropped), (1, 1), "{pass:?}");
    let events = received(&receiver).await;
    assert_eq!(events.len(), 1);
    assert_ne!(events[0].0, "evt_forged");
}

/// The README's example delivery is signed as the broker signs.
#[test]
fn the_readme_example_verifies() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = |marker: &str| {
        let at = readme.find(marker).unwrap_or_else(|| panic!("{marker} not in README")) + marker.len();
        readme[at..]
            .lines()
            .next()
            .unwrap()
            .trim()
            .trim_end_matches("`):")
            .to_owned()
    };
    let secret = after("`WEBHOOK_SECRET=");
    let id = after("webhook-id: ");
    let timestamp: i64 = after("webhook-timestamp: ").parse().unwrap();
    let signature = after("webhook-signature: ");
    let body_at = readme
        .find("\n{\"type\":\"connection.reauthorization_required\"")
        .unwrap()
        + 1;
    let body = readme[body_at..].lines().next().unwrap();
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let signed = webhooks::signature(
        &token_broker::base::secret::Secret::new(STANDARD.encode(key)),
        &id,
        timestamp,
        body,
    );
    assert_eq!(signed, signature);
}

#[tokio::test]
async fn a_spell_of_failures_is_announced_once_and_its_end_follows() {
    let receiver = receiver_answering(200).await;
    let h = with_receiver(&receiver, &[("WEBHOOK_FAILING_MINUTES", "10")]).await;
    // Twenty days left: keep-alive does not try them, and no lapse is near.
    h.seed(&tokens("access-0", "refresh-0", START - 1, START + 20 * 86_400))
        .await;
    h.seed_connection("blip", &tokens("access-b", "refresh-b", START - 1, START + 20 * 86_400))
        .await;
    provider_answers(&h.provider, ResponseTemplate::new(503)).await;
    let token_of = |connection: &str| event_with_query("token", &format!("connection={connection}"));

    // Failing, but not yet for ten minutes: nothing to announce.
    assert_eq!(h.call_request(Route::TOKEN, token_of("blip")).await.status, 503);
    for minutes in [0, 5] {
        h.clock.advance(minutes * 60);
        assert_eq!(h.call(Route::TOKEN, "token").await.status, 503);
    }
    keepalive::run(&h.app).await.unwrap();
    assert!(received(&receiver).await.is_empty());
    // Ten minutes in: announced once, however often it fails after.
    h.clock.advance(6 * 60);
    for _ in 0..3 {
        assert_eq!(h.call(Route::TOKEN, "token").await.status, 503);
    }
    keepalive::run(&h.app).await.unwrap();
    let events = received(&receiver).await;
    let failing = of_type(&events, "connection.failing");
    let names: Vec<&str> = failing
        .iter()
        .map(|e| e["data"]["connection"].as_str().unwrap())
        .collect();
    // `blip` failed once, at the start, and was not asked for again.
    assert_eq!(names, ["default"], "{events:?}");
    let default = failing.iter().find(|e| e["data"]["connection"] == "default").unwrap();
    assert_eq!(default["data"]["failing_since"], START);
    assert!(default["data"]["error"].as_str().unwrap().contains("503"), "{default}");

    // The provider is back: the next refresh ends the spell, and says for how long it lasted.
    provider_now_answers(
        &h,
        ResponseTemplate::new(200).set_body_json(grant_body("access-1", "refresh-1")),
    )
    .await;
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);
    keepalive::run(&h.app).await.unwrap();
    let events = received(&receiver).await;
    let recovered: Vec<&Value> = of_type(&events, "connection.recovered")
        .into_iter()
        .filter(|event| event["data"]["connection"] == "default")
        .collect();
    assert_eq!(recovered.len(), 1, "{events:?}");
    assert_eq!(recovered[0]["data"]["failing_since"], START);
    assert_eq!(recovered[0]["data"]["failed_for"], 11 * 60);
    for (.., body, _) in &events {
        assert!(!body.contains("access-") && !body.contains("refresh-0"), "{body}");
    }
}

#[tokio::test]
async fn a_single_failure_then_a_refresh_announces_nothing() {
    let receiver = receiver_answering(200).await;
    let h = with_receiver(&receiver, &[]).await;
    h.seed(&tokens("access-0", "refresh-0", START - 1, START + 86_400))
        .await;
    provider_answers(&h.provider, ResponseTemplate::new(502)).await;
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 502);
    provider_now_answers(
        &h,
        ResponseTemplate::new(200).set_body_json(grant_body("access-1", "refresh-1")),
    )
    .await;
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);
    keepalive::run(&h.app).await.unwrap();
    assert!(received(&receiver).await.is_empty());
    use token_broker::base::store::Store;
    assert!(
        h.app
            .store
            .load(&h.app.keys.webhook_failing("default"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_dead_receiver_costs_one_attempt_per_pass_and_keeps_every_event() {
    let receiver = receiver_answering(500).await;
    let h = with_receiver(&receiver, &[]).await;
    for connection in ["a", "b", "c"] {
        webhooks::raise(&h.app, webhooks::Kind::Revoked, connection, serde_json::json!({})).await;
    }
    let pass = keepalive::run(&h.app).await.unwrap();
    assert_eq!(
        pass.webhooks,
        webhooks::Deliveries {
            delivered: 0,
            retrying: 1,
            dropped: 0
        }
    );
    assert_eq!(receiver.received_requests().await.unwrap().len(), 1);
    use token_broker::base::store::Store;
    assert_eq!(h.app.store.keys(&h.app.keys.webhooks()).await.unwrap().len(), 3);
}
