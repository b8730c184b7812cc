//! The `callback` Lambda function: serves `GET /callback`.

use token_broker::{http::routes::Route, serve::lambda};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(Route::CALLBACK)
}
