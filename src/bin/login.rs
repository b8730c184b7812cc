//! The `login` Lambda function: serves `GET` and `POST /login`.

use token_broker::{http::routes::Route, serve::lambda};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(Route::LOGIN)
}
