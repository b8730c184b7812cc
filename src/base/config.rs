//! Configuration, read from the environment once per cold start and validated before any
//! request is served. A missing or malformed variable stops start-up with an error that names it,
//! so the broker never runs half-configured (and never fails open on an empty secret).

use std::{path::PathBuf, time::Duration};

use thiserror::Error;

use crate::base::{
    api_keys::{ApiKeys, parse_digest},
    aws,
    layout::Layout,
    sealing::parse_key,
    secret::Secret,
    store::DynamoConfig,
};

/// How the broker authenticates to the provider's token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuthMethod {
    /// `client_id` and `client_secret` in the form body (Digi-Key's way).
    ClientSecretPost,
    /// HTTP Basic with the form-urlencoded client id and secret.
    ClientSecretBasic,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub client_id: String,
    pub client_secret: Secret,
    pub token_url: String,
    pub authorize_url: String,
    /// RFC 7009 endpoint; without it `/revoke` can only forget the tokens locally.
    pub revocation_url: Option<String>,
    /// Space-separated scopes requested at login.
    pub scopes: Option<String>,
    pub redirect_uri: String,
    /// The shared state of hand-built authorization URLs; `None` when `ALLOW_STATIC_STATE=false`
    /// leaves only the one-time states issued by `/login`.
    pub oauth_state: Option<Secret>,
    /// How long a state issued by `/login` (and its PKCE verifier) stays redeemable.
    pub login_state_ttl: Duration,
    /// The provider's issuer identifier; when set, `/callback` requires a matching `iss`
    /// (RFC 9207), which defeats mix-up attacks.
    pub issuer: Option<String>,
    /// Every key clients may present (`API_KEY`, `API_KEYS`, `API_KEY_SHA256S`).
    pub api_keys: ApiKeys,
    /// Encryption at rest: the first key seals, all of them open. Empty: records are stored as is.
    pub encryption_keys: Vec<Secret>,
    pub store: StoreConfig,
    pub token_auth_method: TokenAuthMethod,
    /// Lifetime assumed for a refresh token when the provider does not say.
    pub refresh_token_ttl: Duration,
    /// An access token with less than this left is refreshed before it is handed out.
    pub refresh_skew: Duration,
    /// Namespace for every store key, so several brokers can share one Redis.
    pub key_prefix: String,
    pub provider_timeout: Duration,
    /// How long one store operation may take, retries included (`STORE_TIMEOUT`, or its older
    /// name `REDIS_TIMEOUT`).
    pub store_timeout: Duration,
    /// How long a `/token` call waits for another caller's refresh before giving up with 503.
    pub refresh_wait: Duration,
    /// Keep-alive refreshes connections whose refresh token expires within this window.
    pub keepalive_window: Duration,
    /// How often local mode runs keep-alive (zero: never).
    pub keepalive_interval: Duration,
}

/// Where the tokens live: Redis when `REDIS_URL` is set, DynamoDB when `DYNAMODB_TABLE` is (never
/// both), else the embedded on-disk store of local mode (refused on Lambda, where each instance
/// would hold its own tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `cluster`: `REDIS_CLUSTER=true`, the URL is one node of a Redis Cluster (ElastiCache with
    /// cluster mode on, MemoryDB, ElastiCache Serverless, a Valkey or Redis cluster).
    Redis {
        url: Secret,
        cluster: bool,
    },
    DynamoDb(DynamoConfig),
    Embedded {
        dir: PathBuf,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{} not set (or empty); {} required", .0.join(", "), if .0.len() == 1 { "it is" } else { "they are" })]
    Missing(Vec<&'static str>),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

const DEFAULT_REFRESH_TOKEN_TTL: u64 = 90 * 24 * 3600;

impl Config {
    /// The store keys of this deployment.
    pub fn layout(&self) -> Layout {
        match self.store {
            StoreConfig::Redis { cluster: true, .. } => Layout::one_slot(&self.key_prefix),
            _ => Layout::new(&self.key_prefix),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let allow_static_state = match vars.optional("ALLOW_STATIC_STATE").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(invalid("ALLOW_STATIC_STATE", "must be true or false")),
        };
        // Report every missing variable at once: fixing them one start-up at a time is tedious.
        let missing: Vec<&'static str> = REQUIRED
            .iter()
            .copied()
            .filter(|name| *name != "OAUTH_STATE" || allow_static_state)
            // Keys may come as a list or as digests instead.
            .filter(|name| {
                *name != "API_KEY"
                    || (vars.optional("API_KEYS").is_none() && vars.optional("API_KEY_SHA256S").is_none())
            })
            .filter(|name| vars.optional(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(ConfigError::Missing(missing));
        }
        let token_url = vars.required("TOKEN_URL")?;
        check_url("TOKEN_URL", &token_url)?;
        let authorize_url = vars.required("AUTHORIZE_URL")?;
        check_url("AUTHORIZE_URL", &authorize_url)?;
        let revocation_url = vars.optional("REVOCATION_URL");
        if let Some(url) = &revocation_url {
            check_url("REVOCATION_URL", url)?;
        }
        let redirect_uri = vars.required("REDIRECT_URI")?;
        check_url("REDIRECT_URI", &redirect_uri)?;
        let store = store(&vars)?;
        let token_auth_method = match vars.optional("TOKEN_AUTH_METHOD").as_deref() {
            None | Some("client_secret_post") => TokenAuthMethod::ClientSecretPost,
            Some("client_secret_basic") => TokenAuthMethod::ClientSecretBasic,
            Some(_) => {
                return Err(invalid(
                    "TOKEN_AUTH_METHOD",
                    "must be client_secret_post or client_secret_basic",
                ));
            }
        };
        let key_prefix = vars.optional("KEY_PREFIX").unwrap_or_else(|| "token-broker".to_owned());
        if key_prefix.len() > 64 || key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("KEY_PREFIX", "must be at most 64 characters without spaces"));
        }
        // On a cluster the prefix becomes the hash tag that keeps a deployment's keys in one slot.
        if matches!(store, StoreConfig::Redis { cluster: true, .. }) && key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "KEY_PREFIX",
                "must not contain '{' or '}' with REDIS_CLUSTER=true",
            ));
        }
        Ok(Self {
            client_id: vars.required("CLIENT_ID")?,
            client_secret: Secret::new(vars.required("CLIENT_SECRET")?),
            token_url,
            authorize_url,
            revocation_url,
            scopes: vars.optional("SCOPES"),
            redirect_uri,
            oauth_state: if allow_static_state {
                Some(Secret::new(vars.required("OAUTH_STATE")?))
            } else {
                None
            },
            login_state_ttl: vars.seconds("LOGIN_STATE_TTL", 600, 60..=3600)?,
            issuer: vars.optional("ISSUER"),
            api_keys: api_keys(&vars)?,
            encryption_keys: encryption_keys(&vars)?,
            store,
            token_auth_method,
            refresh_token_ttl: vars.seconds("REFRESH_TOKEN_TTL", DEFAULT_REFRESH_TOKEN_TTL, 60..=10 * 365 * 86400)?,
            refresh_skew: vars.seconds("REFRESH_SKEW", 60, 0..=3600)?,
            key_prefix,
            provider_timeout: vars.seconds("PROVIDER_TIMEOUT", 10, 1..=120)?,
            store_timeout: match vars.optional("STORE_TIMEOUT") {
                Some(_) => vars.seconds("STORE_TIMEOUT", 2, 1..=60)?,
                None => vars.seconds("REDIS_TIMEOUT", 2, 1..=60)?,
            },
            refresh_wait: vars.seconds("REFRESH_WAIT", 5, 0..=120)?,
            keepalive_window: vars.seconds("KEEPALIVE_WINDOW", 7 * 86400, 0..=365 * 86400)?,
            keepalive_interval: vars.seconds("KEEPALIVE_INTERVAL", 3600, 0..=7 * 86400)?,
        })
    }
}

/// Variables without which no route can work (`OAUTH_STATE` only while the static state is
/// allowed). `REDIS_URL` is not among them: without it, local mode uses its embedded store, and
/// the Lambda functions refuse to start.
pub const REQUIRED: [&str; 7] = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "TOKEN_URL",
    "AUTHORIZE_URL",
    "REDIRECT_URI",
    "OAUTH_STATE",
    "API_KEY",
];

/// The one store the variables choose.
fn store<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Result<StoreConfig, ConfigError> {
    match (vars.optional("REDIS_URL"), vars.optional("DYNAMODB_TABLE")) {
        (Some(_), Some(_)) => Err(invalid(
            "DYNAMODB_TABLE",
            "REDIS_URL is set too; configure exactly one store",
        )),
        (Some(url), None) if url.starts_with("redis://") || url.starts_with("rediss://") => {
            let cluster = match vars.optional("REDIS_CLUSTER").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => return Err(invalid("REDIS_CLUSTER", "must be true or false")),
            };
            Ok(StoreConfig::Redis {
                url: Secret::new(url),
                cluster,
            })
        }
        (Some(_), None) => Err(invalid("REDIS_URL", "must start with redis:// or rediss://")),
        (None, Some(table)) => {
            // DynamoDB's own rule for table names.
            let valid = (3..=255).contains(&table.len())
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !valid {
                return Err(invalid(
                    "DYNAMODB_TABLE",
                    "must be 3 to 255 characters from A-Z, a-z, 0-9, '_', '-' and '.'",
                ));
            }
            let region = vars
                .optional("AWS_REGION")
                .or_else(|| vars.optional("AWS_DEFAULT_REGION"))
                .ok_or(ConfigError::Missing(vec!["AWS_REGION"]))?;
            if !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(invalid("AWS_REGION", "is not an AWS region name"));
            }
            let endpoint_var = ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
                .into_iter()
                .find(|name| vars.optional(name).is_some());
            let endpoint = match endpoint_var {
                Some(name) => {
                    let endpoint = vars.required(name)?;
                    check_url(name, &endpoint)?;
                    Some(endpoint)
                }
                None => None,
            };
            let credentials =
                aws::credentials(|name| vars.optional(name)).map_err(|name| ConfigError::Missing(vec![name]))?;
            Ok(StoreConfig::DynamoDb(DynamoConfig {
                table,
                region,
                endpoint,
                credentials,
            }))
        }
        (None, None) => Ok(StoreConfig::Embedded {
            dir: PathBuf::from(
                vars.optional("DATA_DIR")
                    .unwrap_or_else(|| "./.token-broker".to_owned()),
            ),
        }),
    }
}

/// `API_KEY` plus the comma-separated `API_KEYS`, and the SHA-256 digests in `API_KEY_SHA256S`.
fn api_keys<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Result<ApiKeys, ConfigError> {
    let plain: Vec<String> = vars
        .optional("API_KEY")
        .into_iter()
        .chain(
            vars.optional("API_KEYS")
                .iter()
                .flat_map(|list| list.split(',').map(str::to_owned)),
        )
        .map(|key| key.trim().to_owned())
        .filter(|key| !key.is_empty())
        .collect();
    let mut digests = Vec::new();
    for digest in vars.optional("API_KEY_SHA256S").iter().flat_map(|list| list.split(',')) {
        if digest.trim().is_empty() {
            continue;
        }
        digests.push(parse_digest(digest).ok_or_else(|| {
            invalid(
                "API_KEY_SHA256S",
                "must list SHA-256 digests as 64 hexadecimal characters",
            )
        })?);
    }
    let keys = ApiKeys::new(&plain.iter().map(String::as_str).collect::<Vec<_>>(), digests);
    if keys.is_empty() {
        return Err(ConfigError::Missing(vec!["API_KEY"]));
    }
    Ok(keys)
}

/// `TOKEN_ENCRYPTION_KEY` first (it seals), then the older keys of `TOKEN_ENCRYPTION_KEYS`.
fn encryption_keys<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Result<Vec<Secret>, ConfigError> {
    let Some(current) = vars.optional("TOKEN_ENCRYPTION_KEY") else {
        if vars.optional("TOKEN_ENCRYPTION_KEYS").is_some() {
            return Err(invalid(
                "TOKEN_ENCRYPTION_KEYS",
                "lists old keys, which need TOKEN_ENCRYPTION_KEY (the current one) beside them",
            ));
        }
        return Ok(Vec::new());
    };
    let mut keys = vec![parse_key(&current).map_err(|e| invalid("TOKEN_ENCRYPTION_KEY", &e.to_string()))?];
    for old in vars
        .optional("TOKEN_ENCRYPTION_KEYS")
        .iter()
        .flat_map(|list| list.split(','))
    {
        if !old.trim().is_empty() {
            keys.push(parse_key(old).map_err(|e| invalid("TOKEN_ENCRYPTION_KEYS", &e.to_string()))?);
        }
    }
    Ok(keys)
}

struct Vars<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    /// Empty counts as unset: an empty secret must never be accepted as a valid one.
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::Missing(vec![name]))
    }

    fn seconds(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(Duration::from_secs(default));
        };
        let value: u64 = raw
            .parse()
            .map_err(|_| invalid(name, "must be a whole number of seconds"))?;
        if !range.contains(&value) {
            return Err(invalid(
                name,
                &format!("must be between {} and {} seconds", range.start(), range.end()),
            ));
        }
        Ok(Duration::from_secs(value))
    }
}

fn invalid(name: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.to_owned(),
    }
}

/// Plain http is accepted only on loopback, for local providers and tests; tokens and client
/// secrets must not cross a network in the clear.
fn check_url(name: &'static str, value: &str) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(value).map_err(|e| invalid(name, &format!("not a URL ({e})")))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(name, "must be an https:// URL (http:// only on localhost)")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("CLIENT_ID", "client"),
            ("CLIENT_SECRET", "client-secret-value"),
            ("TOKEN_URL", "https://provider.example/oauth2/token"),
            ("AUTHORIZE_URL", "https://provider.example/oauth2/authorize"),
            ("REDIRECT_URI", "https://broker.example/callback"),
            ("OAUTH_STATE", "oauth-state-value"),
            ("API_KEY", "api-key-value"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ])
    }

    fn load(vars: &HashMap<&'static str, &'static str>) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| vars.get(name).map(|v| v.to_string()))
    }

    fn dynamodb() -> HashMap<&'static str, &'static str> {
        let mut vars = base();
        vars.remove("REDIS_URL");
        vars.extend([
            ("DYNAMODB_TABLE", "token-broker"),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-value"),
            ("AWS_SESSION_TOKEN", "aws-session-token"),
        ]);
        vars
    }

    #[test]
    fn dynamodb_table_selects_dynamodb_with_the_role_s_credentials() {
        let config = load(&dynamodb()).unwrap();
        let StoreConfig::DynamoDb(table) = &config.store else {
            panic!("{:?}", config.store)
        };
        assert_eq!(
            (table.table.as_str(), table.region.as_str()),
            ("token-broker", "eu-central-1")
        );
        assert_eq!(table.endpoint, None);
        assert_eq!(table.credentials.access_key_id, "AKIDEXAMPLE");
        assert!(table.credentials.session_token.is_some());
        let printed = format!("{config:?}");
        for secret in ["aws-secret-value", "aws-session-token", "AKIDEXAMPLE"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn exactly_one_store_may_be_configured() {
        let mut vars = dynamodb();
        vars.insert("REDIS_URL", "redis://127.0.0.1:6379");
        assert!(matches!(
            load(&vars),
            Err(ConfigError::Invalid {
                name: "DYNAMODB_TABLE",
                ..
            })
        ));
    }

    #[test]
    fn dynamodb_needs_a_region_credentials_and_a_valid_table_name() {
        for (missing, named) in [
            ("AWS_REGION", "AWS_REGION"),
            ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
            ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        ] {
            let mut vars = dynamodb();
            vars.remove(missing);
            assert_eq!(load(&vars).unwrap_err(), ConfigError::Missing(vec![named]), "{missing}");
        }
        let mut vars = dynamodb();
        vars.insert("DYNAMODB_TABLE", "no spaces");
        assert!(matches!(
            load(&vars),
            Err(ConfigError::Invalid {
                name: "DYNAMODB_TABLE",
                ..
            })
        ));
        let mut vars = dynamodb();
        vars.insert("AWS_ENDPOINT_URL_DYNAMODB", "http://dynamodb.example.com");
        assert!(matches!(
            load(&vars),
            Err(ConfigError::Invalid {
                name: "AWS_ENDPOINT_URL_DYNAMODB",
                ..
            })
        ));
        vars.insert("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000");
        let StoreConfig::DynamoDb(table) = load(&vars).unwrap().store else {
            panic!()
        };
        assert_eq!(table.endpoint.as_deref(), Some("http://127.0.0.1:8000"));
    }

    #[test]
    fn defaults_apply_when_optional_variables_are_unset() {
        let config = load(&base()).unwrap();
        assert_eq!(config.token_auth_method, TokenAuthMethod::ClientSecretPost);
        assert_eq!(config.refresh_token_ttl, Duration::from_secs(7_776_000));
        assert_eq!(config.refresh_skew, Duration::from_secs(60));
        assert_eq!(config.key_prefix, "token-broker");
    }

    #[test]
    fn each_required_variable_is_named_when_missing_or_empty() {
        for name in REQUIRED {
            let mut vars = base();
            vars.remove(name);
            assert_eq!(load(&vars).unwrap_err(), ConfigError::Missing(vec![name]));
            vars.insert(name, "  ");
            assert_eq!(load(&vars).unwrap_err(), ConfigError::Missing(vec![name]));
        }
    }

    #[test]
    fn the_static_state_can_be_switched_off() {
        let mut vars = base();
        vars.insert("ALLOW_STATIC_STATE", "false");
        vars.remove("OAUTH_STATE");
        assert!(load(&vars).unwrap().oauth_state.is_none());
        vars.insert("ALLOW_STATIC_STATE", "no");
        assert!(matches!(
            load(&vars).unwrap_err(),
            ConfigError::Invalid {
                name: "ALLOW_STATIC_STATE",
                ..
            }
        ));
    }

    #[test]
    fn api_keys_may_come_as_a_list_or_as_digests() {
        let mut vars = base();
        vars.remove("API_KEY");
        vars.insert("API_KEYS", "first-key, second-key");
        let config = load(&vars).unwrap();
        assert!(config.api_keys.matches("first-key") && config.api_keys.matches("second-key"));
        vars.remove("API_KEYS");
        // printf %s digest-key | sha256sum
        vars.insert(
            "API_KEY_SHA256S",
            "A4E354D72CF17A12C79F61A2788800382E8F528AD4D34689E4C7FECC124615B8",
        );
        assert!(load(&vars).unwrap().api_keys.matches("digest-key"));
        vars.insert("API_KEY_SHA256S", "not-a-digest");
        assert!(matches!(
            load(&vars).unwrap_err(),
            ConfigError::Invalid {
                name: "API_KEY_SHA256S",
                ..
            }
        ));
        vars.remove("API_KEY_SHA256S");
        assert_eq!(load(&vars).unwrap_err(), ConfigError::Missing(vec!["API_KEY"]));
    }

    #[test]
    fn encryption_keys_are_validated_and_ordered_current_first() {
        let mut vars = base();
        assert!(load(&vars).unwrap().encryption_keys.is_empty());
        vars.insert("TOKEN_ENCRYPTION_KEYS", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(matches!(
            load(&vars).unwrap_err(),
            ConfigError::Invalid {
                name: "TOKEN_ENCRYPTION_KEYS",
                ..
            }
        ));
        vars.insert("TOKEN_ENCRYPTION_KEY", "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
        let keys = load(&vars).unwrap().encryption_keys;
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].expose(), "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=");
        vars.insert("TOKEN_ENCRYPTION_KEY", "c2hvcnQ=");
        assert!(matches!(
            load(&vars).unwrap_err(),
            ConfigError::Invalid {
                name: "TOKEN_ENCRYPTION_KEY",
                ..
            }
        ));
    }

    #[test]
    fn all_missing_variables_are_listed_together() {
        let mut vars = base();
        vars.remove("API_KEY");
        vars.remove("CLIENT_ID");
        let error = load(&vars).unwrap_err();
        assert_eq!(error, ConfigError::Missing(vec!["CLIENT_ID", "API_KEY"]));
        assert_eq!(
            error.to_string(),
            "CLIENT_ID, API_KEY not set (or empty); they are required"
        );
    }

    #[test]
    fn without_redis_url_the_embedded_store_is_chosen() {
        let mut vars = base();
        vars.remove("REDIS_URL");
        assert_eq!(
            load(&vars).unwrap().store,
            StoreConfig::Embedded {
                dir: PathBuf::from("./.token-broker")
            }
        );
        vars.insert("DATA_DIR", "/var/lib/token-broker");
        assert_eq!(
            load(&vars).unwrap().store,
            StoreConfig::Embedded {
                dir: PathBuf::from("/var/lib/token-broker")
            }
        );
    }

    #[test]
    fn malformed_values_are_rejected_with_their_name() {
        for (name, value) in [
            ("TOKEN_AUTH_METHOD", "private_key_jwt"),
            ("REFRESH_SKEW", "soon"),
            ("REFRESH_SKEW", "99999"),
            ("TOKEN_URL", "http://provider.example/token"),
            ("TOKEN_URL", "not a url"),
            ("REDIS_URL", "memcached://x"),
            ("AUTHORIZE_URL", "ftp://provider.example/authorize"),
            ("REVOCATION_URL", "http://provider.example/revoke"),
            ("LOGIN_STATE_TTL", "5"),
            ("REDIS_CLUSTER", "yes"),
        ] {
            let mut vars = base();
            vars.insert(name, value);
            match load(&vars).unwrap_err() {
                ConfigError::Invalid { name: got, .. } => assert_eq!(got, name, "{value}"),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_cluster_puts_the_prefix_in_a_hash_tag() {
        let mut vars = base();
        assert_eq!(load(&vars).unwrap().layout().tokens("x"), "token-broker:conn:x:tokens");
        vars.insert("REDIS_CLUSTER", "true");
        let config = load(&vars).unwrap();
        assert!(matches!(config.store, StoreConfig::Redis { cluster: true, .. }));
        assert_eq!(config.layout().tokens("x"), "{token-broker}:conn:x:tokens");
        // A brace in the prefix would move the hash tag and split the deployment over slots.
        vars.insert("KEY_PREFIX", "team{a}");
        match load(&vars).unwrap_err() {
            ConfigError::Invalid { name, .. } => assert_eq!(name, "KEY_PREFIX"),
            other => panic!("{other:?}"),
        }
        vars.insert("REDIS_CLUSTER", "false");
        assert_eq!(load(&vars).unwrap().layout().tokens("x"), "team{a}:conn:x:tokens");
    }

    #[test]
    fn debug_output_redacts_every_secret() {
        let printed = format!("{:?}", load(&base()).unwrap());
        for value in ["client-secret-value", "oauth-state-value", "api-key-value", "redis://"] {
            assert!(!printed.contains(value), "{value} in {printed}");
        }
        assert!(printed.contains("[redacted]"));
    }
}
