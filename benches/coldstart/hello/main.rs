//! The cold-start baseline: a hello-world Lambda function over API Gateway
//! events, with the same runtime crates (`lambda_http`, tokio) and the same
//! release profile as the real functions. `scripts/bench-coldstart` builds it
//! with them and measures it beside them.

use lambda_http::{service_fn, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async { Ok::<_, Error>(Response::new("hello".to_owned())) })).await
}
