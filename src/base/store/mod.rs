//! Storage the routes rely on: versioned records and short-lived locks.
//!
//! Every backend offers the same small contract, so the route logic (and the refresh guarantees
//! built on it) does not depend on which store is in use.

mod dynamodb;
#[cfg(feature = "local")]
mod embedded;
mod redis;

use std::{future::Future, time::Duration};

use thiserror::Error;

pub use self::dynamodb::{DynamoConfig, DynamoStore};
#[cfg(feature = "local")]
pub use self::embedded::EmbeddedStore;
pub use self::redis::RedisStore;

/// A stored value together with its generation. Generations start at 1 and grow by one with
/// every write, so a writer can tell whether the value it read is still the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub generation: u64,
    pub data: Vec<u8>,
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there (a fresh authorization replaces everything).
    Any,
    /// Write only if the current generation is this one.
    Generation(u64),
}

/// What [`Store::lock_if_current`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// The lock is the caller's.
    Taken,
    /// Someone else holds it.
    Held,
    /// The record is no longer at the generation the caller read (or is gone); the lock was not
    /// taken.
    Changed,
}

/// A lock the caller holds: its key and owner.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub key: &'a str,
    pub owner: &'a str,
}

#[derive(Debug, Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered, but with something this version cannot use.
    #[error("store answered unexpectedly: {0}")]
    Protocol(String),
}

/// How long a record lives from its write; `None`: until it is deleted.
pub type Ttl = Option<Duration>;

/// An expiry `seconds` from now, at least a second (a record already due is kept a moment rather
/// than lost): a connection's record lives as long as its refresh token, a login state as long as
/// it can be redeemed.
pub fn ttl(seconds: i64) -> Ttl {
    Some(Duration::from_secs(seconds.max(1) as u64))
}

pub trait Store: Send + Sync {
    /// One round trip: this is the hot path of every `/token` call.
    fn load(&self, key: &str) -> impl Future<Output = Result<Option<Versioned>, StoreError>> + Send;

    /// Atomically writes `data` as the next generation if `expect` holds, and lets the key expire
    /// after `ttl` (never, if `None`). Returns the new generation, or `None` if another writer got
    /// there first.
    fn write(
        &self,
        key: &str,
        expect: Expect,
        data: &[u8],
        ttl: Ttl,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Takes the lock `key` for `owner` unless someone else holds it. The lock vanishes by itself
    /// after `ttl`, so a crashed holder cannot block others for longer than that.
    fn try_lock(&self, key: &str, owner: &str, ttl: Duration) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Releases the lock only if `owner` still holds it; a lock that expired and was taken by
    /// another caller is left alone.
    fn unlock(&self, key: &str, owner: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`Store::try_lock`] on `lock`, only while record `key` is still at `generation`: what a
    /// refresh needs before it calls the provider. A backend that can do both in one round trip
    /// overrides this; here it is the lock, then a read, then (if the record changed) the unlock.
    fn lock_if_current(
        &self,
        lock: Held<'_>,
        ttl: Duration,
        key: &str,
        generation: u64,
    ) -> impl Future<Output = Result<Lock, StoreError>> + Send {
        async move {
            if !self.try_lock(lock.key, lock.owner, ttl).await? {
                return Ok(Lock::Held);
            }
            let current = match self.load(key).await {
                Ok(current) => current,
                Err(error) => {
                    // Released so that waiting callers need not wait out its TTL.
                    let _ = self.unlock(lock.key, lock.owner).await;
                    return Err(error);
                }
            };
            if current.is_some_and(|current| current.generation == generation) {
                return Ok(Lock::Taken);
            }
            self.unlock(lock.key, lock.owner).await?;
            Ok(Lock::Changed)
        }
    }

    /// [`Store::write`], then [`Store::unlock`] of `lock` once the write has an answer (stored or
    /// refused). On an error the lock stays, for the caller's next attempt. A backend that can do
    /// both in one round trip overrides this.
    fn write_unlocking(
        &self,
        key: &str,
        expect: Expect,
        data: &[u8],
        ttl: Ttl,
        lock: Held<'_>,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send {
        async move {
            let written = self.write(key, expect, data, ttl).await?;
            if let Err(error) = self.unlock(lock.key, lock.owner).await {
                // It expires on its own; the write is what counts.
                tracing::warn!(%error, "could not release a lock after a write");
            }
            Ok(written)
        }
    }

    /// Reads and deletes `key` in one atomic step, so of two concurrent callers exactly one gets
    /// the value: what makes a one-time login state one-time.
    fn take(&self, key: &str) -> impl Future<Output = Result<Option<Versioned>, StoreError>> + Send;

    /// Deletes `key`; returns whether it existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every live record key that starts with `prefix`, in no particular order.
    fn keys(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// [`Store::keys`] with each key's record, in no particular order: a record that vanished
    /// since the listing is left out, and one that cannot be read is its own error, so one bad
    /// record does not hide the others. Here it is the listing, then one read per key; a backend
    /// that can list values in fewer round trips overrides this.
    fn records(&self, prefix: &str) -> impl Future<Output = Result<Listed, StoreError>> + Send {
        async move {
            let mut records = Vec::new();
            for key in self.keys(prefix).await? {
                match self.load(&key).await {
                    // Only an outage stops the listing; an unreadable record is listed as such.
                    Err(error @ StoreError::Unavailable(_)) => return Err(error),
                    found => push_found(&mut records, key, found),
                }
            }
            Ok(records)
        }
    }
}

/// What [`Store::records`] lists: each key with its record, or why that record cannot be read.
pub type Listed = Vec<(String, Result<Versioned, StoreError>)>;

/// Adds what reading a listed key found, unless the record vanished since the listing.
fn push_found(records: &mut Listed, key: String, found: Result<Option<Versioned>, StoreError>) {
    match found {
        Ok(Some(record)) => records.push((key, Ok(record))),
        Ok(None) => {}
        Err(error) => records.push((key, Err(error))),
    }
}

/// The backend the configuration chose, decided once at start-up.
#[derive(Clone)]
pub enum AnyStore {
    Redis(RedisStore),
    DynamoDb(DynamoStore),
    /// Local mode only.
    #[cfg(feature = "local")]
    Embedded(EmbeddedStore),
}

/// `$call` on whichever backend `$any` holds, bound to `$store`.
macro_rules! on_backend {
    ($any:expr, $store:ident => $call:expr) => {
        match $any {
            AnyStore::Redis($store) => $call,
            AnyStore::DynamoDb($store) => $call,
            #[cfg(feature = "local")]
            AnyStore::Embedded($store) => $call,
        }
    };
}

impl AnyStore {
    /// Starts opening Redis's connection in the background ([`RedisStore::connect_early`]); must
    /// be called on a Tokio runtime. DynamoDB has no counterpart: its HTTPS client can only
    /// open a connection with a request, and the request (an unsigned `GET /`) would put one
    /// more round trip before the first call than it saves (BENCHMARKS.md).
    pub fn connect_early(&self) {
        if let AnyStore::Redis(store) = self {
            store.connect_early();
        }
    }
}

impl Store for AnyStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        on_backend!(self, store => store.load(key).await)
    }

    async fn write(&self, key: &str, expect: Expect, data: &[u8], ttl: Ttl) -> Result<Option<u64>, StoreError> {
        on_backend!(self, store => store.write(key, expect, data, ttl).await)
    }

    async fn try_lock(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        on_backend!(self, store => store.try_lock(key, owner, ttl).await)
    }

    async fn unlock(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        on_backend!(self, store => store.unlock(key, owner).await)
    }

    async fn lock_if_current(
        &self,
        lock: Held<'_>,
        ttl: Duration,
        key: &str,
        generation: u64,
    ) -> Result<Lock, StoreError> {
        on_backend!(self, store => store.lock_if_current(lock, ttl, key, generation).await)
    }

    async fn write_unlocking(
        &self,
        key: &str,
        expect: Expect,
        data: &[u8],
        ttl: Ttl,
        lock: Held<'_>,
    ) -> Result<Option<u64>, StoreError> {
        on_backend!(self, store => store.write_unlocking(key, expect, data, ttl, lock).await)
    }

    async fn take(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        on_backend!(self, store => store.take(key).await)
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        on_backend!(self, store => store.delete(key).await)
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        on_backend!(self, store => store.keys(prefix).await)
    }

    async fn records(&self, prefix: &str) -> Result<Listed, StoreError> {
        on_backend!(self, store => store.records(prefix).await)
    }
}
