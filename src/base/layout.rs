//! The store layout: every key the broker reads or writes is built here and nowhere else, so the
//! layout can be read (and changed) in one place. All keys start with `KEY_PREFIX`, which is what
//! lets several deployments share one store.
//!
//! | Key | Holds | Lives |
//! |---|---|---|
//! | `<prefix>:conn:<connection>:tokens` | the connection's record: its token pair or a re-authorization mark (sealed when encryption is on) | as long as its refresh token |
//! | `<prefix>:conn:<connection>:refresh-lock` | the owner of the connection's refresh lock | the lock's TTL |
//! | `<prefix>:login-state:<digest>` | a pending login: PKCE verifier and connection (sealed) | `LOGIN_STATE_TTL` |
//! | `<prefix>:connections` | Redis only: the index of connection names (see [`crate::base::store::RedisStore`]) | as long as any connection |
//! | `<prefix>:webhook:<event id>-<n>` | an event waiting for delivery to the `n`th webhook URL (sealed) | until delivered, at most 3 days |
//! | `<prefix>:webhook-raised:<event id>` | that a once-only event (a lapse warning, a failing connection) was raised | until the deadline it warns of, or 30 days |
//! | `<prefix>:webhook-failing:<connection>` | since when the connection's refreshes have failed, with webhooks on | until a refresh succeeds, at most 30 days |
//!
//! On a Redis Cluster, `<prefix>` is `{KEY_PREFIX}`, a hash tag ([`Layout::one_slot`]).
//!
//! `<digest>` is the unpadded base64url SHA-256 of the one-time state, so the store never holds
//! a redeemable state as a name. Connection names are checked before they reach a key (see
//! [`crate::base::connection`]); they cannot contain `:`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::digest::{SHA256, digest};

const CONNECTIONS: &str = ":conn:";
const TOKENS: &str = ":tokens";
const REFRESH_LOCK: &str = ":refresh-lock";
const LOGIN_STATE: &str = ":login-state:";
const CONNECTION_INDEX: &str = ":connections";
const WEBHOOKS: &str = ":webhook:";
const WEBHOOK_RAISED: &str = ":webhook-raised:";
const WEBHOOK_FAILING: &str = ":webhook-failing:";

/// The keys of one deployment, under its `KEY_PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The same keys with the prefix as a Redis Cluster hash tag (`{prefix}:conn:...`): every key
    /// of the deployment hashes to the same slot, so a script may touch a record, its lock and
    /// the connection index together. The prefix must not contain braces.
    pub fn one_slot(prefix: &str) -> Self {
        Self {
            prefix: format!("{{{prefix}}}"),
        }
    }

    /// Where a connection's record lives.
    pub fn tokens(&self, connection: &str) -> String {
        format!("{}{CONNECTIONS}{connection}{TOKENS}", self.prefix)
    }

    /// What comes before and after the name in [`Layout::tokens`]: for a script that builds
    /// the record keys of the names it finds.
    pub fn tokens_around(&self) -> (String, &'static str) {
        (self.connections(), TOKENS)
    }

    /// The lock that lets one caller at a time refresh a connection.
    pub fn refresh_lock(&self, connection: &str) -> String {
        format!("{}{CONNECTIONS}{connection}{REFRESH_LOCK}", self.prefix)
    }

    /// Where the pending login of a one-time `state` waits for `/callback`.
    pub fn login_state(&self, state: &str) -> String {
        let hashed = URL_SAFE_NO_PAD.encode(digest(&SHA256, state.as_bytes()));
        format!("{}{LOGIN_STATE}{hashed}", self.prefix)
    }

    /// What every connection key starts with: a listing of connections scans for it.
    pub fn connections(&self) -> String {
        format!("{}{CONNECTIONS}", self.prefix)
    }

    /// Where a store that cannot list keys cheaply keeps the names of the connections.
    pub fn connection_index(&self) -> String {
        format!("{}{CONNECTION_INDEX}", self.prefix)
    }

    /// Where an event waits for delivery to one URL.
    pub fn webhook(&self, delivery: &str) -> String {
        format!("{}{WEBHOOKS}{delivery}", self.prefix)
    }

    /// What every waiting delivery's key starts with.
    pub fn webhooks(&self) -> String {
        format!("{}{WEBHOOKS}", self.prefix)
    }

    /// The mark that a once-only event was raised.
    pub fn webhook_raised(&self, event_id: &str) -> String {
        format!("{}{WEBHOOK_RAISED}{event_id}", self.prefix)
    }

    /// Since when a connection's refreshes have been failing.
    pub fn webhook_failing(&self, connection: &str) -> String {
        format!("{}{WEBHOOK_FAILING}{connection}", self.prefix)
    }

    /// The connection whose record `key` is, if it is one (a lock key is not).
    pub fn connection_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(CONNECTIONS)?
            .strip_suffix(TOKENS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_documented_shape() {
        let keys = Layout::new("tb");
        assert_eq!(keys.tokens("lab-2"), "tb:conn:lab-2:tokens");
        assert_eq!(keys.refresh_lock("lab-2"), "tb:conn:lab-2:refresh-lock");
        assert_eq!(keys.connections(), "tb:conn:");
        assert_eq!(keys.connection_index(), "tb:connections");
        assert!(!keys.connection_index().starts_with(&keys.connections()));
        // printf %s state | openssl dgst -sha256 -binary | basenc --base64url | tr -d =
        assert_eq!(
            keys.login_state("state"),
            "tb:login-state:S6aXNcpTdl7WpwnttWxuoja3GTo7KaazkMNG8PQ0Dk4"
        );
    }

    #[test]
    fn on_one_slot_every_key_has_the_prefix_as_its_hash_tag() {
        let keys = Layout::one_slot("tb");
        assert_eq!(keys.tokens("lab-2"), "{tb}:conn:lab-2:tokens");
        assert_eq!(keys.refresh_lock("lab-2"), "{tb}:conn:lab-2:refresh-lock");
        assert_eq!(keys.connection_index(), "{tb}:connections");
        assert!(keys.login_state("s").starts_with("{tb}:login-state:"));
        assert_eq!(keys.connection_of("{tb}:conn:lab-2:tokens"), Some("lab-2"));
        assert_eq!(keys.connection_of("tb:conn:lab-2:tokens"), None);
    }

    #[test]
    fn only_record_keys_name_a_connection() {
        let keys = Layout::new("tb");
        assert_eq!(keys.connection_of(&keys.tokens("prod.eu")), Some("prod.eu"));
        assert_eq!(keys.connection_of(&keys.refresh_lock("prod.eu")), None);
        assert_eq!(keys.connection_of("other:conn:prod.eu:tokens"), None);
        assert_eq!(keys.connection_of(&keys.login_state("s")), None);
        assert_eq!(keys.connection_of(&keys.connection_index()), None);
        assert_eq!(keys.connection_of(&keys.webhook("evt_1-0")), None);
        assert!(!keys.webhook_raised("evt_1").starts_with(&keys.webhooks()));
    }
}
