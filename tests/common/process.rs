//! The `serve` binary as a child process, for tests that need real processes.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use wiremock::MockServer;

use super::*;

pub fn serve_command(dir: &Path, env: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_serve"));
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null());
    command
}

/// The variables of a working local set-up against `provider`.
pub fn local_env(provider: &MockServer, port: u16, data_dir: &Path) -> Vec<(String, String)> {
    [
        ("CLIENT_ID", CLIENT_ID.to_owned()),
        ("CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ("TOKEN_URL", format!("{}{TOKEN_PATH}", provider.uri())),
        ("AUTHORIZE_URL", format!("{}{AUTHORIZE_PATH}", provider.uri())),
        ("OAUTH_STATE", OAUTH_STATE.to_owned()),
        ("API_KEY", API_KEY.to_owned()),
        ("PORT", port.to_string()),
        ("DATA_DIR", data_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub async fn start(dir: &Path, env: &[(String, String)]) -> Self {
        let port = env.iter().find(|(k, _)| k == "PORT").unwrap().1.clone();
        let child = serve_command(dir, env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "serve did not start listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, base }
    }

    pub async fn get(&self, path_and_query: &str, key: bool) -> (u16, serde_json::Value) {
        let mut request = client()
            .get(format!("{}{path_and_query}", self.base))
            .header("accept", "application/json");
        if key {
            request = request.header("authorization", format!("Bearer {API_KEY}"));
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap();
        let path = path_and_query.split('?').next().unwrap_or_default();
        // Local mode answers paths no route serves itself; only the routes are described.
        if super::openapi::description()["paths"].get(path).is_some() {
            super::openapi::check(path, "GET", status, content_type.as_deref(), &body);
        }
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        )
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "serve exited with {exit:?} after SIGTERM");
    }

    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}
