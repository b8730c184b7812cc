//! Named, scoped API keys (`SCOPED_API_KEYS`): every route that takes a key against a key for
//! each action, through the Lambda handlers and over real HTTP in local mode. Allowed gives the
//! route's usual answer; disallowed gives 403 and changes nothing; an unknown key stays 401.

mod common;

use common::*;
use token_broker::http::routes::Route;
use wiremock::ResponseTemplate;

const ACTIONS: [&str; 5] = ["login", "token", "verify", "revoke", "import"];

/// One key per action (`only-<action>`, presented as `key-for-<action>`), one that may take
/// tokens of `lab-1` alone, and one that may see `default` and `lab-1`.
fn scoped_keys() -> String {
    let mut entries: Vec<String> = ACTIONS
        .iter()
        .map(|action| format!("only-{action}:{}:{action}", sha256_hex(&format!("key-for-{action}"))))
        .collect();
    entries.push(format!("ci-lab-1:{}:token:lab-1", sha256_hex("ci-key")));
    entries.push(format!("watch-two:{}:verify:default,lab-1", sha256_hex("watch-key")));
    entries.join(";")
}

async fn harness() -> Harness {
    let h = Harness::with(&[("SCOPED_API_KEYS", &scoped_keys())]).await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200).set_body_json(grant_body("access-new", "refresh-new")),
    )
    .await;
    h.seed(&tokens("access-0", "refresh-0", START - 1, START + 86_400))
        .await;
    h
}

/// The route and event of each action, sent with `key`.
fn keyed_request(
    action: &str,
    key: &str,
    query: &str,
) -> (Route<token_broker::base::store::RedisStore>, lambda_http::Request) {
    let (route, event) = match action {
        "login" => (Route::LOGIN, "login-json"),
        "token" => (Route::TOKEN, "token"),
        "verify" => (Route::VERIFY, "verify"),
        "revoke" => (Route::REVOKE, "revoke"),
        "import" => (Route::IMPORT, "import"),
        other => panic!("{other}"),
    };
    let mut request = event_request(event);
    if !query.is_empty() {
        let path = request.uri().path().to_owned();
        *request.uri_mut() = format!("{path}?{query}").parse().unwrap();
    }
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    (route, request)
}

#[tokio::test]
async fn each_action_is_open_to_its_own_key_only() {
    for action in ACTIONS {
        for holder in ACTIONS {
            let h = harness().await;
            let before = h.stored().await;
            let (route, request) = keyed_request(action, &format!("key-for-{holder}"), "");
            let reply = h.call_request(route, request).await;
            if action == holder {
                assert!(
                    ![401, 403].contains(&reply.status),
                    "{holder}'s key on /{action}: {} {}",
                    reply.status,
                    reply.body
                );
            } else {
                assert_eq!(reply.status, 403, "{holder}'s key on /{action}: {}", reply.body);
                assert_eq!(reply.error(), "insufficient_scope");
                let description = reply.json()["error_description"].as_str().unwrap().to_owned();
                assert!(description.contains(&format!("/{action}")), "{description}");
                assert!(description.contains(&format!("only-{holder}")), "{description}");
                assert_eq!(
                    h.stored().await,
                    before,
                    "{holder}'s key on /{action} changed the store"
                );
                assert!(
                    h.token_requests().await.is_empty(),
                    "{holder}'s key on /{action} reached the provider"
                );
            }
        }
    }
}

#[tokio::test]
async fn an_unknown_key_is_401_and_the_unscoped_api_key_still_does_everything() {
    for action in ACTIONS {
        let h = harness().await;
        let (route, request) = keyed_request(action, "no-such-key", "");
        let reply = h.call_request(route, request).await;
        assert_eq!(reply.status, 401, "/{action}: {}", reply.body);
        assert_eq!(reply.error(), "unauthorized");
        let (route, request) = keyed_request(action, API_KEY, "");
        let reply = h.call_request(route, request).await;
        assert!(![401, 403].contains(&reply.status), "/{action}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_key_limited_to_a_connection_cannot_reach_another_and_learns_nothing_about_it() {
    let h = harness().await;
    h.seed_connection(
        "lab-1",
        &tokens("lab-access", "lab-refresh", START + 600, START + 86_400),
    )
    .await;
    let (route, req) = keyed_request("token", "ci-key", "connection=lab-1");
    let reply = h.call_request(route, req).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["access_token"], "lab-access");

    // The default connection (stored) and one that does not exist answer alike.
    for query in ["", "connection=default", "connection=lab-9"] {
        let (route, req) = keyed_request("token", "ci-key", query);
        let reply = h.call_request(route, req).await;
        assert_eq!(reply.status, 403, "{query}: {}", reply.body);
        assert_eq!(reply.error(), "insufficient_scope");
        assert!(
            reply.json()["error_description"]
                .as_str()
                .unwrap()
                .contains("connection"),
            "{}",
            reply.body
        );
    }
    assert!(h.token_requests().await.is_empty());
}

#[tokio::test]
async fn verify_lists_only_the_connections_a_key_may_see() {
    let h = harness().await;
    for name in ["lab-1", "lab-2"] {
        h.seed_connection(name, &tokens("a", "r", START + 600, START + 86_400))
            .await;
    }
    let (route, req) = keyed_request("verify", "watch-key", "");
    let reply = h.call_request(route, req).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let listed: Vec<String> = reply.json()["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connection"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, vec!["default", "lab-1"]);
    assert!(!reply.body.contains("lab-2"));
    // The unscoped key still sees all three.
    let all = h.call(Route::VERIFY, "verify").await;
    assert_eq!(all.json()["connections"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn the_login_form_needs_a_key_that_may_log_in() {
    let h = harness().await;
    let form = |key: &str| {
        let mut request = event_request("login-submit");
        *request.body_mut() = lambda_http::Body::Text(format!("api_key={key}&connection=default"));
        request
    };
    let refused = h.call_request(Route::LOGIN, form("key-for-token")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.header("content-type").unwrap().starts_with("text/html"));
    assert!(refused.body.contains("insufficient_scope"), "{}", refused.body);
    let allowed = h.call_request(Route::LOGIN, form("key-for-login")).await;
    assert_eq!(allowed.status, 302, "{}", allowed.body);
}

/// The log of this test binary, set up by whichever test asks first.
fn logs() -> &'static LogBuffer {
    static LOGS: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        token_broker::base::logging::init_with_writer(logs.writer());
        logs
    })
}

#[tokio::test]
async fn log_lines_name_the_key_and_never_show_it() {
    let logs = logs();
    let h = harness().await;
    let (route, request) = keyed_request("token", "key-for-token", "");
    assert_eq!(h.call_request(route, request).await.status, 200);
    let (route, request) = keyed_request("revoke", "key-for-verify", "");
    assert_eq!(h.call_request(route, request).await.status, 403);

    let lines = logs.lines();
    assert!(
        lines.iter().any(|l| l.contains("only-token") && l.contains("refresh")),
        "no line of the refresh names its key: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("only-verify") && l.contains("refused")),
        "the refusal is not logged with its key: {lines:#?}"
    );
    for line in &lines {
        assert!(!line.contains("key-for-"), "a key reached the log: {line}");
    }
}
