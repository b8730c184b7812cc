//! The `token` Lambda function: serves `GET /token`.

use token_broker::{http::routes::Route, serve::lambda};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(Route::TOKEN)
}
