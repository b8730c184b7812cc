//! What a long `SCOPED_API_KEYS` list costs, for `make bench` (BENCHMARKS.md): the `/token`
//! route's configuration read with one key and with many, and then warm `/token` calls through
//! the whole route (key check, store read, audit line) of both, taking turns in rounds.
//!
//! No deployment can hold 10,000 keys (a Lambda environment holds 4 KB, a Secrets Manager secret
//! 64 KB, and one environment string 128 KB), so this runs the route in one process rather than
//! a function started with them. Its configuration is its environment, as the bench gives the
//! `token` function; the many keys are added to it here.
//!
//! Usage: `key_list <keys> <rounds> <calls per round> <event.json> <out.json>`

use std::{
    env,
    sync::Arc,
    time::{Duration, Instant},
};

use token_broker::{
    base::{
        clock::{Clock, SystemClock},
        config::{Config, StoreConfig},
        record::{ConnectionRecord, TokenSet},
        secret::Secret,
        store::{Expect, RedisStore, Store},
    },
    http::routes::{self, Route},
    oauth::app::App,
};

/// Verify-only keys of one connection each; their digests are counters, which no client's key
/// hashes to.
fn scoped_keys(count: usize) -> String {
    (0..count)
        .map(|i| format!("key-{i}:{i:064x}:verify:conn-{i}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Records of its own, apart from the bench's.
const KEY_PREFIX: &str = "bench-key-list";

fn config(extra_keys: Option<&str>) -> Config {
    Config::for_function(Route::<RedisStore>::TOKEN.uses(), |name| match (name, extra_keys) {
        ("SCOPED_API_KEYS", Some(keys)) => Some(keys.to_owned()),
        ("KEY_PREFIX", _) => Some(KEY_PREFIX.to_owned()),
        _ => env::var(name).ok(),
    })
    .unwrap_or_else(|error| panic!("configuration: {error}"))
}

fn app(config: Config) -> App<RedisStore> {
    let StoreConfig::Redis { url, cluster } = &config.store else {
        panic!("the bench runs on Redis")
    };
    let store = RedisStore::new(url, *cluster, config.store_timeout, config.layout()).expect("a Redis URL");
    App::new(config, store, Arc::new(SystemClock))
}

/// A pair valid for an hour, so that no call refreshes.
async fn seed(app: &App<RedisStore>) {
    let now = SystemClock.now();
    let tokens = TokenSet {
        access_token: Secret::new("bench-access-token"),
        refresh_token: Secret::new("bench-refresh-token"),
        token_type: "Bearer".to_owned(),
        scope: None,
        access_expires_at: now + 3600,
        refresh_expires_at: now + 86_400,
        issued_at: now,
    };
    let key = app.keys.tokens("default");
    let record = app
        .seal_record(&key, &ConnectionRecord::Active(tokens))
        .expect("a record seals");
    app.store
        .write(&key, Expect::Any, &record, None)
        .await
        .expect("the store takes the record");
}

/// The median of `samples`, in microseconds.
fn median_us(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

fn percentile_us(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let at = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
    samples[at].as_secs_f64() * 1e6
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let [keys, rounds, calls, event, out] = &args[..] else {
        panic!("usage: key_list <keys> <rounds> <calls per round> <event.json> <out.json>")
    };
    let keys: usize = keys.parse().expect("a number of keys");
    let rounds: usize = rounds.parse().expect("a number of rounds");
    let calls: usize = calls.parse().expect("a number of calls");
    let event = std::fs::read_to_string(event).expect("the token event");
    // Audit lines and all, as a function writes them.
    token_broker::base::logging::init();

    // Reading the configuration, as a cold start does: alternately, several times each.
    let many = scoped_keys(keys);
    let (mut read_one, mut read_many) = (Vec::new(), Vec::new());
    for _ in 0..21 {
        let started = Instant::now();
        drop(config(None));
        read_one.push(started.elapsed());
        let started = Instant::now();
        drop(config(Some(&many)));
        read_many.push(started.elapsed());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (one, lots) = runtime.block_on(async { (app(config(None)), app(config(Some(&many)))) });
    runtime.block_on(seed(&one));
    let (mut with_one, mut with_many) = (Vec::new(), Vec::new());
    runtime.block_on(async {
        let call = async |app: &App<RedisStore>| {
            let request = lambda_http::request::from_str(&event).expect("the token event parses");
            let started = Instant::now();
            let response = routes::handle(app, Route::TOKEN, request).await;
            let took = started.elapsed();
            assert_eq!(response.status(), 200, "/token failed");
            took
        };
        for _ in 0..calls.max(50) {
            call(&one).await;
            call(&lots).await;
        }
        // Every other round the other goes first, so that neither always follows the same one.
        for round in 0..rounds {
            let order: [(&App<RedisStore>, &mut Vec<Duration>); 2] = if round % 2 == 0 {
                [(&one, &mut with_one), (&lots, &mut with_many)]
            } else {
                [(&lots, &mut with_many), (&one, &mut with_one)]
            };
            for (app, samples) in order {
                for _ in 0..calls {
                    samples.push(call(app).await);
                }
            }
        }
    });

    let report = serde_json::json!({
        "keys": keys,
        "config_us": {"one": median_us(&mut read_one), "many": median_us(&mut read_many)},
        "p50_us": {"one": median_us(&mut with_one), "many": median_us(&mut with_many)},
        "p99_us": {"one": percentile_us(&mut with_one, 0.99), "many": percentile_us(&mut with_many, 0.99)},
        "calls": with_one.len(),
    });
    std::fs::write(out, report.to_string()).expect("the report is written");
}
