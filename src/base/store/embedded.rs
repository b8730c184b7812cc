//! Embedded on-disk store for local mode: one redb file, crash-safe (every commit is durable
//! before it returns), so tokens survive a restart and a `kill -9`.
//!
//! redb is synchronous; each operation runs on Tokio's blocking pool so a commit's fsync never
//! stalls the request handlers.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Expect, Store, StoreError, Ttl, Versioned};
use crate::base::clock::unix_millis;

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

/// Value: generation (u64 LE), expiry in Unix milliseconds (u64 LE, 0 = never), data.
const RECORDS: Table = TableDefinition::new("records");
/// Value: expiry in Unix milliseconds (u64 LE), owner.
const LOCKS: Table = TableDefinition::new("locks");

const HEADER: usize = 16;

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/tokens.redb`. Fails if another process has it open: two servers
    /// on one file would each believe they hold the only copy.
    ///
    /// Every refresh lock found on opening belongs to a dead process (no other can have the file
    /// open), so they are dropped: a server restarted after `kill -9` mid-refresh refreshes at
    /// once instead of waiting out the dead holder's lock.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("tokens.redb");
        let cannot_open =
            |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("cannot open {}: {e}", path.display()));
        restrict_permissions(dir, &path).map_err(|e| cannot_open(&e))?;
        let db = Database::create(&path).map_err(|e| cannot_open(&e))?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(RECORDS).map_err(unavailable)?;
        txn.delete_table(LOCKS).map_err(unavailable)?;
        txn.open_table(LOCKS).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(Self { db: Arc::new(db), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `change` on `table` in a write transaction, committed when it returns. redb allows
    /// one write transaction at a time, so what `change` reads and writes is atomic with respect
    /// to every other writer.
    async fn change<T: Send + 'static>(
        &self,
        table: Table,
        change: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let result = change(&mut txn.open_table(table).map_err(unavailable)?)?;
            txn.commit().map_err(unavailable)?;
            Ok(result)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || operation(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

/// The file holds tokens: only its owner may read it, and the directory too, so neither a copied
/// file nor a loosened directory exposes it. The file is created owner-only, never first with the
/// umask's mode; one made by an older version is tightened.
#[cfg(unix)]
fn restrict_permissions(dir: &Path, file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_permissions(_dir: &Path, _file: &Path) -> std::io::Result<()> {
    Ok(())
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {error}"))
}

fn expiry(ttl: Ttl) -> u64 {
    ttl.map_or(0, |ttl| unix_millis() + (ttl.as_millis() as u64).max(1))
}

fn live(expires_at_ms: u64) -> bool {
    expires_at_ms == 0 || expires_at_ms > unix_millis()
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buf)
}

/// The live entry in `bytes`, if any; an expired one counts as absent, as in Redis.
fn decode(key: &str, bytes: &[u8]) -> Result<Option<Versioned>, StoreError> {
    if bytes.len() < HEADER {
        return Err(StoreError::Protocol(format!("entry {key} is truncated")));
    }
    if !live(u64_at(bytes, 8)) {
        return Ok(None);
    }
    Ok(Some(Versioned {
        generation: u64_at(bytes, 0),
        data: bytes[HEADER..].to_vec(),
    }))
}

impl Store for EmbeddedStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let key = key.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(RECORDS).map_err(unavailable)?;
            match table.get(key.as_str()).map_err(unavailable)? {
                Some(value) => decode(&key, value.value()),
                None => Ok(None),
            }
        })
        .await
    }

    async fn write(&self, key: &str, expect: Expect, data: &[u8], ttl: Ttl) -> Result<Option<u64>, StoreError> {
        let key = key.to_owned();
        let data = data.to_vec();
        self.change(RECORDS, move |table| {
            let current = match table.get(key.as_str()).map_err(unavailable)? {
                Some(value) => decode(&key, value.value())?.map(|v| v.generation),
                None => None,
            };
            if let Expect::Generation(expected) = expect
                && current != Some(expected)
            {
                return Ok(None);
            }
            let generation = current.unwrap_or(0) + 1;
            let mut value = Vec::with_capacity(HEADER + data.len());
            value.extend_from_slice(&generation.to_le_bytes());
            value.extend_from_slice(&expiry(ttl).to_le_bytes());
            value.extend_from_slice(&data);
            table.insert(key.as_str(), value.as_slice()).map_err(unavailable)?;
            Ok(Some(generation))
        })
        .await
    }

    async fn try_lock(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (key, owner) = (key.to_owned(), owner.to_owned());
        self.change(LOCKS, move |table| {
            let held = table
                .get(key.as_str())
                .map_err(unavailable)?
                .is_some_and(|value| value.value().len() >= 8 && live(u64_at(value.value(), 0)));
            if !held {
                let mut value = expiry(Some(ttl)).to_le_bytes().to_vec();
                value.extend_from_slice(owner.as_bytes());
                table.insert(key.as_str(), value.as_slice()).map_err(unavailable)?;
            }
            Ok(!held)
        })
        .await
    }

    async fn unlock(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let (key, owner) = (key.to_owned(), owner.to_owned());
        self.change(LOCKS, move |table| {
            let ours = table
                .get(key.as_str())
                .map_err(unavailable)?
                .is_some_and(|value| value.value().get(8..) == Some(owner.as_bytes()));
            if ours {
                table.remove(key.as_str()).map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn take(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let key = key.to_owned();
        self.change(RECORDS, move |table| {
            match table.remove(key.as_str()).map_err(unavailable)? {
                Some(value) => decode(&key, value.value()),
                None => Ok(None),
            }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.change(RECORDS, move |table| {
            let removed = table.remove(key.as_str()).map_err(unavailable)?;
            Ok(removed.is_some_and(|value| value.value().len() < HEADER || live(u64_at(value.value(), 8))))
        })
        .await
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_owned();
        self.run(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(RECORDS).map_err(unavailable)?;
            let mut keys = Vec::new();
            for entry in table.range(prefix.as_str()..).map_err(unavailable)? {
                let (key, value) = entry.map_err(unavailable)?;
                let key = key.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                let value = value.value();
                if value.len() >= HEADER && live(u64_at(value, 8)) {
                    keys.push(key.to_owned());
                }
            }
            Ok(keys)
        })
        .await
    }
}
