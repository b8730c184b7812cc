//! `POST /revoke`: ends a connection. The refresh token is revoked at the provider (RFC 7009)
//! when `REVOCATION_URL` is configured, then the stored tokens are deleted.
//!
//! If the provider cannot confirm the revocation, nothing is deleted unless the operator insists
//! with `?force=true`: forgetting a token the provider still honours would leave a live grant
//! nobody can see or revoke any more.

use lambda_http::{Body, Response, http::StatusCode};
use serde_json::json;

use crate::{
    base::{record::ConnectionRecord, store::Store},
    http::{error::BrokerError, request, response, routes::Call},
    oauth::{app::App, webhooks},
};

pub async fn revoke<S: Store>(app: &App<S>, call: Call<'_>) -> Result<Response<Body>, BrokerError> {
    let query = call.query;
    let force = match query.get("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(BrokerError::BadRequest("force must be true or false".to_owned())),
    };
    let connection = request::connection(&query)?;
    let key = app.keys.tokens(&connection);
    let Some(stored) = app.store.load(&key).await? else {
        return Ok(response::json(
            StatusCode::OK,
            &json!({"status": "not_stored", "revoked_at_provider": false}),
        ));
    };
    // An unreadable record is deleted only on request: it may be the last copy of a live grant.
    let record = match app.open_record(&key, stored.data) {
        Ok(record) => Some(record),
        Err(_) if force => None,
        Err(error) => return Err(error.into()),
    };
    let mut body = json!({"status": "revoked", "revoked_at_provider": false});
    if let Some(ConnectionRecord::Active(tokens)) = &record {
        match app.provider.revoke(&tokens.refresh_token).await {
            Ok(revoked) => {
                body["revoked_at_provider"] = json!(revoked);
                if !revoked {
                    body["warning"] = json!(
                        "REVOCATION_URL is not configured: the tokens were forgotten here, but the provider \
                         honours them until they expire"
                    );
                }
            }
            Err(error) if force => {
                tracing::warn!(%error, "revocation failed at the provider; deleting anyway (force)");
                body["warning"] = json!(format!(
                    "the provider did not confirm the revocation ({error}); the tokens were deleted here anyway"
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "revocation failed at the provider; tokens kept");
                return Err(error.into());
            }
        }
    }
    app.store.delete(&key).await?;
    let revoked = json!({"revoked_at_provider": body["revoked_at_provider"], "forced": force});
    webhooks::raise(app, webhooks::Kind::Revoked, &connection, revoked).await;
    tracing::info!(connection, revoked_at_provider = %body["revoked_at_provider"], force, "connection revoked");
    Ok(response::json(StatusCode::OK, &body))
}
