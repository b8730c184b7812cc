//! The `revoke` Lambda function: serves `POST /revoke`.

use token_broker::{http::routes::Route, serve::lambda};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(Route::REVOKE)
}
