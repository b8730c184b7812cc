//! The `callback` Lambda function: serves `GET /callback`.

use token_broker::{lambda, routes::callback};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(|app, request| async move { callback::handle(app, &request).await })
}
