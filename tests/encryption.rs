//! Encryption at rest: what reaches the store is sealed, bound to its key, and readable across a
//! key rotation; what does not open is an error that changes nothing.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use token_broker::{base::store::Store, http::routes::Route};

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
    assert!(state_record.starts_with(b"TBX1"));
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
    assert!(record.starts_with(b"TBX1"));
    for plain in ["access-1", "refresh-1", "Bearer", "format"] {
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
    // And a sealed record read by a deployment without keys is an error too, not garbage.
    assert_eq!(plain.call(Route::VERIFY, "verify").await.status, 500);
}
