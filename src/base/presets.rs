//! Providers by name (`PROVIDER=<name>`): what each provider documents about its endpoints and
//! its tokens, in one table. [`crate::base::config`] starts from a preset and lets every explicit
//! variable override it; the refresh logic reads the lifetimes from the result, so no route knows
//! which provider it talks to.
//!
//! In the URLs, `{tenant}` and `{region}` are filled from `PROVIDER_TENANT` and
//! `PROVIDER_REGION`, and `PROVIDER_BASE_URL` replaces the origin of every endpoint (a
//! self-managed GitLab, a Salesforce My Domain, a national cloud, a proxy).

/// How the token endpoint authenticates the client (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuthMethod {
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// HTTP Basic with the form-urlencoded client id and secret.
    ClientSecretBasic,
}

/// How long a refresh token lives, when the provider's answer does not say
/// (`refresh_token_expires_in`, which Digi-Key and GitHub send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshLifetime {
    /// This long from when the token was issued; a refresh that returns the same token does
    /// not extend it.
    Fixed(i64),
    /// This long from its last use: every refresh starts the time again, whether or not the
    /// provider rotated the token.
    Sliding(i64),
    /// Revoked after this long unused. For the broker the same as [`RefreshLifetime::Sliding`]:
    /// the deadline is the last refresh plus this; keep-alive refreshes before it.
    Idle(i64),
}

impl RefreshLifetime {
    pub fn seconds(self) -> i64 {
        match self {
            Self::Fixed(s) | Self::Sliding(s) | Self::Idle(s) => s,
        }
    }

    /// Whether a refresh moves the deadline even when the provider keeps the token.
    pub fn extends_on_use(self) -> bool {
        !matches!(self, Self::Fixed(_))
    }

    /// The same kind of lifetime, `seconds` long.
    pub fn with_seconds(self, seconds: i64) -> Self {
        match self {
            Self::Fixed(_) => Self::Fixed(seconds),
            Self::Sliding(_) => Self::Sliding(seconds),
            Self::Idle(_) => Self::Idle(seconds),
        }
    }
}

#[derive(Debug)]
pub struct Preset {
    /// The `PROVIDER` value.
    pub name: &'static str,
    /// What the login page calls it.
    pub title: &'static str,
    pub authorize_url: &'static str,
    pub token_url: &'static str,
    /// RFC 7009 (or compatible) revocation; `None` where the provider has none.
    pub revocation_url: Option<&'static str>,
    pub auth_method: TokenAuthMethod,
    /// Requested at login unless `SCOPES` says otherwise; written with spaces, sent with
    /// `scope_separator`.
    pub scopes: Option<&'static str>,
    pub scope_separator: &'static str,
    /// Added to the authorization request, e.g. what makes Google issue a refresh token.
    pub authorize_params: &'static [(&'static str, &'static str)],
    /// Whether to send a PKCE challenge (RFC 7636); off only where the provider rejects it.
    pub pkce: bool,
    /// Whether every refresh returns a new refresh token (the old one then stops working).
    pub rotates: bool,
    pub refresh_lifetime: RefreshLifetime,
    /// The access token's lifetime when the answer has no `expires_in`.
    pub default_expires_in: Option<i64>,
    /// Keep-alive refreshes when less than this is left of the refresh token.
    pub keepalive_window: i64,
    /// Error codes that mean what `invalid_grant` means: the grant is gone.
    pub invalid_grant_codes: &'static [&'static str],
    /// Whether the token endpoint answers OAuth errors with HTTP 200 instead of 400.
    pub errors_with_200: bool,
    /// `{tenant}` or `{region}` when the URLs have one.
    pub setting: Option<Setting>,
    /// Where the provider documents the above.
    pub docs: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub placeholder: &'static str,
    pub variable: &'static str,
    pub default: &'static str,
    /// The values the variable may take, each with what it puts in the URL. Empty: any DNS
    /// name, put in as it is.
    pub allowed: &'static [(&'static str, &'static str)],
}

const DAY: i64 = 86_400;

/// https://developer.digikey.com/documentation/oauth: authorization code flow with the
/// client secret in the body; access tokens live 30 minutes, refresh tokens 90 days and
/// are replaced on every refresh (the answer says `refresh_token_expires_in`). No
/// revocation endpoint and no discovery document.
const DIGIKEY: Preset = Preset {
    name: "digikey",
    title: "Digi-Key",
    authorize_url: "https://api.digikey.com/v1/oauth2/authorize",
    token_url: "https://api.digikey.com/v1/oauth2/token",
    revocation_url: None,
    auth_method: TokenAuthMethod::ClientSecretPost,
    scopes: None,
    scope_separator: " ",
    authorize_params: &[],
    pkce: true,
    rotates: true,
    refresh_lifetime: RefreshLifetime::Sliding(90 * DAY),
    default_expires_in: Some(1800),
    keepalive_window: 7 * DAY,
    invalid_grant_codes: &[],
    errors_with_200: false,
    setting: None,
    docs: "https://developer.digikey.com/documentation/oauth",
};

/// https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm:
/// the token answer has no `expires_in` (the session timeout applies, 15 minutes at the
/// least), and the refresh token needs the `refresh_token` scope. By default it does not
/// rotate and lasts until revoked; an org may expire it when unused.
const SALESFORCE: Preset = Preset {
    name: "salesforce",
    title: "Salesforce",
    authorize_url: "https://login.salesforce.com/services/oauth2/authorize",
    token_url: "https://login.salesforce.com/services/oauth2/token",
    revocation_url: Some("https://login.salesforce.com/services/oauth2/revoke"),
    auth_method: TokenAuthMethod::ClientSecretPost,
    scopes: Some("api refresh_token"),
    scope_separator: " ",
    authorize_params: &[],
    pkce: true,
    rotates: false,
    refresh_lifetime: RefreshLifetime::Idle(90 * DAY),
    default_expires_in: Some(900),
    keepalive_window: 14 * DAY,
    invalid_grant_codes: &[],
    errors_with_200: false,
    setting: None,
    docs: "https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm",
};

/// Every built-in provider. A field a provider does not document keeps the generic entry's
/// choice, which is RFC 6749's.
pub const PRESETS: &[Preset] = &[
    DIGIKEY,
    // The same on Digi-Key's sandbox hosts (https://developer.digikey.com/documentation/oauth).
    Preset {
        name: "digikey-sandbox",
        title: "Digi-Key (sandbox)",
        authorize_url: "https://sandbox-api.digikey.com/v1/oauth2/authorize",
        token_url: "https://sandbox-api.digikey.com/v1/oauth2/token",
        ..DIGIKEY
    },
    // https://developers.google.com/identity/protocols/oauth2/web-server: a refresh token only
    // with access_type=offline, and again on a repeated consent only with prompt=consent.
    // Refresh tokens do not rotate; one unused for six months stops working
    // (https://developers.google.com/identity/protocols/oauth2#expiration).
    Preset {
        name: "google",
        title: "Google",
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        revocation_url: Some("https://oauth2.googleapis.com/revoke"),
        auth_method: TokenAuthMethod::ClientSecretPost,
        scopes: Some("openid email"),
        scope_separator: " ",
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        pkce: true,
        rotates: false,
        refresh_lifetime: RefreshLifetime::Idle(180 * DAY),
        default_expires_in: Some(3600),
        keepalive_window: 30 * DAY,
        invalid_grant_codes: &[],
        errors_with_200: false,
        setting: None,
        docs: "https://developers.google.com/identity/protocols/oauth2/web-server",
    },
    // https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow: the tenant is
    // part of the path; offline_access asks for a refresh token, which is replaced on every use
    // and lives 90 days from it
    // (https://learn.microsoft.com/entra/identity-platform/refresh-tokens). No RFC 7009 endpoint.
    Preset {
        name: "microsoft",
        title: "Microsoft",
        authorize_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        token_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        revocation_url: None,
        auth_method: TokenAuthMethod::ClientSecretPost,
        scopes: Some("offline_access openid https://graph.microsoft.com/User.Read"),
        scope_separator: " ",
        authorize_params: &[],
        pkce: true,
        rotates: true,
        refresh_lifetime: RefreshLifetime::Sliding(90 * DAY),
        default_expires_in: Some(3600),
        keepalive_window: 14 * DAY,
        invalid_grant_codes: &[],
        errors_with_200: false,
        setting: Some(Setting {
            placeholder: "{tenant}",
            variable: "PROVIDER_TENANT",
            default: "common",
            allowed: &[],
        }),
        docs: "https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow",
    },
    // https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens:
    // with expiring user tokens on, access tokens live 8 hours and refresh tokens 6 months, and
    // each refresh replaces both. GitHub answers errors with HTTP 200 and `error`, and a spent
    // refresh token with `bad_refresh_token`. Revoking is a REST call, not RFC 7009.
    Preset {
        name: "github",
        title: "GitHub",
        authorize_url: "https://github.com/login/oauth/authorize",
        token_url: "https://github.com/login/oauth/access_token",
        revocation_url: None,
        auth_method: TokenAuthMethod::ClientSecretPost,
        scopes: None,
        scope_separator: " ",
        authorize_params: &[],
        pkce: true,
        rotates: true,
        refresh_lifetime: RefreshLifetime::Fixed(184 * DAY),
        default_expires_in: Some(8 * 3600),
        keepalive_window: 14 * DAY,
        invalid_grant_codes: &["bad_refresh_token"],
        errors_with_200: true,
        setting: None,
        docs: "https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app",
    },
    // https://docs.gitlab.com/api/oauth2/: access tokens live two hours; every refresh replaces
    // the refresh token. `PROVIDER_BASE_URL` points it at a self-managed instance.
    Preset {
        name: "gitlab",
        title: "GitLab",
        authorize_url: "https://gitlab.com/oauth/authorize",
        token_url: "https://gitlab.com/oauth/token",
        revocation_url: Some("https://gitlab.com/oauth/revoke"),
        auth_method: TokenAuthMethod::ClientSecretPost,
        scopes: Some("read_user"),
        scope_separator: " ",
        authorize_params: &[],
        pkce: true,
        rotates: true,
        refresh_lifetime: RefreshLifetime::Sliding(90 * DAY),
        default_expires_in: Some(7200),
        keepalive_window: 14 * DAY,
        invalid_grant_codes: &[],
        errors_with_200: false,
        setting: None,
        docs: "https://docs.gitlab.com/api/oauth2/",
    },
    SALESFORCE,
    // The same against Salesforce's sandbox login host.
    Preset {
        name: "salesforce-sandbox",
        title: "Salesforce (sandbox)",
        authorize_url: "https://test.salesforce.com/services/oauth2/authorize",
        token_url: "https://test.salesforce.com/services/oauth2/token",
        revocation_url: Some("https://test.salesforce.com/services/oauth2/revoke"),
        ..SALESFORCE
    },
    // https://developer.xero.com/documentation/guides/oauth2/auth-flow: the client
    // authenticates with HTTP Basic; access tokens live 30 minutes; refresh tokens need
    // offline_access, are replaced on every refresh and expire after 60 days unused.
    Preset {
        name: "xero",
        title: "Xero",
        authorize_url: "https://login.xero.com/identity/connect/authorize",
        token_url: "https://identity.xero.com/connect/token",
        revocation_url: Some("https://identity.xero.com/connect/revocation"),
        auth_method: TokenAuthMethod::ClientSecretBasic,
        scopes: Some("offline_access openid profile email"),
        scope_separator: " ",
        authorize_params: &[],
        pkce: true,
        rotates: true,
        refresh_lifetime: RefreshLifetime::Idle(60 * DAY),
        default_expires_in: Some(1800),
        keepalive_window: 14 * DAY,
        invalid_grant_codes: &[],
        errors_with_200: false,
        setting: None,
        docs: "https://developer.xero.com/documentation/guides/oauth2/auth-flow",
    },
    // https://www.zoho.com/accounts/protocol/oauth/web-apps/authorization.html: one accounts
    // host per data centre (https://www.zoho.com/accounts/protocol/oauth/multi-dc.html);
    // access_type=offline for a refresh token (prompt=consent for a new one on a repeated
    // consent); scopes are comma-separated; access tokens live an hour; refresh tokens do not
    // rotate and last until revoked (at most 20 per user and client). Errors come with 200, and
    // a refresh token that no longer works is `invalid_code`.
    Preset {
        name: "zoho",
        title: "Zoho",
        authorize_url: "https://accounts.{region}/oauth/v2/auth",
        token_url: "https://accounts.{region}/oauth/v2/token",
        revocation_url: Some("https://accounts.{region}/oauth/v2/token/revoke"),
        auth_method: TokenAuthMethod::ClientSecretPost,
        scopes: None,
        scope_separator: ",",
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        pkce: false,
        rotates: false,
        refresh_lifetime: RefreshLifetime::Idle(90 * DAY),
        default_expires_in: Some(3600),
        keepalive_window: 14 * DAY,
        invalid_grant_codes: &["invalid_code"],
        errors_with_200: true,
        setting: Some(Setting {
            placeholder: "{region}",
            variable: "PROVIDER_REGION",
            default: "com",
            allowed: &[
                ("com", "zoho.com"),
                ("eu", "zoho.eu"),
                ("in", "zoho.in"),
                ("com.au", "zoho.com.au"),
                ("jp", "zoho.jp"),
                ("ca", "zohocloud.ca"),
                ("sa", "zoho.sa"),
                ("uk", "zoho.uk"),
                ("com.cn", "zoho.com.cn"),
            ],
        }),
        docs: "https://www.zoho.com/accounts/protocol/oauth/multi-dc.html",
    },
];

/// `PROVIDER=generic` or no `PROVIDER`: every endpoint from its variable, RFC 6749's defaults.
pub const GENERIC: Preset = Preset {
    name: "generic",
    title: "",
    authorize_url: "",
    token_url: "",
    revocation_url: None,
    auth_method: TokenAuthMethod::ClientSecretPost,
    scopes: None,
    scope_separator: " ",
    authorize_params: &[],
    pkce: true,
    rotates: false,
    refresh_lifetime: RefreshLifetime::Fixed(90 * DAY),
    default_expires_in: None,
    keepalive_window: 7 * DAY,
    invalid_grant_codes: &[],
    errors_with_200: false,
    setting: None,
    docs: "https://www.rfc-editor.org/rfc/rfc6749",
};

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    if name == GENERIC.name {
        return Some(&GENERIC);
    }
    PRESETS.iter().find(|preset| preset.name == name)
}

/// Every `PROVIDER` value, for the error that lists them.
pub fn names() -> Vec<&'static str> {
    std::iter::once(GENERIC.name)
        .chain(PRESETS.iter().map(|preset| preset.name))
        .collect()
}
