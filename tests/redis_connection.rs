//! The broker's Redis connection, watched on the wire: a relay in front of the real Redis counts
//! the connections opened and every turn at which the broker speaks again after Redis has
//! answered. A fresh token must cost exactly one round trip, on a cold instance's first call (after
//! the connect) as well as on a warm one; the connect itself can happen before the first call.
//! The relay can also lose an answer, as a connection dropped mid-command does.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use token_broker::http::routes::Route;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A TCP relay to the test Redis that counts connections and request turns, and can lose an
/// answer: armed, it closes the connection instead of passing on Redis's next reply.
struct Relay {
    url: String,
    turns: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    lose_next_reply: Arc<AtomicBool>,
}

impl Relay {
    async fn start() -> Self {
        Self::to(&redis_url()).await
    }

    async fn to(upstream: &str) -> Self {
        let authority = upstream
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let turns = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let lose_next_reply = Arc::new(AtomicBool::new(false));
        let (counter, accepted, lose) = (turns.clone(), connections.clone(), lose_next_reply.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let server = TcpStream::connect(&authority).await.unwrap();
                // Per connection: true while the last bytes went from the broker to Redis.
                let asking = Arc::new(AtomicBool::new(false));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    asking.clone(),
                    true,
                    Some(counter.clone()),
                    None,
                ));
                tokio::spawn(pump(server_read, client_write, asking, false, None, Some(lose.clone())));
            }
        });
        Self {
            url,
            turns,
            connections,
            lose_next_reply,
        }
    }

    fn turns(&self) -> usize {
        self.turns.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    asking: Arc<AtomicBool>,
    request_side: bool,
    turns: Option<Arc<AtomicUsize>>,
    lose: Option<Arc<AtomicBool>>,
) {
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 || lose.as_ref().is_some_and(|lose| lose.swap(false, Ordering::SeqCst)) {
            break;
        }
        let was_asking = asking.swap(request_side, Ordering::SeqCst);
        if let Some(turns) = &turns
            && !was_asking
        {
            turns.fetch_add(1, Ordering::SeqCst);
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
}

/// A harness whose store goes through `relay`, sharing its records with a direct one.
async fn relayed(relay: &Relay) -> (Harness, Harness) {
    relayed_to(relay, &redis_url()).await
}

async fn relayed_to(relay: &Relay, upstream: &str) -> (Harness, Harness) {
    let prefix = unique_prefix();
    let direct = Harness::with(&[("KEY_PREFIX", &prefix), ("REDIS_URL", upstream)]).await;
    let through_relay = Harness::with(&[("KEY_PREFIX", &prefix), ("REDIS_URL", &relay.url)]).await;
    (direct, through_relay)
}

#[tokio::test]
async fn a_fresh_token_costs_one_round_trip_cold_and_warm() {
    let relay = Relay::start().await;
    let (direct, h) = relayed(&relay).await;
    direct
        .seed(&tokens("access-0", "refresh-0", START + 1200, START + 86_400))
        .await;

    let cold = h.call(Route::TOKEN, "token").await;
    assert_eq!(cold.status, 200, "{}", cold.body);
    assert_eq!(relay.turns(), 1, "the first call: connect, then one read");

    for served in 2..=4 {
        let warm = h.call(Route::TOKEN, "token").await;
        assert_eq!(warm.status, 200, "{}", warm.body);
        assert_eq!(relay.turns(), served, "each warm call: one read");
    }
}

#[tokio::test]
async fn verify_reads_and_lists_the_connections_in_one_round_trip() {
    // A Redis of its own: in the shared one, other tests' keys would take SCAN several batches.
    let redis = OwnRedis::start();
    let relay = Relay::to(&redis.url()).await;
    let (direct, h) = relayed_to(&relay, &redis.url()).await;
    direct
        .seed(&tokens("access-0", "refresh-0", START + 1200, START + 86_400))
        .await;
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);
    // The deployment's first listing builds the connection index from a SCAN, once.
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 200);

    let before = relay.turns();
    let reply = h.call(Route::VERIFY, "verify").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["connections"][0]["status"], "valid");
    assert_eq!(relay.turns() - before, 1, "the read and the listing go out together");
}

#[tokio::test]
async fn login_and_a_refused_key_never_reach_redis() {
    let relay = Relay::start().await;
    let (_direct, h) = relayed(&relay).await;

    assert_eq!(h.call(Route::LOGIN, "login").await.status, 200);
    assert_eq!(h.call(Route::TOKEN, "token-wrong-key").await.status, 401);
    assert_eq!(relay.turns(), 0);
}

#[tokio::test]
async fn an_early_connect_leaves_the_first_call_only_its_read() {
    let relay = Relay::start().await;
    let (direct, h) = relayed(&relay).await;
    direct
        .seed(&tokens("access-0", "refresh-0", START + 1200, START + 86_400))
        .await;

    h.app.store.connect_early();
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.connections() == 0 {
        assert!(Instant::now() < deadline, "the early connect never reached Redis");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(relay.turns(), 0, "connecting sends nothing");

    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);
    assert_eq!(relay.connections(), 1, "the calls used the early connection");
    assert_eq!(relay.turns(), 2);
}

/// An early connect that fails costs nothing: calls answer 503 while Redis is down, and the first
/// call after it is back connects by itself.
#[tokio::test]
async fn a_failed_early_connect_is_retried_by_the_first_call() {
    let redis = OwnRedis::start();
    let prefix = unique_prefix();
    let seeder = Harness::with(&[("REDIS_URL", &redis.url()), ("KEY_PREFIX", &prefix)]).await;
    seeder
        .seed(&tokens("access-0", "refresh-0", START + 1200, START + 86_400))
        .await;
    redis.stop();

    let h = Harness::with(&[("REDIS_URL", &redis.url()), ("KEY_PREFIX", &prefix)]).await;
    h.app.store.connect_early();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let down = h.call(Route::TOKEN, "token").await;
    assert_eq!(down.status, 503, "{}", down.body);

    redis.restart();
    let up = h.call(Route::TOKEN, "token").await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.json()["access_token"], "access-0");
}

/// A refresh whose write reached Redis but whose answer was lost with the connection: the retry
/// finds the pair it wrote, so the refresh counts as stored, not as lost to another writer.
#[tokio::test]
async fn a_write_whose_answer_was_lost_is_recognized_as_stored() {
    let relay = Relay::start().await;
    let (direct, mut h) = relayed(&relay).await;
    let metrics = h.capture_metrics();
    direct
        .seed(&tokens("access-0", "refresh-0", START, START + 86_400))
        .await;
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::from_millis(300)).await;

    // Armed while the provider holds the refresh: the next thing Redis answers is the write.
    let lose = relay.lose_next_reply.clone();
    let arm = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        lose.store(true, Ordering::SeqCst);
    });
    let reply = h.call(Route::TOKEN, "token").await;
    arm.await.unwrap();

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["access_token"], "access-1");
    assert_eq!(direct.stored_tokens().await.access_token.expose(), "access-1");
    assert_eq!(relay.connections(), 2, "the lost answer cost the connection");
    let outcomes: Vec<String> = metrics
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|metric| metric["Outcome"].as_str().map(str::to_owned))
        .collect();
    assert!(outcomes.iter().all(|outcome| outcome == "refreshed"), "{outcomes:?}");
    assert!(!outcomes.is_empty());
}

/// A Redis that answers every command with `reply`, as one does while it loads its data after a
/// restart, or as a replica does during a failover.
async fn redis_answering(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(read) = client.read(&mut buffer).await {
                    if read == 0 || client.write_all(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_redis_loading_its_data_or_in_a_failover_is_503_not_500() {
    for reply in [
        &b"-LOADING Redis is loading the dataset in memory\r\n"[..],
        b"-READONLY You can't write against a read only replica.\r\n",
        b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n",
        b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
    ] {
        let label = String::from_utf8_lossy(reply).trim().to_owned();
        let h = Harness::with(&[("REDIS_URL", &redis_answering(reply).await)]).await;
        for (route, event) in [(Route::TOKEN, "token"), (Route::VERIFY, "verify")] {
            let answer = h.call(route, event).await;
            assert_eq!(answer.status, 503, "{label}, {event}: {}", answer.body);
            assert_eq!(answer.error(), "store_unavailable", "{label}, {event}");
        }
    }
}
