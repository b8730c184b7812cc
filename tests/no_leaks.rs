//! No secret ever leaves the broker where it should not: not in a log line (at the most verbose
//! level the configuration allows), not in an error body or a response header, not in a metric
//! line, not in a `Debug` print. The whole flow runs (logins, callbacks, refreshes, failures,
//! revocations, keep-alive, connections) with distinctive secret values, everything the broker
//! writes is captured, and every secret is searched for in all of it. The `serve` binary gets the
//! same treatment over HTTP.
//!
//! One `#[test]` only: the log level comes from the process environment and the log subscriber is
//! process-wide, so both are set once, before anything else runs.

mod common;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
};

use base64::Engine;
use common::*;
use lambda_http::{Body, Request};
use token_broker::{
    base::{
        logging::init_with_writer,
        record::ConnectionRecord,
        secret::Secret,
        store::{RedisStore, Store},
    },
    http::routes::Route,
    oauth::{
        authorization::{PendingLogin, Started},
        keepalive,
        provider::parse_response,
    },
};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate, matchers};

const CLIENT_SECRET_VALUE: &str = "SECRET-client-7f3a91c2";
const API_KEY_VALUE: &str = "APIKEY-5e0c-d41d8cd9";
const SECOND_API_KEY: &str = "APIKEY2-aa31-90f1e2";
const OAUTH_STATE_VALUE: &str = "OAUTHSTATE-8e2f-77b1c4";
const WRONG_KEY: &str = "WRONGKEY-1b9e-c0ffee";
/// 32 bytes of "WHSECRET-9d2e-…" in base64 after `whsec_`.
const WEBHOOK_SECRET_VALUE: &str = "whsec_V0hTRUNSRVQtOWQyZS1hYmNkZWZnaGlqa2xtbm9wcXI=";
/// Refresh tokens handed to `/import`: one the provider honours, one it refuses (naming it).
const IMPORTED_REFRESH: &str = "IMPORTED-REFRESH-0d5e-77e2";
const IMPORTED_REFUSED: &str = "IMPORTED-REFUSED-9b1c-3a4f";
const REDIS_PASSWORD: &str = "REDISPASS-6a4d-beef01";
/// 32 bytes, as TOKEN_ENCRYPTION_KEY holds them (in base64).
const ENCRYPTION_KEY_BYTES: &[u8; 32] = b"ENCKEY-4c1d-0123456789abcdefghij";

fn encryption_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(ENCRYPTION_KEY_BYTES)
}

// ---------------------------------------------------------------------------------------------
// Capturing
// ---------------------------------------------------------------------------------------------

/// One answer the broker gave, as the client saw it.
struct Exchange {
    label: String,
    route: Route<RedisStore>,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Exchange {
    fn of(label: &str, route: Route<RedisStore>, reply: &Reply) -> Self {
        Self {
            label: label.to_owned(),
            route,
            status: reply.status,
            headers: reply
                .headers
                .iter()
                .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                .collect(),
            body: reply.body.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A provider that issues distinctive tokens and can be told to fail
// ---------------------------------------------------------------------------------------------

const WORKING: u8 = 0;
const DOWN: u8 = 1;
const REVOKED: u8 = 2;

#[derive(Default)]
struct Issuer {
    issued: AtomicUsize,
    refresh_mode: AtomicU8,
    revocation_mode: AtomicU8,
    /// Every access and refresh token handed out.
    tokens: Mutex<Vec<String>>,
}

impl Issuer {
    fn refreshes(&self, mode: u8) {
        self.refresh_mode.store(mode, Ordering::SeqCst);
    }

    fn revocations(&self, mode: u8) {
        self.revocation_mode.store(mode, Ordering::SeqCst);
    }

    fn issued_tokens(&self) -> Vec<String> {
        self.tokens.lock().unwrap().clone()
    }

    fn access_tokens(&self) -> Vec<String> {
        self.issued_tokens()
            .into_iter()
            .filter(|t| t.starts_with("ACCESS-"))
            .collect()
    }

    async fn mount(self: &Arc<Self>, server: &MockServer) {
        Mock::given(matchers::method("POST"))
            .and(matchers::path(TOKEN_PATH))
            .respond_with(TokenEndpoint(self.clone()))
            .mount(server)
            .await;
        Mock::given(matchers::method("POST"))
            .and(matchers::path(REVOCATION_PATH))
            .respond_with(RevocationEndpoint(self.clone()))
            .mount(server)
            .await;
    }
}

struct TokenEndpoint(Arc<Issuer>);

impl Respond for TokenEndpoint {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let form: HashMap<String, String> = form_urlencoded::parse(&request.body).into_owned().collect();
        let refusal = |description: &str| {
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"error": "invalid_grant", "error_description": description}))
        };
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") if form.get("code").is_some_and(|c| c.contains("REJECT")) => {
                return refusal("the authorization code has expired");
            }
            Some("authorization_code") => {}
            // Some providers quote the token they refuse: it must go no further.
            Some("refresh_token") if form.get("refresh_token").is_some_and(|t| t == IMPORTED_REFUSED) => {
                return refusal(&format!("token {IMPORTED_REFUSED} is not valid for this client"));
            }
            Some("refresh_token") => match self.0.refresh_mode.load(Ordering::SeqCst) {
                DOWN => return ResponseTemplate::new(500).set_body_string("upstream exploded"),
                REVOKED => return refusal("the refresh token was revoked"),
                _ => {}
            },
            _ => {
                return ResponseTemplate::new(400)
                    .set_body_json(serde_json::json!({"error": "unsupported_grant_type"}));
            }
        }
        let n = self.0.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let (access, refresh) = (format!("ACCESS-TOKEN-{n}-a91f"), format!("REFRESH-TOKEN-{n}-3c7d"));
        self.0.tokens.lock().unwrap().extend([access.clone(), refresh.clone()]);
        ResponseTemplate::new(200).set_body_json(grant_body(&access, &refresh))
    }
}

struct RevocationEndpoint(Arc<Issuer>);

impl Respond for RevocationEndpoint {
    fn respond(&self, _request: &wiremock::Request) -> ResponseTemplate {
        match self.0.revocation_mode.load(Ordering::SeqCst) {
            DOWN => ResponseTemplate::new(503).set_body_string("maintenance"),
            _ => ResponseTemplate::new(200),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

fn with_query(mut request: Request, query: &str) -> Request {
    if !query.is_empty() {
        let path = request.uri().path().to_owned();
        *request.uri_mut() = format!("{path}?{query}").parse().unwrap();
    }
    request
}

/// A headless client's request with `key` as its bearer key.
fn keyed(event: &str, query: &str, key: &str) -> Request {
    let mut request = with_query(event_request(event), query);
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// `/import` of `refresh_token`, with `key` as the bearer key.
fn import(refresh_token: &str, key: &str) -> Request {
    let mut request = keyed("import", "", key);
    *request.body_mut() = Body::Text(serde_json::json!({ "refresh_token": refresh_token }).to_string());
    request
}

/// The same with the key in X-API-Key.
fn x_api_key(event: &str, query: &str, key: &str) -> Request {
    let mut request = with_query(event_request(event), query);
    request.headers_mut().remove("authorization");
    request.headers_mut().insert("x-api-key", key.parse().unwrap());
    request
}

fn form_post(body: &str) -> Request {
    let mut request = event_request("login-submit");
    *request.body_mut() = Body::Text(body.to_owned());
    request
}

fn state_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(name, _)| name == "state")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("no state in {url}"))
}

/// A request of the flow and the status it must get.
struct Step {
    label: String,
    route: Route<RedisStore>,
    request: Request,
    status: u16,
}

fn step(label: &str, route: Route<RedisStore>, request: Request, status: u16) -> Step {
    Step {
        label: label.to_owned(),
        route,
        request,
        status,
    }
}

/// The event a headless client sends to `route`.
fn event_of(route: Route<RedisStore>) -> &'static str {
    match route.path() {
        "/login" => "login-json",
        "/callback" => "callback-json",
        "/token" => "token",
        "/verify" => "verify",
        "/revoke" => "revoke",
        other => panic!("no event for {other}"),
    }
}

/// `route` with `query`, asked with the right key.
fn ask(label: &str, route: Route<RedisStore>, query: &str, status: u16) -> Step {
    step(label, route, keyed(event_of(route), query, API_KEY_VALUE), status)
}

/// `route` asked with a wrong bearer key: 401.
fn wrong_key(label: &str, route: Route<RedisStore>) -> Step {
    step(label, route, keyed(event_of(route), "", WRONG_KEY), 401)
}

struct Flow {
    h: Harness<RedisStore>,
    issuer: Arc<Issuer>,
    exchanges: Vec<Exchange>,
    /// The one-time states /login issued.
    states: Vec<String>,
    codes: Vec<String>,
}

impl Flow {
    async fn call(&mut self, label: &str, route: Route<RedisStore>, request: Request) -> Reply {
        let reply = self.h.call_request(route, request).await;
        self.exchanges.push(Exchange::of(label, route, &reply));
        reply
    }

    /// Sends the steps in order, then fails naming every step that got another status.
    async fn run(&mut self, steps: Vec<Step>) {
        let mut wrong = Vec::new();
        for Step {
            label,
            route,
            request,
            status,
        } in steps
        {
            let reply = self.call(&label, route, request).await;
            if reply.status != status {
                wrong.push(format!(
                    "{label}: expected HTTP {status}, got {}: {}",
                    reply.status, reply.body
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} steps answered otherwise:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }

    #[track_caller]
    fn expect(reply: &Reply, status: u16, label: &str) {
        assert_eq!(reply.status, status, "{label}: {}", reply.body);
    }

    /// A JSON login with `request`; returns the one-time state it issued.
    async fn login(&mut self, label: &str, request: Request) -> String {
        let reply = self.call(label, Route::LOGIN, request).await;
        Self::expect(&reply, 200, label);
        let state = state_of(reply.json()["authorization_url"].as_str().unwrap());
        self.states.push(state.clone());
        state
    }

    async fn login_json(&mut self, connection: &str) -> String {
        let query = if connection == "default" {
            String::new()
        } else {
            format!("connection={connection}")
        };
        self.login("login (JSON)", keyed("login-json", &query, API_KEY_VALUE))
            .await
    }

    async fn login_form(&mut self) -> String {
        let reply = self
            .call(
                "login (form)",
                Route::LOGIN,
                form_post(&format!("api_key={API_KEY_VALUE}")),
            )
            .await;
        Self::expect(&reply, 302, "login (form)");
        let state = state_of(reply.header("location").unwrap());
        self.states.push(state.clone());
        state
    }

    fn code(&mut self, kind: &str) -> String {
        let code = format!("AUTHCODE-{kind}{}-e5b1", self.codes.len() + 1);
        self.codes.push(code.clone());
        code
    }

    /// A callback with `state` and a new code of `kind` (`REJECT-` makes the provider refuse it),
    /// as an API client (`json`) or a browser.
    fn callback(&mut self, label: &str, state: &str, kind: &str, json: bool, status: u16) -> Step {
        let code = self.code(kind);
        let event = if json { "callback-json" } else { "callback" };
        let request = with_query(event_request(event), &format!("code={code}&state={state}"));
        step(label, Route::CALLBACK, request, status)
    }
}

// ---------------------------------------------------------------------------------------------
// The flow
// ---------------------------------------------------------------------------------------------

async fn run_flow(flow: &mut Flow) {
    // Logins: JSON and form, right and wrong keys, a named connection.
    let json_state = flow.login_json("default").await;
    let form_state = flow.login_form().await;
    let lab_state = flow.login_json("lab-2").await;
    let rejected_state = flow.login_json("default").await;
    flow.run(vec![
        wrong_key("login (JSON), wrong key", Route::LOGIN),
        step(
            "login (form), wrong key",
            Route::LOGIN,
            form_post(&format!("api_key={WRONG_KEY}")),
            401,
        ),
    ])
    .await;
    flow.login("login, second API key", x_api_key("login-json", "", SECOND_API_KEY))
        .await;

    // Callbacks: success (browser), replay, provider error redirect, failed exchange, the shared
    // state (JSON), a named connection, a forged state.
    let forged = format!("{}x", &OAUTH_STATE_VALUE[..OAUTH_STATE_VALUE.len() - 1]);
    let steps = vec![
        flow.callback("callback (browser)", &json_state, "", false, 200),
        flow.callback("callback replayed", &json_state, "", false, 403),
        step(
            "callback, provider error",
            Route::CALLBACK,
            with_query(
                event_request("callback"),
                &format!("error=access_denied&error_description=The+user+said+no&state={form_state}"),
            ),
            400,
        ),
        flow.callback("callback, failed exchange", &rejected_state, "REJECT-", false, 502),
        flow.callback(
            "callback, failed exchange (JSON)",
            OAUTH_STATE_VALUE,
            "REJECT-",
            true,
            502,
        ),
        flow.callback("callback, shared state (JSON)", OAUTH_STATE_VALUE, "", true, 200),
        flow.callback("callback, lab-2", &lab_state, "", false, 200),
        flow.callback("callback, forged state", &forged, "", true, 403),
    ];
    flow.run(steps).await;

    // Tokens: fresh, by either header, refused ways of asking, refreshed, refresh failures.
    flow.run(vec![
        ask("token, fresh", Route::TOKEN, "", 200),
        step(
            "token, X-API-Key",
            Route::TOKEN,
            x_api_key("token", "", API_KEY_VALUE),
            200,
        ),
        wrong_key("token, wrong key", Route::TOKEN),
        step(
            "token, wrong X-API-Key",
            Route::TOKEN,
            x_api_key("token", "", WRONG_KEY),
            401,
        ),
        step(
            "token, key in the query",
            Route::TOKEN,
            with_query(event_request("token-no-key"), &format!("api_key={API_KEY_VALUE}")),
            400,
        ),
        ask("token, lab-2", Route::TOKEN, "connection=lab-2", 200),
        ask("token, min_ttl", Route::TOKEN, "min_ttl=3600", 200),
    ])
    .await;
    flow.h.clock.advance(1800);
    flow.run(vec![ask("token, refreshed", Route::TOKEN, "", 200)]).await;
    flow.h.clock.advance(1800);
    flow.issuer.refreshes(DOWN);
    flow.run(vec![
        ask("token, refresh fails (500)", Route::TOKEN, "", 502),
        ask("verify, access expired", Route::VERIFY, "", 202),
    ])
    .await;
    flow.issuer.refreshes(REVOKED);
    flow.run(vec![
        ask("token, invalid_grant", Route::TOKEN, "", 401),
        ask("token, after invalid_grant", Route::TOKEN, "", 401),
        ask("verify, marked", Route::VERIFY, "", 404),
        wrong_key("verify, wrong key", Route::VERIFY),
    ])
    .await;

    // A new login heals the connection; then keep-alive: refreshed, failed, refused.
    flow.issuer.refreshes(WORKING);
    let steps = vec![
        flow.callback("callback, re-login", OAUTH_STATE_VALUE, "", false, 200),
        ask("verify, all connections", Route::VERIFY, "", 200),
    ];
    flow.run(steps).await;
    let mut reports = Vec::new();
    for mode in [WORKING, DOWN, REVOKED] {
        flow.issuer.refreshes(mode);
        flow.h.clock.advance(60);
        reports.extend(keepalive::run(&flow.h.app).await.unwrap().connections);
    }
    let outcomes: Vec<&str> = reports.iter().map(|r| r.outcome.as_str()).collect();
    for outcome in ["refreshed", "failed", "reauthorization_required"] {
        assert!(outcomes.contains(&outcome), "{outcomes:?}");
    }
    let printed = format!("{reports:?}\n{}", serde_json::to_string(&reports).unwrap());
    flow.exchanges.push(Exchange {
        label: "keep-alive reports".into(),
        route: Route::VERIFY,
        status: 500,
        headers: Vec::new(),
        body: printed,
    });

    // Revocation: success, the provider refusing (tokens kept), forced.
    flow.issuer.refreshes(WORKING);
    let lab_state = flow.login_json("lab-2").await;
    let steps = vec![
        flow.callback("callback, lab-2 again", &lab_state, "", true, 200),
        flow.callback("callback, before revoking", OAUTH_STATE_VALUE, "", true, 200),
        ask("revoke", Route::REVOKE, "", 200),
        flow.callback("callback, again", OAUTH_STATE_VALUE, "", true, 200),
    ];
    flow.run(steps).await;
    flow.issuer.revocations(DOWN);
    flow.run(vec![
        ask("revoke, provider down", Route::REVOKE, "", 503),
        ask("revoke, forced", Route::REVOKE, "force=true", 200),
        ask("revoke, lab-2, provider down", Route::REVOKE, "connection=lab-2", 503),
    ])
    .await;
    flow.issuer.revocations(WORKING);
    flow.run(vec![
        ask("revoke, lab-2", Route::REVOKE, "connection=lab-2", 200),
        wrong_key("revoke, wrong key", Route::REVOKE),
        ask("token, after revoking", Route::TOKEN, "", 401),
    ])
    .await;

    // Import: a grant held elsewhere, accepted; refused by the provider; with a wrong key.
    flow.run(vec![
        step("import", Route::IMPORT, import(IMPORTED_REFRESH, API_KEY_VALUE), 200),
        ask("token, after importing", Route::TOKEN, "", 200),
        step(
            "import, refused",
            Route::IMPORT,
            import(IMPORTED_REFUSED, API_KEY_VALUE),
            400,
        ),
        step(
            "import, wrong key",
            Route::IMPORT,
            import(IMPORTED_REFRESH, WRONG_KEY),
            401,
        ),
    ])
    .await;
}

/// Redis unreachable, with a password in REDIS_URL: every route fails, and says nothing of it.
async fn run_store_outage(exchanges: &mut Vec<Exchange>, overrides: &[(&str, &str)]) -> String {
    let url = format!("redis://default:{REDIS_PASSWORD}@127.0.0.1:{}", closed_port());
    let mut all = overrides.to_vec();
    all.push(("REDIS_URL", &url));
    let h = Harness::with(&all).await;
    let mut wrong = Vec::new();
    for Step {
        label,
        route,
        request,
        status,
    } in [
        ask("token, Redis down", Route::TOKEN, "", 503),
        ask("verify, Redis down", Route::VERIFY, "", 503),
        ask("revoke, Redis down", Route::REVOKE, "", 503),
        ask("login, Redis down", Route::LOGIN, "", 503),
        step(
            "callback, Redis down",
            Route::CALLBACK,
            with_query(
                event_request("callback"),
                &format!("code=AUTHCODE-OUTAGE-e5b1&state={OAUTH_STATE_VALUE}"),
            ),
            503,
        ),
    ] {
        let reply = h.call_request(route, request).await;
        if reply.status != status {
            wrong.push(format!(
                "{label}: expected HTTP {status}, got {}: {}",
                reply.status, reply.body
            ));
        }
        exchanges.push(Exchange::of(&label, route, &reply));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let error = keepalive::run(&h.app).await.unwrap_err();
    let described = format!("{error}\n{error:?}\n{:?}", h.app.config);
    assert!(h.app.store.load("x").await.is_err());
    described
}

// ---------------------------------------------------------------------------------------------
// The `serve` binary
// ---------------------------------------------------------------------------------------------

/// Runs a login → callback → token → verify → revoke flow against `serve`, with `log_env` on top
/// of a working set-up; returns everything it printed, the secrets it saw, and the tokens issued.
#[cfg(feature = "local")]
async fn serve_flow(log_env: &[(&str, &str)]) -> (String, Vec<String>) {
    use std::process::Stdio;

    let provider = MockServer::start().await;
    let issuer = Arc::new(Issuer::default());
    issuer.mount(&provider).await;
    let dir = scratch_dir("no-leaks-serve");
    let port = closed_port();
    let mut env = process::local_env(&provider, port, &dir.join("data"));
    for (name, value) in [
        ("CLIENT_SECRET", CLIENT_SECRET_VALUE.to_owned()),
        ("API_KEY", API_KEY_VALUE.to_owned()),
        ("OAUTH_STATE", OAUTH_STATE_VALUE.to_owned()),
        ("TOKEN_ENCRYPTION_KEY", encryption_key()),
        ("REVOCATION_URL", format!("{}{REVOCATION_PATH}", provider.uri())),
    ] {
        env.retain(|(k, _)| k != name);
        env.push((name.to_owned(), value));
    }
    env.extend(log_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let child = process::serve_command(&dir, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start listening");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let base = format!("http://127.0.0.1:{port}");
    let client = process::client();
    let get = |path: String, key: Option<&str>| {
        let mut request = client.get(format!("{base}{path}")).header("accept", "application/json");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request
    };
    let mut seen = Vec::new();
    let mut bodies = String::new();
    let mut wrong = Vec::new();
    let mut send = async |label: &str, request: reqwest::RequestBuilder, status: u16| {
        let response = request.send().await.unwrap();
        if response.status().as_u16() != status {
            wrong.push(format!(
                "serve, {label}: expected HTTP {status}, got {}",
                response.status()
            ));
        }
        let body = response.text().await.unwrap();
        bodies.push_str(&body);
        bodies.push('\n');
        body
    };

    let body = send("login", get("/login".into(), Some(API_KEY_VALUE)), 200).await;
    let login: serde_json::Value = serde_json::from_str(&body).unwrap();
    let state = state_of(login["authorization_url"].as_str().unwrap());
    seen.push(state.clone());
    let revoke = client
        .post(format!("{base}/revoke"))
        .header("authorization", format!("Bearer {API_KEY_VALUE}"));
    let mut steps = Vec::new();
    for (code, state, status) in [
        ("AUTHCODE-SERVE1-e5b1", state.as_str(), 200),
        ("AUTHCODE-SERVE2-e5b1", state.as_str(), 403),
        ("AUTHCODE-SERVE3-e5b1", OAUTH_STATE_VALUE, 200),
    ] {
        seen.push(code.to_owned());
        steps.push((
            "callback",
            get(format!("/callback?code={code}&state={state}"), None),
            status,
        ));
    }
    steps.extend([
        ("token", get("/token".into(), Some(API_KEY_VALUE)), 200),
        ("token, wrong key", get("/token".into(), Some(WRONG_KEY)), 401),
        (
            "token, key in the query",
            get(format!("/token?api_key={API_KEY_VALUE}"), None),
            400,
        ),
        ("verify", get("/verify".into(), Some(API_KEY_VALUE)), 200),
        ("revoke", revoke, 200),
    ]);
    for (label, request, status) in steps {
        send(label, request, status).await;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let tokens_issued = issuer.issued_tokens();
    assert_eq!(tokens_issued.len(), 4, "{tokens_issued:?}");
    for request in provider.received_requests().await.unwrap() {
        let form: HashMap<String, String> = form_urlencoded::parse(&request.body).into_owned().collect();
        seen.extend(form.get("code_verifier").cloned());
    }
    assert_eq!(seen.len(), 5, "a PKCE verifier reached the provider: {seen:?}");
    seen.extend(tokens_issued);

    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "serve exited with {:?}", output.status);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The client-facing answers of the binary hold no secret but the access token of /token.
    for secret in &seen {
        if !secret.starts_with("ACCESS-") && secret != &state {
            assert!(!bodies.contains(secret.as_str()), "serve answered with {secret}");
        }
    }
    (printed, seen)
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// Every occurrence of any of `secrets` in `text`, named by `place`.
fn find(secrets: &[String], place: &str, text: &str, found: &mut Vec<String>) {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            let at = text.find(secret.as_str()).unwrap();
            let start = text[..at].char_indices().rev().nth(60).map_or(0, |(i, _)| i);
            let context: String = text[start..].chars().take(160).collect();
            found.push(format!("{secret} in {place}: …{context}…"));
        }
    }
}

#[test]
fn no_secret_reaches_a_log_line_a_response_a_metric_or_a_debug_print() {
    // The most verbose level anyone could ask for, before the subscriber reads it. Nothing else
    // runs yet: this is the only test of this binary and no runtime has started.
    unsafe {
        std::env::remove_var("AWS_LAMBDA_LOG_LEVEL");
        std::env::remove_var("AWS_LAMBDA_LOG_FORMAT");
        std::env::set_var("RUST_LOG", "trace");
    }
    let logs = LogBuffer::default();
    init_with_writer(logs.writer());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let encryption = encryption_key();
        // Every event the flow raises goes to a receiver whose requests are searched too.
        let receiver = MockServer::start().await;
        Mock::given(matchers::method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&receiver)
            .await;
        let webhook_url = format!("{}/hooks", receiver.uri());
        let overrides = [
            ("WEBHOOK_URLS", webhook_url.as_str()),
            ("WEBHOOK_SECRET", WEBHOOK_SECRET_VALUE),
            ("CLIENT_SECRET", CLIENT_SECRET_VALUE),
            ("API_KEY", API_KEY_VALUE),
            ("API_KEYS", SECOND_API_KEY),
            ("OAUTH_STATE", OAUTH_STATE_VALUE),
            ("TOKEN_ENCRYPTION_KEY", encryption.as_str()),
            // Every connection is due at every keep-alive run.
            ("KEEPALIVE_WINDOW", "31536000"),
        ];
        let mut h = Harness::with(&overrides).await;
        let metrics = h.capture_metrics();
        let issuer = Arc::new(Issuer::default());
        issuer.mount(&h.provider).await;
        let mut flow = Flow {
            h,
            issuer: issuer.clone(),
            exchanges: Vec::new(),
            states: Vec::new(),
            codes: Vec::new(),
        };
        run_flow(&mut flow).await;
        // What the flow's last steps raised goes out with one more pass.
        keepalive::run(&flow.h.app).await.unwrap();
        let deliveries: Vec<String> = receiver
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|request| format!("{:?}\n{}", request.headers, String::from_utf8_lossy(&request.body)))
            .collect();
        for kind in [
            "connection.created",
            "connection.revoked",
            "connection.reauthorization_required",
        ] {
            assert!(
                deliveries.iter().any(|delivery| delivery.contains(kind)),
                "no {kind} event delivered"
            );
        }

        // What reached the provider: the PKCE verifiers (one per one-time state redeemed).
        let mut verifiers = Vec::new();
        for request in flow.h.provider.received_requests().await.unwrap() {
            let form: HashMap<String, String> = form_urlencoded::parse(&request.body).into_owned().collect();
            verifiers.extend(form.get("code_verifier").cloned());
            if let Some(secret) = form.get("client_secret") {
                assert_eq!(secret, CLIENT_SECRET_VALUE);
            }
        }
        assert_eq!(verifiers.len(), 4, "{verifiers:?}");

        // Debug prints of what holds secrets.
        let issued = issuer.issued_tokens();
        let stored = tokens(&issued[0], &issued[1], START + 1799, START + 86_400);
        let record = ConnectionRecord::Active(stored.clone());
        let grant = parse_response(
            reqwest::StatusCode::OK,
            None,
            serde_json::to_vec(&grant_body("ACCESS-TOKEN-DEBUG-a91f", "REFRESH-TOKEN-DEBUG-3c7d"))
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        let pending = PendingLogin {
            code_verifier: Secret::new(verifiers[0].clone()),
            connection: "default".into(),
            issued_at: START,
            redirect_uri: Some(REDIRECT_URI.into()),
        };
        let started = Started {
            authorization_url: format!(
                "https://provider.example/authorize?client_id=c&state={}",
                flow.states[0]
            ),
            expires_at: START + 600,
        };
        let debug_prints = format!(
            "{:?}\n{:#?}\n{stored:?}\n{stored:#?}\n{record:?}\n{grant:?}\n{pending:?}\n{started:?}\n{:?}",
            flow.h.app.config, flow.h.app.config, flow.h.app.sealer
        );
        let outage = run_store_outage(&mut flow.exchanges, &overrides).await;

        // The log level is capped, whatever RUST_LOG says: our DEBUG shows (the capture works),
        // TRACE never, and dependencies (lambda_runtime logs whole payloads at TRACE) stop at INFO.
        tracing::debug!(target: "token_broker::probe", "PROBE-own-debug");
        tracing::trace!(target: "token_broker::probe", "PROBE-own-trace {API_KEY_VALUE}");
        tracing::info!(target: "lambda_runtime::runtime", "PROBE-runtime-info");
        tracing::trace!(
            target: "lambda_runtime::layers::api_response",
            "PROBE-runtime-trace payload {{\"access_token\":\"{}\"}}",
            issuer.access_tokens()[0]
        );
        tracing::debug!(target: "lambda_runtime::runtime", "PROBE-runtime-debug");
        tracing::trace!(target: "lambda_http", "PROBE-http-trace");
        tracing::debug!(target: "hyper::proto::h1::io", "PROBE-dependency-debug hyper");
        tracing::debug!(target: "reqwest::connect", "PROBE-dependency-debug reqwest");
        tracing::trace!(target: "redis", "PROBE-dependency-debug redis");
        tracing::debug!(target: "rustls::client", "PROBE-dependency-debug rustls");

        #[cfg(feature = "local")]
        let serve_runs = [
            serve_flow(&[("RUST_LOG", "trace")]).await,
            serve_flow(&[("AWS_LAMBDA_LOG_LEVEL", "TRACE"), ("AWS_LAMBDA_LOG_FORMAT", "json")]).await,
        ];
        #[cfg(not(feature = "local"))]
        let serve_runs: [(String, Vec<String>); 0] = [];

        // ---- every secret, and where it may appear
        let access: Vec<String> = issuer.access_tokens();
        let refresh: Vec<String> = issuer
            .issued_tokens()
            .into_iter()
            .filter(|t| t.starts_with("REFRESH-"))
            .collect();
        assert!(access.len() >= 8 && refresh.len() >= 8, "{access:?}");
        let mut never: Vec<String> = vec![
            CLIENT_SECRET_VALUE.into(),
            API_KEY_VALUE.into(),
            SECOND_API_KEY.into(),
            OAUTH_STATE_VALUE.into(),
            WRONG_KEY.into(),
            REDIS_PASSWORD.into(),
            encryption.clone(),
            String::from_utf8_lossy(ENCRYPTION_KEY_BYTES).into_owned(),
            "ACCESS-TOKEN-DEBUG-a91f".into(),
            "REFRESH-TOKEN-DEBUG-3c7d".into(),
            IMPORTED_REFRESH.into(),
            IMPORTED_REFUSED.into(),
            WEBHOOK_SECRET_VALUE.into(),
            WEBHOOK_SECRET_VALUE["whsec_".len()..].into(),
            "WHSECRET-9d2e".into(),
        ];
        never.extend(refresh.iter().cloned());
        never.extend(flow.codes.iter().cloned());
        never.extend(verifiers.iter().cloned());
        let states = flow.states.clone();
        let mut everything = never.clone();
        everything.extend(access.iter().cloned());
        everything.extend(states.iter().cloned());

        let mut found = Vec::new();
        let log_lines = logs.lines();
        for (i, line) in log_lines.iter().enumerate() {
            find(&everything, &format!("log line {i}"), line, &mut found);
        }
        let metric_lines = metrics.lock().unwrap().clone();
        for (i, line) in metric_lines.iter().enumerate() {
            find(&everything, &format!("metric line {i}"), line, &mut found);
        }
        find(&everything, "a Debug print", &debug_prints, &mut found);
        for (i, delivery) in deliveries.iter().enumerate() {
            find(&everything, &format!("webhook delivery {i}"), delivery, &mut found);
        }
        find(&everything, "the store outage's errors", &outage, &mut found);
        for exchange in &flow.exchanges {
            let place = format!("{} (HTTP {})", exchange.label, exchange.status);
            // Error bodies and headers carry no secret at all.
            let allowed_in_body: Vec<String> = match (exchange.route, exchange.status) {
                (_, 400..) => Vec::new(),
                // The access token is what /token hands out.
                (route, 200) if route == Route::TOKEN => access.clone(),
                // The authorization URL carries the one-time state.
                (route, 200) if route == Route::LOGIN => states.clone(),
                _ => Vec::new(),
            };
            let forbidden: Vec<String> = everything
                .iter()
                .filter(|s| !allowed_in_body.contains(s))
                .cloned()
                .collect();
            find(&forbidden, &format!("the body of {place}"), &exchange.body, &mut found);
            for (name, value) in &exchange.headers {
                // The login form's redirect carries the one-time state in Location.
                let allowed = if name == "location" && exchange.status == 302 {
                    states.clone()
                } else {
                    Vec::new()
                };
                let forbidden: Vec<String> = everything.iter().filter(|s| !allowed.contains(s)).cloned().collect();
                find(&forbidden, &format!("header {name} of {place}"), value, &mut found);
            }
        }
        for (run, (printed, seen)) in serve_runs.iter().enumerate() {
            let mut secrets = never.clone();
            secrets.extend(seen.iter().cloned());
            for (i, line) in printed.lines().enumerate() {
                find(&secrets, &format!("serve run {run}, output line {i}"), line, &mut found);
            }
        }
        assert!(
            found.is_empty(),
            "{} secrets leaked:\n{}",
            found.len(),
            found.join("\n")
        );
        // The audit trail was written at this level too, so the search above covered its lines.
        for event in ["login", "callback", "token", "verify", "revoke", "import", "refresh"] {
            let line = format!("audit audit=\"{event}\"");
            assert!(
                log_lines.iter().any(|logged| logged.contains(&line)),
                "no audit line for {event}"
            );
        }
        for (run, (printed, _)) in serve_runs.iter().enumerate() {
            // The binary logs each request's path, never its query (the callback's code), and
            // nothing at TRACE.
            assert!(
                printed.contains("/callback"),
                "serve run {run} logged no request:\n{printed}"
            );
            assert!(!printed.contains("/callback?"), "serve run {run}:\n{printed}");
            assert!(
                !printed.contains("TRACE"),
                "serve run {run} logged at TRACE:\n{printed}"
            );
        }

        // ---- the capture itself worked, and the level was capped
        let text = log_lines.join("\n");
        for expected in [
            "PROBE-own-debug",
            "PROBE-runtime-info",
            "login started",
            "authorization stored",
            "request refused",
            "request failed",
            "refresh",
            "keep-alive",
            "connection revoked",
        ] {
            assert!(text.contains(expected), "no log line has {expected:?}:\n{text}");
        }
        for absent in [
            "PROBE-own-trace",
            "PROBE-runtime-trace",
            "PROBE-runtime-debug",
            "PROBE-http-trace",
            "PROBE-dependency-debug",
        ] {
            assert!(!text.contains(absent), "{absent} was logged:\n{text}");
        }
        let traces: Vec<&String> = log_lines
            .iter()
            .filter(|line| line.split_whitespace().nth(1) == Some("TRACE"))
            .collect();
        assert!(traces.is_empty(), "TRACE lines were logged: {traces:#?}");
        assert!(log_lines.len() >= 40, "only {} log lines:\n{text}", log_lines.len());
        assert!(
            metric_lines.len() >= 5 && metric_lines.iter().any(|l| l.contains("Refreshes")),
            "{metric_lines:?}"
        );
    });
}
