//! The `revoke` Lambda function: serves `POST /revoke`.

fn main() -> Result<(), lambda_http::Error> {
    token_broker::lambda::run(token_broker::routes::Route::Revoke)
}
