//! Discovery from `ISSUER` against metadata served over real HTTP: both well-known locations, and
//! every way a document can be wrong. (The end-to-end test discovers a real oidc-provider.)

mod common;

use std::time::Duration;

use serde_json::json;
use token_broker::oauth::discovery::{DiscoveryError, discover};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const TIMEOUT: Duration = Duration::from_secs(2);

fn metadata(issuer: &str) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
    })
}

async fn serving(path: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path(path))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn openid_connect_metadata_gives_every_setting() {
    let server = MockServer::start().await;
    let issuer = format!("{}/realms/lab", server.uri());
    Mock::given(matchers::path("/realms/lab/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(metadata(&issuer)))
        .mount(&server)
        .await;

    let found = discover(&issuer, TIMEOUT).await.unwrap();

    let settings = found.settings();
    let get = |name: &str| settings.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
    assert_eq!(get("AUTHORIZE_URL"), Some(format!("{issuer}/authorize").as_str()));
    assert_eq!(get("TOKEN_URL"), Some(format!("{issuer}/token").as_str()));
    assert_eq!(get("REVOCATION_URL"), Some(format!("{issuer}/revoke").as_str()));
    assert_eq!(get("TOKEN_AUTH_METHOD"), Some("client_secret_post"));
    assert_eq!(get("PKCE"), Some("true"));
    assert_eq!(get("REQUIRE_ISS"), Some("true"));
}

#[tokio::test]
async fn rfc_8414_metadata_is_found_where_openid_connect_has_none() {
    let server = MockServer::start().await;
    let issuer = format!("{}/tenant", server.uri());
    Mock::given(matchers::path("/.well-known/oauth-authorization-server/tenant"))
        .respond_with(ResponseTemplate::new(200).set_body_json(metadata(&issuer)))
        .mount(&server)
        .await;
    let found = discover(&issuer, TIMEOUT).await.unwrap();
    assert_eq!(found.token_endpoint, format!("{issuer}/token"));
}

#[tokio::test]
async fn a_document_naming_another_issuer_is_refused() {
    let server = MockServer::start().await;
    Mock::given(matchers::path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(metadata("https://attacker.example")))
        .mount(&server)
        .await;
    let error = discover(&server.uri(), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&error, DiscoveryError::IssuerMismatch { found, .. } if found == "https://attacker.example"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_issuer_a_server_error_and_no_document_are_each_named() {
    let closed = format!("http://127.0.0.1:{}", common::closed_port());
    assert!(matches!(
        discover(&closed, TIMEOUT).await,
        Err(DiscoveryError::Unreachable { .. })
    ));
    let failing = serving("/.well-known/openid-configuration", ResponseTemplate::new(500)).await;
    let error = discover(&failing.uri(), TIMEOUT).await.unwrap_err();
    assert!(error.to_string().contains("HTTP 500"), "{error}");
    let empty = MockServer::start().await;
    assert!(matches!(
        discover(&empty.uri(), TIMEOUT).await,
        Err(DiscoveryError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_document_that_is_not_metadata_is_refused() {
    for body in ["<html>Sign in</html>", "{}", r#"{"issuer": 5}"#] {
        let server = serving(
            "/.well-known/openid-configuration",
            ResponseTemplate::new(200).set_body_string(body),
        )
        .await;
        assert!(
            matches!(
                discover(&server.uri(), TIMEOUT).await,
                Err(DiscoveryError::NotMetadata(_))
            ),
            "{body}"
        );
    }
    // A redirect is not followed: the document must come from the issuer itself.
    let moved = serving(
        "/.well-known/openid-configuration",
        ResponseTemplate::new(302).insert_header("location", "https://elsewhere.example/metadata"),
    )
    .await;
    assert!(matches!(
        discover(&moved.uri(), TIMEOUT).await,
        Err(DiscoveryError::Unreachable { .. })
    ));
}
