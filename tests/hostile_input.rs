//! Hostile input from every side: clients (methods, query strings, headers, API keys), API
//! Gateway (events the Lambda runtime cannot turn into a request), the provider (huge, slow,
//! broken or misleading answers on both the code exchange and the refresh), and the store
//! (records that cannot be read).
//!
//! Every case must get a clear answer (the documented status with a JSON
//! `{"error", "error_description"}` body, or the HTML error page on the browser-facing routes)
//! and change nothing stored.

mod common;

use std::{
    any::Any,
    collections::BTreeMap,
    future::Future,
    panic::{self, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use common::*;
use lambda_http::{
    Body, Request,
    http::{HeaderValue, Method},
};
use serde_json::Value;
use token_broker::{
    base::{
        record::ConnectionRecord,
        sealing::{Sealer, parse_key},
        store::{Expect, RedisStore, Store, Versioned},
    },
    http::routes::Route,
    oauth::keepalive,
    serve::lambda::sanitize,
};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

// ---------------------------------------------------------------------------------------------
// Tables of cases
// ---------------------------------------------------------------------------------------------

/// One named case's check, run by [`check_all`].
type Check<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

fn case<'a>(name: impl Into<String>, check: impl Future<Output = ()> + 'a) -> (String, Check<'a>) {
    (name.into(), Box::pin(check))
}

/// Runs every case in turn and fails once at the end, listing each case that failed with its
/// message: one run shows everything that is broken, not only the first.
async fn check_all<'a>(cases: impl IntoIterator<Item = (String, Check<'a>)>) {
    let mut failed = Vec::new();
    let mut run = 0;
    for (name, check) in cases {
        run += 1;
        if let Err(message) = (CatchUnwind(check)).await {
            failed.push(if message.contains(&name) {
                message
            } else {
                format!("{name}: {message}")
            });
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {run} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A check whose panic becomes `Err(message)`, so the cases after it still run.
struct CatchUnwind<'a>(Check<'a>);

impl Future for CatchUnwind<'_> {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let check = &mut self.0;
        match panic::catch_unwind(AssertUnwindSafe(|| check.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => Poll::Ready(Err(panic_message(payload))),
        }
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Set-up and expectations
// ---------------------------------------------------------------------------------------------

/// A harness with a valid pair for `default` and `lab-2`, and a provider that would grant and
/// revoke anything: a hostile request that slips through shows up as a provider call or a
/// changed record.
async fn stocked() -> Harness {
    let h = Harness::new().await;
    h.seed(&tokens("access-0", "refresh-0", START + 1200, START + 86_400))
        .await;
    h.seed_connection("lab-2", &tokens("access-l", "refresh-l", START + 1200, START + 86_400))
        .await;
    provider_grants_and_revokes(&h, "access-new", "refresh-new").await;
    h
}

/// The provider grants `access`/`refresh` to every token request and accepts every revocation.
async fn provider_grants_and_revokes<S>(h: &Harness<S>, access: &str, refresh: &str) {
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body(access, refresh)),
    )
    .await;
    revocation_answers(&h.provider).await;
}

/// Every record under the harness's prefix (tokens and login states), with its generation.
async fn snapshot<S: Store>(h: &Harness<S>) -> BTreeMap<String, Versioned> {
    let prefix = format!("{}:", h.app.config.key_prefix);
    let mut all = BTreeMap::new();
    for key in h.app.store.keys(&prefix).await.unwrap() {
        if key.ends_with(":refresh-lock") {
            continue;
        }
        if let Some(value) = h.app.store.load(&key).await.unwrap() {
            all.insert(key, value);
        }
    }
    all
}

async fn provider_calls<S>(h: &Harness<S>) -> usize {
    h.provider.received_requests().await.unwrap_or_default().len()
}

/// Writes `bytes` under `key` as they are, whatever the broker would make of them.
async fn put_raw<S: Store>(h: &Harness<S>, key: &str, bytes: &[u8]) {
    h.app.store.write(key, Expect::Any, bytes, None).await.unwrap().unwrap();
}

/// The one-time state a `/login` (JSON) issues.
async fn one_time_state<S: Store>(h: &Harness<S>) -> String {
    let login = h.call(Route::LOGIN, "login-json").await;
    let url = reqwest::Url::parse(login.json()["authorization_url"].as_str().unwrap()).unwrap();
    url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned()
}

/// An event from `events/`, changed as a hostile client would.
struct Req(Request);

impl Req {
    fn event(name: &str) -> Self {
        Self(event_request(name))
    }

    fn method(mut self, method: &str) -> Self {
        *self.0.method_mut() = Method::from_bytes(method.as_bytes()).unwrap();
        self
    }

    /// Replaces the query string.
    fn query(mut self, query: &str) -> Self {
        let path = self.0.uri().path().to_owned();
        *self.0.uri_mut() = format!("{path}?{query}")
            .parse()
            .unwrap_or_else(|e| panic!("{query:?}: {e}"));
        self
    }

    fn header(mut self, name: &'static str, value: &[u8]) -> Self {
        self.0
            .headers_mut()
            .insert(name, HeaderValue::from_bytes(value).unwrap());
        self
    }

    fn append_header(mut self, name: &'static str, value: &[u8]) -> Self {
        self.0
            .headers_mut()
            .append(name, HeaderValue::from_bytes(value).unwrap());
        self
    }

    fn without(mut self, name: &'static str) -> Self {
        self.0.headers_mut().remove(name);
        self
    }

    fn body(mut self, body: &[u8]) -> Self {
        *self.0.body_mut() = Body::Binary(body.to_vec());
        self
    }
}

/// What is wrong with `reply` as the error `status`/`error` in the form owed (the HTML page
/// naming the code when `html`, else a JSON `{"error", "error_description"}` body), if anything.
fn misshapen(reply: &Reply, html: bool, status: u16, error: &str) -> Option<String> {
    let body: String = reply.body.chars().take(300).collect();
    let content_type = reply.header("content-type");
    if reply.status != status {
        return Some(format!("answered HTTP {} {body}", reply.status));
    }
    if html {
        if !content_type.unwrap_or("").starts_with("text/html") {
            return Some(format!("not HTML: {content_type:?}"));
        }
        if !reply.body.contains(&format!("<code>{error}</code>")) {
            return Some(format!("the page does not name {error}: {body}"));
        }
    } else {
        if !content_type.unwrap_or("").starts_with("application/json") {
            return Some(format!("not JSON: {content_type:?}"));
        }
        let shaped = serde_json::from_str::<Value>(&reply.body).is_ok_and(|body| {
            body["error"] == error && body["error_description"].as_str().is_some_and(|d| !d.is_empty())
        });
        if !shaped {
            return Some(format!("not error {error} with a description: {body}"));
        }
    }
    None
}

/// Whether a route answers this event with HTML (browser-facing routes without JSON `Accept`).
fn html_expected(event: &str) -> bool {
    matches!(event, "callback" | "login" | "login-submit")
}

/// A JSON error with the documented shape.
#[track_caller]
fn expect_json_error(label: &str, reply: &Reply, status: u16, error: &str) {
    if let Some(problem) = misshapen(reply, false, status, error) {
        panic!("{label}: expected {status} {error}; {problem}");
    }
}

/// The error in the form the route owes `event`: JSON, or the HTML page naming the code.
#[track_caller]
fn expect_error(label: &str, event: &str, reply: &Reply, status: u16, error: &str) {
    if let Some(problem) = misshapen(reply, html_expected(event), status, error) {
        panic!("{label}: expected {status} {error}; {problem}");
    }
}

/// A hostile request and the refusal it must get: `status` and `error` in the form the route
/// owes (JSON, or the HTML page), nothing stored changed, no provider call, and no stored token
/// in the answer.
struct Refusal {
    name: String,
    route: Route<RedisStore>,
    request: Req,
    /// The HTML error page is owed, not JSON.
    html: bool,
    status: u16,
    error: &'static str,
    /// The exact `Allow` header owed (on a 405).
    allow: Option<&'static str>,
    /// Sent to a freshly stocked harness: a request that slipped through may have revoked.
    fresh: bool,
}

impl Refusal {
    /// `request`, made from `event`, refused with 400 `invalid_request`.
    fn new(name: impl Into<String>, route: Route<RedisStore>, event: &str, request: Req) -> Self {
        Self {
            name: name.into(),
            route,
            request,
            html: html_expected(event),
            status: 400,
            error: "invalid_request",
            allow: None,
            fresh: false,
        }
    }

    /// `event` with `query` for its query string, refused with 400 `invalid_request`.
    fn query(route: Route<RedisStore>, event: &str, query: &str) -> Self {
        Self::new(
            format!("{}?{query}", route.path()),
            route,
            event,
            Req::event(event).query(query),
        )
    }

    /// The login form posted with `body`, refused with the 400 page (and no state issued).
    fn login_form(name: impl Into<String>, body: &[u8]) -> Self {
        Self::new(
            name,
            Route::LOGIN,
            "login-submit",
            Req::event("login-submit").body(body),
        )
    }

    fn answered(self, status: u16, error: &'static str) -> Self {
        Self { status, error, ..self }
    }

    fn allow(self, allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..self
        }
    }

    /// Owed as JSON whatever the event (the client asked for JSON).
    fn in_json(self) -> Self {
        Self { html: false, ..self }
    }

    fn fresh(self) -> Self {
        Self { fresh: true, ..self }
    }

    /// This case as a check on `h` (or on a harness of its own).
    fn on(self, h: &Harness) -> (String, Check<'_>) {
        let name = self.name.clone();
        (
            name,
            Box::pin(async move {
                if self.fresh {
                    refused_without_effect(&stocked().await, self).await;
                } else {
                    refused_without_effect(h, self).await;
                }
            }),
        )
    }
}

/// Sends the case's request and fails naming every way the outcome differs from the refusal.
async fn refused_without_effect(h: &Harness, case: Refusal) {
    let before = snapshot(h).await;
    let calls = provider_calls(h).await;
    let reply = h.call_request(case.route, case.request.0).await;
    let mut problems = Vec::new();
    problems.extend(misshapen(&reply, case.html, case.status, case.error));
    // Every 401 carries a bearer challenge (RFC 6750 §3).
    if case.status == 401
        && !reply
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer realm="))
    {
        problems.push(format!("WWW-Authenticate: {:?}", reply.header("www-authenticate")));
    }
    if case.allow.is_some() && reply.header("allow") != case.allow {
        problems.push(format!("Allow: {:?}", reply.header("allow")));
    }
    if reply.body.contains("access-0") {
        problems.push("the answer holds the stored access token".to_owned());
    }
    if snapshot(h).await != before {
        problems.push("the store changed".to_owned());
    }
    if provider_calls(h).await != calls {
        problems.push("the provider was called".to_owned());
    }
    assert!(
        problems.is_empty(),
        "{}: expected {} {}; {}",
        case.name,
        case.status,
        case.error,
        problems.join("; ")
    );
}

/// Every case refused without effect, on `h` unless it asks for a harness of its own.
async fn all_refused(h: &Harness, cases: Vec<Refusal>) {
    check_all(cases.into_iter().map(|case| case.on(h))).await;
}

/// The events that reach each route's main path with valid credentials.
const QUERY_ROUTES: [(Route<RedisStore>, &str); 7] = [
    (Route::LOGIN, "login"),
    (Route::LOGIN, "login-json"),
    (Route::CALLBACK, "callback"),
    (Route::CALLBACK, "callback-json"),
    (Route::TOKEN, "token"),
    (Route::VERIFY, "verify"),
    (Route::REVOKE, "revoke"),
];

/// The routes that take the API key in a header.
const KEYED: [(Route<RedisStore>, &str); 4] = [
    (Route::TOKEN, "token"),
    (Route::VERIFY, "verify"),
    (Route::REVOKE, "revoke"),
    (Route::LOGIN, "login-json"),
];

// ---------------------------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_route_refuses_other_methods_with_405_and_allow() {
    let h = stocked().await;
    let routes = [
        (Route::LOGIN, "login-json", "GET, POST"),
        (Route::CALLBACK, "callback", "GET"),
        (Route::CALLBACK, "callback-json", "GET"),
        (Route::TOKEN, "token", "GET"),
        (Route::VERIFY, "verify", "GET"),
        (Route::REVOKE, "revoke", "POST"),
    ];
    let methods = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "get", "post",
    ];
    let mut cases = Vec::new();
    for (route, event, allow) in routes {
        for method in methods.into_iter().filter(|m| !allow.split(", ").any(|a| a == *m)) {
            cases.push(
                Refusal::new(
                    format!("{method} {}", route.path()),
                    route,
                    event,
                    Req::event(event).method(method),
                )
                .answered(405, "method_not_allowed")
                .allow(allow),
            );
        }
    }
    assert!(cases.len() >= 55, "{}", cases.len());
    all_refused(&h, cases).await;
    assert_eq!(provider_calls(&h).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn query_strings_over_4_kib_are_400_on_every_route() {
    let h = stocked().await;
    let long = format!("connection=default&pad={}", "a".repeat(5000));
    let cases = QUERY_ROUTES.map(|(route, event)| {
        Refusal::new(
            format!("{} with a 5 KB query", route.path()),
            route,
            event,
            Req::event(event).query(&long),
        )
    });
    all_refused(&h, cases.into()).await;
}

#[tokio::test]
async fn the_query_limit_is_exactly_4096_bytes() {
    let h = stocked().await;
    let at_limit = format!("pad={}", "a".repeat(4096 - 4));
    assert_eq!(at_limit.len(), 4096);
    let reply = h
        .call_request(Route::TOKEN, Req::event("token").query(&at_limit).0)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let over = format!("{at_limit}a");
    refused_without_effect(
        &h,
        Refusal::new("4097 bytes", Route::TOKEN, "token", Req::event("token").query(&over)),
    )
    .await;
}

#[tokio::test]
async fn repeated_parameters_are_400_and_nothing_happens() {
    let h = stocked().await;
    let cases = vec![
        Refusal::query(Route::TOKEN, "token", "connection=default&connection=default"),
        Refusal::query(Route::TOKEN, "token", "connection=default&connection"),
        Refusal::query(Route::TOKEN, "token", "min_ttl=1&min_ttl=2"),
        Refusal::query(Route::VERIFY, "verify", "connection=default&connection=lab-2"),
        // Which of the two would a proxy have seen? Neither revokes.
        Refusal::query(Route::REVOKE, "revoke", "force=false&force=true"),
        Refusal::query(Route::REVOKE, "revoke", "connection=lab-2&connection=default"),
        Refusal::query(Route::CALLBACK, "callback", "code=a&code=a&state=test-oauth-state"),
        Refusal::query(
            Route::CALLBACK,
            "callback-json",
            "code=a&state=test-oauth-state&state=test-oauth-state",
        ),
        Refusal::query(
            Route::CALLBACK,
            "callback-json",
            "code=a&state=forged&state=test-oauth-state",
        ),
        Refusal::query(Route::LOGIN, "login", "connection=a&connection=a"),
        Refusal::query(Route::LOGIN, "login-json", "connection=a&connection=b"),
        // The login form, whose body follows the same rules: no state may be issued.
        Refusal::login_form(
            "POST /login api_key twice",
            b"api_key=test-api-key&api_key=test-api-key",
        ),
    ];
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn percent_encoded_bytes_that_are_not_utf8_are_400_on_every_route() {
    let h = stocked().await;
    let mut cases = Vec::new();
    // Invalid start bytes, a cut sequence, an overlong '/', a UTF-16 surrogate.
    for bad in ["%FF%FE", "%C3%28", "%C0%AF", "%ED%A0%80", "%E2%82"] {
        for (route, event) in QUERY_ROUTES {
            let query = if route == Route::CALLBACK {
                format!("code=c{bad}&state=test-oauth-state")
            } else {
                format!("connection=default&x={bad}")
            };
            cases.push(Refusal::query(route, event, &query));
        }
        cases.push(Refusal::login_form(
            format!("POST /login api_key={bad}"),
            format!("api_key={bad}").as_bytes(),
        ));
    }
    cases.push(Refusal::login_form(
        "POST /login with raw non-UTF-8 bytes",
        b"api_key=test-api-key&x=\xff\xfe",
    ));
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn non_utf8_is_refused_even_beside_a_literal_replacement_character() {
    let h = stocked().await;
    // API Gateway passes raw non-ASCII query bytes through (lambda_http accepts them).
    let cases = vec![
        Refusal::query(
            Route::CALLBACK,
            "callback-json",
            "x=\u{FFFD}&code=%FF%FE&state=test-oauth-state",
        ),
        Refusal::query(
            Route::REVOKE,
            "revoke",
            "x=\u{FFFD}&connection=default&force=true&y=%FF",
        ),
    ];
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn invalid_percent_encoding_is_400_invalid_request() {
    let h = stocked().await;
    let mut cases = vec![Refusal::new(
        "events/hostile-callback-invalid-percent.json",
        Route::CALLBACK,
        "callback-json",
        Req::event("hostile-callback-invalid-percent"),
    )];
    for bad in ["%ZZ", "%4", "%", "%%", "%G0", "%+1"] {
        for (route, event, query) in [
            (Route::TOKEN, "token", format!("x={bad}")),
            (Route::TOKEN, "token", format!("{bad}=1")),
            (Route::VERIFY, "verify", format!("connection=default&x=a{bad}")),
            (Route::REVOKE, "revoke", format!("force=true&x={bad}")),
            (
                Route::CALLBACK,
                "callback-json",
                format!("code=AB{bad}&state=test-oauth-state"),
            ),
            (
                Route::CALLBACK,
                "callback",
                format!("code=AB&state=test-oauth-state&x={bad}"),
            ),
            (Route::LOGIN, "login-json", format!("x={bad}")),
        ] {
            cases.push(Refusal::query(route, event, &query).fresh());
        }
        let body = format!("api_key=test-api-key&x={bad}");
        cases.push(Refusal::login_form(format!("POST /login {body}"), body.as_bytes()));
    }
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn nul_bytes_in_parameters_are_refused_where_they_would_matter() {
    let h = stocked().await;
    let cases = [
        (Route::TOKEN, "token", "connection=default%00"),
        (Route::TOKEN, "token", "min_ttl=5%00"),
        (Route::VERIFY, "verify", "connection=%00"),
        (Route::REVOKE, "revoke", "force=true%00"),
        (Route::REVOKE, "revoke", "connection=default%00"),
        (Route::LOGIN, "login-json", "connection=lab%002"),
        // Control characters are refused by the query parser, before any state is looked at.
        (Route::CALLBACK, "callback", "code=c&state=test-oauth-state%00"),
        (Route::CALLBACK, "callback-json", "code=c&state=%00"),
    ];
    all_refused(
        &h,
        cases
            .into_iter()
            .map(|(route, event, query)| Refusal::query(route, event, query))
            .collect(),
    )
    .await;
}

#[tokio::test]
async fn a_code_with_control_characters_is_refused_without_calling_the_provider() {
    let h = stocked().await;
    let cases = [
        "code=AB%00CD&state=test-oauth-state",
        "code=AB%0D%0ACD&state=test-oauth-state",
        "code=AB%7FCD&state=test-oauth-state",
    ];
    all_refused(
        &h,
        cases
            .into_iter()
            .map(|query| Refusal::query(Route::CALLBACK, "callback-json", query))
            .collect(),
    )
    .await;
}

#[tokio::test]
async fn hostile_connection_names_min_ttls_and_force_values_are_400() {
    let h = stocked().await;
    let long_name = "x".repeat(65);
    let mut cases = Vec::new();
    for name in [
        "",
        "..%2Fdefault",
        "default%0A",
        "a+b",
        "%C3%A4",
        "*",
        "default:tokens",
        "default%2F..",
        &long_name,
    ] {
        for (route, event) in KEYED {
            cases.push(Refusal::query(route, event, &format!("connection={name}")));
        }
    }
    for min_ttl in [
        "-1",
        "86401",
        "1e3",
        "99999999999999999999",
        "",
        "%205",
        "5s",
        "0x10",
        "NaN",
        "1.5",
    ] {
        cases.push(Refusal::query(Route::TOKEN, "token", &format!("min_ttl={min_ttl}")));
    }
    for force in ["TRUE", "1", "yes", "", "true%20", "on"] {
        cases.push(Refusal::query(Route::REVOKE, "revoke", &format!("force={force}")));
    }
    // The login form refuses a bad connection before it looks at the key: no state is issued.
    cases.push(Refusal::login_form(
        "POST /login connection=../x",
        b"api_key=test-api-key&connection=..%2Fx",
    ));
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn hostile_login_form_posts_are_refused_with_the_html_page_and_issue_no_state() {
    let h = stocked().await;
    let oversized = format!("api_key=test-api-key&pad={}", "a".repeat(5000));
    let long_type = format!("application/{}", "x".repeat(65536));
    let form = |name: &str, request: Req| Refusal::new(name, Route::LOGIN, "login-submit", request);
    let cases = vec![
        form(
            "text/plain body",
            Req::event("login-submit").header("content-type", b"text/plain"),
        ),
        form(
            "JSON body",
            Req::event("login-submit")
                .header("content-type", b"application/json")
                .body(br#"{"api_key":"test-api-key"}"#),
        ),
        form("no content type", Req::event("login-submit").without("content-type")),
        form("5 KB body", Req::event("login-submit").body(oversized.as_bytes())),
        form(
            "64 KiB media type",
            Req::event("login-submit").header("content-type", long_type.as_bytes()),
        ),
        // The right key with a NUL appended is not a key at all: the form itself is refused.
        Refusal::login_form("the right key with a NUL appended", b"api_key=test-api-key%00"),
    ];
    all_refused(&h, cases).await;
    // A wrong key gets the form again, still without a state.
    let wrong_keys = [&b"api_key="[..], b"", b"api_key=TEST-API-KEY", b"api_key"];
    let shared = &h;
    check_all(wrong_keys.map(|body| {
        let name = format!("{:?}", String::from_utf8_lossy(body));
        case(name.clone(), async move {
            let h = shared;
            let before = snapshot(h).await;
            let reply = h
                .call_request(Route::LOGIN, Req::event("login-submit").body(body).0)
                .await;
            assert_eq!(reply.status, 401, "{name}: {}", reply.body);
            assert!(reply.body.contains("<form"), "{name}: no form");
            assert_eq!(snapshot(h).await, before, "{name}: the store changed");
        })
    }))
    .await;
    assert_eq!(provider_calls(&h).await, 0);
}

#[tokio::test]
async fn hostile_event_fixtures_get_their_documented_answers() {
    let h = stocked().await;
    // API Gateway may base64-encode a form post; decoded, it is the same login.
    let reply = h.call(Route::LOGIN, "hostile-login-submit-base64").await;
    assert_eq!(reply.status, 302, "{}", reply.body);
    let cases = vec![
        Refusal::new(
            "events/hostile-login-submit-binary.json",
            Route::LOGIN,
            "login-submit",
            Req::event("hostile-login-submit-binary"),
        ),
        Refusal::new(
            "events/hostile-revoke-repeated-force.json",
            Route::REVOKE,
            "revoke",
            Req::event("hostile-revoke-repeated-force"),
        ),
    ];
    all_refused(&h, cases).await;
}

// ---------------------------------------------------------------------------------------------
// Headers and API keys
// ---------------------------------------------------------------------------------------------

/// The event's own key taken out and `header: value` put in, on every keyed route: 401
/// `unauthorized` with a bearer challenge, no stored token in the answer, and no effect.
fn unauthorized(label: &str, header: &'static str, value: &[u8]) -> Vec<Refusal> {
    KEYED
        .iter()
        .map(|&(route, event)| {
            Refusal::new(
                format!("{label} on {}", route.path()),
                route,
                event,
                Req::event(event).without("authorization").header(header, value),
            )
            .answered(401, "unauthorized")
        })
        .collect()
}

/// `key` presented both ways, in X-API-Key and as a bearer key; `shown` names it.
fn unauthorized_key(shown: &str, key: &[u8]) -> Vec<Refusal> {
    let mut cases = unauthorized(&format!("X-API-Key {shown}"), "x-api-key", key);
    cases.extend(unauthorized(
        &format!("Bearer {shown}"),
        "authorization",
        &[&b"Bearer "[..], key].concat(),
    ));
    cases
}

#[tokio::test]
async fn very_long_header_values_are_401_not_a_crash() {
    let h = stocked().await;
    let huge = vec![b'a'; 64 * 1024];
    let bearer_huge = [&b"Bearer "[..], &huge].concat();
    let mut cases = unauthorized("64 KiB X-API-Key", "x-api-key", &huge);
    cases.extend(unauthorized("64 KiB bearer key", "authorization", &bearer_huge));
    cases.extend(unauthorized("64 KiB Authorization", "authorization", &huge));
    // A 64 KiB Accept header on the browser route: still a clear answer (a forged state here).
    let accept = "application/json;q=0.5,".repeat(3000);
    cases.push(
        Refusal::new(
            "64 KiB Accept",
            Route::CALLBACK,
            "callback",
            Req::event("callback")
                .query("code=c&state=forged")
                .header("accept", accept.as_bytes()),
        )
        .answered(403, "invalid_state")
        .in_json(),
    );
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn api_keys_of_the_wrong_length_or_spelling_are_401() {
    let h = stocked().await;
    let ten_kib = "k".repeat(10 * 1024);
    let keys = [
        "",
        "t",
        ten_kib.as_str(),
        "test-api-keyx",
        "xtest-api-key",
        "test-api-ke",
        "TEST-API-KEY",
        "test-api -key",
        "test-api-key;",
        "\"test-api-key\"",
    ];
    let cases = keys
        .iter()
        .flat_map(|key| unauthorized_key(&format!("{key:.20?}"), key.as_bytes()))
        .collect();
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn unicode_and_non_ascii_keys_are_401() {
    let h = stocked().await;
    let keys = [
        "tëst-api-key".as_bytes(),
        // Cyrillic е, a homoglyph of the real key.
        "tеst-api-key".as_bytes(),
        "ｔｅｓｔ-api-key".as_bytes(),
        "test-api-key\u{200B}".as_bytes(),
        b"test-api-k\xe9y",
        b"\xff\xfe",
    ];
    let mut cases: Vec<Refusal> = keys
        .iter()
        .flat_map(|key| unauthorized_key(&format!("{:?}", String::from_utf8_lossy(key)), key))
        .collect();
    // A non-breaking space between scheme and key.
    cases.extend(unauthorized(
        "Bearer<NBSP>key",
        "authorization",
        "Bearer\u{A0}test-api-key".as_bytes(),
    ));
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_401() {
    let h = stocked().await;
    let values = [
        "Bearer",
        "Bearer ",
        "Bearer     ",
        "Basic dGVzdC1hcGkta2V5",
        "Basic test-api-key",
        "Bearertest-api-key",
        "Bearer test-api-key extra",
        "Token test-api-key",
        "Bearer Bearer test-api-key",
        "test-api-key",
        ",",
    ];
    let mut cases: Vec<Refusal> = values
        .iter()
        .flat_map(|value| unauthorized(&format!("Authorization: {value:?}"), "authorization", value.as_bytes()))
        .collect();
    cases.extend(unauthorized(
        "empty X-API-Key beside no Authorization",
        "x-api-key",
        b"",
    ));
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn conflicting_api_keys_are_refused_whichever_comes_first() {
    // Two key headers in the order sent (the same name twice: two values of one header).
    type Header = (&'static str, &'static [u8]);
    let conflicts: [(&str, [Header; 2]); 5] = [
        (
            "right X-API-Key, wrong Bearer",
            [
                ("x-api-key", b"test-api-key"),
                ("authorization", b"Bearer wrong-api-key"),
            ],
        ),
        (
            "wrong X-API-Key, right Bearer",
            [
                ("x-api-key", b"wrong-api-key"),
                ("authorization", b"Bearer test-api-key"),
            ],
        ),
        (
            "X-API-Key twice, right first",
            [("x-api-key", b"test-api-key"), ("x-api-key", b"wrong-api-key")],
        ),
        (
            "X-API-Key twice, wrong first",
            [("x-api-key", b"wrong-api-key"), ("x-api-key", b"test-api-key")],
        ),
        (
            "Authorization twice, right first",
            [
                ("authorization", b"Bearer test-api-key"),
                ("authorization", b"Bearer wrong-api-key"),
            ],
        ),
    ];
    let mut cases = vec![case("events/hostile-token-conflicting-keys.json", async {
        let reply = stocked()
            .await
            .call(Route::TOKEN, "hostile-token-conflicting-keys")
            .await;
        assert!(matches!(reply.status, 400 | 401), "served: HTTP {}", reply.status);
    })];
    for (label, headers) in conflicts {
        for (route, event) in KEYED {
            let name = format!("{label} on {}", route.path());
            cases.push(case(name.clone(), async move {
                // A fresh set-up each time: a request that slipped through may have revoked.
                let h = stocked().await;
                let before = snapshot(&h).await;
                let [(first, one), (second, other)] = headers;
                let request = Req::event(event)
                    .without("authorization")
                    .append_header(first, one)
                    .append_header(second, other);
                let reply = h.call_request(route, request.0).await;
                assert!(
                    matches!(reply.status, 400 | 401),
                    "{name}: served despite conflicting keys: HTTP {}",
                    reply.status
                );
                assert!(
                    matches!(reply.error().as_str(), "invalid_request" | "unauthorized"),
                    "{name}: {}",
                    reply.body
                );
                assert_eq!(snapshot(&h).await, before, "{name}: the store changed");
            }));
        }
    }
    check_all(cases).await;
}

#[tokio::test]
async fn the_api_key_in_the_query_string_is_400_under_the_usual_names() {
    let h = stocked().await;
    let names = [
        "api_key",
        "API_KEY",
        "apikey",
        "apiKey",
        "key",
        "x-api-key",
        "X-Api-Key",
        "x_api_key",
        "api%5Fkey",
    ];
    let cases = names
        .iter()
        .flat_map(|name| KEYED.map(|(route, event)| Refusal::query(route, event, &format!("{name}=test-api-key"))))
        .collect();
    all_refused(&h, cases).await;
}

#[tokio::test]
async fn the_api_key_in_the_query_string_is_400_under_any_name() {
    let names = ["access_token", "api-key", "token", "auth", "k"];
    let cases = names
        .iter()
        .flat_map(|name| {
            KEYED.map(|(route, event)| Refusal::query(route, event, &format!("{name}=test-api-key")).fresh())
        })
        .collect();
    all_refused(&stocked().await, cases).await;
}

// ---------------------------------------------------------------------------------------------
// Raw API Gateway events
// ---------------------------------------------------------------------------------------------

/// Runs `lambda_http`'s event conversion (what the Lambda runtime does before any broker code
/// runs) and says whether it panicked.
fn convert(event: &str) -> Result<Result<Request, String>, String> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        lambda_http::request::from_str(event).map_err(|e| e.to_string())
    }))
    .map_err(panic_message)
}

fn token_event() -> Value {
    let path = format!("{}/events/token.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `events/token.json` changed by `edit`, as text.
fn token_event_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut event = token_event();
    edit(&mut event);
    event.to_string()
}

#[test]
fn malformed_or_incomplete_events_are_errors_not_panics() {
    let null_header = token_event_with(|e| e["headers"]["authorization"] = Value::Null);
    let truncated = token_event().to_string();
    let truncated = &truncated[..truncated.len() / 2];
    let events = [
        ("empty", String::new()),
        ("opening brace", "{".to_owned()),
        ("not JSON", "{not json".to_owned()),
        ("null", "null".to_owned()),
        ("a list", "[]".to_owned()),
        ("a number", "42".to_owned()),
        ("a string", "\"GET /token\"".to_owned()),
        ("empty object", "{}".to_owned()),
        ("version only", r#"{"version":"2.0"}"#.to_owned()),
        ("truncated", truncated.to_owned()),
        (
            "no requestContext",
            token_event_with(|e| {
                e.as_object_mut().unwrap().remove("requestContext");
            }),
        ),
        (
            "no requestContext.http",
            token_event_with(|e| {
                e["requestContext"].as_object_mut().unwrap().remove("http");
            }),
        ),
        (
            "method with a space",
            token_event_with(|e| e["requestContext"]["http"]["method"] = "GE T".into()),
        ),
        (
            "headers as a list",
            token_event_with(|e| e["headers"] = serde_json::json!(["authorization: Bearer test-api-key"])),
        ),
        (
            "NUL in a header",
            token_event_with(|e| e["headers"]["authorization"] = "Bearer test\u{0}api-key".into()),
        ),
    ];
    let mut panicked = Vec::new();
    for (label, event) in &events {
        match convert(event) {
            Ok(Ok(_)) => panicked.push(format!("{label}: accepted")),
            Ok(Err(_)) => {}
            Err(message) => panicked.push(format!("{label}: PANIC {message}")),
        }
    }
    // A header that is null may be refused or dropped, but not crash the conversion.
    if let Err(message) = convert(&null_header) {
        panicked.push(format!("null header: PANIC {message}"));
    }
    assert!(panicked.is_empty(), "{}", panicked.join("\n"));
}

/// The exact events that make `lambda_http` 1.3.2 panic inside `from_str` (an `.unwrap()` on
/// `Url::parse` in `build_request_uri`, an `.expect("failed to build request")` on the URI, and
/// an `.expect` on base64 bodies in aws_lambda_events). Under lambda_runtime that panic is caught
/// and the invocation fails with API Gateway's bare 500; with `panic = "abort"` in the release
/// profile it kills the Lambda instance instead.
fn panicking_events() -> Vec<(String, String)> {
    let mut events = Vec::new();
    for query in [
        "a b",
        "code=a\"b&state=test-oauth-state",
        "code=<script>",
        "x=\n",
        "x=\t",
        "x=\u{7f}",
        "x=\u{0}",
    ] {
        events.push((
            format!("rawQueryString {query:?}"),
            token_event_with(|e| e["rawQueryString"] = query.into()),
        ));
    }
    for host in ["garbage host", "[", "a:b:c", "a%20b"] {
        events.push((
            format!("host {host:?}"),
            token_event_with(|e| e["headers"]["host"] = host.into()),
        ));
    }
    for proto in ["ht tp", "", "1http"] {
        events.push((
            format!("x-forwarded-proto {proto:?}"),
            token_event_with(|e| e["headers"]["x-forwarded-proto"] = proto.into()),
        ));
    }
    events.push((
        "isBase64Encoded with a body that is not base64".to_owned(),
        token_event_with(|e| {
            e["isBase64Encoded"] = true.into();
            e["body"] = "!!! not base64 !!!".into();
        }),
    ));
    events
}

#[test]
fn events_lambda_http_cannot_turn_into_a_uri_do_not_panic() {
    let mut panicked = Vec::new();
    let mut unsanitized_panics = 0;
    for (label, event) in panicking_events() {
        // lambda_http alone panics on these (the reason for `sanitize`)...
        if convert(&event).is_err() {
            unsanitized_panics += 1;
        }
        // ...the function's own path does not.
        if let Err(message) = convert_sanitized(&event) {
            panicked.push(format!("{label}: {message}"));
        }
    }
    assert!(
        panicked.is_empty(),
        "still panics after sanitize:\n{}",
        panicked.join("\n")
    );
    assert!(
        unsanitized_panics > 0,
        "lambda_http no longer panics on these: sanitize may be unneeded"
    );
}

/// The path a Lambda invocation takes: the event deserialized, repaired by `sanitize`, then
/// turned into a request by lambda_http.
fn convert_sanitized(event: &str) -> Result<(), String> {
    let Ok(payload) = serde_json::from_str::<lambda_http::request::LambdaRequest>(event) else {
        return Ok(());
    };
    let event = lambda_http::LambdaEvent::new(payload, lambda_http::Context::default());
    panic::catch_unwind(AssertUnwindSafe(|| {
        let request: Request = sanitize(event).payload.into();
        drop(request);
    }))
    .map_err(panic_message)
}

// ---------------------------------------------------------------------------------------------
// Provider answers, on the code exchange (/callback) and the refresh (/token)
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
enum Answer {
    /// Served by wiremock.
    Mock(ResponseTemplate),
    /// Written byte for byte on the socket, then the connection is closed.
    Raw(&'static [u8]),
}

/// A token endpoint that answers every request with `response`, whatever it was asked.
async fn raw_provider(response: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the whole request first, so the client is not cut off while sending.
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                let read_all = async {
                    loop {
                        let n = stream.read(&mut buffer).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        request.extend_from_slice(&buffer[..n]);
                        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), read_all).await;
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://127.0.0.1:{port}{TOKEN_PATH}")
}

async fn harness_answering(answer: &Answer) -> Harness {
    match answer {
        Answer::Mock(template) => {
            let h = Harness::new().await;
            provider_answers(&h.provider, template.clone()).await;
            h
        }
        Answer::Raw(bytes) => Harness::with(&[("TOKEN_URL", &raw_provider(bytes).await)]).await,
    }
}

/// The provider's `answer` must end both the refresh and the code exchange with `status` and
/// `error` (with Retry-After), leave every record as it was, and not be retried.
async fn refused_on_both_paths(label: &str, answer: Answer, status: u16, error: &str) {
    // Refresh: the stored access token has expired.
    let h = harness_answering(&answer).await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let before = snapshot(&h).await;
    let reply = h.call(Route::TOKEN, "token").await;
    expect_json_error(&format!("refresh, {label}"), &reply, status, error);
    assert!(
        reply.header("retry-after").is_some(),
        "refresh, {label}: no Retry-After"
    );
    assert_eq!(snapshot(&h).await, before, "refresh, {label}: the store changed");
    if matches!(answer, Answer::Mock(_)) {
        assert_eq!(h.token_requests().await.len(), 1, "refresh, {label}: retried");
    }

    // Code exchange, as an API client and as a browser; a pair is already stored.
    let h = harness_answering(&answer).await;
    h.seed(&tokens("access-0", "refresh-0", START + 1200, START + 86_400))
        .await;
    let before = snapshot(&h).await;
    for event in ["callback-json", "callback"] {
        let label = format!("code exchange ({event}), {label}");
        let reply = h.call(Route::CALLBACK, event).await;
        expect_error(&label, event, &reply, status, error);
        assert!(reply.header("retry-after").is_some(), "{label}: no Retry-After");
        assert!(!reply.body.contains("access-0"), "{label}");
        assert_eq!(snapshot(&h).await, before, "{label}: the store changed");
    }
    if matches!(answer, Answer::Mock(_)) {
        assert_eq!(h.token_requests().await.len(), 2, "code exchange, {label}: retried");
    }
}

/// A provider answer refused on both paths with `status` and `error`.
struct BadAnswer {
    name: String,
    answer: Answer,
    status: u16,
    error: &'static str,
}

/// `answer` refused with 502 `provider_response_invalid`, the commonest verdict.
fn invalid(name: impl Into<String>, answer: Answer) -> BadAnswer {
    BadAnswer {
        name: name.into(),
        answer,
        status: 502,
        error: "provider_response_invalid",
    }
}

/// Every answer refused on both paths; one report for all that were not.
async fn all_refused_on_both_paths(cases: Vec<BadAnswer>) {
    check_all(cases.into_iter().map(|c| {
        let name = c.name.clone();
        case(name, async move {
            refused_on_both_paths(&c.name, c.answer, c.status, c.error).await;
        })
    }))
    .await;
}

fn ok_json(body: Value) -> Answer {
    Answer::Mock(ResponseTemplate::new(200).set_body_json(body))
}

/// A grant (`a`/`r`) with `field` set to `value`, or without `field` when `value` is `None`.
fn grant_with(field: &str, value: Option<Value>) -> Value {
    let mut grant = grant_body("a", "r");
    match value {
        Some(value) => grant[field] = value,
        None => {
            grant.as_object_mut().unwrap().remove(field);
        }
    }
    grant
}

#[tokio::test]
async fn a_provider_answer_over_64_kib_is_provider_response_invalid() {
    let error = serde_json::json!({"error": "invalid_grant", "error_description": "x".repeat(70 * 1024)});
    all_refused_on_both_paths(vec![
        invalid(
            "huge grant",
            ok_json(grant_with("padding", Some("x".repeat(70 * 1024).into()))),
        ),
        invalid(
            "huge error",
            Answer::Mock(ResponseTemplate::new(400).set_body_json(error)),
        ),
    ])
    .await;
}

#[tokio::test]
async fn a_provider_slower_than_provider_timeout_is_503_provider_unavailable() {
    // PROVIDER_TIMEOUT is 2 s in the tests.
    let answer = ResponseTemplate::new(200)
        .set_body_json(grant_body("a", "r"))
        .set_delay(Duration::from_secs(3));
    let started = std::time::Instant::now();
    refused_on_both_paths("3 s late", Answer::Mock(answer), 503, "provider_unavailable").await;
    // Three calls, each cut off at about 2 s, not waiting for the answer.
    assert!(started.elapsed() < Duration::from_secs(9), "{:?}", started.elapsed());
}

#[tokio::test]
async fn non_json_and_html_answers_are_refused() {
    let answers = [
        (
            "form-encoded 200",
            200,
            "application/x-www-form-urlencoded",
            "access_token=a&expires_in=60",
            "provider_response_invalid",
        ),
        (
            "HTML 200",
            200,
            "text/html",
            "<html><body>Welcome</body></html>",
            "provider_response_invalid",
        ),
        ("empty 200", 200, "application/json", "", "provider_response_invalid"),
        (
            "HTML 400",
            400,
            "text/html",
            "<html><h1>400 Bad Request</h1></html>",
            "provider_response_invalid",
        ),
        (
            "HTML 404",
            404,
            "text/html",
            "<html><h1>Not Found</h1></html>",
            "provider_response_invalid",
        ),
        (
            "HTML 500",
            500,
            "text/html",
            "<html><h1>Internal Server Error</h1></html>",
            "provider_unavailable",
        ),
        (
            "HTML 502",
            502,
            "text/html",
            "<html><h1>Bad Gateway</h1></html>",
            "provider_unavailable",
        ),
    ];
    let cases = answers
        .into_iter()
        .map(|(name, status, content_type, body, error)| BadAnswer {
            name: name.to_owned(),
            answer: Answer::Mock(ResponseTemplate::new(status).set_body_raw(body, content_type)),
            status: 502,
            error,
        })
        .collect();
    all_refused_on_both_paths(cases).await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused() {
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let answer = Answer::Mock(ResponseTemplate::new(200).set_body_raw(nested, "application/json"));
    refused_on_both_paths("20 000 nested arrays", answer, 502, "provider_response_invalid").await;
}

#[tokio::test]
async fn missing_negative_zero_absurd_fractional_and_non_numeric_lifetimes_are_refused() {
    let lifetimes = [
        Value::Null,
        0.into(),
        (-1).into(),
        (-9_999_999_999_i64).into(),
        serde_json::json!(1e30),
        serde_json::json!(1799.5),
        99_999_999_999_i64.into(),
        (10 * 365 * 86400 + 1).into(),
        i64::MAX.into(),
        u64::MAX.into(),
        "soon".into(),
        "".into(),
        "1799.5".into(),
        "0x10".into(),
        "\u{2212}1".into(),
        true.into(),
        serde_json::json!([1799]),
        serde_json::json!({"seconds": 1799}),
    ];
    let refresh_lifetimes = [
        serde_json::json!(-1),
        serde_json::json!("never"),
        serde_json::json!(1e30),
    ];
    let mut cases: Vec<BadAnswer> = lifetimes
        .into_iter()
        .map(|lifetime| {
            invalid(
                format!("expires_in {lifetime}"),
                ok_json(grant_with("expires_in", Some(lifetime))),
            )
        })
        .collect();
    cases.push(invalid("no expires_in", ok_json(grant_with("expires_in", None))));
    cases.extend(refresh_lifetimes.into_iter().map(|lifetime| {
        invalid(
            format!("refresh_token_expires_in {lifetime}"),
            ok_json(grant_with("refresh_token_expires_in", Some(lifetime))),
        )
    }));
    all_refused_on_both_paths(cases).await;
}

#[tokio::test]
async fn lifetimes_sent_as_whole_numbers_in_strings_are_accepted() {
    let lifetimes = [
        (serde_json::json!("1799"), 1799),
        (serde_json::json!(" 1799 "), 1799),
        (serde_json::json!(10 * 365 * 86400), 10 * 365 * 86400),
    ];
    check_all(lifetimes.map(|(lifetime, expected)| {
        case(lifetime.to_string(), async move {
            let mut grant = grant_body("access-s", "refresh-s");
            grant["expires_in"] = lifetime.clone();
            let h = harness_answering(&ok_json(grant)).await;
            let reply = h.call(Route::CALLBACK, "callback-json").await;
            assert_eq!(reply.status, 200, "{lifetime}: {}", reply.body);
            assert_eq!(
                h.stored_tokens().await.access_expires_at,
                START + expected,
                "{lifetime}"
            );
        })
    }))
    .await;
}

#[tokio::test]
async fn answers_without_a_usable_access_token_are_refused() {
    let access_tokens = [
        None,
        Some(Value::Null),
        Some("".into()),
        Some(42.into()),
        Some(serde_json::json!(["a"])),
    ];
    let cases = access_tokens
        .into_iter()
        .map(|access| {
            invalid(
                format!("access_token {access:?}"),
                ok_json(grant_with("access_token", access)),
            )
        })
        .collect();
    all_refused_on_both_paths(cases).await;
}

#[tokio::test]
async fn a_200_carrying_an_oauth_error_is_invalid_and_does_not_end_the_connection() {
    // invalid_grant in a 200 is not the provider refusing the refresh token: nothing is marked.
    let body = serde_json::json!({"error": "invalid_grant", "error_description": "refresh token revoked"});
    refused_on_both_paths(
        "200 with invalid_grant",
        ok_json(body),
        502,
        "provider_response_invalid",
    )
    .await;
}

/// A `status` redirect to another server is refused on both paths, and nothing reaches that
/// server (it would have had the client secret).
async fn redirect_is_not_followed(status: u16) {
    let elsewhere = MockServer::start().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(grant_body("stolen", "stolen")))
        .mount(&elsewhere)
        .await;
    let answer = Answer::Mock(
        ResponseTemplate::new(status).insert_header("location", format!("{}{TOKEN_PATH}", elsewhere.uri())),
    );
    refused_on_both_paths(&format!("{status} redirect"), answer, 502, "provider_response_invalid").await;
    let followed = elsewhere.received_requests().await.unwrap();
    assert!(
        followed.is_empty(),
        "{status}: the redirect was followed, the client secret sent to {}",
        elsewhere.uri()
    );
}

#[tokio::test]
async fn a_provider_redirect_is_not_followed() {
    check_all(
        [301, 302, 303, 307, 308].map(|status| case(format!("{status} redirect"), redirect_is_not_followed(status))),
    )
    .await;
}

#[tokio::test]
async fn broken_http_from_the_provider_is_502_provider_unavailable() {
    let answers: [(&str, &'static [u8]); 4] = [
        (
            "chunked garbage",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nZZ\r\n{\"access_token\"\r\nnonsense",
        ),
        (
            "body shorter than content-length",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"access_token\":\"a\"",
        ),
        ("not HTTP at all", b"SSH-2.0-OpenSSH_9.6\r\n"),
        ("closed without a word", b""),
    ];
    let cases = answers
        .into_iter()
        .map(|(name, bytes)| BadAnswer {
            name: name.to_owned(),
            answer: Answer::Raw(bytes),
            status: 502,
            error: "provider_unavailable",
        })
        .collect();
    all_refused_on_both_paths(cases).await;
}

#[tokio::test]
async fn provider_text_is_made_printable_before_it_reaches_clients() {
    let mut grant = grant_body("access-p", "refresh-p");
    grant["token_type"] = format!("Bearer\r\nSet-Cookie: a=b\u{0}{}", "x".repeat(1000)).into();
    let h = harness_answering(&ok_json(grant)).await;
    assert_eq!(h.call(Route::CALLBACK, "callback-json").await.status, 200);
    let reply = h.call(Route::TOKEN, "token").await;
    let token_type = reply.json()["token_type"].as_str().unwrap().to_owned();
    assert!(!token_type.chars().any(char::is_control), "{token_type:?}");
    assert!(token_type.chars().count() <= 32, "{token_type:?}");

    let h = harness_answering(&Answer::Mock(ResponseTemplate::new(400).set_body_json(
        serde_json::json!({
            "error": "invalid_request\r\n<script>",
            "error_description": format!("<img src=x onerror=alert(1)>\u{7}{}", "d".repeat(5000)),
        }),
    )))
    .await;
    let reply = h.call(Route::CALLBACK, "callback").await;
    assert_eq!(reply.status, 502);
    assert!(
        !reply.body.contains("<script>") && !reply.body.contains("<img"),
        "{}",
        reply.body
    );
    assert!(reply.body.len() < 4000, "{} bytes", reply.body.len());
    let reply = h.call(Route::CALLBACK, "callback-json").await;
    let body = reply.json();
    assert!(!body["error"].as_str().unwrap().chars().any(char::is_control), "{body}");
    assert!(
        body["error_description"].as_str().unwrap().chars().count() <= 300,
        "{body}"
    );
}

#[tokio::test]
async fn provider_error_text_quoting_a_secret_is_not_passed_on() {
    // Refresh: invalid_grant quoting the refresh token becomes the mark's reason.
    let h = harness_answering(&Answer::Mock(ResponseTemplate::new(400).set_body_json(
        serde_json::json!({
            "error": "invalid_grant",
            "error_description": "refresh token refresh-0 was revoked",
        }),
    )))
    .await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let token = h.call(Route::TOKEN, "token").await;
    let verify = h.call(Route::VERIFY, "verify").await;
    assert_eq!((token.status, verify.status), (401, 404));
    for reply in [&token, &verify] {
        assert!(!reply.body.contains("refresh-0"), "{}", reply.body);
    }

    // Code exchange: the provider quotes the code and the client secret.
    let h = harness_answering(&Answer::Mock(ResponseTemplate::new(401).set_body_json(
        serde_json::json!({
            "error": "invalid_client",
            "error_description": format!("client secret {CLIENT_SECRET} does not match for code {CODE}"),
        }),
    )))
    .await;
    for event in ["callback", "callback-json"] {
        let reply = h.call(Route::CALLBACK, event).await;
        assert_eq!(reply.status, 502);
        assert!(
            !reply.body.contains(CLIENT_SECRET) && !reply.body.contains(CODE),
            "{event}: {}",
            reply.body
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Unreadable store records
// ---------------------------------------------------------------------------------------------

fn active_record() -> Vec<u8> {
    ConnectionRecord::Active(tokens("access-x", "refresh-x", START + 1200, START + 86_400)).encode()
}

/// 32 bytes in base64, as TOKEN_ENCRYPTION_KEY takes them.
fn encryption_key(fill: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([fill; 32])
}

fn sealed(fill: u8, store_key: &str, plaintext: Vec<u8>) -> Vec<u8> {
    sealed_beside(fill, store_key, b"", plaintext)
}

/// Sealed with `clear` as the part readable without the key.
fn sealed_beside(fill: u8, store_key: &str, clear: &[u8], plaintext: Vec<u8>) -> Vec<u8> {
    let key = parse_key(&encryption_key(fill)).unwrap();
    Sealer::new(&[key]).seal(store_key, clear, plaintext).unwrap()
}

/// Records the broker cannot read under `store_key`, each with a name. With encryption on
/// (`encryption` is the configured key's fill byte), plaintext records and records sealed for another
/// key or another store key are among them.
fn unreadable_records(store_key: &str, encryption: Option<u8>) -> Vec<(&'static str, Vec<u8>)> {
    let active = active_record();
    let text = String::from_utf8(active.clone()).unwrap();
    assert!(text.contains("\"format\":1"), "{text}");
    let format = |replacement: &str| text.replace("\"format\":1", replacement).into_bytes();
    let mut plain = vec![
        ("truncated", active[..active.len() / 2].to_vec()),
        ("cut by one byte", active[..active.len() - 1].to_vec()),
        ("older format 0", format("\"format\":0")),
        ("newer format 2", format("\"format\":2")),
        ("format as a string", format("\"format\":\"1\"")),
        ("no format", text.replace("\"format\":1,", "").into_bytes()),
        ("garbage bytes", b"\xff\xfe\x00\x01garbage\x80".to_vec()),
        (
            "JSON of another shape",
            br#"{"access_token":"access-x","refresh_token":"refresh-x"}"#.to_vec(),
        ),
        ("JSON list", b"[]".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("JSON string", br#""active""#.to_vec()),
        ("unknown status", br#"{"format":1,"status":"frozen"}"#.to_vec()),
        (
            "active without tokens",
            br#"{"format":1,"status":"active","access_expires_at":1,"refresh_expires_at":2,"issued_at":0}"#.to_vec(),
        ),
        ("empty value", Vec::new()),
        ("256 KiB of zeros", vec![0u8; 256 * 1024]),
    ];
    let Some(fill) = encryption else {
        // A function without the key reads the clear part of a sealed record; none of these has
        // a health in it.
        let health = br#"{"format":1,"status":"active","access_expires_at":1,"refresh_expires_at":2,"issued_at":0}"#;
        let mut overlong = sealed_beside(3, store_key, health, active.clone());
        overlong[20..22].copy_from_slice(&u16::MAX.to_be_bytes());
        plain.extend([
            ("a sealed-looking blob", [&b"TBX1"[..], &[7u8; 60]].concat()),
            (
                "a sealed-looking blob of the new layout",
                [&b"TBX2"[..], &[7u8; 60]].concat(),
            ),
            ("a record sealed by some key", sealed(3, store_key, active.clone())),
            (
                "a sealed record whose clear part is no health",
                sealed_beside(3, store_key, b"\xff{not json", active.clone()),
            ),
            (
                "a sealed record whose clear part is of a newer format",
                sealed_beside(
                    3,
                    store_key,
                    &String::from_utf8_lossy(health)
                        .replace("\"format\":1", "\"format\":2")
                        .into_bytes(),
                    active.clone(),
                ),
            ),
            ("a clear part longer than the record", overlong),
            (
                "a record sealed by an earlier version",
                [&b"TBX1"[..], &sealed(3, store_key, active)[4..]].concat(),
            ),
        ]);
        return plain;
    };
    // With encryption on, each of the above arrives sealed with the right key, and still cannot
    // be read; so do these.
    let mut records: Vec<(&'static str, Vec<u8>)> = plain
        .into_iter()
        .map(|(label, bytes)| (label, sealed(fill, store_key, bytes)))
        .collect();
    let good = sealed(fill, store_key, active.clone());
    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    records.extend([
        ("a valid record in plaintext", active.clone()),
        (
            "sealed under another key",
            sealed(fill.wrapping_add(1), store_key, active.clone()),
        ),
        (
            "sealed for another store key",
            sealed(fill, "elsewhere:conn:default:tokens", active),
        ),
        ("a sealed record with one bit flipped", tampered),
        ("a sealed record cut short", good[..good.len() - 1].to_vec()),
        ("the sealed header only", good[..20].to_vec()),
    ]);
    records
}

/// For every unreadable record: /token, /verify, /revoke and keep-alive answer
/// `store_unreadable` (or report a failure) and leave it byte for byte; then a new login (with
/// the shared state, and with a one-time state) replaces it, and so does a forced revoke.
async fn unreadable_records_are_kept_and_healed<S: Store>(h: &Harness<S>, encryption: Option<u8>) {
    provider_grants_and_revokes(h, "access-healed", "refresh-healed").await;
    let key = h.tokens_key();
    let records = unreadable_records(&key, encryption);
    assert!(records.len() >= 17);
    check_all(
        records
            .into_iter()
            .map(|(label, bytes)| case(label, unreadable_record_is_kept_and_healed(h, &key, label, bytes))),
    )
    .await;
}

async fn unreadable_record_is_kept_and_healed<S: Store>(h: &Harness<S>, key: &str, label: &str, bytes: Vec<u8>) {
    assert!(
        h.app.open_record(key, bytes.clone()).is_err(),
        "{label} is readable after all"
    );
    put_raw(h, key, &bytes).await;
    let before = h.app.store.load(key).await.unwrap().unwrap();
    assert_eq!(before.data, bytes, "{label}: not stored as given");
    let calls = provider_calls(h).await;

    for (route, request) in [
        (Route::TOKEN, event_request("token")),
        (Route::TOKEN, event_with_query("token", "min_ttl=3600")),
        (Route::VERIFY, event_request("verify")),
        (Route::VERIFY, event_with_query("verify", "connection=default")),
        (Route::REVOKE, event_request("revoke")),
    ] {
        let what = format!("{label}: {} {}", request.method(), request.uri());
        let reply = h.call_request(route, request).await;
        expect_json_error(&what, &reply, 500, "store_unreadable");
        assert_eq!(
            h.app.store.load(key).await.unwrap().as_ref(),
            Some(&before),
            "{what}: the record changed"
        );
    }
    let reports = keepalive::run(&h.app).await.unwrap().connections;
    assert_eq!(reports.len(), 1, "{label}: {reports:?}");
    assert_eq!(reports[0].outcome, "failed", "{label}: {reports:?}");
    assert_eq!(
        h.app.store.load(key).await.unwrap().as_ref(),
        Some(&before),
        "{label}: keep-alive"
    );
    assert_eq!(provider_calls(h).await, calls, "{label}: the provider was called");

    // A new login heals it: with the shared state, and with a one-time state from /login.
    let reply = h.call(Route::CALLBACK, "callback-json").await;
    assert_eq!(reply.status, 200, "{label}: callback: {}", reply.body);
    let healed = h.app.store.load(key).await.unwrap().unwrap();
    match h.app.open_record(key, healed.data) {
        Ok(ConnectionRecord::Active(tokens)) => assert_eq!(tokens.access_token.expose(), "access-healed"),
        other => panic!("{label}: after the callback: {other:?}"),
    }
    put_raw(h, key, &bytes).await;
    let state = one_time_state(h).await;
    let reply = h
        .call_request(
            Route::CALLBACK,
            event_with_query("callback-json", &format!("code=c&state={state}")),
        )
        .await;
    assert_eq!(
        reply.status, 200,
        "{label}: callback with a one-time state: {}",
        reply.body
    );
    let healed = h.app.store.load(key).await.unwrap().unwrap();
    assert!(
        matches!(h.app.open_record(key, healed.data), Ok(ConnectionRecord::Active(_))),
        "{label}: not healed by a one-time state"
    );
    // The forced revoke is the other documented way out.
    put_raw(h, key, &bytes).await;
    let reply = h.call(Route::REVOKE, "revoke-force").await;
    assert_eq!(reply.status, 200, "{label}: forced revoke: {}", reply.body);
    assert!(h.app.store.load(key).await.unwrap().is_none(), "{label}: forced revoke");
}

#[tokio::test]
async fn unreadable_records_in_redis_are_500_left_untouched_and_healed_by_a_new_login() {
    unreadable_records_are_kept_and_healed(&Harness::new().await, None).await;
}

#[tokio::test]
async fn unreadable_records_under_encryption_are_500_left_untouched_and_healed_by_a_new_login() {
    let h = Harness::with(&[("TOKEN_ENCRYPTION_KEY", &encryption_key(5))]).await;
    unreadable_records_are_kept_and_healed(&h, Some(5)).await;
}

#[tokio::test]
async fn unreadable_records_in_dynamodb_are_500_left_untouched_and_healed_by_a_new_login() {
    unreadable_records_are_kept_and_healed(&Harness::dynamodb(&[]).await, None).await;
}

#[cfg(feature = "local")]
#[tokio::test]
async fn unreadable_records_in_the_embedded_store_are_500_left_untouched_and_healed_by_a_new_login() {
    unreadable_records_are_kept_and_healed(&Harness::embedded(&[]).await, None).await;
}

/// The tokens key in a shape the broker never writes: another Redis type, or a hash missing a
/// field or with a field that is not what it should be. Each command is sent with the key as its
/// first argument.
const REDIS_SHAPES: [(&str, &[&[&str]]); 5] = [
    ("a plain string", &[&["SET", "{\"format\":1}"]]),
    ("a list", &[&["RPUSH", "a", "b"]]),
    ("a hash without data", &[&["HSET", "gen", "3"]]),
    ("a hash without gen", &[&["HSET", "data", "{}"]]),
    (
        "a hash with a non-numeric gen",
        &[&["HSET", "gen", "three", "data", "{}"]],
    ),
];

/// A stocked harness whose tokens key has been replaced by `commands`, with a connection of the
/// test's own to look at it.
async fn stocked_with_redis_shape(commands: &[&[&str]]) -> (Harness, String, redis::aio::MultiplexedConnection) {
    let h = stocked().await;
    let key = h.tokens_key();
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    for command in commands {
        let mut cmd = redis::cmd(command[0]);
        cmd.arg(&key);
        for arg in &command[1..] {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd.query_async(&mut redis).await.unwrap();
    }
    (h, key, redis)
}

async fn dump(connection: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query_async(connection).await.unwrap()
}

#[tokio::test]
async fn a_redis_key_of_the_wrong_shape_is_500_and_left_untouched() {
    check_all(REDIS_SHAPES.map(|(label, commands)| {
        case(label, async move {
            let (h, key, mut redis) = stocked_with_redis_shape(commands).await;
            let before = dump(&mut redis, &key).await;
            for (route, event) in [
                (Route::TOKEN, "token"),
                (Route::VERIFY, "verify"),
                (Route::REVOKE, "revoke"),
            ] {
                let reply = h.call(route, event).await;
                assert_eq!(reply.status, 500, "{label}, {}: {}", route.path(), reply.body);
                assert!(
                    matches!(reply.error().as_str(), "store_error" | "store_unreadable"),
                    "{label}: {}",
                    reply.body
                );
                assert_eq!(dump(&mut redis, &key).await, before, "{label}, {}", route.path());
            }
            assert_eq!(provider_calls(&h).await, 0, "{label}");
        })
    }))
    .await;
}

#[tokio::test]
async fn a_redis_key_of_the_wrong_shape_is_healed_by_a_new_login() {
    let mut cases = Vec::new();
    for (label, commands) in REDIS_SHAPES {
        for via in ["callback-json", "one-time state"] {
            let name = format!("{label} via {via}");
            cases.push(case(name.clone(), async move {
                let (h, key, _redis) = stocked_with_redis_shape(commands).await;
                let request = if via == "one-time state" {
                    let state = one_time_state(&h).await;
                    event_with_query("callback-json", &format!("code=c&state={state}"))
                } else {
                    event_request(via)
                };
                let reply = h.call_request(Route::CALLBACK, request).await;
                assert_eq!(reply.status, 200, "{name}: not healed: {}", reply.body);
                let healed = match h.app.store.load(&key).await {
                    Ok(Some(stored)) => matches!(h.app.open_record(&key, stored.data), Ok(ConnectionRecord::Active(_))),
                    _ => false,
                };
                assert!(healed, "{name}: not healed");
            }));
        }
    }
    check_all(cases).await;
}

#[tokio::test]
async fn an_unreadable_record_of_another_connection_does_not_break_the_default_monitor() {
    let h = stocked().await;
    put_raw(&h, &h.app.keys.tokens("lab-2"), b"\xff garbage").await;
    let reply = h.call(Route::VERIFY, "verify").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["status"], "valid");
    let names: Vec<&str> = body["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["connection"].as_str())
        .collect();
    assert_eq!(names, ["default", "lab-2"], "{body}");
    // Asked about directly, the broken one is still 500.
    let reply = h
        .call_request(Route::VERIFY, event_with_query("verify", "connection=lab-2"))
        .await;
    expect_json_error("lab-2", &reply, 500, "store_unreadable");
}
