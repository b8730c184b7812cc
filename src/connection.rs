//! Named connections: one deployment can hold the tokens of several accounts (a sandbox and a
//! production account, one per customer or lab). Every route takes `?connection=<name>`; without
//! it, `default`, so single-account clients need not know connections exist.

use crate::{
    app::{App, TOKENS_SUFFIX},
    error::BrokerError,
    request::Query,
    store::Store,
};

pub const DEFAULT: &str = "default";
const MAX_LEN: usize = 64;

/// Names are short and from `[A-Za-z0-9._-]`: they become part of store keys and log lines.
pub fn validate(name: &str) -> Result<&str, BrokerError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(name)
    } else {
        Err(BrokerError::BadRequest(format!(
            "connection names are 1 to {MAX_LEN} characters from A-Z, a-z, 0-9, '.', '_' and '-'"
        )))
    }
}

/// The connection a request names, or the default one.
pub fn from_query(query: &Query) -> Result<String, BrokerError> {
    query.get("connection").map_or(Ok(DEFAULT), validate).map(str::to_owned)
}

/// Every connection that has a stored record (tokens or a re-authorization mark), sorted.
pub async fn list<S: Store>(app: &App<S>) -> Result<Vec<String>, BrokerError> {
    let prefix = app.connections_prefix();
    let mut names: Vec<String> = app
        .store
        .keys(&prefix)
        .await?
        .into_iter()
        .filter_map(|key| {
            key.strip_prefix(&prefix)?
                .strip_suffix(TOKENS_SUFFIX)
                .map(str::to_owned)
        })
        .filter(|name| validate(name).is_ok())
        .collect();
    names.sort();
    Ok(names)
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
