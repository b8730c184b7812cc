//! Starting a login: one-time `state` values and PKCE (RFC 7636), per RFC 9700 §2.1 and §4.7.
//!
//! Each login gets a fresh state and code verifier, kept in the store for a few minutes under a
//! digest of the state; `/callback` takes them out atomically, so a state works exactly once.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};

use crate::{
    base::{
        secret::{Secret, random_urlsafe},
        store::{Expect, Store, ttl},
    },
    oauth::{app::App, error::FlowError},
};

/// 32 random bytes: 43 characters once encoded, beyond guessing.
const STATE_BYTES: usize = 32;
/// 64 random bytes: an 86-character verifier, inside RFC 7636's 43 to 128.
const VERIFIER_BYTES: usize = 64;

/// What a one-time state unlocks at `/callback`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    pub code_verifier: Secret,
    pub connection: String,
    pub issued_at: i64,
    /// The `redirect_uri` the authorization request carried, which the code exchange must
    /// repeat (RFC 6749 §4.1.3). Absent in states issued before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

/// A login ready to send to the provider.
pub struct Started {
    pub authorization_url: String,
    pub expires_at: i64,
}

/// Without the URL's query: the state in it completes a login until `/callback` redeems it.
impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = self.authorization_url.split(['?', '#']).next().unwrap_or_default();
        f.debug_struct("Started")
            .field("authorization_url", &format_args!("{endpoint}?[redacted]"))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// RFC 7636 §4.2: `BASE64URL(SHA256(ASCII(code_verifier)))`.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// Issues a state and verifier for `connection` and builds the authorization URL, which sends
/// the person back to `redirect_uri`.
pub async fn start<S: Store>(app: &App<S>, connection: &str, redirect_uri: &str) -> Result<Started, FlowError> {
    let state = random_urlsafe(STATE_BYTES)?;
    let verifier = Secret::new(random_urlsafe(VERIFIER_BYTES)?);
    let now = app.clock.now();
    let lifetime = app.config.login_state_ttl.as_secs() as i64;
    let pending = PendingLogin {
        code_verifier: verifier.clone(),
        connection: connection.to_owned(),
        issued_at: now,
        redirect_uri: Some(redirect_uri.to_owned()),
    };
    let key = app.keys.login_state(&state);
    // The verifier is a secret too: sealed like the tokens when encryption is on.
    let record = app.sealer.seal(
        &key,
        b"",
        serde_json::to_vec(&pending).expect("a pending login always serializes"),
    )?;
    app.store.write(&key, Expect::Any, &record, ttl(lifetime)).await?;
    let config = &app.config;
    let mut url = reqwest::Url::parse(&config.authorize_url).expect("AUTHORIZE_URL was validated at start-up");
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &config.client_id)
            .append_pair("redirect_uri", redirect_uri);
        if let Some(scopes) = &config.scopes {
            let scopes: Vec<&str> = scopes.split_ascii_whitespace().collect();
            query.append_pair("scope", &scopes.join(config.scope_separator));
            // OpenID Connect Core §11: without prompt=consent a provider must drop
            // offline_access, and with it the refresh token the broker exists to hold.
            if scopes.contains(&"offline_access") && !config.authorize_params.iter().any(|(name, _)| name == "prompt") {
                query.append_pair("prompt", "consent");
            }
        }
        for (name, value) in &config.authorize_params {
            query.append_pair(name, value);
        }
        query.append_pair("state", &state);
        if config.pkce {
            query
                .append_pair("code_challenge", &s256_challenge(verifier.expose()))
                .append_pair("code_challenge_method", "S256");
        }
    }
    Ok(Started {
        authorization_url: url.into(),
        expires_at: now + lifetime,
    })
}

/// Takes the pending login of `state` out of the store: `None` if it is unknown, expired or
/// already used.
pub async fn redeem<S: Store>(app: &App<S>, state: &str) -> Result<Option<PendingLogin>, FlowError> {
    // Anything that is not one of our 43-character states cannot be one; skip the store.
    if state.len() != 43
        || !state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(None);
    }
    let key = app.keys.login_state(state);
    let Some(taken) = app.store.take(&key).await? else {
        return Ok(None);
    };
    let taken = app.sealer.open(&key, taken.data)?;
    let pending: PendingLogin =
        serde_json::from_slice(&taken).map_err(|_| FlowError::Internal("a stored login state is unreadable"))?;
    // The store's expiry is coarse on some backends; the issue time is authoritative.
    let age = app.clock.now() - pending.issued_at;
    if age > app.config.login_state_ttl.as_secs() as i64 {
        return Ok(None);
    }
    Ok(Some(pending))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_have_rfc_7636_length_and_alphabet() {
        for _ in 0..100 {
            let verifier = random_urlsafe(VERIFIER_BYTES).unwrap();
            assert!((43..=128).contains(&verifier.len()), "{}", verifier.len());
            assert!(
                verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            );
        }
        assert_ne!(random_urlsafe(32).unwrap(), random_urlsafe(32).unwrap());
    }

    #[test]
    fn debug_shows_the_endpoint_but_not_the_state() {
        let started = Started {
            authorization_url: "https://provider.example/oauth2/authorize?client_id=c&state=S3cr3tState".into(),
            expires_at: 1_800_000_000,
        };
        let printed = format!("{started:?}");
        assert!(
            printed.contains("https://provider.example/oauth2/authorize"),
            "{printed}"
        );
        assert!(printed.contains("1800000000"), "{printed}");
        assert!(
            !printed.contains("S3cr3tState") && !printed.contains("client_id"),
            "{printed}"
        );
    }

    #[test]
    fn s256_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
