//! The listing of connections that `/verify` and keep-alive walk: exact on every store (nothing
//! revoked, expired or half-made is listed, nothing stored is missed), and on Redis read from an
//! index rather than a SCAN of the keyspace, which older deployments get built once.

mod common;

use std::time::Duration;

use common::*;
use token_broker::{
    base::{
        connection,
        record::ConnectionRecord,
        store::{Expect, Store},
    },
    http::routes::Route,
    oauth::keepalive::{self, Outcome},
};
use wiremock::{Mock, ResponseTemplate, matchers};

fn fresh() -> ConnectionRecord {
    ConnectionRecord::Active(tokens("access", "refresh", START + 1800, START + 86_400 * 60))
}

/// Through the real handler, as an operator would.
async fn revoke<S: Store>(h: &Harness<S>, name: &str) {
    let reply = h
        .call_request(Route::REVOKE, event_with_query("revoke", &format!("connection={name}")))
        .await;
    assert_eq!(reply.status, 200, "{name}: {}", reply.body);
}

async fn allow_revocation<S>(h: &Harness<S>) {
    Mock::given(matchers::method("POST"))
        .and(matchers::path(REVOCATION_PATH))
        .respond_with(ResponseTemplate::new(200))
        .mount(&h.provider)
        .await;
}

/// What the two listing callers see: `/verify`'s list and one keep-alive pass, by name.
async fn listed<S: Store>(h: &Harness<S>) -> (Vec<String>, Vec<String>) {
    let verify = h.call(Route::VERIFY, "verify").await;
    assert!(verify.status == 200 || verify.status == 404, "{}", verify.body);
    let mut from_verify: Vec<String> = verify.json()["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["connection"].as_str().unwrap().to_owned())
        .collect();
    from_verify.sort();
    let pass = keepalive::run(&h.app).await.unwrap();
    let mut from_keepalive: Vec<String> = pass.connections.iter().map(|r| r.connection.clone()).collect();
    from_keepalive.sort();
    (from_verify, from_keepalive)
}

async fn exact_under_revocation_expiry_and_logins<S: Store>(h: Harness<S>) {
    allow_revocation(&h).await;
    for name in ["a", "b", "c", "d", "e"] {
        h.put_in(name, &fresh()).await;
    }
    // One whose record expires on its own (a refresh token that ran out), one revoked, one
    // rewritten with a re-authorization mark (still a connection), and a pending login (not one).
    let short = h.app.keys.tokens("f");
    let sealed = h.app.seal_record(&short, &fresh()).unwrap();
    h.app
        .store
        .write(&short, Expect::Any, &sealed, Some(Duration::from_millis(300)))
        .await
        .unwrap();
    revoke(&h, "b").await;
    let mark = ConnectionRecord::ReauthorizationRequired {
        reason: "test".into(),
        since: START,
    };
    h.put_in("c", &mark).await;
    let login = h
        .call_request(Route::LOGIN, event_with_query("login-json", "connection=g"))
        .await;
    assert_eq!(login.status, 200, "{}", login.body);

    let names = connection::list(&h.app.store, &h.app.keys).await.unwrap();
    assert_eq!(names, ["a", "c", "d", "e", "f"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let names = connection::list(&h.app.store, &h.app.keys).await.unwrap();
    assert_eq!(names, ["a", "c", "d", "e"]);
    // A connection made again after it was revoked is listed again.
    h.put_in("b", &fresh()).await;
    assert_eq!(
        connection::list(&h.app.store, &h.app.keys).await.unwrap(),
        ["a", "b", "c", "d", "e"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lists_exactly_the_connections_there_are() {
    exact_under_revocation_expiry_and_logins(Harness::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_lists_exactly_the_connections_there_are() {
    exact_under_revocation_expiry_and_logins(Harness::cluster(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_lists_exactly_the_connections_there_are() {
    exact_under_revocation_expiry_and_logins(Harness::dynamodb(&[]).await).await;
}

#[cfg(feature = "local")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_lists_exactly_the_connections_there_are() {
    exact_under_revocation_expiry_and_logins(Harness::embedded(&[]).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_less_a_hundred_revoked() {
    ten_thousand_less_a_hundred(Harness::new().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_less_a_hundred_revoked_on_a_cluster() {
    ten_thousand_less_a_hundred(Harness::cluster(&[]).await).await;
}

async fn ten_thousand_less_a_hundred<S: Store>(h: Harness<S>) {
    allow_revocation(&h).await;
    let names: Vec<String> = (0..10_000).map(|i| format!("conn-{i:05}")).collect();
    for name in &names {
        h.put_in(name, &fresh()).await;
    }
    let revoked: Vec<&String> = names.iter().step_by(100).collect();
    for name in &revoked {
        revoke(&h, name).await;
    }
    let remaining: Vec<String> = names.iter().filter(|n| !revoked.contains(n)).cloned().collect();
    assert_eq!(remaining.len(), 9_900);

    let (from_verify, from_keepalive) = listed(&h).await;
    assert_eq!(from_verify, remaining);
    assert_eq!(from_keepalive, remaining);
    let pass = keepalive::run(&h.app).await.unwrap();
    assert!(pass.connections.iter().all(|r| r.outcome == Outcome::NotDue));
}

/// A deployment whose records were written before the index existed: the first listing builds
/// it from one SCAN, and from then on the index alone is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_before_the_index_are_adopted_once() {
    let h = Harness::new().await;
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // The shape this version and the ones before it write: a hash with `gen` and `data`.
    let put_raw = |name: &str| {
        let key = h.app.keys.tokens(name);
        let data = h.app.seal_record(&key, &fresh()).unwrap();
        let mut command = redis::cmd("HSET");
        command.arg(key).arg("gen").arg(1).arg("data").arg(data);
        command
    };
    let old: Vec<String> = (0..50).map(|i| format!("old-{i:02}")).collect();
    for name in &old {
        let _: i64 = put_raw(name).query_async(&mut redis).await.unwrap();
    }
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(h.app.keys.tokens("old-00"))
        .arg(86_400_000)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(connection::list(&h.app.store, &h.app.keys).await.unwrap(), old);

    // The index now exists, and what is written around it is not seen: no second SCAN.
    let _: i64 = put_raw("written-by-hand").query_async(&mut redis).await.unwrap();
    assert_eq!(connection::list(&h.app.store, &h.app.keys).await.unwrap(), old);
    // The store's own writes keep it.
    h.put_in("new", &fresh()).await;
    let mut expected = old.clone();
    expected.push("new".into());
    expected.sort();
    assert_eq!(connection::list(&h.app.store, &h.app.keys).await.unwrap(), expected);
    // The adopted entry keeps its record's expiry, and never-expiring ones never expire.
    let expiry: Option<f64> = redis::cmd("ZSCORE")
        .arg(h.app.keys.connection_index())
        .arg("old-00")
        .query_async(&mut redis)
        .await
        .unwrap();
    let day_from_now = (token_broker::base::clock::unix_millis() + 86_400_000) as f64;
    assert!((expiry.unwrap() - day_from_now).abs() < 60_000.0, "{expiry:?}");
    let forever: Option<String> = redis::cmd("ZSCORE")
        .arg(h.app.keys.connection_index())
        .arg("old-01")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(forever.as_deref(), Some("inf"));

    // Deleting the index is how an operator asks for it to be built again.
    let _: i64 = redis::cmd("DEL")
        .arg(h.app.keys.connection_index())
        .query_async(&mut redis)
        .await
        .unwrap();
    expected.push("written-by-hand".into());
    expected.sort();
    assert_eq!(connection::list(&h.app.store, &h.app.keys).await.unwrap(), expected);
}

/// A record key that something other than the broker overwrote with another type: `/verify`
/// lists it as unreadable, and every other connection as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_overwritten_with_another_type_is_listed_as_unreadable() {
    let h = Harness::new().await;
    for name in ["fine", "spoiled"] {
        h.put_in(name, &fresh()).await;
    }
    let mut redis = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("SET")
        .arg(h.app.keys.tokens("spoiled"))
        .arg("not a hash")
        .query_async(&mut redis)
        .await
        .unwrap();

    let verify = h.call(Route::VERIFY, "verify").await;

    let listed = listed_states(&verify.json());
    assert_eq!(
        listed,
        vec![
            ("fine".to_owned(), "valid".to_owned()),
            ("spoiled".to_owned(), "store_error".to_owned()),
        ],
        "{}",
        verify.body
    );
}
