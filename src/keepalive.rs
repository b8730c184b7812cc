//! Keep-alive: refreshes every connection whose refresh token is about to lapse, so a connection
//! that no client used for weeks does not die (Digi-Key's refresh tokens live 90 days). Runs on a
//! schedule: the `keepalive` Lambda function (EventBridge), or a loop in local mode.
//!
//! It refreshes through the same single-flight path as `/token`, so it never refreshes a
//! connection that a client is refreshing at the same moment.

use serde::Serialize;

use crate::{app::App, connection, error::BrokerError, record::ConnectionRecord, refresh, store::Store};

/// What keep-alive did for one connection.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionReport {
    pub connection: String,
    /// `refreshed`, `not_due`, `reauthorization_required` or `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ConnectionReport {
    fn new(connection: &str, outcome: &'static str, left: Option<i64>, detail: Option<String>) -> Self {
        Self {
            connection: connection.to_owned(),
            outcome,
            refresh_token_expires_in: left,
            detail,
        }
    }

    pub fn needs_a_person(&self) -> bool {
        self.outcome == "reauthorization_required"
    }
}

/// One pass over every connection.
pub async fn run<S: Store>(app: &App<S>) -> Result<Vec<ConnectionReport>, BrokerError> {
    let mut reports = Vec::new();
    for name in connection::list(app).await? {
        let report = keep_alive(app, &name).await;
        if let Some(left) = report.refresh_token_expires_in {
            app.metrics.refresh_token_seconds_left(&name, left);
        }
        match report.outcome {
            "reauthorization_required" => {
                app.metrics.reauthorization_required(&name);
                tracing::warn!(
                    connection = name,
                    detail = report.detail.as_deref().unwrap_or(""),
                    "keep-alive: a person must log in again"
                );
            }
            "failed" => tracing::warn!(
                connection = name,
                detail = report.detail.as_deref().unwrap_or(""),
                "keep-alive: refresh failed; will try again next run"
            ),
            outcome => tracing::info!(
                connection = name,
                outcome,
                refresh_token_expires_in = report.refresh_token_expires_in,
                "keep-alive"
            ),
        }
        reports.push(report);
    }
    Ok(reports)
}

async fn keep_alive<S: Store>(app: &App<S>, name: &str) -> ConnectionReport {
    let failed = |error: BrokerError| ConnectionReport::new(name, "failed", None, Some(error.reply().description));
    let stored = match app.store.load(&app.tokens_key(name)).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return ConnectionReport::new(name, "reauthorization_required", None, Some("no tokens stored".into()));
        }
        Err(error) => return failed(error.into()),
    };
    let tokens = match app.open_record(&app.tokens_key(name), stored.data) {
        Ok(ConnectionRecord::Active(tokens)) => tokens,
        Ok(ConnectionRecord::ReauthorizationRequired { reason, .. }) => {
            return ConnectionReport::new(name, "reauthorization_required", None, Some(reason));
        }
        Err(error) => return failed(error.into()),
    };
    let now = app.clock.now();
    let left = tokens.refresh_valid_for(now);
    if left <= 0 {
        return ConnectionReport::new(
            name,
            "reauthorization_required",
            Some(0),
            Some("the refresh token has expired".into()),
        );
    }
    if left > app.config.keepalive_window.as_secs() as i64 {
        return ConnectionReport::new(name, "not_due", Some(left), None);
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
        Ok(fresh) if fresh.access_token != seen => {
            ConnectionReport::new(name, "refreshed", Some(fresh.refresh_valid_for(app.clock.now())), None)
        }
        // The refresh failed transiently and the old, still valid token came back.
        Ok(_) => ConnectionReport::new(
            name,
            "failed",
            Some(left),
            Some("the provider did not answer the refresh; stored tokens kept".into()),
        ),
        Err(BrokerError::ReauthorizationRequired { reason }) => {
            ConnectionReport::new(name, "reauthorization_required", None, Some(reason))
        }
        Err(error) => ConnectionReport {
            refresh_token_expires_in: Some(left),
            ..failed(error)
        },
    }
}
