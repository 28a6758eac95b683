use std::sync::Arc;

use async_trait::async_trait;
use proptest::prelude::*;
use serde_json::json;
use sms_consent::adapters::local_keyring::LocalKeyring;
use sms_consent::config::Config;
use sms_consent::crypto::{CacheLimits, Crypto};
use sms_consent::http::Role;
use sms_consent::ports::{
    CommitOutcome, ConsentStore, EventItem, LedgerWrite, StateItem, StateRead, StoreError, SystemClock,
};
use sms_consent::runtime::{build, Parts};

use crate::helpers::*;

#[tokio::test]
async fn a_body_over_64_kib_is_refused_before_parsing() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(64 * 1024 + 1);

    let webhook = app.client.post(app.url("/webhooks/twilio")).body(big.clone()).send().await.unwrap();
    let authorize = app.authorize_as(Some(AUTHORIZE_KEY), big).await;

    assert_problem(webhook, 413).await;
    assert_problem(authorize, 413).await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_details() {
    let app = TestApp::spawn().await;

    assert_problem(app.client.get(app.url("/nowhere")).send().await.unwrap(), 404).await;
    assert_problem(app.client.get(app.url("/webhooks/twilio")).send().await.unwrap(), 405).await;
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_provider_without_config_answers_404() {
    let config = config_text();
    let without_twilio = config
        .replace("[providers.twilio]", "[unused]")
        .replace(&format!("[unused]\nauth_tokens = [\"{TWILIO_OLD_TOKEN}\", \"{TWILIO_TOKEN}\"]\n"), "");
    let app = TestApp::spawn_with(&without_twilio).await;

    let response = app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await;

    assert_problem(response, 404).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn any_bytes_on_any_route_get_a_4xx_and_change_nothing(body in proptest::collection::vec(any::<u8>(), 0..512), route in 0usize..3) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let app = TestApp::spawn().await;
            let path = ["/webhooks/twilio", "/webhooks/standard-webhooks", "/v1/authorizations"][route];
            let response = app.client.post(app.url(path))
                .bearer_auth(AUTHORIZE_KEY)
                .header("X-Twilio-Signature", "AAAA")
                .header("webhook-id", "x").header("webhook-timestamp", "1").header("webhook-signature", "v1,AAAA")
                .body(body).send().await.unwrap();
            let status = response.status().as_u16();
            assert!((400..500).contains(&status), "{path} answered {status}");
            assert_eq!(app.ledger_len(PATIENT).await, 0);
        });
    }
}

/// A store whose every call fails, as DynamoDB does when it is unreachable.
struct BrokenStore;

#[async_trait]
impl ConsentStore for BrokenStore {
    async fn read_state(&self, _: &str) -> Result<StateRead, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn commit(&self, _: LedgerWrite) -> Result<CommitOutcome, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn events(&self, _: &str) -> Result<Vec<EventItem>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn outbox(&self, _: &str) -> Result<Vec<sms_consent::ports::OutboxItem>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn outbox_item(&self, _: &str, _: &str) -> Result<Option<sms_consent::ports::OutboxItem>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn update_outbox(&self, _: &sms_consent::ports::OutboxItem, _: u64) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn due_outbox(&self, _: time::OffsetDateTime, _: usize) -> Result<Vec<(String, String)>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn events_page(
        &self,
        _: &str,
        _: Option<&str>,
        _: usize,
    ) -> Result<(Vec<EventItem>, Option<String>), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn scrub(&self, _: &str) -> Result<usize, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn event(&self, _: &str, _: &str) -> Result<Option<EventItem>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn reviews_page(
        &self,
        _: Option<&str>,
        _: usize,
    ) -> Result<(Vec<sms_consent::ports::ReviewItem>, Option<String>), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn review(&self, _: &str) -> Result<Option<sms_consent::ports::ReviewItem>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn get_states(&self, _: &[String]) -> Result<Vec<Option<StateItem>>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn usage(&self, _: &str) -> Result<Option<sms_consent::ports::UsageItem>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn read_state_with_usage(
        &self,
        _: &str,
    ) -> Result<(sms_consent::ports::StateRead, Option<sms_consent::ports::UsageItem>), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn usages(&self, _: &[String]) -> Result<Vec<Option<sms_consent::ports::UsageItem>>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn put_usage(&self, _: &sms_consent::ports::UsageItem, _: Option<u64>) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn put_usages(&self, _: &[(sms_consent::ports::UsageItem, Option<u64>)]) -> Result<Vec<bool>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn commit_batch(
        &self,
        _: Vec<sms_consent::ports::LedgerWrite>,
    ) -> Result<Vec<sms_consent::ports::CommitOutcome>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn link(&self, _: &str) -> Result<Option<sms_consent::ports::LinkItem>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn put_link(&self, _: &sms_consent::ports::LinkItem) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn wrapped_keys(&self) -> Result<Option<sms_consent::ports::WrappedKeys>, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn put_wrapped_keys_if_absent(
        &self,
        _: &sms_consent::ports::WrappedKeys,
    ) -> Result<sms_consent::ports::WrappedKeys, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    fn table(&self) -> &str {
        "broken"
    }
}

async fn serve_over_broken_store() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&config_text()).unwrap();
    let keyring = LocalKeyring::open_or_create(dir.path()).unwrap();
    let wrapped = Crypto::generate_keys(&keyring).await.unwrap();
    let crypto = Crypto::start(Arc::new(keyring), &wrapped, "broken", CacheLimits::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = config;
    config.server.public_base_url = Some(base.clone());
    let parts = Parts {
        store: Arc::new(BrokenStore),
        crypto,
        clock: Arc::new(SystemClock),
        sns_network: Arc::new(sms_consent::providers::aws_sns::HttpSnsNetwork::new()),
        auth: sms_consent::http::auth::Authenticator::api_keys(&config.api_keys),
    };
    let (_, app) = build(&config, Role::All, parts).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, dir)
}

#[tokio::test]
async fn a_stop_that_cannot_be_stored_gets_a_5xx_so_the_provider_retries() {
    let (base, _dir) = serve_over_broken_store().await;
    let params = twilio_params("SM0001", PATIENT, CLINIC, "STOP");
    let url = format!("{base}/webhooks/twilio");
    let signature = sms_consent::providers::twilio::sign(TWILIO_TOKEN, &url, &params);

    let response = http_client()
        .post(url)
        .header("X-Twilio-Signature", signature)
        .body(form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish())
        .send()
        .await
        .unwrap();

    let problem = assert_problem(response, 503).await;
    assert!(!problem["detail"].as_str().unwrap().contains("down"), "5xx bodies hide the cause");
}

#[tokio::test]
async fn authorization_denies_when_the_store_is_down() {
    let (base, _dir) = serve_over_broken_store().await;

    let response = http_client()
        .post(format!("{base}/v1/authorizations"))
        .bearer_auth(AUTHORIZE_KEY)
        .json(&json!({ "to": PATIENT, "program": "clinic", "category": "billing" }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let decision: serde_json::Value = response.json().await.unwrap();
    assert_eq!(decision, json!({ "allowed": false, "reason": "unavailable", "as_of": null }));
}
