//! What the broker keeps per connection, and how it is encoded in the store.

use serde::{Deserialize, Serialize};

use crate::base::{presets::RefreshLifetime, secret::Secret};

/// Bumped when the stored shape changes incompatibly; older records are then refused as
/// unreadable instead of being misread.
const FORMAT: u32 = 1;

/// What the provider's token endpoint granted, with lifetimes checked (relative, in seconds).
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub token_type: String,
    pub expires_in: i64,
    /// Digi-Key's extension: the refresh token's lifetime.
    pub refresh_token_expires_in: Option<i64>,
    pub scope: Option<String>,
}

/// An access and refresh token pair with absolute expiry times (Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Secret,
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub access_expires_at: i64,
    pub refresh_expires_at: i64,
    /// When this pair was obtained from the provider.
    pub issued_at: i64,
}

/// Why a grant could not become a stored token pair.
#[derive(Debug, thiserror::Error)]
#[error("the provider issued no refresh token; request offline access (a scope such as offline_access) at login")]
pub struct NoRefreshToken;

impl TokenSet {
    /// The pair from a code exchange. Without a refresh token the broker could serve the access
    /// token only until it expires, which is not what anyone deploys a broker for.
    pub fn from_authorization(grant: Grant, now: i64, lifetime: RefreshLifetime) -> Result<Self, NoRefreshToken> {
        let refresh_token = grant.refresh_token.ok_or(NoRefreshToken)?;
        Ok(Self {
            refresh_expires_at: now + grant.refresh_token_expires_in.unwrap_or(lifetime.seconds()),
            refresh_token,
            access_token: grant.access_token,
            token_type: grant.token_type,
            scope: grant.scope,
            access_expires_at: now + grant.expires_in,
            issued_at: now,
        })
    }

    /// The pair after a refresh. A provider that does not rotate refresh tokens sends none back:
    /// the old one stays (RFC 6749 §6), and so does its deadline unless its lifetime slides with
    /// use. One that omits `scope` keeps the old scope (RFC 6749 §5.1: unchanged scope may be
    /// omitted).
    pub fn refreshed(&self, grant: Grant, now: i64, lifetime: RefreshLifetime) -> Self {
        let renewed = now + grant.refresh_token_expires_in.unwrap_or(lifetime.seconds());
        let (refresh_token, refresh_expires_at) = match grant.refresh_token {
            Some(token) => (token, renewed),
            None if lifetime.extends_on_use() => (self.refresh_token.clone(), renewed),
            None => (self.refresh_token.clone(), self.refresh_expires_at),
        };
        Self {
            access_token: grant.access_token,
            refresh_token,
            token_type: grant.token_type,
            scope: grant.scope.or_else(|| self.scope.clone()),
            access_expires_at: now + grant.expires_in,
            refresh_expires_at,
            issued_at: now,
        }
    }

    pub fn access_valid_for(&self, now: i64) -> i64 {
        self.access_expires_at - now
    }

    pub fn refresh_valid_for(&self, now: i64) -> i64 {
        self.refresh_expires_at - now
    }

    /// How long the provider made this access token valid for.
    pub fn access_lifetime(&self) -> i64 {
        self.access_expires_at - self.issued_at
    }
}

/// The state of one connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ConnectionRecord {
    Active(TokenSet),
    /// The provider refused the refresh token (`invalid_grant`). Kept, not deleted, so operators
    /// can see why and since when a person has to log in again.
    ReauthorizationRequired {
        reason: String,
        since: i64,
    },
}

/// What `/verify` reports of a connection: its record without the tokens. A sealed record carries
/// it in clear beside the ciphertext (see [`crate::base::sealing`]), so that a function without
/// the encryption key can report health and nothing else.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Health {
    Active {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        access_expires_at: i64,
        refresh_expires_at: i64,
        issued_at: i64,
    },
    ReauthorizationRequired {
        reason: String,
        since: i64,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    format: u32,
    #[serde(flatten)]
    record: T,
}

fn encode<T: Serialize>(record: T) -> Vec<u8> {
    serde_json::to_vec(&Envelope { format: FORMAT, record }).expect("a record always serializes")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    // serde_json's messages quote at most a few characters of input, never whole values, but
    // a token could still be quoted in part: keep only the position.
    let envelope: Envelope<T> = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError(format!("not a valid record (line {}, column {})", e.line(), e.column())))?;
    if envelope.format != FORMAT {
        return Err(DecodeError(format!("unsupported format {}", envelope.format)));
    }
    Ok(envelope.record)
}

#[derive(Debug, thiserror::Error)]
#[error("stored record is unreadable: {0}")]
pub struct DecodeError(String);

impl DecodeError {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl ConnectionRecord {
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }

    pub fn health(&self) -> Health {
        match self {
            Self::Active(tokens) => Health::Active {
                scope: tokens.scope.clone(),
                access_expires_at: tokens.access_expires_at,
                refresh_expires_at: tokens.refresh_expires_at,
                issued_at: tokens.issued_at,
            },
            Self::ReauthorizationRequired { reason, since } => Health::ReauthorizationRequired {
                reason: reason.clone(),
                since: *since,
            },
        }
    }
}

impl Health {
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> ConnectionRecord {
        ConnectionRecord::Active(TokenSet {
            access_token: Secret::new("at"),
            refresh_token: Secret::new("rt"),
            token_type: "Bearer".into(),
            scope: Some("read".into()),
            access_expires_at: 1_800,
            refresh_expires_at: 7_776_000,
            issued_at: 0,
        })
    }

    fn grant(refresh_token: Option<&str>, refresh_token_expires_in: Option<i64>) -> Grant {
        Grant {
            access_token: Secret::new("at2"),
            refresh_token: refresh_token.map(Secret::new),
            token_type: "Bearer".into(),
            expires_in: 1800,
            refresh_token_expires_in,
            scope: None,
        }
    }

    #[test]
    fn authorization_uses_provider_refresh_lifetime_or_the_default() {
        let fixed = RefreshLifetime::Fixed(50);
        let set = TokenSet::from_authorization(grant(Some("r"), Some(1000)), 100, fixed).unwrap();
        assert_eq!((set.access_expires_at, set.refresh_expires_at), (1900, 1100));
        let set = TokenSet::from_authorization(grant(Some("r"), None), 100, fixed).unwrap();
        assert_eq!(set.refresh_expires_at, 150);
        assert!(TokenSet::from_authorization(grant(None, None), 100, fixed).is_err());
    }

    #[test]
    fn refresh_keeps_the_old_refresh_token_and_scope_when_none_is_sent() {
        let ConnectionRecord::Active(old) = active() else {
            unreachable!()
        };
        let fixed = RefreshLifetime::Fixed(50);
        let kept = old.refreshed(grant(None, None), 1000, fixed);
        assert_eq!(kept.refresh_token, old.refresh_token);
        assert_eq!(kept.refresh_expires_at, old.refresh_expires_at);
        assert_eq!(kept.scope.as_deref(), Some("read"));
        assert_eq!(kept.access_expires_at, 2800);
        let rotated = old.refreshed(grant(Some("rt2"), None), 1000, fixed);
        assert_eq!(rotated.refresh_token.expose(), "rt2");
        assert_eq!(rotated.refresh_expires_at, 1050);
        // The provider's own figure wins over the assumed one.
        let told = old.refreshed(grant(Some("rt3"), Some(400)), 1000, fixed);
        assert_eq!(told.refresh_expires_at, 1400);
    }

    #[test]
    fn a_sliding_or_idle_lifetime_restarts_with_every_refresh_even_without_rotation() {
        let ConnectionRecord::Active(old) = active() else {
            unreachable!()
        };
        for lifetime in [RefreshLifetime::Sliding(500), RefreshLifetime::Idle(500)] {
            let kept = old.refreshed(grant(None, None), 1000, lifetime);
            assert_eq!(kept.refresh_token, old.refresh_token);
            assert_eq!(kept.refresh_expires_at, 1500, "{lifetime:?}");
            let rotated = old.refreshed(grant(Some("rt2"), None), 2000, lifetime);
            assert_eq!(rotated.refresh_expires_at, 2500, "{lifetime:?}");
        }
    }

    #[test]
    fn records_round_trip() {
        for record in [
            active(),
            ConnectionRecord::ReauthorizationRequired {
                reason: "invalid_grant".into(),
                since: 5,
            },
        ] {
            assert_eq!(ConnectionRecord::decode(&record.encode()).unwrap(), record);
        }
    }

    #[test]
    fn health_is_the_record_without_its_tokens() {
        let record = active();
        let health = record.health();
        let encoded = String::from_utf8(health.encode()).unwrap();
        assert!(
            !encoded.contains("\"at\"") && !encoded.contains("\"rt\"") && !encoded.contains("token\""),
            "{encoded}"
        );
        assert_eq!(Health::decode(encoded.as_bytes()).unwrap(), health);
        let Health::Active {
            access_expires_at,
            refresh_expires_at,
            ..
        } = health
        else {
            unreachable!()
        };
        assert_eq!((access_expires_at, refresh_expires_at), (1_800, 7_776_000));
        // A health header is no record: it holds nothing to serve.
        assert!(ConnectionRecord::decode(&record.health().encode()).is_err());
    }

    #[test]
    fn truncated_foreign_and_future_records_are_refused() {
        let encoded = active().encode();
        assert!(ConnectionRecord::decode(&encoded[..encoded.len() / 2]).is_err());
        assert!(ConnectionRecord::decode(b"\xff\xfegarbage").is_err());
        assert!(ConnectionRecord::decode(br#"{"access_token":"x"}"#).is_err());
        let future = String::from_utf8(encoded)
            .unwrap()
            .replace("\"format\":1", "\"format\":2");
        assert!(ConnectionRecord::decode(future.as_bytes()).is_err());
    }

    #[test]
    fn decode_errors_do_not_quote_tokens() {
        let broken = br#"{"format":1,"status":"active","access_token":"sekrit-access","refresh_token":5}"#;
        let message = ConnectionRecord::decode(broken).unwrap_err().to_string();
        assert!(!message.contains("sekrit"), "{message}");
    }
}
