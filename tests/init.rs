//! The Lambda function binaries refuse to start half-configured: nothing fails open.

use std::process::Command;

fn start(binary: &str, env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(binary)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the function binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const FULL: &[(&str, &str)] = &[
    ("CLIENT_ID", "id"),
    ("CLIENT_SECRET", "client-secret-value"),
    ("TOKEN_URL", "https://provider.example/token"),
    ("AUTHORIZE_URL", "https://provider.example/authorize"),
    ("REDIRECT_URI", "https://broker.example/callback"),
    ("OAUTH_STATE", "oauth-state-value"),
    ("API_KEY", "api-key-value"),
    ("REDIS_URL", "redis://127.0.0.1:1"),
];

#[test]
fn every_function_stops_at_init_naming_an_unset_or_empty_secret_it_needs() {
    // Only the functions that call the provider need the client secret; callback is the
    // provider's redirect and needs no API key.
    for (binary, needs) in [
        (env!("CARGO_BIN_EXE_callback"), &["CLIENT_SECRET"][..]),
        (env!("CARGO_BIN_EXE_token"), &["API_KEY", "CLIENT_SECRET"][..]),
        (env!("CARGO_BIN_EXE_verify"), &["API_KEY"][..]),
    ] {
        // OAUTH_STATE is optional: without it only /login's one-time states are accepted.
        for missing in ["API_KEY", "CLIENT_SECRET"] {
            for value in [None, Some("")] {
                let mut env: Vec<(&str, &str)> = FULL.iter().copied().filter(|(k, _)| *k != missing).collect();
                if let Some(value) = value {
                    env.push((missing, value));
                }
                let (ok, output) = start(binary, &env);
                assert!(!ok, "{binary} ran outside Lambda");
                if needs.contains(&missing) {
                    assert!(output.contains(&format!("{missing} not set")), "{binary}: {output}");
                } else {
                    // Configured: it went on to ask the Lambda runtime for work, which is not here.
                    assert!(!output.contains("not set"), "{binary} without {missing}: {output}");
                    assert!(output.contains("AWS_LAMBDA_FUNCTION_NAME"), "{binary}: {output}");
                }
                for secret in ["client-secret-value", "oauth-state-value", "api-key-value"] {
                    assert!(!output.contains(secret), "{binary} printed a secret: {output}");
                }
            }
        }
    }
}

#[test]
fn lambda_functions_refuse_to_start_without_redis() {
    for binary in [
        env!("CARGO_BIN_EXE_callback"),
        env!("CARGO_BIN_EXE_token"),
        env!("CARGO_BIN_EXE_verify"),
    ] {
        let env: Vec<(&str, &str)> = FULL.iter().copied().filter(|(k, _)| *k != "REDIS_URL").collect();
        let (ok, output) = start(binary, &env);
        assert!(!ok, "{binary} started without REDIS_URL");
        assert!(output.contains("REDIS_URL"), "{binary}: {output}");
    }
}

/// With SECRETS_ARN set, a function reads the secrets it lacks from Secrets Manager (here a fake
/// one on loopback) at cold start; when that fails, init fails and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_complete_their_configuration_from_secrets_manager() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

    let secrets_manager = MockServer::start().await;
    let secret = serde_json::json!({
        "CLIENT_SECRET": "client-secret-value",
        "OAUTH_STATE": "oauth-state-value",
        "API_KEY": "api-key-value",
        "REDIS_URL": "redis://127.0.0.1:1",
    });
    Mock::given(matchers::method("POST"))
        .and(matchers::header("x-amz-target", "secretsmanager.GetSecretValue"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "SecretString": secret.to_string(),
        })))
        .expect(1)
        .mount(&secrets_manager)
        .await;
    let endpoint = secrets_manager.uri();
    let env: &[(&str, &str)] = &[
        ("CLIENT_ID", "id"),
        ("TOKEN_URL", "https://provider.example/token"),
        ("AUTHORIZE_URL", "https://provider.example/authorize"),
        ("REDIRECT_URI", "https://broker.example/callback"),
        (
            "SECRETS_ARN",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-broker-AbCdEf",
        ),
        ("SECRETS_MANAGER_ENDPOINT", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-value"),
        ("AWS_REGION", "eu-west-1"),
    ];

    // Blocks one worker; the other serves the fake Secrets Manager.
    let (ok, output) = start(env!("CARGO_BIN_EXE_token"), env);

    // Configuration is complete: init gets as far as the Lambda runtime API, absent here.
    assert!(!ok);
    assert!(!output.contains("not set"), "{output}");
    assert!(!output.contains("initialization failed"), "{output}");
    for secret in [
        "client-secret-value",
        "oauth-state-value",
        "api-key-value",
        "aws-secret-value",
    ] {
        assert!(!output.contains(secret), "printed a secret: {output}");
    }
    secrets_manager.verify().await;

    secrets_manager.reset().await;
    Mock::given(matchers::method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "__type": "AccessDeniedException", "message": "not allowed",
        })))
        .mount(&secrets_manager)
        .await;
    let (ok, output) = start(env!("CARGO_BIN_EXE_token"), env);
    assert!(!ok);
    assert!(output.contains("AccessDeniedException"), "{output}");
}
