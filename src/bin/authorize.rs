//! The authorize Lambda function: wiring only (see `sms_consent::runtime::lambda`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sms_consent::runtime::lambda::run(sms_consent::http::Role::Authorize).await
}
