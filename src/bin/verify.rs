//! The `verify` Lambda function: serves `GET /verify`.

use token_broker::{lambda, routes::verify};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(|app, request| async move { verify::handle(app, &request).await })
}
