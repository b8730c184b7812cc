//! Named connections: one deployment can hold the tokens of several accounts (a sandbox and a
//! production account, one per customer or lab). Every route takes `?connection=<name>`; without
//! it, `default`, so single-account clients need not know connections exist.

use thiserror::Error;

use crate::base::{
    layout::Layout,
    store::{Store, StoreError, Versioned},
};

pub const DEFAULT: &str = "default";
const MAX_LEN: usize = 64;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("connection names are 1 to {MAX_LEN} characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
pub struct InvalidName;

/// Names are short and from `[A-Za-z0-9._-]`: they become part of store keys and log lines.
pub fn validate(name: &str) -> Result<&str, InvalidName> {
    let valid = !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid { Ok(name) } else { Err(InvalidName) }
}

/// Every connection that has a stored record (tokens or a re-authorization mark), sorted.
pub async fn list<S: Store>(store: &S, keys: &Layout) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = store
        .keys(&keys.connections())
        .await?
        .iter()
        .filter_map(|key| keys.connection_of(key))
        .filter(|name| validate(name).is_ok())
        .map(str::to_owned)
        .collect();
    names.sort();
    Ok(names)
}

/// [`list`] with each connection's stored record, or why it cannot be read, sorted by name: what
/// `/verify` shows, in as few round trips as the store can list them.
pub async fn records<S: Store>(
    store: &S,
    keys: &Layout,
) -> Result<Vec<(String, Result<Versioned, StoreError>)>, StoreError> {
    let mut records: Vec<_> = store
        .records(&keys.connections())
        .await?
        .into_iter()
        .filter_map(|(key, record)| Some((keys.connection_of(&key)?.to_owned(), record)))
        .filter(|(name, _)| validate(name).is_ok())
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["default", "lab-2", "prod.eu", "customer_17", &"x".repeat(64)] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a:b", "a/b", "ä", "*", &"x".repeat(65), "lab-2\n"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }
}
