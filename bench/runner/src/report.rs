//! The one Markdown table `make bench` prints.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use crate::{
    Args, Mode, PerCall, Results,
    stats::{median, micros, millis, summarize},
};

const COLD_TARGET: f64 = 1.3;
const RSS_TARGET: f64 = 1.5;
const HOT_PATH_MARGIN: Duration = Duration::from_micros(100);
const ZIP_TARGET_BYTES: u64 = 2_000_000;
/// How far apart two builds' figures may be and still count as the same, in units of the
/// hello-world's: about the spread of the paired cold-start median and of peak memory between
/// runs of one build (BENCHMARKS.md, "Reading the numbers").
const COLD_SPREAD: f64 = 0.05;
const RSS_SPREAD: f64 = 0.1;

struct Row {
    measure: String,
    value: String,
    baseline: String,
    ratio: String,
    target: &'static str,
    met: String,
}

fn row(measure: impl Into<String>, value: impl Into<String>) -> Row {
    Row {
        measure: measure.into(),
        value: value.into(),
        baseline: "—".to_owned(),
        ratio: "—".to_owned(),
        target: "—",
        met: "—".to_owned(),
    }
}

impl Row {
    fn baseline(mut self, text: impl Into<String>) -> Self {
        self.baseline = text.into();
        self
    }
    fn ratio(mut self, ratio: Option<f64>) -> Self {
        self.ratio = ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
        self
    }
    /// A median ratio with the middle half of the paired ratios around it.
    fn paired_ratio(mut self, paired: Option<Paired>) -> Self {
        self.ratio = paired.map_or_else(
            || "—".to_owned(),
            |p| {
                format!(
                    "{:.2}× (middle half {:.2}–{:.2})",
                    p.median, p.lower_quartile, p.upper_quartile
                )
            },
        );
        self
    }
    fn target(mut self, target: &'static str, met: Option<bool>) -> Self {
        self.target = target;
        self.met = match met {
            Some(true) => "yes".to_owned(),
            Some(false) => "**no**".to_owned(),
            None => "n/a".to_owned(),
        };
        self
    }
}

/// The ratios of a function's cold starts to the hello-world's of the same rounds.
#[derive(Clone, Copy)]
struct Paired {
    median: f64,
    lower_quartile: f64,
    upper_quartile: f64,
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", millis(d))
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", micros(d))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn list(counts: &BTreeMap<String, f64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(name, n)| format!("{name} {}", trim(*n))).collect();
    parts.join(", ")
}

fn commands(per_call: &PerCall) -> String {
    let mut text = trim(per_call.round_trips());
    if !per_call.client.is_empty() {
        let _ = write!(text, " ({})", list(&per_call.client));
    }
    if !per_call.scripted.is_empty() {
        let _ = write!(text, "; inside scripts: {}", list(&per_call.scripted));
    }
    text
}

/// 10000 as "10,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn trim(n: f64) -> String {
    if (n - n.round()).abs() < 0.005 {
        format!("{}", n.round() as i64)
    } else {
        format!("{n:.2}")
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or_else(|| "? GiB".to_owned(), |kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores ({cpu}), {memory} RAM, Linux {}, x86_64", kernel.trim())
}

pub fn render(args: &Args, r: &Results) -> String {
    let mut rows = Vec::new();
    let cold_of = |label: &str| r.cold.get(label).and_then(|c| median(&c.first_answer));
    let describe_cold = |label: &str| {
        let Some(cold) = r.cold.get(label) else {
            return "not measured".to_owned();
        };
        let mut text = median(&cold.first_answer).map_or_else(|| "not measured".to_owned(), ms);
        let mut parts = Vec::new();
        if let Some(init) = median(&cold.init) {
            parts.push(format!("init {}", ms(init)));
        }
        if let Some(cpu) = median(&cold.cpu) {
            parts.push(format!("CPU {}", ms(cpu)));
        }
        let mut faults = cold.page_faults.clone();
        faults.sort_unstable();
        if let Some(middle) = faults.get(faults.len() / 2) {
            parts.push(format!("{middle} page faults"));
        }
        if !parts.is_empty() {
            let _ = write!(text, " ({})", parts.join(", "));
        }
        text
    };
    // Each round starts every process once, one after the other: the ratio of a function to the
    // hello-world started just before it cancels most of the machine's drifting load.
    let paired = |label: &str| -> Option<Paired> {
        let (cold, base) = (r.cold.get(label)?, r.cold.get("baseline")?);
        let mut ratios: Vec<f64> = cold
            .first_answer
            .iter()
            .zip(&base.first_answer)
            .map(|(f, b)| f.as_secs_f64() / b.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let at = |quantile: f64| ratios[((ratios.len() - 1) as f64 * quantile).round() as usize];
        (!ratios.is_empty()).then(|| Paired {
            median: ratios[(ratios.len() - 1) / 2],
            lower_quartile: at(0.25),
            upper_quartile: at(0.75),
        })
    };
    let base_text = describe_cold("baseline");

    // Cold start.
    for name in &r.functions {
        let ratio = paired(name);
        // Status 0: not an HTTP function (keep-alive answers its scheduled event with JSON).
        let statuses: Vec<String> = r.cold.get(name).map_or_else(Vec::new, |c| {
            c.statuses
                .iter()
                .map(|s| {
                    if *s == 0 {
                        "event".to_owned()
                    } else {
                        format!("HTTP {s}")
                    }
                })
                .collect()
        });
        rows.push(
            row(
                format!("Cold start, `{name}` ({})", statuses.join("/")),
                describe_cold(name),
            )
            .baseline(base_text.clone())
            .paired_ratio(ratio)
            .target("≤ 1.3×", ratio.map(|p| p.median <= COLD_TARGET)),
        );
    }
    for (label, what) in [
        ("baseline-mt", "Cold start, hello-world on `multi_thread`"),
        ("token-mt", "Cold start, `token` on `multi_thread`"),
    ] {
        if cold_of(label).is_some() {
            rows.push(
                row(what, describe_cold(label))
                    .baseline(base_text.clone())
                    .paired_ratio(paired(label)),
            );
        }
    }

    // `token` with 1,000 scoped keys configured, against itself with one key, in the same rounds.
    if cold_of("token-keys").is_some() {
        let with_keys = paired("token-keys");
        rows.push(
            row(
                "Cold start, `token` with 1,000 scoped keys configured",
                describe_cold("token-keys"),
            )
            .baseline(base_text.clone())
            .paired_ratio(with_keys),
        );
        let difference = with_keys.zip(paired("token")).map(|(k, t)| k.median - t.median);
        let mut against_one = row(
            "Cold start, `token` with 1,000 keys minus with one",
            difference.map_or_else(|| "—".to_owned(), |d| format!("{d:+.3}× of the hello-world")),
        );
        against_one.baseline = "`token` with one key".to_owned();
        rows.push(against_one);
    }

    // The same functions on DynamoDB (a fake on loopback), against the hello-world and against
    // themselves on Redis, in the same rounds.
    for name in ["token", "verify"] {
        let label = format!("{name}-dynamodb");
        if cold_of(&label).is_none() {
            continue;
        }
        let on_dynamodb = paired(&label);
        rows.push(
            row(format!("Cold start, `{name}` on DynamoDB"), describe_cold(&label))
                .baseline(base_text.clone())
                .paired_ratio(on_dynamodb)
                .target("≤ 1.5×", on_dynamodb.map(|p| p.median <= 1.5)),
        );
        let difference = on_dynamodb.zip(paired(name)).map(|(d, r)| d.median - r.median);
        let mut against_redis = row(
            format!("Cold start, `{name}` on DynamoDB minus on Redis"),
            difference.map_or_else(|| "—".to_owned(), |d| format!("{d:+.3}× of the hello-world")),
        )
        .target("≤ +0.1×", difference.map(|d| d <= 0.1));
        against_redis.baseline = format!("`{name}` on Redis");
        rows.push(against_redis);
    }
    // What each function needs: `token` one read, `verify` one listing with the records in it.
    for (name, expected, target) in [("token", "GetItem", "1 GetItem"), ("verify", "Query", "1 Query")] {
        let Some(made) = r.dynamodb_cold_calls.get(name) else {
            continue;
        };
        let calls: Vec<String> = made.iter().map(|(action, n)| format!("{n} {action}")).collect();
        let just_one = made.len() == 1 && made.get(expected) == Some(&1);
        rows.push(row(format!("DynamoDB calls of a cold `/{name}`"), calls.join(", ")).target(target, Some(just_one)));
    }

    // Warm /token.
    let token = r.warm.get("token").and_then(|w| summarize(&w.latencies));
    let base = r.warm.get("baseline").and_then(|w| summarize(&w.latencies));
    let raw = summarize(&r.raw_hmget);
    if let (Some(token), Some(base)) = (&token, &base) {
        rows.push(
            row("Warm `/token` p50, end to end through the Runtime API", us(token.p50))
                .baseline(us(base.p50))
                .ratio(ratio(micros(token.p50), micros(base.p50))),
        );
        rows.push(
            row("Warm `/token` p99, end to end", us(token.p99))
                .baseline(us(base.p99))
                .ratio(ratio(micros(token.p99), micros(base.p99))),
        );
    }
    if let (Some(token), Some(keys)) = (&token, r.warm.get("token-keys").and_then(|w| summarize(&w.latencies))) {
        // The hot path must not notice the size of the key list.
        rows.push(
            row("Warm `/token` p50 with 1,000 scoped keys configured", us(keys.p50))
                .baseline(format!("with one key {}", us(token.p50)))
                .ratio(ratio(micros(keys.p50), micros(token.p50))),
        );
    }
    if let Some(list) = &r.key_list {
        let figure = |field: &str, which: &str| list[field][which].as_f64();
        let keys = thousands(crate::KEY_LIST_KEYS);
        if let (Some(many), Some(one)) = (figure("config_us", "many"), figure("config_us", "one")) {
            rows.push(
                row(
                    format!("Reading `token`'s configuration with {keys} scoped keys (in one process)"),
                    format!(
                        "{:.2} ms, {:.2} µs a key",
                        many / 1e3,
                        (many - one) / crate::KEY_LIST_KEYS as f64
                    ),
                )
                .baseline(format!("with one key {one:.0} µs")),
            );
        }
        for (field, name) in [("p50_us", "p50"), ("p99_us", "p99")] {
            let (Some(many), Some(one)) = (figure(field, "many"), figure(field, "one")) else {
                continue;
            };
            let mut line = row(
                format!("The `/token` route {name} with {keys} scoped keys (in one process, Redis read included)"),
                format!("{many:.0} µs"),
            )
            .baseline(format!("with one key {one:.0} µs"))
            .ratio(ratio(many, one));
            if name == "p50" {
                line = line.target("≤ 1.05×", ratio(many, one).map(|r| r <= 1.05));
            }
            rows.push(line);
        }
    }
    if let Some(raw) = &raw {
        rows.push(row(
            "Raw `HMGET` of the same record from the bench (same client crate)",
            format!("p50 {} · p99 {}", us(raw.p50), us(raw.p99)),
        ));
    }
    if let (Some(token), Some(base), Some(raw)) = (&token, &base, &raw) {
        let own = token.p50.saturating_sub(base.p50);
        let bound = raw.p50 + HOT_PATH_MARGIN;
        rows.push(
            row(
                "Hot path: `/token` p50 − hello-world p50 (the broker's own work)",
                us(own),
            )
            .baseline(format!("raw HMGET p50 {}", us(raw.p50)))
            .ratio(ratio(micros(own), micros(raw.p50)))
            .target("≤ raw read + 100 µs", Some(own <= bound)),
        );
    }
    if let Some(per_call) = &r.token_commands {
        rows.push(
            row("Redis round trips per warm `/token`", commands(per_call))
                .target("exactly 1", Some(per_call.round_trips() == 1.0)),
        );
    }
    if let Some(per_call) = &r.cold_token_commands {
        rows.push(row(
            "Redis round trips of a cold `/token` (connect + read)",
            commands(per_call),
        ));
    }
    if let Some(refresh) = summarize(&r.refresh) {
        rows.push(
            row(
                "Refreshing `/token`, minus the provider's time",
                format!("p50 {} · p99 {}", ms(refresh.p50), ms(refresh.p99)),
            )
            .baseline(format!("provider delay {} (subtracted)", ms(crate::PROVIDER_DELAY))),
        );
        if let Some(per_call) = &r.refresh_commands {
            // The read, the lock taken with the generation check, the write that releases it.
            rows.push(
                row(
                    "Redis round trips per refreshing `/token`",
                    format!(
                        "{}; provider requests per call: {}",
                        commands(per_call),
                        trim(r.refresh_provider_calls)
                    ),
                )
                .target("3", Some(per_call.round_trips() == 3.0)),
            );
        }
    }

    // Listing many connections: alone on the server, then beside many unrelated keys.
    for listing in &r.listings {
        let beside = if listing.unrelated_keys == 0 {
            "alone on the server".to_owned()
        } else {
            format!("beside {} unrelated keys", thousands(listing.unrelated_keys))
        };
        let n = thousands(listing.connections);
        rows.push(row(
            format!("First `/verify` over {n} connections without their index ({beside}): builds it from a SCAN"),
            ms(listing.first_verify),
        ));
        for (what, latencies, per) in [
            ("`/verify`", &listing.verify, &listing.verify_commands),
            ("One keep-alive pass", &listing.keepalive, &listing.keepalive_commands),
        ] {
            let Some(summary) = summarize(latencies) else { continue };
            let commands_text = per.as_ref().map_or_else(String::new, |per| {
                format!(" · Redis commands per connection: {}", commands(per))
            });
            rows.push(row(
                format!("{what} over {n} connections ({beside})"),
                format!("p50 {}{commands_text}", ms(summary.p50)),
            ));
        }
    }

    // Warm calls of the other functions (token has its own rows above).
    let describe_warm = |label: &str| {
        let warm = r.warm.get(label)?;
        let summary = summarize(&warm.latencies)?;
        let cpu = warm
            .cpu_per_call()
            .map_or_else(String::new, |cpu| format!(" · CPU {:.0} µs", micros(cpu)));
        let redis = warm
            .commands
            .as_ref()
            .map_or_else(String::new, |c| format!(" · Redis round trips {}", commands(c)));
        Some(format!("p50 {} · p99 {}{cpu}{redis}", us(summary.p50), us(summary.p99)))
    };
    for name in r.functions.iter().filter(|name| *name != "token") {
        if let Some(text) = describe_warm(name) {
            let ratio = r
                .warm
                .get(name)
                .and_then(|w| summarize(&w.latencies))
                .zip(base.as_ref())
                .and_then(|(s, b)| ratio(micros(s.p50), micros(b.p50)));
            rows.push(
                row(format!("Warm `{name}`, end to end"), text)
                    .baseline(describe_warm("baseline").unwrap_or_default())
                    .ratio(ratio),
            );
        }
    }

    // Memory.
    let rss_of = |label: &str| r.warm.get(label).and_then(|w| w.peak_rss_kib);
    let describe_rss = |label: &str| match (rss_of(label), r.warm.get(label).and_then(|w| w.rss_split_kib)) {
        (Some(peak), Some((anon, file))) => format!(
            "{} (at exit: heap/stack {}, file-backed {})",
            mib(peak),
            mib(anon),
            mib(file)
        ),
        (Some(peak), None) => mib(peak),
        _ => "not measured".to_owned(),
    };
    let base_rss = rss_of("baseline");
    for name in &r.functions {
        let value = rss_of(name);
        let ratio = value.zip(base_rss).and_then(|(v, b)| ratio(v as f64, b as f64));
        rows.push(
            row(format!("Peak RSS (VmHWM), `{name}`"), describe_rss(name))
                .baseline(describe_rss("baseline"))
                .ratio(ratio)
                .target("≤ 1.5×", ratio.map(|x| x <= RSS_TARGET)),
        );
    }

    // Size.
    if r.zips.is_empty() {
        let sizes: Vec<String> = r
            .binaries
            .iter()
            .filter(|(name, _)| *name != "baseline")
            .map(|(name, size)| format!("{name} {}", mb(*size)))
            .collect();
        rows.push(
            row(
                match args.mode {
                    Mode::Short => "Zip size (arm64): skipped in short mode; x86_64 binaries instead",
                    Mode::Full => "Zip size (arm64): not built; x86_64 binaries instead",
                },
                sizes.join(", "),
            )
            .baseline(r.binaries.get("baseline").map_or_else(|| "—".to_owned(), |s| mb(*s)))
            .target("each zip ≤ 2 MB", None),
        );
    } else {
        let base_zip = r.zips.get("baseline").copied();
        for name in &r.functions {
            let Some(&size) = r.zips.get(name) else { continue };
            rows.push(
                row(format!("Zip (arm64 `bootstrap.zip`), `{name}`"), mb(size))
                    .baseline(base_zip.map_or_else(|| "—".to_owned(), mb))
                    .ratio(base_zip.and_then(|b| ratio(size as f64, b as f64)))
                    .target("≤ 2 MB", Some(size <= ZIP_TARGET_BYTES)),
            );
        }
    }

    // Runtime flavour.
    for (ct, mt, what) in [
        ("baseline", "baseline-mt", "hello-world"),
        ("token", "token-mt", "`token`"),
    ] {
        let (Some(ct), Some(mt)) = (r.warm.get(ct), r.warm.get(mt)) else {
            continue;
        };
        let (Some(ct_cpu), Some(mt_cpu)) = (ct.cpu_per_call(), mt.cpu_per_call()) else {
            continue;
        };
        let rss = match (ct.peak_rss_kib, mt.peak_rss_kib) {
            (Some(a), Some(b)) => format!("; RSS {} vs {}", mib(a), mib(b)),
            _ => String::new(),
        };
        rows.push(
            row(
                format!("CPU per warm call, {what}: `current_thread` vs `multi_thread`"),
                format!(
                    "{:.1} µs vs {:.1} µs ({} vs {} threads{rss})",
                    micros(ct_cpu),
                    micros(mt_cpu),
                    ct.threads,
                    mt.threads
                ),
            )
            .ratio(ratio(micros(ct_cpu), micros(mt_cpu))),
        );
    }
    if let Some(warm) = r.warm.get("token")
        && let Some(cpu) = warm.cpu_per_call()
        && !r.warm.contains_key("token-mt")
    {
        rows.push(row(
            "CPU per warm `/token` (`current_thread`)",
            format!("{:.1} µs", micros(cpu)),
        ));
    }

    if args.mode == Mode::Short {
        // Debug builds say nothing about time, memory or size; counts still hold.
        for row in rows
            .iter_mut()
            .filter(|row| row.target != "—" && !row.target.starts_with("exactly"))
        {
            row.met = "not judged (debug build)".to_owned();
        }
    }

    let alternatives = render_alternatives(args, r, &describe_cold, &paired);

    let mut out = String::new();
    let mode = match args.mode {
        Mode::Full => "full",
        Mode::Short => "short (debug builds, a few iterations, no zips: checks that the bench runs)",
    };
    let _ = writeln!(out, "## token-broker benchmark\n");
    let _ = writeln!(out, "- Mode: {mode}; build profile: {}", args.profile);
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(out, "- Runs: {}", r.plan_note);
    let _ = writeln!(
        out,
        "- Baseline: a `lambda_http` hello-world on a `current_thread` runtime, same profile; cold start = \
         process start → first answer through the Runtime API stand-in (init = → first poll)"
    );
    for note in &r.notes {
        let _ = writeln!(out, "- Note: {note}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| Measure | token-broker | Baseline | Ratio | Target | Met |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.measure, row.value, row.baseline, row.ratio, row.target, row.met
        );
    }
    out.push_str(&alternatives);
    out
}

/// The table of alternatives to today's code (BENCH_VARIANTS): each run against the run of
/// today's code it took turns with, the differences in units of the hello-world's figures.
fn render_alternatives(
    args: &Args,
    r: &Results,
    describe_cold: &dyn Fn(&str) -> String,
    paired: &dyn Fn(&str) -> Option<Paired>,
) -> String {
    let mut out = String::new();
    if r.comparisons.is_empty() {
        return out;
    }
    // Per round: (alternative − today's) / hello-world, so the cost reads in hello-world cold starts.
    let cost = |label: &str, reference: &str| -> Option<Paired> {
        let (alt, today, base) = (r.cold.get(label)?, r.cold.get(reference)?, r.cold.get("baseline")?);
        let mut costs: Vec<f64> = alt
            .first_answer
            .iter()
            .zip(&today.first_answer)
            .zip(&base.first_answer)
            .map(|((a, t), b)| (a.as_secs_f64() - t.as_secs_f64()) / b.as_secs_f64())
            .collect();
        costs.sort_by(f64::total_cmp);
        let at = |quantile: f64| costs[((costs.len() - 1) as f64 * quantile).round() as usize];
        (!costs.is_empty()).then(|| Paired {
            median: at(0.5),
            lower_quartile: at(0.25),
            upper_quartile: at(0.75),
        })
    };
    // The median of the processes started for the comparison; the hello-world's from its warm run.
    let rss_of = |label: &str| {
        let mut samples = r.memory.get(label)?.clone();
        samples.sort_unstable();
        samples.get(samples.len().checked_sub(1)? / 2).copied()
    };
    let base_rss = r.warm.get("baseline").and_then(|w| w.peak_rss_kib);
    let today_bin = r.binaries.get("token").copied();
    let _ = writeln!(out, "\n### Alternatives to today's code\n");
    let _ = writeln!(
        out,
        "Each run of an alternative took turns with the same run of today's code in every cold-start round. \
         Cost = (alternative − today's) ÷ hello-world of the same round, median over the rounds (middle half in \
         brackets). Peak RSS: the median of {} processes each, started in turns, after {} warm calls; its cost \
         is the difference ÷ the hello-world's. Warm p50: of the calls each made while taking turns with \
         `/token` and the hello-worlds. Within the spread: cold-start cost ≤ {COLD_SPREAD}×, \
         memory cost ≤ {RSS_SPREAD}×.\n",
        r.memory_plan.0, r.memory_plan.1
    );
    let _ = writeln!(
        out,
        "| Alternative | Run | Cold start; today's | Ratio to hello-world (today's) | Cold-start cost | Warm p50 (today's) | \
         Peak RSS (today's) | Memory cost | `token` binary (today's) | Within the spread |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for c in &r.comparisons {
        let ratio = |label: &str| paired(label).map_or_else(|| "—".to_owned(), |p| format!("{:.2}×", p.median));
        let cold_cost = cost(&c.label, &c.reference);
        let rss_cost = rss_of(&c.label)
            .zip(rss_of(&c.reference))
            .zip(base_rss)
            .map(|((a, t), b)| (a as f64 - t as f64) / b as f64);
        let rss_text = |label: &str| rss_of(label).map_or_else(|| "—".to_owned(), mib);
        let warm_p50 = |label: &str| r.warm.get(label).and_then(|w| summarize(&w.latencies)).map(|s| s.p50);
        let warm_text = match (warm_p50(&c.label), warm_p50(&c.reference)) {
            (Some(alt), Some(today)) => format!(
                "{} ({}, {:.2}×)",
                us(alt),
                us(today),
                micros(alt) / micros(today).max(f64::MIN_POSITIVE)
            ),
            _ => "—".to_owned(),
        };
        let binary = match (r.variant_binaries.get(&c.variant), today_bin) {
            (Some(&alt), Some(today)) => format!(
                "{} ({}, {:+.0} KB)",
                mb(alt),
                mb(today),
                (alt as f64 - today as f64) / 1e3
            ),
            _ => "—".to_owned(),
        };
        let within = match (args.mode, cold_cost, rss_cost) {
            (Mode::Short, _, _) => "not judged (debug build)".to_owned(),
            (Mode::Full, Some(cold), Some(rss)) => {
                if cold.median <= COLD_SPREAD && rss <= RSS_SPREAD {
                    "yes".to_owned()
                } else {
                    "**no**".to_owned()
                }
            }
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {}; today's {} | {} ({}) | {} | {} | {} ({}) | {} | {} | {} |",
            c.variant,
            c.what,
            describe_cold(&c.label),
            describe_cold(&c.reference),
            ratio(&c.label),
            ratio(&c.reference),
            cold_cost.map_or_else(
                || "—".to_owned(),
                |p| format!(
                    "{:+.3}× ({:+.3} to {:+.3})",
                    p.median, p.lower_quartile, p.upper_quartile
                )
            ),
            warm_text,
            rss_text(&c.label),
            rss_text(&c.reference),
            rss_cost.map_or_else(|| "—".to_owned(), |x| format!("{x:+.3}×")),
            binary,
            within
        );
    }
    out
}
