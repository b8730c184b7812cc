//! Local mode (`make serve`): every route served from one process on 127.0.0.1:9000 (`BIND`,
//! `PORT`), through the very same route table as the Lambda functions, with the tokens in Redis
//! when `REDIS_URL` is set, in DynamoDB when `DYNAMODB_TABLE` is, else in an embedded on-disk
//! store; keep-alive runs every
//! `KEEPALIVE_INTERVAL` seconds. A newcomer can run the broker without an AWS account or a Redis
//! server.
//!
//! `serve keepalive` runs one keep-alive pass instead, prints its report as JSON and exits: 0 when
//! every connection is fine, 1 when one needs a person or failed (for cron and systemd timers).
//! `serve discover` prints the variables `ISSUER`'s metadata gives, to pin for the Lambda
//! functions, which never fetch it themselves.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use thiserror::Error;

use crate::{
    base::{
        clock::SystemClock,
        config::{Config, ConfigError, StoreConfig},
        logging,
        store::{AnyStore, DynamoStore, EmbeddedStore, Store, StoreError},
    },
    http::routes::Route,
    oauth::{
        app::{App, on_lambda},
        discovery::{self, DiscoveryError},
        keepalive,
    },
    serve::{InitError, http1, shared_store},
};

/// Why local mode stopped. A person fixes the first kind (exit 2); the second is a failure
/// while running (exit 1).
#[derive(Debug, Error)]
enum LocalError {
    #[error("cannot read .env: {0}")]
    DotEnv(String),
    #[error("unknown command {0:?}; usage: serve [keepalive | discover]")]
    Usage(String),
    #[error("discovery from ISSUER failed: {0}")]
    Discovery(DiscoveryError),
    #[error("{0} is invalid: {1:?} is not {2}")]
    Address(&'static str, String, &'static str),
    #[error(
        "{0}\n\nSet them in the environment or in a .env file in this directory; .env.example lists and \
         explains every variable (start with: cp .env.example .env)."
    )]
    Config(ConfigError),
    #[error(transparent)]
    Init(InitError),
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}\n(Is another token-broker already running on this DATA_DIR?)")]
    StoreInUse(StoreError),
    #[error(transparent)]
    Store(StoreError),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("{0}")]
    Serve(std::io::Error),
    #[error("keep-alive could not run: {0}")]
    KeepaliveFailed(StoreError),
    #[error("keep-alive: some connections need attention (see the report)")]
    NeedsAttention,
}

impl LocalError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::DotEnv(_) | Self::Usage(_) | Self::Address(..) | Self::Config(_) | Self::Discovery(_) => 2,
            Self::Init(InitError::EmbeddedStoreOnLambda) => 2,
            _ => 1,
        }
    }
}

/// The `serve` binary.
pub fn main() -> ExitCode {
    match start() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("token-broker: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn start() -> Result<(), LocalError> {
    // Before logging starts, so a log level set in .env applies. Only the working directory's
    // .env: picking one up from a parent directory would surprise.
    if let Err(error) = dotenvy::from_path(".env")
        && !error.not_found()
    {
        return Err(LocalError::DotEnv(error.to_string()));
    }
    // Logs go to stderr: stdout carries the banner and the keep-alive report.
    logging::init_with_writer(std::io::stderr());
    let command = match std::env::args().nth(1).as_deref() {
        None => Command::Serve,
        Some("keepalive") => Command::Keepalive,
        Some("discover") => Command::Discover,
        Some(other) => return Err(LocalError::Usage(other.to_owned())),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LocalError::Runtime)?;
    // Started with ISSUER but no endpoints, local mode reads them from the issuer's metadata
    // once, before anything else; what the environment sets still wins.
    let issuer = std::env::var("ISSUER").ok().filter(|v| !v.trim().is_empty());
    let discovering = command == Command::Discover
        || issuer.is_some()
            && ["TOKEN_URL", "AUTHORIZE_URL", "PROVIDER"]
                .iter()
                .all(|name| std::env::var(name).map_or(true, |v| v.trim().is_empty()));
    let discovered = match (&issuer, discovering) {
        (Some(issuer), true) => runtime
            .block_on(discovery::discover(issuer.trim(), Duration::from_secs(10)))
            .map_err(LocalError::Discovery)?
            .settings(),
        (None, true) => return Err(LocalError::Config(ConfigError::Missing(vec!["ISSUER"]))),
        (_, false) => Vec::new(),
    };
    if command == Command::Discover {
        println!(
            "# From the metadata of {}: pin these in .env or the stack's parameters.",
            issuer.unwrap_or_default()
        );
        for (name, value) in &discovered {
            println!("{name}={value}");
        }
        return Ok(());
    }
    let address = listen_address()?;
    // Without REDIRECT_URI or PUBLIC_URL, each login's callback URL follows the Host its browser
    // used (http://localhost:<port>/callback for one on this machine).
    let config = Config::from_lookup(|name| {
        std::env::var(name).ok().or_else(|| {
            discovered
                .iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| value.clone())
        })
    })
    .map_err(LocalError::Config)?;
    // The Redis client needs a running runtime to set up its connection task.
    runtime.block_on(async move {
        let store = open_store(&config).await?;
        let description = describe_store(&config.store);
        let app = Arc::new(App::new(config, store, Arc::new(SystemClock)));
        if command == Command::Keepalive {
            keepalive_once(&app).await
        } else {
            serve(app, address, &description).await
        }
    })
}

/// What `serve` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Every route, until stopped.
    Serve,
    /// One keep-alive pass, its report on stdout.
    Keepalive,
    /// The variables an `ISSUER`'s metadata gives, on stdout.
    Discover,
}

async fn open_store(config: &Config) -> Result<AnyStore, LocalError> {
    match &config.store {
        // On Lambda, where each instance would hold its own tokens, the shared store's check below
        // refuses it.
        StoreConfig::Embedded { dir } if !on_lambda() => Ok(AnyStore::Embedded(
            EmbeddedStore::open(dir).map_err(LocalError::StoreInUse)?,
        )),
        // An emulator starts empty: the table is made here. On AWS the template makes it.
        StoreConfig::DynamoDb(table) if table.endpoint.is_some() => {
            let store = DynamoStore::new(table, config.store_timeout).map_err(LocalError::Store)?;
            store.ensure_table().await.map_err(LocalError::Store)?;
            Ok(AnyStore::DynamoDb(store))
        }
        _ => shared_store(config).map_err(LocalError::Init),
    }
}

async fn serve(app: Arc<App<AnyStore>>, address: SocketAddr, store: &str) -> Result<(), LocalError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| LocalError::Listen(address, e))?;
    let bound = listener.local_addr().unwrap_or(address);
    println!("{}", banner(&app.config, bound, store));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let keepalive = tokio::spawn(keepalive_loop(app.clone(), stopped));
    let served = http1::serve(app, listener, shutdown_signal()).await;
    // A keep-alive pass under way finishes first: cutting a refresh off between the provider's
    // answer and the store write would lose a rotated refresh token.
    let _ = stop.send(true);
    let _ = keepalive.await;
    served.map_err(LocalError::Serve)?;
    println!("token-broker stopped");
    Ok(())
}

async fn keepalive_once<S: Store>(app: &App<S>) -> Result<(), LocalError> {
    let report = keepalive::run(app).await.map_err(LocalError::KeepaliveFailed)?;
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    if report.needs_attention() {
        return Err(LocalError::NeedsAttention);
    }
    Ok(())
}

/// Runs keep-alive every `KEEPALIVE_INTERVAL` (first at start: a machine that slept for days may
/// be close to losing a connection) until `stop` turns true. A pass is never cut short.
async fn keepalive_loop<S: Store + 'static>(app: Arc<App<S>>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let interval = app.config.keepalive_interval;
    if interval.is_zero() {
        return;
    }
    loop {
        if let Err(error) = keepalive::run(&app).await {
            tracing::warn!(%error, "keep-alive could not run; will try again");
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

fn listen_address() -> Result<SocketAddr, LocalError> {
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "9000".to_owned());
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| LocalError::Address("PORT", port.clone(), "a port number"))?;
    let ip = bind
        .trim()
        .parse()
        .map_err(|_| LocalError::Address("BIND", bind.clone(), "an IP address"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Ctrl-C or SIGTERM (what `docker stop`, systemd and `kill` send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// What a person needs on start: where each route is, what to register at the provider, and
/// which store holds the tokens. Never a secret.
fn banner(config: &Config, address: SocketAddr, store: &str) -> String {
    let base = format!("http://{address}");
    let mut lines = vec![format!("token-broker listening on {base}")];
    for route in Route::<AnyStore>::ALL {
        let what = match route.path() {
            "/login" => "open in a browser to connect the account",
            "/callback" => "the provider redirects the browser here after login",
            "/token" => "clients fetch an access token (API key required)",
            "/verify" => "monitoring: 200 / 202 / 404 (API key required)",
            "/revoke" => "POST: revoke the tokens and forget them (API key required)",
            "/import" => "POST {\"refresh_token\": ...}: take over an existing grant (API key required)",
            _ => "",
        };
        lines.push(format!("  {base}{:<10} {what}", route.path()));
    }
    // Unpinned, it follows the Host a browser uses; this is what one on this machine sends.
    let redirect_uri = config.redirect_uri.clone().unwrap_or_else(|| {
        format!(
            "http://localhost:{}/callback (as a browser at http://localhost:{}/login sends it; \
             set PUBLIC_URL if browsers reach the broker at another address)",
            address.port(),
            address.port()
        )
    });
    lines.push(format!("provider: {}", config.provider_title));
    lines.push(format!("redirect URI to register at the provider: {redirect_uri}"));
    lines.push(format!("store: {store}"));
    lines.join("\n")
}

/// The store as a person should see it: no password, no token.
fn describe_store(config: &StoreConfig) -> String {
    match config {
        StoreConfig::Redis { url, cluster } => {
            let place = reqwest::Url::parse(url.expose())
                .ok()
                .map(|u| {
                    format!(
                        "{}://{}:{}",
                        u.scheme(),
                        u.host_str().unwrap_or("?"),
                        u.port().unwrap_or(6379)
                    )
                })
                .unwrap_or_else(|| "(unparsable URL)".to_owned());
            if *cluster {
                format!("Redis Cluster at {place}")
            } else {
                format!("Redis at {place}")
            }
        }
        StoreConfig::DynamoDb(table) => match &table.endpoint {
            Some(endpoint) => format!("DynamoDB table {} at {endpoint}", table.table),
            None => format!("DynamoDB table {} in {}", table.table, table.region),
        },
        StoreConfig::Embedded { dir } => format!("embedded, {}", dir.join("tokens.redb").display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::Secret;

    #[test]
    fn redis_description_hides_credentials() {
        let config = StoreConfig::Redis {
            url: Secret::new("rediss://default:hunter2@eu1.upstash.io:6380"),
            cluster: false,
        };
        let shown = describe_store(&config);
        assert_eq!(shown, "Redis at rediss://eu1.upstash.io:6380");
    }
}
