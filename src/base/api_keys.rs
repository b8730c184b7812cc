//! The keys headless clients and operators present. Several may be valid at once (rotation), and
//! they may be configured as SHA-256 digests only, so the plain keys need not sit in the
//! function's configuration.

use std::fmt;

use ring::digest::{SHA256, digest};
use subtle::{Choice, ConstantTimeEq};

#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    pub fn new(plain: &[&str], digests: Vec<[u8; 32]>) -> Self {
        let mut all: Vec<[u8; 32]> = plain.iter().map(|key| sha256(key)).collect();
        all.extend(digests);
        Self { digests: all }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Compares the candidate's digest with every configured digest, all of them every time:
    /// neither the content, the length, nor which key matched shows in the timing.
    pub fn matches(&self, candidate: &str) -> bool {
        let presented = sha256(candidate);
        let found = self
            .digests
            .iter()
            .fold(Choice::from(0), |found, digest| found | digest.ct_eq(&presented));
        found.into()
    }
}

/// Parses a SHA-256 digest written as 64 hexadecimal characters.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

fn sha256(text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, text.as_bytes()).as_ref());
    out
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys([{} redacted])", self.digests.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_key_or_digest_matches() {
        // printf %s old-key | sha256sum
        let digest = parse_digest("762c08fc17a1cc5f00d248f8b50f2f2f4d17ff2934ac31e64deacb3f5bb3f2ec").unwrap();
        let keys = ApiKeys::new(&["new-key", "other-key"], vec![digest, sha256("digest-only")]);
        assert!(keys.matches("old-key"));
        assert!(keys.matches("new-key"));
        assert!(keys.matches("other-key"));
        assert!(keys.matches("digest-only"));
        assert!(!keys.matches("new-ke"));
        assert!(!keys.matches(""));
        assert!(!ApiKeys::new(&[], vec![]).matches(""));
    }

    #[test]
    fn digests_must_be_64_hex_characters() {
        assert!(parse_digest(&"ab".repeat(32)).is_some());
        assert!(parse_digest(&"ab".repeat(31)).is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
        assert!(parse_digest(&"é".repeat(32)).is_none());
    }

    #[test]
    fn debug_shows_only_the_count() {
        let keys = ApiKeys::new(&["super-secret-key"], vec![]);
        assert_eq!(format!("{keys:?}"), "ApiKeys([1 redacted])");
    }
}
