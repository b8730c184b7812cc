//! The `serve` binary as a real process: configuration errors, the full flow over HTTP, tokens
//! surviving a restart and a `kill -9`, and the embedded store refused on Lambda.

#![cfg(feature = "local")]

mod common;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use common::{process::*, *};
use wiremock::{MockServer, ResponseTemplate};

fn free_port() -> u16 {
    closed_port()
}

fn data_dir(name: &str) -> PathBuf {
    scratch_dir(name)
}

const CALLBACK: &str = "/callback?code=test-authorization-code&state=test-oauth-state";

#[tokio::test]
async fn missing_configuration_exits_2_and_names_every_variable() {
    let dir = data_dir("missing-config");
    let output = serve_command(&dir, &[]).output().unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for name in ["CLIENT_ID", "CLIENT_SECRET", "TOKEN_URL", "AUTHORIZE_URL", "API_KEY"] {
        assert!(stderr.contains(name), "{name} not named in: {stderr}");
    }
    // A static state is optional now: without one, only /login's one-time states work.
    assert!(!stderr.contains("OAUTH_STATE"), "{stderr}");
    assert!(stderr.contains(".env.example"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_malformed_variable_exits_2_and_names_it() {
    let provider = MockServer::start().await;
    let dir = data_dir("bad-config");
    let mut env = local_env(&provider, free_port(), &dir);
    env.push(("REFRESH_SKEW".into(), "soon".into()));

    let output = serve_command(&dir, &env).output().unwrap();

    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("REFRESH_SKEW"));
}

#[tokio::test]
async fn configuration_is_read_from_a_dot_env_file() {
    let provider = MockServer::start().await;
    let dir = data_dir("dot-env");
    let port = free_port();
    let env = local_env(&provider, port, &dir);
    let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(dir.join(".env"), text).unwrap();

    let server = Server::start(&dir, &[("PORT".into(), port.to_string())]).await;
    let (status, _) = server.get("/verify", true).await;
    assert_eq!(status, 404);
    server.stop();
}

#[tokio::test]
async fn the_embedded_store_is_refused_on_lambda() {
    let provider = MockServer::start().await;
    let dir = data_dir("on-lambda");
    let mut env = local_env(&provider, free_port(), &dir);
    env.push(("AWS_LAMBDA_FUNCTION_NAME".into(), "token".into()));

    let output = serve_command(&dir, &env).output().unwrap();

    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("REDIS_URL"));
}

#[tokio::test]
async fn the_banner_names_routes_redirect_uri_and_store_but_no_secret() {
    let provider = MockServer::start().await;
    let dir = data_dir("banner");
    let port = free_port();
    let env = local_env(&provider, port, &dir);
    let child = serve_command(&dir, &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let banner = String::from_utf8_lossy(&output.stdout);

    for expected in [
        "/callback",
        "/token",
        "/verify",
        &format!("http://localhost:{port}/callback"),
        "embedded",
    ] {
        assert!(banner.contains(expected), "{expected} missing from: {banner}");
    }
    for secret in [CLIENT_SECRET, API_KEY, OAUTH_STATE] {
        assert!(!banner.contains(secret), "banner shows a secret: {banner}");
    }
}

#[tokio::test]
async fn full_flow_over_http_and_tokens_survive_a_restart() {
    let provider = MockServer::start().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&provider, Duration::ZERO).await;
    let dir = data_dir("restart");
    let env = local_env(&provider, free_port(), &dir);

    let server = Server::start(&dir, &env).await;
    let (status, body) = server.get(CALLBACK, false).await;
    assert_eq!(status, 200, "{body}");
    let (status, token) = server.get("/token", true).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["access_token"], "access-1");
    assert_eq!(server.get("/verify", true).await.0, 200);
    assert_eq!(server.get("/token", false).await.0, 401);
    server.stop();

    let server = Server::start(&dir, &env).await;
    let (status, token) = server.get("/token", true).await;
    assert_eq!(status, 200);
    assert_eq!(token["access_token"], "access-1");
    assert_eq!(server.get("/verify", true).await.0, 200);
    server.stop();
    assert_eq!(fake.code_exchanges(), 1);
    assert_eq!(fake.refreshes(), 0);
}

#[tokio::test]
async fn kill_9_during_writes_leaves_the_store_readable() {
    let provider = MockServer::start().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&provider, Duration::ZERO).await;
    let dir = data_dir("kill9");
    let env = local_env(&provider, free_port(), &dir);

    let server = Server::start(&dir, &env).await;
    assert_eq!(server.get(CALLBACK, false).await.0, 200);
    // A stream of logins, each a durable write, cut off by SIGKILL at an arbitrary point.
    let base = server.base.clone();
    let storm = tokio::spawn(async move {
        let client = client();
        for _ in 0..500 {
            let _ = client.get(format!("{base}{CALLBACK}")).send().await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill_hard();
    storm.abort();
    assert!(
        fake.code_exchanges() > 1,
        "no writes were under way when the process was killed"
    );

    let server = Server::start(&dir, &env).await;
    let (status, body) = server.get("/verify", true).await;
    assert_eq!(status, 200, "{body}");
    let (status, token) = server.get("/token", true).await;
    assert_eq!(status, 200, "{token}");
    assert!(token["access_token"].as_str().unwrap().starts_with("access-"));
    server.stop();
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let provider = MockServer::start().await;
    let dir = data_dir("double");
    let server = Server::start(&dir, &local_env(&provider, free_port(), &dir)).await;

    let output = serve_command(&dir, &local_env(&provider, free_port(), &dir))
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("another token-broker"));
    server.stop();
}

#[tokio::test]
async fn local_mode_serves_from_redis_when_redis_url_is_set() {
    let provider = MockServer::start().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&provider, Duration::ZERO).await;
    let dir = data_dir("local-redis");
    let mut env = local_env(&provider, free_port(), &dir);
    env.push(("REDIS_URL".into(), redis_url()));
    env.push(("KEY_PREFIX".into(), unique_prefix()));

    let server = Server::start(&dir, &env).await;
    assert_eq!(server.get(CALLBACK, false).await.0, 200);
    assert_eq!(server.get("/token", true).await.1["access_token"], "access-1");
    server.stop();
    assert!(!dir.join("tokens.redb").exists(), "the embedded store was used");
}

#[tokio::test]
async fn serve_keepalive_runs_one_pass_and_reports_it() {
    let provider = MockServer::start().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&provider, Duration::ZERO).await;
    let dir = data_dir("keepalive-once");
    let mut env = local_env(&provider, free_port(), &dir);
    // The server's own loop stays off, so the pass below is the only one.
    env.push(("KEEPALIVE_INTERVAL".into(), "0".into()));
    let server = Server::start(&dir, &env).await;
    assert_eq!(server.get(CALLBACK, false).await.0, 200);
    server.stop();

    // A window longer than the 90-day refresh token: the connection is due.
    env.push(("KEEPALIVE_WINDOW".into(), (100 * 86_400).to_string()));
    let output = serve_command(&dir, &env).arg("keepalive").output().unwrap();

    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["connections"][0]["connection"], "default");
    assert_eq!(report["connections"][0]["outcome"], "refreshed");
    assert_eq!(fake.refreshes(), 1);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("refresh-"));
}

#[tokio::test]
async fn the_server_runs_keepalive_on_its_own() {
    let provider = MockServer::start().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&provider, Duration::ZERO).await;
    let dir = data_dir("keepalive-loop");
    let mut env = local_env(&provider, free_port(), &dir);
    env.push(("KEEPALIVE_INTERVAL".into(), "1".into()));
    env.push(("KEEPALIVE_WINDOW".into(), (100 * 86_400).to_string()));
    let server = Server::start(&dir, &env).await;
    assert_eq!(server.get(CALLBACK, false).await.0, 200);

    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.refreshes() == 0 {
        assert!(Instant::now() < deadline, "keep-alive never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop();
    assert_eq!(fake.rejected(), 0);
}

#[tokio::test]
async fn named_connections_work_in_local_mode() {
    let provider = MockServer::start().await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&provider, Duration::ZERO).await;
    let dir = data_dir("local-connections");
    let env = local_env(&provider, free_port(), &dir);
    let server = Server::start(&dir, &env).await;

    for connection in ["lab-1", "lab-2"] {
        let (status, login) = server.get(&format!("/login?connection={connection}"), true).await;
        assert_eq!(status, 200, "{login}");
        let url = reqwest::Url::parse(login["authorization_url"].as_str().unwrap()).unwrap();
        let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
        let (status, body) = server
            .get(&format!("/callback?code=c-{connection}&state={state}"), false)
            .await;
        assert_eq!(status, 200, "{body}");
    }

    assert_eq!(
        server.get("/token?connection=lab-1", true).await.1["access_token"],
        "access-1"
    );
    assert_eq!(
        server.get("/token?connection=lab-2", true).await.1["access_token"],
        "access-2"
    );
    assert_eq!(server.get("/token", true).await.0, 401);
    let (_, listing) = server.get("/verify", true).await;
    let names: Vec<&str> = listing["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["connection"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lab-1", "lab-2"]);
    server.stop();
}

#[tokio::test]
async fn a_restart_after_kill_9_mid_refresh_refreshes_at_once() {
    use wiremock::{Mock, ResponseTemplate, matchers};
    let provider = MockServer::start().await;
    let grant = |access: &str, refresh: &str, expires_in: i64| {
        let mut body = grant_body(access, refresh);
        body["expires_in"] = expires_in.into();
        ResponseTemplate::new(200).set_body_json(body)
    };
    let refresh = || {
        Mock::given(matchers::method("POST"))
            .and(matchers::path(TOKEN_PATH))
            .and(matchers::body_string_contains("grant_type=refresh_token"))
    };
    // A pair that is due at once, whose first refresh the provider holds until the process dies.
    Mock::given(matchers::method("POST"))
        .and(matchers::path(TOKEN_PATH))
        .and(matchers::body_string_contains("grant_type=authorization_code"))
        .respond_with(grant("access-0", "refresh-0", 1))
        .mount(&provider)
        .await;
    refresh()
        .respond_with(grant("access-held", "refresh-held", 1799).set_delay(Duration::from_secs(60)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&provider)
        .await;
    refresh()
        .respond_with(grant("access-1", "refresh-1", 1799))
        .mount(&provider)
        .await;
    let refreshes = || async {
        let requests = provider.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("grant_type=refresh_token"))
            .count()
    };
    let dir = data_dir("kill9-refresh");
    let mut env = local_env(&provider, free_port(), &dir);
    env.push(("KEEPALIVE_INTERVAL".into(), "0".into()));
    // REFRESH_WAIT stays at its 5 s default: the dead holder's lock (15 s) would outlast it.

    let server = Server::start(&dir, &env).await;
    assert_eq!(server.get(CALLBACK, false).await.0, 200);
    let base = server.base.clone();
    let held = tokio::spawn(async move {
        let _ = client()
            .get(format!("{base}/token"))
            .header("authorization", format!("Bearer {API_KEY}"))
            .send()
            .await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while refreshes().await == 0 {
        assert!(Instant::now() < deadline, "the refresh never reached the provider");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill_hard();
    held.abort();
    // The access token of the first pair has lapsed by now: only a refresh can serve /token.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let server = Server::start(&dir, &env).await;
    let started = Instant::now();
    let (status, token) = server.get("/token", true).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["access_token"], "access-1");
    assert!(
        waited < Duration::from_secs(3),
        "waited {waited:?} for a dead holder's lock"
    );
    assert_eq!(refreshes().await, 2, "exactly one refresh after the restart");
    server.stop();
}

/// The `redirect_uri` of a login sent to `server` with `Host: host`.
async fn local_redirect(server: &Server, host: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("{}/login", server.base))
        .header("host", host)
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {API_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let url = reqwest::Url::parse(body["authorization_url"].as_str().unwrap()).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned()
}

#[tokio::test]
async fn local_logins_follow_the_browsers_host_unless_public_url_pins_it() {
    let provider = MockServer::start().await;
    let dir = data_dir("host");
    let port = free_port();
    let mut env = local_env(&provider, port, &dir);

    let server = Server::start(&dir, &env).await;
    assert_eq!(
        local_redirect(&server, &format!("localhost:{port}")).await,
        format!("http://localhost:{port}/callback")
    );
    server.stop();

    // Pinned, a forged Host cannot move the redirect to another origin.
    env.push(("PUBLIC_URL".into(), "https://broker.example".into()));
    let server = Server::start(&dir, &env).await;
    for host in ["evil.example", &format!("localhost:{port}")] {
        assert_eq!(
            local_redirect(&server, host).await,
            "https://broker.example/callback",
            "{host}"
        );
    }
    server.stop();
}

/// The variables of `local_env` with the endpoints left to discovery from `issuer`.
fn discovering_env(provider: &MockServer, port: u16, dir: &std::path::Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = local_env(provider, port, dir)
        .into_iter()
        .filter(|(name, _)| name != "TOKEN_URL" && name != "AUTHORIZE_URL")
        .collect();
    env.push(("ISSUER".into(), provider.uri()));
    env
}

fn metadata(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oidc/auth"),
        "token_endpoint": format!("{issuer}/oidc/token"),
        "code_challenge_methods_supported": ["S256"],
    })
}

#[tokio::test]
async fn local_mode_discovers_its_endpoints_from_issuer_and_serve_discover_prints_them() {
    let provider = MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/.well-known/openid-configuration"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(metadata(&provider.uri())))
        .mount(&provider)
        .await;
    let dir = data_dir("discover");
    let port = free_port();
    let env = discovering_env(&provider, port, &dir);

    let output = serve_command(&dir, &env).arg("discover").output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    for line in [
        format!("TOKEN_URL={}/oidc/token", provider.uri()),
        format!("AUTHORIZE_URL={}/oidc/auth", provider.uri()),
        "TOKEN_AUTH_METHOD=client_secret_basic".to_owned(),
        "PKCE=true".to_owned(),
        "REQUIRE_ISS=false".to_owned(),
    ] {
        assert!(printed.lines().any(|l| l == line), "{line} missing from: {printed}");
    }

    let server = Server::start(&dir, &env).await;
    let (status, login) = server.get("/login", true).await;
    assert_eq!(status, 200, "{login}");
    let url = login["authorization_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/oidc/auth?", provider.uri())), "{url}");
    server.stop();
}

#[tokio::test]
async fn a_mismatched_or_unreachable_issuer_stops_local_mode_before_it_opens_the_store() {
    let provider = MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/.well-known/openid-configuration"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(metadata("https://other.example")))
        .mount(&provider)
        .await;
    let dir = data_dir("discover-mismatch");
    let mut env = discovering_env(&provider, free_port(), &dir);
    let store_dir = dir.join("store");
    env.retain(|(name, _)| name != "DATA_DIR");
    env.push(("DATA_DIR".into(), store_dir.display().to_string()));

    let output = serve_command(&dir, &env).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("other.example") && stderr.contains("ISSUER"),
        "{stderr}"
    );
    assert!(!store_dir.exists(), "the store was opened");

    env.retain(|(name, _)| name != "ISSUER");
    env.push(("ISSUER".into(), format!("http://127.0.0.1:{}", closed_port())));
    let output = serve_command(&dir, &env).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("could not be fetched"));
}

/// Every action against a key for each action, over HTTP: the key's own action gives the route's
/// usual answer, every other action 403 with nothing changed, an unknown key 401.
#[tokio::test]
async fn every_action_and_scope_holds_over_http_in_local_mode() {
    const ACTIONS: [&str; 5] = ["login", "token", "verify", "revoke", "import"];
    let provider = MockServer::start().await;
    provider_answers(
        &provider,
        ResponseTemplate::new(200).set_body_json(grant_body("access-new", "refresh-new")),
    )
    .await;
    revocation_answers(&provider).await;
    let dir = data_dir("scope-matrix");
    let mut env = local_env(&provider, free_port(), &dir);
    env.push(("REVOCATION_URL".into(), format!("{}{REVOCATION_PATH}", provider.uri())));
    let entries: Vec<String> = ACTIONS
        .iter()
        .map(|action| format!("only-{action}:{}:{action}", sha256_hex(&format!("key-for-{action}"))))
        .collect();
    env.push(("SCOPED_API_KEYS".into(), entries.join(";")));
    let server = Server::start(&dir, &env).await;
    let client = reqwest::Client::new();
    let send = async |action: &str, key: &str| {
        let url = format!("{}/{action}", server.base);
        let request = match action {
            "revoke" => client.post(url),
            "import" => client
                .post(url)
                .header("content-type", "application/json")
                .body(r#"{"refresh_token": "imported-refresh-token"}"#),
            _ => client.get(url),
        };
        let response = request
            .header("accept", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        (status, body)
    };
    let log_in = async || {
        let response = client.get(format!("{}{CALLBACK}", server.base)).send().await.unwrap();
        assert_eq!(response.status(), 200);
    };
    // What HTTP shows of the store and the provider: the connection's state as /verify reports
    // it, and the requests the provider got.
    let observed = async || {
        let (status, body) = send("verify", "key-for-verify").await;
        let state = [&body["status"], &body["issued_at"], &body["access_token_expires_at"]].map(|v| v.to_string());
        (status, state, provider.received_requests().await.unwrap().len())
    };
    log_in().await;
    for action in ACTIONS {
        for holder in ACTIONS.iter().filter(|holder| **holder != action) {
            let before = observed().await;
            let (status, body) = send(action, &format!("key-for-{holder}")).await;
            assert_eq!(status, 403, "{holder}'s key on /{action}: {body}");
            assert_eq!(body["error"], "insufficient_scope");
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("/{action}"))
            );
            assert_eq!(
                observed().await,
                before,
                "{holder}'s key on /{action} changed something"
            );
        }
        let (status, body) = send(action, "no-such-key").await;
        assert_eq!((status, &body["error"]), (401, &"unauthorized".into()), "/{action}");
        let (status, body) = send(action, &format!("key-for-{action}")).await;
        assert_eq!(status, 200, "/{action} with its own key: {body}");
        if action == "revoke" {
            log_in().await;
        }
    }
    // The unscoped API_KEY still does everything.
    assert_eq!(send("token", API_KEY).await.0, 200);
    assert_eq!(send("verify", API_KEY).await.0, 200);
    server.stop();
}
