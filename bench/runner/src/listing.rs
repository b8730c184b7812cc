//! Listing many connections: `/verify` (which reads every connection it lists) and one keep-alive
//! pass over a deployment of its own, first alone on the server and then beside a million
//! unrelated keys, so the report shows what the cost grows with. The connections' records are
//! written as the broker writes them (a hash with `gen` and `data`) but without their index, as a
//! deployment from before the index has them: the first listing builds it from a SCAN, and is
//! timed apart.

use std::time::Duration;

use bytes::Bytes;

use crate::{
    PerCall,
    function::{Running, Spec},
    monitor::Monitor,
};

/// The deployment measured here, apart from the rest of the bench's keys.
pub const PREFIX: &str = "bench-list";

/// A fresh token record (`{"format":1,"status":"active",...}`, valid until 2100).
const RECORD: &str = r#"{"format":1,"status":"active","access_token":"bench-access-list","refresh_token":"bench-refresh-list","token_type":"Bearer","access_expires_at":4102444800,"refresh_expires_at":4102444800,"issued_at":1764720000}"#;

#[derive(Default)]
pub struct Listing {
    pub connections: usize,
    pub unrelated_keys: usize,
    /// The first `/verify` of the deployment: it builds the connection index from a SCAN.
    pub first_verify: Duration,
    /// Later `/verify` calls, each listing and reading every connection.
    pub verify: Vec<Duration>,
    pub verify_commands: Option<PerCall>,
    pub keepalive: Vec<Duration>,
    pub keepalive_commands: Option<PerCall>,
}

/// Writes `count` connection records under [`PREFIX`], without an index.
pub async fn seed_connections(redis: &mut redis::aio::ConnectionManager, count: usize) -> Result<(), String> {
    for batch in (0..count).collect::<Vec<_>>().chunks(1_000) {
        let mut pipe = redis::pipe();
        for n in batch {
            // `/verify` without `?connection=` answers for `default`: let it be one of them.
            let name = if *n == 0 {
                "default".to_owned()
            } else {
                format!("c-{n:05}")
            };
            pipe.cmd("HSET")
                .arg(format!("{PREFIX}:conn:{name}:tokens"))
                .arg("gen")
                .arg(1)
                .arg("data")
                .arg(RECORD)
                .ignore();
        }
        let () = pipe.query_async(redis).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writes `count` keys that belong to no deployment of this broker.
pub async fn seed_unrelated(redis: &mut redis::aio::ConnectionManager, count: usize) -> Result<(), String> {
    for batch in (0..count).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for n in batch {
            pipe.cmd("SET").arg(format!("other-app:session:{n}")).arg("x").ignore();
        }
        let () = pipe.query_async(redis).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Deletes the deployment's index, so that the next listing builds it again from a SCAN.
pub async fn drop_index(redis: &mut redis::aio::ConnectionManager) -> Result<(), String> {
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{PREFIX}:connections"))
        .query_async(redis)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Times `/verify` and keep-alive over the connections already seeded.
pub async fn measure(
    verify: (&Spec, &Bytes),
    keepalive: (&Spec, &Bytes),
    redis_port: u16,
    calls: usize,
    connections: usize,
    unrelated_keys: usize,
) -> Result<Listing, String> {
    let (first_verify, verify_latencies, verify_commands) =
        timed(verify, "verify", redis_port, calls, connections).await?;
    let (_, keepalive_latencies, keepalive_commands) =
        timed(keepalive, "keepalive", redis_port, calls, connections).await?;
    Ok(Listing {
        connections,
        unrelated_keys,
        first_verify,
        verify: verify_latencies,
        verify_commands: Some(verify_commands),
        keepalive: keepalive_latencies,
        keepalive_commands: Some(keepalive_commands),
    })
}

/// One function over the connections: its cold first call, `calls` warm ones, and the Redis
/// commands of one more, per connection.
async fn timed(
    (spec, event): (&Spec, &Bytes),
    what: &str,
    redis_port: u16,
    calls: usize,
    connections: usize,
) -> Result<(Duration, Vec<Duration>, PerCall), String> {
    let (mut running, first) = Running::start(spec, event).await?;
    ok(&first, connections, what)?;
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let call = running.invoke(event).await?;
        ok(&call, connections, what)?;
        latencies.push(call.latency);
    }
    let monitor = Monitor::start(redis_port).await?;
    ok(&running.invoke(event).await?, connections, what)?;
    let commands = PerCall::of(monitor.finish().await?, connections);
    running.stop().await;
    Ok((first.latency, latencies, commands))
}

/// A listing answer that names every connection: `/verify`'s `connections`, keep-alive's report.
fn ok(call: &crate::function::Call, connections: usize, what: &str) -> Result<(), String> {
    // Keep-alive answers with its report, not an HTTP response: it has no status.
    if what == "verify" && call.status != 200 {
        return Err(format!("{what} over many connections answered {}", call.status));
    }
    // The body may be JSON inside a JSON string (an API Gateway answer): count the bare word.
    let listed = call.body.matches("connection").count();
    if listed < connections {
        return Err(format!("{what} listed {listed} of {connections} connections"));
    }
    Ok(())
}
