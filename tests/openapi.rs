//! `openapi.yaml` describes every route the broker serves, with exactly the methods it accepts.
//! The responses themselves are held against it by every suite (`tests/common/openapi.rs`); the
//! checks here show that such a check fails where it should. `scripts/lint-openapi.sh` validates
//! the document against the OpenAPI 3.1 specification.

mod common;

use std::{collections::BTreeSet, panic};

use common::openapi::{check, check_event, description};
use token_broker::{base::store::RedisStore, http::routes::Route};

#[test]
fn every_route_and_method_is_described_and_nothing_else() {
    let paths = description()["paths"].as_object().expect("paths");
    let described: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let served: BTreeSet<&str> = Route::<RedisStore>::ALL.iter().map(|route| route.path()).collect();
    assert_eq!(described, served);
    for route in Route::<RedisStore>::ALL {
        let methods: BTreeSet<String> = route.methods().split(", ").map(str::to_ascii_lowercase).collect();
        let operations: BTreeSet<String> = paths[route.path()]
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| !["parameters", "summary", "description"].contains(&key.as_str()))
            .cloned()
            .collect();
        assert_eq!(operations, methods, "{}", route.path());
    }
}

fn fails(what: &str, f: impl FnOnce() + panic::UnwindSafe) {
    assert!(panic::catch_unwind(f).is_err(), "{what} passed the check");
}

#[test]
fn the_check_refuses_what_the_description_does_not_say() {
    let token = r#"{"access_token":"a","token_type":"Bearer","expires_in":60,"expires_at":1,"scope":null}"#;
    check("/token", "GET", 200, Some("application/json"), token);
    let error = r#"{"error":"unauthorized","error_description":"no key"}"#;
    check("/token", "GET", 401, Some("application/json"), error);
    check("/token", "PUT", 405, Some("application/json"), error);
    check("/login", "POST", 302, None, "");

    fails("a field too many", || {
        let extra = token.replace("\"scope\":null", "\"scope\":null,\"refresh_token\":\"r\"");
        check("/token", "GET", 200, Some("application/json"), &extra)
    });
    fails("a field missing", || {
        check(
            "/token",
            "GET",
            200,
            Some("application/json"),
            r#"{"access_token":"a"}"#,
        )
    });
    fails("a field of the wrong type", || {
        let wrong = token.replace("\"expires_in\":60", "\"expires_in\":\"60\"");
        check("/token", "GET", 200, Some("application/json"), &wrong)
    });
    fails("an undescribed status", || {
        check("/token", "GET", 418, Some("application/json"), error)
    });
    fails("an undescribed content type", || {
        check("/token", "GET", 200, Some("text/plain"), "a token")
    });
    fails("an error body of another shape", || {
        check("/verify", "GET", 503, Some("application/json"), r#"{"message":"down"}"#)
    });
    fails("a method answered with anything but 405", || {
        check("/token", "DELETE", 200, Some("application/json"), error)
    });
    fails("a path not described", || {
        check("/status", "GET", 200, Some("text/html"), "")
    });
    let event =
        r#"{"type":"connection.revoked","id":"evt_1","occurred_at":1,"data":{"connection":"a","forced":false}}"#;
    check_event(event);
    fails("an event with a token in it", || {
        check_event(&event.replace("\"forced\":false", "\"access_token\":\"x\""))
    });
    fails("an event of an undescribed type", || {
        check_event(&event.replace("connection.revoked", "connection.deleted"))
    });
    fails("a listed connection with a token in it", || {
        let listed = r#"{"connection":"default","status":"valid","connections":[{"connection":"a","status":"valid","access_token":"x"}]}"#;
        check("/verify", "GET", 200, Some("application/json"), listed)
    });
}
