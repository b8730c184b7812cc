//! The `login` Lambda function: serves `GET` and `POST /login`.

fn main() -> Result<(), lambda_http::Error> {
    token_broker::lambda::run(token_broker::routes::Route::Login)
}
