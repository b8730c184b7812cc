//! Getting a usable access token: serve the stored one while it is fresh, otherwise refresh it,
//! with at most one refresh in flight per connection across every instance.
//!
//! The coordination goes through the store because instances share nothing else: a lock with
//! an owner and an expiry decides who refreshes, and the write of the new pair is conditional on
//! the generation it replaces, so a slow instance can never put back an older pair.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::{
    base::{
        logging::AUDIT_TARGET,
        record::{ConnectionRecord, TokenSet},
        secret::random_urlsafe,
        store::{Expect, Held, Lock, Store, StoreError, Ttl, ttl},
    },
    oauth::{app::App, error::FlowError, provider::ProviderError, webhooks},
};

/// How often a caller waiting for another's refresh looks at the store again.
const POLL: Duration = Duration::from_millis(50);

/// The pauses between attempts to store a refreshed pair while the store is unavailable. By then
/// the provider may have rotated the refresh token (Digi-Key does on every refresh): the pair in
/// hand can be the only valid one left, worth two seconds of a failover or a dropped connection.
const STORE_RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1500),
];

/// Returns an access token valid for more than `min_valid(stored pair)` seconds if one can be
/// had; after a refresh the new token is returned even if the provider's lifetime is shorter
/// than asked.
pub async fn access_token<S: Store>(
    app: &App<S>,
    connection: &str,
    min_valid: impl Fn(&TokenSet) -> i64,
) -> Result<TokenSet, FlowError> {
    let key = app.keys.tokens(connection);
    let lock_key = app.keys.refresh_lock(connection);
    // Drawn only once a refresh is due: the common case, a fresh token, needs no lock.
    let mut lock_owner: Option<String> = None;
    let deadline = Instant::now() + app.config.refresh_wait;
    let mut first_seen = None;
    loop {
        let (generation, tokens) = load_active(app, &key).await?;
        let now = app.clock.now();
        let seen = *first_seen.get_or_insert(generation);
        // A pair written while we waited is the freshest there is: serve it rather than refresh
        // again because the provider's lifetime is shorter than the caller asked for.
        if tokens.access_valid_for(now) > min_valid(&tokens) || (generation != seen && tokens.access_valid_for(now) > 0)
        {
            return Ok(tokens);
        }
        if tokens.refresh_valid_for(now) <= 0 {
            return Err(FlowError::ReauthorizationRequired {
                reason: "the refresh token has expired".to_owned(),
            });
        }
        if lock_owner.is_none() {
            lock_owner = Some(random_urlsafe(16)?);
        }
        let owner = lock_owner.as_deref().unwrap_or_default();
        let lock = Held { key: &lock_key, owner };
        // One round trip: the lock, taken only if no pair was written since our read.
        match app.store.lock_if_current(lock, lock_ttl(app), &key, generation).await? {
            Lock::Changed => continue,
            Lock::Held => {}
            Lock::Taken => {
                let hold = Hold {
                    lock,
                    released: AtomicBool::new(false),
                };
                let outcome = refresh_locked(app, connection, &key, generation, &tokens, &hold).await;
                // The write of the outcome releases the lock in the same round trip; every other
                // way out releases it here.
                if !hold.released.load(Ordering::Relaxed)
                    && let Err(error) = app.store.unlock(&lock_key, owner).await
                {
                    // The lock expires on its own; waiting callers lose at most its lifetime.
                    tracing::warn!(%error, connection, "could not release the refresh lock");
                }
                if let Some(tokens) = outcome? {
                    return Ok(tokens);
                }
            }
        }
        if Instant::now() >= deadline {
            // Still valid, only inside the skew window: better than an error.
            if tokens.access_valid_for(now) > 0 {
                return Ok(tokens);
            }
            return Err(FlowError::RefreshBusy);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Rewrites a record that is not sealed as a write now would seal it (an earlier layout, or a
/// key no longer the current one) without changing what it holds. It takes the refresh lock, so
/// it can neither undo nor be undone by a refresh in flight. `false`: someone else held the lock
/// or wrote first, and their write is sealed as it should be anyway.
pub async fn reseal<S: Store>(
    app: &App<S>,
    connection: &str,
    generation: u64,
    record: &ConnectionRecord,
) -> Result<bool, FlowError> {
    let key = app.keys.tokens(connection);
    let lock_key = app.keys.refresh_lock(connection);
    let data = app.seal_record(&key, record)?;
    let lives = match record {
        ConnectionRecord::Active(tokens) => ttl(tokens.refresh_valid_for(app.clock.now())),
        ConnectionRecord::ReauthorizationRequired { .. } => None,
    };
    let owner = random_urlsafe(16)?;
    let lock = Held {
        key: &lock_key,
        owner: &owner,
    };
    if app.store.lock_if_current(lock, lock_ttl(app), &key, generation).await? != Lock::Taken {
        return Ok(false);
    }
    match app
        .store
        .write_unlocking(&key, Expect::Generation(generation), &data, lives, lock)
        .await
    {
        Ok(written) => Ok(written.is_some()),
        Err(error) => {
            // Nobody retries a rewrite: waiting refreshes should not wait out the lock.
            let _ = app.store.unlock(&lock_key, &owner).await;
            Err(error.into())
        }
    }
}

/// The refresh lock while a caller holds it, and whether a write has released it yet.
struct Hold<'a> {
    lock: Held<'a>,
    released: AtomicBool,
}

/// The stored pair, or why there is none.
pub async fn load_active<S: Store>(app: &App<S>, key: &str) -> Result<(u64, TokenSet), FlowError> {
    let Some(stored) = app.store.load(key).await? else {
        return Err(FlowError::ReauthorizationRequired {
            reason: "no tokens are stored yet".to_owned(),
        });
    };
    match app.open_record(key, stored.data)? {
        ConnectionRecord::Active(tokens) => Ok((stored.generation, tokens)),
        ConnectionRecord::ReauthorizationRequired { reason, .. } => Err(FlowError::ReauthorizationRequired { reason }),
    }
}

/// How a refresh attempt ended; each is logged and counted (metric `Refreshes` by `Outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Refreshed,
    /// Stored over a re-authorization mark left by a concurrent refresh that lost the race.
    RefreshedOverMark,
    /// Refreshed, but a newer pair was stored first; this caller got ours, the store kept theirs.
    LostWrite,
    /// `invalid_grant` for a refresh token another caller had already rotated.
    StaleRefreshToken,
    InvalidGrant,
    ProviderError,
    /// Refreshed, but the store did not take the pair (unavailable through every retry, or an
    /// unexpected answer): if the provider rotated the refresh token, the connection needs a new
    /// login.
    NotStored,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Refreshed => "refreshed",
            Self::RefreshedOverMark => "refreshed_over_mark",
            Self::LostWrite => "lost_write",
            Self::StaleRefreshToken => "stale_refresh_token",
            Self::InvalidGrant => "invalid_grant",
            Self::ProviderError => "provider_error",
            Self::NotStored => "not_stored",
        }
    }
}

/// One refresh attempt: what its log lines and metrics have in common.
struct Attempt<'a, S> {
    app: &'a App<S>,
    connection: &'a str,
    key: &'a str,
    generation: u64,
    hold: &'a Hold<'a>,
    started: Instant,
}

impl<S> Attempt<'_, S> {
    /// Logs the outcome (never a token: only the connection, latency and generation) and counts it.
    fn report(&self, outcome: Outcome, generation: u64, cause: Option<&dyn std::fmt::Display>) {
        let latency_ms = self.started.elapsed().as_millis() as u64;
        let connection = self.connection;
        let outcome_name = outcome.as_str();
        let cause = cause.map(ToString::to_string).unwrap_or_default();
        match outcome {
            Outcome::Refreshed | Outcome::StaleRefreshToken => {
                tracing::info!(connection, outcome = outcome_name, latency_ms, generation, "refresh")
            }
            Outcome::LostWrite => {
                tracing::error!(
                    connection,
                    outcome = outcome_name,
                    latency_ms,
                    generation,
                    "refresh: pair not stored, a newer write came first"
                )
            }
            Outcome::NotStored => {
                tracing::error!(
                    connection,
                    outcome = outcome_name,
                    latency_ms,
                    generation,
                    cause,
                    "refresh: the new pair could not be stored; if the provider rotated the refresh \
                     token, the connection needs a new login"
                )
            }
            _ => tracing::warn!(
                connection,
                outcome = outcome_name,
                latency_ms,
                generation,
                cause,
                "refresh"
            ),
        }
        // The audit trail's refresh line; the caller's line follows from the route.
        tracing::info!(target: AUDIT_TARGET, audit = "refresh", connection, outcome = outcome_name, "audit");
        self.app.metrics.refresh(connection, outcome_name);
        if outcome == Outcome::InvalidGrant {
            self.app.metrics.reauthorization_required(connection);
        }
    }
}

/// Refreshes while holding the lock, which the store's write of the outcome releases.
/// `Ok(None)`: the stored pair changed under us; look again.
async fn refresh_locked<S: Store>(
    app: &App<S>,
    connection: &str,
    key: &str,
    generation: u64,
    tokens: &TokenSet,
    hold: &Hold<'_>,
) -> Result<Option<TokenSet>, FlowError> {
    let attempt = Attempt {
        app,
        connection,
        key,
        generation,
        hold,
        started: Instant::now(),
    };
    let result = app.provider.refresh(&tokens.refresh_token).await;
    let now = app.clock.now();
    match result {
        Ok(grant) => {
            let next = tokens.refreshed(grant, now, app.config.refresh_lifetime);
            store_refreshed(&attempt, &next).await?;
            webhooks::refresh_succeeded(app, connection).await;
            app.metrics
                .refresh_token_seconds_left(connection, next.refresh_valid_for(now));
            Ok(Some(next))
        }
        Err(error) if error.is_invalid_grant() => {
            // Another instance may have rotated the refresh token after our read: its pair is
            // stored and valid, and ours was merely stale.
            if current_generation(app, key).await? != Some(generation) {
                attempt.report(Outcome::StaleRefreshToken, generation, None);
                return Ok(None);
            }
            let reason = match &error {
                ProviderError::Refused {
                    description: Some(description),
                    ..
                } => format!("the provider rejected the refresh token (invalid_grant: {description})"),
                _ => "the provider rejected the refresh token (invalid_grant)".to_owned(),
            };
            let mark = ConnectionRecord::ReauthorizationRequired {
                reason: reason.clone(),
                since: now,
            };
            let written = app
                .store
                .write_unlocking(
                    key,
                    Expect::Generation(generation),
                    &app.seal_record(key, &mark)?,
                    None,
                    hold.lock,
                )
                .await?;
            hold.released.store(true, Ordering::Relaxed);
            let Some(written) = written else {
                return Ok(None);
            };
            attempt.report(Outcome::InvalidGrant, written, None);
            let event = serde_json::json!({"reason": reason, "since": now});
            webhooks::raise(app, webhooks::Kind::ReauthorizationRequired, connection, event).await;
            Err(FlowError::ReauthorizationRequired { reason })
        }
        Err(error) => {
            attempt.report(Outcome::ProviderError, generation, Some(&error));
            webhooks::refresh_failed(app, connection, &error.to_string()).await;
            if tokens.access_valid_for(now) > 0 {
                return Ok(Some(tokens.clone()));
            }
            Err(error.into())
        }
    }
}

/// Writes a freshly refreshed pair over the generation it was refreshed from, retrying while
/// the store is unavailable.
async fn store_refreshed<S: Store>(attempt: &Attempt<'_, S>, next: &TokenSet) -> Result<(), FlowError> {
    let (app, key) = (attempt.app, attempt.key);
    let record = app.seal_record(key, &ConnectionRecord::Active(next.clone()))?;
    let ttl = ttl(next.refresh_valid_for(app.clock.now()));
    let mut pauses = STORE_RETRY_PAUSES.into_iter();
    let stored = loop {
        match (write_refreshed(attempt, &record, ttl).await, pauses.next()) {
            (Err(StoreError::Unavailable(error)), Some(pause)) => {
                tracing::warn!(
                    connection = attempt.connection,
                    error,
                    retry_in_ms = pause.as_millis() as u64,
                    "refresh: the store is unavailable; the new pair is kept to try again"
                );
                tokio::time::sleep(pause).await;
            }
            (done, _) => break done,
        }
    };
    if let Err(error) = &stored {
        attempt.report(Outcome::NotStored, attempt.generation, Some(error));
    }
    Ok(stored?)
}

async fn write_refreshed<S: Store>(attempt: &Attempt<'_, S>, record: &[u8], ttl: Ttl) -> Result<(), StoreError> {
    let (app, key) = (attempt.app, attempt.key);
    let written = app
        .store
        .write_unlocking(
            key,
            Expect::Generation(attempt.generation),
            record,
            ttl,
            attempt.hold.lock,
        )
        .await?;
    attempt.hold.released.store(true, Ordering::Relaxed);
    if let Some(written) = written {
        attempt.report(Outcome::Refreshed, written, None);
        return Ok(());
    }
    // Someone wrote since we read: our lock was lost (it expired, or a Redis failover dropped it)
    // and another caller refreshed too. If what they wrote is a re-authorization mark, their
    // refresh failed because ours had already rotated the token: our pair holds the provider's
    // newest refresh token and must replace the mark, or the connection would die needlessly.
    let stored = app.store.load(key).await?;
    // Or the writer was us: an attempt whose answer was lost with the connection. Every attempt
    // writes the same bytes (sealing once), so they identify it.
    if let Some(stored) = &stored
        && stored.data == record
    {
        attempt.report(Outcome::Refreshed, stored.generation, None);
        return Ok(());
    }
    if let Some(stored) = stored
        && matches!(
            app.open_record(key, stored.data.clone()),
            Ok(ConnectionRecord::ReauthorizationRequired { .. })
        )
        && let Some(written) = app
            .store
            .write(key, Expect::Generation(stored.generation), record, ttl)
            .await?
    {
        attempt.report(Outcome::RefreshedOverMark, written, None);
        return Ok(());
    }
    attempt.report(Outcome::LostWrite, attempt.generation, None);
    Ok(())
}

async fn current_generation<S: Store>(app: &App<S>, key: &str) -> Result<Option<u64>, StoreError> {
    Ok(app.store.load(key).await?.map(|stored| stored.generation))
}

/// Long enough to cover a provider call that runs to its timeout plus the store write, so a
/// live holder never loses its lock; short enough that a crashed holder blocks only briefly.
fn lock_ttl<S>(app: &App<S>) -> Duration {
    app.config.provider_timeout + 2 * app.config.store_timeout + Duration::from_secs(1)
}
