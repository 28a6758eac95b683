//! The review queue over HTTP on the embedded store (the same scenario runs
//! on DynamoDB in `store_contract`).

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn unclear_messages_are_held_listed_and_decided_by_staff() {
    let app = TestApp::spawn().await;
    review_queue_end_to_end(&app).await;
}

#[tokio::test]
async fn an_ordinary_message_is_not_queued_and_a_program_may_allow_while_pending() {
    let config = config_text().replacen("send_rules = []\n", "send_rules = []\nunclear = \"allow\"\n", 1);
    let app = TestApp::spawn_with(&config).await;
    app.standard_sms("msg-1", PATIENT, CLINIC, "Can I stop by at 3?", None).await;
    app.standard_sms("msg-2", PATIENT, CLINIC, "Please stop texting my son", None).await;
    assert_eq!(app.ledger_len(PATIENT).await, 1, "only the unclear message is kept");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "allowed", "unclear = \"allow\"");
    let page: serde_json::Value = app.api("/v1/reviews", Some(REVIEW_KEY), json!({})).await.json().await.unwrap();
    assert_eq!(page["reviews"].as_array().unwrap().len(), 1, "still queued for staff");
    assert_problem(app.api("/v1/reviews", Some(REVIEW_KEY), json!({"page_token": "bm90IGEgdG9rZW4"})).await, 400).await;
}

#[tokio::test]
async fn a_number_holds_at_most_ten_open_reviews_and_its_erasure_closes_them() {
    let app = TestApp::spawn().await;
    for i in 0..12 {
        let response = app.standard_sms(&format!("msg-{i}"), PATIENT, CLINIC, "How do I stop these", None).await;
        assert_eq!(response.status(), 200);
    }
    let page: serde_json::Value = app.api("/v1/reviews", Some(REVIEW_KEY), json!({})).await.json().await.unwrap();
    assert_eq!(page["reviews"].as_array().unwrap().len(), 10, "ten queued; the rest kept in the ledger only");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "review_pending");
    assert_eq!(app.api("/v1/consents/erasure", Some(STAFF_KEY), json!({ "to": PATIENT })).await.status(), 200);
    let page: serde_json::Value = app.api("/v1/reviews", Some(REVIEW_KEY), json!({})).await.json().await.unwrap();
    assert_eq!(page["reviews"], json!([]), "an erasure closes the number's reviews");
    assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "opted_out", "and leaves no consent");
}
