//! The `verify` Lambda function: serves `GET /verify`.

use token_broker::{http::routes::Route, serve::lambda};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(Route::VERIFY)
}
