//! Log set-up. The level comes from `AWS_LAMBDA_LOG_LEVEL` (set by Lambda's advanced logging
//! controls) or `RUST_LOG`, but only as a bare level, and it is capped: the Lambda runtime logs
//! whole request and response payloads (codes, tokens) at TRACE, so no setting may reach it.

use lambda_http::tracing::subscriber::{
    self,
    filter::{EnvFilter, LevelFilter},
    fmt::MakeWriter,
};

/// The most this crate logs; nothing of ours at DEBUG prints a secret, but TRACE is not offered.
const MAX_OWN: LevelFilter = LevelFilter::DEBUG;
/// The most dependencies log: their DEBUG and TRACE output includes raw payloads.
const MAX_DEPENDENCIES: LevelFilter = LevelFilter::INFO;

pub fn init() {
    init_with_writer(std::io::stdout);
}

pub fn init_with_writer<W>(writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let requested = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|level| level.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder().parse_lossy(filter_directives(requested));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = subscriber::fmt()
        .with_target(false)
        .with_env_filter(filter)
        .with_writer(writer);
    // try_init: a second initialization (tests, local mode) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn filter_directives(requested: LevelFilter) -> String {
    format!(
        "{},token_broker={}",
        requested.min(MAX_DEPENDENCIES),
        requested.min(MAX_OWN)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_is_capped_for_everyone() {
        assert_eq!(filter_directives(LevelFilter::TRACE), "info,token_broker=debug");
        assert_eq!(filter_directives(LevelFilter::WARN), "warn,token_broker=warn");
    }
}
