//! `POST /import`: an existing grant is refreshed once at the provider before anything is stored;
//! a token the provider refuses (revoked, or issued to another client) stores nothing.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use serde_json::json;
use token_broker::http::routes::Route;
use wiremock::{Mock, ResponseTemplate, matchers};

fn import_of(body: &str, content_type: &str) -> lambda_http::Request {
    let mut request = event_request("import");
    *request.body_mut() = lambda_http::Body::Text(body.to_owned());
    request
        .headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    request
}

#[tokio::test]
async fn a_working_refresh_token_is_refreshed_once_and_the_fresh_pair_stored() {
    let h = Harness::new().await;
    let fake = Arc::new(RotatingProvider::holding("imported-refresh-token"));
    fake.mount(&h.provider, Duration::ZERO).await;

    let reply = h.call(Route::IMPORT, "import").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["status"], "imported");
    assert_eq!(reply.json()["connection"], "default");
    assert_eq!(reply.json()["replaced"], false);
    assert_eq!(reply.json()["access_token_expires_in"], 1799);
    assert_eq!(reply.json()["refresh_token_expires_in"], 7_775_999);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert!(!reply.body.contains("refresh-1") && !reply.body.contains("imported-refresh-token"));
    assert_eq!(fake.refreshes(), 1);
    // The provider rotated it: the new refresh token is what is kept, the imported one is spent.
    let stored = h.stored_tokens().await;
    assert_eq!(stored.refresh_token.expose(), "refresh-1");
    assert_eq!(stored.access_token.expose(), "access-1");
    assert_eq!(h.call(Route::TOKEN, "token").await.json()["access_token"], "access-1");
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 200);
}

#[tokio::test]
async fn a_non_rotating_provider_keeps_the_imported_token_and_a_form_works_too() {
    let h = Harness::with(&[("REFRESH_TOKEN_LIFETIME", "sliding")]).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(json!({"access_token": "fresh", "expires_in": 600})),
    )
    .await;
    h.seed_connection("lab", &tokens("old", "old-refresh", START + 100, START + 1000))
        .await;

    let mut request = import_of("refresh_token=kept-refresh", "application/x-www-form-urlencoded");
    *request.uri_mut() = "/import?connection=lab".parse().unwrap();
    let reply = h.call_request(Route::IMPORT, request).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["replaced"], true);
    let stored = h.stored_in("lab").await.unwrap();
    let token_broker::base::record::ConnectionRecord::Active(stored) = stored else {
        panic!("{stored:?}")
    };
    assert_eq!(stored.refresh_token.expose(), "kept-refresh");
    assert_eq!(stored.access_token.expose(), "fresh");
    assert_eq!(stored.refresh_expires_at, START + 90 * 86_400);
    assert_eq!(h.token_requests().await[0]["refresh_token"], "kept-refresh");
}

#[tokio::test]
async fn a_revoked_token_or_one_for_another_client_stores_nothing_and_says_why() {
    for (status, error) in [
        (400, "invalid_grant"),
        (401, "invalid_client"),
        (400, "unauthorized_client"),
    ] {
        let h = Harness::new().await;
        h.seed(&tokens("access-kept", "refresh-kept", START + 100, START + 1000))
            .await;
        let before = h.stored().await;
        provider_answers(
            &h.provider,
            ResponseTemplate::new(status).set_body_json(json!({
                "error": error,
                "error_description": "token imported-refresh-token is not valid for this client",
            })),
        )
        .await;

        let reply = h.call(Route::IMPORT, "import").await;

        assert_eq!(reply.status, 400, "{error}: {}", reply.body);
        assert_eq!(reply.error(), error);
        let description = reply.json()["error_description"].as_str().unwrap().to_owned();
        assert!(description.contains("nothing was stored"), "{description}");
        assert!(!reply.body.contains("imported-refresh-token"), "{}", reply.body);
        assert_eq!(h.stored().await, before, "{error}");
    }
}

#[tokio::test]
async fn a_provider_outage_stores_nothing() {
    let h = Harness::new().await;
    provider_answers(&h.provider, ResponseTemplate::new(503)).await;
    let reply = h.call(Route::IMPORT, "import").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.error(), "provider_unavailable");
    assert!(h.stored().await.is_none());
}

#[tokio::test]
async fn import_needs_the_key_a_post_and_a_refresh_token() {
    let h = Harness::new().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&h.provider)
        .await;
    let mut no_key = event_request("import");
    no_key.headers_mut().remove("authorization");
    assert_eq!(h.call_request(Route::IMPORT, no_key).await.status, 401);
    let mut get = event_request("import");
    *get.method_mut() = lambda_http::http::Method::GET;
    assert_eq!(h.call_request(Route::IMPORT, get).await.status, 405);
    for (body, content_type) in [
        ("", "application/json"),
        ("{}", "application/json"),
        (r#"{"refresh_token": 5}"#, "application/json"),
        (r#"{"refresh_token": ""}"#, "application/json"),
        (r#"{"refresh_token": "two words"}"#, "application/json"),
        ("refresh_token=", "application/x-www-form-urlencoded"),
        ("refresh_token=x", "text/plain"),
    ] {
        let reply = h.call_request(Route::IMPORT, import_of(body, content_type)).await;
        assert_eq!(reply.status, 400, "{body:?} as {content_type}: {}", reply.body);
        assert_eq!(reply.error(), "invalid_request");
    }
    let huge = format!(r#"{{"refresh_token": "{}"}}"#, "x".repeat(10_000));
    assert_eq!(
        h.call_request(Route::IMPORT, import_of(&huge, "application/json"))
            .await
            .status,
        400
    );
    assert!(h.stored().await.is_none());
}
