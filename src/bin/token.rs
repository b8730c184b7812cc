//! The `token` Lambda function: serves `GET /token`.

fn main() -> Result<(), lambda_http::Error> {
    token_broker::lambda::run(token_broker::routes::Route::Token)
}
