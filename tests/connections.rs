//! Named connections: several accounts per deployment, each with its own tokens, login, refresh
//! and revocation, and a listing for operators.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use token_broker::{
    base::store::{Expect, Store},
    http::routes::Route,
};
use wiremock::{Mock, ResponseTemplate, matchers};

async fn login_and_callback(h: &Harness, connection: &str) -> Reply {
    let login = h
        .call_request(
            Route::LOGIN,
            event_with_query("login-json", &format!("connection={connection}")),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let url = reqwest::Url::parse(login.json()["authorization_url"].as_str().unwrap()).unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    h.call_request(
        Route::CALLBACK,
        event_with_query("callback-json", &format!("code=code-for-{connection}&state={state}")),
    )
    .await
}

async fn token_for(h: &Harness, connection: &str) -> Reply {
    h.call_request(
        Route::TOKEN,
        event_with_query("token", &format!("connection={connection}")),
    )
    .await
}

#[tokio::test]
async fn two_connections_side_by_side_do_not_see_each_others_tokens() {
    let h = Harness::new().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&h.provider, Duration::ZERO).await;

    let first = login_and_callback(&h, "lab-1").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["connection"], "lab-1");
    assert_eq!(login_and_callback(&h, "lab-2").await.status, 200);

    assert_eq!(token_for(&h, "lab-1").await.json()["access_token"], "access-1");
    assert_eq!(token_for(&h, "lab-2").await.json()["access_token"], "access-2");
    // Nothing was stored under the default connection.
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 401);

    // Each refreshes on its own.
    h.clock.advance(1800);
    assert_eq!(token_for(&h, "lab-2").await.json()["access_token"], "access-3");
    assert_eq!(fake.refreshes(), 1);
    let verify_1 = h
        .call_request(Route::VERIFY, event_with_query("verify", "connection=lab-1"))
        .await;
    assert_eq!(verify_1.status, 202);
    assert_eq!(verify_1.json()["connection"], "lab-1");
}

#[tokio::test]
async fn revoking_one_connection_leaves_the_other() {
    let h = Harness::new().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&h.provider, Duration::ZERO).await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(REVOCATION_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(&h.provider)
        .await;
    login_and_callback(&h, "lab-1").await;
    login_and_callback(&h, "lab-2").await;

    let revoked = h
        .call_request(Route::REVOKE, event_with_query("revoke", "connection=lab-1"))
        .await;

    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let verify =
        |c: &'static str| h.call_request(Route::VERIFY, event_with_query("verify", &format!("connection={c}")));
    assert_eq!(verify("lab-1").await.status, 404);
    assert_eq!(verify("lab-2").await.status, 200);
    assert_eq!(token_for(&h, "lab-2").await.status, 200);
}

/// The default connection's state at the top, every connection's in the list, an unreadable
/// record shown as such without hiding the others; no token value anywhere.
async fn verify_lists_every_connection<S: Store>(h: Harness<S>) {
    h.seed(&tokens("access-default", "refresh-default", START + 100, START + 1000))
        .await;
    h.seed_connection("lab-1", &tokens("access-lab", "refresh-lab", START - 1, START + 5000))
        .await;
    h.seed_connection("lab-2", &tokens("access-old", "refresh-old", START - 10, START - 1))
        .await;
    h.app
        .store
        .write(&h.app.keys.tokens("lab-3"), Expect::Any, b"\x00not a record", None)
        .await
        .unwrap();

    let reply = h.call(Route::VERIFY, "verify").await;

    // The status and top-level fields stay the default connection's, for existing monitors.
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["status"], "valid");
    let listed = reply.json()["connections"].as_array().unwrap().clone();
    let summary = listed_states(&reply.json());
    assert_eq!(
        summary,
        vec![
            ("default".to_owned(), "valid".to_owned()),
            ("lab-1".to_owned(), "access_token_expired".to_owned()),
            ("lab-2".to_owned(), "refresh_token_expired".to_owned()),
            ("lab-3".to_owned(), "store_unreadable".to_owned()),
        ]
    );
    assert_eq!(listed[1]["refresh_token_expires_in"], 5000);
    assert!(!reply.body.contains("access-") && !reply.body.contains("refresh-lab"));

    // Without a default connection the top level says so, and the others are still listed.
    h.app.store.delete(&h.tokens_key()).await.unwrap();
    let reply = h.call(Route::VERIFY, "verify").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["status"], "not_authorized");
    assert_eq!(reply.json()["connections"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn verify_without_a_connection_lists_every_connection_on_redis() {
    verify_lists_every_connection(Harness::new().await).await;
}

#[tokio::test]
async fn verify_without_a_connection_lists_every_connection_on_a_redis_cluster() {
    verify_lists_every_connection(Harness::cluster(&[]).await).await;
}

#[tokio::test]
async fn verify_without_a_connection_lists_every_connection_on_dynamodb() {
    verify_lists_every_connection(Harness::dynamodb(&[]).await).await;
}

#[cfg(feature = "local")]
#[tokio::test]
async fn verify_without_a_connection_lists_every_connection_on_the_embedded_store() {
    verify_lists_every_connection(Harness::embedded(&[]).await).await;
}

#[tokio::test]
async fn a_bad_connection_name_is_400_on_every_route() {
    let h = Harness::new().await;
    for (route, event) in [
        (Route::TOKEN, "token"),
        (Route::VERIFY, "verify"),
        (Route::REVOKE, "revoke"),
        (Route::LOGIN, "login-json"),
        (Route::LOGIN, "login"),
    ] {
        for bad in ["a%3Ab", "..%2F..%2Fetc", &"x".repeat(65), "", "a%20b"] {
            let reply = h
                .call_request(route, event_with_query(event, &format!("connection={bad}")))
                .await;
            assert_eq!(reply.status, 400, "{event} connection={bad}: {}", reply.body);
        }
    }
}

#[tokio::test]
async fn the_login_form_carries_its_connection_through_the_post() {
    let h = Harness::new().await;
    let page = h
        .call_request(Route::LOGIN, event_with_query("login", "connection=lab-7"))
        .await;
    assert!(page.body.contains(r#"name="connection" value="lab-7""#));

    let mut submit = event_request("login-submit");
    *submit.body_mut() = lambda_http::Body::from("api_key=test-api-key&connection=lab-7");
    let redirect = h.call_request(Route::LOGIN, submit).await;
    assert_eq!(redirect.status, 302);

    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a7", "r7")),
    )
    .await;
    let location = reqwest::Url::parse(redirect.header("location").unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let reply = h
        .call_request(
            Route::CALLBACK,
            event_with_query("callback", &format!("code=c&state={state}")),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("?connection=lab-7"));
    assert!(h.stored_in("lab-7").await.is_some());
    assert!(h.stored().await.is_none());
}
