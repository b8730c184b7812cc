//! What only a Redis Cluster meets: the master serving a deployment's slot is lost in the middle
//! of a refresh, and a replica takes over. Callers see 200 or 503, never anything else; the
//! provider is asked once; the rotated pair is not lost; and the store answers again once the
//! replica is promoted. (The store contract and the refresh guarantees run on a cluster in
//! `store_conformance.rs`, `refresh_guarantees.rs` and `connection_index.rs`.)

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use token_broker::http::routes::Route;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_lost_during_fifty_refreshing_calls() {
    let cluster = OwnCluster::start();
    let h = Arc::new(Harness::with(&[("REDIS_URL", &cluster.url()), ("REDIS_CLUSTER", "true")]).await);
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::from_millis(500)).await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let master = cluster.master_of(&h.tokens_key());

    let calls: Vec<_> = (0..50)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.call(Route::TOKEN, "token").await })
        })
        .collect();
    // The lock is taken and the refresh is at the provider: the master goes.
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.kill(master);
    let mut answered = std::collections::BTreeMap::new();
    for call in calls {
        let reply = call.await.unwrap();
        match reply.status {
            200 => assert_eq!(reply.json()["access_token"], "access-1"),
            503 => assert_eq!(reply.error(), "store_unavailable", "{}", reply.body),
            other => panic!("{other}: {}", reply.body),
        }
        *answered.entry(reply.status).or_insert(0) += 1;
    }
    assert!(answered.values().sum::<i32>() == 50, "{answered:?}");

    cluster.await_failover(&h.tokens_key(), master);
    // The client learns the new master from the first answers after the failover.
    let started = std::time::Instant::now();
    let after = loop {
        let reply = h.call(Route::TOKEN, "token").await;
        if reply.status != 503 || started.elapsed() > Duration::from_secs(10) {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(after.json()["access_token"], "access-1");
    assert_eq!(fake.refreshes(), 1, "one refresh reached the provider");
    assert_eq!(fake.rejected(), 0);
    let stored = h.stored_tokens().await;
    assert_eq!(Some(stored.refresh_token.expose().to_owned()), fake.current_refresh());
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 200);
}
