//! The `token` Lambda function: serves `GET /token`.

use token_broker::{lambda, routes::token};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(|app, request| async move { token::handle(app, &request).await })
}
