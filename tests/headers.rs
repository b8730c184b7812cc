//! The headers every answer must carry, whatever the route and whatever went wrong:
//! `Cache-Control: no-store` and `X-Content-Type-Options: nosniff` everywhere; a strict
//! Content-Security-Policy, `Referrer-Policy: no-referrer` and `X-Frame-Options: DENY` on every
//! HTML page; and on every JSON error the body `{"error": "...", "error_description": "..."}`.
//!
//! Each test collects every violation first and fails listing all of them, so one run shows every
//! route and status that needs fixing.

mod common;

use std::time::Duration;

use common::*;
use token_broker::{
    base::record::ConnectionRecord,
    base::store::{Expect, RedisStore, Store, StoreError},
    http::error::BrokerError,
    http::routes::Route,
    oauth::{
        error::FlowError,
        provider::{Outage, ProviderError},
    },
};
use wiremock::{Mock, ResponseTemplate, matchers};

/// A violation per missing or wrong header, and per malformed error body.
fn check(label: &str, status: u16, headers: &lambda_http::http::HeaderMap, body: &str, violations: &mut Vec<String>) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut fail = |what: String| violations.push(format!("{label} (HTTP {status}): {what}"));
    if header("cache-control") != Some("no-store") {
        fail(format!("Cache-Control is {:?}, not no-store", header("cache-control")));
    }
    if header("x-content-type-options") != Some("nosniff") {
        fail(format!(
            "X-Content-Type-Options is {:?}, not nosniff",
            header("x-content-type-options")
        ));
    }
    let content_type = header("content-type").unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("text/html") {
        match header("content-security-policy") {
            Some(csp) if csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'") => {}
            other => fail(format!("HTML page with Content-Security-Policy {other:?}")),
        }
        if header("referrer-policy") != Some("no-referrer") {
            fail(format!(
                "HTML page with Referrer-Policy {:?}",
                header("referrer-policy")
            ));
        }
        if header("x-frame-options") != Some("DENY") {
            fail(format!(
                "HTML page with X-Frame-Options {:?}",
                header("x-frame-options")
            ));
        }
    }
    if (300..400).contains(&status) && header("referrer-policy") != Some("no-referrer") {
        fail(format!("redirect with Referrer-Policy {:?}", header("referrer-policy")));
    }
    if status >= 400 {
        if content_type.starts_with("application/json") {
            match serde_json::from_str::<serde_json::Value>(body) {
                Ok(serde_json::Value::Object(fields)) => {
                    match fields.get("error") {
                        Some(serde_json::Value::String(error)) if !error.is_empty() => {}
                        other => fail(format!("JSON error body whose \"error\" is {other:?}: {body}")),
                    }
                    match fields.get("error_description") {
                        Some(serde_json::Value::String(_)) => {}
                        other => fail(format!(
                            "JSON error body whose \"error_description\" is {other:?}: {body}"
                        )),
                    }
                }
                _ => fail(format!("JSON error response whose body is not a JSON object: {body:?}")),
            }
        } else if !content_type.starts_with("text/html") {
            fail(format!(
                "error response with Content-Type {content_type:?}, neither JSON nor HTML"
            ));
        }
    }
}

fn check_reply(label: &str, reply: &Reply, violations: &mut Vec<String>) {
    check(label, reply.status, &reply.headers, &reply.body, violations);
}

fn assert_none(checked: usize, violations: &[String]) {
    assert!(
        violations.is_empty(),
        "{} of the header and body rules broken ({checked} responses checked):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// A harness with a valid pair for `default` and `lab-2`, a provider that grants and revokes.
async fn stocked() -> Harness {
    let h = Harness::new().await;
    h.seed(&tokens("access-0", "refresh-0", START + 1200, START + 86_400))
        .await;
    h.seed_connection("lab-2", &tokens("access-l", "refresh-l", START + 1200, START + 86_400))
        .await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("access-1", "refresh-1")),
    )
    .await;
    revocation_answers(&h.provider).await;
    h
}

/// `login-json` → Login; `hostile-token-…` → Token.
fn route_of(event: &str) -> Route<RedisStore> {
    let name = event.strip_prefix("hostile-").unwrap_or(event);
    let prefix = name.split('-').next().unwrap();
    Route::from_path(&format!("/{prefix}")).unwrap_or_else(|| panic!("no route for event {event}"))
}

#[tokio::test]
async fn every_event_fixture_is_answered_with_the_security_headers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut events: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    events.sort();
    assert!(events.len() >= 26, "only {} events in {}", events.len(), dir.display());

    let mut violations = Vec::new();
    let mut statuses = std::collections::BTreeSet::new();
    for event in &events {
        let h = stocked().await;
        let route = route_of(event);
        let reply = h.call(route, event).await;
        statuses.insert(reply.status);
        check_reply(
            &format!("events/{event}.json → {}", route.path()),
            &reply,
            &mut violations,
        );
    }
    // The fixtures cover successes, redirects, client errors and method errors.
    for status in [200, 302, 400, 401, 403, 405] {
        assert!(statuses.contains(&status), "no fixture answered {status}: {statuses:?}");
    }
    assert_none(events.len(), &violations);
}

/// The expired pair the failure scenarios of `/token` start from.
async fn expired(provider_answer: Option<ResponseTemplate>) -> Harness {
    let h = Harness::new().await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    if let Some(answer) = provider_answer {
        provider_answers(&h.provider, answer).await;
    }
    h
}

async fn unreadable() -> Harness {
    let h = Harness::new().await;
    h.app
        .store
        .write(&h.tokens_key(), Expect::Any, b"\xff\xfe not a record", None)
        .await
        .unwrap();
    h
}

async fn redis_down() -> Harness {
    Harness::with(&[("REDIS_URL", &format!("redis://127.0.0.1:{}", closed_port()))]).await
}

fn oauth_error(status: u16, error: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(serde_json::json!({"error": error, "error_description": "no"}))
}

#[tokio::test]
async fn every_error_each_route_answers_with_carries_the_security_headers() {
    let mut violations = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut record = |label: String, reply: Reply, violations: &mut Vec<String>| {
        *statuses.entry(reply.status).or_default() += 1;
        check_reply(&label, &reply, violations);
    };

    // /token
    for (label, answer) in [
        ("provider 500", ResponseTemplate::new(500)),
        ("provider 503", ResponseTemplate::new(503)),
        (
            "provider 429",
            ResponseTemplate::new(429).insert_header("retry-after", "7"),
        ),
        ("provider garbage", ResponseTemplate::new(200).set_body_string("<html>")),
        ("provider invalid_client", oauth_error(401, "invalid_client")),
        ("provider invalid_grant", oauth_error(400, "invalid_grant")),
        (
            "provider too slow",
            ResponseTemplate::new(200)
                .set_body_json(grant_body("a", "r"))
                .set_delay(Duration::from_secs(3)),
        ),
    ] {
        let h = expired(Some(answer)).await;
        record(
            format!("/token, {label}"),
            h.call(Route::TOKEN, "token").await,
            &mut violations,
        );
    }
    let h = Harness::new().await;
    record(
        "/token, nothing stored".into(),
        h.call(Route::TOKEN, "token").await,
        &mut violations,
    );
    h.app
        .store
        .write(
            &h.tokens_key(),
            Expect::Any,
            &ConnectionRecord::ReauthorizationRequired {
                reason: "invalid_grant".into(),
                since: START,
            }
            .encode(),
            None,
        )
        .await
        .unwrap();
    record(
        "/token, marked".into(),
        h.call(Route::TOKEN, "token").await,
        &mut violations,
    );
    record(
        "/verify, marked".into(),
        h.call(Route::VERIFY, "verify").await,
        &mut violations,
    );
    for (label, query) in [
        ("bad min_ttl", "min_ttl=-1"),
        ("bad connection", "connection=a%2Fb"),
        ("repeated parameter", "connection=a&connection=a"),
        ("non-UTF-8 query", "connection=%FF"),
    ] {
        record(
            format!("/token, {label}"),
            h.call_request(Route::TOKEN, event_with_query("token", query)).await,
            &mut violations,
        );
    }
    let h = unreadable().await;
    record(
        "/token, unreadable record".into(),
        h.call(Route::TOKEN, "token").await,
        &mut violations,
    );
    record(
        "/verify, unreadable record".into(),
        h.call(Route::VERIFY, "verify").await,
        &mut violations,
    );
    record(
        "/revoke, unreadable record".into(),
        h.call(Route::REVOKE, "revoke").await,
        &mut violations,
    );
    let h = redis_down().await;
    for (route, event) in [
        (Route::TOKEN, "token"),
        (Route::VERIFY, "verify"),
        (Route::REVOKE, "revoke"),
        (Route::CALLBACK, "callback"),
        (Route::CALLBACK, "callback-json"),
        (Route::LOGIN, "login-json"),
        (Route::LOGIN, "login-submit"),
    ] {
        record(
            format!("{}, Redis down, events/{event}.json", route.path()),
            h.call(route, event).await,
            &mut violations,
        );
    }

    // /verify
    let h = expired(None).await;
    record(
        "/verify, access expired".into(),
        h.call(Route::VERIFY, "verify").await,
        &mut violations,
    );
    let h = Harness::new().await;
    record(
        "/verify, nothing stored".into(),
        h.call(Route::VERIFY, "verify").await,
        &mut violations,
    );

    // /revoke
    for (label, answer) in [
        ("revocation 503", ResponseTemplate::new(503)),
        ("revocation 400", oauth_error(400, "unsupported_token_type")),
        (
            "revocation garbage",
            ResponseTemplate::new(401).set_body_string("<html>"),
        ),
    ] {
        let h = expired(None).await;
        Mock::given(matchers::method("POST"))
            .and(matchers::path(REVOCATION_PATH))
            .respond_with(answer)
            .mount(&h.provider)
            .await;
        record(
            format!("/revoke, {label}"),
            h.call(Route::REVOKE, "revoke").await,
            &mut violations,
        );
        record(
            format!("/revoke?force=true, {label}"),
            h.call(Route::REVOKE, "revoke-force").await,
            &mut violations,
        );
    }
    let h = Harness::new().await;
    record(
        "/revoke, nothing stored".into(),
        h.call(Route::REVOKE, "revoke").await,
        &mut violations,
    );
    record(
        "/revoke, bad force".into(),
        h.call_request(Route::REVOKE, event_with_query("revoke", "force=yes"))
            .await,
        &mut violations,
    );

    // /import
    for (label, answer) in [
        ("provider invalid_grant", oauth_error(400, "invalid_grant")),
        ("provider 503", ResponseTemplate::new(503)),
        ("provider garbage", ResponseTemplate::new(200).set_body_string("nope")),
        (
            "provider grants",
            ResponseTemplate::new(200).set_body_json(grant_body("a", "r")),
        ),
    ] {
        let h = Harness::new().await;
        provider_answers(&h.provider, answer).await;
        record(
            format!("/import, {label}"),
            h.call(Route::IMPORT, "import").await,
            &mut violations,
        );
    }
    let h = Harness::new().await;
    let mut bad = event_request("import");
    *bad.body_mut() = lambda_http::Body::Text("{".into());
    record(
        "/import, bad body".into(),
        h.call_request(Route::IMPORT, bad).await,
        &mut violations,
    );

    // /callback, as a browser (HTML) and as an API client (JSON)
    for (label, answer) in [
        ("provider invalid_grant", oauth_error(400, "invalid_grant")),
        ("provider 500", ResponseTemplate::new(500)),
        ("provider garbage", ResponseTemplate::new(200).set_body_string("nope")),
        (
            "provider grants no refresh token",
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": "a", "expires_in": 60})),
        ),
    ] {
        for event in ["callback", "callback-json"] {
            let h = Harness::new().await;
            provider_answers(&h.provider, answer.clone()).await;
            record(
                format!("/callback, {label}, events/{event}.json"),
                h.call(Route::CALLBACK, event).await,
                &mut violations,
            );
        }
    }
    let h = Harness::new().await;
    for query in [
        "code=c&state=x",
        "state=test-oauth-state",
        "code=c",
        "code=c&state=test-oauth-state&state=test-oauth-state",
        "error=access_denied&state=x",
        "error=%3Cb%3E&error_description=%3Cscript%3E&state=test-oauth-state",
    ] {
        for event in ["callback", "callback-json"] {
            record(
                format!("/callback?{query}, events/{event}.json"),
                h.call_request(Route::CALLBACK, event_with_query(event, query)).await,
                &mut violations,
            );
        }
    }

    // /login
    let h = Harness::new().await;
    for (label, query) in [
        ("bad connection", "connection=%3Cx%3E"),
        ("non-UTF-8", "connection=%FF"),
    ] {
        for event in ["login", "login-json"] {
            record(
                format!("/login, {label}, events/{event}.json"),
                h.call_request(Route::LOGIN, event_with_query(event, query)).await,
                &mut violations,
            );
        }
    }
    let mut request = event_request("login-submit");
    request
        .headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    record(
        "/login POST, wrong content type".into(),
        h.call_request(Route::LOGIN, request).await,
        &mut violations,
    );
    let mut request = event_request("login-submit");
    *request.body_mut() = lambda_http::Body::Binary(b"api_key=\xff\xfe".to_vec());
    record(
        "/login POST, non-UTF-8 form".into(),
        h.call_request(Route::LOGIN, request).await,
        &mut violations,
    );

    // Every status the README lists for these routes was produced at least once.
    for status in [200, 202, 400, 401, 403, 404, 500, 502, 503] {
        assert!(
            statuses.contains_key(&status),
            "no scenario answered {status}: {statuses:?}"
        );
    }
    assert_none(statuses.values().sum(), &violations);
}

/// Every kind of failure, turned into a response both ways: the one place where errors become
/// responses must decorate all of them.
#[test]
fn every_broker_error_as_json_and_as_html_carries_the_security_headers() {
    type Make = Box<dyn Fn() -> BrokerError>;
    let errors: Vec<(&str, Make)> = vec![
        (
            "MethodNotAllowed",
            Box::new(|| BrokerError::MethodNotAllowed { allow: "GET" }),
        ),
        ("BadRequest", Box::new(|| BrokerError::BadRequest("bad <b>".into()))),
        ("KeyInQuery", Box::new(|| BrokerError::KeyInQuery)),
        (
            "Unauthorized (key presented)",
            Box::new(|| BrokerError::Unauthorized { key_presented: true }),
        ),
        (
            "Unauthorized (no key)",
            Box::new(|| BrokerError::Unauthorized { key_presented: false }),
        ),
        ("InvalidState", Box::new(|| BrokerError::InvalidState)),
        (
            "AuthorizationDenied",
            Box::new(|| BrokerError::AuthorizationDenied {
                error: "access_denied".into(),
                description: None,
            }),
        ),
        (
            "ReauthorizationRequired",
            Box::new(|| BrokerError::from(FlowError::ReauthorizationRequired { reason: "r".into() })),
        ),
        (
            "Provider Refused",
            Box::new(|| {
                BrokerError::from(ProviderError::Refused {
                    status: 400,
                    error: "invalid_client".into(),
                    description: None,
                })
            }),
        ),
        (
            "Provider Malformed",
            Box::new(|| {
                BrokerError::from(ProviderError::Malformed {
                    status: 200,
                    detail: "x".into(),
                })
            }),
        ),
        (
            "StoreUnavailable",
            Box::new(|| BrokerError::from(StoreError::Unavailable("x".into()))),
        ),
        (
            "StoreProtocol",
            Box::new(|| BrokerError::from(StoreError::Protocol("x".into()))),
        ),
        ("RefreshBusy", Box::new(|| BrokerError::from(FlowError::RefreshBusy))),
        (
            "NotFound",
            Box::new(|| BrokerError::NotFound { serves: vec!["/token"] }),
        ),
        ("Internal", Box::new(|| BrokerError::from(FlowError::Internal("x")))),
    ];
    let mut violations = Vec::new();
    let mut checked = 0;
    let mut run = |label: String, error: &dyn Fn() -> BrokerError| {
        for (form, response) in [("JSON", error().into_json()), ("HTML", error().into_html())] {
            let (parts, body) = response.into_parts();
            let body = match body {
                lambda_http::Body::Text(text) => text,
                lambda_http::Body::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                _ => String::new(),
            };
            checked += 1;
            check(
                &format!("BrokerError::{label} as {form}"),
                parts.status.as_u16(),
                &parts.headers,
                &body,
                &mut violations,
            );
        }
    };
    for (label, error) in &errors {
        run((*label).to_owned(), error.as_ref());
    }
    for outage in [
        Outage::Timeout,
        Outage::Connect,
        Outage::Interrupted,
        Outage::Status(429),
        Outage::Status(500),
        Outage::Status(503),
    ] {
        run(format!("Provider Unavailable ({outage})"), &move || {
            BrokerError::from(ProviderError::Unavailable {
                outage,
                retry_after: Some(1),
            })
        });
    }
    run("StoreUnreadable".into(), &move || {
        BrokerError::from(token_broker::base::record::ConnectionRecord::decode(b"garbage").unwrap_err())
    });
    assert_none(checked, &violations);
}
