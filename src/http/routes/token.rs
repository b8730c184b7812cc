//! `GET /token`: a valid access token for a headless client, refreshed on demand.

use lambda_http::{Body, Response, http::StatusCode};
use serde_json::json;

use crate::{
    base::{record::TokenSet, store::Store},
    http::{
        error::BrokerError,
        request::{self, Query},
        response,
        routes::Call,
    },
    oauth::{app::App, refresh},
};

pub async fn token<S: Store>(app: &App<S>, call: Call<'_>) -> Result<Response<Body>, BrokerError> {
    let connection = request::connection(&call.query)?;
    let min_ttl = min_ttl(&call.query)?;
    let skew = app.config.refresh_skew.as_secs() as i64;
    let tokens = refresh::access_token(app, &connection, |tokens| required_validity(tokens, skew, min_ttl)).await?;
    let now = app.clock.now();
    let expires_in = tokens.access_valid_for(now);
    // The refresh token never leaves the broker: a caller holding it could rotate it and end
    // the connection for everyone.
    let mut body = json!({
        "access_token": tokens.access_token.expose(),
        "token_type": tokens.token_type,
        "expires_in": expires_in,
        "expires_at": tokens.access_expires_at,
        "scope": tokens.scope,
    });
    if let Some(min_ttl) = min_ttl
        && expires_in < min_ttl
    {
        body["warning"] = json!(format!(
            "min_ttl={min_ttl} cannot be met: the provider issues access tokens valid for {} seconds",
            tokens.access_lifetime()
        ));
    }
    Ok(response::json(StatusCode::OK, &body))
}

/// Longest `min_ttl` accepted; no provider issues access tokens for longer than a day.
const MAX_MIN_TTL: i64 = 86_400;

/// A refresh is not allowed to follow a refresh more closely than this, however much validity a
/// caller asks for: a client asking for more than the provider gives must not cause a refresh
/// on every call.
const MIN_REFRESH_INTERVAL: i64 = 60;

fn min_ttl(query: &Query) -> Result<Option<i64>, BrokerError> {
    let Some(raw) = query.get("min_ttl") else {
        return Ok(None);
    };
    match raw.parse::<i64>() {
        Ok(value) if (0..=MAX_MIN_TTL).contains(&value) => Ok(Some(value)),
        _ => Err(BrokerError::BadRequest(format!(
            "min_ttl must be a whole number of seconds from 0 to {MAX_MIN_TTL}"
        ))),
    }
}

/// Seconds of validity below which the stored token is refreshed before it is served: the skew,
/// or the caller's `min_ttl` as far as the provider's token lifetime can meet it.
fn required_validity(tokens: &TokenSet, skew: i64, min_ttl: Option<i64>) -> i64 {
    let attainable = tokens.access_lifetime() - MIN_REFRESH_INTERVAL;
    min_ttl.map_or(skew, |min_ttl| skew.max(min_ttl.min(attainable)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::Secret;

    fn lasting(lifetime: i64) -> TokenSet {
        TokenSet {
            access_token: Secret::new("a"),
            refresh_token: Secret::new("r"),
            token_type: "Bearer".into(),
            scope: None,
            access_expires_at: 1000 + lifetime,
            refresh_expires_at: 100_000,
            issued_at: 1000,
        }
    }

    #[test]
    fn min_ttl_raises_the_bar_up_to_what_the_provider_can_give() {
        let tokens = lasting(1800);
        assert_eq!(required_validity(&tokens, 60, None), 60);
        assert_eq!(required_validity(&tokens, 60, Some(10)), 60);
        assert_eq!(required_validity(&tokens, 60, Some(900)), 900);
        // More than the provider's 1800 s: capped so refreshes stay a minute apart at least.
        assert_eq!(required_validity(&tokens, 60, Some(3600)), 1740);
        assert_eq!(required_validity(&lasting(90), 60, Some(3600)), 60);
    }
}
