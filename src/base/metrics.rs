//! CloudWatch metrics as Embedded Metric Format (EMF) log lines: on Lambda, a JSON line with an
//! `_aws` member written to stdout becomes a metric without any API call or extra permission.
//!
//! Namespace `TokenBroker`. Each metric is emitted per connection and once without dimensions,
//! so an alarm can watch all connections with one metric.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::base::clock::unix_millis;

pub const NAMESPACE: &str = "TokenBroker";

#[derive(Clone, Default)]
pub struct Metrics {
    sink: Sink,
}

#[derive(Clone, Default)]
enum Sink {
    /// Where Lambda picks them up.
    Stdout,
    /// For tests.
    Capture(Arc<Mutex<Vec<String>>>),
    /// Local mode: a terminal has no use for them.
    #[default]
    Off,
}

impl Metrics {
    pub fn stdout() -> Self {
        Self { sink: Sink::Stdout }
    }

    pub fn off() -> Self {
        Self { sink: Sink::Off }
    }

    /// Metrics kept in memory; the returned handle sees every line written.
    pub fn capture() -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            Self {
                sink: Sink::Capture(lines.clone()),
            },
            lines,
        )
    }

    /// A refresh attempt and how it ended: `refreshed`, `invalid_grant`, `provider_error`, ...
    pub fn refresh(&self, connection: &str, outcome: &str) {
        self.emit(
            &[&["Outcome"], &["Connection", "Outcome"]],
            &[("Connection", connection), ("Outcome", outcome)],
            &[("Refreshes", "Count", 1.0)],
        );
    }

    /// A connection found to need a person to log in again.
    pub fn reauthorization_required(&self, connection: &str) {
        self.emit(
            &[&[], &["Connection"]],
            &[("Connection", connection)],
            &[("ReauthorizationRequired", "Count", 1.0)],
        );
    }

    /// How long the connection can live unattended.
    pub fn refresh_token_seconds_left(&self, connection: &str, seconds: i64) {
        self.emit(
            &[&[], &["Connection"]],
            &[("Connection", connection)],
            &[("RefreshTokenSecondsLeft", "Seconds", seconds.max(0) as f64)],
        );
    }

    /// A completed login.
    pub fn authorized(&self, connection: &str, refresh_seconds_left: i64) {
        self.emit(
            &[&[], &["Connection"]],
            &[("Connection", connection)],
            &[
                ("Authorizations", "Count", 1.0),
                ("RefreshTokenSecondsLeft", "Seconds", refresh_seconds_left.max(0) as f64),
            ],
        );
    }

    /// A request refused for its key: `missing_key`, `unknown_key`, `key_in_url` or
    /// `insufficient_scope`. One alarm on the sum catches a burst of guessing.
    pub fn refused_key(&self, reason: &str) {
        self.emit(
            &[&[], &["Reason"]],
            &[("Reason", reason)],
            &[("RefusedKeys", "Count", 1.0)],
        );
    }

    /// A webhook delivery attempt that failed (`Outcome`: `retrying` or `dropped`, the latter
    /// when the event's last attempt failed).
    pub fn webhook_failed(&self, outcome: &str) {
        self.emit(
            &[&[], &["Outcome"]],
            &[("Outcome", outcome)],
            &[("WebhookDeliveryFailures", "Count", 1.0)],
        );
    }

    fn emit(&self, dimension_sets: &[&[&str]], properties: &[(&str, &str)], metrics: &[(&str, &str, f64)]) {
        if matches!(self.sink, Sink::Off) {
            return;
        }
        let line = emf_line(dimension_sets, properties, metrics).to_string();
        match &self.sink {
            Sink::Stdout => {
                use std::io::Write;
                // One write per line, so concurrent lines do not interleave.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            Sink::Capture(lines) => lines.lock().expect("metrics capture lock").push(line),
            Sink::Off => {}
        }
    }
}

fn emf_line(dimension_sets: &[&[&str]], properties: &[(&str, &str)], metrics: &[(&str, &str, f64)]) -> Value {
    let timestamp = unix_millis();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in properties {
        root.insert((*name).to_owned(), json!(value));
    }
    for (name, _, value) in metrics {
        root.insert((*name).to_owned(), json!(value));
    }
    Value::Object(root)
}
