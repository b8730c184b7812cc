//! Log output: one line per event, as text or, with `AWS_LAMBDA_LOG_FORMAT=JSON` (Lambda's
//! advanced logging controls), as one JSON object, each with the fields of the spans it happened
//! in (the Lambda runtime's span carries the request id).
//!
//! The level comes from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, but only as a bare level, and it is
//! capped: the Lambda runtime logs whole request and response payloads (codes, tokens) at TRACE,
//! so no setting may reach it.
//!
//! A subscriber of the broker's own rather than tracing-subscriber's: its span registry and
//! formatter cost every cold start about 15 page faults and 0.1 ms (a fifteenth of a hello-world
//! function's whole cold start, measured with `make bench`), and it formats the runtime span's
//! fields on every invocation, whether or not anything is logged. This one does only what the
//! broker needs: level caps, span fields, two line formats.

use std::{
    cell::RefCell,
    collections::HashMap,
    fmt::{self, Write as _},
    io::Write,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{Map, Value};
use tracing::{
    Event, Id, Level, Metadata, Subscriber,
    field::{Field, Visit},
    level_filters::LevelFilter,
    span::{Attributes, Record},
    subscriber::Interest,
};
use tracing_core::span::Current;

/// The most this crate logs; nothing of ours at DEBUG prints a secret, but TRACE is not offered.
const MAX_OWN: LevelFilter = LevelFilter::DEBUG;
/// The most dependencies log: their DEBUG and TRACE output includes raw payloads.
const MAX_DEPENDENCIES: LevelFilter = LevelFilter::INFO;
const OWN_TARGET: &str = env!("CARGO_CRATE_NAME");
/// The target of the audit trail's lines (`http::audit`), which are the broker's own.
pub const AUDIT_TARGET: &str = concat!(env!("CARGO_CRATE_NAME"), "::audit");

pub fn init() {
    init_with_writer(std::io::stdout());
}

/// Installs the logger, writing each line with one `write_all` to `writer`. A second call (tests,
/// local mode) keeps the first logger.
pub fn init_with_writer(writer: impl Write + Send + 'static) {
    let requested = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|level| level.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = tracing::subscriber::set_global_default(Logger::new(requested, json, Box::new(writer)));
}

struct Logger {
    own: LevelFilter,
    dependencies: LevelFilter,
    json: bool,
    writer: Mutex<Box<dyn Write + Send>>,
    spans: Mutex<HashMap<u64, SpanData>>,
    next_id: AtomicU64,
}

struct SpanData {
    metadata: &'static Metadata<'static>,
    fields: Fields,
    parent: Option<u64>,
    references: usize,
}

thread_local! {
    /// The spans entered on this thread, innermost last.
    static CURRENT: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

impl Logger {
    fn new(requested: LevelFilter, json: bool, writer: Box<dyn Write + Send>) -> Self {
        Self {
            own: requested.min(MAX_OWN),
            dependencies: requested.min(MAX_DEPENDENCIES),
            json,
            writer: Mutex::new(writer),
            spans: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    fn cap(&self, target: &str) -> LevelFilter {
        let own = target
            .strip_prefix(OWN_TARGET)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"));
        if own { self.own } else { self.dependencies }
    }

    /// The names and fields of `innermost` and the spans around it, outermost first.
    fn context(&self, innermost: Option<u64>) -> Vec<(&'static str, Fields)> {
        let spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let mut chain = Vec::new();
        let mut next = innermost;
        while let Some(span) = next.and_then(|id| spans.get(&id)) {
            chain.push((span.metadata.name(), span.fields.clone()));
            next = span.parent;
        }
        chain.reverse();
        chain
    }

    fn line(&self, level: &Level, fields: &Fields, context: &[(&'static str, Fields)]) -> String {
        let timestamp = utc_timestamp(SystemTime::now());
        if self.json {
            let mut object = Map::new();
            object.insert("timestamp".into(), Value::String(timestamp));
            object.insert("level".into(), Value::String(level.as_str().to_owned()));
            object.insert("fields".into(), fields.to_json(None));
            let spans: Vec<Value> = context.iter().map(|(name, f)| f.to_json(Some(name))).collect();
            if let Some(innermost) = spans.last() {
                object.insert("span".into(), innermost.clone());
            }
            if !spans.is_empty() {
                object.insert("spans".into(), Value::Array(spans));
            }
            let mut line = Value::Object(object).to_string();
            line.push('\n');
            return line;
        }
        let mut line = format!("{timestamp} {:>5} ", level.as_str());
        for (name, span_fields) in context {
            line.push_str(name);
            if !span_fields.0.is_empty() {
                let _ = write!(line, "{{{}}}", span_fields.to_text(false));
            }
            line.push(':');
        }
        if !context.is_empty() {
            line.push(' ');
        }
        line.push_str(&fields.to_text(true));
        line.push('\n');
        line
    }
}

impl Subscriber for Logger {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.enabled(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.cap(metadata.target())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.own.max(self.dependencies))
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let parent = parent_span(attributes.is_contextual(), attributes.parent());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = SpanData {
            metadata: attributes.metadata(),
            fields,
            parent,
            references: 1,
        };
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).insert(id, data);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(data) = self
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&span.into_u64())
        {
            values.record(&mut data.fields);
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let innermost = parent_span(event.is_contextual(), event.parent());
        let line = self.line(event.metadata().level(), &fields, &self.context(innermost));
        // A log line that cannot be written is lost; the request it describes goes on.
        let _ = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(line.as_bytes());
    }

    fn enter(&self, span: &Id) {
        CURRENT.with(|current| current.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            if let Some(at) = current.iter().rposition(|id| *id == span.into_u64()) {
                current.remove(at);
            }
        });
    }

    fn clone_span(&self, span: &Id) -> Id {
        if let Some(data) = self
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&span.into_u64())
        {
            data.references += 1;
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        let Some(data) = spans.get_mut(&span.into_u64()) else {
            return false;
        };
        data.references -= 1;
        if data.references > 0 {
            return false;
        }
        spans.remove(&span.into_u64());
        true
    }

    fn current_span(&self) -> Current {
        let Some(id) = current_span() else {
            return Current::none();
        };
        let spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        spans
            .get(&id)
            .map_or_else(Current::none, |data| Current::new(Id::from_u64(id), data.metadata))
    }
}

/// The span a new span or an event belongs to: the one entered on this thread, or the one it
/// names explicitly.
fn parent_span(contextual: bool, explicit: Option<&Id>) -> Option<u64> {
    if contextual {
        current_span()
    } else {
        explicit.map(Id::into_u64)
    }
}

fn current_span() -> Option<u64> {
    CURRENT.with(|current| current.borrow().last().copied())
}

/// An event's or a span's fields in the order they were recorded.
#[derive(Default, Clone)]
struct Fields(Vec<(&'static str, FieldValue)>);

#[derive(Clone)]
enum FieldValue {
    /// A string field: quoted in text lines.
    Text(String),
    /// A `Debug` or `Display` value (and the message), written as it formats.
    Shown(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Fields {
    fn push(&mut self, field: &Field, value: FieldValue) {
        self.0.push((field.name(), value));
    }

    /// `message k=v k=v`, or `k=v k=v` for a span (`with_message` false).
    fn to_text(&self, with_message: bool) -> String {
        let mut text = String::new();
        for (name, value) in &self.0 {
            if !text.is_empty() {
                text.push(' ');
            }
            if !(with_message && *name == "message") {
                let _ = write!(text, "{name}=");
            }
            let _ = match value {
                FieldValue::Text(s) => write!(text, "{s:?}"),
                FieldValue::Shown(s) => write!(text, "{s}"),
                FieldValue::Number(n) => write!(text, "{n}"),
                FieldValue::Bool(b) => write!(text, "{b}"),
            };
        }
        text
    }

    fn to_json(&self, span_name: Option<&str>) -> Value {
        let mut object = Map::new();
        for (name, value) in &self.0 {
            let value = match value {
                FieldValue::Text(s) | FieldValue::Shown(s) => Value::String(s.clone()),
                FieldValue::Number(n) => Value::Number(n.clone()),
                FieldValue::Bool(b) => Value::Bool(*b),
            };
            object.insert((*name).to_owned(), value);
        }
        if let Some(name) = span_name {
            object.insert("name".into(), Value::String(name.to_owned()));
        }
        Value::Object(object)
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, FieldValue::Shown(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        // The message is a format string's output, not a string field.
        let value = if field.name() == "message" {
            FieldValue::Shown(value.to_owned())
        } else {
            FieldValue::Text(value.to_owned())
        };
        self.push(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::Number(value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::Number(value.into()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| FieldValue::Shown(value.to_string()), FieldValue::Number);
        self.push(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-23T06:00:00.000000Z`.
fn utc_timestamp(at: SystemTime) -> String {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = crate::base::clock::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `log` writes with a logger at `requested`.
    fn logged(requested: LevelFilter, json: bool, log: impl FnOnce()) -> Vec<String> {
        let buffer = Buffer::default();
        let logger = Logger::new(requested, json, Box::new(buffer.clone()));
        tracing::subscriber::with_default(logger, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn trace_is_capped_for_everyone() {
        let lines = logged(LevelFilter::TRACE, false, || {
            tracing::debug!(target: "token_broker::refresh", "own-debug");
            tracing::trace!(target: "token_broker::refresh", "own-trace");
            tracing::info!(target: "lambda_runtime::runtime", "runtime-info");
            tracing::debug!(target: "lambda_runtime::runtime", "runtime-debug");
            tracing::trace!(target: "token_broker_lookalike", "lookalike-trace");
        });
        let text = lines.join("\n");
        assert!(text.contains("own-debug") && text.contains("runtime-info"), "{text}");
        assert!(!text.contains("own-trace") && !text.contains("runtime-debug"), "{text}");
        assert!(!text.contains("lookalike"), "{text}");

        let quiet = logged(LevelFilter::WARN, false, || {
            tracing::info!(target: "token_broker::refresh", "own-info");
            tracing::warn!(target: "token_broker::refresh", "own-warn");
        });
        assert_eq!(quiet.len(), 1);
        assert!(quiet[0].contains("own-warn"));
    }

    #[test]
    fn text_lines_carry_the_spans_fields_then_the_message_and_fields() {
        let lines = logged(LevelFilter::INFO, false, || {
            let span = tracing::info_span!("Lambda runtime invoke", requestId = "r-1", attempt = 2);
            let _entered = span.enter();
            let error = std::io::Error::other("boom");
            tracing::info!(connection = "lab-2", latency_ms = 51_u64, ok = true, %error, "refresh");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line.len(), "2026-11-23T06:00:00.000000Z".len() + line[27..].len());
        assert!(line[..27].ends_with('Z') && line.as_bytes()[10] == b'T', "{line}");
        assert_eq!(
            &line[27..],
            "  INFO Lambda runtime invoke{requestId=\"r-1\" attempt=2}: refresh connection=\"lab-2\" \
             latency_ms=51 ok=true error=boom"
        );
    }

    #[test]
    fn json_lines_are_one_object_with_fields_and_spans() {
        let lines = logged(LevelFilter::INFO, true, || {
            let outer = tracing::info_span!("Lambda runtime invoke", requestId = "r-1");
            let _outer = outer.enter();
            let inner = tracing::info_span!("route", route = "token");
            let _inner = inner.enter();
            tracing::warn!(connection = "default", seconds = 7_i64, "quote \" and newline \n");
        });
        assert_eq!(lines.len(), 1);
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["message"], "quote \" and newline \n");
        assert_eq!(line["fields"]["connection"], "default");
        assert_eq!(line["fields"]["seconds"], 7);
        assert_eq!(line["span"]["name"], "route");
        assert_eq!(line["spans"][0]["requestId"], "r-1");
        assert_eq!(line["spans"][1]["route"], "token");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn an_event_outside_any_span_has_no_context_and_closed_spans_are_forgotten() {
        let buffer = Buffer::default();
        let logger = Arc::new(Logger::new(LevelFilter::INFO, false, Box::new(buffer.clone())));
        tracing::subscriber::with_default(logger.clone(), || {
            let span = tracing::info_span!("invoke", requestId = "r-1");
            span.in_scope(|| tracing::info!("inside"));
            let copy = span.clone();
            drop(span);
            assert_eq!(logger.spans.lock().unwrap().len(), 1, "a clone keeps the span");
            drop(copy);
            tracing::info!("outside");
        });
        assert!(logger.spans.lock().unwrap().is_empty());
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with(" INFO invoke{requestId=\"r-1\"}: inside"), "{text}");
        assert!(lines[1].ends_with(" INFO outside"), "{text}");
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at =
            |seconds: u64, micros: u64| UNIX_EPOCH + std::time::Duration::from_micros(seconds * 1_000_000 + micros);
        assert_eq!(utc_timestamp(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(utc_timestamp(at(1_795_413_600, 360_138)), "2026-11-23T06:00:00.360138Z");
        assert_eq!(utc_timestamp(at(1_709_251_199, 999_999)), "2024-02-29T23:59:59.999999Z");
        assert_eq!(utc_timestamp(at(951_782_400, 0)), "2000-02-29T00:00:00.000000Z");
        assert_eq!(utc_timestamp(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000000Z");
        assert_eq!(utc_timestamp(at(253_402_300_799, 0)), "9999-12-31T23:59:59.000000Z");
    }
}
