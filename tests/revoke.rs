//! `POST /revoke`: RFC 7009 revocation at the provider, then the stored tokens are forgotten;
//! a failed revocation keeps them unless the operator forces it.

mod common;

use common::*;
use token_broker::{
    base::record::ConnectionRecord,
    base::store::{Expect, Store},
    http::routes::Route,
};
use wiremock::{Mock, ResponseTemplate, matchers};

async fn revocation_answers(h: &Harness, response: ResponseTemplate) {
    Mock::given(matchers::method("POST"))
        .and(matchers::path(REVOCATION_PATH))
        .respond_with(response)
        .mount(&h.provider)
        .await;
}

async fn seeded(h: &Harness) {
    h.seed(&tokens("access-0", "refresh-0", START + 600, START + 86_400))
        .await;
}

fn revocation_requests(requests: &[wiremock::Request]) -> Vec<Vec<(String, String)>> {
    requests
        .iter()
        .filter(|r| r.url.path() == REVOCATION_PATH)
        .map(|r| form_urlencoded::parse(&r.body).into_owned().collect())
        .collect()
}

#[tokio::test]
async fn revoke_revokes_the_refresh_token_at_the_provider_then_forgets_it() {
    let h = Harness::new().await;
    seeded(&h).await;
    revocation_answers(&h, ResponseTemplate::new(200)).await;

    let reply = h.call(Route::REVOKE, "revoke").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["status"], "revoked");
    assert_eq!(reply.json()["revoked_at_provider"], true);
    assert!(!reply.body.contains("refresh-0") && !reply.body.contains("access-0"));
    let sent = revocation_requests(&h.provider.received_requests().await.unwrap());
    assert_eq!(
        sent,
        vec![vec![
            ("token".to_owned(), "refresh-0".to_owned()),
            ("token_type_hint".to_owned(), "refresh_token".to_owned()),
            ("client_id".to_owned(), CLIENT_ID.to_owned()),
            ("client_secret".to_owned(), CLIENT_SECRET.to_owned()),
        ]]
    );
    assert!(h.stored().await.is_none());
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 404);
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 401);
}

#[tokio::test]
async fn a_failed_revocation_keeps_the_tokens() {
    for (response, status) in [
        (ResponseTemplate::new(503), 503),
        (ResponseTemplate::new(500), 502),
        (
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_client"})),
            502,
        ),
    ] {
        let h = Harness::new().await;
        seeded(&h).await;
        let before = h.stored().await;
        revocation_answers(&h, response).await;

        let reply = h.call(Route::REVOKE, "revoke").await;

        assert_eq!(reply.status, status, "{}", reply.body);
        assert_eq!(h.stored().await, before);
        assert_eq!(h.call(Route::VERIFY, "verify").await.status, 200);
    }
}

#[tokio::test]
async fn force_deletes_even_when_the_provider_fails() {
    let h = Harness::new().await;
    seeded(&h).await;
    revocation_answers(&h, ResponseTemplate::new(503)).await;

    let reply = h.call(Route::REVOKE, "revoke-force").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["revoked_at_provider"], false);
    assert!(reply.json()["warning"].as_str().unwrap().contains("did not confirm"));
    assert!(h.stored().await.is_none());
}

#[tokio::test]
async fn without_a_revocation_endpoint_the_tokens_are_forgotten_with_a_warning() {
    let h = Harness::with(&[("REVOCATION_URL", "")]).await;
    seeded(&h).await;

    let reply = h.call(Route::REVOKE, "revoke").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["revoked_at_provider"], false);
    assert!(reply.json()["warning"].as_str().unwrap().contains("REVOCATION_URL"));
    assert!(h.stored().await.is_none());
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn revoking_nothing_is_harmless() {
    let h = Harness::new().await;
    let reply = h.call(Route::REVOKE, "revoke").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "not_stored");
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_reauthorization_mark_is_cleared_without_calling_the_provider() {
    let h = Harness::new().await;
    let mark = ConnectionRecord::ReauthorizationRequired {
        reason: "invalid_grant".into(),
        since: START,
    };
    h.put(&mark).await;

    assert_eq!(h.call(Route::REVOKE, "revoke").await.status, 200);
    assert!(h.stored().await.is_none());
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreadable_record_is_deleted_only_when_forced() {
    let h = Harness::new().await;
    h.app
        .store
        .write(&h.tokens_key(), Expect::Any, b"garbage", None)
        .await
        .unwrap();

    assert_eq!(h.call(Route::REVOKE, "revoke").await.status, 500);
    assert!(h.app.store.load(&h.tokens_key()).await.unwrap().is_some());
    assert_eq!(h.call(Route::REVOKE, "revoke-force").await.status, 200);
    assert!(h.app.store.load(&h.tokens_key()).await.unwrap().is_none());
}

#[tokio::test]
async fn revoke_needs_the_key_and_post() {
    let h = Harness::new().await;
    seeded(&h).await;
    assert_eq!(h.call(Route::REVOKE, "revoke-no-key").await.status, 401);
    let get = h.call(Route::REVOKE, "revoke-get").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    assert!(h.stored().await.is_some());
}
