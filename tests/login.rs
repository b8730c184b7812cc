//! `/login` and the one-time state it issues: PKCE S256, single use, expiry, and the form that
//! keeps the API key out of URLs.

mod common;

use std::collections::HashMap;

use common::*;
use token_broker::{http::routes::Route, oauth::authorization::s256_challenge};
use wiremock::ResponseTemplate;

fn query_of(url: &str) -> HashMap<String, String> {
    let url = reqwest::Url::parse(url).unwrap();
    url.query_pairs().into_owned().collect()
}

async fn start_login(h: &Harness) -> HashMap<String, String> {
    let reply = h.call(Route::LOGIN, "login-json").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    query_of(reply.json()["authorization_url"].as_str().unwrap())
}

fn callback_with(state: &str) -> lambda_http::Request {
    event_with_query("callback", &format!("code=one-time-code&state={state}"))
}

#[tokio::test]
async fn browser_get_shows_a_key_form_whose_policy_allows_only_the_provider_redirect() {
    let h = Harness::new().await;

    let reply = h.call(Route::LOGIN, "login").await;

    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
    assert!(reply.body.contains(r#"<form method="post" action="login">"#));
    assert!(reply.body.contains(r#"name="api_key" type="password""#));
    let csp = reply.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(
        csp.contains(&format!("form-action 'self' {}", h.provider.uri())),
        "{csp}"
    );
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(reply.header("x-frame-options"), Some("DENY"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn headless_login_returns_an_authorization_url_with_pkce_and_a_fresh_state() {
    let h = Harness::new().await;

    let reply = h.call(Route::LOGIN, "login-json").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["expires_at"], START + 600);
    let url = reqwest::Url::parse(reply.json()["authorization_url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), AUTHORIZE_PATH);
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["redirect_uri"], REDIRECT_URI);
    assert_eq!(params["scope"], "products offline_access");
    // offline_access is honoured only with prompt=consent (OpenID Connect Core §11).
    assert_eq!(params["prompt"], "consent");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["state"].len(), 43);
    assert_eq!(params["code_challenge"].len(), 43);
    assert_ne!(params["state"], OAUTH_STATE);

    let again = start_login(&h).await;
    assert_ne!(again["state"], params["state"]);
    assert_ne!(again["code_challenge"], params["code_challenge"]);
}

#[tokio::test]
async fn headless_login_requires_the_api_key() {
    let h = Harness::new().await;
    let reply = h.call(Route::LOGIN, "login-json-wrong-key").await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error(), "unauthorized");
}

#[tokio::test]
async fn submitting_the_form_redirects_to_the_provider() {
    let h = Harness::new().await;

    let reply = h.call(Route::LOGIN, "login-submit").await;

    assert_eq!(reply.status, 302, "{}", reply.body);
    let location = reply.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{}{AUTHORIZE_PATH}?", h.provider.uri())),
        "{location}"
    );
    assert!(!location.contains(API_KEY));
    assert_eq!(query_of(location)["code_challenge_method"], "S256");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn a_wrong_key_in_the_form_is_refused_with_the_form_again() {
    let h = Harness::new().await;

    let reply = h.call(Route::LOGIN, "login-submit-wrong-key").await;

    assert_eq!(reply.status, 401);
    assert!(reply.body.contains("not valid"));
    assert!(reply.body.contains("<form"));
    assert!(!reply.body.contains("wrong-api-key"));
}

#[tokio::test]
async fn other_methods_are_405() {
    let h = Harness::new().await;
    let reply = h.call(Route::LOGIN, "login-put").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, POST"));
}

#[tokio::test]
async fn callback_sends_the_verifier_of_the_one_time_state() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;
    let login = start_login(&h).await;

    let reply = h.call_request(Route::CALLBACK, callback_with(&login["state"])).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    let form = &h.token_requests().await[0];
    let verifier = &form["code_verifier"];
    assert!((43..=128).contains(&verifier.len()));
    assert!(
        verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    );
    assert_eq!(s256_challenge(verifier), login["code_challenge"]);
    assert_eq!(form["code"], "one-time-code");
    assert_eq!(h.stored_tokens().await.access_token.expose(), "a");
}

#[tokio::test]
async fn a_one_time_state_works_exactly_once() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;
    let state = start_login(&h).await["state"].clone();

    assert_eq!(h.call_request(Route::CALLBACK, callback_with(&state)).await.status, 200);
    let replay = h.call_request(Route::CALLBACK, callback_with(&state)).await;

    assert_eq!(replay.status, 403);
    assert!(replay.body.contains("invalid_state"));
    assert_eq!(h.token_requests().await.len(), 1);
}

#[tokio::test]
async fn an_expired_state_is_refused() {
    let h = Harness::new().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;
    let state = start_login(&h).await["state"].clone();

    h.clock.advance(601);
    let reply = h.call_request(Route::CALLBACK, callback_with(&state)).await;

    assert_eq!(reply.status, 403);
    assert!(h.token_requests().await.is_empty());
    assert!(h.stored().await.is_none());
}

#[tokio::test]
async fn an_unknown_state_is_refused() {
    let h = Harness::new().await;
    let made_up = "A".repeat(43);
    let reply = h.call_request(Route::CALLBACK, callback_with(&made_up)).await;
    assert_eq!(reply.status, 403);
    assert!(h.provider.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_static_state_can_be_switched_off() {
    let h = Harness::with(&[("ALLOW_STATIC_STATE", "false")]).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;

    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 403);
    let state = start_login(&h).await["state"].clone();
    assert_eq!(h.call_request(Route::CALLBACK, callback_with(&state)).await.status, 200);
}

#[tokio::test]
async fn an_error_redirect_with_a_one_time_state_shows_the_escaped_description_and_uses_up_the_state() {
    let h = Harness::new().await;
    let state = start_login(&h).await["state"].clone();
    let query = format!("error=access_denied&error_description=%3Cimg+src%3Dx%3E+declined&state={state}");

    let reply = h
        .call_request(Route::CALLBACK, event_with_query("callback", &query))
        .await;

    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("&lt;img src=x&gt; declined"));
    assert!(!reply.body.contains("<img"));
    let replay = h.call_request(Route::CALLBACK, callback_with(&state)).await;
    assert_eq!(replay.status, 403);
}

#[tokio::test]
async fn with_an_issuer_configured_the_callback_requires_a_matching_iss() {
    let h = Harness::with(&[("ISSUER", "https://provider.example")]).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;

    for iss in ["", "&iss=https%3A%2F%2Fevil.example"] {
        let state = start_login(&h).await["state"].clone();
        let query = format!("code=c&state={state}{iss}");
        let reply = h
            .call_request(Route::CALLBACK, event_with_query("callback", &query))
            .await;
        assert_eq!(reply.status, 403, "{iss}");
        assert!(reply.body.contains("invalid_issuer"));
    }
    assert!(h.token_requests().await.is_empty());

    let state = start_login(&h).await["state"].clone();
    let query = format!("code=c&state={state}&iss=https%3A%2F%2Fprovider.example");
    assert_eq!(
        h.call_request(Route::CALLBACK, event_with_query("callback", &query))
            .await
            .status,
        200
    );
}

/// The `redirect_uri` of a login started by `event` on a deployment with `overrides`.
async fn redirect_of(overrides: &[(&str, &str)], event: &str) -> String {
    let h = Harness::with(overrides).await;
    let reply = h.call(Route::LOGIN, event).await;
    assert_eq!(reply.status, 200, "{event}: {}", reply.body);
    query_of(reply.json()["authorization_url"].as_str().unwrap())["redirect_uri"].clone()
}

#[tokio::test]
async fn without_redirect_uri_the_callback_is_derived_from_api_gateways_domain_and_path() {
    let unpinned = [("REDIRECT_URI", "")];
    // The execute-api domain with the $default stage, which is not in the path.
    assert_eq!(
        redirect_of(&unpinned, "login-json").await,
        "https://abc123.execute-api.eu-west-1.amazonaws.com/callback"
    );
    // A named stage is part of the path.
    assert_eq!(
        redirect_of(&unpinned, "login-json-stage").await,
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/callback"
    );
    // A custom domain with its API mapping's base path.
    assert_eq!(
        redirect_of(&unpinned, "login-json-custom-domain").await,
        "https://auth.example.com/broker/callback"
    );
}

#[tokio::test]
async fn a_pinned_redirect_uri_or_public_url_wins_over_the_request() {
    assert_eq!(redirect_of(&[], "login-json-custom-domain").await, REDIRECT_URI);
    let public = [("REDIRECT_URI", ""), ("PUBLIC_URL", "https://tokens.example.org/")];
    assert_eq!(
        redirect_of(&public, "login-json-custom-domain").await,
        "https://tokens.example.org/callback"
    );
}

#[tokio::test]
async fn the_code_exchange_repeats_the_redirect_uri_its_login_sent() {
    let h = Harness::with(&[("REDIRECT_URI", "")]).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;
    let login = h.call(Route::LOGIN, "login-json-custom-domain").await;
    let state = query_of(login.json()["authorization_url"].as_str().unwrap())["state"].clone();

    // The browser comes back through the execute-api domain: the exchange still names the
    // address the authorization request did, as RFC 6749 §4.1.3 requires.
    let reply = h.call_request(Route::CALLBACK, callback_with(&state)).await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        h.token_requests().await[0]["redirect_uri"],
        "https://auth.example.com/broker/callback"
    );
}

#[tokio::test]
async fn a_hand_built_login_exchanges_its_code_with_the_callbacks_own_address() {
    let h = Harness::with(&[("REDIRECT_URI", "")]).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
    )
    .await;

    let reply = h.call(Route::CALLBACK, "callback").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        h.token_requests().await[0]["redirect_uri"],
        "https://abc123.execute-api.eu-west-1.amazonaws.com/callback"
    );
}

#[tokio::test]
async fn without_a_domain_or_host_the_login_says_to_set_public_url() {
    let h = Harness::with(&[("REDIRECT_URI", "")]).await;
    let mut request = event_request("login-json");
    request.extensions_mut().clear();
    request.headers_mut().remove("host");
    let reply = h.call_request(Route::LOGIN, request).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(reply.error(), "redirect_uri_unknown");
    assert!(
        reply.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("PUBLIC_URL")
    );
}
