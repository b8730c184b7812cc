//! Counts the commands clients send to Redis, with `MONITOR`.
//!
//! `INFO commandstats` also counts the commands a Lua script runs inside the server, which are
//! not round trips; `MONITOR` tells the two apart (`[0 lua]` against `[0 127.0.0.1:port]`).
//! Only used while no latency is being measured: it slows the server down.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// What clients sent, and what scripts ran inside the server, between `start` and `finish`.
#[derive(Default)]
pub struct Traffic {
    /// Client commands (each one a round trip, none of this bench's pipelines): name → count.
    pub client: BTreeMap<String, u64>,
    /// Commands run inside Lua scripts.
    pub scripted: BTreeMap<String, u64>,
}

pub struct Monitor {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
    port: u16,
}

impl Monitor {
    pub async fn start(port: u16) -> Result<Self, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"*1\r\n$7\r\nMONITOR\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut lines = BufReader::new(stream).lines();
        match lines.next_line().await.map_err(|e| e.to_string())? {
            Some(line) if line == "+OK" => Ok(Self { lines, port }),
            other => Err(format!("MONITOR answered {other:?}")),
        }
    }

    /// Sends a marker through a connection of its own and reads the monitor's stream up to it,
    /// so every command sent before is counted.
    pub async fn finish(mut self) -> Result<Traffic, String> {
        let marker = format!("bench-marker-{}", std::process::id());
        let mut other = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| e.to_string())?;
        let command = format!("*2\r\n$4\r\nECHO\r\n${}\r\n{marker}\r\n", marker.len());
        other.write_all(command.as_bytes()).await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut traffic = Traffic::default();
        loop {
            let line = tokio::time::timeout_at(deadline.into(), self.lines.next_line())
                .await
                .map_err(|_| "MONITOR did not show the marker".to_owned())?
                .map_err(|e| e.to_string())?
                .ok_or("MONITOR connection closed")?;
            if line.contains(&marker) {
                return Ok(traffic);
            }
            // +1700000000.123456 [0 127.0.0.1:54321] "HMGET" "key" "gen" "data"
            let Some((source, rest)) = line.split_once('[').and_then(|(_, r)| r.split_once(']')) else {
                continue;
            };
            let Some(name) = rest.trim_start().strip_prefix('"').and_then(|r| r.split('"').next()) else {
                continue;
            };
            let counts = if source.ends_with(" lua") {
                &mut traffic.scripted
            } else {
                &mut traffic.client
            };
            *counts.entry(name.to_uppercase()).or_default() += 1;
        }
    }
}
