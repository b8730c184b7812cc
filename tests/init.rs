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
fn every_function_stops_at_init_naming_an_unset_or_empty_secret() {
    for binary in [
        env!("CARGO_BIN_EXE_callback"),
        env!("CARGO_BIN_EXE_token"),
        env!("CARGO_BIN_EXE_verify"),
    ] {
        for missing in ["API_KEY", "OAUTH_STATE", "CLIENT_SECRET"] {
            for value in [None, Some("")] {
                let mut env: Vec<(&str, &str)> = FULL.iter().copied().filter(|(k, _)| *k != missing).collect();
                if let Some(value) = value {
                    env.push((missing, value));
                }
                let (ok, output) = start(binary, &env);
                assert!(!ok, "{binary} started without {missing}");
                assert!(output.contains(missing), "{binary}: {output}");
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
