//! One Lambda function process, started the way the Lambda service starts it (the `AWS_LAMBDA_*`
//! variables, a Runtime API address) and driven through the stand-in.

use std::{
    fs::OpenOptions,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::process::{Child, Command};

use crate::runtime_api::{OutcomeKind, RuntimeApi};

/// No invocation of a function under test takes this long; past it, something is broken.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Spec {
    /// Shown in the report and used as the function name and log file name.
    pub label: String,
    pub bin: PathBuf,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
}

pub struct Running {
    label: String,
    log: PathBuf,
    api: RuntimeApi,
    child: Child,
    pid: u32,
    spawned: Instant,
    first_poll: Option<Instant>,
    invocations: u64,
}

/// One answered invocation.
pub struct Call {
    /// From queueing the event to the whole answer having arrived at the stand-in.
    pub latency: Duration,
    pub status: u16,
    pub body: String,
}

impl Running {
    /// Starts the process with `first_event` already queued, so the time to its first answer is
    /// the cold start: process creation, init, and the first invocation.
    pub async fn start(spec: &Spec, first_event: &Bytes) -> Result<(Self, Call), String> {
        let api = RuntimeApi::start().await.map_err(|e| e.to_string())?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| format!("{}: {e}", spec.log.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&spec.bin);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &spec.label)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/23/[$LATEST]bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", spec.label))
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_REGION", "eu-west-1")
            .env("TZ", ":UTC")
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        api.queue("00000000-0000-4000-8000-000000000000".to_owned(), first_event.clone());
        let spawned = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.bin.display()))?;
        let pid = child.id().unwrap_or_default();
        let mut running = Self {
            label: spec.label.clone(),
            log: spec.log.clone(),
            api,
            child,
            pid,
            spawned,
            first_poll: None,
            invocations: 1,
        };
        let call = running.answer(spawned).await?;
        running.first_poll = running.api.polls.try_recv().ok();
        while running.api.polls.try_recv().is_ok() {}
        Ok((running, call))
    }

    /// From process start to its first `GET /invocation/next`: what Lambda reports (and, since
    /// August 2025, bills) as the init duration.
    pub fn init_duration(&self) -> Option<Duration> {
        self.first_poll.map(|at| at - self.spawned)
    }

    pub async fn invoke(&mut self, event: &Bytes) -> Result<Call, String> {
        self.invocations += 1;
        let id = format!("00000000-0000-4000-8000-{:012x}", self.invocations);
        let sent = Instant::now();
        self.api.queue(id, event.clone());
        self.answer(sent).await
    }

    async fn answer(&mut self, since: Instant) -> Result<Call, String> {
        let outcome = tokio::select! {
            outcome = self.api.outcomes.recv() => outcome.ok_or("the Runtime API stand-in stopped")?,
            status = self.child.wait() => {
                return Err(format!("{} exited ({}) before answering; see {}", self.label,
                    status.map_or_else(|e| e.to_string(), |s| s.to_string()), self.log.display()));
            }
            () = tokio::time::sleep(TIMEOUT) => {
                return Err(format!("{} did not answer within {TIMEOUT:?}; see {}", self.label, self.log.display()));
            }
        };
        let body = String::from_utf8_lossy(&outcome.body).into_owned();
        match outcome.kind {
            OutcomeKind::Response => {}
            kind => {
                return Err(format!(
                    "{} reported {kind:?}: {body}; see {}",
                    self.label,
                    self.log.display()
                ));
            }
        }
        // An API Gateway (payload 2.0) response: {"statusCode": 200, "headers": …, "body": …}
        let status = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["statusCode"].as_u64())
            .unwrap_or(0) as u16;
        Ok(Call {
            latency: outcome.at - since,
            status,
            body,
        })
    }

    /// CPU time the process has used so far (every thread, nanosecond resolution, from
    /// /proc/<pid>/task/*/schedstat).
    pub fn cpu_time(&self) -> Duration {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return Duration::ZERO;
        };
        let nanos: u64 = tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
            .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        Duration::from_nanos(nanos)
    }

    /// Page faults the process has taken so far (minor and major, every thread): mapping the
    /// binary's pages is most of what a cold start does.
    pub fn page_faults(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // After the command name in parentheses: state is field 3, minflt 10, majflt 12.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(7)?.parse::<u64>().ok()? + fields.get(9)?.parse::<u64>().ok()?)
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// Resident memory now, split into anonymous (heap, stacks) and file-backed (the binary's
    /// pages and shared libraries), in KiB.
    pub fn rss_split_kib(&self) -> Option<(u64, u64)> {
        Some((self.status_kib("RssAnon:")?, self.status_kib("RssFile:")?))
    }

    fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Threads the process runs.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid)).map_or(0, |d| d.count())
    }

    /// Lambda freezes and eventually kills an idle instance; there is no graceful shutdown to wait for.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
