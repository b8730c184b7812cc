//! The `verify` Lambda function: serves `GET /verify`.

fn main() -> Result<(), lambda_http::Error> {
    token_broker::lambda::run(token_broker::routes::Route::Verify)
}
