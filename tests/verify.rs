//! `GET /verify`: 200 / 202 / 404 by the state of the stored tokens, never a token value, and 503
//! (never 404) when the store is unreachable.

mod common;

use common::*;
use token_broker::{base::record::ConnectionRecord, http::routes::Route};

#[tokio::test]
async fn both_tokens_valid_is_200_with_seconds_left() {
    let h = Harness::new().await;
    h.seed(&tokens("access-secret", "refresh-secret", START + 1000, START + 5000))
        .await;

    let reply = h.call(Route::VERIFY, "verify").await;

    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["status"], "valid");
    assert_eq!(body["access_token_expires_in"], 1000);
    assert_eq!(body["refresh_token_expires_in"], 5000);
    assert_eq!(body["refresh_token_expires_at"], START + 5000);
    assert!(!reply.body.contains("access-secret") && !reply.body.contains("refresh-secret"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn expired_access_token_with_valid_refresh_token_is_202() {
    let h = Harness::new().await;
    h.seed(&tokens("a", "r", START + 10, START + 5000)).await;
    h.clock.advance(10);

    let reply = h.call(Route::VERIFY, "verify").await;

    assert_eq!(reply.status, 202);
    assert_eq!(reply.json()["status"], "access_token_expired");
    assert_eq!(reply.json()["access_token_expires_in"], 0);
    assert_eq!(reply.json()["refresh_token_expires_in"], 4990);
}

#[tokio::test]
async fn expired_refresh_token_is_404() {
    let h = Harness::new().await;
    h.seed(&tokens("a", "r", START + 10, START + 20)).await;
    h.clock.advance(20);

    let reply = h.call(Route::VERIFY, "verify").await;

    assert_eq!(reply.status, 404);
    assert_eq!(reply.error(), "reauthorization_required");
    assert_eq!(reply.json()["status"], "refresh_token_expired");
}

#[tokio::test]
async fn nothing_stored_is_404() {
    let h = Harness::new().await;
    let reply = h.call(Route::VERIFY, "verify").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["status"], "not_authorized");
    assert!(reply.json()["error_description"].is_string());
}

#[tokio::test]
async fn a_rejected_refresh_token_is_404_with_the_reason() {
    let h = Harness::new().await;
    let mark = ConnectionRecord::ReauthorizationRequired {
        reason: "the provider rejected the refresh token (invalid_grant)".into(),
        since: START - 60,
    };
    h.put(&mark).await;

    let reply = h.call(Route::VERIFY, "verify").await;

    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["status"], "refresh_token_rejected");
    assert_eq!(reply.json()["since"], START - 60);
    assert!(reply.json()["reason"].as_str().unwrap().contains("invalid_grant"));
}

#[tokio::test]
async fn verify_requires_the_api_key() {
    let h = Harness::new().await;
    h.seed(&tokens("a", "r", START + 10, START + 20)).await;
    let reply = h.call(Route::VERIFY, "verify-no-key").await;
    assert_eq!(reply.status, 401);
    assert!(reply.header("www-authenticate").is_some());
}

#[tokio::test]
async fn redis_down_is_503_never_404() {
    let h = Harness::with(&[("REDIS_URL", &format!("redis://127.0.0.1:{}", closed_port()))]).await;
    let reply = h.call(Route::VERIFY, "verify").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.error(), "store_unavailable");
}

#[tokio::test]
async fn verify_never_refreshes() {
    let h = Harness::new().await;
    h.seed(&tokens("a", "r", START, START + 20)).await;
    let before = h.stored().await;
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 202);
    assert_eq!(h.stored().await, before);
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}
