//! `GET /token`: authentication, serving a fresh token, refreshing on demand, and keeping the
//! stored tokens through every provider failure.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use token_broker::{
    base::record::ConnectionRecord,
    base::store::{Expect, Store},
    http::routes::Route,
};
use wiremock::ResponseTemplate;

/// A pair whose access token has `access_left` seconds to live.
async fn seeded(access_left: i64) -> Harness {
    let h = Harness::new().await;
    h.seed(&tokens("access-0", "refresh-0", START + access_left, START + 86_400))
        .await;
    h
}

#[tokio::test]
async fn fresh_token_is_served_without_calling_the_provider() {
    let h = seeded(1200).await;

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["access_token"], "access-0");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1200);
    assert_eq!(body["expires_at"], START + 1200);
    assert_eq!(body["scope"], "read");
    assert!(!reply.body.contains("refresh-0"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_api_key_is_accepted_in_x_api_key_too() {
    let h = seeded(1200).await;
    assert_eq!(h.call(Route::TOKEN, "token-x-api-key").await.status, 200);
}

#[tokio::test]
async fn missing_or_wrong_api_key_is_401_with_a_challenge() {
    let h = seeded(1200).await;

    let missing = h.call(Route::TOKEN, "token-no-key").await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.error(), "unauthorized");
    assert_eq!(
        missing.header("www-authenticate"),
        Some(r#"Bearer realm="token-broker""#)
    );

    let wrong = h.call(Route::TOKEN, "token-wrong-key").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("www-authenticate").unwrap().contains("invalid_token"));
    assert!(!wrong.body.contains("access-0") && !wrong.body.contains("wrong-api-key"));
}

#[tokio::test]
async fn an_api_key_in_the_query_string_is_refused() {
    let h = seeded(1200).await;
    let reply = h.call(Route::TOKEN, "token-key-in-query").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error(), "invalid_request");
    assert!(!reply.body.contains("access-0"));
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let h = seeded(1200).await;
    let reply = h.call(Route::TOKEN, "token-post").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn token_inside_the_skew_window_is_refreshed_with_the_exact_form() {
    let h = seeded(59).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("access-1", "refresh-1")),
    )
    .await;

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["access_token"], "access-1");
    assert_eq!(reply.json()["expires_in"], 1799);
    let requests = h.token_requests().await;
    assert_eq!(requests.len(), 1);
    let form = &requests[0];
    assert_eq!(form.len(), 4, "{form:?}");
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "refresh-0");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    let stored = h.stored_tokens().await;
    assert_eq!(stored.refresh_token.expose(), "refresh-1");
    assert_eq!(stored.access_expires_at, START + 1799);
    assert_eq!(stored.refresh_expires_at, START + 7_775_999);
}

#[tokio::test]
async fn expiry_follows_the_clock() {
    let h = seeded(1200).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("access-1", "refresh-1")),
    )
    .await;

    // 61 s left: more than the 60 s skew, still served.
    h.clock.advance(1139);
    assert_eq!(h.call(Route::TOKEN, "token").await.json()["access_token"], "access-0");
    // 60 s left: no longer "more than the skew", refreshed.
    h.clock.advance(1);
    let reply = h.call(Route::TOKEN, "token").await;
    assert_eq!(reply.json()["access_token"], "access-1");
    assert_eq!(reply.json()["expires_at"], START + 1140 + 1799);
}

#[tokio::test]
async fn a_provider_that_does_not_rotate_keeps_the_old_refresh_token() {
    let h = seeded(0).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "access-1", "expires_in": 3600, "token_type": "Bearer",
        })),
    )
    .await;

    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);

    let stored = h.stored_tokens().await;
    assert_eq!(stored.access_token.expose(), "access-1");
    assert_eq!(stored.refresh_token.expose(), "refresh-0");
    assert_eq!(stored.refresh_expires_at, START + 86_400);
}

#[tokio::test]
async fn nothing_stored_means_reauthorization_required() {
    let h = Harness::new().await;
    let reply = h.call(Route::TOKEN, "token").await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error(), "reauthorization_required");
    assert!(reply.json()["error_description"].as_str().unwrap().contains("log in"));
}

#[tokio::test]
async fn an_expired_refresh_token_is_not_sent_to_the_provider() {
    let h = Harness::new().await;
    h.seed(&tokens("a", "r", START - 100, START - 1)).await;

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 401);
    assert_eq!(reply.error(), "reauthorization_required");
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn invalid_grant_marks_the_connection_instead_of_deleting_it() {
    let h = seeded(0).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant", "error_description": "refresh token revoked",
        })),
    )
    .await;

    let reply = h.call(Route::TOKEN, "token").await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error(), "reauthorization_required");

    match h.stored().await {
        Some((_, ConnectionRecord::ReauthorizationRequired { reason, since })) => {
            assert!(reason.contains("refresh token revoked"), "{reason}");
            assert_eq!(since, START);
        }
        other => panic!("expected a re-authorization mark, found {other:?}"),
    }
    // Later calls do not hit the provider with the dead token again.
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 401);
    assert_eq!(h.token_requests().await.len(), 1);
}

#[tokio::test]
async fn provider_failures_keep_the_tokens_and_answer_with_retry_after() {
    let cases: [(ResponseTemplate, u16, &str, &str); 5] = [
        (ResponseTemplate::new(500), 502, "provider_unavailable", "5"),
        (ResponseTemplate::new(503), 503, "provider_unavailable", "5"),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "42"),
            503,
            "provider_unavailable",
            "42",
        ),
        (
            ResponseTemplate::new(200).set_body_string("{not json"),
            502,
            "provider_response_invalid",
            "5",
        ),
        (
            ResponseTemplate::new(200)
                .set_body_json(grant_body("a", "r"))
                .set_delay(Duration::from_secs(3)),
            503,
            "provider_unavailable",
            "5",
        ),
    ];
    for (response, status, error, retry_after) in cases {
        let h = seeded(0).await;
        let before = h.stored().await;
        provider_answers(&h.provider, response).await;

        let reply = h.call(Route::TOKEN, "token").await;

        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(reply.error(), error);
        assert_eq!(reply.header("retry-after"), Some(retry_after));
        assert_eq!(h.stored().await, before, "stored tokens changed after {status} {error}");
    }
}

#[tokio::test]
async fn provider_refusals_other_than_invalid_grant_do_not_end_the_connection() {
    let h = seeded(0).await;
    let before = h.stored().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": "invalid_client"})),
    )
    .await;

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 502);
    assert_eq!(reply.error(), "invalid_client");
    assert_eq!(h.stored().await, before);
}

#[tokio::test]
async fn an_unreachable_provider_is_502_and_keeps_the_tokens() {
    let h = Harness::with(&[("TOKEN_URL", &format!("http://127.0.0.1:{}/token", closed_port()))]).await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let before = h.stored().await;

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 502);
    assert_eq!(reply.error(), "provider_unavailable");
    assert!(reply.header("retry-after").is_some());
    assert_eq!(h.stored().await, before);
}

#[tokio::test]
async fn a_still_valid_token_is_served_when_the_refresh_fails() {
    let h = seeded(30).await;
    provider_answers(&h.provider, ResponseTemplate::new(500)).await;

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["access_token"], "access-0");
    assert_eq!(reply.json()["expires_in"], 30);
}

#[tokio::test]
async fn an_unreadable_record_is_500_and_left_untouched() {
    let h = Harness::new().await;
    h.app
        .store
        .write(&h.tokens_key(), Expect::Any, b"{\"format\":1,\"status\":\"act", None)
        .await
        .unwrap();

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 500);
    assert_eq!(reply.error(), "store_unreadable");
    let stored = h.app.store.load(&h.tokens_key()).await.unwrap().unwrap();
    assert_eq!(stored.data, b"{\"format\":1,\"status\":\"act");
}

#[tokio::test]
async fn redis_down_is_503() {
    let h = Harness::with(&[("REDIS_URL", &format!("redis://127.0.0.1:{}", closed_port()))]).await;
    let reply = h.call(Route::TOKEN, "token").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.error(), "store_unavailable");
    assert_eq!(reply.header("retry-after"), Some("2"));
}

#[tokio::test]
async fn concurrent_calls_at_expiry_refresh_once() {
    let h = Arc::new(seeded(0).await);
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200)
            .set_body_json(grant_body("access-1", "refresh-1"))
            .set_delay(Duration::from_millis(200)),
    )
    .await;

    let calls = (0..20).map(|_| {
        let h = h.clone();
        tokio::spawn(async move { h.call(Route::TOKEN, "token").await })
    });
    let replies = futures_join_all(calls).await;

    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["access_token"], "access-1");
    }
    assert_eq!(h.token_requests().await.len(), 1);
    assert_eq!(h.stored_tokens().await.refresh_token.expose(), "refresh-1");
}

async fn futures_join_all(handles: impl Iterator<Item = tokio::task::JoinHandle<Reply>>) -> Vec<Reply> {
    let mut replies = Vec::new();
    for handle in handles {
        replies.push(handle.await.unwrap());
    }
    replies
}
