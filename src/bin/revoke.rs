//! The `revoke` Lambda function: serves `POST /revoke`.

use token_broker::{lambda, routes::revoke};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(|app, request| async move { revoke::handle(app, &request).await })
}
