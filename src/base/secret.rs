//! Values that must never be printed: tokens, client secrets, API keys, state values.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::{
    digest::{SHA256, digest},
    rand::{SecureRandom, SystemRandom},
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// A secret string. `Debug` and `Display` print `[redacted]`, so a stray `{:?}` in a log line
/// or an error message cannot leak it; the value is reached only through [`Secret::expose`].
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison that leaks neither content nor length: both sides are hashed
    /// first, so the comparison always runs over 32 bytes whatever the caller sent.
    pub fn matches(&self, candidate: &str) -> bool {
        let ours = digest(&SHA256, self.0.as_bytes());
        let theirs = digest(&SHA256, candidate.as_bytes());
        ours.as_ref().ct_eq(theirs.as_ref()).into()
    }
}

/// The system failed the broker (its random number generator, a cipher): a bug or a broken
/// environment, never the fault of a request. Says what failed, never a value.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("internal error: {0}")]
pub struct Fault(pub &'static str);

/// `len` random bytes, base64url without padding: the unreserved characters RFC 7636 §4.1 allows.
pub fn random_urlsafe(len: usize) -> Result<String, Fault> {
    let mut bytes = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Fault("the system random number generator failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
    }

    #[test]
    fn matches_only_the_exact_value() {
        let secret = Secret::new("k3y");
        assert!(secret.matches("k3y"));
        assert!(!secret.matches("k3y "));
        assert!(!secret.matches("K3Y"));
        assert!(!secret.matches(""));
        assert!(!secret.matches("k3"));
    }
}
