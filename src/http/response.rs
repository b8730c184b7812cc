//! Response builders. Every answer the broker gives goes through here, so the headers that keep
//! tokens out of caches and pages out of frames are set in one place.

use lambda_http::{
    Body, Response,
    http::{HeaderValue, StatusCode, header},
};

/// Nothing external may load; the only thing a page may do is style itself and post its own form.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    build(status, "application/json", body.to_string())
}

pub fn html(status: StatusCode, page: String) -> Response<Body> {
    html_with_policy(status, page, HeaderValue::from_static(CONTENT_SECURITY_POLICY))
}

/// A page whose form may lead to `origin` too: browsers apply `form-action` to the redirects
/// that follow a form submission, and the login form's answer redirects to the provider.
pub fn html_with_form_target(status: StatusCode, page: String, origin: &str) -> Response<Body> {
    let policy = CONTENT_SECURITY_POLICY.replace("form-action 'self'", &format!("form-action 'self' {origin}"));
    let policy = HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    html_with_policy(status, page, policy)
}

/// Sends the browser on to `location`.
pub fn redirect(location: &str) -> Response<Body> {
    let mut response = build(StatusCode::FOUND, "text/plain; charset=utf-8", String::new());
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn html_with_policy(status: StatusCode, page: String, policy: HeaderValue) -> Response<Body> {
    let mut response = build(status, "text/html; charset=utf-8", page);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    // The callback URL carries the authorization code: it must not leak through a Referer.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn build(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Token responses must never be cached by a browser, proxy or CDN (RFC 6749 §5.1).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}
