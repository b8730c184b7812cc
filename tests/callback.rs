//! `GET /callback`: state check, code exchange, storage, and every failure leaving stored tokens
//! alone.

mod common;

use common::*;
use token_broker::{base::record::ConnectionRecord, http::routes::Route};
use wiremock::{Mock, ResponseTemplate, matchers};

#[tokio::test]
async fn callback_exchanges_the_code_and_stores_both_expiry_times() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "access-1", "refresh_token": "refresh-1", "expires_in": 1799,
            "refresh_token_expires_in": 7_775_999, "token_type": "Bearer", "scope": "products",
        })),
    )
    .await;

    let reply = h.call(Route::CALLBACK, "callback").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
    assert!(reply.body.contains("Authorized"));
    assert!(!reply.body.contains("access-1") && !reply.body.contains("refresh-1"));
    let stored = h.stored_tokens().await;
    assert_eq!(stored.access_token.expose(), "access-1");
    assert_eq!(stored.refresh_token.expose(), "refresh-1");
    assert_eq!(stored.access_expires_at, START + 1799);
    assert_eq!(stored.refresh_expires_at, START + 7_775_999);
    assert_eq!(stored.scope.as_deref(), Some("products"));
    assert_eq!(stored.token_type, "Bearer");
}

#[tokio::test]
async fn callback_sends_the_exact_form_with_client_secret_post() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;

    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 200);

    let received = h.provider.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(
        request.headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    assert!(request.headers.get("authorization").is_none());
    let form: Vec<(String, String)> = form_urlencoded::parse(&request.body).into_owned().collect();
    let expected: Vec<(String, String)> = [
        ("grant_type", "authorization_code"),
        ("code", CODE),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form, expected);
}

#[tokio::test]
async fn callback_uses_http_basic_when_configured() {
    let h = Harness::with(&[
        ("TOKEN_AUTH_METHOD", "client_secret_basic"),
        ("CLIENT_SECRET", "s3cr:t/+"),
    ])
    .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(TOKEN_PATH))
        // RFC 6749 §2.3.1: id and secret are form-urlencoded, then joined and base64-encoded.
        // base64("test-client-id:s3cr%3At%2F%2B")
        .and(matchers::header(
            "authorization",
            "Basic dGVzdC1jbGllbnQtaWQ6czNjciUzQXQlMkYlMkI=",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(grant_body("a", "r")))
        .expect(1)
        .mount(&h.provider)
        .await;

    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 200);

    let form = &h.token_requests().await[0];
    assert!(!form.contains_key("client_secret") && !form.contains_key("client_id"));
    assert_eq!(form["grant_type"], "authorization_code");
}

#[tokio::test]
async fn callback_answers_json_when_the_client_prefers_it() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;

    let reply = h.call(Route::CALLBACK, "callback-json").await;

    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["status"], "authorized");
    assert_eq!(body["access_token_expires_in"], 1799);
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
}

#[tokio::test]
async fn wrong_state_is_refused_without_calling_the_provider_or_storing() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;

    let reply = h.call(Route::CALLBACK, "callback-wrong-state").await;

    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("invalid_state"));
    assert!(h.provider.received_requests().await.unwrap().is_empty());
    assert!(h.stored().await.is_none());
}

#[tokio::test]
async fn missing_code_or_state_is_a_bad_request() {
    let h = Harness::new().await;
    for event in [
        "callback-missing-code",
        "callback-missing-state",
        "callback-repeated-code",
    ] {
        let reply = h.call(Route::CALLBACK, event).await;
        assert_eq!(reply.status, 400, "{event}");
        assert!(reply.body.contains("invalid_request"), "{event}");
    }
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn provider_error_redirect_is_shown_escaped_and_stores_nothing() {
    let h = Harness::new().await;

    let reply = h.call(Route::CALLBACK, "callback-denied").await;

    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("access_denied"));
    assert!(
        reply
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; The user declined")
    );
    assert!(!reply.body.contains("<script>"));
    assert!(h.stored().await.is_none());
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn error_redirect_with_a_forged_state_does_not_display_its_text() {
    let h = Harness::new().await;

    let reply = h.call(Route::CALLBACK, "callback-denied-forged").await;

    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("access_denied"));
    assert!(!reply.body.contains("0800"));
}

#[tokio::test]
async fn failed_exchange_is_502_and_keeps_the_previous_tokens() {
    let h = Harness::new().await;
    let previous = tokens("old-access", "old-refresh", START + 600, START + 86400);
    h.seed(&previous).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant", "error_description": "The code has <b>expired</b>",
        })),
    )
    .await;

    let reply = h.call(Route::CALLBACK, "callback").await;

    assert_eq!(reply.status, 502);
    assert!(reply.body.contains("invalid_grant"));
    assert!(reply.body.contains("The code has &lt;b&gt;expired&lt;/b&gt;"));
    assert_eq!(h.stored_tokens().await, previous);

    let json = h.call(Route::CALLBACK, "callback-json").await;
    assert_eq!(json.status, 502);
    assert_eq!(json.error(), "invalid_grant");
    assert_eq!(json.json()["error_description"], "The code has <b>expired</b>");
}

#[tokio::test]
async fn the_code_exchange_is_never_retried() {
    let h = Harness::new().await;
    provider_answers(&h.provider, ResponseTemplate::new(503)).await;

    let reply = h.call(Route::CALLBACK, "callback-json").await;

    assert_eq!(reply.status, 503);
    assert!(reply.header("retry-after").is_some());
    assert_eq!(h.token_requests().await.len(), 1);
    assert!(h.stored().await.is_none());
}

#[tokio::test]
async fn a_grant_without_refresh_token_is_refused_and_stores_nothing() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "a", "expires_in": 60})),
    )
    .await;

    let reply = h.call(Route::CALLBACK, "callback-json").await;

    assert_eq!(reply.status, 502);
    assert_eq!(reply.error(), "provider_response_invalid");
    assert!(h.stored().await.is_none());
}

#[tokio::test]
async fn a_new_login_replaces_a_reauthorization_mark() {
    let h = Harness::new().await;
    let mark = ConnectionRecord::ReauthorizationRequired {
        reason: "invalid_grant".into(),
        since: START,
    };
    h.put(&mark).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a2", "r2")),
    )
    .await;

    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 200);

    assert_eq!(h.stored_tokens().await.access_token.expose(), "a2");
}

#[tokio::test]
async fn callback_pages_carry_the_protective_headers() {
    let h = Harness::new().await;
    for event in ["callback-wrong-state", "callback-denied"] {
        let reply = h.call(Route::CALLBACK, event).await;
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{event}");
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"), "{event}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{event}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{event}");
        assert!(
            reply
                .header("content-security-policy")
                .unwrap()
                .starts_with("default-src 'none'")
        );
    }
}

#[tokio::test]
async fn stored_entry_expires_in_redis_with_the_refresh_token() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;
    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 200);

    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(h.tokens_key())
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((7_775_990..=7_775_999).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn redis_down_is_503_and_the_code_is_not_spent() {
    let h = Harness::with(&[("REDIS_URL", &format!("redis://127.0.0.1:{}", closed_port()))]).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;

    let reply = h.call(Route::CALLBACK, "callback-json").await;

    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.error(), "store_unavailable");
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}
