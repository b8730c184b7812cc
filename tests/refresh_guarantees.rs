//! What `/token` promises under concurrency and faults: one refresh in flight per connection
//! across every caller and process, no lost update, and stored tokens kept through every fault
//! but the provider's `invalid_grant`.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use token_broker::{
    base::{
        config::StoreConfig,
        layout::Layout,
        record::{ConnectionRecord, TokenSet},
        secret::Secret,
        store::{Expect, RedisStore, Store},
    },
    http::routes::Route,
};
use wiremock::ResponseTemplate;

async fn call_concurrently<S: Store + 'static>(h: &Arc<Harness<S>>, event: &'static str, n: usize) -> Vec<Reply> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.call(Route::TOKEN, event).await })
        })
        .collect();
    let mut replies = Vec::new();
    for call in calls {
        replies.push(call.await.unwrap());
    }
    replies
}

/// 50 callers at expiry against a provider that rotates refresh tokens and rejects a used one.
async fn fifty_callers_at_expiry<S: Store + 'static>(h: Harness<S>) {
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::from_millis(200)).await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let h = Arc::new(h);

    let replies = call_concurrently(&h, "token", 50).await;

    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["access_token"], "access-1");
    }
    assert_eq!(fake.refreshes(), 1, "more than one refresh reached the provider");
    assert_eq!(fake.rejected(), 0);
    assert_eq!(
        Some(h.stored_tokens().await.refresh_token.expose().to_owned()),
        fake.current_refresh()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshes_once_under_concurrent_calls_on_redis() {
    fifty_callers_at_expiry(Harness::new().await).await;
}

#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshes_once_under_concurrent_calls_on_a_redis_cluster() {
    fifty_callers_at_expiry(Harness::cluster(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshes_once_under_concurrent_calls_on_the_embedded_store() {
    fifty_callers_at_expiry(Harness::embedded(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshes_once_under_concurrent_calls_on_dynamodb() {
    fifty_callers_at_expiry(Harness::dynamodb(&[]).await).await;
}

/// 50 callers split over three `serve` processes sharing `store` (which `store_env` configures):
/// the lock is in the store, so it holds across processes as it does across Lambda instances.
#[cfg(feature = "local")]
async fn fifty_callers_over_three_processes<S: Store>(store: S, store_env: Vec<(String, String)>, one_slot: bool) {
    use common::process::*;

    let provider = wiremock::MockServer::start().await;
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&provider, Duration::from_millis(300)).await;
    let prefix = unique_prefix();
    // The processes run on the real clock: store a pair that expired a moment ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let layout = if one_slot {
        Layout::one_slot(&prefix)
    } else {
        Layout::new(&prefix)
    };
    let key = layout.tokens("default");
    let expired = TokenSet {
        issued_at: now - 1800,
        ..tokens("access-0", "refresh-0", now - 1, now + 86_400)
    };
    store
        .write(&key, Expect::Any, &ConnectionRecord::Active(expired).encode(), None)
        .await
        .unwrap();

    let mut servers = Vec::new();
    for n in 0..3 {
        let dir = scratch_dir(&format!("multi-{n}"));
        let mut env = local_env(&provider, closed_port(), &dir);
        env.extend(store_env.iter().cloned());
        env.push(("KEY_PREFIX".into(), prefix.clone()));
        servers.push(Arc::new(Server::start(&dir, &env).await));
    }
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let server = servers[i % servers.len()].clone();
            tokio::spawn(async move { server.get("/token", true).await })
        })
        .collect();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["access_token"], "access-1");
    }
    assert_eq!(fake.refreshes(), 1);
    assert_eq!(fake.rejected(), 0);
    let stored = store.load(&key).await.unwrap().unwrap();
    match ConnectionRecord::decode(&stored.data).unwrap() {
        ConnectionRecord::Active(tokens) => {
            assert_eq!(Some(tokens.refresh_token.expose().to_owned()), fake.current_refresh())
        }
        other => panic!("{other:?}"),
    }
    for server in servers {
        Arc::into_inner(server).unwrap().stop();
    }
}

/// A store only to seed the record with: the connection index is not what these tests are about.
#[cfg(feature = "local")]
fn seeding_store(url: &str, cluster: bool) -> RedisStore {
    let layout = Layout::new("seed");
    RedisStore::new(&Secret::new(url), cluster, Duration::from_secs(2), layout).unwrap()
}

#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshes_once_across_processes_sharing_redis() {
    let store = seeding_store(&redis_url(), false);
    fifty_callers_over_three_processes(store, vec![("REDIS_URL".into(), redis_url())], false).await;
}

#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshes_once_across_processes_sharing_a_redis_cluster() {
    let url = redis_cluster_url();
    let env = vec![
        ("REDIS_URL".into(), url.clone()),
        ("REDIS_CLUSTER".into(), "true".into()),
    ];
    fifty_callers_over_three_processes(seeding_store(&url, true), env, true).await;
}

#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refreshes_once_across_processes_sharing_dynamodb() {
    let env = dynamodb_vars().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    fifty_callers_over_three_processes(dynamodb_store(Duration::from_secs(2)).await, env, false).await;
}

#[tokio::test]
async fn a_lock_left_by_a_dead_holder_expires_and_the_next_caller_refreshes() {
    let h = Harness::new().await;
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::ZERO).await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    // An instance took the lock and died before refreshing.
    assert!(
        h.app
            .store
            .try_lock(&h.lock_key(), "dead-instance", Duration::from_millis(800))
            .await
            .unwrap()
    );

    let started = Instant::now();
    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["access_token"], "access-1");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "did not wait for the lock"
    );
    assert_eq!(fake.refreshes(), 1);
}

#[tokio::test]
async fn waiting_past_refresh_wait_is_503_with_retry_after() {
    let h = Harness::with(&[("REFRESH_WAIT", "1")]).await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let before = h.stored().await;
    assert!(
        h.app
            .store
            .try_lock(&h.lock_key(), "slow-instance", Duration::from_secs(30))
            .await
            .unwrap()
    );

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 503);
    assert_eq!(reply.error(), "refresh_in_progress");
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(h.stored().await, before);
    assert!(h.token_requests().await.is_empty());
}

#[tokio::test]
async fn a_waiting_caller_serves_a_still_valid_token_when_the_wait_runs_out() {
    let h = Harness::with(&[("REFRESH_WAIT", "1")]).await;
    h.seed(&tokens("access-0", "refresh-0", START + 30, START + 86_400))
        .await;
    assert!(
        h.app
            .store
            .try_lock(&h.lock_key(), "slow-instance", Duration::from_secs(30))
            .await
            .unwrap()
    );

    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["access_token"], "access-0");
}

/// The refresh lock vanishes mid-refresh (a Redis failover can lose it), a second caller
/// refreshes and stores its pair; the first caller's delayed write, conditional on the old
/// generation, is rejected.
#[tokio::test]
async fn a_stale_writer_cannot_overwrite_a_newer_pair() {
    a_stale_writer_cannot_overwrite_a_newer_pair_on(Harness::new().await).await;
}

#[tokio::test]
async fn a_stale_writer_cannot_overwrite_a_newer_pair_on_a_cluster() {
    a_stale_writer_cannot_overwrite_a_newer_pair_on(Harness::cluster(&[]).await).await;
}

async fn a_stale_writer_cannot_overwrite_a_newer_pair_on(h: Harness) {
    let h = Arc::new(h);
    SequencedProvider::mount(&h.provider, vec![Duration::from_millis(1500), Duration::ZERO]).await;
    let seeded_generation = h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;

    let slow = {
        let h = h.clone();
        tokio::spawn(async move { h.call(Route::TOKEN, "token").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.app
        .store
        .unlock(&h.lock_key(), &current_lock_owner(&h).await)
        .await
        .unwrap();
    let fast = h.call(Route::TOKEN, "token").await;
    let slow = slow.await.unwrap();

    assert_eq!(fast.json()["access_token"], "access-2");
    // The slow caller still gets the valid token it obtained...
    assert_eq!(slow.json()["access_token"], "access-1");
    // ...but the store keeps the newer pair, written once.
    let (generation, record) = h.stored().await.unwrap();
    assert_eq!(generation, seeded_generation + 1);
    match record {
        ConnectionRecord::Active(tokens) => assert_eq!(tokens.access_token.expose(), "access-2"),
        other => panic!("{other:?}"),
    }
}

/// The same race with a rotating provider: the second caller's refresh token was already used by
/// the first, so it gets `invalid_grant` and marks the connection; the first caller's pair holds
/// the provider's newest refresh token and replaces the mark.
#[tokio::test]
async fn a_lost_race_does_not_end_the_connection_when_a_newer_pair_exists() {
    a_lost_race_does_not_end_the_connection_when_a_newer_pair_exists_on(Harness::new().await).await;
}

#[tokio::test]
async fn a_lost_race_does_not_end_the_connection_when_a_newer_pair_exists_on_a_cluster() {
    a_lost_race_does_not_end_the_connection_when_a_newer_pair_exists_on(Harness::cluster(&[]).await).await;
}

async fn a_lost_race_does_not_end_the_connection_when_a_newer_pair_exists_on(h: Harness) {
    let h = Arc::new(h);
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::from_millis(1000)).await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;

    let slow = {
        let h = h.clone();
        tokio::spawn(async move { h.call(Route::TOKEN, "token").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.app
        .store
        .unlock(&h.lock_key(), &current_lock_owner(&h).await)
        .await
        .unwrap();
    let second = h.call(Route::TOKEN, "token").await;
    let first = slow.await.unwrap();

    assert_eq!(second.status, 401, "{}", second.body);
    assert_eq!(first.status, 200, "{}", first.body);
    let stored = h.stored_tokens().await;
    assert_eq!(Some(stored.refresh_token.expose().to_owned()), fake.current_refresh());
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 200);
}

async fn current_lock_owner(h: &Harness) -> String {
    let StoreConfig::Redis { url, cluster } = &h.app.config.store else {
        panic!("a Redis harness")
    };
    let get = redis::cmd("GET").arg(h.lock_key()).clone();
    let owner: Option<String> = if *cluster {
        let client = redis::cluster::ClusterClient::new([url.expose()]).unwrap();
        let mut connection = client.get_async_connection().await.unwrap();
        get.query_async(&mut connection).await.unwrap()
    } else {
        let client = redis::Client::open(url.expose()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        get.query_async(&mut connection).await.unwrap()
    };
    owner.expect("a refresh holds the lock")
}

/// `invalid_grant` for a refresh token that another instance rotated after our read: the store
/// is read again and the other instance's pair is served; nothing is marked.
#[tokio::test]
async fn invalid_grant_after_a_concurrent_rotation_serves_the_rotated_pair() {
    invalid_grant_after_a_concurrent_rotation_serves_the_rotated_pair_on(Harness::new().await).await;
}

#[tokio::test]
async fn invalid_grant_after_a_concurrent_rotation_serves_the_rotated_pair_on_a_cluster() {
    invalid_grant_after_a_concurrent_rotation_serves_the_rotated_pair_on(Harness::cluster(&[]).await).await;
}

async fn invalid_grant_after_a_concurrent_rotation_serves_the_rotated_pair_on(h: Harness) {
    let h = Arc::new(h);
    provider_answers(
        &h.provider,
        ResponseTemplate::new(400)
            .set_body_json(serde_json::json!({"error": "invalid_grant"}))
            .set_delay(Duration::from_millis(500)),
    )
    .await;
    let generation = h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;

    let call = {
        let h = h.clone();
        tokio::spawn(async move { h.call(Route::TOKEN, "token").await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Another instance's refresh lands while ours is at the provider.
    let rotated = ConnectionRecord::Active(tokens("access-9", "refresh-9", START + 1800, START + 86_400));
    h.app
        .store
        .write(&h.tokens_key(), Expect::Generation(generation), &rotated.encode(), None)
        .await
        .unwrap()
        .unwrap();
    let reply = call.await.unwrap();

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["access_token"], "access-9");
    assert_eq!(h.stored_tokens().await.refresh_token.expose(), "refresh-9");
}

#[tokio::test]
async fn min_ttl_refreshes_early_and_says_when_it_cannot_be_met() {
    let h = Harness::new().await;
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::ZERO).await;
    // Issued 799 s ago for the provider's usual 1799 s: 1000 s left.
    h.seed(&TokenSet {
        issued_at: START - 799,
        ..tokens("access-0", "refresh-0", START + 1000, START + 86_400)
    })
    .await;

    let reply = h
        .call_request(Route::TOKEN, event_with_query("token", "min_ttl=900"))
        .await;
    assert_eq!(reply.json()["access_token"], "access-0");
    assert!(reply.json().get("warning").is_none());

    let reply = h
        .call_request(Route::TOKEN, event_with_query("token", "min_ttl=1200"))
        .await;
    assert_eq!(reply.json()["access_token"], "access-1");
    assert_eq!(fake.refreshes(), 1);

    // More than the provider's 1799 s: served with a warning, and no refresh on every call.
    for _ in 0..3 {
        let reply = h
            .call_request(Route::TOKEN, event_with_query("token", "min_ttl=3600"))
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["access_token"], "access-1");
        assert!(
            reply.json()["warning"].as_str().unwrap().contains("1799"),
            "{}",
            reply.body
        );
    }
    assert_eq!(fake.refreshes(), 1);

    for bad in ["min_ttl=-1", "min_ttl=soon", "min_ttl=999999"] {
        let reply = h.call_request(Route::TOKEN, event_with_query("token", bad)).await;
        assert_eq!(reply.status, 400, "{bad}");
    }
}

#[tokio::test]
async fn a_ten_second_provider_stall_keeps_the_tokens_and_answers_503_at_the_timeout() {
    let h = Harness::new().await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let before = h.stored().await;
    provider_answers(
        &h.provider,
        ResponseTemplate::new(200)
            .set_body_json(grant_body("late", "late"))
            .set_delay(Duration::from_secs(10)),
    )
    .await;

    let started = Instant::now();
    let reply = h.call(Route::TOKEN, "token").await;

    assert_eq!(reply.status, 503);
    assert!(reply.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "PROVIDER_TIMEOUT was not applied"
    );
    assert_eq!(h.stored().await, before);
}

/// Redis stopped and started again under a steady stream of requests: 503 while it is down, 200
/// again afterwards from the same warm instance, without restarting anything.
#[tokio::test]
async fn a_redis_restart_gives_503s_then_recovers_without_a_process_restart() {
    let redis = OwnRedis::start();
    let h = Harness::with(&[("REDIS_URL", &redis.url())]).await;
    h.seed(&tokens("access-0", "refresh-0", START + 1800, START + 86_400))
        .await;
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);

    redis.stop();
    let mut during = Vec::new();
    for _ in 0..5 {
        during.push(h.call(Route::TOKEN, "token").await.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut recovered = false;
    while Instant::now() < deadline {
        if h.call(Route::TOKEN, "token").await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(during.iter().all(|status| *status == 503), "{during:?}");
    assert!(recovered, "the warm instance did not recover after Redis came back");
    assert_eq!(h.stored_tokens().await.access_token.expose(), "access-0");
}

/// By the time the new pair is written the provider has rotated the refresh token, so the stored
/// one is dead: a Redis that drops out at that moment must not cost the grant. The write waits
/// for Redis to come back.
#[tokio::test]
async fn a_redis_outage_after_a_rotation_keeps_the_new_pair() {
    let redis = Arc::new(OwnRedis::start());
    let h = Harness::with(&[("REDIS_URL", &redis.url())]).await;
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::from_millis(500)).await;

    // Down from while the provider holds the refresh until after it has answered.
    let outage = tokio::task::spawn_blocking({
        let redis = redis.clone();
        move || {
            std::thread::sleep(Duration::from_millis(150));
            redis.stop();
            std::thread::sleep(Duration::from_millis(750));
            redis.restart();
        }
    });
    let reply = h.call(Route::TOKEN, "token").await;
    outage.await.unwrap();

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["access_token"], "access-1");
    assert_eq!(fake.refreshes(), 1);
    let stored = h.stored_tokens().await;
    assert_eq!(stored.access_token.expose(), "access-1");
    assert_eq!(Some(stored.refresh_token.expose().to_owned()), fake.current_refresh());
}

/// A Redis that stays away through every retry: the caller gets 503, and the lost pair is
/// logged and counted, since the connection may now need a new login.
#[tokio::test]
async fn a_redis_outage_through_every_retry_is_503_and_counted_as_not_stored() {
    let redis = OwnRedis::start();
    let mut h = Harness::with(&[("REDIS_URL", &redis.url())]).await;
    let metrics = h.capture_metrics();
    h.seed(&tokens("access-0", "refresh-0", START, START + 86_400)).await;
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::from_millis(300)).await;

    let outage = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(100));
        redis.stop();
        redis
    });
    let started = Instant::now();
    let reply = h.call(Route::TOKEN, "token").await;
    let _redis = outage.await.unwrap();

    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.error(), "store_unavailable");
    assert!(started.elapsed() >= Duration::from_secs(2), "the write was not retried");
    assert_eq!(fake.refreshes(), 1);
    let lines = metrics.lock().unwrap().clone();
    assert!(
        lines.iter().any(|line| line.contains(r#""Outcome":"not_stored""#)),
        "{lines:?}"
    );
}
