//! One contract for every consent store: the same tests run against the
//! embedded store and against DynamoDB and KMS on moto (started by
//! `./scripts/test`; without it these tests fail, they never skip).

#[path = "api/helpers.rs"]
mod helpers;

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::AttributeValue;
use sms_consent::adapters::embedded::EmbeddedStore;
use sms_consent::adapters::local_keyring::LocalKeyring;
use sms_consent::config::Config;
use sms_consent::crypto::{CacheLimits, Crypto};
use sms_consent::domain::outbound::{OutboundMessage, SendError, Sent};
use sms_consent::domain::volume::{self, Cap};
use sms_consent::domain::{Intent, PhoneNumber, Reason};
use sms_consent::ports::{
    Clock, CommitOutcome, ConsentStore, DeliveryStatus, EventItem, LedgerWrite, OutboxItem, SendRecord, StateItem,
    StateRead, UsageItem,
};
use sms_consent::providers::{InboundMessage, ReplyStyle};
use sms_consent::runtime::backends::{Backends, Calls};
use sms_consent::service::outbox::{Attempt, Dispatch, OutboxSettings, OutboxWorker, Skip};
use sms_consent::service::{AuthorizationQuery, ConsentService, InboundOutcome};
use time::OffsetDateTime;

use helpers::{CLINIC, PATIENT};
const INLINE: ReplyStyle = ReplyStyle { inline: true, auto_reply_keywords: &[] };
const OUTBOX: ReplyStyle = ReplyStyle { inline: false, auto_reply_keywords: &[] };

const PROGRAMS: &str = r#"
[[programs]]
id = "clinic"
name = "Lakeside Reminders"
organization = "Lakeside Family Clinic"
numbers = ["+14155550100"]
help_contact = "555-0100"
frequency = "Msg frequency varies"
categories = ["appointment_reminders", "billing"]
default = "opted_in"
send_rules = []

[[programs]]
id = "pharmacy"
name = "Lakeside Pharmacy"
organization = "Lakeside Family Clinic"
numbers = ["+14155550200"]
help_contact = "555-0200"
frequency = "Up to 4 msgs/mo"
categories = ["refills"]
default = "no_consent"
send_rules = []

[[programs]]
id = "gated"
name = "Lakeside Visits"
organization = "Lakeside Family Clinic"
numbers = ["+14155550300"]
help_contact = "555-0300"
frequency = "Up to 3 msgs/wk"
categories = ["reminders"]
default = "opted_in"
send_rules = ["quiet_hours", "state_quiet_hours", "state_frequency", "healthcare_exemption"]

[[programs]]
id = "florida"
name = "Lakeside Billing"
organization = "Lakeside Family Clinic"
numbers = ["+14155550400"]
help_contact = "555-0400"
frequency = "Msg frequency varies"
categories = ["reminders"]
default = "opted_in"
send_rules = ["quiet_hours", "state_quiet_hours", "state_frequency"]
"#;

/// A clock the tests move forward.
pub struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

pub struct Harness {
    pub service: ConsentService,
    pub store: Arc<dyn ConsentStore>,
    /// Counted AWS calls (DynamoDB backend only).
    pub calls: Option<Calls>,
    pub table: String,
    pub clock: Arc<TestClock>,
    crypto: Arc<Crypto>,
    config: Config,
    /// The data directory of the embedded store (`None` on DynamoDB).
    embedded: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

fn config(extra: &str) -> Config {
    Config::from_toml(&format!("{extra}\n{PROGRAMS}")).unwrap()
}

fn test_clock() -> Arc<TestClock> {
    Arc::new(TestClock(Mutex::new(OffsetDateTime::now_utc())))
}

pub async fn embedded() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ConsentStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let keys = Arc::new(LocalKeyring::open_or_create(dir.path()).unwrap());
    let wrapped = Crypto::generate_keys(keys.as_ref()).await.unwrap();
    let wrapped = store.put_wrapped_keys_if_absent(&wrapped).await.unwrap();
    let crypto = Arc::new(Crypto::start(keys, &wrapped, store.table(), CacheLimits::default()).await.unwrap());
    let (config, clock) = (config(""), test_clock());
    let service = ConsentService::new(config.programs(), store.clone(), crypto.clone(), clock.clone());
    let embedded = Some(dir.path().to_owned());
    Harness { service, store, calls: None, table: "embedded".into(), clock, crypto, config, embedded, _dir: dir }
}

/// The moto endpoint `./scripts/test` started.
pub fn moto() -> String {
    std::env::var("SMS_CONSENT_TEST_MOTO").expect(
        "SMS_CONSENT_TEST_MOTO is not set: these tests need the moto server that ./scripts/test installs and starts",
    )
}

pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    format!("{prefix}-{}", hex::encode(bytes))
}

pub fn moto_config(table: &str, alias: &str) -> String {
    let endpoint = moto();
    format!(
        "[storage]\nbackend = \"dynamodb\"\ntable = \"{table}\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n\
         [keys]\nbackend = \"kms\"\nkey_id = \"{alias}\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n"
    )
}

pub async fn dynamodb() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let table = unique("contract");
    let config = config(&moto_config(&table, &format!("alias/{}", unique("contract"))));
    let backends = Backends::open(&config).await.unwrap();
    backends.provision(&config).await.unwrap();
    let crypto = Arc::new(backends.crypto(&config).await.unwrap());
    let clock = test_clock();
    let service = ConsentService::new(config.programs(), backends.store.clone(), crypto.clone(), clock.clone());
    let (store, calls) = (backends.store.clone(), Some(backends.calls.clone()));
    Harness { service, store, calls, table, clock, crypto, config, embedded: None, _dir: dir }
}

/// A provider's send API as the worker sees it, scripted: counts the calls
/// and keeps what each carried (a mock only to count; the real providers'
/// requests are tested against fakes of their APIs).
#[derive(Default)]
pub struct Scripted {
    /// Answers in order; once spent, every send is accepted.
    answers: Mutex<std::collections::VecDeque<Result<Sent, SendError>>>,
    /// (to, from, body) of each send.
    pub sent: Mutex<Vec<(String, Option<String>, String)>>,
    /// How long each send takes.
    delay: std::time::Duration,
}

impl Scripted {
    pub fn new(answers: Vec<Result<Sent, SendError>>) -> Arc<Self> {
        Arc::new(Scripted { answers: Mutex::new(answers.into()), ..Default::default() })
    }

    pub fn slow(delay: std::time::Duration) -> Arc<Self> {
        Arc::new(Scripted { delay, ..Default::default() })
    }

    pub fn calls(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    pub fn bodies(&self) -> Vec<String> {
        self.sent.lock().unwrap().iter().map(|(_, _, body)| body.clone()).collect()
    }
}

#[async_trait::async_trait]
impl Dispatch for Scripted {
    fn can_send(&self, provider: &str) -> bool {
        provider == "standard-webhooks"
    }

    async fn send(&self, _provider: &str, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        let record =
            (message.to.as_e164().to_owned(), message.from.map(|f| f.as_e164().to_owned()), message.body.to_owned());
        self.sent.lock().unwrap().push(record);
        tokio::time::sleep(self.delay).await;
        let n = self.calls();
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Ok(Sent { message_id: Some(format!("provider-{n}")) }))
    }
}

/// Fast retries for tests; the clock is the test's.
pub fn test_settings() -> OutboxSettings {
    OutboxSettings { max_attempts: 3, retry_initial: std::time::Duration::from_secs(1), ..OutboxSettings::default() }
}

/// The consent record of one number as the table holds it: its `data` JSON.
fn state_key(pid: &str) -> (String, String) {
    (format!("PHONE#{pid}"), "STATE".to_owned())
}

async fn raw_dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sms_consent::adapters::aws::sdk_config(Some("us-east-1"), Some(&moto())).await)
}

const ITEMS: redb::TableDefinition<(&str, &str), &[u8]> = redb::TableDefinition::new("items");

/// One change made with raw write access, behind the service's back.
pub enum Raw {
    Put { pk: String, sk: String, data: String },
    Delete { pk: String, sk: String },
}

pub fn sms(id: &str, from: &str, text: &str, at: Option<&str>) -> InboundMessage {
    InboundMessage {
        provider: "standard-webhooks",
        message_id: id.into(),
        from: PhoneNumber::parse(from).unwrap(),
        to: Some(PhoneNumber::parse(CLINIC).unwrap()),
        text: text.into(),
        occurred_at: at.map(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()),
        replay_key: None,
    }
}

impl Harness {
    /// Closes the embedded store and opens it again from its files (as a
    /// restart does); on DynamoDB there is nothing to reopen.
    pub async fn reopen(&mut self) {
        self.close_and(|_| ()).await;
    }

    /// With the embedded store closed, runs `f` on its data directory, then
    /// reopens the store (the keys stay: they do not depend on the handle).
    async fn close_and<R>(&mut self, f: impl FnOnce(&std::path::Path) -> R) -> R {
        let Some(dir) = self.embedded.clone() else {
            return f(std::path::Path::new(""));
        };
        // A store that is never called stands in while the file is closed.
        let idle: Arc<dyn ConsentStore> = Arc::new(sms_consent::adapters::dynamodb::DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(aws_sdk_dynamodb::Config::builder().behavior_version_latest().build()),
            "closed",
        ));
        self.service =
            ConsentService::new(self.config.programs(), idle.clone(), self.crypto.clone(), self.clock.clone());
        self.store = idle;
        let out = f(&dir);
        let store: Arc<dyn ConsentStore> = Arc::new(EmbeddedStore::open(&dir).unwrap());
        self.service =
            ConsentService::new(self.config.programs(), store.clone(), self.crypto.clone(), self.clock.clone());
        self.store = store;
        out
    }

    /// The `data` of one raw item.
    pub async fn raw_get(&mut self, pk: &str, sk: &str) -> Option<String> {
        if self.embedded.is_none() {
            let key = std::collections::HashMap::from([
                ("PK".to_owned(), AttributeValue::S(pk.into())),
                ("SK".to_owned(), AttributeValue::S(sk.into())),
            ]);
            let out = raw_dynamodb().await.get_item().table_name(&self.table).set_key(Some(key)).send().await.unwrap();
            return out.item().map(|item| item["data"].as_s().unwrap().clone());
        }
        self.close_and(|dir| {
            let db = redb::Database::open(dir.join("ledger.redb")).unwrap();
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(ITEMS).unwrap();
            let value = table.get((pk, sk)).unwrap().map(|v| String::from_utf8(v.value().to_vec()).unwrap());
            value
        })
        .await
    }

    /// Applies raw changes, as someone with write access to the table.
    pub async fn raw(&mut self, changes: Vec<Raw>) {
        if self.embedded.is_none() {
            let client = raw_dynamodb().await;
            for change in changes {
                match change {
                    Raw::Put { pk, sk, data } => {
                        let version: serde_json::Value = serde_json::from_str(&data).unwrap();
                        let mut put = client
                            .put_item()
                            .table_name(&self.table)
                            .item("PK", AttributeValue::S(pk))
                            .item("SK", AttributeValue::S(sk))
                            .item("data", AttributeValue::S(data.clone()));
                        if let Some(v) = version.get("version").and_then(|v| v.as_u64()) {
                            put = put.item("version", AttributeValue::N(v.to_string()));
                        }
                        put.send().await.unwrap();
                    }
                    Raw::Delete { pk, sk } => {
                        client
                            .delete_item()
                            .table_name(&self.table)
                            .key("PK", AttributeValue::S(pk))
                            .key("SK", AttributeValue::S(sk))
                            .send()
                            .await
                            .unwrap();
                    }
                }
            }
            return;
        }
        self.close_and(|dir| {
            let db = redb::Database::open(dir.join("ledger.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(ITEMS).unwrap();
                for change in changes {
                    match change {
                        Raw::Put { pk, sk, data } => {
                            table.insert((pk.as_str(), sk.as_str()), data.as_bytes()).unwrap();
                        }
                        Raw::Delete { pk, sk } => {
                            table.remove((pk.as_str(), sk.as_str())).unwrap();
                        }
                    }
                }
            }
            txn.commit().unwrap();
        })
        .await
    }

    pub fn alarms(&self) -> u64 {
        self.service.counters.integrity_alarms.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn reasons(&self, numbers: &[&str]) -> Vec<Reason> {
        let queries: Vec<AuthorizationQuery> =
            numbers.iter().map(|to| AuthorizationQuery { to, program: "clinic", category: "billing" }).collect();
        self.service.authorize_many(&queries).await.into_iter().map(|d| d.reason).collect()
    }

    pub async fn reason(&self, to: &str) -> Reason {
        self.service.authorize(&AuthorizationQuery { to, program: "clinic", category: "billing" }).await.reason
    }

    pub async fn ledger_len(&self, number: &str) -> usize {
        self.service.events(&PhoneNumber::parse(number).unwrap()).await.unwrap().len()
    }

    pub fn pid(&self, number: &str) -> String {
        self.service.crypto().blind_index(&PhoneNumber::parse(number).unwrap())
    }

    /// A worker over this harness's store, as another process would run one.
    pub fn worker(&self, dispatch: Arc<dyn Dispatch>, settings: OutboxSettings) -> OutboxWorker {
        let service =
            ConsentService::new(self.config.programs(), self.store.clone(), self.crypto.clone(), self.clock.clone());
        OutboxWorker::new(Arc::new(service), dispatch, settings)
    }

    /// The one outbox item of an event of `PATIENT`'s.
    pub async fn reply(&self, message_id: &str) -> OutboxItem {
        let id = format!("standard-webhooks:{message_id}");
        self.store.outbox_item(&self.pid(PATIENT), &id).await.unwrap().expect("the outbox item is there")
    }

    /// The stored STATE of a number, which must be there.
    pub async fn state(&self, number: &str) -> StateItem {
        match self.store.read_state(&self.pid(number)).await.unwrap() {
            StateRead::Found(state) => state,
            other => panic!("no STATE: {other:?}"),
        }
    }
}

macro_rules! contract {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn a_repeated_delivery_is_recorded_once() {
                let h = super::$backend().await;
                let first = h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                let again = h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                assert!(matches!(first, InboundOutcome::Recorded { intent: Intent::OptOut, reply: Some(_), .. }));
                assert_eq!(again, InboundOutcome::Duplicate);
                assert_eq!(h.ledger_len(PATIENT).await, 1);
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut);
            }

            #[tokio::test]
            async fn a_preference_link_is_stored_once_opens_its_number_and_expires() {
                use sms_consent::service::preferences::LinkError;
                let mut h = super::$backend().await;
                let (token, _) =
                    h.service.make_preference_link(PATIENT, "clinic", time::Duration::days(1), "test").await.unwrap();
                let link = h.service.open_link(&token).await.unwrap();
                assert_eq!((link.number.as_e164(), link.program.as_str()), (PATIENT, "clinic"));
                let hash = link.id.hash();
                let stored = h.store.link(&hash).await.unwrap().unwrap();
                assert_eq!(stored.pid, h.pid(PATIENT));
                assert!(!h.store.put_link(&stored).await.unwrap(), "never overwritten");
                assert!(h.store.link("no-such-hash").await.unwrap().is_none());
                let raw = h.raw_get(&format!("LINK#{hash}"), "-").await.unwrap();
                assert!(!raw.contains(&PATIENT[2..]), "the number is sealed at rest");
                h.clock.advance(time::Duration::days(1));
                assert!(matches!(h.service.open_link(&token).await, Err(LinkError::Expired)));
            }

            #[tokio::test]
            async fn event_time_orders_and_an_opt_out_wins_a_tie() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("start", PATIENT, "START", Some("2026-03-01T10:05:00Z")), INLINE).await.unwrap();
                h.service.handle_inbound(&sms("stop", PATIENT, "STOP", Some("2026-03-01T10:00:00Z")), INLINE).await.unwrap();
                assert_eq!(h.reason(PATIENT).await, Reason::Allowed);
                h.service.handle_inbound(&sms("tie", PATIENT, "STOP", Some("2026-03-01T10:05:00Z")), INLINE).await.unwrap();
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut);
                assert_eq!(h.ledger_len(PATIENT).await, 3);
            }

            #[tokio::test]
            async fn concurrent_deliveries_for_one_number_converge() {
                let h = Arc::new(super::$backend().await);
                let mut tasks = Vec::new();
                for i in 0..16u32 {
                    let h = h.clone();
                    tasks.push(tokio::spawn(async move {
                        let text = if i % 2 == 0 { "STOP" } else { "START" };
                        let at = format!("2026-03-01T10:{i:02}:00Z");
                        h.service.handle_inbound(&sms(&format!("m{i}"), PATIENT, text, Some(&at)), INLINE).await.unwrap()
                    }));
                }
                for task in tasks {
                    assert!(matches!(task.await.unwrap(), InboundOutcome::Recorded { .. }));
                }
                // m15 (START at 10:15) is the latest event.
                let decision = h.service.authorize(&AuthorizationQuery { to: PATIENT, program: "clinic", category: "billing" }).await;
                assert_eq!(decision.reason, Reason::Allowed);
                assert_eq!(decision.as_of, Some(time::macros::datetime!(2026-03-01 10:15 UTC)));
                assert_eq!(h.ledger_len(PATIENT).await, 16);
            }

            #[tokio::test]
            async fn a_batch_read_answers_in_the_order_asked() {
                let h = super::$backend().await;
                let others = ["+14158675310", "+14158675311"];
                h.service.handle_inbound(&sms("a", PATIENT, "STOP", None), INLINE).await.unwrap();
                h.service.handle_inbound(&sms("b", others[1], "START", None), INLINE).await.unwrap();
                let pids = vec![h.pid(others[1]), h.pid(others[0]), h.pid(PATIENT), h.pid(others[1])];
                let states = h.store.get_states(&pids).await.unwrap();
                assert_eq!(states.len(), 4);
                assert!(states[0].is_some() && states[1].is_none() && states[2].is_some() && states[3].is_some());
                assert_eq!(states[2].as_ref().unwrap().pid, h.pid(PATIENT));
                let many: Vec<String> = (0..100).map(|i| h.pid(&format!("+1415555{i:04}"))).collect();
                assert_eq!(h.store.get_states(&many).await.unwrap().len(), 100);
            }

            #[tokio::test]
            async fn a_state_rewritten_without_its_tag_denies_as_unavailable() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                let pid = h.pid(PATIENT);
                let mut state = h.state(PATIENT).await;
                let event = h.store.events(&pid).await.unwrap().remove(0);
                // Raw write access: flip the opt-out, keep the old tag.
                state.consent.marks.values_mut().for_each(|m| m.consent = sms_consent::domain::Consent::OptIn);
                let expected = Some(state.version);
                state.version += 1;
                let write = LedgerWrite {
                    dedup_key: "DEDUP#tamper#1".into(),
                    extra_dedup_keys: Vec::new(),
                    event,
                    outbox: None,
                    state: Some(state),
                    expected_version: expected,
                    initial_state: None,
                    review: None,
                    close_reviews: Vec::new(),
                    audit: None,
                };
                h.store.commit(write).await.unwrap();
                assert_eq!(h.reason(PATIENT).await, Reason::Unavailable);
                assert!(h.service.handle_inbound(&sms("m2", PATIENT, "START", None), INLINE).await.is_err());
            }

            #[tokio::test]
            async fn a_reply_that_cannot_go_inline_is_written_to_the_outbox_once() {
                let h = super::$backend().await;
                let outcome = h.service.handle_inbound(&sms("m1", PATIENT, "HELP", None), OUTBOX).await.unwrap();
                h.service.handle_inbound(&sms("m1", PATIENT, "HELP", None), OUTBOX).await.unwrap();
                assert!(matches!(outcome, InboundOutcome::Recorded { reply: None, outboxed: true, .. }));
                let outbox = h.service.outbox(&PhoneNumber::parse(PATIENT).unwrap()).await.unwrap();
                assert_eq!(outbox.len(), 1);
                assert!(outbox[0].body.contains("Help at 555-0100"));
                assert!(!outbox[0].to.as_deref().unwrap().contains("4158675309"), "the recipient is sealed");
            }

            #[tokio::test]
            async fn outbox_items_change_by_compare_and_set_and_only_pending_due_ones_are_listed() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "HELP", None), OUTBOX).await.unwrap();
                let (pid, id) = (h.pid(PATIENT), "standard-webhooks:m1".to_owned());
                let key = (pid.clone(), id.clone());
                let now = h.clock.now();
                let minute = time::Duration::minutes(1);
                assert!(h.store.due_outbox(now, 100).await.unwrap().contains(&key));
                let item = h.reply("m1").await;
                assert_eq!((item.delivery.status, item.delivery.revision), (DeliveryStatus::Pending, 0));
                assert_eq!(item.program.as_deref(), Some("clinic"));
                let mut later = item.clone();
                later.delivery.revision = 1;
                later.delivery.next_attempt_at = Some(now + minute);
                assert!(h.store.update_outbox(&later, 0).await.unwrap());
                assert!(!h.store.update_outbox(&later, 0).await.unwrap(), "a stale revision writes nothing");
                assert!(!h.store.due_outbox(now, 100).await.unwrap().contains(&key), "not due before its next attempt");
                assert!(h.store.due_outbox(now + 2 * minute, 100).await.unwrap().contains(&key));
                let mut done = later.clone();
                done.delivery.revision = 2;
                done.delivery.status = DeliveryStatus::Sent;
                assert!(h.store.update_outbox(&done, 1).await.unwrap());
                assert!(!h.store.due_outbox(now + 2 * minute, 100).await.unwrap().contains(&key), "a sent reply is not due");
                assert_eq!(h.reply("m1").await, done);
                let mut stranger = done.clone();
                stranger.event_id = "standard-webhooks:none".into();
                assert!(!h.store.update_outbox(&stranger, 2).await.unwrap(), "no item, no write");
                assert!(h.store.outbox_item(&pid, "standard-webhooks:none").await.unwrap().is_none());
            }

            #[tokio::test]
            async fn a_reply_is_sent_once_with_its_numbers_and_a_second_worker_finds_it_done() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "HELP", None), OUTBOX).await.unwrap();
                let dispatch = Scripted::new(vec![]);
                assert_eq!(h.worker(dispatch.clone(), test_settings()).run_due(100).await.unwrap(), 1);
                assert_eq!(h.worker(dispatch.clone(), test_settings()).run_due(100).await.unwrap(), 0, "a restarted worker");
                let sent = dispatch.sent.lock().unwrap().clone();
                assert_eq!(sent.len(), 1);
                assert_eq!((sent[0].0.as_str(), sent[0].1.as_deref()), (PATIENT, Some(CLINIC)));
                assert!(sent[0].2.contains("Help at 555-0100"));
                let item = h.reply("m1").await;
                assert_eq!(item.delivery.status, DeliveryStatus::Sent);
                assert_eq!(item.delivery.provider_message_id.as_deref(), Some("provider-1"));
                assert_eq!(item.delivery.attempts, 1);
                assert!(item.delivery.finished_at.is_some() && item.delivery.lease_owner.is_none());
            }

            #[tokio::test]
            async fn two_workers_racing_for_one_reply_send_it_once() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), OUTBOX).await.unwrap();
                let dispatch = Scripted::slow(std::time::Duration::from_millis(300));
                let (a, b) = (h.worker(dispatch.clone(), test_settings()), h.worker(dispatch.clone(), test_settings()));
                let pid = h.pid(PATIENT);
                let (x, y) = tokio::join!(a.deliver(&pid, "standard-webhooks:m1"), b.deliver(&pid, "standard-webhooks:m1"));
                let mut outcomes = [x.unwrap(), y.unwrap()];
                outcomes.sort_by_key(|o| format!("{o:?}"));
                assert!(matches!(outcomes[0], Attempt::Finished(DeliveryStatus::Sent)), "{outcomes:?}");
                assert!(matches!(outcomes[1], Attempt::Skipped(Skip::Busy { .. })), "{outcomes:?}");
                assert_eq!(dispatch.calls(), 1);
            }

            #[tokio::test]
            async fn temporary_failures_back_off_respect_retry_after_and_end_as_failed() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), OUTBOX).await.unwrap();
                let temporary = |after: Option<u64>| Err(SendError::Temporary {
                    reason: "the provider answered 503".into(),
                    retry_after: after.map(std::time::Duration::from_secs),
                });
                let dispatch = Scripted::new(vec![temporary(Some(30)), temporary(None), temporary(None)]);
                let worker = h.worker(dispatch.clone(), test_settings());
                let (pid, id) = (h.pid(PATIENT), "standard-webhooks:m1");
                let start = h.clock.now();
                let Attempt::Retry { at } = worker.deliver(&pid, id).await.unwrap() else { panic!("a retry") };
                assert!(at >= start + time::Duration::seconds(30), "Retry-After is respected");
                assert!(matches!(worker.deliver(&pid, id).await.unwrap(), Attempt::Skipped(Skip::NotDue { .. })));
                let item = h.reply("m1").await;
                assert_eq!((item.delivery.status, item.delivery.attempts), (DeliveryStatus::Pending, 1));
                assert_eq!(item.delivery.error.as_deref(), Some("the provider answered 503"));
                h.clock.advance(time::Duration::seconds(31));
                let Attempt::Retry { at } = worker.deliver(&pid, id).await.unwrap() else { panic!("a retry") };
                let wait = at - h.clock.now();
                assert!(wait >= time::Duration::seconds(1) && wait <= time::Duration::seconds(2), "backoff {wait}");
                h.clock.advance(time::Duration::seconds(3));
                assert_eq!(worker.deliver(&pid, id).await.unwrap(), Attempt::Finished(DeliveryStatus::Failed));
                let item = h.reply("m1").await;
                assert_eq!((item.delivery.status, item.delivery.attempts), (DeliveryStatus::Failed, 3));
                assert!(item.delivery.error.as_deref().unwrap().starts_with("gave up after 3 attempts"));
                assert_eq!(dispatch.calls(), 3);
                assert_eq!(worker.run_due(100).await.unwrap(), 0, "a failed reply is not tried again");
            }

            #[tokio::test]
            async fn a_refusal_fails_the_reply_and_an_opted_out_answer_records_a_provider_block() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("help", PATIENT, "HELP", None), OUTBOX).await.unwrap();
                let refused = Err(SendError::refused("the provider answered 400: invalid sender"));
                let dispatch = Scripted::new(vec![refused]);
                h.worker(dispatch.clone(), test_settings()).run_due(100).await.unwrap();
                let item = h.reply("help").await;
                assert_eq!(item.delivery.status, DeliveryStatus::Failed);
                assert!(item.delivery.error.as_deref().unwrap().contains("invalid sender"));
                assert_eq!(h.reason(PATIENT).await, Reason::Allowed, "a refusal is not an opt-out");

                h.clock.advance(time::Duration::seconds(1));
                h.service.handle_inbound(&sms("start", PATIENT, "START", None), OUTBOX).await.unwrap();
                let blocked = Err(SendError::OptedOut { code: "21610".into(), reason: "unsubscribed recipient".into() });
                h.worker(Scripted::new(vec![blocked]), test_settings()).run_due(100).await.unwrap();
                assert_eq!(h.reply("start").await.delivery.status, DeliveryStatus::Failed);
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut, "the provider's opt-out denies from now on");
                let events = h.service.events(&PhoneNumber::parse(PATIENT).unwrap()).await.unwrap();
                let block = events.iter().find(|e| e.source == "provider_block").expect("a provider_block event");
                assert_eq!(block.kind, "opt_out");
                assert_eq!(block.code.as_deref(), Some("standard-webhooks:21610"));
                assert_eq!(block.program.as_deref(), Some("clinic"));
            }

            #[tokio::test]
            async fn a_stale_opt_in_reply_is_superseded_by_a_later_stop_but_help_after_a_stop_is_answered() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("start", PATIENT, "START", Some("2026-03-01T10:00:00Z")), OUTBOX).await.unwrap();
                h.service.handle_inbound(&sms("stop", PATIENT, "STOP", Some("2026-03-01T10:01:00Z")), OUTBOX).await.unwrap();
                h.service.handle_inbound(&sms("help", PATIENT, "HELP", Some("2026-03-01T10:02:00Z")), OUTBOX).await.unwrap();
                let dispatch = Scripted::new(vec![]);
                h.worker(dispatch.clone(), test_settings()).run_due(100).await.unwrap();
                let start = h.reply("start").await;
                assert_eq!(start.delivery.status, DeliveryStatus::Superseded);
                assert_eq!(start.delivery.error.as_deref(), Some("a later opt-out arrived before it was sent"));
                assert_eq!(h.reply("stop").await.delivery.status, DeliveryStatus::Sent);
                assert_eq!(h.reply("help").await.delivery.status, DeliveryStatus::Sent);
                let bodies = dispatch.bodies();
                assert_eq!(bodies.len(), 2);
                assert!(bodies.iter().all(|b| !b.contains("resubscribed")), "{bodies:?}");
            }

            #[tokio::test]
            async fn a_reply_past_its_moment_expires_unsent() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), OUTBOX).await.unwrap();
                h.clock.advance(time::Duration::minutes(6));
                let dispatch = Scripted::new(vec![]);
                h.worker(dispatch.clone(), test_settings()).run_due(100).await.unwrap();
                let item = h.reply("m1").await;
                assert_eq!(item.delivery.status, DeliveryStatus::Expired);
                assert_eq!(item.delivery.error.as_deref(), Some("not sent within 300 s of the event"));
                assert_eq!(dispatch.calls(), 0);
            }

            #[tokio::test]
            async fn erasure_deletes_pending_replies_and_keeps_sent_ones_without_the_numbers() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "HELP", None), OUTBOX).await.unwrap();
                h.worker(Scripted::new(vec![]), test_settings()).run_due(100).await.unwrap();
                h.service.handle_inbound(&sms("m2", PATIENT, "HELP", None), OUTBOX).await.unwrap();
                h.service.erase(PATIENT, "dpo").await.unwrap();
                let outbox = h.service.outbox(&PhoneNumber::parse(PATIENT).unwrap()).await.unwrap();
                assert_eq!(outbox.len(), 1, "the pending reply is gone");
                assert_eq!(outbox[0].event_id, "standard-webhooks:m1");
                assert_eq!(outbox[0].delivery.status, DeliveryStatus::Sent);
                assert!(outbox[0].to.is_none() && outbox[0].from.is_none());
                assert!(h.store.due_outbox(h.clock.now(), 100).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn the_history_shows_what_became_of_each_reply() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "HELP", None), OUTBOX).await.unwrap();
                h.worker(Scripted::new(vec![]), test_settings()).run_due(100).await.unwrap();
                h.service.handle_inbound(&sms("m2", PATIENT, "STOP", None), OUTBOX).await.unwrap();
                h.service.handle_inbound(&sms("m3", PATIENT, "START", None), INLINE).await.unwrap();
                let (page, _) = h.service.history(PATIENT, None, "auditor").await.unwrap();
                let reply = |id: &str| page.iter().find(|e| e.event.event_id == format!("standard-webhooks:{id}")).unwrap().reply.clone();
                let sent = reply("m1").expect("the HELP reply");
                assert_eq!((sent.delivery.status, sent.delivery.provider_message_id.as_deref()), (DeliveryStatus::Sent, Some("provider-1")));
                assert_eq!(reply("m2").expect("the STOP reply").delivery.status, DeliveryStatus::Pending);
                assert!(reply("m3").is_none(), "an inline reply has no outbox record");
            }

            #[tokio::test]
            async fn a_ciphertext_copied_onto_another_record_fails_to_open() {
                let h = super::$backend().await;
                let crypto = h.service.crypto();
                let sealed = crypto.seal(PATIENT, "PHONE#a", "STATE", "phone").await.unwrap();
                assert_eq!(crypto.open(&sealed, "PHONE#a", "STATE", "phone").await.unwrap(), PATIENT);
                assert!(crypto.open(&sealed, "PHONE#b", "STATE", "phone").await.is_err());
                assert!(crypto.open(&sealed, "PHONE#a", "EVENT#x", "phone").await.is_err());
            }

            #[tokio::test]
            async fn the_first_wrapped_keys_stored_are_kept() {
                let h = super::$backend().await;
                let kept = h.store.wrapped_keys().await.unwrap().unwrap();
                let mut other = kept.clone();
                other.index_key = "b3RoZXI=".into();
                assert_eq!(h.store.put_wrapped_keys_if_absent(&other).await.unwrap(), kept);
            }

            #[tokio::test]
            async fn a_batch_authorization_is_one_store_call() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP ALL", None), INLINE).await.unwrap();
                let numbers: Vec<String> = (0..100).map(|i| format!("+1415555{i:04}")).chain([PATIENT.to_owned()]).skip(1).collect();
                // A program whose default is no consent: a missing STATE denies without a further read.
                let queries: Vec<AuthorizationQuery> = numbers.iter().map(|to| AuthorizationQuery { to, program: "pharmacy", category: "refills" }).collect();
                let before = h.calls.as_ref().map(|c| (c.dynamodb.count(), c.kms.count()));
                let decisions = h.service.authorize_many(&queries).await;
                assert_eq!(decisions.len(), 100);
                assert_eq!(decisions[99].reason, Reason::OptedOut);
                assert!(decisions[..99].iter().all(|d| d.reason == Reason::NoConsent));
                if let (Some(calls), Some((dynamodb, kms))) = (&h.calls, before) {
                    assert_eq!(calls.dynamodb.count() - dynamodb, 1, "one BatchGetItem");
                    assert_eq!(calls.kms.count() - kms, 0);
                }
            }

            #[tokio::test]
            async fn a_single_authorization_is_one_read_whatever_the_state() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP ALL", None), INLINE).await.unwrap();
                let count = || h.calls.as_ref().map(|c| (c.dynamodb.count(), c.kms.count()));
                let cost = |before: Option<(usize, usize)>| count().zip(before).map(|((d, k), (d0, k0))| (d - d0, k - k0));
                let before = count();
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut);
                let stored = cost(before);
                let before = count();
                assert_eq!(h.reason("+14158675399").await, Reason::Allowed);
                let missing_opted_in = cost(before);
                let before = count();
                let query = AuthorizationQuery { to: "+14158675399", program: "pharmacy", category: "refills" };
                assert_eq!(h.service.authorize(&query).await.reason, Reason::NoConsent);
                let missing_no_consent = cost(before);
                let before = count();
                assert_eq!(h.reasons(&[PATIENT, "+14158675398", "+14158675397"]).await, [Reason::OptedOut, Reason::Allowed, Reason::Allowed]);
                let batch = cost(before);
                if h.calls.is_some() {
                    assert_eq!(stored, Some((1, 0)), "a stored STATE: one Query");
                    assert_eq!(missing_opted_in, Some((1, 0)), "no STATE, opted-in program: one Query");
                    assert_eq!(missing_no_consent, Some((1, 0)), "no STATE, no-consent program: one Query");
                    assert_eq!(batch, Some((3, 0)), "one BatchGetItem and a Query per missing number");
                }
                assert_eq!(h.alarms(), 0);
            }

            #[tokio::test]
            async fn one_read_tells_a_state_a_new_number_and_a_deleted_state_apart() {
                let mut h = super::$backend().await;
                let (new, other) = ("+14158675399", "+14158675310");
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), OUTBOX).await.unwrap();
                h.service.handle_inbound(&sms("m2", other, "HELP", None), INLINE).await.unwrap();
                assert_eq!(h.store.read_state(&h.pid(new)).await.unwrap(), StateRead::Absent);
                assert!(matches!(h.store.read_state(&h.pid(PATIENT)).await.unwrap(), StateRead::Found(s) if s.version == 1));
                assert!(matches!(h.store.read_state(&h.pid(other)).await.unwrap(), StateRead::Found(s) if s.consent.is_empty()));
                // Delete the STATE of a number whose newest other item is an
                // outbox item, and of one with only an event (and markers).
                for number in [PATIENT, other] {
                    let (pk, sk) = state_key(&h.pid(number));
                    h.raw(vec![Raw::Delete { pk, sk }]).await;
                    assert_eq!(h.store.read_state(&h.pid(number)).await.unwrap(), StateRead::MissingWithHistory);
                }
                assert_eq!(h.store.read_state(&h.pid(new)).await.unwrap(), StateRead::Absent);
            }

            #[tokio::test]
            async fn records_history_and_erasure_behave_alike() {
                use sms_consent::service::records::{CaptureSource, ConsentRecord, RecordKind, RecordOutcome};
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "Stop. Thank you", Some("2026-03-01T10:00:00Z")), OUTBOX).await.unwrap();
                let record = ConsentRecord {
                    to: PATIENT, program: "clinic", categories: None, kind: RecordKind::ExpressWritten, source: CaptureSource::WebForm,
                    captured_at: time::macros::datetime!(2026-03-02 10:00 UTC), evidence: Some("form-9"), id: Some("r1"),
                };
                assert!(matches!(h.service.record_consent(&record, "tester").await.unwrap(), RecordOutcome::Recorded { .. }));
                assert!(matches!(h.service.record_consent(&record, "tester").await.unwrap(), RecordOutcome::Duplicate { .. }));
                assert_eq!(h.reason(PATIENT).await, Reason::Allowed);

                let (page, _) = h.service.history(PATIENT, None, "auditor").await.unwrap();
                let kinds: Vec<&str> = page.iter().map(|e| e.event.kind.as_str()).collect();
                assert_eq!(kinds, ["history_read", "consent_express_written", "opt_out"]);
                assert_eq!(page[1].evidence.as_deref(), Some("form-9"));
                assert_eq!(page[2].text.as_deref(), Some("Stop. Thank you"));

                let revocation = ConsentRecord { kind: RecordKind::Revocation, source: CaptureSource::PhoneCall, id: Some("r2"),
                    captured_at: time::macros::datetime!(2026-03-03 10:00 UTC), ..record };
                h.service.record_consent(&revocation, "tester").await.unwrap();
                assert_eq!(h.service.erase(PATIENT, "dpo").await.unwrap(), 3, "the text and two evidence references");
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut, "erasure keeps the suppression");
                let state = h.state(PATIENT).await;
                assert!(state.phone.is_none());
                assert!(h.service.outbox(&PhoneNumber::parse(PATIENT).unwrap()).await.unwrap().is_empty());
                let (page, _) = h.service.history(PATIENT, None, "auditor").await.unwrap();
                assert!(page.iter().all(|e| e.text.is_none() && e.evidence.is_none()));
                assert_eq!(page.iter().filter(|e| e.event.kind == "erasure").count(), 1);
            }

            #[tokio::test]
            async fn an_event_that_changes_no_consent_is_one_read_and_one_write() {
                // Under the chain every event takes the next link, so HELP reads
                // the STATE (its head) as STOP and START do.
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "HELP", None), INLINE).await.unwrap();
                let before = h.calls.as_ref().map(|c| (c.dynamodb.count(), c.kms.count()));
                h.service.handle_inbound(&sms("m2", PATIENT, "HELP", None), INLINE).await.unwrap();
                if let (Some(calls), Some((before, kms))) = (&h.calls, before) {
                    assert_eq!(calls.dynamodb.count() - before, 2, "one Query of the STATE, one TransactWriteItems");
                    assert_eq!(calls.kms.count() - kms, 0, "the text's data key is cached");
                }
                assert_eq!(h.ledger_len(PATIENT).await, 2);
            }

            #[tokio::test]
            async fn authorization_makes_one_store_call_and_no_key_call() {
                let h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                let before = h.calls.as_ref().map(|c| (c.dynamodb.count(), c.kms.count()));
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut);
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut);
                if let (Some(calls), Some((dynamodb, kms))) = (&h.calls, before) {
                    assert_eq!(calls.dynamodb.count() - dynamodb, 2, "one consistent read (Query, Limit 1) per authorization");
                    assert_eq!(calls.kms.count() - kms, 0, "no KMS call on the authorization path");
                }
                assert!(!h.table.is_empty());
            }

            #[tokio::test]
            async fn a_start_replayed_after_31_days_is_still_a_duplicate() {
                // Twilio and Plivo sign no timestamp: the event time is the arrival time.
                let mut h = super::$backend().await;
                let start = sms("captured-start", PATIENT, "START", None);
                h.service.handle_inbound(&start, INLINE).await.unwrap();
                h.clock.advance(time::Duration::hours(1));
                h.service.handle_inbound(&sms("later-stop", PATIENT, "STOP", None), INLINE).await.unwrap();
                h.clock.advance(time::Duration::days(31));
                h.reopen().await;
                assert_eq!(h.service.handle_inbound(&start, INLINE).await.unwrap(), InboundOutcome::Duplicate);
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut);
                assert_eq!(h.ledger_len(PATIENT).await, 2);
            }

            #[tokio::test]
            async fn every_extra_dedup_key_is_written_and_any_known_one_is_a_duplicate() {
                let h = super::$backend().await;
                let pid = h.pid(PATIENT);
                let at = OffsetDateTime::now_utc();
                let write = |dedup: &str, extra: &[&str]| LedgerWrite {
                    dedup_key: format!("DEDUP#test#{dedup}"),
                    extra_dedup_keys: extra.iter().map(|k| format!("DEDUP#nonce#{k}")).collect(),
                    event: EventItem {
                        pid: pid.clone(), event_id: format!("test:{dedup}"), kind: "help".into(), source: "test".into(),
                        program: None, categories: Vec::new(), text: None, evidence: None, caller: None,
                        code: None, signature_verified: true, occurred_at: at, received_at: at, link: None,
                    },
                    outbox: None,
                    state: None,
                    expected_version: None,
                    initial_state: None,
                    review: None,
                    close_reviews: Vec::new(),
                    audit: None,
                };
                assert_eq!(h.store.commit(write("a", &["n1"])).await.unwrap(), CommitOutcome::Committed);
                assert_eq!(h.store.commit(write("b", &["n1"])).await.unwrap(), CommitOutcome::Duplicate, "a known nonce");
                assert_eq!(h.store.commit(write("c", &["n2", "n3"])).await.unwrap(), CommitOutcome::Committed);
                assert_eq!(h.store.commit(write("d", &["n4", "n3"])).await.unwrap(), CommitOutcome::Duplicate, "the second nonce was written too");
                assert_eq!(h.store.commit(write("a", &["n5"])).await.unwrap(), CommitOutcome::Duplicate, "a known id");
                assert_eq!(h.store.commit(write("e", &["n4"])).await.unwrap(), CommitOutcome::Committed, "nothing of a refused write was kept");
                let ids: Vec<String> = h.store.events(&pid).await.unwrap().into_iter().map(|e| e.event_id).collect();
                assert_eq!(ids.len(), 3);
                assert!(ids.iter().all(|id| ["test:a", "test:c", "test:e"].contains(&id.as_str())));
            }

            #[tokio::test]
            async fn a_state_put_back_to_an_older_version_fails_the_next_write() {
                let mut h = super::$backend().await;
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                let (pk, sk) = state_key(&h.pid(PATIENT));
                let opted_out = h.raw_get(&pk, &sk).await.unwrap();
                h.clock.advance(time::Duration::minutes(1));
                h.service.handle_inbound(&sms("m2", PATIENT, "START", None), INLINE).await.unwrap();
                h.clock.advance(time::Duration::minutes(1));
                h.service.handle_inbound(&sms("m3", PATIENT, "STOP", None), INLINE).await.unwrap();
                let v3 = h.raw_get(&pk, &sk).await.unwrap();
                assert!(v3.contains(r#""version":3"#), "{v3}");
                // Put version 1 back: the next write would make a second version 2.
                h.raw(vec![Raw::Put { pk: pk.clone(), sk: sk.clone(), data: opted_out }]).await;
                h.clock.advance(time::Duration::minutes(1));
                let result = h.service.handle_inbound(&sms("m4", PATIENT, "START", None), INLINE).await;
                assert!(matches!(result, Err(sms_consent::service::ServiceError::Integrity)), "{result:?}");
                assert_eq!(h.alarms(), 1);
                // Nothing of the refused write was kept: the same delivery after a repair is new.
                h.raw(vec![Raw::Put { pk: pk.clone(), sk: sk.clone(), data: v3 }]).await;
                assert!(matches!(h.service.handle_inbound(&sms("m4", PATIENT, "START", None), INLINE).await.unwrap(), InboundOutcome::Recorded { .. }));
                assert_eq!(h.reason(PATIENT).await, Reason::Allowed);
            }

            #[tokio::test]
            async fn a_deleted_state_of_a_number_with_events_denies_and_raises_an_alarm() {
                let mut h = super::$backend().await;
                let other = "+14158675310";
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                let (pk, sk) = state_key(&h.pid(PATIENT));
                h.raw(vec![Raw::Delete { pk, sk }]).await;
                assert_eq!(h.reason(PATIENT).await, Reason::Unavailable);
                assert_eq!(h.alarms(), 1);
                assert_eq!(h.reasons(&[other, PATIENT]).await, [Reason::Allowed, Reason::Unavailable]);
                assert_eq!(h.alarms(), 2);
                assert!(h.service.handle_inbound(&sms("m2", PATIENT, "START", None), INLINE).await.is_err(), "no restart from the default");
                assert_eq!(h.alarms(), 3);
            }

            #[tokio::test]
            async fn a_state_whose_pid_was_edited_denies_in_single_and_batch_reads() {
                let mut h = super::$backend().await;
                let other = "+14158675310";
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                let (pk, sk) = state_key(&h.pid(PATIENT));
                let data = h.raw_get(&pk, &sk).await.unwrap();
                let edited = data.replace(&h.pid(PATIENT), &h.pid(other));
                assert_ne!(edited, data);
                h.raw(vec![Raw::Put { pk, sk, data: edited }]).await;
                assert_eq!(h.reason(PATIENT).await, Reason::Unavailable);
                assert_eq!(h.reasons(&[PATIENT, other]).await, [Reason::Unavailable, Reason::Allowed]);
                assert_eq!(h.alarms(), 2);
            }

            #[tokio::test]
            async fn another_numbers_state_copied_over_denies_in_single_and_batch_reads() {
                let mut h = super::$backend().await;
                let other = "+14158675310";
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                h.service.handle_inbound(&sms("m2", other, "START", None), INLINE).await.unwrap();
                let (other_pk, sk) = state_key(&h.pid(other));
                let copied = h.raw_get(&other_pk, &sk).await.unwrap();
                let (pk, _) = state_key(&h.pid(PATIENT));
                h.raw(vec![Raw::Put { pk, sk, data: copied }]).await;
                assert_eq!(h.reason(PATIENT).await, Reason::Unavailable);
                assert_eq!(h.reasons(&[other, PATIENT]).await, [Reason::Allowed, Reason::Unavailable]);
                assert_eq!(h.alarms(), 2);
            }

            #[tokio::test]
            async fn an_event_time_outside_1970_to_9999_is_refused_not_a_panic() {
                let h = super::$backend().await;
                let mut message = sms("m1", PATIENT, "STOP", None);
                message.occurred_at = Some(time::macros::datetime!(-0001-06-01 0:00 UTC));
                let result = h.service.handle_inbound(&message, INLINE).await;
                assert!(matches!(result, Err(sms_consent::service::ServiceError::Invalid(_))), "{result:?}");
                assert_eq!(h.ledger_len(PATIENT).await, 0);
            }

            #[tokio::test]
            async fn a_usage_is_written_by_compare_and_set() {
                let h = super::$backend().await;
                let pid = h.pid(PATIENT);
                assert_eq!(h.store.usage(&pid).await.unwrap(), None);
                let first = usage(&pid, 1, &[("r1", "clinic")]);
                assert!(!h.store.put_usage(&first, Some(0)).await.unwrap(), "no usage yet: a version is stale");
                assert!(h.store.put_usage(&first, None).await.unwrap());
                assert!(!h.store.put_usage(&usage(&pid, 1, &[("x", "clinic")]), None).await.unwrap(), "it exists now");
                assert_eq!(h.store.usage(&pid).await.unwrap(), Some(first.clone()));
                let second = usage(&pid, 2, &[("r1", "clinic"), ("r2", "pharmacy")]);
                assert!(h.store.put_usage(&second, Some(1)).await.unwrap());
                let stale = usage(&pid, 2, &[("r1", "clinic"), ("r3", "clinic")]);
                assert!(!h.store.put_usage(&stale, Some(1)).await.unwrap(), "written over version 1, which is gone");
                assert_eq!(h.store.usage(&pid).await.unwrap(), Some(second));
            }

            #[tokio::test]
            async fn usages_answer_in_the_order_asked_with_the_absent_ones() {
                let h = super::$backend().await;
                let (a, b, none) = (h.pid(PATIENT), h.pid("+14158675310"), h.pid("+14158675399"));
                let (ua, ub) = (usage(&a, 1, &[("ra", "clinic")]), usage(&b, 1, &[("rb", "pharmacy")]));
                assert!(h.store.put_usage(&ua, None).await.unwrap() && h.store.put_usage(&ub, None).await.unwrap());
                let got = h.store.usages(&[b.clone(), none.clone(), a.clone(), b.clone()]).await.unwrap();
                assert_eq!(got, [Some(ub.clone()), None, Some(ua), Some(ub)]);
                assert_eq!(h.store.usages(&[]).await.unwrap(), []);
            }

            #[tokio::test]
            async fn put_usages_writes_all_or_nothing() {
                let h = super::$backend().await;
                let (a, b, c) = (h.pid(PATIENT), h.pid("+14158675310"), h.pid("+14158675311"));
                let ua = usage(&a, 1, &[("ra", "clinic")]);
                assert!(h.store.put_usage(&ua, None).await.unwrap());
                // b and c are right, a's version is stale: nothing is written.
                let batch = vec![
                    (usage(&b, 1, &[("rb", "clinic")]), None),
                    (usage(&a, 2, &[("ra", "clinic"), ("ra2", "clinic")]), Some(7)),
                    (usage(&c, 1, &[("rc", "clinic")]), None),
                ];
                assert_eq!(h.store.put_usages(&batch).await.unwrap(), [false, false, false]);
                assert_eq!(h.store.usages(&[a.clone(), b.clone(), c.clone()]).await.unwrap(), [Some(ua), None, None]);
                // With a's version right, all are written.
                let mut batch = batch;
                batch[1].1 = Some(1);
                assert_eq!(h.store.put_usages(&batch).await.unwrap(), [true, true, true]);
                let stored = h.store.usages(&[b, a, c]).await.unwrap();
                assert_eq!(stored, [Some(batch[0].0.clone()), Some(batch[1].0.clone()), Some(batch[2].0.clone())]);
                // A number twice in one batch is refused, not half applied.
                let twice = vec![(usage(&h.pid("+14158675312"), 1, &[]), None), (usage(&h.pid("+14158675312"), 1, &[]), None)];
                assert!(h.store.put_usages(&twice).await.is_err());
                assert_eq!(h.store.usage(&h.pid("+14158675312")).await.unwrap(), None);
                assert_eq!(h.store.put_usages(&[]).await.unwrap(), Vec::<bool>::new());
            }

            #[tokio::test]
            async fn racing_reservations_never_exceed_the_cap() {
                let h = Arc::new(super::$backend().await);
                let pid = h.pid(PATIENT);
                let at = time::macros::datetime!(2026-03-10 15:00 UTC);
                let mut tasks = Vec::new();
                for i in 0..16u32 {
                    let (h, pid) = (h.clone(), pid.clone());
                    tasks.push(tokio::spawn(async move { reserve(h.store.as_ref(), &pid, &format!("r{i}"), at).await }));
                }
                let mut reserved = 0;
                for task in tasks {
                    reserved += usize::from(task.await.unwrap());
                }
                assert_eq!(reserved, 3);
                let stored = h.store.usage(&pid).await.unwrap().unwrap();
                assert_eq!(stored.sends.len(), 3);
                assert_eq!(stored.version, 3);
            }

            #[tokio::test]
            async fn a_usage_item_is_not_history_and_erasure_keeps_it() {
                let h = super::$backend().await;
                let (pid, other) = (h.pid(PATIENT), h.pid("+14158675310"));
                // A number with only a usage item is new, not a deleted STATE.
                let only = usage(&other, 1, &[("r0", "clinic")]);
                assert!(h.store.put_usage(&only, None).await.unwrap());
                assert_eq!(h.store.read_state(&other).await.unwrap(), StateRead::Absent);
                assert_eq!(h.reason("+14158675310").await, Reason::Allowed);
                // Its first events are recorded, not refused as tampering: a
                // HELP (no state change: the default STATE is created) and a STOP.
                let help = h.service.handle_inbound(&sms("h0", "+14158675310", "HELP", None), INLINE).await.unwrap();
                assert!(matches!(help, InboundOutcome::Recorded { intent: Intent::Help, .. }), "{help:?}");
                assert!(matches!(h.store.read_state(&other).await.unwrap(), StateRead::Found(s) if s.consent.is_empty()));
                let outcome = h.service.handle_inbound(&sms("m0", "+14158675310", "STOP", None), INLINE).await.unwrap();
                assert!(matches!(outcome, InboundOutcome::Recorded { intent: Intent::OptOut, .. }), "{outcome:?}");
                assert_eq!(h.reason("+14158675310").await, Reason::OptedOut);
                assert_eq!(h.alarms(), 0);
                // A number whose usage is newer than its STATE still reads the STATE.
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), OUTBOX).await.unwrap();
                let used = usage(&pid, 1, &[("r1", "clinic")]);
                assert!(h.store.put_usage(&used, None).await.unwrap());
                assert!(matches!(h.store.read_state(&pid).await.unwrap(), StateRead::Found(s) if s.version == 1));
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut);
                // Erasure leaves the usage (no PHI in it) as it was.
                h.service.erase(PATIENT, "dpo").await.unwrap();
                assert_eq!(h.store.usage(&pid).await.unwrap(), Some(used));
                assert_eq!(h.store.usage(&other).await.unwrap(), Some(only));
            }
        }
    };
}

/// A usage of `pid` at `version` with these (reservation, program) sends.
fn usage(pid: &str, version: u64, sends: &[(&str, &str)]) -> UsageItem {
    let at = time::macros::datetime!(2026-03-10 15:00 UTC);
    let sends = sends
        .iter()
        .map(|(id, program)| SendRecord {
            reservation_id: (*id).into(),
            program: (*program).into(),
            organization: "lakeside".into(),
            at,
        })
        .collect();
    UsageItem { pid: pid.into(), version, sends }
}

/// What a reservation does: read the usage, check the caps (3 per 24 hours
/// across the organization), write by compare and set, and on a conflict
/// read again. True when reserved, false when the cap denies.
async fn reserve(store: &dyn ConsentStore, pid: &str, id: &str, at: OffsetDateTime) -> bool {
    let caps = [Cap::Organization { max: 3, window: time::Duration::hours(24) }];
    for _ in 0..64 {
        let stored = store.usage(pid).await.unwrap();
        let expected = stored.as_ref().map(|u| u.version);
        let mut item = stored.unwrap_or_else(|| UsageItem { pid: pid.into(), ..UsageItem::default() });
        if volume::check(&caps, &item.sends, "clinic", "lakeside", "America/New_York", at).is_err() {
            return false;
        }
        let send =
            SendRecord { reservation_id: id.into(), program: "clinic".into(), organization: "lakeside".into(), at };
        item.sends.push(send);
        item.version += 1;
        if store.put_usage(&item, expected).await.unwrap() {
            return true;
        }
    }
    panic!("a reservation kept conflicting");
}

contract!(embedded);
contract!(dynamodb);

/// DynamoDB and KMS specifics, against moto and against a local HTTP server
/// that fails the way DynamoDB fails.
mod dynamodb_only {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use aws_sdk_dynamodb::types::AttributeValue;
    use sms_consent::adapters::aws::sdk_config;
    use sms_consent::adapters::dynamodb::DynamoStore;
    use sms_consent::adapters::local_keyring::LocalKeyring;
    use sms_consent::crypto::{CacheLimits, Crypto};
    use sms_consent::domain::{PhoneNumber, Reason};
    use sms_consent::service::{AuthorizationQuery, ConsentService};

    use super::helpers::*;
    use super::{moto, moto_config, sms, unique};

    async fn spawn_on_moto() -> (TestApp, String) {
        let table = unique("http");
        let config = format!("{}\n{}", moto_config(&table, &format!("alias/{}", unique("http"))), config_text());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, &config).unwrap();
        sms_consent::runtime::local::provision(&path).await.expect("provision on moto");
        (TestApp::spawn_with(&config).await, table)
    }

    #[tokio::test]
    async fn a_stop_over_http_is_stored_in_dynamodb_and_authorization_costs_one_call() {
        let (app, _) = spawn_on_moto().await;

        let twiml = app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await.text().await.unwrap();
        let calls = &app.server().calls;
        let (dynamodb, kms) = (calls.dynamodb.count(), calls.kms.count());
        let decision = app.decision(PATIENT, "clinic", "billing").await;

        assert!(twiml.contains("You are unsubscribed"));
        assert_eq!(decision["reason"], "opted_out");
        assert_eq!(calls.dynamodb.count() - dynamodb, 1, "one Query");
        assert_eq!(calls.kms.count() - kms, 0, "no KMS call");
    }

    #[tokio::test]
    async fn the_review_queue_works_end_to_end_over_http_on_dynamodb() {
        let (app, _) = spawn_on_moto().await;
        review_queue_end_to_end(&app).await;
    }

    #[tokio::test]
    async fn an_opt_out_flipped_directly_in_the_table_denies_and_raises_an_alarm() {
        let (app, table) = spawn_on_moto().await;
        app.twilio_sms("SM0001", PATIENT, CLINIC, "STOP").await;
        let client = aws_sdk_dynamodb::Client::new(&sdk_config(Some("us-east-1"), Some(&moto())).await);
        let pid = app.server().state.service.crypto().blind_index(&PhoneNumber::parse(PATIENT).unwrap());
        let key = |pk: String| {
            std::collections::HashMap::from([
                ("PK".to_owned(), AttributeValue::S(pk)),
                ("SK".to_owned(), AttributeValue::S("STATE".into())),
            ])
        };

        let item =
            client.get_item().table_name(&table).set_key(Some(key(format!("PHONE#{pid}")))).send().await.unwrap();
        let data = item.item().unwrap()["data"].as_s().unwrap().replace("\"opt_out\"", "\"opt_in\"");
        client
            .update_item()
            .table_name(&table)
            .set_key(Some(key(format!("PHONE#{pid}"))))
            .update_expression("SET #d = :d")
            .expression_attribute_names("#d", "data")
            .expression_attribute_values(":d", AttributeValue::S(data))
            .send()
            .await
            .unwrap();

        assert_eq!(app.reason(PATIENT, "clinic", "billing").await, "unavailable");
        assert_eq!(app.server().state.service.counters.integrity_alarms.load(Ordering::Relaxed), 1);
    }

    /// A DynamoDB endpoint that throttles every request, counting them.
    async fn throttling_dynamodb() -> (String, Arc<AtomicUsize>) {
        use axum::http::StatusCode;
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/x-amz-json-1.0"), ("x-amzn-errortype", "ThrottlingException")],
                    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, hits)
    }

    #[tokio::test]
    async fn throttling_is_retried_within_a_budget_then_fails_closed() {
        let (endpoint, hits) = throttling_dynamodb().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk_config(Some("us-east-1"), Some(&endpoint)).await);
        let store = Arc::new(DynamoStore::new(client, "throttled"));
        let dir = tempfile::tempdir().unwrap();
        let keyring = LocalKeyring::open_or_create(dir.path()).unwrap();
        let wrapped = Crypto::generate_keys(&keyring).await.unwrap();
        let crypto = Crypto::start(Arc::new(keyring), &wrapped, "throttled", CacheLimits::default()).await.unwrap();
        let config = sms_consent::config::Config::from_toml(&config_text()).unwrap();
        let service =
            ConsentService::new(config.programs(), store, Arc::new(crypto), Arc::new(sms_consent::ports::SystemClock));

        let decision =
            service.authorize(&AuthorizationQuery { to: PATIENT, program: "clinic", category: "billing" }).await;
        let attempts = hits.load(Ordering::SeqCst);
        let inbound = service
            .handle_inbound(&sms("m1", PATIENT, "STOP", None), sms_consent::providers::twilio::REPLY_STYLE)
            .await;

        assert_eq!(decision.reason, Reason::Unavailable);
        assert!(!decision.allowed);
        assert_eq!(attempts, 4, "the SDK retried throttling, then gave up");
        assert!(inbound.is_err(), "a STOP that could not be stored is an error (503), never a success");
    }

    #[tokio::test]
    async fn a_cold_start_reads_its_config_from_ssm_and_only_a_provider_function_reads_secrets_manager() {
        use tower::ServiceExt;
        let (table, alias, name) = (unique("lambda"), format!("alias/{}", unique("lambda")), unique("sms-consent"));
        let config = sms_consent::config::Config::from_toml(&moto_config(&table, &alias)).unwrap();
        sms_consent::runtime::backends::Backends::open(&config).await.unwrap().provision(&config).await.unwrap();
        let sdk = sdk_config(Some("us-east-1"), Some(&moto())).await;
        let events = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
        aws_sdk_ssm::Client::new(&sdk)
            .put_parameter()
            .name(format!("/{name}/config"))
            .value(std::fs::read_to_string(events.join("config.toml")).unwrap())
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            // A retried put (the emulator answering slowly under load) must
            // not fail on the parameter its first attempt created.
            .overwrite(true)
            .send()
            .await
            .unwrap();
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&name)
            .secret_string(std::fs::read_to_string(events.join("secrets.toml")).unwrap())
            .send()
            .await
            .unwrap();
        // What the template sets, and what the Lambda runtime provides.
        for (key, value) in [
            ("AWS_ENDPOINT_URL", moto()),
            ("AWS_REGION", "us-east-1".to_owned()),
            (sms_consent::runtime::lambda::CONFIG_PARAMETER_ENV, format!("/{name}/config")),
            (sms_consent::runtime::lambda::SECRETS_ENV, name.clone()),
            (sms_consent::runtime::lambda::TABLE_ENV, table.clone()),
            (sms_consent::runtime::lambda::KEY_ID_ENV, alias.clone()),
        ] {
            std::env::set_var(key, value);
        }

        let request = |file: &str| {
            let event = std::fs::read_to_string(events.join(file)).unwrap();
            lambda_http::request::from_str(&event).unwrap().map(|b| axum::body::Body::from(b.to_vec()))
        };

        // The authorize function never reads the provider secret: a name
        // that does not exist (as a role without the permission would see
        // it) does not stop its start; the webhook function's it does.
        std::env::set_var(sms_consent::runtime::lambda::SECRETS_ENV, format!("{name}-absent"));
        let authorize =
            sms_consent::runtime::lambda::app(sms_consent::http::Role::Authorize).await.expect("cold start");
        let decision = |response: axum::response::Response| async move {
            assert_eq!(response.status(), 200);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            String::from_utf8_lossy(&body).into_owned()
        };
        let answer = decision(authorize.clone().oneshot(request("authorize-allowed.json")).await.unwrap()).await;
        assert!(answer.contains(r#""reason":"allowed""#), "{answer}");
        let webhook = sms_consent::runtime::lambda::app(sms_consent::http::Role::Webhook).await;
        assert!(webhook.err().expect("the webhook function needs it").to_string().contains("-absent"));

        // The webhook function verifies with the secret's tokens; the STOP
        // it records denies the next authorization.
        std::env::set_var(sms_consent::runtime::lambda::SECRETS_ENV, name.clone());
        let webhook = sms_consent::runtime::lambda::app(sms_consent::http::Role::Webhook).await.expect("cold start");
        let response = webhook.oneshot(request("webhook-twilio-stop.json")).await.unwrap();
        assert_eq!(response.status(), 200, "a STOP signed with the secret's token");
        let answer = decision(authorize.oneshot(request("authorize-allowed.json")).await.unwrap()).await;
        assert!(answer.contains(r#""allowed":false"#), "{answer}");
    }
}

/// The `outbox` Lambda function's handler over DynamoDB on moto: a stream
/// batch (as the event source mapping delivers it) is delivered item by
/// item; what is not final by the deadline is reported for Lambda to retry.
#[tokio::test]
async fn the_outbox_function_delivers_a_stream_batch_and_reports_what_is_not_final() {
    use lambda_http::aws_lambda_events::event::dynamodb::Event;
    let h = dynamodb().await;
    h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), OUTBOX).await.unwrap();
    h.clock.advance(time::Duration::seconds(1));
    h.service.handle_inbound(&sms("m2", PATIENT, "HELP", None), OUTBOX).await.unwrap();
    let pid = h.pid(PATIENT);
    // The sample event in events/ (what `cargo lambda invoke` sends), with
    // this test's keys and sequence numbers.
    let sample: serde_json::Value = serde_json::from_str(include_str!("../events/outbox-stream-insert.json")).unwrap();
    let record = |sk: &str, sequence: &str| {
        let mut record = sample["Records"][0].clone();
        record["dynamodb"]["Keys"] = serde_json::json!({"PK": {"S": format!("PHONE#{pid}")}, "SK": {"S": sk}});
        record["dynamodb"]["SequenceNumber"] = sequence.into();
        record
    };
    let event: Event = serde_json::from_value(serde_json::json!({"Records": [
        record("OUTBOX#standard-webhooks:m1", "100"),
        record("OUTBOX#standard-webhooks:m2", "200"),
        record("OUTBOX#standard-webhooks:gone", "300"),
    ]}))
    .unwrap();
    // The first send is throttled for an hour: past this invocation's deadline.
    let throttled =
        Err(SendError::Temporary { reason: "429".into(), retry_after: Some(std::time::Duration::from_secs(3600)) });
    let dispatch = Scripted::new(vec![throttled]);
    let worker = h.worker(dispatch.clone(), test_settings());
    let deadline = h.clock.now() + time::Duration::seconds(60);
    let response = sms_consent::runtime::lambda::handle_stream(&worker, event, deadline).await;
    let failed: Vec<Option<String>> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, [Some("100".to_owned())], "only the throttled reply is retried by Lambda");
    let m1 = h.reply("m1").await;
    assert_eq!((m1.delivery.status, m1.delivery.attempts), (DeliveryStatus::Pending, 1));
    assert_eq!(h.reply("m2").await.delivery.status, DeliveryStatus::Sent);
    assert_eq!(dispatch.calls(), 2);
    // Lambda's retry of the batch, an hour on: m1 goes, m2 is not sent twice.
    h.clock.advance(time::Duration::seconds(3601));
    let event: Event = serde_json::from_value(serde_json::json!({"Records": [
        record("OUTBOX#standard-webhooks:m1", "100"), record("OUTBOX#standard-webhooks:m2", "200"),
    ]}))
    .unwrap();
    let response =
        sms_consent::runtime::lambda::handle_stream(&worker, event, h.clock.now() + time::Duration::seconds(60)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(h.reply("m1").await.delivery.status, DeliveryStatus::Expired, "an hour late: not sent");
    assert_eq!(dispatch.calls(), 2);
}

/// The sending rules at their edges, with the test clock (issue 12).
macro_rules! gate {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            use sms_consent::service::gate::SendPlan;

            const LA: &str = "+14158675309";
            const MIAMI: &str = "+13055550123";

            fn query(to: &str) -> AuthorizationQuery<'_> {
                AuthorizationQuery { to, program: "gated", category: "reminders" }
            }

            fn at(h: &Harness, rfc3339: &str) {
                let target = OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
                let now = h.clock.now();
                h.clock.advance(target - now);
            }

            fn utc(rfc3339: &str) -> OffsetDateTime {
                OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap()
            }

            #[tokio::test]
            async fn the_federal_window_closes_at_21_00_in_los_angeles() {
                let h = super::super::$backend().await;
                at(&h, "2026-11-23T20:59:00-08:00");
                let d = h.service.authorize_send(&query(LA), &SendPlan::default()).await;
                assert_eq!((d.allowed, d.reason), (true, Reason::Allowed));
                at(&h, "2026-11-23T21:00:00-08:00");
                let d = h.service.authorize_send(&query(LA), &SendPlan::default()).await;
                assert_eq!((d.allowed, d.reason), (false, Reason::QuietHours));
                assert_eq!(d.next_allowed_at, Some(utc("2026-11-24T08:00:00-08:00")));
                let plan = SendPlan { send_at: Some(utc("2026-11-24T08:00:00-08:00")), ..Default::default() };
                assert!(h.service.authorize_send(&query(LA), &plan).await.allowed, "planned for the morning");
            }

            #[tokio::test]
            async fn florida_closes_at_20_00_and_the_senders_word_beats_the_area_code() {
                let h = super::super::$backend().await;
                at(&h, "2026-11-23T20:00:00-05:00");
                let d = h.service.authorize_send(&query(MIAMI), &SendPlan::default()).await;
                assert_eq!(d.reason, Reason::QuietHours);
                assert_eq!(d.next_allowed_at, Some(utc("2026-11-24T08:00:00-05:00")));
                let elsewhere = SendPlan { state: Some("NY"), ..Default::default() };
                assert!(
                    h.service.authorize_send(&query(MIAMI), &elsewhere).await.allowed,
                    "a New York resident: 21:00"
                );
                at(&h, "2026-11-23T18:30:00-08:00");
                let east = SendPlan { time_zone: Some("America/New_York"), ..Default::default() };
                let d = h.service.authorize_send(&query(LA), &east).await;
                assert_eq!(d.reason, Reason::QuietHours, "21:30 in New York, whatever the area code says");
                assert!(h.service.authorize_send(&query(LA), &SendPlan::default()).await.allowed);
            }

            #[tokio::test]
            async fn an_area_code_in_two_zones_waits_for_both() {
                let h = super::super::$backend().await;
                // 270 (Kentucky) spans Central and Eastern time.
                at(&h, "2026-11-23T08:30:00-05:00");
                let d = h.service.authorize_send(&query("+12705550123"), &SendPlan::default()).await;
                assert_eq!(d.reason, Reason::QuietHours, "7:30 in Central time");
                assert_eq!(d.next_allowed_at, Some(utc("2026-11-23T08:00:00-06:00")));
            }

            #[tokio::test]
            async fn consent_reasons_win_over_time_reasons() {
                let h = super::super::$backend().await;
                at(&h, "2026-11-23T23:00:00-08:00");
                let mut stop = sms("m1", LA, "STOP", None);
                stop.to = Some(PhoneNumber::parse("+14155550300").unwrap());
                h.service.handle_inbound(&stop, INLINE).await.unwrap();
                assert_eq!(h.service.authorize_send(&query(LA), &SendPlan::default()).await.reason, Reason::OptedOut);
            }

            #[tokio::test]
            async fn the_healthcare_exemption_allows_one_a_day_three_a_week_and_one_segment() {
                let h = super::super::$backend().await;
                let reserve = SendPlan { reserve: true, segments: Some(1), ..Default::default() };
                at(&h, "2026-11-23T10:00:00-08:00");
                let first = h.service.authorize_send(&query(LA), &reserve).await;
                assert!(first.allowed && first.reservation_id.is_some(), "{first:?}");
                let second = h.service.authorize_send(&query(LA), &reserve).await;
                assert_eq!(second.reason, Reason::FrequencyCap);
                assert_eq!(
                    second.next_allowed_at,
                    Some(utc("2026-11-24T08:00:00-08:00")),
                    "tomorrow, once the window opens"
                );
                // Across midnight in Los Angeles (08:00 UTC), not UTC's.
                at(&h, "2026-11-23T23:30:00-08:00");
                let late = SendPlan { send_at: Some(utc("2026-11-24T08:00:00-08:00")), ..reserve };
                assert!(h.service.authorize_send(&query(LA), &late).await.allowed, "day 2");
                let day3 = SendPlan { send_at: Some(utc("2026-11-25T08:00:00-08:00")), ..reserve };
                assert!(h.service.authorize_send(&query(LA), &day3).await.allowed, "day 3");
                let day4 = SendPlan { send_at: Some(utc("2026-11-26T08:00:00-08:00")), ..reserve };
                let d = h.service.authorize_send(&query(LA), &day4).await;
                assert_eq!(d.reason, Reason::FrequencyCap, "a fourth in one week");
                let long = SendPlan { segments: Some(2), ..Default::default() };
                assert_eq!(h.service.authorize_send(&query(LA), &long).await.reason, Reason::TooLongForExemption);
                let long = SendPlan { length: Some(161), ..Default::default() };
                assert_eq!(h.service.authorize_send(&query(LA), &long).await.reason, Reason::TooLongForExemption);
            }

            #[tokio::test]
            async fn a_released_reservation_no_longer_counts() {
                let h = super::super::$backend().await;
                at(&h, "2026-11-23T10:00:00-08:00");
                let reserve = SendPlan { reserve: true, ..Default::default() };
                let id = h.service.authorize_send(&query(LA), &reserve).await.reservation_id.expect("reserved");
                assert_eq!(h.service.authorize_send(&query(LA), &reserve).await.reason, Reason::FrequencyCap);
                assert!(h.service.release(&id).await.unwrap());
                assert!(!h.service.release(&id).await.unwrap(), "released once");
                assert!(h.service.authorize_send(&query(LA), &reserve).await.allowed, "the slot is free again");
                assert!(!h.service.release("0123456789abcdef01234567.nobody").await.unwrap());
            }

            #[tokio::test]
            async fn sixteen_racing_reservations_for_three_slots_get_exactly_three() {
                let h = Arc::new(super::super::$backend().await);
                at(&h, "2026-11-23T10:00:00-05:00");
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let h = h.clone();
                        tokio::spawn(async move {
                            let plan = SendPlan { reserve: true, ..Default::default() };
                            let q = AuthorizationQuery { to: MIAMI, program: "florida", category: "reminders" };
                            h.service.authorize_send(&q, &plan).await
                        })
                    })
                    .collect();
                let mut allowed = 0;
                for task in tasks {
                    let d = task.await.unwrap();
                    if d.allowed {
                        allowed += 1;
                    } else {
                        assert!(matches!(d.reason, Reason::FrequencyCap | Reason::Unavailable), "{d:?}");
                    }
                }
                assert_eq!(allowed, 3);
                let q = AuthorizationQuery { to: MIAMI, program: "florida", category: "reminders" };
                let d = h.service.authorize_send(&q, &SendPlan::default()).await;
                assert_eq!(d.reason, Reason::FrequencyCap, "the cap holds for an unreserved ask too");
            }

            #[tokio::test]
            async fn an_ask_is_one_read_and_a_reservation_one_read_and_one_conditional_write() {
                let h = super::super::$backend().await;
                at(&h, "2026-11-23T10:00:00-08:00");
                let calls = || h.calls.as_ref().map(|c| (c.dynamodb.count(), c.kms.count()));
                let cost =
                    |before: Option<(usize, usize)>| calls().zip(before).map(|((d, k), (d0, k0))| (d - d0, k - k0));
                // Quiet hours and state rules only (an LA number has no cap).
                let q = AuthorizationQuery { to: LA, program: "florida", category: "reminders" };
                let before = calls();
                assert!(h.service.authorize_send(&q, &SendPlan::default()).await.allowed);
                if let Some(spent) = cost(before) {
                    assert_eq!(spent, (1, 0), "one consistent read, no KMS call");
                }
                // A program with caps reads the usage too; a reservation writes it.
                let before = calls();
                assert!(h.service.authorize_send(&query(LA), &SendPlan::default()).await.allowed);
                if let Some(spent) = cost(before) {
                    assert_eq!(spent, (1, 0), "state and usage in one read");
                }
                let before = calls();
                let reserve = SendPlan { reserve: true, ..Default::default() };
                assert!(h.service.authorize_send(&query(LA), &reserve).await.reservation_id.is_some());
                if let Some(spent) = cost(before) {
                    assert_eq!(spent, (2, 0), "one read and one conditional write");
                }
            }

            #[tokio::test]
            async fn one_read_gives_the_state_and_the_usage_and_still_tells_a_deleted_state() {
                let mut h = super::super::$backend().await;
                at(&h, "2026-11-23T10:00:00-08:00");
                let pid = h.pid(LA);
                let read = |h: &Harness| {
                    let (store, pid) = (h.store.clone(), pid.clone());
                    async move { store.read_state_with_usage(&pid).await.unwrap() }
                };
                assert_eq!(read(&h).await, (StateRead::Absent, None));
                let reserve = SendPlan { reserve: true, ..Default::default() };
                assert!(h.service.authorize_send(&query(LA), &reserve).await.allowed);
                let (state, usage) = read(&h).await;
                assert_eq!(state, StateRead::Absent, "a usage item alone is not history");
                assert_eq!(usage.expect("the reservation's usage").sends.len(), 1);
                let mut help = sms("m1", LA, "HELP", None);
                help.to = Some(PhoneNumber::parse("+14155550300").unwrap());
                h.service.handle_inbound(&help, INLINE).await.unwrap();
                let (state, usage) = read(&h).await;
                assert!(matches!(state, StateRead::Found(_)) && usage.is_some());
                h.raw(vec![Raw::Delete { pk: format!("PHONE#{pid}"), sk: "STATE".into() }]).await;
                let (state, usage) = read(&h).await;
                assert_eq!(state, StateRead::MissingWithHistory, "a deleted STATE is still seen");
                assert!(usage.is_some());
                let d = h.service.authorize_send(&query(LA), &SendPlan::default()).await;
                assert_eq!(d.reason, Reason::Unavailable, "and denies");
            }

            #[tokio::test]
            async fn a_batch_of_reservations_counts_each_in_order_and_writes_them_together() {
                let h = super::super::$backend().await;
                at(&h, "2026-11-23T13:00:00-05:00");
                // Both numbers have a STATE, so consent is one batch read.
                for (id, number) in [("h1", MIAMI), ("h2", LA)] {
                    let mut help = sms(id, number, "HELP", None);
                    help.to = Some(PhoneNumber::parse("+14155550400").unwrap());
                    h.service.handle_inbound(&help, INLINE).await.unwrap();
                }
                let florida = |to| AuthorizationQuery { to, program: "florida", category: "reminders" };
                let queries = [florida(MIAMI), florida(MIAMI), florida(LA), florida(MIAMI), florida(MIAMI)];
                let reserve = SendPlan { reserve: true, ..Default::default() };
                let plans = [reserve; 5];
                let before = h.calls.as_ref().map(|c| c.dynamodb.count());
                let decisions = h.service.authorize_batch(&queries, &plans).await;
                if let (Some(calls), Some(before)) = (&h.calls, before) {
                    assert_eq!(calls.dynamodb.count() - before, 3, "states, usages, one TransactWriteItems");
                }
                let reasons: Vec<Reason> = decisions.iter().map(|d| d.reason).collect();
                assert_eq!(
                    reasons,
                    [Reason::Allowed, Reason::Allowed, Reason::Allowed, Reason::Allowed, Reason::FrequencyCap],
                    "three for the Florida number, in order; the LA number has no cap"
                );
                assert!(decisions[..4].iter().all(|d| d.reservation_id.is_some()));
                let usage = h.store.usage(&h.pid(MIAMI)).await.unwrap().expect("stored");
                assert_eq!((usage.sends.len(), usage.version), (3, 1), "one write for three reservations");
                let single = h.service.authorize_send(&florida(MIAMI), &reserve).await;
                assert_eq!(single.reason, Reason::FrequencyCap, "the batch's reservations count for the next ask");
                assert!(h.service.release(decisions[0].reservation_id.as_deref().unwrap()).await.unwrap());
                assert!(h.service.authorize_send(&florida(MIAMI), &reserve).await.allowed);
            }

            #[tokio::test]
            async fn a_batch_answers_each_request_with_its_own_plan() {
                let h = super::super::$backend().await;
                at(&h, "2026-11-23T20:30:00-05:00");
                let queries = [query(LA), query(MIAMI), query("not-a-number")];
                let plans = [SendPlan::default(), SendPlan::default(), SendPlan::default()];
                let d = h.service.authorize_batch(&queries, &plans).await;
                let reasons: Vec<Reason> = d.iter().map(|d| d.reason).collect();
                assert_eq!(reasons, [Reason::Allowed, Reason::QuietHours, Reason::InvalidNumber]);
            }
        }
    };
}

mod gate_rules {
    use super::*;
    gate!(embedded);
    gate!(dynamodb);
}

/// The tamper-evident ledger: raw writes behind the service's back (to the
/// redb file, or to moto's table with the SDK) are each reported by the
/// verification `verify-ledger` runs, and the number then denies.
macro_rules! chain {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            use sms_consent::ports::{NumberLedger, ScanOptions};
            use sms_consent::service::ledger::{Break, LedgerReport};

            const OTHER: &str = "+14158675310";

            /// PATIENT: STOP, HELP, START, STOP (seq 1 to 4, in event time
            /// too); OTHER: STOP.
            async fn ledger() -> Harness {
                let h = super::super::$backend().await;
                let script = [("m1", "STOP", "10:00"), ("m2", "HELP", "10:01"), ("m3", "START", "10:02"), ("m4", "STOP", "10:03")];
                for (id, text, at) in script {
                    let at = format!("2026-03-01T{at}:00Z");
                    h.service.handle_inbound(&sms(id, PATIENT, text, Some(&at)), INLINE).await.unwrap();
                }
                h.service.handle_inbound(&sms("o1", OTHER, "STOP", None), INLINE).await.unwrap();
                assert_eq!(verify(&h).await, LedgerReport { numbers: 2, events: 5, broken: Vec::new() });
                h
            }

            async fn verify(h: &Harness) -> LedgerReport {
                h.service.verify_ledger(ScanOptions { rate: 10_000.0 }, &|_, _| {}).await.unwrap()
            }

            async fn stored(h: &Harness, number: &str) -> NumberLedger {
                h.store.number_ledger(&h.pid(number)).await.unwrap()
            }

            /// The sort key and raw JSON of PATIENT's event of `seq`.
            async fn event_at(h: &Harness, seq: u64) -> (String, EventItem) {
                let ledger = stored(h, PATIENT).await;
                let (sk, event) = ledger.events.into_iter().find(|(_, e)| e.as_ref().unwrap().link.as_ref().unwrap().seq == seq).unwrap();
                (sk, event.unwrap())
            }

            fn json(event: &EventItem) -> String {
                serde_json::to_string(event).unwrap()
            }

            /// The tampering is reported for PATIENT alone, which is then
            /// quarantined: its authorizations deny (`unavailable`, with the
            /// alarm) in one read and no key call; OTHER is untouched.
            async fn reported_and_denied(h: &Harness, expected: impl Fn(&Break) -> bool) -> Vec<Break> {
                let alarms = h.alarms();
                let report = verify(h).await;
                assert_eq!(report.broken.len(), 1, "{report:?}");
                let broken = &report.broken[0];
                assert_eq!(broken.pid, h.pid(PATIENT));
                assert!(broken.breaks.iter().any(&expected), "{:?}", broken.breaks);
                assert!(broken.quarantined);
                assert!(h.alarms() > alarms);
                let before = h.calls.as_ref().map(|c| (c.dynamodb.count(), c.kms.count()));
                assert_eq!(h.reason(PATIENT).await, Reason::Unavailable);
                if let (Some(calls), Some((dynamodb, kms))) = (&h.calls, before) {
                    assert_eq!(calls.dynamodb.count() - dynamodb, 1, "authorization stays one read");
                    assert_eq!(calls.kms.count() - kms, 0, "and no key service call");
                }
                assert_eq!(h.reasons(&[PATIENT, OTHER]).await, [Reason::Unavailable, Reason::OptedOut]);
                // Run again: still reported, not quarantined twice.
                let again = verify(h).await;
                assert_eq!(again.broken.len(), 1);
                assert!(!again.broken[0].quarantined && again.broken[0].breaks.contains(&Break::Quarantined));
                broken.breaks.clone()
            }

            #[tokio::test]
            async fn a_deleted_event_is_reported_and_the_number_denies() {
                let mut h = ledger().await;
                let (sk, _) = event_at(&h, 2).await;
                h.raw(vec![Raw::Delete { pk: format!("PHONE#{}", h.pid(PATIENT)), sk }]).await;
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut, "the STATE alone does not show it");
                reported_and_denied(&h, |b| *b == Break::Missing { from: 2, to: 2 }).await;
                // A STOP to a quarantined number is still recorded.
                let stop = h.service.handle_inbound(&sms("m9", PATIENT, "STOP", None), INLINE).await.unwrap();
                assert!(matches!(stop, InboundOutcome::Recorded { .. }));
                assert_eq!(h.reason(PATIENT).await, Reason::Unavailable);
            }

            #[tokio::test]
            async fn the_newest_event_deleted_is_reported_against_the_head() {
                let mut h = ledger().await;
                let (sk, _) = event_at(&h, 4).await;
                h.raw(vec![Raw::Delete { pk: format!("PHONE#{}", h.pid(PATIENT)), sk }]).await;
                reported_and_denied(&h, |b| *b == Break::Missing { from: 4, to: 4 }).await;
            }

            #[tokio::test]
            async fn an_inserted_event_is_reported_and_the_number_denies() {
                let mut h = ledger().await;
                let (_, mut forged) = event_at(&h, 3).await;
                forged.event_id = "standard-webhooks:forged".into();
                forged.occurred_at = time::macros::datetime!(2026-03-01 10:04 UTC);
                forged.kind = "opt_in".into();
                forged.link = None;
                let forged_sk = forged.sort_key();
                h.raw(vec![Raw::Put { pk: format!("PHONE#{}", h.pid(PATIENT)), sk: forged_sk.clone(), data: json(&forged) }]).await;
                reported_and_denied(&h, |b| *b == Break::Unlinked { sk: forged_sk.clone() }).await;
            }

            #[tokio::test]
            async fn a_forged_link_is_reported_and_the_number_denies() {
                let mut h = ledger().await;
                // A copy of the newest link's fields on a new event: its MAC fails.
                let (_, newest) = event_at(&h, 4).await;
                let mut forged = newest.clone();
                forged.event_id = "standard-webhooks:forged".into();
                forged.occurred_at = time::macros::datetime!(2026-03-01 10:05 UTC);
                let link = forged.link.as_mut().unwrap();
                (link.seq, link.prev) = (5, newest.link.as_ref().unwrap().mac.clone());
                h.raw(vec![Raw::Put { pk: format!("PHONE#{}", h.pid(PATIENT)), sk: forged.sort_key(), data: json(&forged) }]).await;
                reported_and_denied(&h, |b| *b == Break::Altered { seq: 5 }).await;
            }

            #[tokio::test]
            async fn reordered_events_are_reported_and_the_number_denies() {
                let mut h = ledger().await;
                let pk = format!("PHONE#{}", h.pid(PATIENT));
                let ((sk2, e2), (sk3, e3)) = (event_at(&h, 2).await, event_at(&h, 3).await);
                h.raw(vec![
                    Raw::Put { pk: pk.clone(), sk: sk2.clone(), data: json(&e3) },
                    Raw::Put { pk, sk: sk3.clone(), data: json(&e2) },
                ])
                .await;
                let breaks = reported_and_denied(&h, |b| *b == Break::Misplaced { sk: sk2.clone() }).await;
                assert!(breaks.contains(&Break::Misplaced { sk: sk3 }));
            }

            #[tokio::test]
            async fn an_altered_event_is_reported_denied_and_its_history_refused() {
                let mut h = ledger().await;
                let (sk, mut event) = event_at(&h, 4).await;
                event.kind = "opt_in".into();
                h.raw(vec![Raw::Put { pk: format!("PHONE#{}", h.pid(PATIENT)), sk, data: json(&event) }]).await;
                let alarms = h.alarms();
                let history = h.service.history(PATIENT, None, "auditor").await;
                assert!(matches!(history, Err(sms_consent::service::ServiceError::Integrity)), "{history:?}");
                assert!(h.alarms() > alarms);
                reported_and_denied(&h, |b| *b == Break::Altered { seq: 4 }).await;
            }

            #[tokio::test]
            async fn a_replayed_old_event_is_reported_and_the_number_denies() {
                let mut h = ledger().await;
                let pk = format!("PHONE#{}", h.pid(PATIENT));
                // The first STOP's item copied under a later key.
                let (_, first) = event_at(&h, 1).await;
                let replay_sk = "EVENT#2026-03-01T10:09:00Z#standard-webhooks:m1".to_owned();
                h.raw(vec![Raw::Put { pk: pk.clone(), sk: replay_sk.clone(), data: json(&first) }]).await;
                reported_and_denied(&h, |b| *b == Break::Misplaced { sk: replay_sk.clone() }).await;
            }

            #[tokio::test]
            async fn a_replayed_event_with_its_time_rewritten_is_reported() {
                let mut h = ledger().await;
                let (_, mut first) = event_at(&h, 1).await;
                first.occurred_at = time::macros::datetime!(2026-03-01 10:09 UTC);
                let pk = format!("PHONE#{}", h.pid(PATIENT));
                h.raw(vec![Raw::Put { pk, sk: first.sort_key(), data: json(&first) }]).await;
                reported_and_denied(&h, |b| *b == Break::Altered { seq: 1 }).await;
            }

            #[tokio::test]
            async fn a_state_whose_head_was_put_back_is_reported() {
                let mut h = ledger().await;
                // The STATE replaced by a copy with the head of seq 3 (its tag fails).
                let mut state = h.state(PATIENT).await;
                let (_, third) = event_at(&h, 3).await;
                state.head = Some(sms_consent::ports::ChainHead { seq: 3, mac: third.link.unwrap().mac });
                let (pk, sk) = state_key(&h.pid(PATIENT));
                h.raw(vec![Raw::Put { pk, sk, data: serde_json::to_string(&state).unwrap() }]).await;
                let report = verify(&h).await;
                assert_eq!(report.broken.len(), 1);
                assert!(report.broken[0].breaks.contains(&Break::StateTag), "{report:?}");
                assert!(!report.broken[0].quarantined, "a STATE that fails its tag denies by itself");
                assert_eq!(h.reason(PATIENT).await, Reason::Unavailable);
            }

            #[tokio::test]
            async fn an_intact_ledger_with_erasures_and_a_key_rotation_verifies_clean() {
                use sms_consent::service::records::{CaptureSource, ConsentRecord, RecordKind};
                let mut h = ledger().await;
                let record = ConsentRecord {
                    to: OTHER, program: "clinic", categories: None, kind: RecordKind::ExpressWritten, source: CaptureSource::WebForm,
                    captured_at: time::macros::datetime!(2026-03-02 10:00 UTC), evidence: Some("form-9"), id: Some("r1"),
                };
                h.service.record_consent(&record, "tester").await.unwrap();
                h.service.history(PATIENT, None, "auditor").await.unwrap();
                assert_eq!(h.service.erase(PATIENT, "dpo").await.unwrap(), 4, "four texts");
                assert!(verify(&h).await.intact());
                h.rotate_integrity_key().await;
                h.service.handle_inbound(&sms("m5", PATIENT, "HELP", None), INLINE).await.unwrap();
                h.service.handle_inbound(&sms("o2", OTHER, "STOP", None), OUTBOX).await.unwrap();
                h.service.erase(OTHER, "dpo").await.unwrap();
                let report = verify(&h).await;
                assert_eq!(report, LedgerReport { numbers: 2, events: 11, broken: Vec::new() });
                let macs: Vec<String> = stored(&h, PATIENT).await.events.into_iter().map(|(_, e)| e.unwrap().link.unwrap().mac).collect();
                assert!(macs.iter().any(|m| m.starts_with("c1.i1.")) && macs.iter().any(|m| m.starts_with("c1.i2.")));
                assert_eq!(h.reasons(&[PATIENT, OTHER]).await, [Reason::OptedOut, Reason::OptedOut]);
                assert_eq!(h.alarms(), 0);
                // A text removed without an erasure is not an erasure.
                let (sk, mut event) = {
                    let ledger = stored(&h, OTHER).await;
                    let (sk, e) = ledger.events.into_iter().find(|(_, e)| e.as_ref().unwrap().kind == "opt_out").unwrap();
                    (sk, e.unwrap())
                };
                assert!(event.text.is_none(), "erased");
                event.link.as_mut().unwrap().text_digest = None;
                h.raw(vec![Raw::Put { pk: format!("PHONE#{}", h.pid(OTHER)), sk, data: json(&event) }]).await;
                assert!(!verify(&h).await.intact());
            }

            #[tokio::test]
            async fn a_number_from_before_the_chain_starts_it_and_verifies() {
                let mut h = super::super::$backend().await;
                let pid = h.pid(PATIENT);
                let pk = format!("PHONE#{pid}");
                // A legacy STATE (no head, the tag as it was) and its event.
                let at = time::macros::datetime!(2026-01-01 9:00 UTC);
                let legacy = EventItem {
                    pid: pid.clone(), event_id: "standard-webhooks:old".into(), kind: "help".into(), source: "standard-webhooks".into(),
                    program: None, categories: Vec::new(), text: None, evidence: None, caller: None,
                    code: None, signature_verified: true, occurred_at: at, received_at: at, link: None,
                };
                let consent = Default::default();
                let state = StateItem {
                    pid: pid.clone(), version: 1, tag: h.crypto.tag(&pid, 1, &consent).unwrap(), consent, phone: None,
                    updated_at: at, head: None, quarantine: None,
                };
                h.raw(vec![
                    Raw::Put { pk: pk.clone(), sk: legacy.sort_key(), data: json(&legacy) },
                    Raw::Put { pk: pk.clone(), sk: "STATE".into(), data: serde_json::to_string(&state).unwrap() },
                ])
                .await;
                assert!(verify(&h).await.intact(), "legacy, unchained");
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                let (_, first) = stored(&h, PATIENT).await.events.into_iter().find(|(_, e)| e.as_ref().unwrap().link.is_some()).unwrap();
                assert_eq!(first.unwrap().link.unwrap().prev, "legacy");
                assert!(verify(&h).await.intact());
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut);
                // An unlinked event arriving after the chain started is an insertion.
                let mut late = legacy.clone();
                (late.event_id, late.received_at) = ("standard-webhooks:late".into(), OffsetDateTime::now_utc() + time::Duration::hours(1));
                h.raw(vec![Raw::Put { pk, sk: late.sort_key(), data: json(&late) }]).await;
                let report = verify(&h).await;
                assert_eq!(report.broken.len(), 1);
                assert!(report.broken[0].breaks.contains(&Break::Unlinked { sk: late.sort_key() }));
                assert_eq!(h.reason(PATIENT).await, Reason::Unavailable);
            }
        }
    };
}

impl Harness {
    /// Rotates the integrity key as an operator would: a new key appended to
    /// the keyring's `integrity_keys` (the newest signs, any verifies), and
    /// the service restarted over it.
    async fn rotate_integrity_key(&mut self) {
        use sms_consent::ports::{KeyService, WrappedIntegrityKey};
        let keys: Arc<dyn KeyService> = match &self.embedded {
            Some(dir) => Arc::new(LocalKeyring::open(dir).unwrap()),
            None => Backends::open(&self.config).await.unwrap().keys,
        };
        let mut wrapped = self.store.wrapped_keys().await.unwrap().unwrap();
        let fresh = Crypto::generate_keys(keys.as_ref()).await.unwrap();
        let id = format!("i{}", wrapped.integrity_keys.len() + 1);
        wrapped.integrity_keys.push(WrappedIntegrityKey { id, wrapped: fresh.integrity_keys[0].wrapped.clone() });
        self.crypto =
            Arc::new(Crypto::start(keys, &wrapped, self.store.table(), CacheLimits::default()).await.unwrap());
        self.service =
            ConsentService::new(self.config.programs(), self.store.clone(), self.crypto.clone(), self.clock.clone());
    }
}

mod chain {
    use super::*;
    chain!(embedded);
    chain!(dynamodb);
}

/// Issue 14: the access report's index, erasure that leaves no consent, and
/// retention, on both stores.
macro_rules! access {
    ($backend:ident) => {
        mod $backend {
            use super::*;
            use sms_consent::ports::{NumberLedger, ScanOptions};
            use sms_consent::service::ledger::{verify_number, Break};
            use sms_consent::service::records::{CaptureSource, ConsentRecord, RecordKind};

            fn written(to: &'static str, program: &'static str, id: &'static str, at: OffsetDateTime) -> ConsentRecord<'static> {
                ConsentRecord {
                    to, program, categories: None, kind: RecordKind::ExpressWritten, source: CaptureSource::WebForm,
                    captured_at: at, evidence: Some("form-1"), id: Some(id),
                }
            }

            async fn pharmacy(h: &Harness, to: &str) -> Reason {
                h.service.authorize(&AuthorizationQuery { to, program: "pharmacy", category: "refills" }).await.reason
            }

            #[tokio::test]
            async fn an_erased_number_with_written_consent_denies_until_a_new_opt_in() {
                let h = super::super::$backend().await;
                h.service.record_consent(&written(PATIENT, "pharmacy", "f1", h.clock.now()), "front-desk").await.unwrap();
                assert_eq!(pharmacy(&h, PATIENT).await, Reason::Allowed);
                assert_eq!(h.reason(PATIENT).await, Reason::Allowed, "clinic: opted in by default");

                h.clock.advance(time::Duration::minutes(1));
                h.service.erase(PATIENT, "dpo").await.unwrap();

                assert_eq!(pharmacy(&h, PATIENT).await, Reason::OptedOut, "no evidence remains: no consent remains");
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut, "every program, even one opted in by default");
                let erasure = h.service.events(&PhoneNumber::parse(PATIENT).unwrap()).await.unwrap()
                    .into_iter().find(|e| e.kind == "erasure").unwrap();
                let state = h.service.consent_state(PATIENT, "auditor").await.unwrap();
                assert!(state.iter().all(|c| c.decided_by.as_deref() == Some(erasure.event_id.as_str())), "{state:?}");
                let stored = h.state(PATIENT).await;
                assert!(stored.phone.is_none());

                // A consent captured before the erasure but recorded after it loses to it.
                let stale = written(PATIENT, "pharmacy", "f0", h.clock.now() - time::Duration::seconds(30));
                h.service.record_consent(&stale, "front-desk").await.unwrap();
                assert_eq!(pharmacy(&h, PATIENT).await, Reason::OptedOut);

                // A new opt-in after the erasure: START to the clinic, written consent for the pharmacy.
                h.clock.advance(time::Duration::minutes(1));
                let at = (h.clock.now()).format(&time::format_description::well_known::Rfc3339).unwrap();
                h.service.handle_inbound(&sms("again", PATIENT, "START", Some(&at)), INLINE).await.unwrap();
                assert_eq!(h.reason(PATIENT).await, Reason::Allowed);
                assert_eq!(pharmacy(&h, PATIENT).await, Reason::OptedOut, "START opts in its own program only");
                h.service.record_consent(&written(PATIENT, "pharmacy", "f2", h.clock.now()), "front-desk").await.unwrap();
                assert_eq!(pharmacy(&h, PATIENT).await, Reason::Allowed);
            }

            #[tokio::test]
            async fn every_callers_event_is_in_the_access_report_oldest_first_across_days_and_pages() {
                let h = super::super::$backend().await;
                let start = h.clock.now();
                h.service.handle_inbound(&sms("m1", PATIENT, "STOP", None), INLINE).await.unwrap();
                h.service.consent_state(PATIENT, "nurse").await.unwrap();
                h.clock.advance(time::Duration::days(1));
                h.service.history(PATIENT, None, "auditor").await.unwrap();
                h.clock.advance(time::Duration::seconds(1));
                h.service.record_consent(&written(PATIENT, "pharmacy", "f1", h.clock.now()), "front-desk").await.unwrap();
                h.clock.advance(time::Duration::days(1));
                h.service.erase(PATIENT, "dpo").await.unwrap();
                let end = h.clock.now() + time::Duration::seconds(1);

                let (entries, next) = h.service.access_report(start, end, None).await.unwrap();
                let seen: Vec<(&str, &str)> = entries.iter().map(|e| (e.kind.as_str(), e.caller.as_str())).collect();
                assert_eq!(seen, [("state_read", "nurse"), ("history_read", "auditor"), ("consent_express_written", "front-desk"), ("erasure", "dpo")]);
                assert_eq!(next, None);
                assert!(entries.iter().all(|e| e.pid == h.pid(PATIENT)));
                assert_eq!(entries[2].program.as_deref(), Some("pharmacy"));
                assert!(entries.windows(2).all(|w| w[0].at <= w[1].at));
                // The range is [from, to): the first day alone.
                let (first_day, _) = h.service.access_report(start, start + time::Duration::hours(1), None).await.unwrap();
                assert_eq!(first_day.len(), 1);

                // 100 a page; the cursor continues where the page ended.
                for _ in 0..101 {
                    h.service.consent_state("+14158675310", "nurse").await.unwrap();
                }
                let end = h.clock.now() + time::Duration::seconds(1);
                let (page, next) = h.service.access_report(start, end, None).await.unwrap();
                assert_eq!(page.len(), 100);
                let (rest, last) = h.service.access_report(start, end, next.as_deref()).await.unwrap();
                assert_eq!((rest.len(), last), (5, None));
                let mut ids: Vec<&str> = page.iter().chain(&rest).map(|e| e.event_id.as_str()).collect();
                ids.dedup();
                assert_eq!(ids.len(), 105);
                assert!(h.service.access_report(start, start + time::Duration::days(32), None).await.is_err());
                assert!(h.service.access_report(end, start, None).await.is_err());
            }

            async fn ledger_of(h: &Harness, number: &str) -> NumberLedger {
                h.store.number_ledger(&h.pid(number)).await.unwrap()
            }

            /// PATIENT eight years ago: START (the anchor), HELP, STOP (the
            /// latest opt-out), HELP; then, now, HELP. OTHER: one HELP, recent.
            async fn eight_years_of_history() -> Harness {
                let h = super::super::$backend().await;
                for (id, text) in [("m1", "START"), ("m2", "HELP"), ("m3", "STOP"), ("m4", "HELP")] {
                    h.service.handle_inbound(&sms(id, PATIENT, text, None), INLINE).await.unwrap();
                    h.clock.advance(time::Duration::minutes(1));
                }
                h.clock.advance(time::Duration::days(8 * 365));
                h.service.handle_inbound(&sms("m5", PATIENT, "HELP", None), INLINE).await.unwrap();
                h.service.handle_inbound(&sms("o1", "+14158675310", "HELP", None), INLINE).await.unwrap();
                h
            }

            async fn verify(h: &Harness) -> Vec<sms_consent::service::ledger::BrokenNumber> {
                h.service.verify_ledger(ScanOptions { rate: 10_000.0 }, &|_, _| {}).await.unwrap().broken
            }

            #[tokio::test]
            async fn a_purge_keeps_the_anchor_and_the_latest_opt_out_and_the_ledger_still_verifies() {
                let h = eight_years_of_history().await;
                let cutoff = sms_consent::service::audit::years_before(h.clock.now(), 7);
                let options = ScanOptions { rate: 10_000.0 };

                let dry = h.service.purge(cutoff, "records-officer", true, options).await.unwrap();
                assert_eq!((dry.numbers, dry.purged_numbers, dry.events_purged), (2, 1, 2));
                assert_eq!(h.ledger_len(PATIENT).await, 5, "a dry run changes nothing");

                let report = h.service.purge(cutoff, "records-officer", false, options).await.unwrap();
                assert_eq!((report.purged_numbers, report.events_purged), (1, 2));
                assert!(report.skipped.is_empty());
                let events = h.service.events(&PhoneNumber::parse(PATIENT).unwrap()).await.unwrap();
                let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
                ids.sort();
                assert_eq!(ids.len(), 4, "{ids:?}");
                assert!(ids.contains(&"standard-webhooks:m1") && ids.contains(&"standard-webhooks:m3") && ids.contains(&"standard-webhooks:m5"));
                let purge = events.iter().find(|e| e.kind == "purge").unwrap();
                assert_eq!(purge.caller.as_deref(), Some("records-officer"));
                assert!(verify(&h).await.is_empty(), "verify-ledger stays clean");
                assert!(verify_number(h.service.crypto(), &ledger_of(&h, PATIENT).await).is_empty());
                assert_eq!(h.reason(PATIENT).await, Reason::OptedOut, "authorization unchanged");
                // The history still reads (its links are checked as they are read).
                let (page, _) = h.service.history(PATIENT, None, "auditor").await.unwrap();
                assert!(page.iter().any(|e| e.event.kind == "purge"));

                let (entries, _) = h.service.access_report(cutoff + time::Duration::days(7 * 365 - 1), h.clock.now() + time::Duration::seconds(1), None).await.unwrap();
                assert!(entries.iter().any(|e| e.kind == "purge" && e.caller == "records-officer" && e.pid == h.pid(PATIENT)), "{entries:?}");

                // Again: nothing left to purge; still clean.
                let again = h.service.purge(cutoff, "records-officer", false, options).await.unwrap();
                assert_eq!(again.events_purged, 0);
                assert!(verify(&h).await.is_empty());
            }

            #[tokio::test]
            async fn a_deletion_no_purge_declared_is_still_reported_after_a_purge() {
                let mut h = eight_years_of_history().await;
                let cutoff = sms_consent::service::audit::years_before(h.clock.now(), 7);
                h.service.purge(cutoff, "records-officer", false, ScanOptions { rate: 10_000.0 }).await.unwrap();
                let ledger = ledger_of(&h, PATIENT).await;
                let (sk, _) = ledger.events.iter().find(|(_, e)| e.as_ref().unwrap().event_id == "standard-webhooks:m3").unwrap();
                h.raw(vec![Raw::Delete { pk: format!("PHONE#{}", h.pid(PATIENT)), sk: sk.clone() }]).await;
                let broken = verify(&h).await;
                assert_eq!(broken.len(), 1);
                let missing = |b: &Break| matches!(b, Break::Missing { from, to } if *from <= 3 && 3 <= *to);
                assert!(broken[0].breaks.iter().any(missing), "{broken:?}");
            }

            #[tokio::test]
            async fn a_broken_chain_is_not_purged() {
                let mut h = eight_years_of_history().await;
                let ledger = ledger_of(&h, PATIENT).await;
                let (sk, _) = ledger.events.iter().find(|(_, e)| e.as_ref().unwrap().event_id == "standard-webhooks:m2").unwrap();
                h.raw(vec![Raw::Delete { pk: format!("PHONE#{}", h.pid(PATIENT)), sk: sk.clone() }]).await;
                let cutoff = sms_consent::service::audit::years_before(h.clock.now(), 7);
                let report = h.service.purge(cutoff, "records-officer", false, ScanOptions { rate: 10_000.0 }).await.unwrap();
                assert_eq!(report.skipped, [h.pid(PATIENT)]);
                assert_eq!((report.events_purged, h.ledger_len(PATIENT).await), (0, 4));
            }
        }
    };
}

mod access {
    use super::*;
    access!(embedded);
    access!(dynamodb);
}
