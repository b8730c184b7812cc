//! Each Lambda function of `template.yaml` started with exactly the environment the template
//! gives it, on the DynamoDB emulator behind a proxy that records every action the function
//! calls. The template and the code cannot drift apart: a variable the template gives a function
//! that does not read it, a variable a function needs that the template withholds, or a table
//! action a function makes without its role allowing it (or the other way round) fails here.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine;
use common::*;
use serde_yaml_ng::Value as Yaml;
use token_broker::{
    base::{
        clock::ManualClock,
        config::{Config, ConfigError, Uses},
        store::AnyStore,
    },
    http::routes::{self, KEEPALIVE_USES, Route},
    oauth::{app::App, keepalive},
    serve::shared_store,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use wiremock::MockServer;

/// One function as the template deploys it.
#[derive(Debug)]
struct Function {
    binary: String,
    /// Its variables: the template's Globals and its own.
    env: BTreeSet<String>,
    /// The DynamoDB actions its role allows.
    table_actions: BTreeSet<String>,
}

fn template() -> Vec<Function> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let doc: Yaml = serde_yaml_ng::from_str(&text).unwrap();
    let names = |variables: &Yaml| -> BTreeSet<String> {
        variables
            .as_mapping()
            .map(|map| map.keys().map(|key| key.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let global = names(&doc["Globals"]["Function"]["Environment"]["Variables"]);
    let resources = doc["Resources"].as_mapping().unwrap();
    let mut functions = Vec::new();
    for resource in resources.values() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut env = global.clone();
        env.extend(names(&resource["Properties"]["Environment"]["Variables"]));
        let Yaml::Tagged(role) = &resource["Properties"]["Role"] else {
            panic!("{binary}: Role is not a !GetAtt");
        };
        let role = role.value.as_str().unwrap().trim_end_matches(".Arn");
        let mut strings = Vec::new();
        collect_strings(&doc["Resources"][role]["Properties"]["Policies"], &mut strings);
        let table_actions = strings
            .into_iter()
            .filter_map(|s| s.strip_prefix("dynamodb:").map(str::to_owned))
            .collect();
        functions.push(Function {
            binary,
            env,
            table_actions,
        });
    }
    functions
}

fn collect_strings(value: &Yaml, out: &mut Vec<String>) {
    match value {
        Yaml::String(text) => out.push(text.clone()),
        Yaml::Sequence(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Yaml::Mapping(map) => map.values().for_each(|item| collect_strings(item, out)),
        Yaml::Tagged(tagged) => collect_strings(&tagged.value, out),
        _ => {}
    }
}

fn uses_of(binary: &str) -> Uses {
    match binary {
        "keepalive" => KEEPALIVE_USES,
        _ => route_of(binary).uses(),
    }
}

fn route_of(binary: &str) -> Route<AnyStore> {
    Route::from_path(&format!("/{binary}")).unwrap_or_else(|| panic!("no route for the {binary} function"))
}

/// What a deployment's parameters put into each variable, as `sam deploy` with the defaults
/// would, the provider being the fake one and the store the emulator.
fn parameter_values(provider: &MockServer, prefix: &str) -> BTreeMap<&'static str, String> {
    let key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    [
        ("PROVIDER", "generic".to_owned()),
        ("PROVIDER_TENANT", String::new()),
        ("PROVIDER_REGION", String::new()),
        ("PROVIDER_BASE_URL", String::new()),
        ("CLIENT_ID", CLIENT_ID.to_owned()),
        ("CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("TOKEN_URL", format!("{}{TOKEN_PATH}", provider.uri())),
        ("AUTHORIZE_URL", format!("{}{AUTHORIZE_PATH}", provider.uri())),
        ("REVOCATION_URL", format!("{}{REVOCATION_PATH}", provider.uri())),
        ("SCOPES", "products offline_access".to_owned()),
        ("ALLOW_STATIC_STATE", "true".to_owned()),
        ("ISSUER", String::new()),
        ("LOGIN_STATE_TTL", "600".to_owned()),
        ("REDIRECT_URI", String::new()),
        ("TOKEN_AUTH_METHOD", String::new()),
        ("OAUTH_STATE", OAUTH_STATE.to_owned()),
        ("API_KEY", API_KEY.to_owned()),
        ("API_KEY_SHA256S", String::new()),
        ("SCOPED_API_KEYS", String::new()),
        ("TOKEN_ENCRYPTION_KEY", key),
        ("TOKEN_ENCRYPTION_KEYS", String::new()),
        ("REFRESH_TOKEN_TTL", String::new()),
        ("REFRESH_SKEW", "60".to_owned()),
        ("PROVIDER_TIMEOUT", "5".to_owned()),
        ("REFRESH_WAIT", "5".to_owned()),
        ("KEEPALIVE_WINDOW", "86400".to_owned()),
        ("REDIS_URL", String::new()),
        ("REDIS_CLUSTER", "false".to_owned()),
        ("DYNAMODB_TABLE", DYNAMODB_TABLE.to_owned()),
        ("KEY_PREFIX", prefix.to_owned()),
        ("STORE_TIMEOUT", "5".to_owned()),
        ("SECRETS_ARN", String::new()),
        ("WEBHOOK_URLS", format!("{}/webhook", provider.uri())),
        (
            "WEBHOOK_SECRET",
            format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32])),
        ),
        ("WEBHOOK_LAPSE_DAYS", "14".to_owned()),
        ("WEBHOOK_FAILING_MINUTES", "60".to_owned()),
    ]
    .into_iter()
    .collect()
}

/// What Lambda itself sets in every function, and the emulator's address (through `proxy`).
fn platform_values(proxy: &str) -> BTreeMap<&'static str, String> {
    let mut values: BTreeMap<&'static str, String> = dynamodb_vars()
        .into_iter()
        .filter(|(name, _)| *name != "DYNAMODB_TABLE")
        .collect();
    values.insert("AWS_ENDPOINT_URL_DYNAMODB", proxy.to_owned());
    values
}

/// A TCP proxy to the emulator that notes the action of every request passing through.
async fn recording_proxy() -> (String, Arc<Mutex<BTreeSet<String>>>) {
    let upstream = dynamodb_url();
    let upstream = reqwest::Url::parse(&upstream).unwrap();
    let upstream = format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let noted = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&upstream).await.unwrap();
            let noted = noted.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
                let mut window = Vec::new();
                let mut chunk = vec![0u8; 16 * 1024];
                while let Ok(read) = client_read.read(&mut chunk).await {
                    if read == 0 {
                        break;
                    }
                    window.extend_from_slice(&chunk[..read]);
                    note_actions(&window, &noted);
                    // Keep enough for a target header split across two reads.
                    let keep = window.len().saturating_sub(64);
                    window.drain(..keep);
                    if server_write.write_all(&chunk[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (address, seen)
}

fn note_actions(bytes: &[u8], seen: &Mutex<BTreeSet<String>>) {
    const TARGET: &[u8] = b"DynamoDB_20120810.";
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(TARGET.len()).position(|w| w == TARGET) {
        let start = at + found + TARGET.len();
        let end = bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_alphabetic())
            .map(|len| start + len);
        // An action cut off at the end of the window is seen whole in the next one.
        if let Some(end) = end {
            seen.lock()
                .unwrap()
                .insert(String::from_utf8_lossy(&bytes[start..end]).into_owned());
        }
        at = start;
    }
}

/// The configuration the function `binary` reads at start-up from `env` (and what Lambda sets).
fn configure(
    binary: &str,
    env: &BTreeSet<String>,
    values: &BTreeMap<&'static str, String>,
    platform: &BTreeMap<&'static str, String>,
) -> Result<Config, ConfigError> {
    let lookup = |name: &str| {
        if env.contains(name) {
            Some(
                values
                    .get(name)
                    .unwrap_or_else(|| panic!("no test value for {name}"))
                    .clone(),
            )
        } else {
            platform.get(name).cloned()
        }
    };
    Config::for_function(uses_of(binary), lookup)
}

/// The function as it starts on Lambda: its configuration, its store, and the test's clock.
fn start(config: Config, clock: &Arc<ManualClock>) -> App<AnyStore> {
    let store = shared_store(&config).unwrap();
    App::new(config, store, clock.clone())
}

async fn call(app: &App<AnyStore>, binary: &str, request: lambda_http::Request) -> Reply {
    Reply::from(routes::handle(app, route_of(binary), request).await).await
}

/// What each function does in the test: one request (or pass) along the life of a connection,
/// each building on the one before. Returns what the function answered.
async fn exercise(app: &App<AnyStore>, binary: &str, clock: &ManualClock, state: &mut String) -> String {
    match binary {
        "login" => {
            let reply = call(app, binary, event_request("login-json")).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            let url = reqwest::Url::parse(reply.json()["authorization_url"].as_str().unwrap()).unwrap();
            *state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
            format!("{} with a state", reply.status)
        }
        "callback" => {
            // The one-time state of the login above, then a hand-built login's shared state.
            let mut statuses = Vec::new();
            for state in [state.as_str(), OAUTH_STATE] {
                let query = format!("code={CODE}&state={state}");
                let reply = call(app, binary, event_with_query("callback", &query)).await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                statuses.push(reply.status.to_string());
            }
            statuses.join(", ")
        }
        "token" => {
            // Past the access token's expiry: the call refreshes under the lock.
            clock.advance(3600);
            let reply = call(app, binary, event_request("token")).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.status.to_string()
        }
        "verify" => {
            // Every connection (one listing), then one by name (one read).
            let mut statuses = Vec::new();
            for request in [
                event_request("verify"),
                event_with_query("verify", "connection=default"),
            ] {
                let reply = call(app, binary, request).await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                assert_eq!(reply.json()["status"], "valid");
                statuses.push(reply.status.to_string());
            }
            statuses.join(", ")
        }
        "import" => {
            let reply = call(app, binary, event_request("import")).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.status.to_string()
        }
        "keepalive" => {
            // Close enough to the refresh token's end for the window.
            clock.advance(7_775_999 - 3600);
            let report = keepalive::run(app).await.unwrap();
            assert!(!report.connections.is_empty());
            assert!(!report.needs_attention(), "{report:?}");
            // The events the two callbacks and the import raised, delivered by this pass.
            assert_eq!(report.webhooks.delivered, 3, "{report:?}");
            format!("{} connection(s)", report.connections.len())
        }
        "revoke" => {
            let reply = call(app, binary, event_request("revoke")).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.status.to_string()
        }
        other => panic!("no exercise for the {other} function"),
    }
}

#[tokio::test]
async fn each_function_starts_and_works_with_exactly_its_template_environment() {
    let functions = template();
    let mut binaries: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin"))
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != "serve")
        .collect();
    binaries.sort();
    let mut deployed: Vec<String> = functions.iter().map(|f| f.binary.clone()).collect();
    deployed.sort();
    assert_eq!(deployed, binaries, "one function per binary");

    let provider = MockServer::start().await;
    SequencedProvider::mount(&provider, vec![Duration::ZERO]).await;
    revocation_answers(&provider).await;
    wiremock::Mock::given(wiremock::matchers::path("/webhook"))
        .respond_with(wiremock::ResponseTemplate::new(204))
        .mount(&provider)
        .await;
    dynamodb_store(Duration::from_secs(5)).await;
    let (proxy, seen) = recording_proxy().await;
    let values = parameter_values(&provider, &unique_prefix());
    let platform = platform_values(&proxy);
    let clock = Arc::new(ManualClock::new(START));
    let mut state = String::new();
    // The order a connection lives in; the template's order is not that.
    let order = ["login", "callback", "token", "verify", "import", "keepalive", "revoke"];
    assert_eq!(order.len(), functions.len());
    for binary in order {
        let function = functions.iter().find(|f| f.binary == binary).unwrap();
        let reads: BTreeSet<String> = uses_of(binary).variables().map(str::to_owned).collect();
        let surplus: Vec<&String> = function.env.difference(&reads).collect();
        assert!(
            surplus.is_empty(),
            "{binary} is given variables it never reads: {surplus:?}"
        );

        let config = configure(binary, &function.env, &values, &platform)
            .unwrap_or_else(|e| panic!("{binary} does not start with its template environment: {e}"));
        let app = start(config, &clock);
        seen.lock().unwrap().clear();
        let answer = exercise(&app, binary, &clock, &mut state).await;
        let called = seen.lock().unwrap().clone();
        assert_eq!(
            called, function.table_actions,
            "{binary} ({answer}) called these table actions; its role allows the others"
        );

        // Without any one of its variables, a function starts or names the one it lacks.
        for missing in &function.env {
            let mut fewer = function.env.clone();
            fewer.remove(missing);
            match configure(binary, &fewer, &values, &platform) {
                Ok(_) => {}
                Err(ConfigError::Missing(names)) => {
                    assert_eq!(names, vec![missing.as_str()], "{binary} without {missing}")
                }
                Err(other) => panic!("{binary} without {missing}: {other}"),
            }
        }
    }
}

#[test]
fn functions_that_never_call_the_provider_hold_no_client_secret() {
    for function in template() {
        let holds = function.env.contains("CLIENT_SECRET");
        let calls_provider = matches!(
            function.binary.as_str(),
            "callback" | "token" | "revoke" | "import" | "keepalive"
        );
        assert_eq!(holds, calls_provider, "{}: CLIENT_SECRET", function.binary);
        assert_eq!(
            function.env.contains("API_KEY"),
            function.binary != "callback" && function.binary != "keepalive",
            "{}: API_KEY",
            function.binary
        );
    }
}
