//! token-broker's benchmark (`make bench`; BENCHMARKS.md explains the figures).
//!
//! Starts a redis-server and a fake provider on loopback, then runs every Lambda function and a
//! `lambda_http` hello-world side by side through a stand-in for the Lambda Runtime API, and
//! prints one Markdown table: cold start, warm `/token` latency against a raw Redis read, Redis
//! round trips, the refresh path, peak memory, zip size and CPU per call by runtime flavour.
//! It reports; it never fails on a figure. It fails only when a function does not work.

mod dynamodb;
mod function;
mod listing;
mod monitor;
mod provider;
mod redis_server;
mod report;
mod runtime_api;
mod secrets;
mod stats;

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    future::Future,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpListener,
    task::{JoinHandle, JoinSet},
};

use crate::{
    function::{Running, Spec},
    monitor::{Monitor, Traffic},
    provider::FakeProvider,
    redis_server::{Redis, RedisServer},
    secrets::FakeSecrets,
};

/// The values the events in `events/` were written for.
const API_KEY: &str = "test-api-key";
const OAUTH_STATE: &str = "test-oauth-state";
/// What EventBridge sends a scheduled function.
const SCHEDULED_EVENT: &str = concat!(
    r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","#,
    r#""source":"aws.events","account":"123456789012","time":"2026-11-23T06:00:00Z","region":"eu-west-1","#,
    r#""resources":["arn:aws:events:eu-west-1:123456789012:rule/token-broker-keepalive"],"detail":{}}"#
);
/// The fake provider's delay on the refresh path, subtracted from what the caller sees.
const PROVIDER_DELAY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Full,
    Short,
}

/// How many of everything: the short mode only checks that the bench works.
struct Plan {
    cold_runs: usize,
    token_rounds: usize,
    token_calls_per_round: usize,
    other_calls: usize,
    count_calls: usize,
    refresh_calls: usize,
    /// Peak memory of the alternatives and of today's runs they replace: this many processes each,
    /// taking turns, of this many warm calls.
    memory_rounds: usize,
    memory_calls: usize,
    /// Connections of the listing measurement, the unrelated keys beside them, and the timed
    /// `/verify` and keep-alive calls over them.
    listing_connections: usize,
    listing_unrelated: usize,
    listing_calls: usize,
}

impl Plan {
    fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Full => Self {
                // The median of 20 pairs moved by ±0.1 between runs of one build; of 100, by
                // about ±0.05. A cold start takes milliseconds, so this costs seconds.
                cold_runs: 100,
                token_rounds: 10,
                token_calls_per_round: 1_000,
                other_calls: 500,
                count_calls: 1_000,
                refresh_calls: 100,
                // One process's peak memory moved by ±0.2 MiB (0.07× the hello-world's) between
                // starts of the same binary; the median of 10 is steadier.
                memory_rounds: 10,
                memory_calls: 200,
                listing_connections: 10_000,
                listing_unrelated: 1_000_000,
                listing_calls: 5,
            },
            Mode::Short => Self {
                cold_runs: 2,
                token_rounds: 2,
                token_calls_per_round: 100,
                other_calls: 20,
                count_calls: 50,
                refresh_calls: 5,
                memory_rounds: 2,
                memory_calls: 20,
                listing_connections: 200,
                listing_unrelated: 5_000,
                listing_calls: 1,
            },
        }
    }
}

struct Args {
    mode: Mode,
    functions: Vec<String>,
    bin_dir: PathBuf,
    baseline: PathBuf,
    token_mt: Option<PathBuf>,
    events: PathBuf,
    zip_dir: Option<PathBuf>,
    baseline_zip: Option<PathBuf>,
    profile: String,
    work: PathBuf,
    /// Alternatives to today's code (`--variants "name=token-binary …"`, from BENCH_VARIANTS).
    variants: Vec<(String, PathBuf)>,
    /// Today's `token` for the runs the alternatives are compared with (default: in `bin_dir`).
    today_token: Option<PathBuf>,
    /// The `key_list` example: the `/token` route with 10,000 keys, in one process.
    key_list: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut values = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag}"))?;
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        values.insert(name.to_owned(), value);
    }
    let mut take = |name: &str| values.remove(name).filter(|v| !v.is_empty());
    let required = |value: Option<String>, name: &str| value.ok_or_else(|| format!("--{name} is required"));
    let args = Args {
        mode: match take("mode").as_deref() {
            None | Some("full") => Mode::Full,
            Some("short") => Mode::Short,
            Some(other) => return Err(format!("--mode must be full or short, not {other}")),
        },
        functions: required(take("functions"), "functions")?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        bin_dir: required(take("bin-dir"), "bin-dir")?.into(),
        baseline: required(take("baseline"), "baseline")?.into(),
        token_mt: take("token-mt").map(PathBuf::from),
        events: required(take("events"), "events")?.into(),
        zip_dir: take("zip-dir").map(PathBuf::from),
        baseline_zip: take("baseline-zip").map(PathBuf::from),
        profile: take("profile").unwrap_or_else(|| "release".to_owned()),
        work: required(take("work"), "work")?.into(),
        today_token: take("today-token").map(PathBuf::from),
        key_list: take("key-list").map(PathBuf::from),
        variants: take("variants")
            .unwrap_or_default()
            .split_whitespace()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(name, bin)| (name.to_owned(), PathBuf::from(bin)))
                    .ok_or_else(|| format!("--variants takes name=binary pairs, not {pair}"))
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(unknown) = values.keys().next() {
        return Err(format!("unknown option --{unknown}"));
    }
    Ok(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("bench: {message}");
            return ExitCode::from(2);
        }
    };
    match run(&args).await {
        Ok(results) => {
            let text = report::render(&args, &results);
            println!("{text}");
            let path = args.work.join("report.md");
            if let Err(error) = std::fs::write(&path, &text) {
                eprintln!("bench: cannot write {}: {error}", path.display());
            }
            if results.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!("bench: the figures above are incomplete:");
                for problem in &results.problems {
                    eprintln!("  - {problem}");
                }
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Serves HTTP/1 on `listener`, each request answered by `handle` with `state`, until the returned
/// task is aborted or dropped with the runtime; its connections end with it.
pub fn serve_http<S, F, Fut>(listener: TcpListener, state: Arc<S>, handle: F) -> JoinHandle<()>
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request<Incoming>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    connections.spawn(async move {
                        let service = service_fn(move |request| handle(state.clone(), request));
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Cold starts of one function.
#[derive(Default)]
pub struct Cold {
    /// One per round, in round order, so that rounds can be paired across functions.
    pub first_answer: Vec<Duration>,
    pub init: Vec<Duration>,
    /// CPU time the process had used by its first answer: less sensitive than wall time to
    /// what else the machine is doing.
    pub cpu: Vec<Duration>,
    /// Page faults by the first answer.
    pub page_faults: Vec<u64>,
    pub statuses: BTreeSet<u16>,
}

/// Peak memory (VmHWM, KiB) of each process started for the alternatives' comparison.
pub type MemorySamples = BTreeMap<String, Vec<u64>>;

/// A warm run of one function process.
#[derive(Default)]
pub struct Warm {
    pub latencies: Vec<Duration>,
    pub cpu: Duration,
    pub calls: usize,
    pub peak_rss_kib: Option<u64>,
    pub rss_split_kib: Option<(u64, u64)>,
    pub threads: usize,
    /// Redis commands per call, for the functions measured on their own.
    pub commands: Option<PerCall>,
}

impl Warm {
    pub fn cpu_per_call(&self) -> Option<Duration> {
        (self.calls > 0).then(|| self.cpu / self.calls as u32)
    }
}

#[derive(Default)]
pub struct Results {
    pub plan_note: String,
    /// label → cold starts; labels are the function names, `baseline` and `baseline-mt`.
    pub cold: BTreeMap<String, Cold>,
    pub warm: BTreeMap<String, Warm>,
    pub raw_hmget: Vec<Duration>,
    /// Redis commands of one warm `/token`, averaged over many.
    pub token_commands: Option<PerCall>,
    /// Redis commands of a cold `/token` (connection set-up and the read).
    pub cold_token_commands: Option<PerCall>,
    /// `/verify` and keep-alive over many connections (see `listing.rs`).
    pub listings: Vec<listing::Listing>,
    /// DynamoDB calls of one cold start on DynamoDB, by function, then by action.
    pub dynamodb_cold_calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// Refresh-path latency with the provider's own time taken out.
    pub refresh: Vec<Duration>,
    pub refresh_commands: Option<PerCall>,
    pub refresh_provider_calls: f64,
    pub zips: BTreeMap<String, u64>,
    /// Peak memory of the alternatives' runs and of today's runs they replace.
    pub memory: MemorySamples,
    /// Processes per run and warm calls per process behind `memory`.
    pub memory_plan: (usize, usize),
    /// Size of each variant's `token` binary, by variant name.
    pub variant_binaries: BTreeMap<String, u64>,
    pub binaries: BTreeMap<String, u64>,
    pub functions: Vec<String>,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    /// Alternatives measured against today's code, in the order they are reported.
    pub comparisons: Vec<Comparison>,
    /// What the `key_list` example wrote: the configuration read and the warm `/token` route with
    /// one key and with many.
    pub key_list: Option<serde_json::Value>,
}

/// Keys the `key_list` example configures: more than any deployment can hold.
pub const KEY_LIST_KEYS: usize = 10_000;

/// A run of an alternative: its name, its environment, the run of today's code it replaces, and
/// what it does.
type VariantRun = (&'static str, Vec<(String, String)>, &'static str, &'static str);

/// One run of an alternative (a label of `cold` and `warm`) and the run of today's code it is
/// compared with, which took turns with it in the same rounds.
pub struct Comparison {
    pub variant: String,
    pub label: String,
    pub reference: String,
    /// What the run does, for the report.
    pub what: String,
}

/// `count` entries of `SCOPED_API_KEYS`, each a verify-only key for one connection. Their
/// digests are counters, which no client's key hashes to.
fn many_scoped_keys(count: usize) -> String {
    (0..count)
        .map(|i| format!("key-{i}:{i:064x}:verify:conn-{i}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Functions whose state others depend on run in a fixed place: `callback` stores the tokens the
/// others read, `revoke` deletes them.
fn run_order(name: &str) -> u8 {
    match name {
        "login" => 0,
        "callback" => 1,
        "revoke" => 3,
        _ => 2,
    }
}

async fn run(args: &Args) -> Result<Results, String> {
    let plan = Plan::for_mode(args.mode);
    let logs = args.work.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let redis_server = RedisServer::start(&args.work.join("redis"))?;
    let mut redis = Redis::connect(&redis_server.url()).await?;
    let provider = FakeProvider::start().await.map_err(|e| e.to_string())?;
    // What functions configured with SECRETS_ARN read instead of their CLIENT_SECRET and API_KEY.
    let fake_dynamo = dynamodb::FakeDynamo::start().await.map_err(|e| e.to_string())?;
    let fake_secrets = FakeSecrets::start(&[("CLIENT_SECRET", "bench-client-secret"), ("API_KEY", API_KEY)])
        .await
        .map_err(|e| e.to_string())?;

    let mut results = Results {
        plan_note: format!(
            "{} cold starts per function (paired with the hello-world started just before; median), {} warm \
             calls each of /token, the hello-worlds and a raw HMGET, taking turns in {} rounds; {} warm calls of \
             every other function; {} refreshes",
            plan.cold_runs,
            plan.token_rounds * plan.token_calls_per_round,
            plan.token_rounds,
            plan.other_calls,
            plan.refresh_calls
        ),
        ..Results::default()
    };

    let broker_env: Vec<(String, String)> = [
        ("CLIENT_ID", "bench-client".to_owned()),
        ("CLIENT_SECRET", "bench-client-secret".to_owned()),
        ("TOKEN_URL", provider.url("/token")),
        ("AUTHORIZE_URL", "https://provider.example/oauth2/authorize".to_owned()),
        ("REVOCATION_URL", provider.url("/revoke")),
        ("REDIRECT_URI", "https://broker.example/callback".to_owned()),
        ("OAUTH_STATE", OAUTH_STATE.to_owned()),
        ("ALLOW_STATIC_STATE", "true".to_owned()),
        ("API_KEY", API_KEY.to_owned()),
        ("REDIS_URL", redis_server.url()),
        ("KEY_PREFIX", "bench".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let spec = |label: &str, bin: &Path, env: Vec<(String, String)>| Spec {
        label: label.to_owned(),
        bin: bin.to_owned(),
        env,
        log: logs.join(format!("{label}.log")),
    };
    let read_event = |name: &str| -> Result<Bytes, String> {
        let path = args.events.join(format!("{name}.json"));
        std::fs::read(&path)
            .map(Bytes::from)
            .map_err(|e| format!("{}: {e}", path.display()))
    };

    // What runs: the two hello-worlds, every function that has an event of its own, and the
    // multi-threaded /token variant when it was built.
    let token_event = read_event("token")?;
    let mut runs: Vec<(Spec, Bytes)> = vec![
        (spec("baseline", &args.baseline, vec![]), token_event.clone()),
        (
            spec(
                "baseline-mt",
                &args.baseline,
                vec![("BASELINE_RUNTIME".to_owned(), "multi_thread".to_owned())],
            ),
            token_event.clone(),
        ),
    ];
    let mut functions = args.functions.clone();
    functions.sort_by_key(|name| run_order(name));
    for name in &functions {
        let bin = args.bin_dir.join(name);
        if !bin.exists() {
            results.problems.push(format!("{name}: no binary at {}", bin.display()));
            continue;
        }
        if let Ok(size) = std::fs::metadata(&bin).map(|m| m.len()) {
            results.binaries.insert(name.clone(), size);
        }
        // The keep-alive function takes EventBridge's scheduled event, whatever its content.
        let event = match read_event(name) {
            Err(_) if name == "keepalive" => Ok(Bytes::from_static(SCHEDULED_EVENT.as_bytes())),
            other => other,
        };
        match event {
            Ok(event) => {
                results.functions.push(name.clone());
                runs.push((spec(name, &bin, broker_env.clone()), event));
            }
            Err(error) => results.notes.push(format!("{name} not run: no event ({error})")),
        }
    }
    if let Ok(size) = std::fs::metadata(&args.baseline).map(|m| m.len()) {
        results.binaries.insert("baseline".to_owned(), size);
    }
    // `token` and `verify` again on DynamoDB (the fake above) instead of Redis, before `revoke`.
    let dynamo_env: Vec<(String, String)> = broker_env
        .iter()
        .filter(|(name, _)| name != "REDIS_URL")
        .cloned()
        .chain(
            [
                ("DYNAMODB_TABLE", "bench-table".to_owned()),
                ("AWS_REGION", "eu-west-1".to_owned()),
                ("AWS_ENDPOINT_URL_DYNAMODB", fake_dynamo.url.clone()),
                ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEBENCH0001".to_owned()),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    "fake/secret+access+key/for+the+bench+01".to_owned(),
                ),
                ("AWS_SESSION_TOKEN", secrets::SESSION_TOKEN.to_owned()),
            ]
            .map(|(name, value)| (name.to_owned(), value)),
        )
        .collect();
    for name in ["token", "verify"] {
        if results.functions.iter().any(|f| f == name) {
            let at = runs.iter().position(|(s, _)| s.label == "revoke").unwrap_or(runs.len());
            let label = format!("{name}-dynamodb");
            runs.insert(
                at,
                (
                    spec(&label, &args.bin_dir.join(name), dynamo_env.clone()),
                    read_event(name)?,
                ),
            );
        }
    }
    // `token` with 1,000 scoped keys configured besides the one it is called with (about 80 KB,
    // more than a Secrets Manager secret holds; one environment string may hold 128 KB): what a
    // large key list costs a cold start (parsing it) and the hot path (finding the key).
    if results.functions.iter().any(|f| f == "token") {
        let mut env = broker_env.clone();
        env.push(("SCOPED_API_KEYS".to_owned(), many_scoped_keys(1_000)));
        let at = runs.iter().position(|(s, _)| s.label == "revoke").unwrap_or(runs.len());
        runs.insert(
            at,
            (
                spec("token-keys", &args.bin_dir.join("token"), env),
                token_event.clone(),
            ),
        );
    }
    let token_mt = args.token_mt.as_ref().filter(|path| path.exists());
    if let Some(path) = token_mt {
        // After `token`, which it mirrors; `revoke` stays last.
        let at = runs.iter().position(|(s, _)| s.label == "revoke").unwrap_or(runs.len());
        runs.insert(at, (spec("token-mt", path, broker_env.clone()), token_event.clone()));
    }

    // The runs of alternatives and of today's code they are compared with, a block of `runs`.
    let mut compared = 0..0;
    // Alternatives to today's code (BENCH_VARIANTS): each run of one takes turns, in the same
    // rounds, with the same run of today's code (labels `today.<run>`), before `revoke`, which
    // deletes the tokens they read.
    if !args.variants.is_empty() {
        let with_secrets = |extension: bool| {
            let mut env: Vec<(String, String)> = broker_env
                .iter()
                .filter(|(name, _)| name != "CLIENT_SECRET" && name != "API_KEY")
                .cloned()
                .collect();
            env.extend(
                [
                    ("SECRETS_ARN", secrets::ARN.to_owned()),
                    ("SECRETS_MANAGER_ENDPOINT", fake_secrets.url()),
                    ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEBENCH0001".to_owned()),
                    (
                        "AWS_SECRET_ACCESS_KEY",
                        "fake/secret+access+key/for+the+bench+01".to_owned(),
                    ),
                    ("AWS_SESSION_TOKEN", secrets::SESSION_TOKEN.to_owned()),
                ]
                .map(|(name, value)| (name.to_owned(), value)),
            );
            if extension {
                env.push((
                    "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".to_owned(),
                    fake_secrets.addr.port().to_string(),
                ));
            }
            env
        };
        let mut json_env = broker_env.clone();
        json_env.push(("AWS_LAMBDA_LOG_FORMAT".to_owned(), "JSON".to_owned()));
        let today = |run: &str| match run {
            "token+secrets" => with_secrets(false),
            "token+json" => json_env.clone(),
            "token+dynamodb" => dynamo_env.clone(),
            _ => broker_env.clone(),
        };
        let plain = "`token` without `SECRETS_ARN`";
        let mut references = Vec::new();
        let mut alternatives = Vec::new();
        for (variant, bin) in &args.variants {
            if !bin.exists() {
                results
                    .problems
                    .push(format!("variant {variant}: no binary at {}", bin.display()));
                continue;
            }
            if let Ok(size) = std::fs::metadata(bin).map(|m| m.len()) {
                results.variant_binaries.insert(variant.clone(), size);
            }
            let plan: Vec<VariantRun> = match variant.as_str() {
                "aws-sigv4" => vec![
                    ("token", broker_env.clone(), "token", plain),
                    (
                        "token+secrets",
                        with_secrets(false),
                        "token+secrets",
                        "`token` reading its secret from Secrets Manager (a fake on loopback)",
                    ),
                ],
                "secrets-extension" => vec![
                    ("token", broker_env.clone(), "token", plain),
                    (
                        "token+extension",
                        with_secrets(true),
                        "token+secrets",
                        "`token` reading its secret through the extension (a fake on loopback), against today's direct call",
                    ),
                    (
                        "token+secrets",
                        with_secrets(false),
                        "token+secrets",
                        "`token` reading its secret from Secrets Manager directly (no layer)",
                    ),
                ],
                "tracing-subscriber" => vec![
                    ("token", broker_env.clone(), "token", "`token`, text log lines"),
                    (
                        "token+json",
                        json_env.clone(),
                        "token+json",
                        "`token`, JSON log lines (`AWS_LAMBDA_LOG_FORMAT=JSON`, as template.yaml sets)",
                    ),
                ],
                // The SDK runs only on DynamoDB; on Redis it is linked but never called.
                "aws-sdk-dynamodb" => vec![
                    (
                        "token+dynamodb",
                        dynamo_env.clone(),
                        "token+dynamodb",
                        "`token` on DynamoDB (the fake on loopback, plain HTTP), against today's own client",
                    ),
                    (
                        "token",
                        broker_env.clone(),
                        "token",
                        "`token` on Redis: the SDK linked, never called",
                    ),
                ],
                "no-audit" => vec![
                    (
                        "token",
                        broker_env.clone(),
                        "token",
                        "`token` without its audit line, against today's (text log lines)",
                    ),
                    (
                        "token+json",
                        json_env.clone(),
                        "token+json",
                        "the same with JSON log lines, as on Lambda",
                    ),
                ],
                // Today's token binary again, copied as the variants are: the spread between two
                // builds that are the same.
                "control" => vec![
                    (
                        "token",
                        broker_env.clone(),
                        "token",
                        "today's `token` against itself: the spread",
                    ),
                    (
                        "token+secrets",
                        with_secrets(false),
                        "token+secrets",
                        "the same, reading its secret from Secrets Manager",
                    ),
                    ("token+json", json_env.clone(), "token+json", "the same, JSON log lines"),
                ],
                _ => vec![("token", broker_env.clone(), "token", plain)],
            };
            for (run, env, reference, what) in plan {
                let label = format!("{variant}.{run}");
                let reference = format!("today.{reference}");
                if !references.iter().any(|(s, _): &(Spec, Bytes)| s.label == reference) {
                    let env = today(reference.trim_start_matches("today."));
                    let today_token = args.today_token.clone().unwrap_or_else(|| args.bin_dir.join("token"));
                    references.push((spec(&reference, &today_token, env), token_event.clone()));
                }
                alternatives.push((spec(&label, bin, env), token_event.clone()));
                results.comparisons.push(Comparison {
                    variant: variant.clone(),
                    label,
                    reference,
                    what: what.to_owned(),
                });
            }
        }
        let at = runs.iter().position(|(s, _)| s.label == "revoke").unwrap_or(runs.len());
        let added = references.len() + alternatives.len();
        runs.splice(at..at, references.into_iter().chain(alternatives));
        compared = at..at + added;
    }

    // 1. Cold starts, interleaved so that drift in the machine's load spreads over all of them.
    //    The first round only warms the page cache and is not counted.
    eprintln!("bench: cold starts ({} rounds)", plan.cold_runs);
    for round in 0..=plan.cold_runs {
        // The compared runs go in reverse order every other round, so that none always follows
        // the same process.
        let order = (0..runs.len()).map(|i| {
            if round % 2 == 1 && compared.contains(&i) {
                compared.start + compared.end - 1 - i
            } else {
                i
            }
        });
        for (spec, event) in order.map(|i| &runs[i]) {
            let (running, call) = Running::start(spec, event).await?;
            if round > 0 {
                let cold = results.cold.entry(spec.label.clone()).or_default();
                cold.first_answer.push(call.latency);
                cold.cpu.push(running.cpu_time());
                cold.page_faults.extend(running.page_faults());
                cold.init.extend(running.init_duration());
                cold.statuses.insert(call.status);
            } else if call.status >= 400 && !spec.label.starts_with("baseline") {
                results
                    .problems
                    .push(format!("{} answered {}: {}", spec.label, call.status, call.body));
            }
            running.stop().await;
        }
    }
    if !results.problems.is_empty() {
        return Ok(results);
    }

    // DynamoDB calls of one cold /token and one cold /verify.
    for name in ["token", "verify"] {
        let label = format!("{name}-dynamodb");
        let Some((spec, event)) = runs.iter().find(|(s, _)| s.label == label) else {
            continue;
        };
        let before = fake_dynamo.calls();
        let (running, call) = Running::start(spec, event).await?;
        expect_ok(&call, &format!("{name} on DynamoDB"))?;
        running.stop().await;
        let calls = fake_dynamo
            .calls()
            .into_iter()
            .map(|(action, n)| (action.clone(), n - before.get(&action).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        results.dynamodb_cold_calls.insert(name.to_owned(), calls);
    }

    let token = runs.iter().find(|(s, _)| s.label == "token").cloned();
    let callback = runs.iter().find(|(s, _)| s.label == "callback").cloned();
    let (Some((token_spec, _)), Some((callback_spec, callback_event))) = (token, callback) else {
        results
            .problems
            .push("the token and callback functions are needed for the hot-path figures".to_owned());
        return Ok(results);
    };
    // Fresh tokens for everything below (revoke, last in every round, deleted them).
    seed(&callback_spec, &callback_event).await?;
    let record_key = redis.token_record_key().await?;

    // 2. Redis commands of a cold /token: connection set-up plus the read.
    let monitor = Monitor::start(redis_server.port).await?;
    let (running, call) = Running::start(&token_spec, &token_event).await?;
    expect_ok(&call, "token")?;
    running.stop().await;
    results.cold_token_commands = Some(PerCall::of(monitor.finish().await?, 1));

    // 3. Warm runs. The hello-worlds, /token (and its multi_thread variant) and the raw read of
    //    the same record take turns in rounds, so that they share the machine's varying load.
    eprintln!("bench: warm invocations");
    let in_group = |label: &str| label.starts_with("baseline") || label == "token" || label.starts_with("token-");
    let mut group = Vec::new();
    // The alternatives and today's runs they are compared with take turns here too, so that the
    // cost of a change on the hot path shows beside its cold-start cost.
    let warm_runs = runs
        .iter()
        .enumerate()
        .filter(|(i, (s, _))| in_group(&s.label) || compared.contains(i))
        .map(|(_, run)| run);
    for (spec, event) in warm_runs {
        let (running, call) = Running::start(spec, event).await?;
        expect_ok(&call, &spec.label)?;
        group.push((spec.label.clone(), running, event.clone(), Warm::default()));
    }
    for _ in 0..(plan.token_calls_per_round / 4).max(50) {
        for (label, running, event, _) in &mut group {
            expect_ok(&running.invoke(event).await?, label)?;
        }
        redis.timed_hmget(&record_key).await?;
    }
    for round in 0..plan.token_rounds {
        // Every other round in reverse, so that no run always follows the same one.
        let mut order: Vec<_> = group.iter_mut().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for (label, running, event, warm) in order {
            let cpu_before = running.cpu_time();
            for _ in 0..plan.token_calls_per_round {
                let call = running.invoke(event).await?;
                expect_ok(&call, label)?;
                warm.latencies.push(call.latency);
            }
            warm.cpu += running.cpu_time() - cpu_before;
            warm.calls += plan.token_calls_per_round;
        }
        for _ in 0..plan.token_calls_per_round {
            results.raw_hmget.push(redis.timed_hmget(&record_key).await?);
        }
    }
    for (label, mut running, event, mut warm) in group {
        if label == "token" {
            // Round trips per warm call, as the server saw them.
            let monitor = Monitor::start(redis_server.port).await?;
            for _ in 0..plan.count_calls {
                expect_ok(&running.invoke(&event).await?, "token")?;
            }
            results.token_commands = Some(PerCall::of(monitor.finish().await?, plan.count_calls));
        }
        warm.peak_rss_kib = running.peak_rss_kib();
        warm.rss_split_kib = running.rss_split_kib();
        warm.threads = running.threads();
        running.stop().await;
        results.warm.insert(label, warm);
    }
    // The `/token` route with many keys, in one process of its own (see examples/key_list.rs).
    if let Some(example) = &args.key_list {
        eprintln!("bench: the /token route with {KEY_LIST_KEYS} keys");
        let out = args.work.join("key-list.json");
        let status = tokio::process::Command::new(example)
            .args([
                KEY_LIST_KEYS.to_string(),
                plan.token_rounds.to_string(),
                plan.token_calls_per_round.to_string(),
                args.events.join("token.json").display().to_string(),
                out.display().to_string(),
            ])
            .envs(broker_env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .map_err(|e| format!("{}: {e}", example.display()))?;
        let report = std::fs::read(&out)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        match report {
            Some(report) if status.success() => results.key_list = Some(report),
            _ => results.problems.push(format!("key_list failed ({status})")),
        }
    }

    // Every other function on its own; login last, as its pending logins stay in Redis for
    // minutes and would lengthen the key scans of the others.
    let mut others: Vec<_> = runs
        .iter()
        .enumerate()
        .filter(|(i, (s, _))| !in_group(&s.label) && !compared.contains(i))
        .map(|(_, run)| run)
        .collect();
    others.sort_by_key(|(s, _)| s.label == "login");
    for (spec, event) in others {
        let warm = warm_run(spec, event, plan.other_calls, redis_server.port).await?;
        results.warm.insert(spec.label.clone(), warm);
        if spec.label == "revoke" {
            seed(&callback_spec, &callback_event).await?;
        }
    }

    // The compared runs' peak memory: each run of an alternative and of today's code, one process
    // after the other, several times.
    for _ in 0..plan.memory_rounds {
        for (spec, event) in &runs[compared.clone()] {
            let (mut running, call) = Running::start(spec, event).await?;
            expect_ok(&call, &spec.label)?;
            for _ in 0..plan.memory_calls {
                expect_ok(&running.invoke(event).await?, &spec.label)?;
            }
            let samples = results.memory.entry(spec.label.clone()).or_default();
            samples.extend(running.peak_rss_kib());
            running.stop().await;
        }
    }

    results.memory_plan = (plan.memory_rounds, plan.memory_calls);

    // 4. The refresh path: every /token finds its token inside the refresh window (the provider
    //    issues 30-second tokens, the skew is 60 s) and refreshes through a provider that takes
    //    PROVIDER_DELAY to answer.
    eprintln!("bench: refresh path");
    provider.set(30, PROVIDER_DELAY);
    seed(&callback_spec, &callback_event).await?;
    let (mut running, _) = Running::start(&token_spec, &token_event).await?;
    expect_ok(&running.invoke(&token_event).await?, "token")?;
    let requests_before = provider.token_requests();
    for _ in 0..plan.refresh_calls {
        let call = running.invoke(&token_event).await?;
        expect_ok(&call, "token (refreshing)")?;
        results.refresh.push(call.latency.saturating_sub(provider.last_hold()));
    }
    results.refresh_provider_calls =
        (provider.token_requests() - requests_before) as f64 / plan.refresh_calls.max(1) as f64;
    // Counted apart: MONITOR slows Redis down.
    let counted = 10;
    let monitor = Monitor::start(redis_server.port).await?;
    for _ in 0..counted {
        expect_ok(&running.invoke(&token_event).await?, "token (refreshing)")?;
    }
    results.refresh_commands = Some(PerCall::of(monitor.finish().await?, counted));
    running.stop().await;
    provider.set(1799, Duration::ZERO);

    // 5. Listing many connections, alone on the server and then beside many unrelated keys.
    let verify_run = runs.iter().find(|(s, _)| s.label == "verify").cloned();
    let keepalive_run = runs.iter().find(|(s, _)| s.label == "keepalive").cloned();
    if let (Some((verify, verify_event)), Some((keepalive, keepalive_event))) = (verify_run, keepalive_run) {
        eprintln!("bench: listing {} connections", plan.listing_connections);
        let mut env = broker_env.clone();
        for (name, value) in &mut env {
            if name == "KEY_PREFIX" {
                *value = listing::PREFIX.to_owned();
            }
        }
        let verify = spec("verify-many", &verify.bin, env.clone());
        let keepalive = spec("keepalive-many", &keepalive.bin, env);
        let client = redis::Client::open(redis_server.url()).map_err(|e| e.to_string())?;
        let mut admin = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(|e| e.to_string())?;
        listing::seed_connections(&mut admin, plan.listing_connections).await?;
        for unrelated in [0, plan.listing_unrelated] {
            if unrelated > 0 {
                listing::seed_unrelated(&mut admin, unrelated).await?;
                listing::drop_index(&mut admin).await?;
            }
            let measured = listing::measure(
                (&verify, &verify_event),
                (&keepalive, &keepalive_event),
                redis_server.port,
                plan.listing_calls,
                plan.listing_connections,
                unrelated,
            )
            .await?;
            results.listings.push(measured);
        }
    }

    // 6. Zips, when they were built.
    if let Some(dir) = &args.zip_dir {
        for name in &results.functions {
            let path = dir.join(name).join("bootstrap.zip");
            match std::fs::metadata(&path) {
                Ok(meta) => {
                    results.zips.insert(name.clone(), meta.len());
                }
                Err(error) => results.problems.push(format!("{}: {error}", path.display())),
            }
        }
    }
    if let Some(path) = &args.baseline_zip {
        match std::fs::metadata(path) {
            Ok(meta) => {
                results.zips.insert("baseline".to_owned(), meta.len());
            }
            Err(error) => results.problems.push(format!("{}: {error}", path.display())),
        }
    }
    if !results.comparisons.is_empty() {
        results.notes.push(format!(
            "the fake Secrets Manager answered {} GetSecretValue calls, the fake extension {} requests",
            fake_secrets.state.direct.load(std::sync::atomic::Ordering::SeqCst),
            fake_secrets.state.extension.load(std::sync::atomic::Ordering::SeqCst)
        ));
    }
    drop(redis_server);
    Ok(results)
}

/// Stores a fresh token pair the way a login does: one `/callback` with the static state.
async fn seed(callback: &Spec, event: &Bytes) -> Result<(), String> {
    let (running, call) = Running::start(callback, event).await?;
    running.stop().await;
    expect_ok(&call, "callback")
}

fn expect_ok(call: &function::Call, what: &str) -> Result<(), String> {
    if call.status == 200 {
        Ok(())
    } else {
        Err(format!("{what} answered {}: {}", call.status, call.body))
    }
}

async fn warm_run(spec: &Spec, event: &Bytes, calls: usize, redis_port: u16) -> Result<Warm, String> {
    let (mut running, _) = Running::start(spec, event).await?;
    for _ in 0..(calls / 10).max(20) {
        running.invoke(event).await?;
    }
    let mut warm = Warm {
        calls,
        ..Warm::default()
    };
    let cpu_before = running.cpu_time();
    for _ in 0..calls {
        warm.latencies.push(running.invoke(event).await?.latency);
    }
    warm.cpu = running.cpu_time() - cpu_before;
    let counted = 20;
    let monitor = Monitor::start(redis_port).await?;
    for _ in 0..counted {
        running.invoke(event).await?;
    }
    warm.commands = Some(PerCall::of(monitor.finish().await?, counted));
    warm.peak_rss_kib = running.peak_rss_kib();
    warm.rss_split_kib = running.rss_split_kib();
    warm.threads = running.threads();
    running.stop().await;
    Ok(warm)
}

/// Redis commands per invocation: sent by the function (round trips), and run by its scripts.
pub struct PerCall {
    pub client: BTreeMap<String, f64>,
    pub scripted: BTreeMap<String, f64>,
}

impl PerCall {
    fn of(traffic: Traffic, calls: usize) -> Self {
        let per = |counts: BTreeMap<String, u64>| {
            counts
                .into_iter()
                .map(|(name, count)| (name, count as f64 / calls.max(1) as f64))
                .collect()
        };
        Self {
            client: per(traffic.client),
            scripted: per(traffic.scripted),
        }
    }

    pub fn round_trips(&self) -> f64 {
        self.client.values().sum()
    }
}
