//! Configuration, read from the environment once per cold start and validated before any
//! request is served. A missing or malformed variable stops start-up with an error that names it,
//! so the broker never runs half-configured (and never fails open on an empty secret).

use std::{path::PathBuf, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};

use thiserror::Error;

use crate::base::{
    api_keys::{ApiKeys, parse_digest},
    aws,
    layout::Layout,
    presets::{self, Preset},
    sealing::parse_key,
    secret::Secret,
    store::DynamoConfig,
};

pub use crate::base::presets::{RefreshLifetime, TokenAuthMethod};

#[derive(Debug, Clone)]
pub struct Config {
    /// The `PROVIDER` preset the values below start from (`generic`: none).
    pub provider: &'static str,
    /// The provider's name as the login page shows it.
    pub provider_title: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub token_url: String,
    pub authorize_url: String,
    /// RFC 7009 endpoint; without it `/revoke` can only forget the tokens locally.
    pub revocation_url: Option<String>,
    /// Space-separated scopes requested at login.
    pub scopes: Option<String>,
    /// How the scopes are joined on the wire (a comma for Zoho).
    pub scope_separator: &'static str,
    /// Added to every authorization request (`AUTHORIZE_PARAMS`, or the preset's).
    pub authorize_params: Vec<(String, String)>,
    /// Whether logins carry a PKCE challenge (RFC 7636).
    pub pkce: bool,
    /// Where `/callback` is: `REDIRECT_URI`, else `PUBLIC_URL` + `/callback`, else (`None`)
    /// derived from each login's request.
    pub redirect_uri: Option<String>,
    /// The shared state of hand-built authorization URLs (`OAUTH_STATE`); `None` when it is not
    /// set or `ALLOW_STATIC_STATE=false`, which leaves only the one-time states `/login` issues.
    pub oauth_state: Option<Secret>,
    /// How long a state issued by `/login` (and its PKCE verifier) stays redeemable.
    pub login_state_ttl: Duration,
    /// The provider's issuer identifier; when set, `/callback` refuses an `iss` that does not
    /// match it (RFC 9207), which defeats mix-up attacks.
    pub issuer: Option<String>,
    /// Whether `/callback` also refuses a response without `iss` (`REQUIRE_ISS`, default true;
    /// false for a server whose metadata does not promise one).
    pub require_iss: bool,
    /// Every key clients may present (`API_KEY`, `API_KEYS`, `API_KEY_SHA256S`).
    pub api_keys: ApiKeys,
    /// Encryption at rest: the first key seals, all of them open. Empty: records are stored as is.
    pub encryption_keys: Vec<Secret>,
    pub store: StoreConfig,
    pub token_auth_method: TokenAuthMethod,
    /// How long a refresh token lives when the provider does not say, and whether using it
    /// extends that.
    pub refresh_lifetime: RefreshLifetime,
    /// The access token's lifetime when the provider's answer has no `expires_in`; `None`: such
    /// an answer is refused.
    pub default_expires_in: Option<i64>,
    /// Error codes the provider uses for what RFC 6749 calls `invalid_grant`.
    pub invalid_grant_codes: &'static [&'static str],
    /// Whether the provider answers OAuth errors with HTTP 200 (GitHub, Zoho).
    pub errors_with_200: bool,
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
    /// Where events are delivered (`WEBHOOK_URLS`); empty: no events are raised.
    pub webhook_urls: Vec<String>,
    /// The key deliveries are signed with (`WEBHOOK_SECRET`); read by keep-alive, which delivers.
    pub webhook_secret: Option<Secret>,
    /// How long before a refresh token lapses keep-alive raises `connection.lapsing`.
    pub webhook_lapse_warning: Duration,
    /// How long refreshes must have failed before `connection.failing` is raised.
    pub webhook_failing_after: Duration,
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

    /// Everything every route needs (local mode), read through `lookup`, so tests need not touch
    /// the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::for_function(Uses::ALL, lookup)
    }

    /// What a function doing `uses` needs, and nothing more: a variable of another part is not
    /// even looked up, so a function deployed without it starts, and one that needs it after all
    /// names it at start-up. What is not read keeps an empty value no code of the function uses
    /// (no API key then opens anything).
    pub fn for_function(uses: Uses, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars { lookup: &lookup, uses };
        let allow_static_state = match vars.optional("ALLOW_STATIC_STATE").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(invalid("ALLOW_STATIC_STATE", "must be true or false")),
        };
        let preset = match vars.optional("PROVIDER") {
            None => &presets::GENERIC,
            Some(name) => presets::find(&name)
                .ok_or_else(|| invalid("PROVIDER", &format!("is not one of {}", presets::names().join(", "))))?,
        };
        // Report every missing variable at once: fixing them one start-up at a time is tedious.
        let missing: Vec<&'static str> = REQUIRED
            .iter()
            .copied()
            .filter(|name| vars.reads(name))
            .filter(|name| !matches!(*name, "TOKEN_URL" | "AUTHORIZE_URL") || preset.token_url.is_empty())
            // Keys may come as a list or as digests instead.
            .filter(|name| {
                *name != "API_KEY"
                    || (vars.optional("API_KEYS").is_none()
                        && vars.optional("API_KEY_SHA256S").is_none()
                        && vars.optional("SCOPED_API_KEYS").is_none())
            })
            .filter(|name| vars.optional(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(ConfigError::Missing(missing));
        }
        let webhook_urls = webhook_urls(&vars)?;
        let endpoint = |name: &'static str, template: &'static str| -> Result<Option<String>, ConfigError> {
            let url = match vars.optional(name) {
                Some(url) => url,
                None if template.is_empty() => return Ok(None),
                None => preset_url(&vars, preset, template)?,
            };
            check_url(name, &url)?;
            Ok(Some(url))
        };
        let needed_endpoint = |name: &'static str, template: &'static str| -> Result<String, ConfigError> {
            if !vars.reads(name) {
                return Ok(String::new());
            }
            endpoint(name, template)?.ok_or(ConfigError::Missing(vec![name]))
        };
        let token_url = needed_endpoint("TOKEN_URL", preset.token_url)?;
        let authorize_url = needed_endpoint("AUTHORIZE_URL", preset.authorize_url)?;
        let revocation_url = match vars.reads("REVOCATION_URL") {
            true => endpoint("REVOCATION_URL", preset.revocation_url.unwrap_or_default())?,
            false => None,
        };
        let redirect_uri = match (vars.optional("REDIRECT_URI"), vars.optional("PUBLIC_URL")) {
            (Some(uri), _) => {
                check_url("REDIRECT_URI", &uri)?;
                Some(uri)
            }
            (None, Some(public)) => {
                check_url("PUBLIC_URL", &public)?;
                Some(format!("{}/callback", public.trim_end_matches('/')))
            }
            (None, None) => None,
        };
        let store = store(&vars)?;
        let token_auth_method = match vars.optional("TOKEN_AUTH_METHOD").as_deref() {
            None => preset.auth_method,
            Some("client_secret_post") => TokenAuthMethod::ClientSecretPost,
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
        let provider_title = match vars.optional("PROVIDER_TITLE") {
            Some(title) => title,
            None if !preset.title.is_empty() => preset.title.to_owned(),
            // The generic entry is known by its host.
            None => reqwest::Url::parse(&authorize_url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned))
                .unwrap_or_else(|| "the provider".to_owned()),
        };
        if provider_title.chars().count() > 64 || provider_title.chars().any(char::is_control) {
            return Err(invalid("PROVIDER_TITLE", "must be at most 64 characters on one line"));
        }
        let refresh_seconds = vars
            .seconds(
                "REFRESH_TOKEN_TTL",
                preset.refresh_lifetime.seconds() as u64,
                60..=10 * 365 * 86400,
            )?
            .as_secs() as i64;
        let refresh_lifetime = match vars.optional("REFRESH_TOKEN_LIFETIME").as_deref() {
            None => preset.refresh_lifetime.with_seconds(refresh_seconds),
            Some("fixed") => RefreshLifetime::Fixed(refresh_seconds),
            Some("sliding") => RefreshLifetime::Sliding(refresh_seconds),
            Some("idle") => RefreshLifetime::Idle(refresh_seconds),
            Some(_) => return Err(invalid("REFRESH_TOKEN_LIFETIME", "must be fixed, sliding or idle")),
        };
        let default_expires_in = match vars.optional("ACCESS_TOKEN_TTL") {
            Some(_) => Some(vars.seconds("ACCESS_TOKEN_TTL", 0, 60..=86400)?.as_secs() as i64),
            None => preset.default_expires_in,
        };
        Ok(Self {
            provider: preset.name,
            provider_title,
            scope_separator: preset.scope_separator,
            authorize_params: match vars.optional("AUTHORIZE_PARAMS") {
                Some(params) => authorize_params(&params)?,
                None => preset
                    .authorize_params
                    .iter()
                    .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                    .collect(),
            },
            pkce: match vars.optional("PKCE").as_deref() {
                None => preset.pkce,
                Some("true") => true,
                Some("false") => false,
                Some(_) => return Err(invalid("PKCE", "must be true or false")),
            },
            default_expires_in,
            invalid_grant_codes: preset.invalid_grant_codes,
            errors_with_200: preset.errors_with_200,
            client_id: vars.required("CLIENT_ID")?,
            client_secret: Secret::new(vars.required("CLIENT_SECRET")?),
            token_url,
            authorize_url,
            revocation_url,
            scopes: vars.optional("SCOPES").or_else(|| preset.scopes.map(str::to_owned)),
            redirect_uri,
            oauth_state: vars
                .optional("OAUTH_STATE")
                .filter(|_| allow_static_state)
                .map(Secret::new),
            login_state_ttl: vars.seconds("LOGIN_STATE_TTL", 600, 60..=3600)?,
            issuer: vars.optional("ISSUER"),
            require_iss: match vars.optional("REQUIRE_ISS").as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(_) => return Err(invalid("REQUIRE_ISS", "must be true or false")),
            },
            api_keys: api_keys(&vars)?,
            encryption_keys: encryption_keys(&vars)?,
            store,
            token_auth_method,
            refresh_lifetime,
            refresh_skew: vars.seconds("REFRESH_SKEW", 60, 0..=3600)?,
            key_prefix,
            provider_timeout: vars.seconds("PROVIDER_TIMEOUT", 10, 1..=120)?,
            store_timeout: match vars.optional("STORE_TIMEOUT") {
                Some(_) => vars.seconds("STORE_TIMEOUT", 2, 1..=60)?,
                None => vars.seconds("REDIS_TIMEOUT", 2, 1..=60)?,
            },
            refresh_wait: vars.seconds("REFRESH_WAIT", 5, 0..=120)?,
            keepalive_window: vars.seconds("KEEPALIVE_WINDOW", preset.keepalive_window as u64, 0..=365 * 86400)?,
            keepalive_interval: vars.seconds("KEEPALIVE_INTERVAL", 3600, 0..=7 * 86400)?,
            webhook_lapse_warning: vars.duration("WEBHOOK_LAPSE_DAYS", 14, 1..=365, (86400, "days"))?,
            webhook_failing_after: vars.duration("WEBHOOK_FAILING_MINUTES", 60, 1..=10_080, (60, "minutes"))?,
            webhook_secret: webhook_secret(&vars, &webhook_urls)?,
            webhook_urls,
        })
    }
}

/// The parts of the broker a function runs. Each variable belongs to the parts that read it
/// ([`VARIABLES`]); a function reads only the variables of its parts, so its deployment needs to
/// hold nothing else (no client secret where nothing calls the provider's token endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses(u16);

impl Uses {
    /// Nothing beyond the store, which every function opens.
    pub const STORE: Self = Self(0);
    /// Checks API keys (every route but `/callback`).
    pub const KEYS: Self = Self(1);
    /// Builds authorization requests (`/login`).
    pub const LOGIN: Self = Self(1 << 1);
    /// Accepts the provider's redirect (`/callback`).
    pub const CALLBACK: Self = Self(1 << 2);
    /// Calls the provider's token endpoint: code exchange, refresh, import.
    pub const TOKEN_ENDPOINT: Self = Self(1 << 3);
    /// Calls the provider's revocation endpoint (`/revoke`).
    pub const REVOCATION: Self = Self(1 << 4);
    /// Refreshes while a caller waits (`/token`).
    pub const ON_DEMAND: Self = Self(1 << 5);
    /// Refreshes on a schedule (keep-alive).
    pub const KEEPALIVE: Self = Self(1 << 6);
    /// Seals or opens stored records (`TOKEN_ENCRYPTION_KEY`).
    pub const SEALING: Self = Self(1 << 7);
    /// Raises events for webhooks (`WEBHOOK_URLS`); keep-alive also delivers them.
    pub const EVENTS: Self = Self(1 << 8);
    /// Every part: local mode serves every route.
    pub const ALL: Self = Self(u16::MAX);
    /// Whatever talks to the provider, and so needs to know which one it is.
    const PROVIDER: Self = Self::LOGIN
        .and(Self::CALLBACK)
        .and(Self::TOKEN_ENDPOINT)
        .and(Self::REVOCATION)
        .and(Self::KEEPALIVE);
    const CLIENT: Self = Self::TOKEN_ENDPOINT.and(Self::REVOCATION);

    pub const fn and(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    const fn overlaps(self, other: Self) -> bool {
        self.0 & other.0 != 0 || other.0 == 0
    }

    /// Whether a function doing these parts reads `name`.
    pub fn reads(self, name: &str) -> bool {
        let part = VARIABLES
            .iter()
            .find(|(variable, _)| *variable == name)
            .map(|(_, part)| *part);
        debug_assert!(part.is_some(), "{name} is missing from config::VARIABLES");
        part.is_some_and(|part| self.overlaps(part))
    }

    /// The variables such a function reads.
    pub fn variables(self) -> impl Iterator<Item = &'static str> {
        VARIABLES
            .iter()
            .filter(move |(_, part)| self.overlaps(*part))
            .map(|(name, _)| *name)
    }
}

/// Every variable the loader reads, with the parts that read it.
#[rustfmt::skip]
pub const VARIABLES: &[(&str, Uses)] = &[
    ("REDIS_URL", Uses::STORE), ("REDIS_CLUSTER", Uses::STORE), ("DYNAMODB_TABLE", Uses::STORE),
    ("AWS_REGION", Uses::STORE), ("AWS_DEFAULT_REGION", Uses::STORE), ("AWS_ENDPOINT_URL_DYNAMODB", Uses::STORE),
    ("AWS_ENDPOINT_URL", Uses::STORE), ("AWS_ACCESS_KEY_ID", Uses::STORE), ("AWS_SECRET_ACCESS_KEY", Uses::STORE),
    ("AWS_SESSION_TOKEN", Uses::STORE), ("DATA_DIR", Uses::STORE), ("KEY_PREFIX", Uses::STORE),
    ("STORE_TIMEOUT", Uses::STORE), ("REDIS_TIMEOUT", Uses::STORE), ("SECRETS_ARN", Uses::STORE),
    ("API_KEY", Uses::KEYS), ("API_KEYS", Uses::KEYS), ("API_KEY_SHA256S", Uses::KEYS), ("SCOPED_API_KEYS", Uses::KEYS),
    ("TOKEN_ENCRYPTION_KEY", Uses::SEALING), ("TOKEN_ENCRYPTION_KEYS", Uses::SEALING),
    ("PROVIDER", Uses::PROVIDER), ("PROVIDER_TENANT", Uses::PROVIDER), ("PROVIDER_REGION", Uses::PROVIDER),
    ("PROVIDER_BASE_URL", Uses::PROVIDER),
    ("CLIENT_ID", Uses::LOGIN.and(Uses::CLIENT)), ("CLIENT_SECRET", Uses::CLIENT),
    ("TOKEN_AUTH_METHOD", Uses::CLIENT), ("PROVIDER_TIMEOUT", Uses::CLIENT),
    ("TOKEN_URL", Uses::TOKEN_ENDPOINT), ("REFRESH_TOKEN_TTL", Uses::TOKEN_ENDPOINT),
    ("REFRESH_TOKEN_LIFETIME", Uses::TOKEN_ENDPOINT), ("ACCESS_TOKEN_TTL", Uses::TOKEN_ENDPOINT),
    ("REVOCATION_URL", Uses::REVOCATION),
    ("AUTHORIZE_URL", Uses::LOGIN), ("SCOPES", Uses::LOGIN), ("AUTHORIZE_PARAMS", Uses::LOGIN),
    ("PROVIDER_TITLE", Uses::LOGIN),
    ("PKCE", Uses::LOGIN.and(Uses::CALLBACK)), ("REDIRECT_URI", Uses::LOGIN.and(Uses::CALLBACK)),
    ("PUBLIC_URL", Uses::LOGIN.and(Uses::CALLBACK)), ("LOGIN_STATE_TTL", Uses::LOGIN.and(Uses::CALLBACK)),
    ("OAUTH_STATE", Uses::CALLBACK), ("ALLOW_STATIC_STATE", Uses::CALLBACK), ("ISSUER", Uses::CALLBACK),
    ("REQUIRE_ISS", Uses::CALLBACK),
    ("REFRESH_SKEW", Uses::ON_DEMAND), ("REFRESH_WAIT", Uses::ON_DEMAND.and(Uses::KEEPALIVE)),
    ("KEEPALIVE_WINDOW", Uses::KEEPALIVE), ("KEEPALIVE_INTERVAL", Uses::KEEPALIVE),
    ("WEBHOOK_URLS", Uses::EVENTS.and(Uses::KEEPALIVE)), ("WEBHOOK_SECRET", Uses::KEEPALIVE),
    ("WEBHOOK_LAPSE_DAYS", Uses::KEEPALIVE), ("WEBHOOK_FAILING_MINUTES", Uses::ON_DEMAND.and(Uses::KEEPALIVE)),
];

/// Variables without which no route can work (the two URLs only without a `PROVIDER` preset).
/// `REDIS_URL` is not among them: without it, local mode uses its embedded store, and the Lambda
/// functions refuse to start.
pub const REQUIRED: [&str; 5] = ["CLIENT_ID", "CLIENT_SECRET", "TOKEN_URL", "AUTHORIZE_URL", "API_KEY"];

/// One of `preset`'s endpoints with its `{tenant}` or `{region}` filled in, and its origin
/// replaced by `PROVIDER_BASE_URL` when that is set (a path there is kept as a prefix).
fn preset_url<F: Fn(&str) -> Option<String>>(
    vars: &Vars<'_, F>,
    preset: &Preset,
    template: &str,
) -> Result<String, ConfigError> {
    let mut url = template.to_owned();
    if let Some(setting) = &preset.setting {
        let value = vars
            .optional(setting.variable)
            .unwrap_or_else(|| setting.default.to_owned());
        let filled = if setting.allowed.is_empty() {
            let dns = value.len() <= 253
                && value
                    .split('.')
                    .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            dns.then(|| value.clone())
        } else {
            setting
                .allowed
                .iter()
                .find(|(name, _)| *name == value)
                .map(|(_, filled)| (*filled).to_owned())
        };
        let Some(filled) = filled else {
            let reason = if setting.allowed.is_empty() {
                "must be a name or ID of letters, digits, '-' and '.'".to_owned()
            } else {
                let names: Vec<&str> = setting.allowed.iter().map(|(name, _)| *name).collect();
                format!("must be one of {}", names.join(", "))
            };
            return Err(invalid(setting.variable, &reason));
        };
        url = url.replace(setting.placeholder, &filled);
    }
    let Some(base) = vars.optional("PROVIDER_BASE_URL") else {
        return Ok(url);
    };
    check_url("PROVIDER_BASE_URL", &base)?;
    let parsed = reqwest::Url::parse(&url).expect("preset URLs are valid");
    let rest = &url[parsed.origin().ascii_serialization().len()..];
    Ok(format!("{}{rest}", base.trim_end_matches('/')))
}

/// `AUTHORIZE_PARAMS`: `name=value` pairs joined by `&`, form-encoded as in a query string.
fn authorize_params(raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    // These are the broker's own; letting a variable set them would undo PKCE or the state.
    const OWN: [&str; 6] = [
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
    ];
    let params: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    if params.iter().any(|(name, _)| name.is_empty()) {
        return Err(invalid("AUTHORIZE_PARAMS", "must be name=value pairs joined by '&'"));
    }
    if let Some((name, _)) = params
        .iter()
        .find(|(name, _)| OWN.contains(&name.as_str()) || name == "scope")
    {
        return Err(invalid(
            "AUTHORIZE_PARAMS",
            &format!("must not set {name}, which the broker sets (scopes come from SCOPES)"),
        ));
    }
    Ok(params)
}

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
    let mut keys = ApiKeys::new(&plain.iter().map(String::as_str).collect::<Vec<_>>(), digests);
    if let Some(scoped) = vars.optional("SCOPED_API_KEYS") {
        keys = keys
            .with_scoped(&scoped)
            .map_err(|error| invalid("SCOPED_API_KEYS", &error.to_string()))?;
    }
    if keys.is_empty() && vars.reads("API_KEY") {
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

struct Vars<'a, F: Fn(&str) -> Option<String>> {
    lookup: &'a F,
    uses: Uses,
}

impl<F: Fn(&str) -> Option<String>> Vars<'_, F> {
    /// Whether this function reads `name` at all.
    fn reads(&self, name: &str) -> bool {
        self.uses.reads(name)
    }

    /// Empty counts as unset: an empty secret must never be accepted as a valid one. A variable
    /// of a part the function does not do is unset, whatever the environment holds.
    fn optional(&self, name: &str) -> Option<String> {
        if !self.reads(name) {
            return None;
        }
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A variable the function needs; one it does not read is the empty string.
    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        if !self.reads(name) {
            return Ok(String::new());
        }
        self.optional(name).ok_or_else(|| ConfigError::Missing(vec![name]))
    }

    fn seconds(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.duration(name, default, range, (1, "seconds"))
    }

    /// A whole number of `unit` (its length in seconds, and its name for the error), `default`
    /// when unset.
    fn duration(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
        (unit, units): (u64, &str),
    ) -> Result<Duration, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(Duration::from_secs(default * unit));
        };
        let value: u64 = raw
            .parse()
            .map_err(|_| invalid(name, &format!("must be a whole number of {units}")))?;
        if !range.contains(&value) {
            return Err(invalid(
                name,
                &format!("must be between {} and {} {units}", range.start(), range.end()),
            ));
        }
        Ok(Duration::from_secs(value * unit))
    }
}

/// `WEBHOOK_URLS`: comma- or space-separated, each https (http only on localhost), at most 5.
fn webhook_urls<F: Fn(&str) -> Option<String>>(vars: &Vars<'_, F>) -> Result<Vec<String>, ConfigError> {
    let Some(list) = vars.optional("WEBHOOK_URLS") else {
        return Ok(Vec::new());
    };
    let urls: Vec<String> = list
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.len() > 5 {
        return Err(invalid("WEBHOOK_URLS", "lists more than 5 URLs"));
    }
    for url in &urls {
        check_url("WEBHOOK_URLS", url)?;
    }
    Ok(urls)
}

/// `WEBHOOK_SECRET`: `whsec_` and 24 to 64 random bytes in base64, as Standard Webhooks writes
/// secrets; needed wherever events are delivered.
fn webhook_secret<F: Fn(&str) -> Option<String>>(
    vars: &Vars<'_, F>,
    urls: &[String],
) -> Result<Option<Secret>, ConfigError> {
    let Some(text) = vars.optional("WEBHOOK_SECRET") else {
        if !urls.is_empty() && vars.reads("WEBHOOK_SECRET") {
            return Err(ConfigError::Missing(vec!["WEBHOOK_SECRET"]));
        }
        return Ok(None);
    };
    let bytes = text
        .trim()
        .strip_prefix("whsec_")
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .filter(|bytes| (24..=64).contains(&bytes.len()))
        .ok_or_else(|| {
            invalid(
                "WEBHOOK_SECRET",
                "must be whsec_ and 24 to 64 random bytes in base64 (e.g. whsec_$(openssl rand -base64 32))",
            )
        })?;
    Ok(Some(Secret::new(STANDARD.encode(bytes))))
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
    if secure_url(&url) {
        Ok(())
    } else {
        Err(invalid(name, "must be an https:// URL (http:// only on localhost)"))
    }
}

/// https, or http on this machine: where the broker may send a secret.
pub fn secure_url(url: &reqwest::Url) -> bool {
    url.scheme() == "https" || url.scheme() == "http" && is_loopback(url)
}

fn is_loopback(url: &reqwest::Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
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

    /// A deployment that names its provider and nothing else about it.
    fn preset(name: &'static str) -> HashMap<&'static str, &'static str> {
        let mut vars = base();
        for name in ["TOKEN_URL", "AUTHORIZE_URL", "REDIRECT_URI", "OAUTH_STATE"] {
            vars.remove(name);
        }
        vars.insert("PROVIDER", name);
        vars
    }

    #[test]
    fn every_preset_starts_with_only_the_client_and_the_key() {
        for entry in presets::PRESETS {
            let config = load(&preset(entry.name)).unwrap_or_else(|e| panic!("{}: {e}", entry.name));
            assert_eq!(config.provider, entry.name);
            assert_eq!(config.provider_title, entry.title);
            for url in [
                Some(&config.token_url),
                Some(&config.authorize_url),
                config.revocation_url.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(
                    url.starts_with("https://") && !url.contains('{'),
                    "{}: {url}",
                    entry.name
                );
            }
            assert_eq!(config.redirect_uri, None);
            assert!(config.oauth_state.is_none());
            assert_eq!(config.token_auth_method, entry.auth_method);
            assert_eq!(config.refresh_lifetime, entry.refresh_lifetime);
            assert_eq!(config.default_expires_in, entry.default_expires_in);
            assert_eq!(
                config.keepalive_window,
                Duration::from_secs(entry.keepalive_window as u64)
            );
            // Keep-alive must get its chance before an idle token lapses.
            assert!(
                entry.keepalive_window < entry.refresh_lifetime.seconds() / 2,
                "{}",
                entry.name
            );
            assert!(entry.docs.starts_with("https://"), "{}", entry.name);
        }
        let hosts = |name| {
            let config = load(&preset(name)).unwrap();
            (config.authorize_url, config.token_url)
        };
        assert_eq!(
            hosts("digikey-sandbox"),
            (
                "https://sandbox-api.digikey.com/v1/oauth2/authorize".to_owned(),
                "https://sandbox-api.digikey.com/v1/oauth2/token".to_owned()
            )
        );
        assert!(
            hosts("salesforce-sandbox")
                .1
                .starts_with("https://test.salesforce.com/")
        );
        assert!(
            hosts("microsoft")
                .1
                .starts_with("https://login.microsoftonline.com/common/")
        );
        assert!(hosts("zoho").1.starts_with("https://accounts.zoho.com/"));
    }

    #[test]
    fn a_preset_setting_fills_its_urls_and_is_checked() {
        let mut vars = preset("zoho");
        vars.insert("PROVIDER_REGION", "ca");
        assert_eq!(
            load(&vars).unwrap().token_url,
            "https://accounts.zohocloud.ca/oauth/v2/token"
        );
        vars.insert("PROVIDER_REGION", "mars");
        let error = load(&vars).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::Invalid {
                    name: "PROVIDER_REGION",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("com, eu, in"), "{error}");

        let mut vars = preset("microsoft");
        vars.insert("PROVIDER_TENANT", "contoso.onmicrosoft.com");
        assert_eq!(
            load(&vars).unwrap().authorize_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        for bad in ["../common", "a/b", "x?y=1", "a..b"] {
            vars.insert("PROVIDER_TENANT", bad);
            assert!(
                matches!(
                    load(&vars),
                    Err(ConfigError::Invalid {
                        name: "PROVIDER_TENANT",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn explicit_variables_override_the_preset() {
        let mut vars = preset("xero");
        vars.extend([
            ("TOKEN_URL", "https://proxy.example/xero/token"),
            ("TOKEN_AUTH_METHOD", "client_secret_post"),
            ("SCOPES", "offline_access accounting.invoices"),
            ("REFRESH_TOKEN_TTL", "86400"),
            ("REFRESH_TOKEN_LIFETIME", "fixed"),
            ("ACCESS_TOKEN_TTL", "600"),
            ("KEEPALIVE_WINDOW", "3600"),
            ("PKCE", "false"),
            ("AUTHORIZE_PARAMS", "audience=https%3A%2F%2Fapi.example&prompt=login"),
            ("PROVIDER_TITLE", "Xero (finance team)"),
        ]);
        let config = load(&vars).unwrap();
        assert_eq!(config.token_url, "https://proxy.example/xero/token");
        assert_eq!(
            config.authorize_url,
            "https://login.xero.com/identity/connect/authorize"
        );
        assert_eq!(config.token_auth_method, TokenAuthMethod::ClientSecretPost);
        assert_eq!(config.scopes.as_deref(), Some("offline_access accounting.invoices"));
        assert_eq!(config.refresh_lifetime, RefreshLifetime::Fixed(86400));
        assert_eq!(config.default_expires_in, Some(600));
        assert_eq!(config.keepalive_window, Duration::from_secs(3600));
        assert!(!config.pkce);
        assert_eq!(
            config.authorize_params,
            vec![
                ("audience".to_owned(), "https://api.example".to_owned()),
                ("prompt".to_owned(), "login".to_owned())
            ]
        );
        assert_eq!(config.provider_title, "Xero (finance team)");
    }

    #[test]
    fn provider_base_url_moves_every_endpoint_and_keeps_their_paths() {
        let mut vars = preset("gitlab");
        vars.insert("PROVIDER_BASE_URL", "https://git.example.com/gitlab/");
        let config = load(&vars).unwrap();
        assert_eq!(config.authorize_url, "https://git.example.com/gitlab/oauth/authorize");
        assert_eq!(config.token_url, "https://git.example.com/gitlab/oauth/token");
        assert_eq!(
            config.revocation_url.as_deref(),
            Some("https://git.example.com/gitlab/oauth/revoke")
        );
        vars.insert("PROVIDER_BASE_URL", "http://git.example.com");
        assert!(matches!(
            load(&vars),
            Err(ConfigError::Invalid {
                name: "PROVIDER_BASE_URL",
                ..
            })
        ));
    }

    #[test]
    fn an_unknown_provider_or_a_bad_provider_setting_is_named() {
        let error = load(&preset("acme")).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { name: "PROVIDER", .. }));
        assert!(error.to_string().contains("digikey-sandbox"), "{error}");
        for (name, value) in [
            ("REFRESH_TOKEN_LIFETIME", "forever"),
            ("PKCE", "yes"),
            ("ACCESS_TOKEN_TTL", "5"),
            ("AUTHORIZE_PARAMS", "state=fixed"),
            ("AUTHORIZE_PARAMS", "scope=admin"),
            ("AUTHORIZE_PARAMS", "=x"),
            ("PROVIDER_TITLE", "two\nlines"),
        ] {
            let mut vars = preset("google");
            vars.insert(name, value);
            let error = load(&vars).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Invalid { name: named, .. } if *named == name),
                "{name}={value}: {error}"
            );
        }
        // Without a preset the endpoints are still required.
        let mut vars = preset("generic");
        vars.remove("PROVIDER");
        assert_eq!(
            load(&vars).unwrap_err(),
            ConfigError::Missing(vec!["TOKEN_URL", "AUTHORIZE_URL"])
        );
    }

    #[test]
    fn the_generic_provider_is_known_by_its_host_and_public_url_pins_the_callback() {
        let mut vars = base();
        vars.remove("REDIRECT_URI");
        vars.insert("PUBLIC_URL", "https://broker.example/tokens/");
        let config = load(&vars).unwrap();
        assert_eq!(config.provider, "generic");
        assert_eq!(config.provider_title, "provider.example");
        assert_eq!(
            config.redirect_uri.as_deref(),
            Some("https://broker.example/tokens/callback")
        );
        assert_eq!(config.default_expires_in, None);
        assert_eq!(config.refresh_lifetime, RefreshLifetime::Fixed(90 * 86400));
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
        assert_eq!(config.refresh_lifetime, RefreshLifetime::Fixed(7_776_000));
        assert_eq!(config.keepalive_window, Duration::from_secs(7 * 86400));
        assert!(config.pkce);
        assert_eq!(config.refresh_skew, Duration::from_secs(60));
        assert_eq!(config.key_prefix, "token-broker");
    }

    #[test]
    fn a_function_reads_only_the_variables_of_its_parts() {
        let only = |names: &[&str]| -> HashMap<&'static str, &'static str> {
            base().into_iter().filter(|(name, _)| names.contains(name)).collect()
        };
        let read = |uses: Uses, vars: &HashMap<&'static str, &'static str>| {
            Config::for_function(uses, |name| vars.get(name).map(|v| v.to_string()))
        };
        // A monitor's function: the key and the store, no client, no provider.
        let verify = read(Uses::KEYS, &only(&["API_KEY", "REDIS_URL"])).unwrap();
        assert!(verify.client_id.is_empty() && verify.client_secret.expose().is_empty());
        assert!(verify.token_url.is_empty() && verify.oauth_state.is_none());
        // What another part reads is not even looked at, malformed or not.
        let mut foreign = only(&["API_KEY", "REDIS_URL"]);
        foreign.insert("TOKEN_URL", "not a url");
        foreign.insert("REFRESH_SKEW", "soon");
        assert!(read(Uses::KEYS, &foreign).is_ok());
        // /login builds authorization requests: the client id, not its secret.
        let login = read(
            Uses::KEYS.and(Uses::LOGIN),
            &only(&["API_KEY", "REDIS_URL", "CLIENT_ID", "AUTHORIZE_URL"]),
        )
        .unwrap();
        assert_eq!(login.authorize_url, "https://provider.example/oauth2/authorize");
        assert!(login.client_secret.expose().is_empty());
        // A function that needs a value it was not given says which.
        let token = read(
            Uses::KEYS.and(Uses::TOKEN_ENDPOINT).and(Uses::ON_DEMAND),
            &only(&["API_KEY", "REDIS_URL", "CLIENT_ID", "AUTHORIZE_URL"]),
        );
        assert_eq!(
            token.unwrap_err(),
            ConfigError::Missing(vec!["CLIENT_SECRET", "TOKEN_URL"])
        );
        // /callback is the provider's redirect: no API key at all.
        let callback = read(
            Uses::CALLBACK.and(Uses::TOKEN_ENDPOINT),
            &only(&["REDIS_URL", "CLIENT_ID", "CLIENT_SECRET", "TOKEN_URL"]),
        )
        .unwrap();
        assert!(callback.api_keys.is_empty());
        assert!(read(Uses::KEYS, &only(&["REDIS_URL"])).is_err());
    }

    #[test]
    fn every_variable_read_is_listed_once() {
        let mut names: Vec<&str> = VARIABLES.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a variable is listed twice");
        assert_eq!(Uses::ALL.variables().count(), count);
        assert!(Uses::STORE.variables().all(|name| Uses::KEYS.reads(name)));
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
    fn scoped_keys_add_to_the_others_and_a_bad_entry_is_named() {
        let mut vars = base();
        vars.remove("API_KEY");
        // printf %s monitor-key | sha256sum
        vars.insert(
            "SCOPED_API_KEYS",
            "monitor:c05c1d4e0c3bd8a8d5b7d5c4b0b0e5c4bd5d7b8f3a4b2c1d0e9f8a7b6c5d4e3f:verify",
        );
        let config = load(&vars).unwrap();
        assert!(!config.api_keys.is_empty());
        vars.insert("SCOPED_API_KEYS", "monitor:nothex:verify");
        let error = load(&vars).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Invalid { name: "SCOPED_API_KEYS", reason } if reason.contains("entry 1 (monitor)")),
            "{error}"
        );
    }

    #[test]
    fn the_static_state_can_be_switched_off() {
        let mut vars = base();
        vars.insert("ALLOW_STATIC_STATE", "false");
        assert!(load(&vars).unwrap().oauth_state.is_none());
        vars.remove("OAUTH_STATE");
        assert!(load(&vars).unwrap().oauth_state.is_none());
        // Without OAUTH_STATE there is no static state to allow.
        vars.remove("ALLOW_STATIC_STATE");
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
            ("WEBHOOK_LAPSE_DAYS", "0"),
            ("WEBHOOK_LAPSE_DAYS", "a fortnight"),
            ("WEBHOOK_FAILING_MINUTES", "10081"),
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
    fn webhook_periods_are_read_in_their_units() {
        let mut vars = base();
        let config = load(&vars).unwrap();
        assert_eq!(config.webhook_lapse_warning, Duration::from_secs(14 * 86400));
        assert_eq!(config.webhook_failing_after, Duration::from_secs(3600));
        vars.insert("WEBHOOK_LAPSE_DAYS", "3");
        vars.insert("WEBHOOK_FAILING_MINUTES", "10");
        let config = load(&vars).unwrap();
        assert_eq!(config.webhook_lapse_warning, Duration::from_secs(3 * 86400));
        assert_eq!(config.webhook_failing_after, Duration::from_secs(600));
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
