//! Shared test set-up: a real Redis (started by `scripts/with-services.sh`, see `make test`), a fake
//! provider over real HTTP on 127.0.0.1 (wiremock), a clock the tests move, and the handlers
//! driven by the API Gateway events in `events/`.

#![allow(dead_code)]

pub mod openapi;
#[cfg(feature = "local")]
pub mod process;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use lambda_http::{Body, Request, Response};
use serde_json::Value;
use token_broker::{
    base::{
        clock::ManualClock,
        config::{Config, StoreConfig},
        connection::DEFAULT as DEFAULT_CONNECTION,
        record::{ConnectionRecord, TokenSet},
        secret::Secret,
        store::{DynamoConfig, DynamoStore, Expect, RedisStore, Store},
    },
    http::routes::{self, Route},
    oauth::app::App,
};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

pub const API_KEY: &str = "test-api-key";
pub const OAUTH_STATE: &str = "test-oauth-state";
pub const CODE: &str = "test-authorization-code";
pub const CLIENT_ID: &str = "test-client-id";
pub const CLIENT_SECRET: &str = "test-client-secret";
pub const REDIRECT_URI: &str = "https://broker.example/callback";
pub const TOKEN_PATH: &str = "/v1/oauth2/token";
pub const AUTHORIZE_PATH: &str = "/v1/oauth2/authorize";
pub const REVOCATION_PATH: &str = "/v1/oauth2/revoke";
/// 2026-11-23T06:00:00Z, the time the tests' clock starts at.
pub const START: i64 = 1_795_413_600;

/// The DynamoDB emulator `make test` starts (moto in server mode).
pub fn dynamodb_url() -> String {
    std::env::var("TOKEN_BROKER_TEST_DYNAMODB").expect(
        "TOKEN_BROKER_TEST_DYNAMODB is not set: run the tests with `make test`, which starts a DynamoDB emulator for them",
    )
}

/// The table the tests share; every test writes under a prefix of its own.
pub const DYNAMODB_TABLE: &str = "token-broker-tests";

/// What a DynamoDB deployment sets instead of `REDIS_URL`; the emulator takes any credentials.
pub fn dynamodb_vars() -> Vec<(&'static str, String)> {
    vec![
        ("DYNAMODB_TABLE", DYNAMODB_TABLE.to_owned()),
        ("AWS_REGION", "eu-west-1".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_url()),
        ("AWS_ACCESS_KEY_ID", "AKIDTOKENBROKERTEST".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test-aws-secret-access-key".to_owned()),
    ]
}

/// The shared test table at `endpoint`, with the credentials of [`dynamodb_vars`].
pub fn dynamodb_config(endpoint: String) -> DynamoConfig {
    let vars = dynamodb_vars();
    let var = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    DynamoConfig {
        table: DYNAMODB_TABLE.to_owned(),
        region: var("AWS_REGION").unwrap(),
        endpoint: Some(endpoint),
        credentials: token_broker::base::aws::credentials(var).unwrap(),
    }
}

/// A store on the shared test table, created on first use.
pub async fn dynamodb_store(timeout: std::time::Duration) -> DynamoStore {
    let store = DynamoStore::new(&dynamodb_config(dynamodb_url()), timeout).unwrap();
    store.ensure_table().await.unwrap();
    store
}

/// One node of the Redis Cluster (three masters, a replica each) that `make test` starts.
pub fn redis_cluster_url() -> String {
    std::env::var("TOKEN_BROKER_TEST_REDIS_CLUSTER").expect(
        "TOKEN_BROKER_TEST_REDIS_CLUSTER is not set: run the tests with `make test`, which starts a Redis Cluster for them",
    )
}

pub fn redis_url() -> String {
    std::env::var("TOKEN_BROKER_TEST_REDIS").expect(
        "TOKEN_BROKER_TEST_REDIS is not set: run the tests with `make test`, which starts a Redis server for them",
    )
}

/// A prefix no other test uses, so tests can share one Redis and run in parallel.
pub fn unique_prefix() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "test-{}-{}-{}",
        std::process::id(),
        START,
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct Harness<S = RedisStore> {
    pub app: App<S>,
    pub provider: MockServer,
    pub clock: Arc<ManualClock>,
}

fn test_config(provider: &MockServer, overrides: &[(&str, &str)]) -> Config {
    let vars = base_vars(provider, &redis_url(), overrides);
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test configuration is valid")
}

impl Harness<RedisStore> {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// A harness whose configuration differs from the default by `overrides`.
    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        let provider = MockServer::start().await;
        let config = test_config(&provider, overrides);
        let StoreConfig::Redis { url, cluster } = &config.store else {
            panic!("tests run against Redis")
        };
        let store = RedisStore::new(url, *cluster, config.store_timeout, config.layout()).unwrap();
        Self::assemble(config, store, provider)
    }
}

impl Harness<RedisStore> {
    /// The same on the Redis Cluster, as a deployment on ElastiCache cluster mode or MemoryDB.
    pub async fn cluster(overrides: &[(&str, &str)]) -> Self {
        let url = redis_cluster_url();
        let mut all = vec![("REDIS_URL", url.as_str()), ("REDIS_CLUSTER", "true")];
        all.extend_from_slice(overrides);
        Self::with(&all).await
    }
}

impl Harness<DynamoStore> {
    /// The same set-up on DynamoDB (the emulator), as a serverless deployment has it.
    pub async fn dynamodb(overrides: &[(&str, &str)]) -> Self {
        let provider = MockServer::start().await;
        let mut vars = base_vars(&provider, &redis_url(), overrides);
        vars.remove("REDIS_URL");
        for (name, value) in dynamodb_vars() {
            vars.entry(name.to_owned()).or_insert(value);
        }
        let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("test configuration is valid");
        let StoreConfig::DynamoDb(table) = &config.store else {
            panic!("DYNAMODB_TABLE selects DynamoDB")
        };
        let store = DynamoStore::new(table, config.store_timeout).unwrap();
        // A test that names a table of its own decides whether it exists.
        if !overrides.iter().any(|(name, _)| *name == "DYNAMODB_TABLE") {
            store.ensure_table().await.unwrap();
        }
        Self::assemble(config, store, provider)
    }
}

impl Harness<RedisStore> {
    /// A deployment configured by `PROVIDER=preset` with only the client's id and secret and the
    /// API key, its endpoints moved to the fake provider by `PROVIDER_BASE_URL`.
    pub async fn preset(preset: &str, overrides: &[(&str, &str)]) -> Self {
        let provider = MockServer::start().await;
        let mut vars = base_vars(&provider, &redis_url(), overrides);
        for name in [
            "TOKEN_URL",
            "AUTHORIZE_URL",
            "REVOCATION_URL",
            "SCOPES",
            "REDIRECT_URI",
            "OAUTH_STATE",
        ] {
            vars.remove(name);
        }
        vars.insert("PROVIDER".into(), preset.into());
        vars.insert("PROVIDER_BASE_URL".into(), provider.uri());
        for (name, value) in overrides {
            vars.insert((*name).to_owned(), (*value).to_owned());
        }
        let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("test configuration is valid");
        let store = RedisStore::new(&Secret::new(redis_url()), false, config.store_timeout, config.layout()).unwrap();
        Self::assemble(config, store, provider)
    }
}

#[cfg(feature = "local")]
impl Harness<token_broker::base::store::EmbeddedStore> {
    /// The same set-up on local mode's embedded store.
    pub async fn embedded(overrides: &[(&str, &str)]) -> Self {
        let provider = MockServer::start().await;
        let config = test_config(&provider, overrides);
        let store = token_broker::base::store::EmbeddedStore::open(&scratch_dir("harness")).unwrap();
        Self::assemble(config, store, provider)
    }
}

impl<S: Store> Harness<S> {
    fn assemble(config: Config, store: S, provider: MockServer) -> Self {
        let clock = Arc::new(ManualClock::new(START));
        let app = App::new(config, store, clock.clone());
        Self { app, provider, clock }
    }

    pub async fn call(&self, route: Route<S>, event: &str) -> Reply {
        self.call_request(route, event_request(event)).await
    }

    /// `request` through `route`'s handler; the answer is checked against openapi.yaml.
    pub async fn call_request(&self, route: Route<S>, request: Request) -> Reply {
        let method = request.method().clone();
        let reply = Reply::from(routes::handle(&self.app, route, request).await).await;
        openapi::check(
            route.path(),
            method.as_str(),
            reply.status,
            reply.header("content-type"),
            &reply.body,
        );
        reply
    }

    pub fn tokens_key(&self) -> String {
        self.app.keys.tokens(DEFAULT_CONNECTION)
    }

    /// From now on the app's metric lines are kept; the handle sees them.
    pub fn capture_metrics(&mut self) -> Arc<std::sync::Mutex<Vec<String>>> {
        let (metrics, lines) = token_broker::base::metrics::Metrics::capture();
        self.app.metrics = metrics;
        lines
    }

    /// Stores a pair for a named connection.
    pub async fn seed_connection(&self, connection: &str, tokens: &TokenSet) {
        self.put_in(connection, &ConnectionRecord::Active(tokens.clone())).await;
    }

    /// Stores `record` for a connection as the broker would (sealed when encryption is on).
    pub async fn put_in(&self, connection: &str, record: &ConnectionRecord) -> u64 {
        let key = self.app.keys.tokens(connection);
        let sealed = self.app.seal_record(&key, record).unwrap();
        self.app
            .store
            .write(&key, Expect::Any, &sealed, None)
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn put(&self, record: &ConnectionRecord) -> u64 {
        self.put_in(DEFAULT_CONNECTION, record).await
    }

    pub async fn stored_in(&self, connection: &str) -> Option<ConnectionRecord> {
        let stored = self.app.store.load(&self.app.keys.tokens(connection)).await.unwrap()?;
        let key = self.app.keys.tokens(connection);
        Some(self.app.open_record(&key, stored.data).unwrap())
    }

    pub fn lock_key(&self) -> String {
        self.app.keys.refresh_lock(DEFAULT_CONNECTION)
    }

    /// Stores a pair as a completed login would, bypassing the provider.
    pub async fn seed(&self, tokens: &TokenSet) -> u64 {
        self.put(&ConnectionRecord::Active(tokens.clone())).await
    }

    pub async fn stored(&self) -> Option<(u64, ConnectionRecord)> {
        let stored = self.app.store.load(&self.tokens_key()).await.unwrap()?;
        Some((
            stored.generation,
            self.app.open_record(&self.tokens_key(), stored.data).unwrap(),
        ))
    }

    pub async fn stored_tokens(&self) -> TokenSet {
        match self.stored().await {
            Some((_, ConnectionRecord::Active(tokens))) => tokens,
            other => panic!("expected stored tokens, found {other:?}"),
        }
    }

    /// Every request the fake provider received at the token endpoint, as decoded form bodies.
    pub async fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.provider
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path() == TOKEN_PATH)
            .map(|r| form_urlencoded::parse(&r.body).into_owned().collect())
            .collect()
    }
}

pub fn base_vars(provider: &MockServer, redis_url: &str, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("CLIENT_ID", CLIENT_ID.to_owned()),
        ("CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("TOKEN_URL", format!("{}{TOKEN_PATH}", provider.uri())),
        ("AUTHORIZE_URL", format!("{}{AUTHORIZE_PATH}", provider.uri())),
        ("REVOCATION_URL", format!("{}{REVOCATION_PATH}", provider.uri())),
        ("SCOPES", "products offline_access".to_owned()),
        ("REDIRECT_URI", REDIRECT_URI.to_owned()),
        ("OAUTH_STATE", OAUTH_STATE.to_owned()),
        ("API_KEY", API_KEY.to_owned()),
        ("REDIS_URL", redis_url.to_owned()),
        ("KEY_PREFIX", unique_prefix()),
        ("PROVIDER_TIMEOUT", "2".to_owned()),
        ("REDIS_TIMEOUT", "1".to_owned()),
        ("REFRESH_WAIT", "3".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (name, value) in overrides {
        vars.insert((*name).to_owned(), (*value).to_owned());
    }
    vars
}

/// An event from `events/`, parsed the way the Lambda runtime parses it.
pub fn event_request(name: &str) -> Request {
    let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An event with its query string replaced, for cases not worth a fixture of their own.
pub fn event_with_query(name: &str, query: &str) -> Request {
    let mut request = event_request(name);
    let path = request.uri().path().to_owned();
    *request.uri_mut() = format!("{path}?{query}").parse().unwrap();
    request
}

pub struct Reply {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub async fn from(response: Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        let body = match body {
            Body::Empty => String::new(),
            Body::Text(text) => text,
            Body::Binary(bytes) => String::from_utf8(bytes).unwrap(),
            _ => panic!("unexpected body kind"),
        };
        Self {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// `/verify`'s `connections` list as (connection, status) pairs, in the order it lists them.
pub fn listed_states(verify_body: &Value) -> Vec<(String, String)> {
    verify_body["connections"]
        .as_array()
        .expect("a connections list")
        .iter()
        .map(|c| {
            (
                c["connection"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn tokens(access: &str, refresh: &str, access_expires_at: i64, refresh_expires_at: i64) -> TokenSet {
    TokenSet {
        access_token: Secret::new(access),
        refresh_token: Secret::new(refresh),
        token_type: "Bearer".to_owned(),
        scope: Some("read".to_owned()),
        access_expires_at,
        refresh_expires_at,
        issued_at: START,
    }
}

/// A token endpoint answer in Digi-Key's shape.
pub fn grant_body(access: &str, refresh: &str) -> Value {
    serde_json::json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": 1799,
        "refresh_token_expires_in": 7_775_999,
        "token_type": "Bearer",
    })
}

/// The provider's revocation endpoint, accepting every revocation.
pub async fn revocation_answers(server: &MockServer) {
    Mock::given(matchers::method("POST"))
        .and(matchers::path(REVOCATION_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(server)
        .await;
}

/// A key's SHA-256 digest in hex, as `API_KEY_SHA256S` and `SCOPED_API_KEYS` take it.
pub fn sha256_hex(key: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, key.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub async fn provider_answers(server: &MockServer, response: ResponseTemplate) {
    Mock::given(matchers::method("POST"))
        .and(matchers::path(TOKEN_PATH))
        .respond_with(response)
        .mount(server)
        .await;
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A fresh, empty directory under cargo's scratch space for integration tests (target/tmp).
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", unique_prefix()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fake provider that behaves like Digi-Key's token endpoint: every grant issues a new pair,
/// refresh tokens rotate, and a refresh token that was already used (or never issued) gets
/// `invalid_grant`. Counts what it was asked.
#[derive(Default)]
pub struct RotatingProvider {
    state: std::sync::Mutex<RotationState>,
}

#[derive(Default)]
struct RotationState {
    issued: u64,
    current_refresh: Option<String>,
    code_exchanges: usize,
    refreshes: usize,
    rejected: usize,
}

impl RotatingProvider {
    /// A provider that has already issued `refresh` (as a login or an earlier refresh did).
    pub fn holding(refresh: &str) -> Self {
        let provider = Self::default();
        provider.state.lock().unwrap().current_refresh = Some(refresh.to_owned());
        provider
    }

    pub fn code_exchanges(&self) -> usize {
        self.state.lock().unwrap().code_exchanges
    }
    pub fn refreshes(&self) -> usize {
        self.state.lock().unwrap().refreshes
    }
    pub fn rejected(&self) -> usize {
        self.state.lock().unwrap().rejected
    }
    pub fn current_refresh(&self) -> Option<String> {
        self.state.lock().unwrap().current_refresh.clone()
    }

    /// Mounts this provider at the token endpoint of `server`, answering after `delay`.
    pub async fn mount(self: &Arc<Self>, server: &MockServer, delay: std::time::Duration) {
        Mock::given(matchers::method("POST"))
            .and(matchers::path(TOKEN_PATH))
            .respond_with(RotatingResponder(self.clone(), delay))
            .mount(server)
            .await;
    }
}

struct RotatingResponder(Arc<RotatingProvider>, std::time::Duration);

/// A provider that issues a new pair on every call without invalidating old refresh tokens, the
/// n-th call answering after `delays[n]` (the last delay repeats).
pub struct SequencedProvider {
    calls: AtomicUsize,
    delays: Vec<std::time::Duration>,
}

impl SequencedProvider {
    pub async fn mount(server: &MockServer, delays: Vec<std::time::Duration>) {
        Mock::given(matchers::method("POST"))
            .and(matchers::path(TOKEN_PATH))
            .respond_with(Self {
                calls: AtomicUsize::new(0),
                delays,
            })
            .mount(server)
            .await;
    }
}

impl wiremock::Respond for SequencedProvider {
    fn respond(&self, _request: &wiremock::Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = self.delays[n.min(self.delays.len() - 1)];
        ResponseTemplate::new(200)
            .set_body_json(grant_body(&format!("access-{}", n + 1), &format!("refresh-{}", n + 1)))
            .set_delay(delay)
    }
}

impl wiremock::Respond for RotatingResponder {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let form: HashMap<String, String> = form_urlencoded::parse(&request.body).into_owned().collect();
        let mut state = self.0.state.lock().unwrap();
        match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => state.code_exchanges += 1,
            Some("refresh_token") => {
                state.refreshes += 1;
                if form.get("refresh_token") != state.current_refresh.as_ref() {
                    state.rejected += 1;
                    // Rejections are quick: no token has to be minted.
                    return ResponseTemplate::new(400).set_body_json(
                        serde_json::json!({"error": "invalid_grant", "error_description": "refresh token already used"}),
                    );
                }
            }
            _ => {
                return ResponseTemplate::new(400)
                    .set_body_json(serde_json::json!({"error": "unsupported_grant_type"}));
            }
        }
        state.issued += 1;
        let n = state.issued;
        state.current_refresh = Some(format!("refresh-{n}"));
        ResponseTemplate::new(200)
            .set_body_json(grant_body(&format!("access-{n}"), &format!("refresh-{n}")))
            .set_delay(self.1)
    }
}

/// A redis-server of the test's own, with append-only persistence so its data survives a restart.
pub struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: std::sync::Mutex<Option<std::process::Child>>,
}

impl OwnRedis {
    pub fn start() -> Self {
        let redis = Self {
            port: closed_port(),
            dir: scratch_dir("own-redis"),
            child: std::sync::Mutex::new(None),
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&self) {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs it)");
        *self.child.lock().unwrap() = Some(child);
        // Up is answering PONG: while it loads its append-only file it answers LOADING.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// A Redis Cluster of its own, three masters with a replica each, for tests that take a node
/// down: on the shared one they would disturb every other test.
pub struct OwnCluster {
    ports: Vec<u16>,
    nodes: std::sync::Mutex<Vec<Option<std::process::Child>>>,
}

impl OwnCluster {
    pub fn start() -> Self {
        let dir = scratch_dir("own-cluster");
        // A client port and a cluster bus port per node, below the range the kernel gives
        // outgoing connections, which could take one of them before the node binds it.
        let mut ports: Vec<u16> = Vec::new();
        let mut seed = unique_prefix()
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        while ports.len() < 12 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let port = 10_000 + (seed >> 8) as u16 % 22_000;
            if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                ports.push(port);
            }
        }
        let buses = ports.split_off(6);
        let nodes = ports
            .iter()
            .zip(&buses)
            .map(|(port, bus)| {
                let node_dir = dir.join(port.to_string());
                std::fs::create_dir_all(&node_dir).unwrap();
                let child = std::process::Command::new("redis-server")
                    .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()])
                    // A replica takes over however long it was out of touch: the test kills the
                    // master moments after the cluster formed.
                    .args([
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-replica-validity-factor",
                        "0",
                    ])
                    .args(["--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0"])
                    .arg("--dir")
                    .arg(&node_dir)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("redis-server is installed (make test installs it)");
                Some(child)
            })
            .collect();
        let cluster = Self {
            ports,
            nodes: std::sync::Mutex::new(nodes),
        };
        for port in &cluster.ports {
            cluster.await_answer(*port, "PING", "PONG");
        }
        let created = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
        for port in &cluster.ports {
            cluster.await_answer(*port, "CLUSTER INFO", "cluster_state:ok");
        }
        // Every replica has its master's data, so that a failover loses nothing written before it.
        for port in &cluster.ports {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let info = Self::cli(*port, "INFO replication");
                if info.contains("master_link_status:up") || info.contains("state=online") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "node {port} did not finish replicating"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        cluster
    }

    /// Every node, comma-separated, as a self-run cluster is configured: whichever master is
    /// lost, the client can still reach the cluster through another.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect();
        nodes.join(",")
    }

    fn cli(port: u16, command: &str) -> String {
        let output = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(command.split(' '))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn await_answer(&self, port: u16, command: &str, answer: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while !Self::cli(port, command).contains(answer) {
            assert!(
                std::time::Instant::now() < deadline,
                "node {port}: no {answer} to {command}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The port of the master serving `key`'s slot, as the node set-up reports it.
    pub fn master_of(&self, key: &str) -> u16 {
        self.master_of_via(self.ports[0], key)
            .expect("a master serves the key's slot")
    }

    fn master_of_via(&self, asked: u16, key: &str) -> Option<u16> {
        let slot: u16 = Self::cli(asked, &format!("CLUSTER KEYSLOT {key}"))
            .trim()
            .parse()
            .unwrap();
        // `CLUSTER NODES`: id address@bus flags master ping pong epoch state slot-ranges...
        for line in Self::cli(asked, "CLUSTER NODES").lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let failed = fields.get(2).is_some_and(|flags| flags.contains("fail"));
            if !fields.get(2).is_some_and(|flags| flags.contains("master")) || failed || fields.len() < 9 {
                continue;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((from, to)) => (from.parse().unwrap_or(u16::MAX)..=to.parse().unwrap_or(0)).contains(&slot),
                None => range.parse() == Ok(slot),
            });
            if serves {
                let address = fields[1].split('@').next()?;
                return address.rsplit(':').next()?.parse().ok();
            }
        }
        None
    }

    /// Kills the node at `port` as a crash would.
    pub fn kill(&self, port: u16) {
        let at = self.ports.iter().position(|p| *p == port).unwrap();
        if let Some(mut child) = self.nodes.lock().unwrap()[at].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until a replica has taken over `key`'s slot from the killed master at `port`.
    pub fn await_failover(&self, key: &str, killed: u16) {
        let alive = *self.ports.iter().find(|p| **p != killed).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let taken_over = self.master_of_via(alive, key).is_some_and(|port| port != killed);
            if taken_over && Self::cli(alive, "CLUSTER INFO").contains("cluster_state:ok") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no replica took over from {killed}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for child in self.nodes.lock().unwrap().iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every byte the log subscriber writes.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

pub struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    pub fn writer(&self) -> LogWriter {
        LogWriter(self.0.clone())
    }

    /// The lines written so far, without terminal colour codes.
    pub fn lines(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().map(strip_ansi).collect()
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
