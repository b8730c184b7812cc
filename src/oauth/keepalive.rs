//! Keep-alive: refreshes every connection whose refresh token is about to lapse, so a connection
//! that no client used for weeks does not die (Digi-Key's refresh tokens live 90 days). Runs on a
//! schedule: the `keepalive` Lambda function (EventBridge), or a loop in local mode; both call
//! [`run`], the one entry point of a pass.
//!
//! It refreshes through the same single-flight path as `/token`, so it never refreshes a
//! connection that a client is refreshing at the same moment.

use serde::Serialize;

use crate::{
    base::{connection, record::ConnectionRecord, store::Store, store::StoreError},
    oauth::{
        app::App,
        error::FlowError,
        refresh,
        webhooks::{self, Deliveries},
    },
};

/// What keep-alive did for one connection.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Refreshed,
    /// The refresh token has longer left than `KEEPALIVE_WINDOW`.
    NotDue,
    /// Only a person logging in again can mend it.
    ReauthorizationRequired,
    /// Transient (provider or store); the next pass tries again.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refreshed => "refreshed",
            Self::NotDue => "not_due",
            Self::ReauthorizationRequired => "reauthorization_required",
            Self::Failed => "failed",
        }
    }
}

/// Reads as the name it is reported under.
impl PartialEq<&str> for Outcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionReport {
    pub connection: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The record was rewritten under the current encryption key and layout.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub resealed: bool,
}

impl ConnectionReport {
    fn new(connection: &str, outcome: Outcome, left: Option<i64>, detail: Option<String>) -> Self {
        Self {
            connection: connection.to_owned(),
            outcome,
            refresh_token_expires_in: left,
            detail,
            resealed: false,
        }
    }

    pub fn needs_a_person(&self) -> bool {
        self.outcome == Outcome::ReauthorizationRequired
    }
}

/// A whole pass, as the keep-alive function returns it and `serve keepalive` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub connections: Vec<ConnectionReport>,
    /// The webhook events this pass delivered, and those that wait for the next.
    pub webhooks: Deliveries,
}

impl Report {
    /// A connection failed or needs a person: what makes `serve keepalive` exit 1.
    pub fn needs_attention(&self) -> bool {
        self.connections
            .iter()
            .any(|r| !matches!(r.outcome, Outcome::Refreshed | Outcome::NotDue))
    }
}

/// One pass over every connection. Fails only when the connections cannot be listed.
pub async fn run<S: Store>(app: &App<S>) -> Result<Report, StoreError> {
    let mut connections = Vec::new();
    for name in connection::list(&app.store, &app.keys).await? {
        let report = keep_alive(app, &name).await;
        if let Some(left) = report.refresh_token_expires_in {
            app.metrics.refresh_token_seconds_left(&name, left);
        }
        match report.outcome {
            Outcome::ReauthorizationRequired => {
                app.metrics.reauthorization_required(&name);
                tracing::warn!(
                    connection = name,
                    detail = report.detail.as_deref().unwrap_or(""),
                    "keep-alive: a person must log in again"
                );
            }
            Outcome::Failed => tracing::warn!(
                connection = name,
                detail = report.detail.as_deref().unwrap_or(""),
                "keep-alive: refresh failed; will try again next run"
            ),
            outcome => tracing::info!(
                connection = name,
                outcome = outcome.as_str(),
                refresh_token_expires_in = report.refresh_token_expires_in,
                resealed = report.resealed,
                "keep-alive"
            ),
        }
        warn_of_lapse(app, &report).await;
        connections.push(report);
    }
    // After the pass, so that the events it raised go out with it.
    let webhooks = webhooks::deliver(app).await;
    Ok(Report { connections, webhooks })
}

/// `connection.lapsing`, once per deadline, for a connection whose refresh token lapses within
/// `WEBHOOK_LAPSE_DAYS` although this pass tried to renew it: a provider whose refresh tokens do
/// not renew, or one keep-alive cannot reach.
async fn warn_of_lapse<S: Store>(app: &App<S>, report: &ConnectionReport) {
    let Some(left) = report.refresh_token_expires_in else {
        return;
    };
    // Not due yet: the pass that finds it due renews it, or warns then.
    let tried = matches!(report.outcome, Outcome::Refreshed | Outcome::Failed);
    if !tried || left <= 0 || left > app.config.webhook_lapse_warning.as_secs() as i64 {
        return;
    }
    let deadline = app.clock.now() + left;
    // Named after the deadline's hour: its seconds move between passes.
    let id = webhooks::once_id("lapse", &report.connection, deadline / 3600);
    let data = serde_json::json!({"refresh_token_expires_at": deadline, "refresh_token_expires_in": left});
    webhooks::raise_once(app, webhooks::Kind::Lapsing, &id, deadline, &report.connection, data).await;
}

/// `report`, after rewriting the record if it is `stale`: sealed in an earlier layout or under a
/// key that is no longer the current one. A refreshed record needs no rewrite, the refresh wrote
/// it; one not due is rewritten here, so a key rotation completes within one pass.
async fn resealed<S: Store>(
    app: &App<S>,
    name: &str,
    stale: bool,
    generation: u64,
    record: &ConnectionRecord,
    mut report: ConnectionReport,
) -> ConnectionReport {
    if !stale {
        return report;
    }
    match refresh::reseal(app, name, generation, record).await {
        Ok(done) => report.resealed = done,
        Err(error) => tracing::warn!(
            connection = name,
            error = error.description(),
            "keep-alive: could not rewrite the record under the current key; will try again next run"
        ),
    }
    report
}

async fn keep_alive<S: Store>(app: &App<S>, name: &str) -> ConnectionReport {
    let failed = |error: FlowError| ConnectionReport::new(name, Outcome::Failed, None, Some(error.description()));
    let needs_login =
        |left, why: String| ConnectionReport::new(name, Outcome::ReauthorizationRequired, left, Some(why));
    let key = app.keys.tokens(name);
    let stored = match app.store.load(&key).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return needs_login(None, "no tokens stored".into()),
        Err(error) => return failed(error.into()),
    };
    let stale = !app.sealer.is_current(&stored.data);
    let record = match app.open_record(&key, stored.data) {
        Ok(record) => record,
        Err(error) => return failed(error.into()),
    };
    let tokens = match &record {
        ConnectionRecord::Active(tokens) => tokens.clone(),
        ConnectionRecord::ReauthorizationRequired { reason, .. } => {
            let report = needs_login(None, reason.clone());
            return resealed(app, name, stale, stored.generation, &record, report).await;
        }
    };
    let now = app.clock.now();
    let left = tokens.refresh_valid_for(now);
    if left <= 0 {
        return needs_login(Some(0), "the refresh token has expired".into());
    }
    if left > app.config.keepalive_window.as_secs() as i64 {
        let report = ConnectionReport::new(name, Outcome::NotDue, Some(left), None);
        return resealed(app, name, stale, stored.generation, &record, report).await;
    }
    // Demand a pair other than the one inspected: a refresh by anyone since then satisfies it,
    // so a concurrent `/token` refresh is not followed by a second one. (Every refresh issues a
    // new access token; times cannot tell, two refreshes may fall in the same second.)
    let seen = tokens.access_token;
    let result = refresh::access_token(app, name, |stored| {
        if stored.access_token != seen {
            i64::MIN
        } else {
            i64::MAX
        }
    })
    .await;
    match result {
        Ok(fresh) if fresh.access_token != seen => ConnectionReport::new(
            name,
            Outcome::Refreshed,
            Some(fresh.refresh_valid_for(app.clock.now())),
            None,
        ),
        // The refresh failed transiently and the old, still valid token came back.
        Ok(_) => ConnectionReport::new(
            name,
            Outcome::Failed,
            Some(left),
            Some("the provider did not answer the refresh; stored tokens kept".into()),
        ),
        Err(FlowError::ReauthorizationRequired { reason }) => needs_login(None, reason),
        Err(error) => ConnectionReport {
            refresh_token_expires_in: Some(left),
            ..failed(error)
        },
    }
}
