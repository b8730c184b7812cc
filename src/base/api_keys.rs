//! The keys headless clients and operators present. Several may be valid at once (rotation),
//! each with a name (what logs show, never the key) and a scope: the routes it may call and,
//! optionally, the connections it may touch. Keys may be configured as SHA-256 digests only, so
//! the plain keys need not sit in the function's configuration.
//!
//! A key is found by its digest in a hash map, so a lookup costs the same for any number of
//! keys (reading the list at a cold start does not: BENCHMARKS.md). The map
//! is keyed by SHA-256 of the presented key: how long a lookup takes depends on that digest,
//! which says nothing usable about any configured key.

use std::{
    collections::{HashMap, HashSet},
    fmt,
};

use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::base::connection;

/// What a key may do: one per route that takes a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    Token,
    Verify,
    Revoke,
    Import,
}

impl Action {
    pub const ALL: [Action; 5] = [Self::Login, Self::Token, Self::Verify, Self::Revoke, Self::Import];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Token => "token",
            Self::Verify => "verify",
            Self::Revoke => "revoke",
            Self::Import => "import",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// Every action's bit.
    fn all() -> u8 {
        Self::ALL.iter().fold(0, |bits, action| bits | action.bit())
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

/// One configured key, without the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    name: String,
    actions: u8,
    /// `None`: every connection.
    connections: Option<Vec<String>>,
}

impl Key {
    /// A key that may do everything, as `API_KEY` and its relatives are.
    fn unscoped(name: String) -> Self {
        Self {
            name,
            actions: Action::all(),
            connections: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn may(&self, action: Action) -> bool {
        self.actions & action.bit() != 0
    }

    pub fn may_touch(&self, connection: &str) -> bool {
        self.connections
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|name| name == connection))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let actions: Vec<&str> = Action::ALL
            .iter()
            .filter(|action| self.may(**action))
            .map(|action| action.as_str())
            .collect();
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("actions", &actions)
            .field("connections", &self.connections)
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeys {
    by_digest: HashMap<[u8; 32], Key>,
}

/// Why an entry of `SCOPED_API_KEYS` was refused; the entry is named by its position and name,
/// never by its digest.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyConfigError {
    #[error("entry {0}: expected name:sha256:actions[:connections]")]
    Shape(usize),
    #[error("entry {0}: the name must be 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
    Name(usize),
    #[error("entry {0} ({1}): the digest must be 64 hexadecimal characters")]
    Digest(usize, String),
    #[error("entry {0} ({1}): unknown action {2:?}; the actions are login, token, verify, revoke, import and all")]
    Action(usize, String, String),
    #[error("entry {0} ({1}): the connection list must name connections, comma-separated")]
    Connections(usize, String),
    #[error("entry {0} ({1}): the name is already used by another key")]
    DuplicateName(usize, String),
    #[error("entry {0} ({1}): the same key is already configured")]
    DuplicateKey(usize, String),
}

impl ApiKeys {
    /// Keys that may do everything: plain ones and digests, named by where they came from.
    pub fn new(plain: &[&str], digests: Vec<[u8; 32]>) -> Self {
        let mut by_digest = HashMap::new();
        for (i, key) in plain.iter().enumerate() {
            by_digest.entry(sha256(key)).or_insert_with(|| {
                Key::unscoped(if i == 0 {
                    "API_KEY".into()
                } else {
                    format!("API_KEYS#{i}")
                })
            });
        }
        for (i, digest) in digests.into_iter().enumerate() {
            by_digest
                .entry(digest)
                .or_insert_with(|| Key::unscoped(format!("API_KEY_SHA256S#{}", i + 1)));
        }
        Self { by_digest }
    }

    /// Adds `SCOPED_API_KEYS`: entries separated by `;` or new lines, each
    /// `name:sha256:actions[:connections]`, with the actions (or `all`) and the connections
    /// comma-separated.
    pub fn with_scoped(mut self, entries: &str) -> Result<Self, KeyConfigError> {
        let entries = || {
            entries
                .split([';', '\n'])
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
        };
        // Sized once: a list of hundreds of keys is read at every cold start.
        let count = entries().count();
        self.by_digest.reserve(count);
        let mut names: HashSet<&str> = HashSet::with_capacity(count);
        // The names of the unscoped keys (`API_KEY` and its relatives): a few.
        let unscoped: Vec<String> = self.by_digest.values().map(|key| key.name.clone()).collect();
        for (index, entry) in entries().enumerate() {
            let at = index + 1;
            let mut fields = entry.split(':').map(str::trim);
            let mut parts = [""; 4];
            let mut found = 0;
            for field in fields.by_ref().take(4) {
                parts[found] = field;
                found += 1;
            }
            if !(3..=4).contains(&found) || fields.next().is_some() {
                return Err(KeyConfigError::Shape(at));
            }
            let name = parts[0];
            // Key names follow the rule of connection names: short, plain ASCII, so a look-alike
            // cannot pass for another.
            if connection::validate(name).is_err() {
                return Err(KeyConfigError::Name(at));
            }
            let digest = parse_digest(parts[1]).ok_or_else(|| KeyConfigError::Digest(at, name.into()))?;
            let mut actions = 0;
            for action in parts[2].split(',').map(str::trim) {
                actions |= match action {
                    "all" => Action::all(),
                    other => Action::parse(other)
                        .ok_or_else(|| KeyConfigError::Action(at, name.into(), other.into()))?
                        .bit(),
                };
            }
            let connections = match parts[3] {
                _ if found == 3 => None,
                list => {
                    let names: Vec<String> = list.split(',').map(|c| c.trim().to_owned()).collect();
                    if names.iter().any(|c| connection::validate(c).is_err()) {
                        return Err(KeyConfigError::Connections(at, name.into()));
                    }
                    Some(names)
                }
            };
            if !names.insert(name) || unscoped.iter().any(|taken| taken == name) {
                return Err(KeyConfigError::DuplicateName(at, name.into()));
            }
            if self.by_digest.contains_key(&digest) {
                return Err(KeyConfigError::DuplicateKey(at, name.into()));
            }
            self.by_digest.insert(
                digest,
                Key {
                    name: name.to_owned(),
                    actions,
                    connections,
                },
            );
        }
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The key `candidate` is, if it is one.
    pub fn identify(&self, candidate: &str) -> Option<&Key> {
        let presented = sha256(candidate);
        let (stored, key) = self.by_digest.get_key_value(&presented)?;
        // The map compared the digests already; this says so in constant time, in case a
        // future map does not.
        bool::from(stored.ct_eq(&presented)).then_some(key)
    }

    pub fn matches(&self, candidate: &str) -> bool {
        self.identify(candidate).is_some()
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
        write!(f, "ApiKeys([{} redacted])", self.by_digest.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(key: &str) -> String {
        sha256(key).iter().map(|b| format!("{b:02x}")).collect()
    }

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
        assert_eq!(keys.identify("new-key").unwrap().name(), "API_KEY");
        assert_eq!(keys.identify("old-key").unwrap().name(), "API_KEY_SHA256S#1");
        assert!(
            Action::ALL
                .iter()
                .all(|action| keys.identify("other-key").unwrap().may(*action))
        );
    }

    #[test]
    fn scoped_keys_have_their_actions_and_connections() {
        let entries = format!(
            "monitor:{}:verify; ci-lab:{}:token,verify:lab-1,lab-2\nops:{}:all",
            hex("m"),
            hex("c"),
            hex("o")
        );
        let keys = ApiKeys::new(&["legacy"], vec![]).with_scoped(&entries).unwrap();
        let monitor = keys.identify("m").unwrap();
        assert_eq!(monitor.name(), "monitor");
        assert!(monitor.may(Action::Verify) && !monitor.may(Action::Token) && !monitor.may(Action::Login));
        assert!(monitor.may_touch("anything"));
        let ci = keys.identify("c").unwrap();
        assert!(ci.may(Action::Token) && ci.may(Action::Verify) && !ci.may(Action::Revoke));
        assert!(ci.may_touch("lab-2") && !ci.may_touch("lab-3") && !ci.may_touch("default"));
        assert!(
            Action::ALL
                .iter()
                .all(|action| keys.identify("o").unwrap().may(*action))
        );
        assert!(keys.matches("legacy"));
    }

    #[test]
    fn a_bad_entry_is_named_by_position_and_name_never_by_digest() {
        let good = hex("k");
        let cases = [
            ("monitor:verify".to_owned(), KeyConfigError::Shape(1)),
            (format!("mönitor:{good}:verify"), KeyConfigError::Name(1)),
            (format!(":{good}:verify"), KeyConfigError::Name(1)),
            (
                "monitor:abc:verify".to_owned(),
                KeyConfigError::Digest(1, "monitor".into()),
            ),
            (
                format!("monitor:{good}:read"),
                KeyConfigError::Action(1, "monitor".into(), "read".into()),
            ),
            (format!("ci:{good}:token:"), KeyConfigError::Connections(1, "ci".into())),
            (
                format!("ci:{good}:token:lab 1"),
                KeyConfigError::Connections(1, "ci".into()),
            ),
            (
                format!("a:{good}:token;a:{}:verify", hex("other")),
                KeyConfigError::DuplicateName(2, "a".into()),
            ),
            (
                format!("a:{good}:token;b:{good}:verify"),
                KeyConfigError::DuplicateKey(2, "b".into()),
            ),
        ];
        for (entries, expected) in cases {
            let error = ApiKeys::new(&[], vec![]).with_scoped(&entries).unwrap_err();
            assert_eq!(error, expected, "{entries}");
            assert!(!error.to_string().contains(&good), "{error}");
        }
        assert_eq!(
            ApiKeys::new(&[], vec![])
                .with_scoped(&format!("ci:{good}:token:lab-1:extra"))
                .unwrap_err(),
            KeyConfigError::Shape(1)
        );
        // Nor can a scoped key take the name an unscoped one goes by in the logs.
        assert_eq!(
            ApiKeys::new(&["plain"], vec![])
                .with_scoped(&format!("API_KEY:{good}:verify"))
                .unwrap_err(),
            KeyConfigError::DuplicateName(1, "API_KEY".into())
        );
        // The plain key of an unscoped setting cannot come back with a scope.
        let error = ApiKeys::new(&["k"], vec![])
            .with_scoped(&format!("x:{good}:verify"))
            .unwrap_err();
        assert_eq!(error, KeyConfigError::DuplicateKey(1, "x".into()));
    }

    #[test]
    fn digests_must_be_64_hex_characters() {
        assert!(parse_digest(&"ab".repeat(32)).is_some());
        assert!(parse_digest(&"ab".repeat(31)).is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
        assert!(parse_digest(&"é".repeat(32)).is_none());
    }

    #[test]
    fn debug_shows_names_and_scopes_but_no_key() {
        let keys = ApiKeys::new(&["super-secret-key"], vec![]);
        assert_eq!(format!("{keys:?}"), "ApiKeys([1 redacted])");
        let key = keys.identify("super-secret-key").unwrap();
        let printed = format!("{key:?}");
        assert!(
            printed.contains("API_KEY") && !printed.contains("super-secret-key"),
            "{printed}"
        );
    }
}
