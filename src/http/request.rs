//! Reading what a client sent: the query string, the API key, and which format it wants back.

use std::collections::HashMap;

use lambda_http::{Request, RequestExt, http::header, request::RequestContext};

use crate::{
    base::{
        api_keys::{Action, ApiKeys, Key},
        connection,
    },
    http::error::BrokerError,
};

/// Well above any legitimate callback (a code plus a state) and small enough to refuse abuse.
const MAX_QUERY_BYTES: usize = 4096;

/// Query parameter names that look like someone put a key into a URL.
const KEY_PARAMETERS: &[&str] = &[
    "api_key",
    "api-key",
    "apikey",
    "key",
    "x-api-key",
    "x_api_key",
    "access_token",
    "token",
];

/// A parsed query string in which every name occurs at most once.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(request: &Request) -> Result<Self, BrokerError> {
        Self::decode(request.uri().query().unwrap_or("").as_bytes(), "query string")
    }

    /// An `application/x-www-form-urlencoded` request body, held to the same rules as a query.
    pub fn parse_form(request: &Request) -> Result<Self, BrokerError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(BrokerError::BadRequest(
                "the body must be application/x-www-form-urlencoded".to_owned(),
            ));
        }
        Self::decode(request.body().as_ref(), "form")
    }

    fn decode(raw: &[u8], what: &str) -> Result<Self, BrokerError> {
        if raw.len() > MAX_QUERY_BYTES {
            return Err(BrokerError::BadRequest(format!(
                "the {what} is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        let mut params = HashMap::new();
        for pair in raw.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &b""[..]),
            };
            let malformed = || {
                BrokerError::BadRequest(format!(
                    "the {what} has invalid percent-encoding, is not UTF-8, or contains control characters"
                ))
            };
            let name = decode_component(name).ok_or_else(malformed)?;
            let value = decode_component(value).ok_or_else(malformed)?;
            // Two values for one name have no single meaning, and picking one would let a
            // proxy and the broker read different requests.
            if params.contains_key(&name) {
                return Err(BrokerError::BadRequest(format!("the parameter {name:?} is repeated")));
            }
            params.insert(name, value);
        }
        Ok(Self(params))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that must be there and not empty.
    pub fn require(&self, name: &str) -> Result<&str, BrokerError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| BrokerError::BadRequest(format!("the parameter {name:?} is missing")))
    }

    /// A parameter named like a key, or any value that is one of the keys.
    fn carries_key(&self, api_keys: &ApiKeys) -> bool {
        self.0
            .keys()
            .any(|name| KEY_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()))
            || self.0.values().any(|value| api_keys.matches(value))
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one name or value: `+` is a space,
/// `%XX` a byte, and anything else a percent sign cannot start is refused rather than read
/// literally, as are bytes that are not UTF-8 and control characters (a code or state never
/// holds one; passing them on would only confuse the provider or a log).
fn decode_component(raw: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.iter();
    while let Some(&byte) = rest.next() {
        bytes.push(match byte {
            b'+' => b' ',
            b'%' => {
                let high = (*rest.next()? as char).to_digit(16)?;
                let low = (*rest.next()? as char).to_digit(16)?;
                (high * 16 + low) as u8
            }
            byte => byte,
        });
    }
    let text = String::from_utf8(bytes).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

/// The connection a request names (`?connection=`), or the default one.
pub fn connection(query: &Query) -> Result<String, BrokerError> {
    let name = query
        .get("connection")
        .map_or(Ok(connection::DEFAULT), connection::validate)?;
    Ok(name.to_owned())
}

/// Refuses any method but those in `allowed` (e.g. `"GET, POST"`, as the `Allow` header lists
/// them). HEAD is not offered: every route has side effects or secrets.
pub fn require_method(request: &Request, allowed: &'static str) -> Result<(), BrokerError> {
    if allowed.split(", ").any(|method| method == request.method().as_str()) {
        Ok(())
    } else {
        Err(BrokerError::MethodNotAllowed { allow: allowed })
    }
}

/// Checks the API key of a headless client. A key in the URL is refused before anything else,
/// even if it is right: the URL is already in some access log, and the client must learn that.
pub fn authenticate<'k>(request: &Request, query: &Query, api_keys: &'k ApiKeys) -> Result<&'k Key, BrokerError> {
    if query.carries_key(api_keys) {
        return Err(BrokerError::KeyInQuery);
    }
    match presented_key(request)? {
        Some(key) => api_keys
            .identify(key)
            .ok_or(BrokerError::Unauthorized { key_presented: true }),
        None => Err(BrokerError::Unauthorized { key_presented: false }),
    }
}

/// Whether `key` may do `action` on the connection `query` names: checked before anything is
/// read, so a refusal says nothing about whether the connection exists.
pub fn authorize(key: &Key, action: Action, query: &Query) -> Result<(), BrokerError> {
    if !key.may(action) {
        tracing::warn!(
            key = key.name(),
            action = action.as_str(),
            "refused: the key may not use this route"
        );
        return Err(BrokerError::Forbidden(format!(
            "the key {:?} may not use /{}",
            key.name(),
            action.as_str()
        )));
    }
    let connection = connection(query)?;
    if !key.may_touch(&connection) {
        tracing::warn!(
            key = key.name(),
            action = action.as_str(),
            connection,
            "refused: the key may not use this connection"
        );
        return Err(BrokerError::Forbidden(format!(
            "the key {:?} may not use the connection {connection:?}",
            key.name()
        )));
    }
    Ok(())
}

/// Whether the request carries an API key header at all (right or wrong).
pub fn has_key(request: &Request) -> bool {
    !matches!(presented_key(request), Ok(None))
}

/// The key in `X-API-Key` or `Authorization: Bearer`. Several headers are fine if they agree;
/// different keys in one request are refused, since a proxy and the broker might each pick a
/// different one.
fn presented_key(request: &Request) -> Result<Option<&str>, BrokerError> {
    let headers = request.headers();
    // A header that is not text still counts as a key presented (and wrong).
    let api_keys = headers
        .get_all("x-api-key")
        .iter()
        .map(|value| value.to_str().map(str::trim).unwrap_or("\u{0}"));
    let bearers = headers.get_all(header::AUTHORIZATION).iter().filter_map(|value| {
        let (scheme, key) = value.to_str().unwrap_or("Bearer \u{0}").trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    });
    let mut presented = None;
    for key in api_keys.chain(bearers) {
        match presented {
            None => presented = Some(key),
            Some(first) if first != key => {
                return Err(BrokerError::BadRequest(
                    "the request carries several different API keys".to_owned(),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(presented)
}

/// True when the client asked for JSON over HTML (`Accept: application/json`, or JSON listed
/// with a higher quality than HTML). Browsers ask for HTML and get pages.
pub fn prefers_json(request: &Request) -> bool {
    let Some(accept) = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let quality = |wanted: &str| {
        accept
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let media = parts.next()?.trim();
                if !media.eq_ignore_ascii_case(wanted) {
                    return None;
                }
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some(q)
            })
            .fold(0.0_f32, f32::max)
    };
    let json = quality("application/json");
    json > 0.0 && json > quality("text/html")
}

/// The URL of `/callback` for a login or callback that came in as `request`: `pinned`
/// (`REDIRECT_URI`, or `PUBLIC_URL` + `/callback`) when the configuration has it; else the
/// request's own origin and path with the last segment replaced, so a named stage or a custom
/// domain's base path stays in it. On Lambda the origin is API Gateway's `domainName` (set by
/// API Gateway, not by the client); in local mode it is the `Host` header, which is why a
/// server others can reach should pin `PUBLIC_URL`.
pub fn callback_url(pinned: Option<&str>, request: &Request) -> Result<String, BrokerError> {
    if let Some(pinned) = pinned {
        return Ok(pinned.to_owned());
    }
    let (origin, path) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => {
            let domain = context.domain_name.as_deref().filter(|d| plain_host(d));
            (
                domain.map(|d| format!("https://{d}")),
                request.raw_http_path().to_owned(),
            )
        }
        _ => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .filter(|h| plain_host(h));
            (host.map(|h| format!("http://{h}")), request.uri().path().to_owned())
        }
    };
    let origin = origin.ok_or(BrokerError::NoRedirectUri)?;
    let prefix = path.rsplit_once('/').map_or("", |(prefix, _)| prefix);
    Ok(format!("{origin}{prefix}/callback"))
}

/// A DNS name or IP address with an optional port: nothing that could end the origin early.
fn plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 260
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

#[cfg(test)]
mod tests {
    use lambda_http::Body;

    use super::*;

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = lambda_http::http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::Empty).unwrap()
    }

    #[test]
    fn query_rejects_repeated_names_and_bad_utf8() {
        assert!(Query::parse(&request("/callback?code=a&state=b", &[])).is_ok());
        assert!(Query::parse(&request("/callback?code=a&code=b", &[])).is_err());
        assert!(Query::parse(&request("/callback?code=%FF%FE", &[])).is_err());
        assert!(Query::parse(&request(&format!("/callback?code={}", "a".repeat(5000)), &[])).is_err());
    }

    #[test]
    fn api_key_is_read_from_either_header() {
        let key = ApiKeys::new(&["k"], vec![]);
        let none = Query::default();
        assert!(authenticate(&request("/token", &[("authorization", "Bearer k")]), &none, &key).is_ok());
        assert!(authenticate(&request("/token", &[("authorization", "bearer  k ")]), &none, &key).is_ok());
        assert!(authenticate(&request("/token", &[("x-api-key", "k")]), &none, &key).is_ok());
        assert!(authenticate(&request("/token", &[("authorization", "Basic k")]), &none, &key).is_err());
        assert!(authenticate(&request("/token", &[("x-api-key", "kk")]), &none, &key).is_err());
        assert!(authenticate(&request("/token", &[]), &none, &key).is_err());
    }

    #[test]
    fn accept_negotiation_prefers_html_unless_json_wins() {
        assert!(prefers_json(&request("/", &[("accept", "application/json")])));
        assert!(prefers_json(&request(
            "/",
            &[("accept", "text/html;q=0.5, application/json")]
        )));
        assert!(!prefers_json(&request(
            "/",
            &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]
        )));
        assert!(!prefers_json(&request("/", &[("accept", "application/json;q=0")])));
        assert!(!prefers_json(&request("/", &[])));
    }
}
