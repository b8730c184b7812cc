//! Webhooks: events about connections, for the teams that want to hear of them in their own
//! tools. A function that raises an event only writes it to an outbox in the store (one write,
//! on the rare paths that raise one), so no delivery ever slows or fails the request that raised
//! it; keep-alive delivers what waits there, retrying with backoff across its passes.
//!
//! A delivery is signed as Standard Webhooks signs it: headers `webhook-id` (the same for every
//! attempt, so a receiver can drop duplicates), `webhook-timestamp` (the attempt's, Unix seconds)
//! and `webhook-signature`: `v1,` and the base64 HMAC-SHA256, under `WEBHOOK_SECRET`, of
//! `{id}.{timestamp}.{body}`. An event names a connection and carries times, scope and reasons;
//! never a token.
//!
//! The outbox holds the index of the URL, not the URL, and is sealed like every record when
//! encryption is on: a planted entry cannot make the broker sign a body of someone else's choosing
//! or send it elsewhere.

use std::{sync::OnceLock, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use reqwest::{Client, StatusCode};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    base::{
        secret::{Secret, random_urlsafe},
        store::{Expect, Store, ttl},
        tls,
    },
    oauth::app::App,
};

/// What happened to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A login (or an import) stored a grant.
    Created,
    /// `/revoke` ended it.
    Revoked,
    /// The provider refused the refresh token: a person must log in again.
    ReauthorizationRequired,
    /// Its refresh token lapses within `WEBHOOK_LAPSE_DAYS` and keep-alive cannot renew it.
    Lapsing,
    /// Refreshes have failed transiently (the provider unreachable or refusing for a reason
    /// other than the grant) for `WEBHOOK_FAILING_MINUTES`.
    Failing,
    /// A refresh succeeded after `Failing` was raised.
    Recovered,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "connection.created",
            Self::Revoked => "connection.revoked",
            Self::ReauthorizationRequired => "connection.reauthorization_required",
            Self::Lapsing => "connection.lapsing",
            Self::Failing => "connection.failing",
            Self::Recovered => "connection.recovered",
        }
    }
}

/// How long an undelivered event is kept: past the last attempt of [`BACKOFF`].
const OUTBOX_LIFETIME: i64 = 3 * 86_400;
/// Seconds after a failed attempt until the next; keep-alive tries whatever is due when it runs,
/// so on an hourly schedule the short ones round up to the next pass.
const BACKOFF: [i64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 86_400];
/// One attempt's limit: a receiver that hangs costs keep-alive this, once per pass (a URL that
/// failed is not tried again in the same pass).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// What a pass spends on deliveries at most, well inside the keepalive function's 300 s: an
/// event taken from the queue must be put back before Lambda ends the invocation.
const PASS_BUDGET: Duration = Duration::from_secs(120);

/// One event waiting for delivery to one URL.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    id: String,
    /// Index into `WEBHOOK_URLS`.
    url: usize,
    body: String,
    attempts: usize,
    next_attempt_at: i64,
}

/// Raises `kind` for `connection`, with `data` beside the connection's name. Returns at once if
/// no webhook is configured; a store failure is logged and never reaches the caller.
pub async fn raise<S: Store>(app: &App<S>, kind: Kind, connection: &str, data: Value) {
    if app.config.webhook_urls.is_empty() {
        return;
    }
    match random_urlsafe(16) {
        Ok(id) => enqueue(app, kind, &format!("evt_{id}"), connection, data).await,
        Err(error) => tracing::warn!(%error, kind = kind.as_str(), "webhook event not raised"),
    }
}

/// [`raise`] once for `id`: a second raise of the same id before `until` changes nothing.
pub async fn raise_once<S: Store>(app: &App<S>, kind: Kind, id: &str, until: i64, connection: &str, data: Value) {
    if app.config.webhook_urls.is_empty() {
        return;
    }
    let mark = app.keys.webhook_raised(id);
    let lives = ttl(until - app.clock.now());
    // Two passes racing here both write the same outbox entries, under the same id: a receiver
    // that drops duplicates by `webhook-id` sees the event once.
    let raised = match app.store.load(&mark).await {
        Ok(Some(_)) => return,
        Ok(None) => app.store.write(&mark, Expect::Any, b"1", lives).await,
        Err(error) => Err(error),
    };
    match raised {
        Ok(_) => enqueue(app, kind, id, connection, data).await,
        Err(error) => tracing::warn!(%error, kind = kind.as_str(), "webhook event not raised"),
    }
}

async fn enqueue<S: Store>(app: &App<S>, kind: Kind, id: &str, connection: &str, data: Value) {
    let now = app.clock.now();
    let mut event = json!({"connection": connection});
    if let (Some(event), Value::Object(data)) = (event.as_object_mut(), data) {
        event.extend(data);
    }
    let body = json!({"type": kind.as_str(), "id": id, "occurred_at": now, "data": event}).to_string();
    for url in 0..app.config.webhook_urls.len() {
        let key = app.keys.webhook(&format!("{id}-{url}"));
        let pending = Pending {
            id: id.to_owned(),
            url,
            body: body.clone(),
            attempts: 0,
            next_attempt_at: now,
        };
        let written = match app
            .sealer
            .seal(&key, b"", serde_json::to_vec(&pending).expect("an event serializes"))
        {
            Ok(sealed) => app
                .store
                .write(&key, Expect::Any, &sealed, ttl(OUTBOX_LIFETIME))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match written {
            Ok(()) => tracing::info!(kind = kind.as_str(), id, connection, "webhook event raised"),
            Err(error) => tracing::warn!(error, kind = kind.as_str(), connection, "webhook event not raised"),
        }
    }
}

/// Since when a connection's refreshes have been failing, and how the last one failed.
#[derive(Debug, Serialize, Deserialize)]
struct Failing {
    since: i64,
    error: String,
}

/// How long a failure mark is kept: no refresh is retried later than this.
const FAILING_MARK_LIFETIME: i64 = 30 * 86_400;

/// The id of a once-only event, the same every time it is derived from the same `what` of the
/// same connection (for [`raise_once`]), with no `.` in it as Standard Webhooks asks: connection
/// names may hold one.
pub fn once_id(kind: &str, connection: &str, what: i64) -> String {
    let named = ring::digest::digest(&ring::digest::SHA256, format!("{connection}\n{what}").as_bytes());
    format!(
        "evt_{kind}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&named.as_ref()[..16])
    )
}

/// The id of the `connection.failing` event of a spell of failures: one per connection and spell.
fn failing_id(connection: &str, since: i64) -> String {
    once_id("failing", connection, since)
}

/// A refresh failed transiently: the first failure of a spell is remembered (a store write, on
/// the failure path only), and once the spell has lasted `WEBHOOK_FAILING_MINUTES`,
/// `connection.failing` is raised, once.
pub async fn refresh_failed<S: Store>(app: &App<S>, connection: &str, error: &str) {
    if app.config.webhook_urls.is_empty() {
        return;
    }
    let key = app.keys.webhook_failing(connection);
    let now = app.clock.now();
    let spell = match app.store.load(&key).await {
        Ok(Some(stored)) => serde_json::from_slice::<Failing>(&stored.data).ok(),
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, connection, "the refresh failure could not be remembered");
            return;
        }
    };
    let Some(spell) = spell else {
        let first = Failing {
            since: now,
            error: error.to_owned(),
        };
        let data = serde_json::to_vec(&first).expect("a failure serializes");
        if let Err(error) = app
            .store
            .write(&key, Expect::Any, &data, ttl(FAILING_MARK_LIFETIME))
            .await
        {
            tracing::warn!(%error, connection, "the refresh failure could not be remembered");
        }
        return;
    };
    if now - spell.since < app.config.webhook_failing_after.as_secs() as i64 {
        return;
    }
    let data = json!({"failing_since": spell.since, "error": error});
    let id = failing_id(connection, spell.since);
    raise_once(app, Kind::Failing, &id, now + FAILING_MARK_LIFETIME, connection, data).await;
}

/// A refresh succeeded: a spell of failures is over, and `connection.recovered` is raised if it
/// had been announced as failing.
pub async fn refresh_succeeded<S: Store>(app: &App<S>, connection: &str) {
    if app.config.webhook_urls.is_empty() {
        return;
    }
    let key = app.keys.webhook_failing(connection);
    let Ok(Some(stored)) = app.store.take(&key).await else {
        return;
    };
    let Ok(spell) = serde_json::from_slice::<Failing>(&stored.data) else {
        return;
    };
    let announced = app.keys.webhook_raised(&failing_id(connection, spell.since));
    if matches!(app.store.take(&announced).await, Ok(Some(_))) {
        let now = app.clock.now();
        let data = json!({"failing_since": spell.since, "failed_for": now - spell.since});
        raise(app, Kind::Recovered, connection, data).await;
    }
}

/// What one pass of [`deliver`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Deliveries {
    pub delivered: usize,
    pub retrying: usize,
    pub dropped: usize,
}

/// Delivers every event that is due, each to its URL: keep-alive's job.
pub async fn deliver<S: Store>(app: &App<S>) -> Deliveries {
    let mut done = Deliveries::default();
    let Some(secret) = &app.config.webhook_secret else {
        return done;
    };
    let signing = signing_key(secret);
    let keys = match app.store.keys(&app.keys.webhooks()).await {
        Ok(keys) => keys,
        Err(error) => {
            tracing::warn!(%error, "webhook events could not be listed; the next pass tries again");
            return done;
        }
    };
    let started = std::time::Instant::now();
    let mut failed_urls = Vec::new();
    for key in keys {
        if started.elapsed() > PASS_BUDGET {
            tracing::warn!("webhook deliveries stopped for this pass; the rest wait for the next");
            break;
        }
        let now = app.clock.now();
        let Ok(Some(stored)) = app.store.load(&key).await else {
            continue;
        };
        let pending = app
            .sealer
            .open(&key, stored.data)
            .ok()
            .and_then(|plain| serde_json::from_slice::<Pending>(&plain).ok())
            .filter(|pending| pending.url < app.config.webhook_urls.len());
        let Some(mut pending) = pending else {
            tracing::warn!(key, "an unreadable webhook event was dropped");
            let _ = app.store.delete(&key).await;
            done.dropped += 1;
            continue;
        };
        if pending.next_attempt_at > now || failed_urls.contains(&pending.url) {
            continue;
        }
        // Only the pass that takes it delivers it: two passes at once send it once.
        if !matches!(app.store.take(&key).await, Ok(Some(_))) {
            continue;
        }
        let url = &app.config.webhook_urls[pending.url];
        match attempt(&signing, url, &pending, now).await {
            Ok(()) => {
                tracing::info!(id = pending.id, url = pending.url, "webhook delivered");
                done.delivered += 1;
            }
            Err(why) => {
                failed_urls.push(pending.url);
                pending.attempts += 1;
                let Some(pause) = BACKOFF.get(pending.attempts - 1) else {
                    tracing::error!(
                        id = pending.id,
                        url = pending.url,
                        why,
                        "webhook dropped after its last attempt"
                    );
                    app.metrics.webhook_failed("dropped");
                    done.dropped += 1;
                    continue;
                };
                tracing::warn!(
                    id = pending.id,
                    url = pending.url,
                    why,
                    retry_in_s = pause,
                    "webhook delivery failed"
                );
                app.metrics.webhook_failed("retrying");
                pending.next_attempt_at = now + pause;
                let kept = app
                    .sealer
                    .seal(&key, b"", serde_json::to_vec(&pending).expect("an event serializes"));
                if let Ok(sealed) = kept {
                    let _ = app.store.write(&key, Expect::Any, &sealed, ttl(OUTBOX_LIFETIME)).await;
                }
                done.retrying += 1;
            }
        }
    }
    done
}

/// The `webhook-signature` value for one attempt.
pub fn signature(secret: &Secret, id: &str, timestamp: i64, body: &str) -> String {
    sign(&signing_key(secret), id, timestamp, body)
}

/// The HMAC key of `WEBHOOK_SECRET`, which config holds as base64 of its bytes.
fn signing_key(secret: &Secret) -> hmac::Key {
    let key_bytes = STANDARD.decode(secret.expose()).unwrap_or_default();
    hmac::Key::new(hmac::HMAC_SHA256, &key_bytes)
}

fn sign(key: &hmac::Key, id: &str, timestamp: i64, body: &str) -> String {
    let tag = hmac::sign(key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(tag.as_ref()))
}

/// One POST. 2xx is delivered, and so is 410 Gone (the receiver wants no more); anything else,
/// a redirect included, is a failure to retry.
async fn attempt(key: &hmac::Key, url: &str, pending: &Pending, now: i64) -> Result<(), String> {
    let client = client().ok_or("the HTTP client could not be built")?;
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &pending.id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sign(key, &pending.id, now, &pending.body))
        .body(pending.body.clone())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "timed out".to_owned()
            } else {
                "unreachable".to_owned()
            }
        })?;
    match answer.status() {
        status if status.is_success() || status == StatusCode::GONE => Ok(()),
        status => Err(format!("answered {}", status.as_u16())),
    }
}

fn client() -> Option<&'static Client> {
    static CLIENT: OnceLock<Option<Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let tls = tls::client_config().ok()?;
            Client::builder()
                .tls_backend_preconfigured(tls)
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(5))
                .timeout(ATTEMPT_TIMEOUT)
                .user_agent(concat!("token-broker/", env!("CARGO_PKG_VERSION")))
                .build()
                .ok()
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_standard_webhooks_v1() {
        // Python's hmac module over "msg_1.1674087231.{}" with the 24 bytes 0x01..=0x18 as key.
        let key: Vec<u8> = (1..=24).collect();
        let secret = Secret::new(STANDARD.encode(&key));
        let signed = signature(&secret, "msg_1", 1_674_087_231, "{}");
        assert_eq!(signed, "v1,Nd/t33qv148rDhNeatGe20SmAdUeIe1fFwmPL4uK6IQ=");
        assert_ne!(signed, signature(&secret, "msg_2", 1_674_087_231, "{}"));
        assert_ne!(signed, signature(&secret, "msg_1", 1_674_087_232, "{}"));
    }

    #[test]
    fn event_types_follow_the_dotted_convention() {
        for kind in [
            Kind::Created,
            Kind::Revoked,
            Kind::ReauthorizationRequired,
            Kind::Lapsing,
            Kind::Failing,
            Kind::Recovered,
        ] {
            let name = kind.as_str();
            assert!(name.starts_with("connection."));
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{name}"
            );
        }
    }
}
