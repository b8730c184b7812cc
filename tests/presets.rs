//! Providers by name: for every preset, a fake of that provider over real HTTP that speaks its
//! documented wire format (client authentication, parameters, omitted fields, rotation or not),
//! and the whole flow against it (login, callback, token, refresh, verify, revoke) configured
//! with nothing but `PROVIDER`, the client's id and secret and the API key. The fake's
//! expectations are written here from the providers' documentation, independently of the preset
//! table, so a wrong entry there fails.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use common::*;
use serde_json::{Value, json};
use token_broker::{http::routes::Route, oauth::authorization::s256_challenge};
use wiremock::{Mock, Request, Respond, ResponseTemplate, matchers};

/// What one provider's endpoints expect and answer.
struct Wire {
    preset: &'static str,
    /// Settings beyond the id, secret and key that this provider cannot do without.
    settings: &'static [(&'static str, &'static str)],
    authorize_path: &'static str,
    token_path: &'static str,
    revocation_path: Option<&'static str>,
    /// HTTP Basic; else `client_id` and `client_secret` in the form.
    basic_auth: bool,
    /// The `scope` parameter exactly as it goes on the wire.
    scope: Option<&'static str>,
    authorize_params: &'static [(&'static str, &'static str)],
    pkce: bool,
    /// What the token endpoint says; `None`: the field is left out.
    expires_in: Option<i64>,
    refresh_token_expires_in: Option<i64>,
    /// A refresh answer carries a new refresh token, and the old one stops working.
    rotates: bool,
    /// The access token's lifetime the broker must assume.
    access_lifetime: i64,
    /// The refresh token's deadline right after a refresh, counted from that refresh.
    refresh_left_after_refresh: i64,
    /// What a spent refresh token gets: status and error code.
    spent: (u16, &'static str),
}

const DAY: i64 = 86_400;

const WIRES: &[Wire] = &[
    Wire {
        preset: "digikey",
        settings: &[],
        authorize_path: "/v1/oauth2/authorize",
        token_path: "/v1/oauth2/token",
        revocation_path: None,
        basic_auth: false,
        scope: None,
        authorize_params: &[],
        pkce: true,
        expires_in: Some(1799),
        refresh_token_expires_in: Some(7_775_999),
        rotates: true,
        access_lifetime: 1799,
        refresh_left_after_refresh: 7_775_999,
        spent: (400, "invalid_grant"),
    },
    Wire {
        preset: "digikey-sandbox",
        settings: &[],
        authorize_path: "/v1/oauth2/authorize",
        token_path: "/v1/oauth2/token",
        revocation_path: None,
        basic_auth: false,
        scope: None,
        authorize_params: &[],
        pkce: true,
        expires_in: Some(1799),
        refresh_token_expires_in: Some(7_775_999),
        rotates: true,
        access_lifetime: 1799,
        refresh_left_after_refresh: 7_775_999,
        spent: (400, "invalid_grant"),
    },
    Wire {
        preset: "google",
        settings: &[],
        authorize_path: "/o/oauth2/v2/auth",
        token_path: "/token",
        revocation_path: Some("/revoke"),
        basic_auth: false,
        scope: Some("openid email"),
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        pkce: true,
        expires_in: Some(3599),
        refresh_token_expires_in: None,
        rotates: false,
        access_lifetime: 3599,
        // Unused for six months, it stops working: every refresh restarts that.
        refresh_left_after_refresh: 180 * DAY,
        spent: (400, "invalid_grant"),
    },
    Wire {
        preset: "microsoft",
        settings: &[("PROVIDER_TENANT", "contoso.onmicrosoft.com")],
        authorize_path: "/contoso.onmicrosoft.com/oauth2/v2.0/authorize",
        token_path: "/contoso.onmicrosoft.com/oauth2/v2.0/token",
        revocation_path: None,
        basic_auth: false,
        scope: Some("offline_access openid https://graph.microsoft.com/User.Read"),
        authorize_params: &[("prompt", "consent")],
        pkce: true,
        expires_in: Some(4385),
        refresh_token_expires_in: None,
        rotates: true,
        access_lifetime: 4385,
        refresh_left_after_refresh: 90 * DAY,
        spent: (400, "invalid_grant"),
    },
    Wire {
        preset: "github",
        settings: &[],
        authorize_path: "/login/oauth/authorize",
        token_path: "/login/oauth/access_token",
        revocation_path: None,
        basic_auth: false,
        scope: None,
        authorize_params: &[],
        pkce: true,
        expires_in: Some(28_800),
        refresh_token_expires_in: Some(15_897_600),
        rotates: true,
        access_lifetime: 28_800,
        refresh_left_after_refresh: 15_897_600,
        // GitHub answers token errors with 200.
        spent: (200, "bad_refresh_token"),
    },
    Wire {
        preset: "gitlab",
        settings: &[],
        authorize_path: "/oauth/authorize",
        token_path: "/oauth/token",
        revocation_path: Some("/oauth/revoke"),
        basic_auth: false,
        scope: Some("read_user"),
        authorize_params: &[],
        pkce: true,
        expires_in: Some(7200),
        refresh_token_expires_in: None,
        rotates: true,
        access_lifetime: 7200,
        refresh_left_after_refresh: 90 * DAY,
        spent: (400, "invalid_grant"),
    },
    Wire {
        preset: "salesforce",
        settings: &[],
        authorize_path: "/services/oauth2/authorize",
        token_path: "/services/oauth2/token",
        revocation_path: Some("/services/oauth2/revoke"),
        basic_auth: false,
        scope: Some("api refresh_token"),
        authorize_params: &[],
        pkce: true,
        // Salesforce never says; the shortest session timeout is assumed.
        expires_in: None,
        refresh_token_expires_in: None,
        rotates: false,
        access_lifetime: 900,
        refresh_left_after_refresh: 90 * DAY,
        spent: (400, "invalid_grant"),
    },
    Wire {
        preset: "salesforce-sandbox",
        settings: &[],
        authorize_path: "/services/oauth2/authorize",
        token_path: "/services/oauth2/token",
        revocation_path: Some("/services/oauth2/revoke"),
        basic_auth: false,
        scope: Some("api refresh_token"),
        authorize_params: &[],
        pkce: true,
        expires_in: None,
        refresh_token_expires_in: None,
        rotates: false,
        access_lifetime: 900,
        refresh_left_after_refresh: 90 * DAY,
        spent: (400, "invalid_grant"),
    },
    Wire {
        preset: "xero",
        settings: &[],
        authorize_path: "/identity/connect/authorize",
        token_path: "/connect/token",
        revocation_path: Some("/connect/revocation"),
        basic_auth: true,
        scope: Some("offline_access openid profile email"),
        authorize_params: &[("prompt", "consent")],
        pkce: true,
        expires_in: Some(1800),
        refresh_token_expires_in: None,
        rotates: true,
        access_lifetime: 1800,
        refresh_left_after_refresh: 60 * DAY,
        spent: (400, "invalid_grant"),
    },
    Wire {
        preset: "zoho",
        settings: &[("SCOPES", "ZohoCRM.modules.ALL ZohoCRM.settings.READ")],
        authorize_path: "/oauth/v2/auth",
        token_path: "/oauth/v2/token",
        revocation_path: Some("/oauth/v2/token/revoke"),
        basic_auth: false,
        scope: Some("ZohoCRM.modules.ALL,ZohoCRM.settings.READ"),
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        pkce: false,
        expires_in: Some(3600),
        refresh_token_expires_in: None,
        rotates: false,
        access_lifetime: 3600,
        refresh_left_after_refresh: 90 * DAY,
        // Zoho answers errors with 200 too, and a dead refresh token with its own code.
        spent: (200, "invalid_code"),
    },
];

/// The fake token endpoint: checks what each request carries, issues `access-<n>` and (on the
/// code exchange, and on refreshes where the provider rotates) `refresh-<n>`.
struct FakeProvider {
    wire: &'static Wire,
    /// The redirect URI and PKCE challenge the authorization request carried.
    login: Mutex<Option<(String, Option<String>)>>,
    state: Mutex<Issued>,
}

#[derive(Default)]
struct Issued {
    n: u32,
    live_refresh: Option<String>,
    revoked: Vec<String>,
    problems: Vec<String>,
}

struct TokenEndpoint(Arc<FakeProvider>);
struct RevocationEndpoint(Arc<FakeProvider>);

impl FakeProvider {
    /// Whether the request authenticates the client the way this provider wants.
    fn authenticated(&self, request: &Request, form: &HashMap<String, String>) -> bool {
        let basic = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| STANDARD.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok());
        if self.wire.basic_auth {
            basic.as_deref() == Some(&format!("{CLIENT_ID}:{CLIENT_SECRET}")) && !form.contains_key("client_secret")
        } else {
            basic.is_none()
                && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
        }
    }

    fn grant(&self, issued: &mut Issued, with_refresh: bool) -> ResponseTemplate {
        issued.n += 1;
        let mut body = json!({"access_token": format!("access-{}", issued.n), "token_type": "Bearer"});
        if let Some(seconds) = self.wire.expires_in {
            body["expires_in"] = json!(seconds);
        }
        if with_refresh {
            let refresh = format!("refresh-{}", issued.n);
            body["refresh_token"] = json!(refresh);
            issued.live_refresh = Some(refresh);
            if let Some(seconds) = self.wire.refresh_token_expires_in {
                body["refresh_token_expires_in"] = json!(seconds);
            }
        }
        if self.wire.preset.starts_with("salesforce") {
            body["instance_url"] = json!("https://example.my.salesforce.com");
            body["issued_at"] = json!("1795413600000");
        }
        ResponseTemplate::new(200).set_body_json(body)
    }
}

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let fake = &self.0;
        let form: HashMap<String, String> = form_urlencoded::parse(&request.body).into_owned().collect();
        let mut issued = fake.state.lock().unwrap();
        if !fake.authenticated(request, &form) {
            issued.problems.push(format!("client authentication: {form:?}"));
            return ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}));
        }
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let login = fake.login.lock().unwrap().clone();
                let Some((redirect_uri, challenge)) = login else {
                    issued.problems.push("code exchange before any login".into());
                    return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
                };
                if form.get("redirect_uri") != Some(&redirect_uri) {
                    issued
                        .problems
                        .push(format!("redirect_uri {:?} != {redirect_uri}", form.get("redirect_uri")));
                }
                let verifier = form.get("code_verifier");
                match (&challenge, verifier) {
                    (Some(challenge), Some(verifier)) if s256_challenge(verifier) == *challenge => {}
                    (None, None) => {}
                    other => issued.problems.push(format!("PKCE: {other:?}")),
                }
                if form.get("code").map(String::as_str) != Some(CODE) {
                    issued.problems.push(format!("code {:?}", form.get("code")));
                }
                fake.grant(&mut issued, true)
            }
            Some("refresh_token") => {
                if form.get("refresh_token") != issued.live_refresh.as_ref() {
                    let (status, error) = fake.wire.spent;
                    return ResponseTemplate::new(status).set_body_json(json!({"error": error}));
                }
                fake.grant(&mut issued, fake.wire.rotates)
            }
            other => {
                issued.problems.push(format!("grant_type {other:?}"));
                ResponseTemplate::new(400).set_body_json(json!({"error": "unsupported_grant_type"}))
            }
        }
    }
}

impl Respond for RevocationEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form: HashMap<String, String> = form_urlencoded::parse(&request.body).into_owned().collect();
        let mut issued = self.0.state.lock().unwrap();
        if !self.0.authenticated(request, &form) {
            issued.problems.push(format!("revocation authentication: {form:?}"));
            return ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}));
        }
        if let Some(token) = form.get("token") {
            issued.revoked.push(token.clone());
            if issued.live_refresh.as_ref() == Some(token) {
                issued.live_refresh = None;
            }
        }
        ResponseTemplate::new(200)
    }
}

fn query_of(url: &str) -> (String, HashMap<String, String>) {
    let url = reqwest::Url::parse(url).unwrap();
    (url.path().to_owned(), url.query_pairs().into_owned().collect())
}

async fn full_flow(wire: &'static Wire) {
    let name = wire.preset;
    let h = Harness::preset(name, wire.settings).await;
    let fake = Arc::new(FakeProvider {
        wire,
        login: Mutex::new(None),
        state: Mutex::new(Issued::default()),
    });
    Mock::given(matchers::method("POST"))
        .and(matchers::path(wire.token_path))
        .respond_with(TokenEndpoint(fake.clone()))
        .mount(&h.provider)
        .await;
    if let Some(path) = wire.revocation_path {
        Mock::given(matchers::method("POST"))
            .and(matchers::path(path))
            .respond_with(RevocationEndpoint(fake.clone()))
            .mount(&h.provider)
            .await;
    }

    // Login: the authorization request as the provider documents it.
    let login = h.call(Route::LOGIN, "login-json").await;
    assert_eq!(login.status, 200, "{name}: {}", login.body);
    let (path, params) = query_of(login.json()["authorization_url"].as_str().unwrap());
    assert_eq!(path, wire.authorize_path, "{name}");
    assert_eq!(params["response_type"], "code", "{name}");
    assert_eq!(params["client_id"], CLIENT_ID, "{name}");
    // No REDIRECT_URI: the API Gateway domain the login came in on.
    let redirect_uri = "https://abc123.execute-api.eu-west-1.amazonaws.com/callback";
    assert_eq!(params["redirect_uri"], redirect_uri, "{name}");
    assert_eq!(params.get("scope").map(String::as_str), wire.scope, "{name}");
    for (param, value) in wire.authorize_params {
        assert_eq!(params.get(*param).map(String::as_str), Some(*value), "{name}: {param}");
    }
    assert_eq!(params.contains_key("code_challenge"), wire.pkce, "{name}");
    if wire.pkce {
        assert_eq!(params["code_challenge_method"], "S256", "{name}");
    }
    *fake.login.lock().unwrap() = Some((redirect_uri.to_owned(), params.get("code_challenge").cloned()));

    // The login page names the provider.
    let page = h.call(Route::LOGIN, "login").await;
    assert!(page.body.contains("Connect an account at "), "{name}");
    assert!(!page.body.contains("Connect an account at the provider"), "{name}");

    // Callback.
    let state = &params["state"];
    let callback = h
        .call_request(
            Route::CALLBACK,
            event_with_query("callback-json", &format!("code={CODE}&state={state}")),
        )
        .await;
    assert_eq!(callback.status, 200, "{name}: {}", callback.body);
    assert_eq!(
        callback.json()["access_token_expires_in"],
        wire.access_lifetime,
        "{name}"
    );

    // A token, then a refresh once it is due.
    let token = h.call(Route::TOKEN, "token").await;
    assert_eq!(token.json()["access_token"], "access-1", "{name}");
    h.clock.advance(wire.access_lifetime);
    let refreshed = h.call(Route::TOKEN, "token").await;
    assert_eq!(refreshed.status, 200, "{name}: {}", refreshed.body);
    assert_eq!(refreshed.json()["access_token"], "access-2", "{name}");
    let expected_refresh = if wire.rotates { "refresh-2" } else { "refresh-1" };
    assert_eq!(
        h.stored_tokens().await.refresh_token.expose(),
        expected_refresh,
        "{name}"
    );

    // Verify reports the deadline the provider's rules give.
    let verify = h.call(Route::VERIFY, "verify").await;
    assert_eq!(verify.status, 200, "{name}: {}", verify.body);
    assert_eq!(verify.json()["access_token_expires_in"], wire.access_lifetime, "{name}");
    assert_eq!(
        verify.json()["refresh_token_expires_in"],
        wire.refresh_left_after_refresh,
        "{name}"
    );

    // Revoke: at the provider where it has an endpoint; the broker forgets the pair either way.
    let revoke = h.call(Route::REVOKE, "revoke").await;
    assert_eq!(revoke.status, 200, "{name}: {}", revoke.body);
    let revoked = fake.state.lock().unwrap().revoked.clone();
    match wire.revocation_path {
        Some(_) => assert_eq!(revoked, vec![expected_refresh.to_owned()], "{name}"),
        None => assert!(revoked.is_empty(), "{name}"),
    }
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 404, "{name}");
    let problems = fake.state.lock().unwrap().problems.clone();
    assert!(problems.is_empty(), "{name}: {problems:?}");
}

/// A spent refresh token, in the provider's own words (`invalid_grant`, GitHub's
/// `bad_refresh_token` or Zoho's `invalid_code`, the last two sent with 200), ends the connection
/// and says why.
async fn a_spent_refresh_token(wire: &'static Wire) {
    let name = wire.preset;
    let h = Harness::preset(name, wire.settings).await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(wire.token_path))
        .respond_with(ResponseTemplate::new(wire.spent.0).set_body_json(json!({"error": wire.spent.1})))
        .mount(&h.provider)
        .await;
    h.seed(&tokens("access-old", "refresh-old", START - 1, START + 30 * DAY))
        .await;
    let reply = h.call(Route::TOKEN, "token").await;
    assert_eq!(reply.status, 401, "{name}: {}", reply.body);
    assert_eq!(reply.error(), "reauthorization_required", "{name}");
    let verify: Value = h.call(Route::VERIFY, "verify").await.json();
    assert_eq!(verify["status"], "refresh_token_rejected", "{name}");
    assert!(
        verify["reason"].as_str().unwrap().contains(wire.spent.1),
        "{name}: {verify}"
    );
}

macro_rules! every_preset {
    ($($test:ident: $index:expr),* $(,)?) => {
        mod full_flow {
            $(#[tokio::test]
            async fn $test() { super::full_flow(&super::WIRES[$index]).await })*
        }
        mod spent_refresh_token {
            $(#[tokio::test]
            async fn $test() { super::a_spent_refresh_token(&super::WIRES[$index]).await })*
        }
    };
}

every_preset!(
    digikey: 0,
    digikey_sandbox: 1,
    google: 2,
    microsoft: 3,
    github: 4,
    gitlab: 5,
    salesforce: 6,
    salesforce_sandbox: 7,
    xero: 8,
    zoho: 9,
);

#[test]
fn every_preset_has_a_fake() {
    let mut covered: Vec<&str> = WIRES.iter().map(|wire| wire.preset).collect();
    covered.sort_unstable();
    let mut presets: Vec<&str> = token_broker::base::presets::PRESETS.iter().map(|p| p.name).collect();
    presets.sort_unstable();
    assert_eq!(covered, presets);
}

/// An idle lifetime: Google drops a refresh token unused for six months and never rotates it.
/// Keep-alive refreshes it once it is within the preset's window, and the deadline it reports
/// moves with that refresh, though the token stays the same.
#[tokio::test]
async fn keep_alive_refreshes_an_idle_token_before_it_lapses_and_tracks_the_new_deadline() {
    let wire = &WIRES[2];
    assert_eq!(wire.preset, "google");
    let h = Harness::preset(wire.preset, wire.settings).await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(wire.token_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "fresh", "expires_in": 3599})))
        .mount(&h.provider)
        .await;
    // Idle for all but 40 days: outside Google's 30-day window, so not yet due.
    h.seed(&tokens("access-old", "google-refresh", START - 1, START + 40 * DAY))
        .await;
    let pass = token_broker::oauth::keepalive::run(&h.app).await.unwrap();
    assert_eq!(pass.connections[0].outcome, "not_due");

    h.clock.advance(15 * DAY);
    let pass = token_broker::oauth::keepalive::run(&h.app).await.unwrap();
    assert_eq!(pass.connections[0].outcome, "refreshed");
    let stored = h.stored_tokens().await;
    assert_eq!(stored.refresh_token.expose(), "google-refresh");
    assert_eq!(stored.refresh_expires_at, START + 15 * DAY + 180 * DAY);
    let verify = h.call(Route::VERIFY, "verify").await;
    assert_eq!(verify.json()["refresh_token_expires_in"], 180 * DAY);
}
