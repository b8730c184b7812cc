//! The alternative measured by `make bench BENCH_VARIANTS=tracing-subscriber`: the broker's
//! `logging.rs` interface (`init`, `init_with_writer`) on tracing-subscriber's registry and
//! formatter, with the same level caps and its own text and JSON lines. `scripts/bench.sh`
//! swaps it in for the module file of the same name in a copy of the crate.

use std::{io::Write, sync::Mutex};

use tracing::{Metadata, Subscriber, level_filters::LevelFilter};
use tracing_subscriber::{filter::FilterFn, fmt, layer::SubscriberExt};

/// The most this crate logs; TRACE is not offered.
const MAX_OWN: LevelFilter = LevelFilter::DEBUG;
/// The most dependencies log: their DEBUG and TRACE output includes raw payloads.
const MAX_DEPENDENCIES: LevelFilter = LevelFilter::INFO;
const OWN_TARGET: &str = env!("CARGO_CRATE_NAME");

pub fn init() {
    init_with_writer(std::io::stdout());
}

/// Installs the logger, writing each line with one `write_all` to `writer`. A second call keeps
/// the first logger.
pub fn init_with_writer(writer: impl Write + Send + 'static) {
    let requested = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|level| level.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = tracing::subscriber::set_global_default(subscriber(requested, json, Box::new(writer)));
}

/// tracing-subscriber's registry with the level caps and one formatting layer.
fn subscriber(requested: LevelFilter, json: bool, writer: Box<dyn Write + Send>) -> Box<dyn Subscriber + Send + Sync> {
    let own = requested.min(MAX_OWN);
    let dependencies = requested.min(MAX_DEPENDENCIES);
    let filter = FilterFn::new(move |metadata: &Metadata<'_>| {
        let is_own = metadata
            .target()
            .strip_prefix(OWN_TARGET)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        *metadata.level() <= if is_own { own } else { dependencies }
    })
    .with_max_level_hint(own.max(dependencies));
    let writer = Mutex::new(writer);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        Box::new(registry.with(fmt::layer().json().with_writer(writer).with_target(false)))
    } else {
        Box::new(registry.with(fmt::layer().with_writer(writer).with_target(false)))
    }
}
