//! Keep-alive: refreshes what is about to lapse, leaves the rest, marks what the provider
//! refuses, never doubles a refresh already under way; and the metric lines it and the routes
//! write are valid CloudWatch Embedded Metric Format.

mod common;

use std::{collections::HashSet, sync::Arc, time::Duration};

use common::*;
use serde_json::Value;
use token_broker::{base::record::ConnectionRecord, http::routes::Route, oauth::keepalive};

const DAY: i64 = 86_400;

#[tokio::test]
async fn keepalive_refreshes_inside_the_window_and_leaves_the_rest() {
    let h = Harness::new().await;
    let fake = Arc::new(RotatingProvider::holding("refresh-soon"));
    fake.mount(&h.provider, Duration::ZERO).await;
    // Refresh token lapses in 3 days (inside the default 7-day window), and one in 60 days.
    h.seed_connection(
        "soon",
        &tokens("access-soon", "refresh-soon", START + 600, START + 3 * DAY),
    )
    .await;
    h.seed_connection(
        "later",
        &tokens("access-later", "refresh-later", START + 600, START + 60 * DAY),
    )
    .await;

    let reports = keepalive::run(&h.app).await.unwrap().connections;

    let by_name = |name: &str| reports.iter().find(|r| r.connection == name).unwrap().clone();
    assert_eq!(by_name("soon").outcome, "refreshed");
    assert_eq!(by_name("soon").refresh_token_expires_in, Some(7_775_999));
    assert_eq!(by_name("later").outcome, "not_due");
    assert_eq!(by_name("later").refresh_token_expires_in, Some(60 * DAY));
    assert_eq!(fake.refreshes(), 1);
    match h.stored_in("soon").await {
        Some(ConnectionRecord::Active(tokens)) => assert_eq!(tokens.refresh_token.expose(), "refresh-1"),
        other => panic!("{other:?}"),
    }
    match h.stored_in("later").await {
        Some(ConnectionRecord::Active(tokens)) => assert_eq!(tokens.refresh_token.expose(), "refresh-later"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn keepalive_marks_a_connection_the_provider_refuses() {
    let h = Harness::new().await;
    let fake = Arc::new(RotatingProvider::holding("someone-elses-token"));
    fake.mount(&h.provider, Duration::ZERO).await;
    h.seed_connection("dead", &tokens("a", "revoked-elsewhere", START + 600, START + DAY))
        .await;

    let reports = keepalive::run(&h.app).await.unwrap().connections;

    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, "reauthorization_required");
    assert!(reports[0].needs_a_person());
    assert!(matches!(
        h.stored_in("dead").await,
        Some(ConnectionRecord::ReauthorizationRequired { .. })
    ));
    // The next run reports it again without asking the provider.
    let again = keepalive::run(&h.app).await.unwrap().connections;
    assert_eq!(again[0].outcome, "reauthorization_required");
    assert_eq!(fake.refreshes(), 1);
}

#[tokio::test]
async fn keepalive_reports_a_provider_outage_and_keeps_the_tokens() {
    let h = Harness::new().await;
    provider_answers(&h.provider, wiremock::ResponseTemplate::new(503)).await;
    h.seed_connection("flaky", &tokens("a", "r", START + 600, START + DAY))
        .await;
    let before = h.stored_in("flaky").await;

    let reports = keepalive::run(&h.app).await.unwrap().connections;

    assert_eq!(reports[0].outcome, "failed");
    assert_eq!(h.stored_in("flaky").await, before);
}

#[tokio::test]
async fn keepalive_never_refreshes_twice_while_token_is_refreshing() {
    let h = Arc::new(Harness::new().await);
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::from_millis(500)).await;
    // Expired access token and a refresh token inside the keep-alive window: both want to refresh.
    h.seed(&tokens("access-0", "refresh-0", START, START + DAY)).await;

    let client = {
        let h = h.clone();
        tokio::spawn(async move { h.call(Route::TOKEN, "token").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reports = keepalive::run(&h.app).await.unwrap().connections;
    let reply = client.await.unwrap();

    assert_eq!(reply.status, 200);
    assert_eq!(reports[0].outcome, "refreshed");
    assert_eq!(fake.refreshes(), 1, "keep-alive refreshed a second time");
    assert_eq!(fake.rejected(), 0);
}

/// The EMF rules CloudWatch applies (Embedded Metric Format specification): an `_aws` object with
/// an integer millisecond `Timestamp` and `CloudWatchMetrics` directives; each directive a
/// non-empty `Namespace`, `Dimensions` as arrays of at most 30 names each present at the root as a
/// string, and `Metrics` whose names are at the root with a number value and a valid unit.
fn assert_valid_emf(line: &str) -> Value {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let aws = &value["_aws"];
    assert!(aws["Timestamp"].is_u64(), "{line}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics array");
    assert!(!directives.is_empty());
    let units: HashSet<&str> = ["Seconds", "Count", "Milliseconds", "None"].into();
    for directive in directives {
        assert!(!directive["Namespace"].as_str().unwrap().is_empty());
        for set in directive["Dimensions"].as_array().unwrap() {
            let set = set.as_array().unwrap();
            assert!(set.len() <= 30);
            for name in set {
                assert!(
                    value[name.as_str().unwrap()].is_string(),
                    "dimension {name} missing: {line}"
                );
            }
        }
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap();
            assert!(value[name].is_number(), "metric {name} has no value: {line}");
            assert!(units.contains(metric["Unit"].as_str().unwrap()), "{line}");
        }
    }
    value
}

#[tokio::test]
async fn metric_lines_are_valid_embedded_metric_format() {
    let mut h = Harness::new().await;
    let lines = h.capture_metrics();
    let fake = Arc::new(RotatingProvider::holding("refresh-0"));
    fake.mount(&h.provider, Duration::ZERO).await;
    // A login, a refresh, a keep-alive pass and a refusal: every kind of metric line.
    assert_eq!(h.call(Route::CALLBACK, "callback").await.status, 200);
    h.seed_connection("due", &tokens("a", "refresh-1", START, START + DAY))
        .await;
    assert_eq!(
        h.call_request(Route::TOKEN, event_with_query("token", "connection=due"))
            .await
            .status,
        200
    );
    h.seed_connection("dead", &tokens("a", "stale", START, START + DAY))
        .await;
    keepalive::run(&h.app).await.unwrap();

    let lines = lines.lock().unwrap().clone();
    let parsed: Vec<Value> = lines.iter().map(|line| assert_valid_emf(line)).collect();
    let names: HashSet<String> = parsed
        .iter()
        .flat_map(|v| v["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().clone())
        .map(|m| m["Name"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "Authorizations",
        "Refreshes",
        "RefreshTokenSecondsLeft",
        "ReauthorizationRequired",
    ] {
        assert!(names.contains(expected), "{expected} never emitted: {lines:?}");
    }
    let outcomes: HashSet<&str> = parsed.iter().filter_map(|v| v["Outcome"].as_str()).collect();
    assert!(
        outcomes.contains("refreshed") && outcomes.contains("invalid_grant"),
        "{outcomes:?}"
    );
    for line in &lines {
        for secret in ["access-", "refresh-", "stale", CLIENT_SECRET, API_KEY] {
            assert!(!line.contains(secret), "metric line leaks {secret}: {line}");
        }
    }
}
