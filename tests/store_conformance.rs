//! The contract every store backend keeps, run unchanged against Redis (one server and a
//! cluster), DynamoDB and the embedded store.
//! The refresh guarantees rest on exactly these properties.

#![cfg(feature = "local")]

mod common;

use std::{sync::Arc, time::Duration};

use token_broker::{
    base::store::{EmbeddedStore, Expect, Held, Lock, RedisStore, Store},
    base::{layout::Layout, secret::Secret},
};

/// Keys unique to one test, so backends can be shared between tests. They share one hash tag,
/// as a deployment's keys do on a Redis Cluster: a script may touch any two of them.
fn key(name: &str) -> String {
    format!("{{conformance}}:{}:{name}", common::unique_prefix())
}

async fn absent_key_loads_as_none(store: impl Store) {
    assert_eq!(store.load(&key("none")).await.unwrap(), None);
}

async fn writes_count_generations_from_one(store: impl Store) {
    let k = key("gen");
    assert_eq!(store.write(&k, Expect::Any, b"one", None).await.unwrap(), Some(1));
    assert_eq!(store.write(&k, Expect::Any, b"two", None).await.unwrap(), Some(2));
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!((loaded.generation, loaded.data.as_slice()), (2, &b"two"[..]));
}

async fn conditional_write_succeeds_on_the_current_generation(store: impl Store) {
    let k = key("cas");
    store.write(&k, Expect::Any, b"one", None).await.unwrap();
    assert_eq!(
        store.write(&k, Expect::Generation(1), b"two", None).await.unwrap(),
        Some(2)
    );
    assert_eq!(store.load(&k).await.unwrap().unwrap().data, b"two");
}

async fn stale_writer_is_rejected_and_changes_nothing(store: impl Store) {
    let k = key("stale");
    store.write(&k, Expect::Any, b"one", None).await.unwrap();
    store.write(&k, Expect::Generation(1), b"two", None).await.unwrap();
    assert_eq!(
        store.write(&k, Expect::Generation(1), b"old", None).await.unwrap(),
        None
    );
    let loaded = store.load(&k).await.unwrap().unwrap();
    assert_eq!((loaded.generation, loaded.data.as_slice()), (2, &b"two"[..]));
    // Expecting a generation of a key that does not exist fails too.
    assert_eq!(
        store
            .write(&key("nothing"), Expect::Generation(1), b"x", None)
            .await
            .unwrap(),
        None
    );
}

async fn exactly_one_of_many_concurrent_conditional_writers_wins(store: impl Store + Clone + 'static) {
    let k = Arc::new(key("race"));
    store.write(&k, Expect::Any, b"start", None).await.unwrap();
    let writers = (0..16).map(|i| {
        let (store, k) = (store.clone(), k.clone());
        tokio::spawn(async move {
            store
                .write(&k, Expect::Generation(1), format!("w{i}").as_bytes(), None)
                .await
        })
    });
    let mut wins = 0;
    for writer in writers {
        if writer.await.unwrap().unwrap().is_some() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.load(&k).await.unwrap().unwrap().generation, 2);
}

async fn entries_expire_after_their_ttl(store: impl Store) {
    let k = key("ttl");
    let forever = key("forever");
    store
        .write(&k, Expect::Any, b"short", Some(Duration::from_millis(150)))
        .await
        .unwrap();
    store.write(&forever, Expect::Any, b"long", None).await.unwrap();
    assert!(store.load(&k).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert!(store.load(&forever).await.unwrap().is_some());
    // A write after expiry starts again, and a conditional write on the expired one fails.
    assert_eq!(
        store.write(&k, Expect::Generation(1), b"late", None).await.unwrap(),
        None
    );
    assert_eq!(store.write(&k, Expect::Any, b"new", None).await.unwrap(), Some(1));
}

async fn a_ttl_is_replaced_by_the_next_write(store: impl Store) {
    let k = key("ttl-replace");
    store
        .write(&k, Expect::Any, b"short", Some(Duration::from_millis(150)))
        .await
        .unwrap();
    store
        .write(&k, Expect::Generation(1), b"long", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.load(&k).await.unwrap().unwrap().data, b"long");
}

async fn a_lock_has_one_holder_until_released_by_it(store: impl Store) {
    let k = key("lock");
    let ttl = Duration::from_secs(30);
    assert!(store.try_lock(&k, "alice", ttl).await.unwrap());
    assert!(!store.try_lock(&k, "bob", ttl).await.unwrap());
    assert!(!store.try_lock(&k, "alice", ttl).await.unwrap());
    // Only the owner's release counts.
    store.unlock(&k, "bob").await.unwrap();
    assert!(!store.try_lock(&k, "bob", ttl).await.unwrap());
    store.unlock(&k, "alice").await.unwrap();
    assert!(store.try_lock(&k, "bob", ttl).await.unwrap());
}

async fn an_abandoned_lock_expires_on_its_own(store: impl Store) {
    let k = key("lock-expiry");
    assert!(store.try_lock(&k, "crashed", Duration::from_millis(150)).await.unwrap());
    assert!(!store.try_lock(&k, "next", Duration::from_secs(30)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.try_lock(&k, "next", Duration::from_secs(30)).await.unwrap());
    // The crashed holder's late release does not free the new holder's lock.
    store.unlock(&k, "crashed").await.unwrap();
    assert!(!store.try_lock(&k, "third", Duration::from_secs(30)).await.unwrap());
}

async fn concurrent_lock_attempts_have_one_winner(store: impl Store + Clone + 'static) {
    let k = Arc::new(key("lock-race"));
    let attempts = (0..16).map(|i| {
        let (store, k) = (store.clone(), k.clone());
        tokio::spawn(async move { store.try_lock(&k, &format!("owner-{i}"), Duration::from_secs(30)).await })
    });
    let mut winners = 0;
    for attempt in attempts {
        if attempt.await.unwrap().unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

async fn a_lock_is_taken_only_while_the_record_is_current(store: impl Store) {
    let (record, lock) = (key("guarded"), key("guarded-lock"));
    let ttl = Duration::from_secs(30);
    let alice = Held {
        key: &lock,
        owner: "alice",
    };
    let bob = Held {
        key: &lock,
        owner: "bob",
    };
    // No record: nothing to guard, and the lock stays free.
    assert_eq!(
        store.lock_if_current(alice, ttl, &record, 1).await.unwrap(),
        Lock::Changed
    );
    store.write(&record, Expect::Any, b"v1", None).await.unwrap();
    store.write(&record, Expect::Generation(1), b"v2", None).await.unwrap();
    // A caller that read generation 1 is told it changed, and takes no lock...
    assert_eq!(
        store.lock_if_current(alice, ttl, &record, 1).await.unwrap(),
        Lock::Changed
    );
    // ...so one that read generation 2 gets it, and others, even at generation 2, do not.
    assert_eq!(store.lock_if_current(bob, ttl, &record, 2).await.unwrap(), Lock::Taken);
    assert_eq!(store.lock_if_current(alice, ttl, &record, 2).await.unwrap(), Lock::Held);
    assert_eq!(store.lock_if_current(bob, ttl, &record, 2).await.unwrap(), Lock::Held);
    assert!(!store.try_lock(&lock, "carol", ttl).await.unwrap());
    store.unlock(&lock, "bob").await.unwrap();
    assert!(store.try_lock(&lock, "carol", ttl).await.unwrap());
}

async fn a_write_releases_its_lock_whether_stored_or_refused(store: impl Store) {
    let (record, lock) = (key("released"), key("released-lock"));
    let ttl = Duration::from_secs(30);
    let alice = Held {
        key: &lock,
        owner: "alice",
    };
    store.write(&record, Expect::Any, b"v1", None).await.unwrap();

    assert_eq!(
        store.lock_if_current(alice, ttl, &record, 1).await.unwrap(),
        Lock::Taken
    );
    let written = store
        .write_unlocking(&record, Expect::Generation(1), b"v2", None, alice)
        .await;
    assert_eq!(written.unwrap(), Some(2));
    assert_eq!(store.load(&record).await.unwrap().unwrap().data, b"v2");
    assert!(
        store.try_lock(&lock, "bob", ttl).await.unwrap(),
        "released with the write"
    );

    // Bob's lock is not Alice's to release, stored or not; a refused write changes nothing.
    let refused = store
        .write_unlocking(&record, Expect::Generation(1), b"stale", None, alice)
        .await;
    assert_eq!(refused.unwrap(), None);
    assert_eq!(store.load(&record).await.unwrap().unwrap().data, b"v2");
    assert!(
        !store.try_lock(&lock, "carol", ttl).await.unwrap(),
        "bob still holds it"
    );
    let bob = Held {
        key: &lock,
        owner: "bob",
    };
    assert_eq!(
        store
            .write_unlocking(&record, Expect::Generation(1), b"stale", None, bob)
            .await
            .unwrap(),
        None
    );
    assert!(
        store.try_lock(&lock, "carol", ttl).await.unwrap(),
        "released although refused"
    );

    // A write that expects nothing writes and releases too.
    let carol = Held {
        key: &lock,
        owner: "carol",
    };
    let ttl_write = store
        .write_unlocking(&record, Expect::Any, b"v3", Some(ttl), carol)
        .await;
    assert_eq!(ttl_write.unwrap(), Some(3));
    assert!(store.try_lock(&lock, "dave", ttl).await.unwrap());
}

async fn binary_data_round_trips(store: impl Store) {
    let k = key("binary");
    let data: Vec<u8> = (0..=255).collect();
    store.write(&k, Expect::Any, &data, None).await.unwrap();
    assert_eq!(store.load(&k).await.unwrap().unwrap().data, data);
}

async fn take_returns_the_value_once(store: impl Store + Clone + 'static) {
    let k = Arc::new(key("take"));
    store.write(&k, Expect::Any, b"once", None).await.unwrap();
    let takers = (0..16).map(|_| {
        let (store, k) = (store.clone(), k.clone());
        tokio::spawn(async move { store.take(&k).await })
    });
    let mut taken = Vec::new();
    for taker in takers {
        if let Some(value) = taker.await.unwrap().unwrap() {
            taken.push(value.data);
        }
    }
    assert_eq!(taken, vec![b"once".to_vec()]);
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert_eq!(store.take(&key("never")).await.unwrap(), None);
}

async fn an_expired_value_cannot_be_taken(store: impl Store) {
    let k = key("take-expired");
    store
        .write(&k, Expect::Any, b"late", Some(Duration::from_millis(150)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.take(&k).await.unwrap(), None);
}

async fn delete_removes_and_reports_existence(store: impl Store) {
    let k = key("delete");
    store.write(&k, Expect::Any, b"x", None).await.unwrap();
    assert!(store.delete(&k).await.unwrap());
    assert_eq!(store.load(&k).await.unwrap(), None);
    assert!(!store.delete(&k).await.unwrap());
    // A conditional write cannot bring a deleted record back.
    assert_eq!(store.write(&k, Expect::Generation(1), b"y", None).await.unwrap(), None);
}

async fn keys_lists_live_records_under_a_prefix(store: impl Store) {
    let base = key("list");
    let glob = format!("{base}:with*glob?[chars]");
    for name in ["a", "b", "c"] {
        store
            .write(&format!("{base}:{name}"), Expect::Any, b"x", None)
            .await
            .unwrap();
    }
    store.write(&glob, Expect::Any, b"x", None).await.unwrap();
    store
        .write(
            &format!("{base}:gone"),
            Expect::Any,
            b"x",
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    store
        .write(&format!("{base}-sibling"), Expect::Any, b"x", None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut keys = store.keys(&format!("{base}:")).await.unwrap();
    keys.sort();
    let mut expected = vec![
        format!("{base}:a"),
        format!("{base}:b"),
        format!("{base}:c"),
        glob.clone(),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    // Glob characters in the prefix are literal.
    assert_eq!(store.keys(&format!("{base}:with*")).await.unwrap(), vec![glob]);
    assert!(store.keys(&key("nothing-here")).await.unwrap().is_empty());
}

async fn records_lists_live_records_with_their_data(store: impl Store) {
    let base = key("records");
    store
        .write(&format!("{base}:a"), Expect::Any, b"first", None)
        .await
        .unwrap();
    store
        .write(&format!("{base}:b"), Expect::Any, b"old", None)
        .await
        .unwrap();
    store
        .write(&format!("{base}:b"), Expect::Generation(1), &[0, 255, 10, 13], None)
        .await
        .unwrap();
    store
        .write(
            &format!("{base}:gone"),
            Expect::Any,
            b"x",
            Some(Duration::from_millis(100)),
        )
        .await
        .unwrap();
    store
        .write(&format!("{base}:deleted"), Expect::Any, b"x", None)
        .await
        .unwrap();
    store.delete(&format!("{base}:deleted")).await.unwrap();
    store
        .write(&format!("{base}-sibling"), Expect::Any, b"x", None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut records: Vec<(String, u64, Vec<u8>)> = store
        .records(&format!("{base}:"))
        .await
        .unwrap()
        .into_iter()
        .map(|(key, record)| {
            let record = record.unwrap();
            (key, record.generation, record.data)
        })
        .collect();
    records.sort();
    assert_eq!(
        records,
        vec![
            (format!("{base}:a"), 1, b"first".to_vec()),
            (format!("{base}:b"), 2, vec![0, 255, 10, 13]),
        ]
    );
    assert!(store.records(&key("nothing-here")).await.unwrap().is_empty());
}

fn redis() -> RedisStore {
    RedisStore::new(
        &Secret::new(common::redis_url()),
        false,
        Duration::from_secs(2),
        Layout::new("conformance"),
    )
    .unwrap()
}

fn redis_cluster() -> RedisStore {
    RedisStore::new(
        &Secret::new(common::redis_cluster_url()),
        true,
        Duration::from_secs(2),
        Layout::one_slot("conformance"),
    )
    .unwrap()
}

async fn dynamodb() -> token_broker::base::store::DynamoStore {
    common::dynamodb_store(Duration::from_secs(2)).await
}

/// Each test gets its own database under cargo's scratch directory for tests (target/tmp).
fn embedded() -> EmbeddedStore {
    EmbeddedStore::open(&common::scratch_dir("conformance")).unwrap()
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod redis_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::redis()).await })*
        }
        mod redis_cluster_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::redis_cluster()).await })*
        }
        mod embedded_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::embedded()).await })*
        }
        mod dynamodb_store {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case(super::dynamodb().await).await })*
        }
    };
}

conformance!(
    absent_key_loads_as_none,
    writes_count_generations_from_one,
    conditional_write_succeeds_on_the_current_generation,
    stale_writer_is_rejected_and_changes_nothing,
    exactly_one_of_many_concurrent_conditional_writers_wins,
    entries_expire_after_their_ttl,
    a_ttl_is_replaced_by_the_next_write,
    a_lock_has_one_holder_until_released_by_it,
    an_abandoned_lock_expires_on_its_own,
    concurrent_lock_attempts_have_one_winner,
    a_lock_is_taken_only_while_the_record_is_current,
    a_write_releases_its_lock_whether_stored_or_refused,
    binary_data_round_trips,
    take_returns_the_value_once,
    an_expired_value_cannot_be_taken,
    delete_removes_and_reports_existence,
    keys_lists_live_records_under_a_prefix,
    records_lists_live_records_with_their_data,
);

/// What only the embedded store promises: it is one process's file.
mod embedded_only {
    use super::*;

    #[tokio::test]
    async fn reopening_drops_the_locks_of_the_process_that_had_it_open() {
        let dir = common::scratch_dir("reopen-locks");
        let (record_key, lock_key) = (key("rec"), key("lock"));
        let store = EmbeddedStore::open(&dir).unwrap();
        let generation = store.write(&record_key, Expect::Any, b"kept", None).await.unwrap();
        assert!(
            store
                .try_lock(&lock_key, "dead", Duration::from_secs(60))
                .await
                .unwrap()
        );
        drop(store);

        let store = EmbeddedStore::open(&dir).unwrap();
        assert!(
            store
                .try_lock(&lock_key, "alive", Duration::from_secs(60))
                .await
                .unwrap()
        );
        let record = store.load(&record_key).await.unwrap().unwrap();
        assert_eq!(
            (Some(record.generation), record.data.as_slice()),
            (generation, &b"kept"[..])
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_database_file_is_owner_only_even_when_made_before() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = common::scratch_dir("file-mode");
        let store = EmbeddedStore::open(&dir).unwrap();
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let path = store.path().to_owned();
        drop(store);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = EmbeddedStore::open(&dir).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
