//! The outbox Lambda function, fed by the table's stream: wiring only (see
//! `sms_consent::runtime::lambda::run_outbox`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    sms_consent::runtime::lambda::run_outbox().await
}
