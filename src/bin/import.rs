//! The `import` Lambda function: serves `POST /import`.

use token_broker::{http::routes::Route, serve::lambda};

fn main() -> Result<(), lambda_http::Error> {
    lambda::run(Route::IMPORT)
}
