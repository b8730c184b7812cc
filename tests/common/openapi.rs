//! `openapi.yaml` held against what the broker really answers. Every response the suites get
//! through the harness (and through local mode's HTTP helpers) is checked here: its route and
//! method must be described, its status listed for that operation, its content type listed for
//! that status, and a JSON body must match the schema. So the description cannot drift from
//! the code: a new field, status or error shape fails the suite that first meets it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use jsonschema::{Draft, Validator};
use serde_json::Value;

struct Document {
    root: Value,
    /// Compiled once per schema location.
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let path = format!("{}/openapi.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let root = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        Document {
            root,
            validators: Mutex::default(),
        }
    })
}

/// The description as JSON, for tests of the description itself.
pub fn description() -> &'static Value {
    &document().root
}

/// A JSON pointer's reference token (RFC 6901).
fn token(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// `node`, or what its `$ref` points to, with the pointer to where it is.
fn follow<'a>(root: &'a Value, node: &'a Value, at: String) -> (&'a Value, String) {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("references stay in the document");
            let target = root
                .pointer(pointer)
                .unwrap_or_else(|| panic!("openapi.yaml: {reference} points nowhere"));
            (target, pointer.to_owned())
        }
        None => (node, at),
    }
}

/// The validator of the schema at `pointer`: the whole document as the root resource, so that
/// the schema's own `$ref`s resolve, with a reference to the schema in question. Keywords of the
/// document that are not JSON Schema's (`openapi`, `paths`, ...) are ignored, as 2020-12 says.
fn validator(pointer: &str) -> Arc<Validator> {
    let document = document();
    let mut validators = document.validators.lock().unwrap();
    validators
        .entry(pointer.to_owned())
        .or_insert_with(|| {
            let mut schema = document.root.clone();
            schema["$ref"] = Value::String(format!("#{pointer}"));
            let built = jsonschema::options()
                .with_draft(Draft::Draft202012)
                .build(&schema)
                .unwrap_or_else(|e| panic!("openapi.yaml: the schema at {pointer} does not compile: {e}"));
            Arc::new(built)
        })
        .clone()
}

/// Panics unless `body` is valid against the schema at `pointer`.
fn conforms(what: &str, pointer: &str, body: &str) {
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: a JSON response that is not JSON ({e}): {body}"));
    let errors: Vec<String> = validator(pointer)
        .iter_errors(&value)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the body does not match openapi.yaml ({pointer}):\n{}\n{body}",
        errors.join("\n")
    );
}

/// Checks one response of `method` `path` (a route's path, without the query).
pub fn check(path: &str, method: &str, status: u16, content_type: Option<&str>, body: &str) {
    let root = &document().root;
    let what = format!("{method} {path} answered {status}");
    let path_item = root["paths"]
        .get(path)
        .unwrap_or_else(|| panic!("{what}: openapi.yaml has no path {path}"));
    // Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET, and is refused as any other.
    let operation = (method == method.to_ascii_uppercase())
        .then(|| path_item.get(method.to_ascii_lowercase()))
        .flatten();
    let Some(operation) = operation else {
        // A method the route does not offer: the description says it is 405 with an error body,
        // or an error page where a browser may be asking.
        assert_eq!(status, 405, "{what}: openapi.yaml has no {method} {path}");
        if content_type.is_some_and(|value| value.starts_with("application/json")) {
            conforms(&what, "/components/schemas/Error", body);
        } else {
            assert!(
                content_type.is_some_and(|value| value.starts_with("text/html")),
                "{what}: neither JSON nor a page"
            );
        }
        return;
    };
    let at = format!(
        "/paths/{}/{}/responses/{status}",
        token(path),
        method.to_ascii_lowercase()
    );
    let listed = operation["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{what}: openapi.yaml does not list status {status} for {method} {path}: {body}"));
    let (response, at) = follow(root, listed, at);
    let Some(content) = response.get("content") else {
        assert!(
            body.is_empty(),
            "{what}: openapi.yaml describes no body, but one came: {body}"
        );
        return;
    };
    let media = content_type
        .and_then(|value| value.split(';').next())
        .map(|media| media.trim().to_ascii_lowercase())
        .unwrap_or_else(|| panic!("{what}: no Content-Type"));
    assert!(
        content.get(&media).is_some(),
        "{what}: openapi.yaml does not list {media} for it: {body}"
    );
    if media == "application/json" {
        conforms(&what, &format!("{at}/content/{}/schema", token(&media)), body);
    }
}

/// Checks the body of one webhook delivery against the description's `WebhookEvent`.
pub fn check_event(body: &str) {
    conforms("a webhook delivery", "/components/schemas/WebhookEvent", body);
}
