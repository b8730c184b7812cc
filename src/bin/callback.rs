//! The `callback` Lambda function: serves `GET /callback`.

fn main() -> Result<(), lambda_http::Error> {
    token_broker::lambda::run(token_broker::routes::Route::Callback)
}
