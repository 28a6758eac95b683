//! Fault-injection soak: thousands of deliveries through the real webhook
//! route (Standard Webhooks, signed, over a socket), duplicated, reordered and
//! concurrent, over a store that fails one call in ten (`FaultyStore`). The
//! test retries every 5xx as a provider would; at the end every acknowledged
//! delivery is in the ledger once, every number's consent equals a model's
//! (latest event time wins, an opt-out wins a tie), and `verify_ledger`
//! finds every chain intact. While it runs, authorization is asked
//! concurrently and must never allow a number whose opt-out was acknowledged
//! (unless a later opt-in had been sent).
//!
//! `SOAK_SEED` replays a workload, `FAULT_SEED` a fault sequence (both are
//! printed); `SOAK_DELIVERIES` changes the count.

#[path = "support/faulty_store.rs"]
mod faulty_store;
#[path = "api/helpers.rs"]
mod helpers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faulty_store::{FaultPlan, FaultyStore};
use helpers::{config_text, http_client, FakeSns, AUTHORIZE_KEY, CLINIC, PHARMACY, SW_SECRET, UNOWNED};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sms_consent::adapters::embedded::EmbeddedStore;
use sms_consent::adapters::local_keyring::LocalKeyring;
use sms_consent::config::Config;
use sms_consent::crypto::{CacheLimits, Crypto};
use sms_consent::domain::keywords::{read, Intent};
use sms_consent::domain::PhoneNumber;
use sms_consent::http::auth::Authenticator;
use sms_consent::http::{AppState, Role};
use sms_consent::ports::{ConsentStore, ScanOptions, SystemClock};
use sms_consent::providers::standard_webhooks;
use sms_consent::runtime::{build, Parts};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A fourth program beside the helpers' three, so that four clinic numbers
/// share the soak.
const DENTAL: &str = "+14155550500";
const DENTAL_PROGRAM: &str = r#"
[[programs]]
id = "dental"
name = "Lakeside Dental"
organization = "Lakeside Family Clinic"
numbers = ["+14155550500"]
help_contact = "555-0500"
frequency = "Msg frequency varies"
categories = ["recalls"]
send_rules = []
"#;

/// (program, category, whether no record means allowed) the model decides.
const CHECKED: [(&str, &str, bool); 4] = [
    ("clinic", "appointment_reminders", true),
    ("clinic", "billing", true),
    ("pharmacy", "refills", false),
    ("dental", "recalls", false),
];

/// The texts of the workload, by what the patient meant.
const STOPS: [&str; 3] = ["STOP", "stop", "Unsubscribe"];
const STOP_ALLS: [&str; 1] = ["STOP ALL"];
const STARTS: [&str; 2] = ["START", "Unstop"];
const HELPS: [&str; 2] = ["HELP", "info"];
const OTHERS: [&str; 2] = ["Thanks, see you Tuesday", "ok"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stop,
    StopAll,
    Start,
    Help,
    Other,
}

/// What a message does to a number's consent in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Recorded, consent unchanged (HELP).
    Recorded,
    /// Not recorded at all (no keyword; START or HELP to an unowned number).
    Ignored,
    /// Recorded, and sets the consent of `scope` (`None`: every program).
    Sets { scope: Option<&'static str>, opt_out: bool },
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    number: usize,
    to: &'static str,
    text: &'static str,
    at: OffsetDateTime,
    effect: Effect,
}

fn program_of(to: &str) -> Option<&'static str> {
    match to {
        CLINIC => Some("clinic"),
        PHARMACY => Some("pharmacy"),
        DENTAL => Some("dental"),
        _ => None,
    }
}

fn effect(kind: Kind, to: &str) -> Effect {
    match (kind, program_of(to)) {
        (Kind::Stop, Some(program)) => Effect::Sets { scope: Some(program), opt_out: true },
        (Kind::Stop | Kind::StopAll, _) => Effect::Sets { scope: None, opt_out: true },
        (Kind::Start, Some(program)) => Effect::Sets { scope: Some(program), opt_out: false },
        (Kind::Help, Some(_)) => Effect::Recorded,
        (Kind::Start | Kind::Help, None) | (Kind::Other, _) => Effect::Ignored,
    }
}

fn phone_of(i: usize) -> String {
    format!("+1415867{:04}", 1000 + i)
}

struct Workload {
    numbers: usize,
    messages: Vec<Message>,
    /// Indices into `messages`, shuffled, with the duplicates.
    deliveries: Vec<usize>,
}

fn workload(seed: u64, deliveries: usize, numbers: usize) -> Workload {
    let mut rng = StdRng::seed_from_u64(seed);
    // Event times on a minute grid over four hours a day ago: numbers get
    // ties, which an opt-out must win.
    let start = (OffsetDateTime::now_utc() - time::Duration::days(1)).replace_second(0).unwrap();
    let start = start.replace_nanosecond(0).unwrap();
    let distinct = deliveries * 7 / 10;
    let recipients = [CLINIC, PHARMACY, DENTAL, UNOWNED];
    let messages: Vec<Message> = (0..distinct)
        .map(|n| {
            let kind = match rng.gen_range(0..100) {
                0..30 => Kind::Stop,
                30..38 => Kind::StopAll,
                38..70 => Kind::Start,
                70..85 => Kind::Help,
                _ => Kind::Other,
            };
            let text = match kind {
                Kind::Stop => *STOPS.choose(&mut rng).unwrap(),
                Kind::StopAll => *STOP_ALLS.choose(&mut rng).unwrap(),
                Kind::Start => *STARTS.choose(&mut rng).unwrap(),
                Kind::Help => *HELPS.choose(&mut rng).unwrap(),
                Kind::Other => *OTHERS.choose(&mut rng).unwrap(),
            };
            let to = *recipients.choose(&mut rng).unwrap();
            let at = start + time::Duration::minutes(rng.gen_range(0..240));
            Message {
                id: format!("soak-{seed}-{n}"),
                number: rng.gen_range(0..numbers),
                to,
                text,
                at,
                effect: effect(kind, to),
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..distinct).collect();
    order.extend((distinct..deliveries).map(|_| rng.gen_range(0..distinct)));
    order.shuffle(&mut rng);
    Workload { numbers, messages, deliveries: order }
}

/// The precedence of a mark: event time, then an opt-out over an opt-in.
type Mark = (OffsetDateTime, bool);

/// The model: what a program may send to a number after `messages`.
fn model_decision(messages: &[&Message], program: &str, default_allowed: bool) -> (String, Option<OffsetDateTime>) {
    let deciding: Option<Mark> = messages
        .iter()
        .filter_map(|m| match m.effect {
            Effect::Sets { scope, opt_out } if scope.is_none_or(|p| p == program) => Some((m.at, opt_out)),
            _ => None,
        })
        .max();
    match deciding {
        Some((at, true)) => ("opted_out".into(), Some(at)),
        Some((at, false)) => ("allowed".into(), Some(at)),
        None if default_allowed => ("allowed".into(), None),
        None => ("no_consent".into(), None),
    }
}

/// Where a message stands in the run: 0 not sent yet, 1 sent, 2 acknowledged.
const SENT: u8 = 1;
const ACKED: u8 = 2;

struct Run {
    base: String,
    /// How long the test waits for an answer before it retries.
    patience: Duration,
    client: reqwest::Client,
    work: Workload,
    status: Vec<AtomicU8>,
    /// Messages by number.
    by_number: Vec<Vec<usize>>,
    next: AtomicUsize,
    done: AtomicBool,
    attempts: AtomicU64,
    server_errors: AtomicU64,
    client_timeouts: AtomicU64,
    queries: AtomicU64,
    violations: std::sync::Mutex<Vec<String>>,
}

impl Run {
    /// Posts one message, signed now, as Standard Webhooks would.
    async fn post(&self, message: &Message) -> Result<reqwest::StatusCode, reqwest::Error> {
        let at = message.at.format(&Rfc3339).unwrap();
        let body = json!({"id": message.id, "from": phone_of(message.number), "to": message.to, "text": message.text,
            "occurred_at": at})
        .to_string();
        let ts = OffsetDateTime::now_utc().unix_timestamp();
        let signature = standard_webhooks::sign(SW_SECRET, &message.id, ts, body.as_bytes()).unwrap();
        let response = self
            .client
            .post(format!("{}/webhooks/standard-webhooks", self.base))
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .timeout(self.patience)
            .body(body)
            .send()
            .await?;
        Ok(response.status())
    }

    /// One worker: takes deliveries in order, retrying each until a 2xx.
    async fn deliver(&self) {
        let mut rng = StdRng::from_entropy();
        loop {
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            let Some(&index) = self.work.deliveries.get(n) else { return };
            let message = &self.work.messages[index];
            let _ = self.status[index].compare_exchange(0, SENT, Ordering::SeqCst, Ordering::SeqCst);
            let mut tries = 0;
            loop {
                tries += 1;
                assert!(tries <= 200, "delivery {} never got a 2xx", message.id);
                self.attempts.fetch_add(1, Ordering::Relaxed);
                match self.post(message).await {
                    Ok(status) if status.is_success() => break,
                    Ok(status) if status.is_server_error() => {
                        self.server_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(status) => panic!("delivery {} answered {status}: a good delivery is never a 4xx", message.id),
                    Err(e) if e.is_timeout() => {
                        self.client_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("delivery {}: {e}", message.id),
                }
                tokio::time::sleep(Duration::from_millis(rng.gen_range(1..10))).await;
            }
            self.status[index].store(ACKED, Ordering::SeqCst);
        }
    }

    /// The latest acknowledged opt-out of `program` (or of all) of a number.
    fn acked_opt_out(&self, number: usize, program: &str) -> Option<OffsetDateTime> {
        self.by_number[number]
            .iter()
            .filter(|&&i| self.status[i].load(Ordering::SeqCst) == ACKED)
            .filter_map(|&i| {
                let m = &self.work.messages[i];
                matches!(m.effect, Effect::Sets { scope, opt_out: true } if scope.is_none_or(|p| p == program))
                    .then_some(m.at)
            })
            .max()
    }

    /// The latest opt-in of `program` of a number sent so far (acknowledged
    /// or not: one in flight may be stored already).
    fn sent_opt_in(&self, number: usize, program: &str) -> Option<OffsetDateTime> {
        self.by_number[number]
            .iter()
            .filter(|&&i| self.status[i].load(Ordering::SeqCst) >= SENT)
            .filter_map(|&i| {
                let m = &self.work.messages[i];
                matches!(m.effect, Effect::Sets { scope: Some(p), opt_out: false } if p == program).then_some(m.at)
            })
            .max()
    }

    /// Asks authorization while the deliveries run: never `allowed` after an
    /// acknowledged opt-out, unless a later opt-in was sent.
    async fn watch(&self) {
        let mut rng = StdRng::from_entropy();
        while !self.done.load(Ordering::SeqCst) {
            let number = rng.gen_range(0..self.work.numbers);
            let (program, category, _) = *CHECKED.choose(&mut rng).unwrap();
            let opted_out_at = self.acked_opt_out(number, program);
            let response = self
                .client
                .post(format!("{}/v1/authorizations", self.base))
                .bearer_auth(AUTHORIZE_KEY)
                .timeout(self.patience)
                .json(&json!({"to": phone_of(number), "program": program, "category": category}))
                .send()
                .await;
            let Ok(response) = response else { continue };
            assert_eq!(response.status(), 200, "authorization always answers");
            let decision: Value = response.json().await.unwrap();
            self.queries.fetch_add(1, Ordering::Relaxed);
            if decision["allowed"] == true {
                if let Some(out) = opted_out_at {
                    if self.sent_opt_in(number, program).is_none_or(|opt_in| opt_in <= out) {
                        self.violations.lock().unwrap().push(format!(
                            "number {number} allowed for {program} after an acknowledged opt-out at {out}: {decision}"
                        ));
                    }
                }
            }
        }
    }
}

/// A server over `store` (wrapped in faults) on a socket; the state and
/// base URL.
async fn serve(store: Arc<dyn ConsentStore>, crypto: Crypto, config_extra: &str) -> (AppState, String) {
    let mut config = Config::from_toml(&format!("{config_extra}\n{}\n{DENTAL_PROGRAM}", config_text())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    config.server.public_base_url = Some(base.clone());
    let parts = Parts {
        store,
        crypto,
        clock: Arc::new(SystemClock),
        sns_network: Arc::new(FakeSns::default()),
        auth: Authenticator::api_keys(&config.api_keys),
    };
    let (state, app) = build(&config, Role::All, parts).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, base)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The soak over `faulty` (already serving at `base` through `state`).
/// `quiet` turns off any other faults before the final reads.
async fn soak(
    state: &AppState,
    faulty: &FaultyStore,
    base: String,
    deliveries: usize,
    numbers: usize,
    patience: Duration,
    quiet: &(dyn Fn() + Sync),
) {
    let seed: u64 = env_or("SOAK_SEED", rand::random());
    eprintln!("soak: SOAK_SEED={seed} FAULT_SEED={} deliveries={deliveries} numbers={numbers}", faulty.seed);
    for (texts, intent) in [
        (&STOPS[..], Intent::OptOut),
        (&STOP_ALLS[..], Intent::OptOutAll),
        (&STARTS[..], Intent::OptIn),
        (&HELPS[..], Intent::Help),
        (&OTHERS[..], Intent::None),
    ] {
        for text in texts {
            assert_eq!(read(text).intent, intent, "the workload's {text:?}");
        }
    }
    let work = workload(seed, deliveries, numbers);
    let mut by_number = vec![Vec::new(); numbers];
    for (i, m) in work.messages.iter().enumerate() {
        by_number[m.number].push(i);
    }
    let run = Arc::new(Run {
        base,
        patience,
        client: http_client(),
        status: (0..work.messages.len()).map(|_| AtomicU8::new(0)).collect(),
        work,
        by_number,
        next: AtomicUsize::new(0),
        done: AtomicBool::new(false),
        attempts: AtomicU64::new(0),
        server_errors: AtomicU64::new(0),
        client_timeouts: AtomicU64::new(0),
        queries: AtomicU64::new(0),
        violations: Default::default(),
    });

    let started = Instant::now();
    let watchers: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn({
                let run = run.clone();
                async move { run.watch().await }
            })
        })
        .collect();
    let workers: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn({
                let run = run.clone();
                async move { run.deliver().await }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    run.done.store(true, Ordering::SeqCst);
    for watcher in watchers {
        watcher.await.unwrap();
    }
    let counts = &faulty.counts;
    eprintln!(
        "soak: {} deliveries in {:?}: {} attempts, {} 5xx, {} client timeouts; {} authorizations asked; \
         store calls {}, injected: {} refused, {} timed out, {} lost answers, {} hung",
        run.work.deliveries.len(),
        started.elapsed(),
        run.attempts.load(Ordering::Relaxed),
        run.server_errors.load(Ordering::Relaxed),
        run.client_timeouts.load(Ordering::Relaxed),
        run.queries.load(Ordering::Relaxed),
        counts.calls.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        counts.timeouts.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
        counts.hangs.load(Ordering::Relaxed),
    );
    let violations = run.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} allowed after an acknowledged opt-out:\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert!(run.server_errors.load(Ordering::Relaxed) > 0, "the faults reached the webhook route");
    assert!(run.queries.load(Ordering::Relaxed) > 0, "authorization was asked during the run");

    // Hung calls land late: wait for them, then read without faults.
    let deadline = Instant::now() + Duration::from_secs(10);
    while faulty.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    faulty.set_faults(false);
    quiet();

    // Every acknowledged message is in the ledger, once; ignored ones are not.
    let service = &state.service;
    let mut mismatches = Vec::new();
    for (n, indices) in run.by_number.iter().enumerate() {
        let phone = PhoneNumber::parse(&phone_of(n)).unwrap();
        let mut stored: BTreeMap<String, usize> = BTreeMap::new();
        for event in service.events(&phone).await.unwrap() {
            *stored.entry(event.event_id).or_default() += 1;
        }
        let expected: BTreeMap<String, usize> = indices
            .iter()
            .map(|&i| &run.work.messages[i])
            .filter(|m| m.effect != Effect::Ignored)
            .map(|m| (format!("standard-webhooks:{}", m.id), 1))
            .collect();
        if stored != expected {
            mismatches.push(format!("number {n}: stored {stored:?}, expected {expected:?}"));
        }
    }
    assert!(mismatches.is_empty(), "ledger differs from the deliveries:\n{}", mismatches.join("\n"));

    // Every number's consent equals the model's.
    let client = http_client();
    let mut differences = Vec::new();
    for (n, indices) in run.by_number.iter().enumerate() {
        let messages: Vec<&Message> = indices.iter().map(|&i| &run.work.messages[i]).collect();
        let requests: Vec<Value> =
            CHECKED.iter().map(|(p, c, _)| json!({"to": phone_of(n), "program": p, "category": c})).collect();
        let answer: Value = client
            .post(format!("{}/v1/authorizations", run.base))
            .bearer_auth(AUTHORIZE_KEY)
            .json(&json!({ "requests": requests }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (k, (program, category, default_allowed)) in CHECKED.iter().enumerate() {
            let (reason, as_of) = model_decision(&messages, program, *default_allowed);
            let got = &answer["results"][k];
            let want_as_of = as_of.map(|t| t.format(&Rfc3339).unwrap());
            if got["reason"] != reason.as_str() || got["as_of"].as_str() != want_as_of.as_deref() {
                differences.push(format!(
                    "number {n} {program}/{category}: got {got}, model says {reason} as of {want_as_of:?}"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} decisions differ from the model:\n{}",
        differences.len(),
        differences.join("\n")
    );

    let report = service.verify_ledger(ScanOptions { rate: 100_000.0 }, &|_, _| {}).await.unwrap();
    assert!(report.intact(), "verify-ledger found breaks: {:?}", report.broken);
    let recorded = run.work.messages.iter().filter(|m| m.effect != Effect::Ignored).count() as u64;
    assert!(report.events >= recorded, "{} events verified, {recorded} recorded", report.events);
    eprintln!("soak: verify-ledger: {} numbers, {} events, intact", report.numbers, report.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_with_one_store_call_in_ten_failing_loses_nothing_and_never_allows_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn ConsentStore> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let keyring = Arc::new(LocalKeyring::open_or_create(dir.path()).unwrap());
    let wrapped = Crypto::generate_keys(keyring.as_ref()).await.unwrap();
    let wrapped = inner.put_wrapped_keys_if_absent(&wrapped).await.unwrap();
    let crypto = Crypto::start(keyring, &wrapped, inner.table(), CacheLimits::default()).await.unwrap();
    let faulty = FaultyStore::new(inner, FaultPlan::mixed(0.10));
    let (state, base) = serve(faulty.clone(), crypto, "").await;

    soak(&state, &faulty, base, env_or("SOAK_DELIVERIES", 10_000), 300, Duration::from_secs(1), &|| ()).await;
}

/// The moto endpoint `./scripts/test` started (this test fails without it).
fn moto() -> String {
    std::env::var("SMS_CONSENT_TEST_MOTO").expect(
        "SMS_CONSENT_TEST_MOTO is not set: these tests need the moto server that ./scripts/test installs and starts",
    )
}

/// What the proxy between the SDK and moto did to DynamoDB calls.
#[derive(Default)]
struct ProxyCounts {
    /// Faults turned off (for the final reads).
    off: AtomicBool,
    calls: AtomicU64,
    refused: AtomicU64,
    throttled: AtomicU64,
    lost: AtomicU64,
}

/// A proxy in front of moto that fails `rate` of the DynamoDB calls as
/// DynamoDB does: a 500 before the call, a throttle, or a 500 after the call
/// was done (the answer lost). The SDK's own retry sees these first.
///
/// It also hands moto one call at a time: moto undoes a cancelled
/// `TransactWriteItems` by restoring a copy of the whole table taken when
/// the transaction began, which erases any write another thread made
/// meanwhile (DynamoDB's transactions are atomic and never do). One call
/// at a time is a valid order of DynamoDB's atomic calls; the service, the
/// SDK and the HTTP side stay concurrent. (`scripts/moto_server.py`, which
/// the test command starts, serialises too; a bare `moto_server` does not.)
async fn faulty_proxy(upstream: String, rate: f64, counts: Arc<ProxyCounts>) -> String {
    use axum::body::{to_bytes, Body};
    use axum::extract::Request;
    use axum::response::Response;
    let client = reqwest::Client::new();
    let rng = Arc::new(std::sync::Mutex::new(StdRng::seed_from_u64(env_or("FAULT_SEED", 7))));
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    let handler = move |request: Request| {
        let (client, upstream, rng, counts) = (client.clone(), upstream.clone(), rng.clone(), counts.clone());
        let one_at_a_time = one_at_a_time.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap();
            let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let dynamodb = target.starts_with("DynamoDB_");
            let fault = if dynamodb && !counts.off.load(Ordering::SeqCst) {
                counts.calls.fetch_add(1, Ordering::Relaxed);
                let mut rng = rng.lock().unwrap();
                rng.gen_bool(rate).then(|| rng.gen_range(0..3))
            } else {
                None
            };
            let error = |status: u16, kind: &str| {
                Response::builder()
                    .status(status)
                    .header("content-type", "application/x-amz-json-1.0")
                    .body(Body::from(
                        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
                        "message": "injected by the soak's proxy"})
                        .to_string(),
                    ))
                    .unwrap()
            };
            match fault {
                Some(0) => {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    return error(500, "InternalServerError");
                }
                Some(1) => {
                    counts.throttled.fetch_add(1, Ordering::Relaxed);
                    return error(400, "ThrottlingException");
                }
                _ => {}
            }
            let mut forward = client.request(parts.method.clone(), format!("{upstream}{}", parts.uri));
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    forward = forward.header(name, value);
                }
            }
            // In a task of its own: a caller that gives up (the SDK's attempt
            // timeout) must not let the next call reach moto before this
            // one is done there.
            let forwarded = tokio::spawn(async move {
                let _turn = one_at_a_time.lock().await;
                let answer = forward.body(body).send().await.unwrap();
                let (status, headers) = (answer.status().as_u16(), answer.headers().clone());
                (status, headers, answer.bytes().await.unwrap())
            });
            let (status, headers, bytes) = forwarded.await.unwrap();
            if fault.is_some() {
                counts.lost.fetch_add(1, Ordering::Relaxed);
                return error(500, "InternalServerError");
            }
            let mut response = Response::builder().status(status);
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    response = response.header(name, value);
                }
            }
            response.body(Body::from(bytes)).unwrap()
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(handler)).await.unwrap() });
    url
}

fn dynamodb_config(endpoint: &str, table: &str, alias: &str) -> String {
    format!(
        "[storage]\nbackend = \"dynamodb\"\ntable = \"{table}\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n\
         [keys]\nbackend = \"kms\"\nkey_id = \"{alias}\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_soak_on_dynamodb_with_the_sdk_retrying_injected_faults() {
    let endpoint = moto();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let suffix: u64 = rand::random();
    let (table, alias) = (format!("soak-{suffix:x}"), format!("alias/soak-{suffix:x}"));
    let programs = format!("{}\n{DENTAL_PROGRAM}", config_text());
    // Provisioned straight on moto; then served through the faulty proxy.
    let direct = Config::from_toml(&format!("{}\n{programs}", dynamodb_config(&endpoint, &table, &alias))).unwrap();
    sms_consent::runtime::backends::Backends::open(&direct).await.unwrap().provision(&direct).await.unwrap();
    let counts = Arc::new(ProxyCounts::default());
    let proxy = faulty_proxy(endpoint, 0.10, counts.clone()).await;
    let extra = dynamodb_config(&proxy, &table, &alias);
    let config = Config::from_toml(&format!("{extra}\n{programs}")).unwrap();
    let backends = sms_consent::runtime::backends::Backends::open(&config).await.unwrap();
    let crypto = backends.crypto(&config).await.unwrap();
    // moto answers slower than the embedded store: a hang outlasts the
    // test's longer patience.
    let plan = FaultPlan { hang_wait: Duration::from_secs(9), ..FaultPlan::mixed(0.10) };
    let faulty = FaultyStore::new(backends.store.clone(), plan);
    let (state, base) = serve(faulty.clone(), crypto, &extra).await;

    let quiet = || counts.off.store(true, Ordering::SeqCst);
    soak(&state, &faulty, base, env_or("SOAK_DYNAMODB_DELIVERIES", 500), 40, Duration::from_secs(8), &quiet).await;

    eprintln!(
        "soak (DynamoDB): proxy saw {} DynamoDB calls: {} refused, {} throttled, {} answers lost",
        counts.calls.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.throttled.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed),
    );
    assert!(counts.lost.load(Ordering::Relaxed) > 0, "the SDK met lost answers");
}
