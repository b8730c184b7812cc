//! Encryption at rest: what reaches the store is sealed, bound to its key, and readable across a
//! key rotation; what does not open is an error that changes nothing.

mod common;

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, aead::Aead, aead::Payload};
use common::*;
use token_broker::{
    base::{
        record::ConnectionRecord,
        sealing::{Sealer, parse_key},
        store::{Expect, Store},
    },
    http::routes::Route,
    oauth::keepalive,
};

const KEY_1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

async fn raw(h: &Harness, key: &str) -> Vec<u8> {
    h.app.store.load(key).await.unwrap().unwrap().data
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn stored_tokens_and_login_states_are_sealed() {
    let prefix = unique_prefix();
    let h = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_1), ("KEY_PREFIX", &prefix)]).await;
    let fake = Arc::new(RotatingProvider::default());
    fake.mount(&h.provider, Duration::ZERO).await;

    let login = h.call(Route::LOGIN, "login-json").await;
    let states = h.app.store.keys(&format!("{prefix}:login-state:")).await.unwrap();
    assert_eq!(states.len(), 1);
    let state_record = raw(&h, &states[0]).await;
    assert!(state_record.starts_with(b"TBX2"));
    assert!(!contains(&state_record, "code_verifier"));

    let url = reqwest::Url::parse(login.json()["authorization_url"].as_str().unwrap()).unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let callback = h
        .call_request(
            Route::CALLBACK,
            event_with_query("callback", &format!("code=c&state={state}")),
        )
        .await;
    assert_eq!(callback.status, 200, "{}", callback.body);

    let record = raw(&h, &h.tokens_key()).await;
    assert!(record.starts_with(b"TBX2"));
    for plain in ["access-1", "refresh-1", "Bearer", "access_token"] {
        assert!(!contains(&record, plain), "{plain} readable in the store");
    }
    assert_eq!(h.call(Route::TOKEN, "token").await.json()["access_token"], "access-1");
    assert_eq!(h.call(Route::VERIFY, "verify").await.status, 200);
}

#[tokio::test]
async fn a_record_copied_to_another_key_does_not_open_and_is_left_alone() {
    let h = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_1)]).await;
    h.seed(&tokens("access-0", "refresh-0", START + 600, START + 86_400))
        .await;
    let sealed = raw(&h, &h.tokens_key()).await;
    let other = h.app.keys.tokens("other");
    h.app
        .store
        .write(&other, token_broker::base::store::Expect::Any, &sealed, None)
        .await
        .unwrap();

    let reply = h
        .call_request(Route::TOKEN, event_with_query("token", "connection=other"))
        .await;

    assert_eq!(reply.status, 500);
    assert_eq!(reply.error(), "store_unreadable");
    assert_eq!(raw(&h, &other).await, sealed);
    assert_eq!(h.call(Route::TOKEN, "token").await.status, 200);
}

#[tokio::test]
async fn old_keys_keep_working_after_rotation_and_new_writes_use_the_new_key() {
    let prefix = unique_prefix();
    let before = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_1), ("KEY_PREFIX", &prefix)]).await;
    before
        .seed(&tokens("access-0", "refresh-0", START, START + 86_400))
        .await;
    let sealed_with_1 = raw(&before, &before.tokens_key()).await;

    let after = Harness::with(&[
        ("TOKEN_ENCRYPTION_KEY", KEY_2),
        ("TOKEN_ENCRYPTION_KEYS", KEY_1),
        ("KEY_PREFIX", &prefix),
    ])
    .await;
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&after.provider, Duration::ZERO).await;
    // Reads the old record, refreshes, writes the new pair under the new key.
    assert_eq!(
        after.call(Route::TOKEN, "token").await.json()["access_token"],
        "access-1"
    );
    let sealed_with_2 = raw(&after, &after.tokens_key()).await;
    assert_ne!(sealed_with_1[4..8], sealed_with_2[4..8], "the key id did not change");

    // A deployment that still has only the old key cannot read the new record: rotation must
    // reach every function before the old key is dropped.
    let stale = before.call(Route::VERIFY, "verify").await;
    assert_eq!(stale.status, 500);
    assert!(
        stale.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("left as it is")
    );
}

#[tokio::test]
async fn an_unknown_key_or_a_plaintext_record_is_500_and_never_overwritten() {
    let prefix = unique_prefix();
    let writer = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_2), ("KEY_PREFIX", &prefix)]).await;
    writer
        .seed(&tokens("access-0", "refresh-0", START, START + 86_400))
        .await;
    let sealed = raw(&writer, &writer.tokens_key()).await;
    let reader = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_1), ("KEY_PREFIX", &prefix)]).await;

    for (route, event) in [
        (Route::TOKEN, "token"),
        (Route::VERIFY, "verify"),
        (Route::REVOKE, "revoke"),
    ] {
        let reply = reader.call(route, event).await;
        assert_eq!(reply.status, 500, "{event}");
        assert_eq!(reply.error(), "store_unreadable");
    }
    assert_eq!(raw(&reader, &reader.tokens_key()).await, sealed);
    assert!(reader.token_requests().await.is_empty());

    // A plaintext record where sealed ones are expected could have been planted by anyone with
    // write access to the store.
    let plain = Harness::with(&[("KEY_PREFIX", &prefix)]).await;
    let other = unique_prefix();
    let planted = Harness::with(&[("KEY_PREFIX", &other)]).await;
    planted
        .seed(&tokens("planted", "planted", START + 600, START + 86_400))
        .await;
    let encrypted = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_1), ("KEY_PREFIX", &other)]).await;
    let reply = encrypted.call(Route::TOKEN, "token").await;
    assert_eq!(reply.status, 500);
    assert!(!reply.body.contains("planted"));
    // And a sealed record is no token to a deployment without keys: it is refused, not garbage.
    let reply = plain.call(Route::TOKEN, "token").await;
    assert_eq!((reply.status, reply.error().as_str()), (500, "store_unreadable"));
}

/// A harness as the deployed `verify` function is: the same store, no encryption key.
async fn keyless(prefix: &str) -> Harness {
    Harness::with(&[("KEY_PREFIX", prefix)]).await
}

fn verify_bodies(reply: &Reply) -> (u16, serde_json::Value) {
    (reply.status, reply.json())
}

#[tokio::test]
async fn verify_without_the_key_reads_the_health_and_never_the_tokens() {
    let prefix = unique_prefix();
    let keyed = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_1), ("KEY_PREFIX", &prefix)]).await;
    let keyless = keyless(&prefix).await;
    keyed
        .seed(&tokens("access-0", "refresh-0", START + 600, START + 86_400))
        .await;
    keyed
        .seed_connection("expired", &tokens("access-e", "refresh-e", START - 60, START + 86_400))
        .await;
    keyed
        .put_in(
            "rejected",
            &ConnectionRecord::ReauthorizationRequired {
                reason: "the provider rejected the refresh token (invalid_grant)".into(),
                since: START - 5,
            },
        )
        .await;

    // The same answers as a function that opens the records, for the listing and by name.
    for query in ["", "connection=default", "connection=expired", "connection=rejected"] {
        let event = || event_with_query("verify", query);
        let with_key = keyed.call_request(Route::VERIFY, event()).await;
        let without = keyless.call_request(Route::VERIFY, event()).await;
        assert_eq!(verify_bodies(&without), verify_bodies(&with_key), "{query}");
    }
    let listed = keyless.call(Route::VERIFY, "verify").await.json();
    assert_eq!(listed["status"], "valid");
    assert_eq!(listed["access_token_expires_at"], START + 600);
    assert_eq!(listed["scope"], "read");
    let states = listed_states(&listed);
    for expected in [
        ("default", "valid"),
        ("expired", "access_token_expired"),
        ("rejected", "refresh_token_rejected"),
    ] {
        assert!(states.contains(&(expected.0.into(), expected.1.into())), "{states:?}");
    }

    // What is in clear is the health; the tokens and their type are not.
    let record = raw(&keyed, &keyed.tokens_key()).await;
    assert!(contains(&record, "\"refresh_expires_at\""));
    for sealed in ["access-0", "refresh-0", "Bearer", "access_token"] {
        assert!(!contains(&record, sealed), "{sealed} readable in the store");
    }
    // Nor can a function without the key serve a token from it.
    let refused = keyless.call(Route::TOKEN, "token").await;
    assert_eq!((refused.status, refused.error().as_str()), (500, "store_unreadable"));
    assert!(!refused.body.contains("access-0"));
}

#[tokio::test]
async fn a_changed_clear_part_is_refused_by_every_function_holding_the_key() {
    let prefix = unique_prefix();
    let keyed = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_1), ("KEY_PREFIX", &prefix)]).await;
    keyed
        .seed(&tokens("access-0", "refresh-0", START - 60, START + 86_400))
        .await;
    let sealed = raw(&keyed, &keyed.tokens_key()).await;
    // A later refresh deadline, same length: what someone with write access to the store might
    // try, to keep a monitor quiet or to pass off a record as fresh.
    let was = (START + 86_400).to_string();
    let forged = (START + 96_400).to_string();
    let at = sealed
        .windows(was.len())
        .position(|w| w == was.as_bytes())
        .expect("the deadline is in clear");
    let mut changed = sealed.clone();
    changed[at..at + was.len()].copy_from_slice(forged.as_bytes());
    keyed
        .app
        .store
        .write(&keyed.tokens_key(), Expect::Any, &changed, None)
        .await
        .unwrap();

    // Verify without the key can only report what it reads, the README says so; the functions
    // with the key notice, refuse, and leave the record for an operator to look at.
    let seen = keyless(&prefix).await.call(Route::VERIFY, "verify").await;
    assert_eq!(seen.json()["refresh_token_expires_at"], START + 96_400);
    for (route, event) in [(Route::TOKEN, "token"), (Route::VERIFY, "verify")] {
        let reply = keyed.call(route, event).await;
        assert_eq!(
            (reply.status, reply.error().as_str()),
            (500, "store_unreadable"),
            "{event}"
        );
    }
    let pass = keepalive::run(&keyed.app).await.unwrap();
    assert_eq!(pass.connections[0].outcome, "failed");
    assert_eq!(raw(&keyed, &keyed.tokens_key()).await, changed);
    assert!(keyed.token_requests().await.is_empty());
}

/// `plaintext` sealed as the earlier layout (`TBX1`) sealed it: no clear part, the store key alone
/// as associated data.
fn sealed_by_an_earlier_version(key: &str, store_key: &str, plaintext: &[u8]) -> Vec<u8> {
    let bytes = STANDARD.decode(key).unwrap();
    let id = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let nonce = [7u8; 12];
    let cipher = ChaCha20Poly1305::new_from_slice(&bytes).unwrap();
    let payload = Payload {
        msg: plaintext,
        aad: store_key.as_bytes(),
    };
    let sealed = cipher.encrypt(&Nonce::from(nonce), payload).unwrap();
    [&b"TBX1"[..], &id.as_ref()[..4], &nonce, &sealed].concat()
}

async fn keepalive_rewrites_old_layouts_and_old_keys<S: Store>(
    rotated: Harness<S>,
    only_new: Harness<S>,
    keyless: Harness<S>,
) {
    // Not due for a refresh: nothing but the rewrite can change them.
    let fresh = ConnectionRecord::Active(tokens("access-0", "refresh-0", START + 600, START + 7_776_000));
    let old_layout = rotated.app.keys.tokens("old-layout");
    let data = sealed_by_an_earlier_version(KEY_1, &old_layout, &fresh.encode());
    let first = rotated
        .app
        .store
        .write(&old_layout, Expect::Any, &data, None)
        .await
        .unwrap()
        .unwrap();
    let old_key = rotated.app.keys.tokens("old-key");
    let sealed_with_1 = Sealer::new(&[parse_key(KEY_1).unwrap()])
        .seal(&old_key, &fresh.health().encode(), fresh.encode())
        .unwrap();
    rotated
        .app
        .store
        .write(&old_key, Expect::Any, &sealed_with_1, None)
        .await
        .unwrap();

    // Before: the earlier layout opens for a key holder but tells verify without the key nothing.
    let by_name = |name: &str| event_with_query("verify", &format!("connection={name}"));
    assert_eq!(
        rotated.call_request(Route::VERIFY, by_name("old-layout")).await.status,
        200
    );
    let blind = keyless.call_request(Route::VERIFY, by_name("old-layout")).await;
    assert_eq!((blind.status, blind.error().as_str()), (500, "store_unreadable"));
    // And only the rotated deployment opens what the old key sealed.
    assert_eq!(
        only_new.call_request(Route::VERIFY, by_name("old-key")).await.status,
        500
    );

    let pass = keepalive::run(&rotated.app).await.unwrap();
    for report in &pass.connections {
        assert_eq!(
            (report.outcome.as_str(), report.resealed),
            ("not_due", true),
            "{report:?}"
        );
    }
    assert_eq!(pass.connections.len(), 2);

    let rewritten = rotated.app.store.load(&old_layout).await.unwrap().unwrap();
    assert_eq!(rewritten.generation, first + 1);
    assert!(rewritten.data.starts_with(b"TBX2"));
    for name in ["old-layout", "old-key"] {
        assert_eq!(
            keyless.call_request(Route::VERIFY, by_name(name)).await.status,
            200,
            "{name}"
        );
        // The new key alone opens them now, with what they held before.
        let served = only_new
            .call_request(Route::TOKEN, event_with_query("token", &format!("connection={name}")))
            .await;
        assert_eq!(served.json()["access_token"], "access-0", "{name}");
    }

    // Nothing left to rewrite: a second pass writes nothing.
    let again = keepalive::run(&rotated.app).await.unwrap();
    assert!(again.connections.iter().all(|r| !r.resealed));
    assert_eq!(
        rotated.app.store.load(&old_layout).await.unwrap().unwrap().generation,
        first + 1
    );
    assert!(rotated.token_requests().await.is_empty());
}

#[tokio::test]
async fn keepalive_rewrites_old_layouts_and_old_keys_on_redis() {
    let prefix = unique_prefix();
    let rotated = Harness::with(&[
        ("TOKEN_ENCRYPTION_KEY", KEY_2),
        ("TOKEN_ENCRYPTION_KEYS", KEY_1),
        ("KEY_PREFIX", &prefix),
    ])
    .await;
    let only_new = Harness::with(&[("TOKEN_ENCRYPTION_KEY", KEY_2), ("KEY_PREFIX", &prefix)]).await;
    keepalive_rewrites_old_layouts_and_old_keys(rotated, only_new, keyless(&prefix).await).await;
}

#[tokio::test]
async fn keepalive_rewrites_old_layouts_and_old_keys_on_dynamodb() {
    let prefix = unique_prefix();
    let rotated = Harness::dynamodb(&[
        ("TOKEN_ENCRYPTION_KEY", KEY_2),
        ("TOKEN_ENCRYPTION_KEYS", KEY_1),
        ("KEY_PREFIX", &prefix),
    ])
    .await;
    let only_new = Harness::dynamodb(&[("TOKEN_ENCRYPTION_KEY", KEY_2), ("KEY_PREFIX", &prefix)]).await;
    let keyless = Harness::dynamodb(&[("KEY_PREFIX", &prefix)]).await;
    keepalive_rewrites_old_layouts_and_old_keys(rotated, only_new, keyless).await;
}

#[tokio::test]
async fn a_rewrite_never_races_a_refresh_in_flight() {
    let prefix = unique_prefix();
    let rotated = Harness::with(&[
        ("TOKEN_ENCRYPTION_KEY", KEY_2),
        ("TOKEN_ENCRYPTION_KEYS", KEY_1),
        ("KEY_PREFIX", &prefix),
    ])
    .await;
    let fresh = ConnectionRecord::Active(tokens("access-0", "refresh-0", START + 600, START + 7_776_000));
    let key = rotated.tokens_key();
    let data = sealed_by_an_earlier_version(KEY_1, &key, &fresh.encode());
    rotated.app.store.write(&key, Expect::Any, &data, None).await.unwrap();

    // Another instance is refreshing: its write is conditional on the generation it read, which a
    // rewrite would move on, so the rewrite waits for a later pass.
    assert!(
        rotated
            .app
            .store
            .try_lock(&rotated.lock_key(), "refresher", Duration::from_secs(30))
            .await
            .unwrap()
    );
    let pass = keepalive::run(&rotated.app).await.unwrap();
    assert!(!pass.connections[0].resealed);
    assert_eq!(raw(&rotated, &key).await, data);

    rotated
        .app
        .store
        .unlock(&rotated.lock_key(), "refresher")
        .await
        .unwrap();
    let pass = keepalive::run(&rotated.app).await.unwrap();
    assert!(pass.connections[0].resealed);
    // The rewrite released the lock it took.
    assert!(
        rotated
            .app
            .store
            .try_lock(&rotated.lock_key(), "next", Duration::from_secs(30))
            .await
            .unwrap()
    );
}
