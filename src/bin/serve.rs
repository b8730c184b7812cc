//! Local mode: `make serve`. Serves every route from one process on 127.0.0.1:9000 (`BIND`,
//! `PORT`), with the tokens in Redis when `REDIS_URL` is set, else in an embedded on-disk store,
//! and runs keep-alive every `KEEPALIVE_INTERVAL` seconds.
//!
//! `serve keepalive` runs one keep-alive pass instead, prints its report as JSON and exits: 0 when
//! every connection is fine, 1 when one needs a person or failed (for cron and systemd timers).

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use token_broker::{
    app::{App, on_lambda},
    clock::SystemClock,
    config::{Config, StoreConfig},
    local, logging,
    store::{AnyStore, EmbeddedStore, RedisStore},
};

/// Exit code for configuration a person must fix (as opposed to 1, a failure while running).
const CONFIG_ERROR: u8 = 2;

fn main() -> ExitCode {
    // Before logging starts, so a log level set in .env applies. Only the working directory's
    // .env: picking one up from a parent directory would surprise.
    if let Err(error) = dotenvy::from_path(".env")
        && !error.not_found()
    {
        eprintln!("token-broker: cannot read .env: {error}");
        return ExitCode::from(CONFIG_ERROR);
    }
    // Logs go to stderr: stdout carries the banner and the keep-alive report.
    logging::init_with_writer(std::io::stderr());
    let command = std::env::args().nth(1);
    let once = match command.as_deref() {
        None => false,
        Some("keepalive") => true,
        Some(other) => {
            eprintln!("token-broker: unknown command {other:?}; usage: serve [keepalive]");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    match run(once) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("token-broker: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(keepalive_once: bool) -> Result<(), (u8, String)> {
    let address = listen_address().map_err(|e| (CONFIG_ERROR, e))?;
    // Local mode knows its own callback URL; a provider that needs https or another host is
    // configured with REDIRECT_URI explicitly.
    let default_redirect = format!("http://localhost:{}/callback", address.port());
    let config = Config::from_lookup(|name| {
        std::env::var(name)
            .ok()
            .or_else(|| (name == "REDIRECT_URI").then(|| default_redirect.clone()))
    })
    .map_err(|e| {
        (
            CONFIG_ERROR,
            format!(
                "{e}\n\nSet them in the environment or in a .env file in this directory; .env.example \
                 lists and explains every variable (start with: cp .env.example .env)."
            ),
        )
    })?;
    if on_lambda() && matches!(config.store, StoreConfig::Embedded { .. }) {
        return Err((
            CONFIG_ERROR,
            "REDIS_URL is not set, and the embedded store cannot be used on AWS Lambda: each instance \
             would hold its own tokens"
                .to_owned(),
        ));
    }
    let store_description = local::describe_store(&config.store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        // The Redis client needs a running runtime to set up its connection task.
        let store = match &config.store {
            StoreConfig::Redis { url } => {
                AnyStore::Redis(RedisStore::new(url, config.redis_timeout).map_err(|e| (1, e.to_string()))?)
            }
            StoreConfig::Embedded { dir } => AnyStore::Embedded(EmbeddedStore::open(dir).map_err(|e| {
                (
                    1,
                    format!("{e}\n(Is another token-broker already running on this DATA_DIR?)"),
                )
            })?),
        };
        let app = Arc::new(App::new(config, store, Arc::new(SystemClock)).map_err(|e| (1, e.to_string()))?);
        if keepalive_once {
            return keepalive_pass(&app).await;
        }
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| (1, format!("cannot listen on {address}: {e}")))?;
        let bound = listener.local_addr().unwrap_or(address);
        println!("{}", local::banner(&app.config, bound, &store_description));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let keepalive = tokio::spawn(local::keepalive_loop(app.clone(), stopped));
        let served = local::serve(app, listener, shutdown_signal()).await;
        // A keep-alive pass under way finishes first: cutting a refresh off between the
        // provider's answer and the store write would lose a rotated refresh token.
        let _ = stop.send(true);
        let _ = keepalive.await;
        served.map_err(|e| (1, e.to_string()))?;
        println!("token-broker stopped");
        Ok(())
    })
}

async fn keepalive_pass<S: token_broker::store::Store>(app: &App<S>) -> Result<(), (u8, String)> {
    let reports = token_broker::keepalive::run(app)
        .await
        .map_err(|e| (1, format!("keep-alive could not run: {e}")))?;
    let report = serde_json::json!({ "connections": reports });
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    if reports
        .iter()
        .any(|r| r.outcome != "refreshed" && r.outcome != "not_due")
    {
        return Err((
            1,
            "keep-alive: some connections need attention (see the report)".to_owned(),
        ));
    }
    Ok(())
}

fn listen_address() -> Result<SocketAddr, String> {
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "9000".to_owned());
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| format!("PORT is invalid: {port:?} is not a port number"))?;
    let ip = bind
        .trim()
        .parse()
        .map_err(|_| format!("BIND is invalid: {bind:?} is not an IP address"))?;
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
