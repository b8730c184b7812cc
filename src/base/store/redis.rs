//! Redis backend: ElastiCache, Upstash or any `redis://` / `rediss://` server.
//!
//! A record is a hash with two fields, `gen` and `data`, so a read is one `HMGET` and the
//! generation check of a write runs inside the server as a Lua script, atomic with the write.
//!
//! # On a Redis Cluster
//!
//! With `REDIS_CLUSTER=true` the store speaks through the redis crate's cluster client, and the
//! layout is [`Layout::one_slot`]: every key of a deployment has `{KEY_PREFIX}` as its hash tag,
//! so all of them map to one slot. That is what lets a script touch more than one key: the write
//! touches the record, the lock it releases and the connection index; the lock script touches
//! the lock and the record; take and delete touch the record and the index. Every other command
//! touches one key. A SCAN (only to build the index) goes to the node serving that slot, which
//! holds every key of the deployment.
//!
//! # The connection index
//!
//! Listing connections (`/verify`, keep-alive) reads `<prefix>:connections`, a sorted set of
//! connection names scored by when each record expires (in milliseconds; `+inf` for never), so
//! its cost grows with the deployment's own connections and not with the rest of the server's
//! keys, as a SCAN's would. The script that writes a connection's record adds its name with the
//! record's new expiry, and the scripts that delete or take one remove it, in the same atomic
//! step: the index can list no connection that is gone and miss none that exists. A listing
//! drops the entries whose records have expired.
//!
//! An index holds the empty name once it is complete. Without it (a deployment whose records
//! were written before the index existed, or one whose index an operator deleted to have it made
//! again) the first listing builds it from one SCAN, adopting each record found by a script that
//! checks it still exists, so a connection revoked meanwhile is not brought back. Records written
//! by hand, outside the broker, are not in the index until it is built again.

use std::{
    sync::{Arc, LazyLock, Mutex},
    time::{Duration, Instant},
};

use redis::{
    AsyncCommands, Client, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Script,
    ServerErrorKind, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};

use tokio::sync::OnceCell;

use super::{Expect, Held, Listed, Lock, Store, StoreError, Ttl, Versioned, push_found};
use crate::base::{layout::Layout, secret::Secret, tls};

/// KEYS[1] record, then KEYS[2] a lock to release once the write has an answer (when ARGV[4],
/// its owner, is not ""), then the connection index (when ARGV[5], the connection, is not "").
/// ARGV[1..3]: expected generation ("" = any), data, ttl in ms ("0" = none).
/// An unconditional write replaces a key of the wrong type (left by something else, or broken):
/// a new login must be able to heal any record.
const WRITE: &str = r"
local function release()
  if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then
    redis.call('DEL', KEYS[2])
  end
end
if ARGV[1] == '' then
  local kind = redis.call('TYPE', KEYS[1]).ok
  if kind ~= 'hash' and kind ~= 'none' then
    redis.call('DEL', KEYS[1])
  end
end
local current = redis.call('HGET', KEYS[1], 'gen')
if ARGV[1] ~= '' and current ~= ARGV[1] then
  release()
  return false
end
local next = (tonumber(current) or 0) + 1
redis.call('HSET', KEYS[1], 'gen', next, 'data', ARGV[2])
local expires = '+inf'
if ARGV[3] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  local now = redis.call('TIME')
  expires = now[1] * 1000 + math.floor(now[2] / 1000) + tonumber(ARGV[3])
else
  redis.call('PERSIST', KEYS[1])
end
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[#KEYS], expires, ARGV[5])
end
release()
return next
";

/// KEYS[1] lock, KEYS[2] record; ARGV: owner, ttl in ms, the record's generation. The lock is
/// taken only while the record is at that generation.
const LOCK_IF_CURRENT: &str = r"
if redis.call('HGET', KEYS[2], 'gen') ~= ARGV[3] then
  return 'changed'
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 'taken'
end
return 'held'
";

/// KEYS[1] lock; ARGV[1] owner.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// KEYS[1] record, KEYS[2] the connection index when ARGV[1], the connection, is not "".
/// Returns {gen, data} and deletes the record, or nil.
const TAKE: &str = r"
local found = redis.call('HMGET', KEYS[1], 'gen', 'data')
if not found[1] then
  return false
end
redis.call('DEL', KEYS[1])
if ARGV[1] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return found
";

/// KEYS[1] record, KEYS[2] the connection index; ARGV[1] the connection. Returns whether the
/// record existed.
const DELETE_INDEXED: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
";

/// KEYS[1] the connection index. The names of the live connections and the empty name that
/// marks the index as complete, oldest expiry first; nil while the index has not been built.
/// Entries whose record has expired go.
const LIST: &str = r"
if not redis.call('ZSCORE', KEYS[1], '') then
  return false
end
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now[1] * 1000 + math.floor(now[2] / 1000)))
return redis.call('ZRANGE', KEYS[1], 0, -1)
";

/// LIST, with each connection's record: KEYS[1] the connection index; ARGV[1] and ARGV[2] what
/// comes before and after a name in its record's key. Returns name, generation and data for
/// each (a record that is not a hash: name, nil, ""), or nil while the index has not been
/// built. The record keys share the index's hash tag, so on a cluster they are on its node.
const LIST_RECORDS: &str = r"
if not redis.call('ZSCORE', KEYS[1], '') then
  return false
end
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now[1] * 1000 + math.floor(now[2] / 1000)))
local listed = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if name ~= '' then
    local found = redis.pcall('HMGET', ARGV[1] .. name .. ARGV[2], 'gen', 'data')
    if found.err then
      found = {false, ''}
    end
    table.insert(listed, name)
    table.insert(listed, found[1])
    table.insert(listed, found[2])
  end
end
return listed
";

/// KEYS[1] record, KEYS[2] the connection index; ARGV[1] the connection. Building the index:
/// adds the connection if its record exists (checked here, so that a connection revoked since the
/// SCAN saw it stays out) with the record's own expiry. A name already there keeps its entry.
const ADOPT: &str = r"
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' or not redis.call('HGET', KEYS[1], 'gen') then
  return 0
end
local left = redis.call('PTTL', KEYS[1])
local expires = '+inf'
if left >= 0 then
  local now = redis.call('TIME')
  expires = now[1] * 1000 + math.floor(now[2] / 1000) + left
end
return redis.call('ZADD', KEYS[2], 'NX', expires, ARGV[1])
";

/// Each script is hashed (SHA-1, for EVALSHA) on its first use, not at start-up: `/token` with a
/// fresh token and `/verify` run none of them.
static WRITE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(WRITE));
static UNLOCK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(UNLOCK));
static LOCK_IF_CURRENT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOCK_IF_CURRENT));
static DELETE_INDEXED_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE_INDEXED));
static TAKE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE));

/// One multiplexed connection per process (on a cluster, one per node), opened on first use
/// (or early, by [`RedisStore::connect_early`]) and re-opened by itself after a failure, so a
/// warm function survives a Redis restart or failover without being recycled.
#[derive(Clone)]
pub struct RedisStore {
    connection: Arc<Connection>,
    /// Which keys are connection records, and where their index is.
    layout: Arc<Layout>,
}

/// How to connect, and the connection once it is open.
struct Connection {
    client: Clients,
    /// Replaced by an empty cell when a cluster connection stops answering ([`RedisStore::failed`]).
    open: Mutex<Arc<Opening>>,
}

/// One connection's life: opened once by whichever caller comes first.
struct Opening {
    open: OnceCell<Open>,
    since: Instant,
}

impl Opening {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            open: OnceCell::new(),
            since: Instant::now(),
        })
    }
}

/// How long a cluster connection serves before a failure may replace it: fewer reconnects
/// when many calls fail at once, as they do in a failover.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

enum Clients {
    Single(Client, ConnectionManagerConfig),
    Cluster(ClusterClient),
}

/// An open connection of either kind; cloning it is cheap and shares it.
#[derive(Clone)]
enum Open {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Open {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Open::Single(connection) => connection.req_packed_command(cmd),
            Open::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Open::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Open::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Open::Single(connection) => connection.get_db(),
            Open::Cluster(connection) => connection.get_db(),
        }
    }
}

impl RedisStore {
    /// Does not connect: the first command does, or [`RedisStore::connect_early`]. A Redis
    /// outage at cold start therefore shows up as 503 answers, not as a function that fails to
    /// initialize. With `cluster`, `url` is any one node of a Redis Cluster (for ElastiCache and
    /// MemoryDB, the configuration endpoint), from which the client learns the others, and
    /// `layout` must be [`Layout::one_slot`].
    pub fn new(url: &Secret, cluster: bool, timeout: Duration, layout: Layout) -> Result<Self, StoreError> {
        tls::install_default_provider();
        // A cluster may be given several nodes, comma-separated: any one that answers will do.
        let urls: Vec<&str> = if cluster {
            url.expose().split(',').map(str::trim).collect()
        } else {
            vec![url.expose()]
        };
        let mut nodes = Vec::new();
        for url in urls {
            let info = url
                .into_connection_info()
                .map_err(|e| StoreError::Protocol(describe(&e)))?;
            // The client would otherwise announce its name and version on every connect, one
            // more round trip before a cold start's first read, for a label only `CLIENT LIST`
            // shows.
            let settings = info.redis_settings().clone().set_skip_set_lib_name();
            // redis-rs leaves Nagle's algorithm on, unlike most Redis clients: a small write
            // sent while an earlier one is unacknowledged (concurrent commands flushed apart)
            // would wait a round trip for that ACK.
            let tcp = info.tcp_settings().clone().set_nodelay(true);
            nodes.push(info.set_redis_settings(settings).set_tcp_settings(tcp));
        }
        let client = if cluster {
            // The cluster client takes its TCP settings for every node from here.
            let tcp = nodes
                .first()
                .map(|node| node.tcp_settings().clone())
                .unwrap_or_default();
            let client = ClusterClientBuilder::new(nodes)
                .tcp_settings(tcp)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // Redirections and a failover's reconnects are retried inside the client, but
                // never past the store timeout: then the answer is 503.
                .overall_response_timeout(Some(timeout))
                .retries(4)
                .min_retry_wait(50)
                .max_retry_wait(500)
                .build()
                .map_err(|e| StoreError::Protocol(describe(&e)))?;
            Clients::Cluster(client)
        } else {
            let info = nodes.pop().ok_or_else(|| StoreError::Protocol("no REDIS_URL".into()))?;
            let client = Client::open(info).map_err(|e| StoreError::Protocol(describe(&e)))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            Clients::Single(client, config)
        };
        Ok(Self {
            connection: Arc::new(Connection {
                client,
                open: Mutex::new(Opening::new()),
            }),
            layout: Arc::new(layout),
        })
    }

    /// Starts connecting in the background, so that a cold start's connect overlaps with the
    /// rest of start-up and the wait for the first event instead of following them. A failure
    /// here changes nothing: the first command connects again, and answers 503 if it cannot.
    pub fn connect_early(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(error) = store.connection().await {
                tracing::debug!(%error, "early connect to Redis failed; the first command retries");
            }
        });
    }

    /// The connection, opened by whichever caller comes first; the others wait for it.
    async fn connection(&self) -> Result<Open, StoreError> {
        let opening = self.connection.open.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let client = &self.connection.client;
        opening
            .open
            .get_or_try_init(|| async {
                match client {
                    Clients::Single(client, config) => {
                        ConnectionManager::new_with_config(client.clone(), config.clone())
                            .await
                            .map(Open::Single)
                    }
                    Clients::Cluster(client) => client.get_async_connection().await.map(Open::Cluster),
                }
            })
            .await
            .cloned()
            .map_err(|error| self.failed(error))
    }

    /// What a failed command means to the caller. A cluster connection that cannot reach the
    /// cluster is dropped, so the next call starts afresh from the configured node and learns
    /// the slot map as it is now: after a failover the old map can keep naming the lost master.
    /// (A single node's connection manager reconnects by itself.)
    fn failed(&self, error: RedisError) -> StoreError {
        let error = classify(error);
        if matches!(error, StoreError::Unavailable(_)) && matches!(self.connection.client, Clients::Cluster(_)) {
            let mut open = self.connection.open.lock().unwrap_or_else(|e| e.into_inner());
            if open.since.elapsed() >= RECONNECT_AFTER {
                *open = Opening::new();
            }
        }
        error
    }

    /// The write script, releasing `lock` in the same step when there is one.
    async fn write_releasing(
        &self,
        key: &str,
        expect: Expect,
        data: &[u8],
        ttl: Ttl,
        lock: Option<Held<'_>>,
    ) -> Result<Option<u64>, StoreError> {
        let mut connection = self.connection().await?;
        let expected = match expect {
            Expect::Any => String::new(),
            Expect::Generation(generation) => generation.to_string(),
        };
        // A zero TTL would delete the key at once; a record that is already expired is better
        // kept for a moment than lost, so round up to one millisecond.
        let ttl_ms = ttl.map_or(0, |ttl| ttl.as_millis().max(1));
        let mut invocation = WRITE_SCRIPT.key(key);
        invocation.arg(expected).arg(data).arg(ttl_ms.to_string());
        match lock {
            Some(lock) => invocation.key(lock.key).arg(lock.owner),
            None => invocation.arg(""),
        };
        match self.layout.connection_of(key) {
            Some(connection) => invocation.key(self.layout.connection_index()).arg(connection),
            None => invocation.arg(""),
        };
        let reply: Value = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        match reply {
            Value::Int(generation) => Ok(Some(generation as u64)),
            Value::Nil => Ok(None),
            other => Err(StoreError::Protocol(format!("unexpected write reply {other:?}"))),
        }
    }
}

/// Redis error texts can echo parts of a command, and commands carry token records: keep only
/// the kind of failure.
fn describe(error: &RedisError) -> String {
    let kind = match error.kind() {
        ErrorKind::Io | ErrorKind::ClusterConnectionNotFound => "connection failed",
        ErrorKind::AuthenticationFailed => "authentication failed",
        ErrorKind::InvalidClientConfig => "invalid client configuration",
        _ if error.is_timeout() => "timed out",
        _ if error.is_connection_dropped() || error.is_connection_refusal() => "connection failed",
        ErrorKind::Server(ServerErrorKind::BusyLoading) => "loading its data",
        ErrorKind::Server(
            ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::Moved | ServerErrorKind::Ask,
        ) => "in a failover",
        _ => "command failed",
    };
    format!("{kind} ({:?})", error.kind())
}

/// Whether waiting helps: the connection failed, or the server is between states (loading its data
/// after a restart, in a failover, a cluster without a master for a slot), which a retry a moment
/// later gets past. Anything else is an answer this version cannot use.
fn classify(error: RedisError) -> StoreError {
    let passing = matches!(
        error.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        )
    );
    if passing
        // A cluster node the slot map names is unreachable, as while a failover is under way;
        // the cluster client reports its own timeouts as this kind, without an I/O error inside.
        || matches!(error.kind(), ErrorKind::ClusterConnectionNotFound | ErrorKind::Io)
        || error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        StoreError::Unavailable(describe(&error))
    } else {
        StoreError::Protocol(describe(&error))
    }
}

impl Store for RedisStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut connection = self.connection().await?;
        let (generation, data): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(key)
            .arg("gen")
            .arg("data")
            .query_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        versioned(key, generation, data)
    }

    async fn write(&self, key: &str, expect: Expect, data: &[u8], ttl: Ttl) -> Result<Option<u64>, StoreError> {
        self.write_releasing(key, expect, data, ttl, None).await
    }

    async fn write_unlocking(
        &self,
        key: &str,
        expect: Expect,
        data: &[u8],
        ttl: Ttl,
        lock: Held<'_>,
    ) -> Result<Option<u64>, StoreError> {
        self.write_releasing(key, expect, data, ttl, Some(lock)).await
    }

    async fn lock_if_current(
        &self,
        lock: Held<'_>,
        ttl: Duration,
        key: &str,
        generation: u64,
    ) -> Result<Lock, StoreError> {
        let mut connection = self.connection().await?;
        let found: String = LOCK_IF_CURRENT_SCRIPT
            .key(lock.key)
            .key(key)
            .arg(lock.owner)
            .arg(ttl.as_millis().max(1).to_string())
            .arg(generation.to_string())
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        match found.as_str() {
            "taken" => Ok(Lock::Taken),
            "held" => Ok(Lock::Held),
            "changed" => Ok(Lock::Changed),
            other => Err(StoreError::Protocol(format!("unexpected lock reply {other:?}"))),
        }
    }

    async fn try_lock(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut connection = self.connection().await?;
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(ttl.as_millis().max(1) as u64));
        let reply: Option<String> = connection
            .set_options(key, owner, options)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(reply.is_some())
    }

    async fn unlock(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        let _: i64 = UNLOCK_SCRIPT
            .key(key)
            .arg(owner)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut connection = self.connection().await?;
        let mut invocation = TAKE_SCRIPT.key(key);
        match self.layout.connection_of(key) {
            Some(name) => invocation.key(self.layout.connection_index()).arg(name),
            None => invocation.arg(""),
        };
        let found: Option<(u64, Vec<u8>)> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(found.map(|(generation, data)| Versioned { generation, data }))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut connection = self.connection().await?;
        let deleted: i64 = match self.layout.connection_of(key) {
            Some(name) => DELETE_INDEXED_SCRIPT
                .key(key)
                .key(self.layout.connection_index())
                .arg(name)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.failed(e))?,
            None => connection.del(key).await.map_err(|e| self.failed(e))?,
        };
        Ok(deleted > 0)
    }

    /// The connection records come from the index, in one round trip; any other prefix is a
    /// SCAN of the keyspace.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if prefix != self.layout.connections() {
            // The index is the store's own bookkeeping, not a record.
            let index = self.layout.connection_index();
            let mut keys = self.scan(prefix).await?;
            keys.retain(|key| *key != index);
            return Ok(keys);
        }
        let names = match self.indexed().await? {
            Some(names) => names,
            None => {
                self.build_index().await?;
                self.indexed()
                    .await?
                    .ok_or_else(|| StoreError::Unavailable("the connection index vanished while it was built".into()))?
            }
        };
        Ok(names.iter().map(|name| self.layout.tokens(name)).collect())
    }

    /// The connection records in one round trip, from a script that reads the index and each
    /// record; any other prefix is a SCAN, then one pipeline of reads.
    async fn records(&self, prefix: &str) -> Result<Listed, StoreError> {
        if prefix == self.layout.connections() {
            if let Some(listed) = self.indexed_records().await? {
                return Ok(listed);
            }
            self.build_index().await?;
            return self
                .indexed_records()
                .await?
                .ok_or_else(|| StoreError::Unavailable("the connection index vanished while it was built".into()));
        }
        let keys = self.keys(prefix).await?;
        let mut connection = self.connection().await?;
        let mut records = Vec::with_capacity(keys.len());
        for batch in keys.chunks(1000) {
            let mut pipe = redis::pipe();
            for key in batch {
                pipe.cmd("HMGET").arg(key).arg("gen").arg("data");
            }
            let found: Vec<(Option<u64>, Option<Vec<u8>>)> =
                pipe.query_async(&mut connection).await.map_err(|e| self.failed(e))?;
            for (key, (generation, data)) in batch.iter().zip(found) {
                push_found(&mut records, key.clone(), versioned(key, generation, data));
            }
        }
        Ok(records)
    }
}

/// A record from its two fields as `HMGET` answers them.
fn versioned(key: &str, generation: Option<u64>, data: Option<Vec<u8>>) -> Result<Option<Versioned>, StoreError> {
    match (generation, data) {
        (Some(generation), Some(data)) => Ok(Some(Versioned { generation, data })),
        (None, None) => Ok(None),
        _ => Err(StoreError::Protocol(format!("record {key} is incomplete"))),
    }
}

impl RedisStore {
    /// The names in the connection index, or `None` if it has not been built.
    async fn indexed(&self) -> Result<Option<Vec<String>>, StoreError> {
        let mut connection = self.connection().await?;
        // EVAL with the text, not EVALSHA: a cold start's first `/verify` would otherwise pay a
        // round trip for NOSCRIPT before it could send the script, and the text is short.
        let names: Option<Vec<String>> = redis::cmd("EVAL")
            .arg(LIST)
            .arg(1)
            .arg(self.layout.connection_index())
            .query_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(names.map(|names| names.into_iter().filter(|name| !name.is_empty()).collect()))
    }

    /// [`LIST_RECORDS`]: every indexed connection's record, or `None` if the index has not been
    /// built.
    async fn indexed_records(&self) -> Result<Option<Listed>, StoreError> {
        let mut connection = self.connection().await?;
        let (before, after) = self.layout.tokens_around();
        // EVAL with the text, as in `indexed`: a cold start's `/verify` sends nothing before it.
        let listed: Option<Vec<redis::Value>> = redis::cmd("EVAL")
            .arg(LIST_RECORDS)
            .arg(1)
            .arg(self.layout.connection_index())
            .arg(&before)
            .arg(after)
            .query_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        let Some(listed) = listed else { return Ok(None) };
        let unexpected = || StoreError::Protocol("the connection listing answered unexpectedly".into());
        if listed.len() % 3 != 0 {
            return Err(unexpected());
        }
        let mut records = Vec::with_capacity(listed.len() / 3);
        for entry in listed.chunks(3) {
            let name: String = redis::from_redis_value(entry[0].clone()).map_err(|_| unexpected())?;
            let generation: Option<u64> = redis::from_redis_value(entry[1].clone()).map_err(|_| unexpected())?;
            let data: Option<Vec<u8>> = redis::from_redis_value(entry[2].clone()).map_err(|_| unexpected())?;
            let key = self.layout.tokens(&name);
            let found = versioned(&key, generation, data);
            push_found(&mut records, key, found);
        }
        Ok(Some(records))
    }

    /// Builds the connection index from the records a SCAN finds: once, when a deployment whose
    /// records were written before the index existed first lists its connections (or after the
    /// index was deleted). Every write keeps it from then on. Running twice at once is harmless:
    /// each step is an idempotent script.
    async fn build_index(&self) -> Result<(), StoreError> {
        let keys = self.scan(&self.layout.connections()).await?;
        let records: Vec<(&String, &str)> = keys
            .iter()
            .filter_map(|key| Some((key, self.layout.connection_of(key)?)))
            .collect();
        tracing::info!(
            records = records.len(),
            "building the Redis connection index from a SCAN"
        );
        let index = self.layout.connection_index();
        let mut connection = self.connection().await?;
        for batch in records.chunks(500) {
            let mut pipe = redis::pipe();
            for (key, name) in batch {
                // EVAL, not EVALSHA: a pipeline has no fallback for a script the server lacks.
                pipe.cmd("EVAL")
                    .arg(ADOPT)
                    .arg(2)
                    .arg(key)
                    .arg(&index)
                    .arg(name)
                    .ignore();
            }
            let () = pipe.query_async(&mut connection).await.map_err(|e| self.failed(e))?;
        }
        // The empty name says the index is complete; it never expires.
        let _: i64 = redis::cmd("ZADD")
            .arg(&index)
            .arg("NX")
            .arg("+inf")
            .arg("")
            .query_async(&mut connection)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn scan(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection().await?;
        // SCAN, not KEYS: it does not block a shared server while it walks the keyspace.
        let pattern = format!("{}*", escape_glob(prefix));
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(500);
            let reply = match &mut connection {
                Open::Single(single) => single.req_packed_command(&scan).await,
                // A SCAN sees one node. The deployment's keys all live in its hash tag's slot, so
                // the node that serves that slot has every one of them.
                Open::Cluster(cluster) => {
                    let slot = Route::with_key(self.layout.connection_index(), SlotAddr::Master);
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(slot));
                    cluster.route_command(scan, routing).await
                }
            };
            let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply.map_err(|e| self.failed(e))?)
                .map_err(|_| StoreError::Protocol("SCAN answered unexpectedly".into()))?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key twice when the keyspace is rehashed mid-walk.
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

/// A prefix as a literal inside a Redis glob pattern.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_turn_nagle_off_and_skip_the_client_name() {
        let store = RedisStore::new(
            &Secret::new("redis://127.0.0.1:6379/0".to_owned()),
            false,
            Duration::from_secs(1),
            Layout::new("tb"),
        )
        .unwrap();
        let Clients::Single(client, _) = &store.connection.client else {
            panic!("not a cluster")
        };
        let info = client.get_connection_info();
        assert!(info.tcp_settings().nodelay());
        assert!(info.redis_settings().skip_set_lib_name());
    }
}
