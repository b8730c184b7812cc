//! The `keepalive` Lambda function: run on a schedule, refreshes every connection whose refresh
//! token expires within `KEEPALIVE_WINDOW`.

fn main() -> Result<(), lambda_http::Error> {
    token_broker::serve::lambda::run_keepalive()
}
