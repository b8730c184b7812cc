//! The audit trail: each request to a route writes exactly one audit line with who, what, which
//! connection, the caller as API Gateway reports it, the outcome and the request id; a refresh
//! writes one of its own; refused keys are counted as a metric. Lines are read in the JSON format
//! the functions log in on Lambda.

mod common;

use common::*;
use lambda_http::{Request, RequestExt, request::RequestContext};
use serde_json::Value;
use token_broker::{base::logging::init_with_writer, http::routes::Route};
use wiremock::ResponseTemplate;

/// `request` under a request id of its own, so its lines can be told from the others'.
fn with_id(request: Request, id: &str) -> Request {
    let Some(RequestContext::ApiGatewayV2(mut context)) = request.request_context_ref().cloned() else {
        panic!("the events are API Gateway v2 events");
    };
    context.request_id = Some(id.to_owned());
    request.with_request_context(RequestContext::ApiGatewayV2(context))
}

fn keyed(event: &str, key: &str) -> Request {
    let mut request = event_request(event);
    request.headers_mut().remove("x-api-key");
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// The audit lines logged so far: their fields, and the fields of the span they were logged in.
fn audit_lines(logs: &LogBuffer) -> Vec<(Value, Value)> {
    logs.lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "audit")
        .map(|line| (line["fields"].clone(), line["span"].clone()))
        .collect()
}

#[test]
fn each_request_writes_one_audit_line_and_refused_keys_are_counted() {
    // JSON, as on Lambda; set before the subscriber reads it, and nothing else runs yet.
    unsafe {
        std::env::set_var("AWS_LAMBDA_LOG_FORMAT", "json");
        std::env::set_var("AWS_LAMBDA_LOG_LEVEL", "INFO");
    }
    let logs = LogBuffer::default();
    init_with_writer(logs.writer());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let scoped = format!("monitor:{}:verify", sha256_hex("monitor-key"));
        let mut h = Harness::with(&[("SCOPED_API_KEYS", &scoped)]).await;
        let metrics = h.capture_metrics();
        provider_answers(
            &h.provider,
            ResponseTemplate::new(200).set_body_json(grant_body("access-new", "refresh-new")),
        )
        .await;
        revocation_answers(&h.provider).await;

        // (request id, route, request, action, key, outcome, status)
        let login = h
            .call_request(Route::LOGIN, with_id(event_request("login-json"), "r-login"))
            .await;
        assert_eq!(login.status, 200, "{}", login.body);
        let url = reqwest::Url::parse(login.json()["authorization_url"].as_str().unwrap()).unwrap();
        let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
        let callback = event_with_query("callback-json", &format!("code={CODE}&state={state}"));
        let reply = h.call_request(Route::CALLBACK, with_id(callback, "r-callback")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        // Past the access token's expiry: this call refreshes.
        h.clock.advance(3600);
        let cases = [
            (
                "r-token",
                Route::TOKEN,
                keyed("token", API_KEY),
                "token",
                "API_KEY",
                "ok",
                200,
            ),
            (
                "r-verify",
                Route::VERIFY,
                keyed("verify", "monitor-key"),
                "verify",
                "monitor",
                "ok",
                200,
            ),
            (
                "r-scope",
                Route::TOKEN,
                keyed("token", "monitor-key"),
                "token",
                "monitor",
                "insufficient_scope",
                403,
            ),
            (
                "r-unknown",
                Route::TOKEN,
                keyed("token", "wrong-key-wrong-key"),
                "token",
                "",
                "unauthorized",
                401,
            ),
            (
                "r-missing",
                Route::VERIFY,
                event_request("verify-no-key"),
                "verify",
                "",
                "unauthorized",
                401,
            ),
            (
                "r-import",
                Route::IMPORT,
                keyed("import", API_KEY),
                "import",
                "API_KEY",
                "ok",
                200,
            ),
            (
                "r-revoke",
                Route::REVOKE,
                keyed("revoke", API_KEY),
                "revoke",
                "API_KEY",
                "ok",
                200,
            ),
        ];
        for (id, route, request, _, _, _, status) in cases.clone() {
            let reply = h.call_request(route, with_id(request, id)).await;
            assert_eq!(reply.status, status, "{id}: {}", reply.body);
        }

        let lines = audit_lines(&logs);
        let of = |id: &str| -> Vec<&Value> {
            lines
                .iter()
                .filter(|(fields, _)| fields["request_id"] == id)
                .map(|(f, _)| f)
                .collect()
        };
        let expected = [
            ("r-login", "login", "API_KEY", "ok", 200),
            ("r-callback", "callback", "", "ok", 200),
        ]
        .into_iter()
        .chain(
            cases
                .iter()
                .map(|(id, _, _, action, key, outcome, status)| (*id, *action, *key, *outcome, *status)),
        );
        for (id, action, key, outcome, status) in expected {
            let found = of(id);
            assert_eq!(found.len(), 1, "{id}: {found:?}");
            let line = found[0];
            assert_eq!(line["audit"], action, "{id}: {line}");
            assert_eq!(line["key"], key, "{id}: {line}");
            assert_eq!(line["connection"], "default", "{id}: {line}");
            assert_eq!(line["outcome"], outcome, "{id}: {line}");
            assert_eq!(line["status"], status, "{id}: {line}");
            assert_eq!(line["ip"], "203.0.113.7", "{id}: {line}");
            assert_eq!(line["user_agent"], "curl/8.5.0", "{id}: {line}");
        }
        // The refresh /token caused: one line, in the span of the request that caused it.
        let refreshes: Vec<&(Value, Value)> = lines
            .iter()
            .filter(|(fields, _)| fields["audit"] == "refresh")
            .collect();
        assert_eq!(refreshes.len(), 1, "{refreshes:?}");
        let (fields, span) = refreshes[0];
        assert_eq!(
            (&fields["connection"], &fields["outcome"]),
            (&"default".into(), &"refreshed".into())
        );
        assert_eq!(span["request_id"], "r-token");
        assert_eq!(span["key"], "API_KEY");

        let refused: Vec<Value> = metrics
            .lock()
            .unwrap()
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|metric| metric.get("RefusedKeys").is_some())
            .collect();
        let reasons: Vec<&str> = refused.iter().map(|m| m["Reason"].as_str().unwrap()).collect();
        assert_eq!(reasons, ["insufficient_scope", "unknown_key", "missing_key"]);
        assert_eq!(refused[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "TokenBroker");
        // Nothing of a key, a token or a code in any audit line.
        for (fields, span) in &lines {
            let text = format!("{fields}{span}");
            for secret in [
                API_KEY,
                "monitor-key",
                "wrong-key-wrong-key",
                CODE,
                "access-new",
                "refresh-new",
                "imported-refresh-token",
                &state,
            ] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
    });
}
