//! Secrets from AWS Secrets Manager, read once per cold start: one signed `GetSecretValue` call
//! with the Lambda execution role's credentials, without the AWS SDK (which would add megabytes
//! to each function and milliseconds to each cold start).
//!
//! The secret's `SecretString` is a JSON object of string values, one per configuration
//! variable: `{"CLIENT_SECRET": "...", "API_KEY": "...", "REDIS_URL": "rediss://..."}`.

use std::{collections::HashMap, time::Duration};

use reqwest::{Client, StatusCode, Url, header::HeaderMap};
use serde_json::Value;
use thiserror::Error;

use crate::base::{
    aws::{self, sigv4::Credentials},
    clock::{Clock, SystemClock},
    secret::Secret,
};

/// The variable that names the secret: an ARN, `arn:aws:secretsmanager:<region>:<account>:secret:<name>`.
pub const ARN_VAR: &str = "SECRETS_ARN";
/// Overrides `https://secretsmanager.<region>.amazonaws.com`, for tests; loopback addresses only.
pub const ENDPOINT_VAR: &str = "SECRETS_MANAGER_ENDPOINT";
/// Connect and total timeout of [`client`]: a cold start that cannot read its secrets should fail
/// quickly and be retried by Lambda, not hang until the init phase's 10 s limit.
pub const TIMEOUT: Duration = Duration::from_secs(5);

const SERVICE: &str = "secretsmanager";
const TARGET: &str = "secretsmanager.GetSecretValue";
const CONTENT_TYPE_JSON: &str = "application/x-amz-json-1.1";
/// A `SecretString` holds at most 64 KiB; escaped inside the response's JSON it can grow, but
/// not past this.
const MAX_RESPONSE_BYTES: usize = 512 * 1024;

#[derive(Debug, Error)]
pub enum SecretsError {
    /// A variable the call needs is unset or empty (the credentials Lambda provides, or the
    /// region when the secret is named without an ARN).
    #[error("{0} is not set (or empty); it is needed to read the secret from AWS Secrets Manager")]
    MissingVariable(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: &'static str },
    /// No answer: `source` (reqwest's error, which names the URL but never a header) says why.
    #[error("AWS Secrets Manager could not be reached: {outage}")]
    Unreachable {
        outage: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// Secrets Manager refused the call, e.g. `AccessDeniedException` (the role lacks
    /// `secretsmanager:GetSecretValue` on the secret) or `ResourceNotFoundException`.
    #[error("AWS Secrets Manager refused GetSecretValue with {kind} (HTTP {status}){}", message_suffix(.message))]
    Aws {
        status: u16,
        kind: String,
        message: Option<String>,
    },
    /// An answer that is not what `GetSecretValue` returns; never quotes the body, which may
    /// hold the secret.
    #[error("AWS Secrets Manager answered with an unusable response (HTTP {status}): {detail}")]
    Malformed { status: u16, detail: &'static str },
    /// The secret's `SecretString` is not a JSON object of strings; names the key at fault, never
    /// a value.
    #[error("the secret's SecretString must be a JSON object of string values: {0}")]
    NotAnObject(String),
}

fn message_suffix(message: &Option<String>) -> String {
    message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
}

/// An HTTP client for [`fetch`]: the broker's TLS set-up, [`TIMEOUT`] to connect and in total,
/// and no redirects (a signed request must go nowhere but the endpoint it was signed for).
pub fn client(tls: rustls::ClientConfig) -> Result<Client, reqwest::Error> {
    aws::client(tls, TIMEOUT)
}

/// Reads the secret `arn` and returns its keys and values. `env` supplies the credentials
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), `AWS_REGION` when `arn`
/// is a plain secret name, and [`ENDPOINT_VAR`]. Timeouts are `http`'s: use [`client`].
pub async fn fetch(
    arn: &str,
    http: &Client,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, Secret>, SecretsError> {
    fetch_with_clock(arn, http, env, &SystemClock).await
}

/// [`fetch`], signing with `clock`'s time.
pub async fn fetch_with_clock(
    arn: &str,
    http: &Client,
    env: &impl Fn(&str) -> Option<String>,
    clock: &dyn Clock,
) -> Result<HashMap<String, Secret>, SecretsError> {
    let var = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let arn = arn.trim();
    if arn.is_empty() {
        return Err(SecretsError::MissingVariable(ARN_VAR));
    }
    let credentials = aws::credentials(var).map_err(SecretsError::MissingVariable)?;
    let target = Target::resolve(arn, var("AWS_REGION"), var(ENDPOINT_VAR))?;
    let (headers, body) = signed_request(arn, &target, &credentials, clock.now())?;
    let mut response = http
        .post(target.url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(transport_error)?;
    let status = response.status();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(SecretsError::Malformed {
                status: status.as_u16(),
                detail: "response too large",
            });
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(failure(status, error_type.as_deref(), &body));
    }
    parse_secret(status, &body)
}

/// The headers and body of `GetSecretValue` for `arn`, signed at `now`.
fn signed_request(
    arn: &str,
    target: &Target,
    credentials: &Credentials,
    now: i64,
) -> Result<(HeaderMap, Vec<u8>), SecretsError> {
    let body = serde_json::to_vec(&serde_json::json!({ "SecretId": arn })).expect("a JSON object serializes");
    let call = aws::JsonCall {
        host: &target.host,
        region: &target.region,
        service: SERVICE,
        content_type: CONTENT_TYPE_JSON,
        target: TARGET,
    };
    // Values come from the environment; one with a newline cannot be sent, and saying which is
    // enough.
    let headers = aws::signed_headers(&call, &body, credentials, now).map_err(|header| SecretsError::Invalid {
        name: header_source(header),
        reason: "contains characters not allowed in an HTTP header",
    })?;
    Ok((headers, body))
}

/// A configuration lookup that asks `env` first and falls back to the secret's keys. An empty
/// variable counts as unset, so it does not hide the secret's value.
pub fn env_then(
    secrets: HashMap<String, Secret>,
    env: impl Fn(&str) -> Option<String>,
) -> impl Fn(&str) -> Option<String> {
    move |name| {
        env(name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| secrets.get(name).map(|v| v.expose().to_owned()))
    }
}

/// Where the request goes, and the region it is signed for.
struct Target {
    url: Url,
    /// The `Host` header reqwest will send: with the port only when it is not the default.
    host: String,
    region: String,
}

impl Target {
    fn resolve(arn: &str, aws_region: Option<String>, endpoint: Option<String>) -> Result<Self, SecretsError> {
        let (partition, region) = match arn.strip_prefix("arn:") {
            Some(rest) => {
                // arn:partition:secretsmanager:region:account:secret:name
                let parts: Vec<&str> = rest.splitn(5, ':').collect();
                match parts[..] {
                    [partition, SERVICE, region, _account, resource]
                        if resource.starts_with("secret:") && !region.is_empty() =>
                    {
                        (partition.to_owned(), region.to_owned())
                    }
                    _ => {
                        return Err(SecretsError::Invalid {
                            name: ARN_VAR,
                            reason: "not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)",
                        });
                    }
                }
            }
            None => (
                "aws".to_owned(),
                aws_region.ok_or(SecretsError::MissingVariable("AWS_REGION"))?,
            ),
        };
        // The region becomes part of a host name: nothing but what region names are made of.
        if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(SecretsError::Invalid {
                name: ARN_VAR,
                reason: "the region is not a valid AWS region name",
            });
        }
        let url = match endpoint {
            Some(endpoint) => {
                let url = Url::parse(&endpoint).map_err(|_| SecretsError::Invalid {
                    name: ENDPOINT_VAR,
                    reason: "not a URL",
                })?;
                let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                if !loopback || !matches!(url.scheme(), "http" | "https") {
                    return Err(SecretsError::Invalid {
                        name: ENDPOINT_VAR,
                        reason: "only http:// or https:// on localhost, 127.0.0.1 or [::1] is accepted",
                    });
                }
                url
            }
            None => {
                let domain = if partition == "aws-cn" {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                Url::parse(&format!("https://{SERVICE}.{region}.{domain}/")).map_err(|_| SecretsError::Invalid {
                    name: ARN_VAR,
                    reason: "the region is not a valid AWS region name",
                })?
            }
        };
        let host = aws::host_header(&url);
        Ok(Self { url, host, region })
    }
}

/// Which variable a header's value came from, for an error that names it.
fn header_source(header: &str) -> &'static str {
    match header {
        "x-amz-security-token" => "AWS_SESSION_TOKEN",
        _ => "AWS_ACCESS_KEY_ID",
    }
}

fn transport_error(error: reqwest::Error) -> SecretsError {
    let outage = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "the response could not be read"
    };
    SecretsError::Unreachable { outage, source: error }
}

/// An error answer of the AWS JSON protocol: `{"__type": "...", "message": "..."}`, the type
/// also in `x-amzn-ErrorType`.
fn failure(status: StatusCode, error_type: Option<&str>, body: &[u8]) -> SecretsError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| json.as_ref()?.get(*name)?.as_str().map(str::to_owned))
    };
    // Either a bare name or `namespace#Name`, and the header may carry `Name:detail`.
    let kind = field(&["__type", "code"])
        .or_else(|| error_type.map(|t| t.split(':').next().unwrap_or(t).to_owned()))
        .map(|t| printable(t.rsplit('#').next().unwrap_or(&t), 128));
    match kind {
        Some(kind) if !kind.is_empty() => SecretsError::Aws {
            status: status.as_u16(),
            kind,
            message: field(&["message", "Message"]).map(|m| printable(&m, 512)),
        },
        _ => SecretsError::Malformed {
            status: status.as_u16(),
            detail: "an error without an AWS error type",
        },
    }
}

fn parse_secret(status: StatusCode, body: &[u8]) -> Result<HashMap<String, Secret>, SecretsError> {
    let malformed = |detail| SecretsError::Malformed {
        status: status.as_u16(),
        detail,
    };
    // serde_json's messages can quote the input; none of them is passed on.
    let response: Value = serde_json::from_slice(body).map_err(|_| malformed("the response is not JSON"))?;
    let secret_string = match response.get("SecretString") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(malformed("SecretString is not a string")),
        None if response.get("SecretBinary").is_some() => {
            return Err(SecretsError::NotAnObject(
                "the secret is binary (SecretBinary); store it as a JSON object".to_owned(),
            ));
        }
        None => return Err(malformed("the response has no SecretString")),
    };
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(secret_string) else {
        return Err(SecretsError::NotAnObject(
            "it is not a JSON object; store key/value pairs".to_owned(),
        ));
    };
    object
        .into_iter()
        .map(|(key, value)| match value {
            Value::String(value) => Ok((key, Secret::new(value))),
            other => Err(SecretsError::NotAnObject(format!(
                "the value of {} is {}, not a string",
                printable(&key, 64),
                kind_of(&other)
            ))),
        })
        .collect()
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most `max` characters, control characters replaced: text from elsewhere that goes into a
/// log line.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(arn: &str, region: Option<&str>, endpoint: Option<&str>) -> Result<Target, SecretsError> {
        Target::resolve(arn, region.map(str::to_owned), endpoint.map(str::to_owned))
    }

    #[test]
    fn the_region_and_endpoint_come_from_the_arn() {
        let t = target(
            "arn:aws:secretsmanager:eu-central-1:123456789012:secret:token-broker-AbCdEf",
            Some("us-east-1"),
            None,
        )
        .unwrap();
        assert_eq!(t.region, "eu-central-1");
        assert_eq!(t.url.as_str(), "https://secretsmanager.eu-central-1.amazonaws.com/");
        assert_eq!(t.host, "secretsmanager.eu-central-1.amazonaws.com");
        let china = target("arn:aws-cn:secretsmanager:cn-north-1:1:secret:x", None, None).unwrap();
        assert_eq!(china.host, "secretsmanager.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn a_plain_secret_name_takes_the_region_from_aws_region() {
        assert_eq!(
            target("token-broker", Some("ap-south-1"), None).unwrap().region,
            "ap-south-1"
        );
        assert!(matches!(
            target("token-broker", None, None),
            Err(SecretsError::MissingVariable("AWS_REGION"))
        ));
    }

    #[test]
    fn other_arns_and_odd_regions_are_refused() {
        for arn in [
            "arn:aws:ssm:us-east-1:123456789012:parameter/x",
            "arn:aws:secretsmanager::123456789012:secret:x",
            "arn:aws:secretsmanager:us-east-1:123456789012:other:x",
            "arn:aws:secretsmanager:evil.example/#:1:secret:x",
        ] {
            assert!(
                matches!(
                    target(arn, None, None),
                    Err(SecretsError::Invalid { name: ARN_VAR, .. })
                ),
                "{arn}"
            );
        }
    }

    #[test]
    fn the_endpoint_override_is_accepted_on_loopback_only() {
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:x";
        let local = target(arn, None, Some("http://127.0.0.1:4566")).unwrap();
        assert_eq!(local.host, "127.0.0.1:4566");
        assert_eq!(local.region, "us-east-1");
        assert_eq!(target(arn, None, Some("http://localhost")).unwrap().host, "localhost");
        assert_eq!(
            target(arn, None, Some("https://[::1]:8443")).unwrap().host,
            "[::1]:8443"
        );
        for endpoint in [
            "http://10.0.0.1:4566",
            "https://secretsmanager.example",
            "ftp://127.0.0.1",
            "nope",
        ] {
            assert!(
                matches!(
                    target(arn, None, Some(endpoint)),
                    Err(SecretsError::Invalid { name: ENDPOINT_VAR, .. })
                ),
                "{endpoint}"
            );
        }
    }

    /// Expected signatures computed independently with botocore 1.44.5's `SigV4Auth` for the same
    /// request, credentials (AWS's AKIDEXAMPLE pair) and time (20150830T123600Z).
    #[test]
    fn get_secret_value_is_signed_as_botocore_signs_it() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-broker-AbCdEf";
        let target = target(arn, None, None).unwrap();
        for (token, signed_headers, signature) in [
            (
                None,
                "content-type;host;x-amz-date;x-amz-target",
                "df350efca5691c1a329bc944fdec9b1ad9678eef586677971e3fe1321a9d65c6",
            ),
            (
                Some("IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN"),
                "content-type;host;x-amz-date;x-amz-security-token;x-amz-target",
                "259a8f9c43c86dfb14ff446090037f23a9a9de8aa50aea02405ee50379f73881",
            ),
        ] {
            let credentials = Credentials {
                access_key_id: "AKIDEXAMPLE".to_owned(),
                secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                session_token: token.map(Secret::new),
            };
            let (headers, body) = signed_request(arn, &target, &credentials, 1_440_938_160).unwrap();
            assert_eq!(body, format!(r#"{{"SecretId":"{arn}"}}"#).into_bytes());
            assert_eq!(headers["x-amz-target"], "secretsmanager.GetSecretValue");
            assert_eq!(headers["content-type"], "application/x-amz-json-1.1");
            assert_eq!(headers["x-amz-date"], "20150830T123600Z");
            assert_eq!(headers.get("x-amz-security-token").map(|v| v.to_str().unwrap()), token);
            assert_eq!(
                headers["authorization"],
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/secretsmanager/aws4_request, \
                     SignedHeaders={signed_headers}, Signature={signature}"
                )
                .as_str()
            );
            assert!(headers["authorization"].is_sensitive());
            assert!(!format!("{headers:?}").contains(signature));
        }
    }

    #[test]
    fn error_types_are_read_from_the_body_or_the_header() {
        let denied = failure(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"__type":"com.amazonaws.secretsmanager#AccessDeniedException","Message":"not allowed"}"#,
        );
        assert_eq!(
            denied.to_string(),
            "AWS Secrets Manager refused GetSecretValue with AccessDeniedException (HTTP 400): not allowed"
        );
        let throttled = failure(
            StatusCode::BAD_REQUEST,
            Some("ThrottlingException:http://internal.amazon.com/coral/"),
            b"",
        );
        assert!(
            matches!(throttled, SecretsError::Aws { ref kind, message: None, .. } if kind == "ThrottlingException")
        );
        assert!(matches!(
            failure(StatusCode::BAD_GATEWAY, None, b"<html>proxy</html>"),
            SecretsError::Malformed { status: 502, .. }
        ));
    }

    #[test]
    fn secret_strings_must_be_objects_of_strings() {
        let answer = |secret_string: &str| {
            serde_json::to_vec(&serde_json::json!({ "Name": "x", "SecretString": secret_string })).unwrap()
        };
        let map = parse_secret(StatusCode::OK, &answer(r#"{"API_KEY":"k","EMPTY":""}"#)).unwrap();
        assert_eq!(map["API_KEY"].expose(), "k");
        assert_eq!(map["EMPTY"].expose(), "");
        for bad in [r#"["a"]"#, r#""text""#, "plain text", "", "{"] {
            assert!(
                matches!(
                    parse_secret(StatusCode::OK, &answer(bad)),
                    Err(SecretsError::NotAnObject(_))
                ),
                "{bad}"
            );
        }
        let number = parse_secret(StatusCode::OK, &answer(r#"{"PORT":6379}"#)).unwrap_err();
        assert_eq!(
            number.to_string(),
            "the secret's SecretString must be a JSON object of string values: the value of PORT is a number, \
             not a string"
        );
        let binary = parse_secret(StatusCode::OK, br#"{"SecretBinary":"AAEC"}"#).unwrap_err();
        assert!(matches!(binary, SecretsError::NotAnObject(_)));
        assert!(matches!(
            parse_secret(StatusCode::OK, b"not json"),
            Err(SecretsError::Malformed { .. })
        ));
    }

    #[test]
    fn the_environment_wins_over_the_secret_unless_empty() {
        let secrets = HashMap::from([
            ("API_KEY".to_owned(), Secret::new("from-secret")),
            ("CLIENT_SECRET".to_owned(), Secret::new("cs-from-secret")),
        ]);
        let env = HashMap::from([("API_KEY", "from-env"), ("CLIENT_SECRET", " ")]);
        let lookup = env_then(secrets, move |name| env.get(name).map(|v| v.to_string()));
        assert_eq!(lookup("API_KEY").as_deref(), Some("from-env"));
        assert_eq!(lookup("CLIENT_SECRET").as_deref(), Some("cs-from-secret"));
        assert_eq!(lookup("TOKEN_URL"), None);
    }
}
