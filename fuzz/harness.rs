//! What each fuzz target does with one input. Shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` (libFuzzer, `make fuzz`) and by `tests/fuzz_regressions.rs`, which runs
//! every file in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` through the same
//! functions on stable Rust in `make test`. Uses only token-broker's public API and lambda_http.
//!
//! A target fails by panicking: every function here must return normally for every input.

#![allow(dead_code)]

use std::{
    panic::{self, AssertUnwindSafe},
    sync::{Mutex, OnceLock},
};

use lambda_http::{
    Body, Request,
    http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header},
};
use token_broker::{
    base::api_keys::ApiKeys,
    base::presets::RefreshLifetime,
    base::record::{ConnectionRecord, Grant, Health, TokenSet},
    base::sealing::{self, Sealer},
    base::secret::Secret,
    http::error::BrokerError,
    http::request::{self, Query},
    http::routes::Route,
    oauth::provider::{self, Outage, ProviderError},
};

/// One target: what it does with an input.
pub type Check = fn(&[u8]);

/// Every target by name, as the directories under `fuzz/corpus/` and `fuzz/regressions/` are named.
pub const TARGETS: &[(&str, Check)] = &[
    ("request_parsing", request_parsing),
    ("api_gateway_event", api_gateway_event),
    ("provider_response", provider_response),
    ("stored_record", stored_record),
];

/// The API key the fuzzed requests are checked against.
const API_KEY: &str = "k";
/// A record-sealing key (32 bytes of 0x01) and a store key, for the sealed-record checks.
const SEALING_KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const STORE_KEY: &str = "token-broker:conn:default:tokens";
/// A fixed "now" for the token sets built from fuzzed provider answers (2026-11-23).
const NOW: i64 = 1_795_413_600;
const DEFAULT_REFRESH_TTL: i64 = 90 * 86400;
/// Mirrors the provider module's bound on lifetimes (ten years).
const MAX_LIFETIME_SECS: i64 = 10 * 365 * 86400;

// ---------------------------------------------------------------------------------------------
// request_parsing
// ---------------------------------------------------------------------------------------------

/// Builds a request from text shaped like an HTTP/1 request head and runs the broker's request
/// parsing on it:
///
/// ```text
/// METHOD\n
/// /path?query\n
/// Name: value\n        (any number of header lines)
/// \n
/// body (the rest, any bytes)
/// ```
///
/// A `\r` before each `\n` is dropped. Parts that `http` cannot hold (an invalid method, header
/// name or value) are replaced or skipped, as no Lambda event could carry them either; bytes a
/// URI cannot hold are percent-encoded, so arbitrary bytes still reach the query parser.
pub fn request_parsing(data: &[u8]) {
    check_request(&build_request(data));
}

pub fn build_request(data: &[u8]) -> Request {
    let (method, rest) = split_line(data);
    let method = Method::from_bytes(method).unwrap_or(Method::GET);
    let (uri, mut rest) = rest.map_or((&b"/"[..], None), split_line);
    let mut builder = lambda_http::http::Request::builder().method(method).uri(to_uri(uri));
    let mut body: &[u8] = &[];
    while let Some(remaining) = rest {
        let (line, after) = split_line(remaining);
        if line.is_empty() {
            body = after.unwrap_or_default();
            break;
        }
        rest = after;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii_start();
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            builder = builder.header(name, value);
        }
    }
    let body = if body.is_empty() {
        Body::Empty
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => Body::Text(text.to_owned()),
            Err(_) => Body::Binary(body.to_vec()),
        }
    };
    builder.body(body).expect("method, URI and headers were validated")
}

/// The first line (without a trailing `\r`) and what follows its `\n`, if there is one.
fn split_line(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    let (line, rest) = match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], Some(&data[end + 1..])),
        None => (data, None),
    };
    (line.strip_suffix(b"\r").unwrap_or(line), rest)
}

/// The line as a URI, with the bytes a URI cannot hold percent-encoded; `/` if even that fails.
fn to_uri(line: &[u8]) -> Uri {
    if let Ok(uri) = Uri::try_from(line) {
        return uri;
    }
    let mut encoded = String::with_capacity(line.len() * 3);
    for &byte in line {
        if byte.is_ascii_graphic()
            && !matches!(
                byte,
                b'#' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    if !encoded.starts_with('/') {
        encoded.insert(0, '/');
    }
    Uri::try_from(encoded).unwrap_or_else(|_| Uri::from_static("/"))
}

/// Everything the routes do with a request before they touch the store or the provider.
pub fn check_request(request: &Request) {
    let keys = ApiKeys::new(&[API_KEY], Vec::new());
    let json = request::prefers_json(request);
    let _ = Route::<token_broker::base::store::RedisStore>::from_path(request.uri().path());
    // Rendering an error page is the slow part of a run: render one of each kind.
    let mut refused = None;
    for allowed in ["GET", "POST", "GET, POST"] {
        refused = request::require_method(request, allowed).err().or(refused);
    }
    if let Some(error) = refused {
        render(error, json);
    }
    let has_key = request::has_key(request);
    let query = match Query::parse(request) {
        Ok(query) => {
            exercise(&query, json);
            query
        }
        Err(error) => {
            render(error, json);
            Query::default()
        }
    };
    if let Err(error) = request::connection(&query) {
        render(error, json);
    }
    match request::authenticate(request, &query, &keys) {
        Ok(_) => assert!(has_key, "authenticated without an API key header"),
        Err(error) => render(error, json),
    }
    match Query::parse_form(request) {
        Ok(form) => {
            exercise(&form, json);
            if let Some(submitted) = form.get("api_key") {
                let _ = keys.matches(submitted);
            }
        }
        Err(error) => render(error, json),
    }
}

/// Reads the parameters the routes read.
fn exercise(query: &Query, json: bool) {
    let mut missing = None;
    for name in [
        "code",
        "state",
        "error",
        "error_description",
        "min_ttl",
        "force",
        "api_key",
        "connection",
    ] {
        let _ = query.get(name);
        missing = query.require(name).err().or(missing);
    }
    if let Some(error) = missing {
        render(error, json);
    }
}

/// Turns an error into the response a client would get, both ways.
fn render(error: BrokerError, json: bool) {
    let reply = error.reply();
    assert!(
        reply.status.is_client_error() || reply.status.is_server_error(),
        "error reply with status {}",
        reply.status
    );
    let response = if json { error.into_json() } else { error.into_html() };
    assert_eq!(response.status(), reply.status);
    if let Some(seconds) = reply.retry_after {
        assert!(seconds >= 1, "Retry-After of {seconds}");
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}

// ---------------------------------------------------------------------------------------------
// api_gateway_event
// ---------------------------------------------------------------------------------------------

/// Set (to anything) to fuzz lambda_http's own event conversion, without the broker's
/// `sanitize` in front (see [`lambda_http_event`]): to find what `sanitize` must repair.
pub const STRICT_ENV: &str = "FUZZ_LAMBDA_HTTP_STRICT";

/// A raw API Gateway event taken the way a deployed function takes it: deserialized, repaired by
/// `token_broker::serve::lambda::sanitize`, turned into a request by lambda_http, then through
/// [`check_request`]. Nothing is contained: release builds abort on panic, so any panic here
/// would end a Lambda instance.
///
/// lambda_http 1.3 alone panics on some events (an unparsable `Host` header or path, or a
/// `rawQueryString` that is not a valid URI query); `sanitize` exists for those.
pub fn api_gateway_event(data: &[u8]) {
    static STRICT: OnceLock<bool> = OnceLock::new();
    if *STRICT.get_or_init(|| std::env::var_os(STRICT_ENV).is_some()) {
        lambda_http_event(data);
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(payload) = serde_json::from_str::<lambda_http::request::LambdaRequest>(text) else {
        return;
    };
    let event = lambda_http::LambdaEvent::new(payload, lambda_http::Context::default());
    let request: Request = token_broker::serve::lambda::sanitize(event).payload.into();
    check_request(&request);
}

/// Whether lambda_http itself panics on this event (`None` if the input is not UTF-8).
pub fn lambda_http_panics(data: &[u8]) -> Option<bool> {
    let text = std::str::from_utf8(data).ok()?;
    Some(contained(|| lambda_http::request::from_str(text)).is_none())
}

/// [`api_gateway_event`] with nothing contained: a panic in lambda_http crashes the target.
pub fn lambda_http_event(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = lambda_http::request::from_str(text) {
        check_request(&request);
    }
}

/// Runs `f`, turning a panic into `None` without printing it. libFuzzer's panic hook aborts the
/// process, so the hook is swapped out for the call; the lock keeps concurrent callers (the
/// test harness runs tests on several threads) from restoring each other's hooks.
fn contained<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: Mutex<()> = Mutex::new(());
    let _guard = HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    result.ok()
}

// ---------------------------------------------------------------------------------------------
// provider_response
// ---------------------------------------------------------------------------------------------

/// A token endpoint's answer: status 100..=599 from the first two bytes (the top bit of the
/// first byte adds a `Retry-After`), the rest is the body. The parser must never panic, and what
/// it accepts must satisfy the checks the rest of the broker relies on.
pub fn provider_response(data: &[u8]) {
    let [high, low, body @ ..] = data else {
        return;
    };
    let code = 100 + u16::from_be_bytes([high & 0x7f, *low]) % 500;
    let status = StatusCode::from_u16(code).expect("100..=599 is a valid status");
    let retry_after = (high & 0x80 != 0).then_some(u64::from(*low) * 97);
    match provider::parse_response(status, retry_after, body) {
        Ok(grant) => {
            assert!(status.is_success(), "a grant from HTTP {code}");
            assert!(!grant.access_token.expose().is_empty(), "empty access token");
            assert!(
                (1..=MAX_LIFETIME_SECS).contains(&grant.expires_in),
                "expires_in {}",
                grant.expires_in
            );
            if let Some(seconds) = grant.refresh_token_expires_in {
                assert!(
                    (1..=MAX_LIFETIME_SECS).contains(&seconds),
                    "refresh_token_expires_in {seconds}"
                );
            }
            if let Some(refresh_token) = &grant.refresh_token {
                assert!(!refresh_token.expose().is_empty(), "empty refresh token");
            }
            assert!(grant.token_type.chars().count() <= 32, "token_type too long");
            assert!(
                !grant.token_type.chars().any(char::is_control),
                "control character in token_type"
            );
            store_grant(grant);
        }
        Err(error) => {
            match &error {
                ProviderError::Unavailable {
                    outage,
                    retry_after: passed,
                } => {
                    assert!(code == 429 || code >= 500, "unavailable on HTTP {code}");
                    assert_eq!(*outage, Outage::Status(code));
                    assert_eq!(*passed, retry_after);
                }
                ProviderError::Refused {
                    status: refused,
                    error,
                    description,
                } => {
                    assert!(
                        !status.is_success() && code != 429 && code < 500,
                        "refused on HTTP {code}"
                    );
                    assert_eq!(*refused, code);
                    assert!(error.chars().count() <= 64 && !error.chars().any(char::is_control));
                    if let Some(description) = description {
                        assert!(description.chars().count() <= 256 && !description.chars().any(char::is_control));
                    }
                }
                ProviderError::Malformed { status: malformed, .. } => {
                    assert!(code != 429 && code < 500, "malformed on HTTP {code}");
                    assert_eq!(*malformed, code);
                }
            }
            render(BrokerError::from(error), true);
        }
    }
}

/// What the callback and refresh paths do with a grant: build the token set and store it.
fn store_grant(grant: Grant) {
    let refreshed_from = TokenSet {
        access_token: Secret::new("old-access"),
        refresh_token: Secret::new("old-refresh"),
        token_type: "Bearer".to_owned(),
        scope: Some("old".to_owned()),
        access_expires_at: NOW - 60,
        refresh_expires_at: NOW + DEFAULT_REFRESH_TTL,
        issued_at: NOW - 1800,
    };
    let refreshed = refreshed_from.refreshed(grant.clone(), NOW, RefreshLifetime::Fixed(DEFAULT_REFRESH_TTL));
    assert!(refreshed.access_valid_for(NOW) >= 1 && refreshed.refresh_valid_for(NOW) >= 1);
    check_round_trip(&ConnectionRecord::Active(refreshed));
    if let Ok(tokens) = TokenSet::from_authorization(grant, NOW, RefreshLifetime::Sliding(DEFAULT_REFRESH_TTL)) {
        assert!(tokens.access_lifetime() >= 1);
        check_round_trip(&ConnectionRecord::Active(tokens));
    }
}

// ---------------------------------------------------------------------------------------------
// stored_record
// ---------------------------------------------------------------------------------------------

/// Bytes read back from the store. Decoding must never panic, and whatever decodes must encode
/// and decode to the same record.
///
/// The same bytes are also read the way a store with encryption at rest reads them (opened, then
/// decoded), and the way `/verify` without the key reads them (the clear part, as a health):
/// that must not panic either, and every record must survive sealing and opening.
pub fn stored_record(data: &[u8]) {
    match sealing::clear_part(data) {
        Ok(Some(clear)) => match Health::decode(clear) {
            Ok(health) => assert_eq!(
                Health::decode(&health.encode()).ok(),
                Some(health),
                "a health changed in a round trip"
            ),
            Err(error) => render(BrokerError::from(error), true),
        },
        Ok(None) => {}
        Err(error) => render(BrokerError::from(error), true),
    }
    match ConnectionRecord::decode(data) {
        Ok(record) => check_round_trip(&record),
        Err(error) => render(BrokerError::from(error), true),
    }
    let plain = Sealer::new(&[]);
    let sealer = sealing_sealer();
    for sealer in [&plain, sealer] {
        match sealer.open(STORE_KEY, data.to_vec()) {
            Ok(opened) => match ConnectionRecord::decode(&opened) {
                Ok(record) => check_round_trip(&record),
                Err(error) => render(BrokerError::from(error), true),
            },
            Err(error) => render(BrokerError::from(error), true),
        }
    }
}

fn sealing_sealer() -> &'static Sealer {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    SEALER.get_or_init(|| Sealer::new(&[sealing::parse_key(SEALING_KEY).expect("a valid sealing key")]))
}

fn check_round_trip(record: &ConnectionRecord) {
    let encoded = record.encode();
    let decoded = ConnectionRecord::decode(&encoded)
        .unwrap_or_else(|error| panic!("an encoded record does not decode: {error}: {record:?}"));
    assert_eq!(&decoded, record, "a record changed in an encode/decode round trip");
    assert_eq!(decoded.encode(), encoded, "encoding is not stable");
    let sealer = sealing_sealer();
    let health = record.health().encode();
    let sealed = sealer
        .seal(STORE_KEY, &health, encoded.clone())
        .expect("a record seals");
    assert_eq!(
        sealing::clear_part(&sealed).ok().flatten(),
        Some(&health[..]),
        "the clear part is not the health"
    );
    let opened = sealer.open(STORE_KEY, sealed).expect("a sealed record opens");
    assert_eq!(opened, encoded, "sealing changed a record");
}
