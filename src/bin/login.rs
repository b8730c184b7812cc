//! The `login` Lambda function: serves `GET` and `POST /login`.

use token_broker::{lambda, routes::login};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(|app, request| async move { login::handle(app, &request).await })
}
