//! The bench's own redis-server on a free loopback port, stopped when dropped, and a client for
//! the raw reads and the command counters.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use redis::aio::ConnectionManager;

pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    pub fn start(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // redis-server changes into --dir before it opens --logfile.
        let dir = &dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = crate::free_port().map_err(|e| format!("no free port: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}); install it with apt-get install redis-server"))?;
        let mut server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || server.child.try_wait().ok().flatten().is_some() {
                return Err(format!(
                    "redis-server did not start; see {}",
                    dir.join("redis.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bench's own connection: the same client and connection type the broker uses.
pub struct Redis {
    connection: ConnectionManager,
}

impl Redis {
    pub async fn connect(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let connection = ConnectionManager::new(client).await.map_err(|e| e.to_string())?;
        Ok(Self { connection })
    }

    /// One `HMGET key gen data`, the broker's hot-path read, and how long it took.
    pub async fn timed_hmget(&mut self, key: &str) -> Result<Duration, String> {
        let started = Instant::now();
        let (generation, data): (Option<u64>, Option<Vec<u8>>) = redis::cmd("HMGET")
            .arg(key)
            .arg("gen")
            .arg("data")
            .query_async(&mut self.connection)
            .await
            .map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        if generation.is_none() || data.is_none() {
            return Err(format!("{key} has no gen/data fields"));
        }
        Ok(elapsed)
    }

    /// The key of the stored token record: the one hash with `gen` and `data` fields whose name
    /// ends in `:tokens` (found rather than rebuilt, so the bench follows the broker's naming).
    pub async fn token_record_key(&mut self) -> Result<String, String> {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*:tokens")
            .query_async(&mut self.connection)
            .await
            .map_err(|e| e.to_string())?;
        for key in keys {
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(&key)
                .query_async(&mut self.connection)
                .await
                .unwrap_or_default();
            if fields.iter().any(|f| f == "gen") && fields.iter().any(|f| f == "data") {
                return Ok(key);
            }
        }
        Err("no token record (a hash with gen and data) is stored".to_owned())
    }
}
