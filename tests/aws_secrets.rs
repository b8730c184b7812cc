//! Reading the configuration's secrets from AWS Secrets Manager, against a fake Secrets Manager on
//! 127.0.0.1: the exact request `GetSecretValue` needs, a signature the fake re-computes from what
//! it received, and errors that name the cause without quoting a secret.

use std::{collections::HashMap, sync::Arc, time::Duration};

use token_broker::{
    base::aws::secrets::{self as aws_secrets, SecretsError},
    base::aws::sigv4,
    base::clock::ManualClock,
};
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{method, path},
};

const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-broker-AbCdEf";
const KEY_ID: &str = "ASIAEXAMPLEKEYID0001";
const SECRET_KEY: &str = "fake/secret+access+key/for+the+role+0123";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEFAKE+session/token==";
/// 2015-08-30T12:36:00Z, the moment of AWS's signing examples.
const NOW: i64 = 1_440_938_160;
const CLIENT_SECRET: &str = "client-secret-from-secrets-manager";
const API_KEY: &str = "api-key-from-secrets-manager";

fn http(timeout: Duration) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    if timeout == aws_secrets::TIMEOUT {
        return aws_secrets::client(tls).unwrap();
    }
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .build()
        .unwrap()
}

/// The environment Lambda gives a function with an execution role, pointed at `server`.
fn lambda_env(server: &MockServer) -> HashMap<&'static str, String> {
    HashMap::from([
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        (aws_secrets::ENDPOINT_VAR, server.uri()),
    ])
}

async fn fetch_with(
    env: &HashMap<&'static str, String>,
    timeout: Duration,
) -> Result<HashMap<String, token_broker::base::secret::Secret>, SecretsError> {
    let lookup = |name: &str| env.get(name).cloned();
    aws_secrets::fetch_with_clock(ARN, &http(timeout), &lookup, &ManualClock::new(NOW)).await
}

async fn fetch(
    env: &HashMap<&'static str, String>,
) -> Result<HashMap<String, token_broker::base::secret::Secret>, SecretsError> {
    fetch_with(env, aws_secrets::TIMEOUT).await
}

/// A `GetSecretValue` answer whose `SecretString` is `secret_string`.
fn secret_answer(secret_string: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(
        serde_json::json!({
            "ARN": ARN,
            "Name": "token-broker",
            "VersionId": "EXAMPLE1-90ab-cdef-fedc-ba987SECRET1",
            "SecretString": secret_string,
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": 1.523477145713E9,
        })
        .to_string(),
        "application/x-amz-json-1.1",
    )
}

fn good_secret() -> String {
    serde_json::json!({ "CLIENT_SECRET": CLIENT_SECRET, "API_KEY": API_KEY, "REDIS_URL": "rediss://u:p@cache:6379" })
        .to_string()
}

fn aws_error(kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400)
        .insert_header("x-amzn-ErrorType", kind)
        .set_body_raw(
            serde_json::json!({ "__type": kind, "Message": message }).to_string(),
            "application/x-amz-json-1.1",
        )
}

async fn fake_secrets_manager(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

async fn only_request(server: &MockServer) -> Request {
    let mut received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1, "exactly one GetSecretValue call");
    received.remove(0)
}

fn header_str<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).map(|v| v.to_str().unwrap())
}

/// The fields of an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization {
    key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: String,
    signature: String,
}

fn parse_authorization(value: &str) -> Authorization {
    let fields = value.strip_prefix("AWS4-HMAC-SHA256 ").expect("the SigV4 algorithm");
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{name} in the Authorization header"))
            .to_owned()
    };
    let credential = field("Credential");
    let scope: Vec<&str> = credential.split('/').collect();
    assert_eq!(scope.len(), 5, "key/date/region/service/aws4_request");
    assert_eq!(scope[4], "aws4_request");
    Authorization {
        key_id: scope[0].to_owned(),
        date: scope[1].to_owned(),
        region: scope[2].to_owned(),
        service: scope[3].to_owned(),
        signed_headers: field("SignedHeaders"),
        signature: field("Signature"),
    }
}

/// What Secrets Manager does with a request: rebuild the canonical request from the headers the
/// signature claims to cover, as received, and sign it with the secret key.
fn recompute_signature(request: &Request, secret_key: &str) -> (Authorization, String) {
    let auth = parse_authorization(header_str(request, "authorization").expect("an Authorization header"));
    let headers: Vec<(&str, &str)> = auth
        .signed_headers
        .split(';')
        .map(|name| {
            (
                name,
                header_str(request, name).unwrap_or_else(|| panic!("signed header {name} sent")),
            )
        })
        .collect();
    let canonical = sigv4::canonical_request(
        request.method.as_str(),
        request.url.path(),
        request.url.query().unwrap_or(""),
        &headers,
        &request.body,
    );
    assert_eq!(
        canonical.signed_headers, auth.signed_headers,
        "SignedHeaders sorted and lower-case"
    );
    let amz_date = header_str(request, "x-amz-date").expect("an X-Amz-Date header");
    let scope = sigv4::credential_scope(&auth.date, &auth.region, &auth.service);
    let to_sign = sigv4::string_to_sign(amz_date, &scope, &canonical.text);
    let key = sigv4::signing_key(secret_key, &auth.date, &auth.region, &auth.service);
    let expected = sigv4::signature(&key, &to_sign);
    (auth, expected)
}

#[tokio::test]
async fn fetch_returns_every_key_and_value_of_the_secret_string() {
    let server = fake_secrets_manager(secret_answer(&good_secret())).await;
    let secrets = fetch(&lambda_env(&server)).await.unwrap();
    assert_eq!(secrets.len(), 3);
    assert_eq!(secrets["CLIENT_SECRET"].expose(), CLIENT_SECRET);
    assert_eq!(secrets["API_KEY"].expose(), API_KEY);
    assert_eq!(secrets["REDIS_URL"].expose(), "rediss://u:p@cache:6379");
    let printed = format!("{secrets:?}");
    assert!(
        printed.contains("CLIENT_SECRET") && !printed.contains(CLIENT_SECRET),
        "{printed}"
    );
}

#[tokio::test]
async fn the_request_is_get_secret_value_with_a_signature_secrets_manager_would_accept() {
    let server = fake_secrets_manager(secret_answer(&good_secret())).await;
    fetch(&lambda_env(&server)).await.unwrap();
    let request = only_request(&server).await;

    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/");
    assert_eq!(
        header_str(&request, "x-amz-target"),
        Some("secretsmanager.GetSecretValue")
    );
    assert_eq!(header_str(&request, "content-type"), Some("application/x-amz-json-1.1"));
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body, serde_json::json!({ "SecretId": ARN }));
    assert_eq!(header_str(&request, "x-amz-date"), Some("20150830T123600Z"));

    let (auth, expected) = recompute_signature(&request, SECRET_KEY);
    assert_eq!(auth.key_id, KEY_ID);
    assert_eq!(auth.date, "20150830");
    assert_eq!(auth.region, "eu-west-1", "the ARN's region, not AWS_REGION");
    assert_eq!(auth.service, "secretsmanager");
    assert_eq!(
        auth.signed_headers,
        "content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
    );
    assert_eq!(auth.signature, expected);
    // The check is not vacuous: the wrong key gives another signature.
    assert_ne!(recompute_signature(&request, "another-secret-key").1, auth.signature);
}

#[tokio::test]
async fn the_session_token_is_sent_and_signed() {
    let server = fake_secrets_manager(secret_answer(&good_secret())).await;
    fetch(&lambda_env(&server)).await.unwrap();
    let request = only_request(&server).await;
    assert_eq!(header_str(&request, "x-amz-security-token"), Some(SESSION_TOKEN));
    let (auth, expected) = recompute_signature(&request, SECRET_KEY);
    assert!(auth.signed_headers.split(';').any(|h| h == "x-amz-security-token"));
    assert_eq!(auth.signature, expected);
}

#[tokio::test]
async fn long_term_keys_are_signed_without_a_security_token() {
    let server = fake_secrets_manager(secret_answer(&good_secret())).await;
    let mut env = lambda_env(&server);
    env.remove("AWS_SESSION_TOKEN");
    fetch(&env).await.unwrap();
    let request = only_request(&server).await;
    assert_eq!(header_str(&request, "x-amz-security-token"), None);
    let (auth, expected) = recompute_signature(&request, SECRET_KEY);
    assert_eq!(auth.signed_headers, "content-type;host;x-amz-date;x-amz-target");
    assert_eq!(auth.signature, expected);
}

#[tokio::test]
async fn access_denied_is_reported_with_its_aws_error_type() {
    let message = "User: arn:aws:sts::123456789012:assumed-role/token-broker/token is not authorized to perform: \
                   secretsmanager:GetSecretValue";
    let server = fake_secrets_manager(aws_error("AccessDeniedException", message)).await;
    match fetch(&lambda_env(&server)).await.unwrap_err() {
        SecretsError::Aws {
            status,
            kind,
            message: got,
        } => {
            assert_eq!(status, 400);
            assert_eq!(kind, "AccessDeniedException");
            assert_eq!(got.as_deref(), Some(message));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_missing_secret_is_reported_as_resource_not_found() {
    let server = fake_secrets_manager(aws_error(
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret.",
    ))
    .await;
    let error = fetch(&lambda_env(&server)).await.unwrap_err();
    assert!(
        matches!(&error, SecretsError::Aws { kind, .. } if kind == "ResourceNotFoundException"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "AWS Secrets Manager refused GetSecretValue with ResourceNotFoundException (HTTP 400): \
         Secrets Manager can't find the specified secret."
    );
}

#[tokio::test]
async fn a_secret_string_that_is_not_an_object_of_strings_is_refused() {
    for secret_string in [
        r#"["client-secret-from-secrets-manager"]"#.to_owned(),
        "client-secret-from-secrets-manager".to_owned(),
        serde_json::json!({ "CLIENT_SECRET": CLIENT_SECRET, "API_KEY": 12345 }).to_string(),
        serde_json::json!({ "CLIENT_SECRET": { "value": CLIENT_SECRET } }).to_string(),
    ] {
        let server = fake_secrets_manager(secret_answer(&secret_string)).await;
        let error = fetch(&lambda_env(&server)).await.unwrap_err();
        assert!(
            matches!(error, SecretsError::NotAnObject(_)),
            "{secret_string}: {error:?}"
        );
        assert!(!format!("{error} {error:?}").contains(CLIENT_SECRET), "{error}");
    }
}

#[tokio::test]
async fn a_binary_secret_is_refused() {
    let server = fake_secrets_manager(ResponseTemplate::new(200).set_body_raw(
        serde_json::json!({ "ARN": ARN, "SecretBinary": "c2VjcmV0" }).to_string(),
        "application/x-amz-json-1.1",
    ))
    .await;
    let error = fetch(&lambda_env(&server)).await.unwrap_err();
    assert!(error.to_string().contains("binary"), "{error}");
}

#[tokio::test]
async fn each_missing_credential_is_named_and_nothing_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(secret_answer(&good_secret()))
        .expect(0)
        .mount(&server)
        .await;
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        for value in [None, Some("  ")] {
            let mut env = lambda_env(&server);
            match value {
                None => env.remove(name),
                Some(value) => env.insert(name, value.to_owned()),
            };
            let error = fetch(&env).await.unwrap_err();
            assert!(
                matches!(error, SecretsError::MissingVariable(n) if n == name),
                "{error:?}"
            );
            assert!(error.to_string().starts_with(name), "{error}");
        }
    }
}

#[tokio::test]
async fn an_endpoint_override_off_loopback_is_refused_before_sending() {
    let server = fake_secrets_manager(secret_answer(&good_secret())).await;
    let mut env = lambda_env(&server);
    env.insert(aws_secrets::ENDPOINT_VAR, "http://169.254.169.254:80".to_owned());
    let error = fetch(&env).await.unwrap_err();
    assert!(
        matches!(error, SecretsError::Invalid { name, .. } if name == aws_secrets::ENDPOINT_VAR),
        "{error:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_reported_as_such() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = MockServer::start().await;
    let mut env = lambda_env(&server);
    env.insert(aws_secrets::ENDPOINT_VAR, format!("http://127.0.0.1:{port}"));
    let error = fetch(&env).await.unwrap_err();
    assert!(
        matches!(
            error,
            SecretsError::Unreachable {
                outage: "connection failed",
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_slow_endpoint_times_out() {
    let server = fake_secrets_manager(secret_answer(&good_secret()).set_delay(Duration::from_secs(3))).await;
    let started = std::time::Instant::now();
    let error = fetch_with(&lambda_env(&server), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SecretsError::Unreachable {
                outage: "timed out",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_oversized_answer_is_refused() {
    let padding = "x".repeat(600 * 1024);
    let server = fake_secrets_manager(secret_answer(&serde_json::json!({ "PAD": padding }).to_string())).await;
    let error = fetch(&lambda_env(&server)).await.unwrap_err();
    assert!(
        matches!(error, SecretsError::Malformed { status: 200, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn errors_never_show_secret_values_credentials_or_signatures() {
    let mut errors: Vec<SecretsError> = Vec::new();
    let mut signatures: Vec<String> = Vec::new();
    let answers = [
        aws_error("AccessDeniedException", "not authorized"),
        secret_answer(&serde_json::json!({ "CLIENT_SECRET": CLIENT_SECRET, "API_KEY": [API_KEY] }).to_string()),
        secret_answer(&format!("[\"{CLIENT_SECRET}\", \"{API_KEY}\"]")),
        secret_answer(&format!("{{\"CLIENT_SECRET\": \"{CLIENT_SECRET}\", \"API_KEY\": ")),
        // A broken proxy echoing the request: the body holds credentials and a secret, and is
        // still not quoted.
        ResponseTemplate::new(502).set_body_string(format!("{KEY_ID} {SECRET_KEY} {SESSION_TOKEN} {CLIENT_SECRET}")),
        ResponseTemplate::new(200).set_body_string(format!("{{\"SecretString\": {CLIENT_SECRET}}}")),
    ];
    for answer in answers {
        let server = fake_secrets_manager(answer).await;
        errors.push(fetch(&lambda_env(&server)).await.unwrap_err());
        let request = only_request(&server).await;
        signatures.push(parse_authorization(header_str(&request, "authorization").unwrap()).signature);
    }
    let server = MockServer::start().await;
    let mut env = lambda_env(&server);
    env.remove("AWS_SECRET_ACCESS_KEY");
    errors.push(fetch(&env).await.unwrap_err());
    let mut env = lambda_env(&server);
    env.insert("AWS_SESSION_TOKEN", format!("{SESSION_TOKEN}\nInjected: header"));
    errors.push(fetch(&env).await.unwrap_err());
    let mut env = lambda_env(&server);
    env.insert(aws_secrets::ENDPOINT_VAR, "http://127.0.0.1:1".to_owned());
    errors.push(fetch(&env).await.unwrap_err());

    for error in &errors {
        let printed = format!("{error} | {error:?} | {:?}", std::error::Error::source(error));
        for forbidden in [CLIENT_SECRET, API_KEY, KEY_ID, SECRET_KEY, SESSION_TOKEN, "rediss://"]
            .into_iter()
            .chain(signatures.iter().map(String::as_str))
        {
            assert!(!printed.contains(forbidden), "{forbidden} in {printed}");
        }
    }
    assert!(
        matches!(
            errors[7],
            SecretsError::Invalid {
                name: "AWS_SESSION_TOKEN",
                ..
            }
        ),
        "{:?}",
        errors[7]
    );
}

#[tokio::test]
async fn secrets_fill_in_what_the_environment_does_not_set() {
    let server = fake_secrets_manager(secret_answer(&good_secret())).await;
    let env = lambda_env(&server);
    let secrets = fetch(&env).await.unwrap();
    let mut function_env = HashMap::from([("API_KEY", "set-in-the-function".to_owned())]);
    function_env.insert("CLIENT_SECRET", String::new());
    let lookup = aws_secrets::env_then(secrets, move |name| function_env.get(name).cloned());
    assert_eq!(lookup("API_KEY").as_deref(), Some("set-in-the-function"));
    assert_eq!(lookup("CLIENT_SECRET").as_deref(), Some(CLIENT_SECRET));
    assert_eq!(lookup("REDIS_URL").as_deref(), Some("rediss://u:p@cache:6379"));
    assert_eq!(lookup("TOKEN_URL"), None);
}
