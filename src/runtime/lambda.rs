//! Lambda wiring shared by the three functions (`src/bin/webhook.rs`,
//! `authorize.rs`, `consents.rs`): configuration from SSM and Secrets
//! Manager, AWS clients built once, the shared Router for one role.
//!
//! Environment (set by `infra/template.yaml`; nothing secret):
//! - `SMS_CONSENT_CONFIG_PARAMETER`: SSM parameter holding the non-secret
//!   TOML (programs, templates, provider settings, `[[iam_principals]]`).
//! - `SMS_CONSENT_SECRETS`: Secrets Manager secret holding a TOML fragment
//!   with the provider secrets (`[providers.twilio] auth_tokens = [...]`...),
//!   merged over the parameter's TOML. Set for `webhook` and `outbox` only:
//!   `authorize` and `consents` use no provider, never read it, and drop the
//!   parameter's `[providers.*]` sections.
//! - `SMS_CONSENT_TABLE`, `SMS_CONSENT_KEY_ID`: the table and KMS key.
//! - `SMS_CONSENT_PUBLIC_BASE_URL` (optional): the URL providers sign.
//! - `SMS_CONSENT_SNS_TOPIC_ARNS` (optional, comma-separated): the SNS topics
//!   accepted on `/webhooks/aws-sns`, from the template's parameter.
//! - `SMS_CONSENT_METRICS_NAMESPACE` (optional): the CloudWatch namespace of
//!   the EMF lines each invocation writes (`crate::metrics::Emf`).

use std::sync::Arc;

use axum::Router;

use crate::config::Config;
use crate::crypto::Crypto;
use crate::http::auth::Authenticator;
use crate::http::Role;
use crate::metrics::Emf;
use crate::ports::keys::{pid_of, OUTBOX_PREFIX};
use crate::ports::{Clock, SystemClock};
use crate::providers::aws_sns::{HttpSnsNetwork, SnsNetwork};
use crate::runtime::backends::Backends;
use crate::runtime::{build, outbox, Parts, StartError};
use crate::service::outbox::{Attempt, OutboxWorker, Skip};
use aws_lambda_events::event::dynamodb::Event as DynamoEvent;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_http::LambdaEvent;

pub const CONFIG_PARAMETER_ENV: &str = "SMS_CONSENT_CONFIG_PARAMETER";
pub const SECRETS_ENV: &str = "SMS_CONSENT_SECRETS";
pub const TABLE_ENV: &str = "SMS_CONSENT_TABLE";
pub const KEY_ID_ENV: &str = "SMS_CONSENT_KEY_ID";
pub const PUBLIC_BASE_URL_ENV: &str = "SMS_CONSENT_PUBLIC_BASE_URL";
pub const SNS_TOPIC_ARNS_ENV: &str = "SMS_CONSENT_SNS_TOPIC_ARNS";

/// Where a function finds its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_parameter: String,
    pub secret_id: Option<String>,
    pub table: String,
    pub key_id: String,
    pub public_base_url: Option<String>,
    pub sns_topic_arns: Vec<String>,
}

impl Settings {
    pub fn from_env() -> Result<Self, StartError> {
        let required = |name: &str| std::env::var(name).map_err(|_| StartError::Other(format!("{name} is not set")));
        let optional = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Settings {
            config_parameter: required(CONFIG_PARAMETER_ENV)?,
            secret_id: optional(SECRETS_ENV),
            table: required(TABLE_ENV)?,
            key_id: required(KEY_ID_ENV)?,
            public_base_url: optional(PUBLIC_BASE_URL_ENV),
            sns_topic_arns: optional(SNS_TOPIC_ARNS_ENV)
                .map(|list| list.split(',').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }

    /// The storage and key settings alone: enough to unwrap the keys while
    /// the rest of the config is still being fetched.
    fn backends_config(&self) -> Config {
        let mut config = Config::default();
        config.storage.backend = crate::config::StorageBackend::Dynamodb;
        config.storage.table = Some(self.table.clone());
        config.keys.backend = crate::config::KeysBackend::Kms;
        config.keys.key_id = Some(self.key_id.clone());
        config
    }

    /// What the environment says, as TOML values laid over the config: the
    /// table and key always; the signed URL and SNS topics when set.
    fn overlay(&self) -> toml::Table {
        fn table<const N: usize>(entries: [(&str, toml::Value); N]) -> toml::Value {
            toml::Value::Table(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        }
        let text = |s: &str| toml::Value::String(s.to_owned());
        let mut overlay = toml::Table::new();
        overlay.insert("storage".into(), table([("backend", text("dynamodb")), ("table", text(&self.table))]));
        overlay.insert("keys".into(), table([("backend", text("kms")), ("key_id", text(&self.key_id))]));
        if let Some(url) = &self.public_base_url {
            overlay.insert("server".into(), table([("public_base_url", text(url))]));
        }
        if !self.sns_topic_arns.is_empty() {
            let topics = toml::Value::Array(self.sns_topic_arns.iter().map(|a| text(a)).collect());
            overlay.insert("providers".into(), table([("aws_sns", table([("topic_arns", topics)]))]));
        }
        overlay
    }
}

/// Merges `overlay` into `base`, tables key by key.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The parameter's TOML, the secret's TOML over it, and the settings' table,
/// key and URL over both; validated like any config. A function whose role
/// uses no provider drops the `[providers.*]` sections: it never reads their
/// secrets, so they are not its config.
pub fn compose(settings: &Settings, parameter: &str, secret: Option<&str>, role: Role) -> Result<Config, StartError> {
    let parse =
        |text: &str, what: &str| text.parse::<toml::Table>().map_err(|e| StartError::Other(format!("{what}: {e}")));
    let mut table = parse(parameter, "config parameter")?;
    if let Some(secret) = secret {
        merge(&mut table, parse(secret, "secrets")?);
    }
    merge(&mut table, settings.overlay());
    if !role.uses_providers() {
        table.remove("providers");
    }
    Config::from_toml(&toml::to_string(&table).map_err(|e| StartError::Other(e.to_string()))?)
        .map_err(|e| StartError::Other(format!("config: {e}")))
}

/// The Router for one role over ready backends; callers are IAM principals.
pub fn assemble(
    config: &Config,
    role: Role,
    backends: &Backends,
    crypto: Crypto,
    clock: Arc<dyn Clock>,
    sns_network: Arc<dyn SnsNetwork>,
) -> Result<Router, StartError> {
    let auth = Authenticator::iam(&config.iam_principals);
    let parts = Parts { store: backends.store.clone(), crypto, clock, sns_network, auth };
    Ok(build(config, role, parts)?.1)
}

/// Cold start: one SDK config; the SSM parameter, the provider secret (a
/// role that uses providers) and the key unwrapping all at once (`load`);
/// then the Router.
pub async fn app(role: Role) -> Result<Router, StartError> {
    let (config, backends, crypto) = load(role).await?;
    install_emf();
    let started = std::time::Instant::now();
    let router = assemble(&config, role, &backends, crypto, Arc::new(SystemClock), Arc::new(HttpSnsNetwork::new()));
    step("router", started);
    router
}

/// A cold start's step and its time, at debug level (`RUST_LOG=sms_consent=debug`;
/// `scripts/bench-coldstart --debug-log`).
fn step(name: &'static str, started: std::time::Instant) {
    tracing::debug!(step = name, ms = started.elapsed().as_secs_f64() * 1000.0, "cold start");
}

/// The EMF recorder, its lines on stdout beside the JSON logs (CloudWatch
/// Logs reads them as metrics). Always: the template's alarms (signature
/// failures, integrity, failed replies) read these metrics, so
/// `[metrics] enabled` (the local `/metrics` route) does not turn them off.
fn install_emf() {
    let namespace = std::env::var(crate::metrics::NAMESPACE_ENV)
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| crate::metrics::DEFAULT_NAMESPACE.to_owned());
    if Emf::install(&namespace, Box::new(std::io::stdout())).is_none() {
        tracing::warn!("metrics: another recorder was installed first; no EMF lines");
    }
}

/// One invocation of an HTTP function: the Router's answer, then the
/// invocation's EMF lines (all its counts in one set of lines).
pub async fn invoke(
    mut app: Router,
    request: lambda_http::Request,
) -> Result<axum::response::Response, std::convert::Infallible> {
    let response = lambda_http::Service::call(&mut app, request).await;
    if let Some(emf) = Emf::installed() {
        emf.flush();
    }
    response
}

/// What every function reads at a cold start, all at once: the config
/// parameter, the provider secrets (only a role that uses providers: the
/// others hold no permission to read them), and the index and integrity
/// keys.
async fn load(role: Role) -> Result<(Config, Backends, Crypto), StartError> {
    let started = std::time::Instant::now();
    let settings = Settings::from_env()?;
    // The numbering metadata (the clinic numbers' validation needs it) loads
    // on another thread while the fetches below wait on the network.
    let metadata = tokio::task::spawn_blocking(crate::domain::phone::load_metadata);
    let sdk = crate::adapters::aws::sdk_config(None, None).await;
    step("sdk config", started);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let backends_config = settings.backends_config();
    let backends =
        Backends::open_with(&backends_config, Some(&sdk)).await.map_err(|e| StartError::Other(e.to_string()))?;
    step("clients", started);

    let parameter = async {
        let out =
            ssm.get_parameter().name(&settings.config_parameter).with_decryption(true).send().await.map_err(|e| {
                StartError::Other(format!(
                    "SSM parameter {}: {}",
                    settings.config_parameter,
                    aws_sdk_ssm::error::DisplayErrorContext(&e)
                ))
            })?;
        out.parameter()
            .and_then(|p| p.value())
            .map(str::to_owned)
            .ok_or_else(|| StartError::Other("SSM parameter has no value".into()))
    };
    let secret = async {
        let Some(id) = settings.secret_id.as_ref().filter(|_| role.uses_providers()) else {
            return Ok(None);
        };
        // Its client only where it is read: `authorize` and `consents` make none.
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let out = secrets.get_secret_value().secret_id(id).send().await.map_err(|e| {
            StartError::Other(format!("secret {id}: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(&e)))
        })?;
        Ok(out.secret_string().map(str::to_owned))
    };
    let crypto = async {
        let crypto = backends.crypto(&backends_config).await.map_err(|e| StartError::Other(e.to_string()));
        step("keys", started);
        crypto
    };
    // The config is composed and validated (on a blocking thread) as soon as
    // the parameter and the secret are in, while the keys (a read, then KMS)
    // may still be on their way.
    let config = async {
        let (parameter, secret) = tokio::try_join!(parameter, secret)?;
        step("parameter and secret", started);
        // A panic there would only mean the metadata loads again in compose.
        let _ = metadata.await;
        step("numbering metadata", started);
        let settings = settings.clone();
        let config = tokio::task::spawn_blocking(move || compose(&settings, &parameter, secret.as_deref(), role))
            .await
            .map_err(StartError::other)??;
        step("config validated", started);
        Ok(config)
    };
    let (config, crypto) = tokio::try_join!(config, crypto)?;
    step("config and keys", started);
    Ok((config, backends, crypto))
}

/// The `outbox` function's worker, over the same assembly.
pub async fn outbox_worker() -> Result<OutboxWorker, StartError> {
    let (config, backends, crypto) = load(Role::Webhook).await?;
    install_emf();
    let parts = Parts {
        store: backends.store.clone(),
        crypto,
        clock: Arc::new(SystemClock),
        sns_network: Arc::new(HttpSnsNetwork::new()),
        auth: Authenticator::iam(&[]),
    };
    let (state, _) = build(&config, Role::Webhook, parts)?;
    Ok(outbox::worker(&state, &config))
}

/// Time kept back from an invocation's deadline to record outcomes.
const DEADLINE_MARGIN: time::Duration = time::Duration::seconds(10);

/// One batch of the table's stream (filtered by the event source mapping
/// to new `OUTBOX#` items): each item is delivered, retrying temporary
/// failures in place until the invocation's deadline; an item still not
/// final (a retry due later, a lease held elsewhere, a store error) is
/// reported by its sequence number so Lambda retries it (bounded by the
/// mapping's retries, then its dead-letter queue).
pub async fn handle_stream(
    worker: &OutboxWorker,
    event: DynamoEvent,
    deadline: time::OffsetDateTime,
) -> DynamoDbEventResponse {
    let mut failures = Vec::new();
    for record in event.records {
        let sequence = record.change.sequence_number.clone();
        // The keys in DynamoDB's JSON form: {"PK": {"S": "PHONE#…"}, …}.
        let keys = serde_json::to_value(&record.change.keys).unwrap_or_default();
        let key = |name: &str| keys.get(name).and_then(|v| v.get("S")).and_then(|v| v.as_str()).map(str::to_owned);
        let target = key("PK")
            .and_then(|pk| pid_of(&pk).map(str::to_owned))
            .zip(key("SK").and_then(|sk| sk.strip_prefix(OUTBOX_PREFIX).map(str::to_owned)));
        let Some((pid, event_id)) = target else {
            tracing::warn!("a stream record that is not an outbox item; skipped");
            continue;
        };
        let done = match worker.deliver_until(&pid, &event_id, deadline).await {
            Ok(Attempt::Finished(_)) | Ok(Attempt::Skipped(Skip::Gone | Skip::Done(_) | Skip::NoSender)) => true,
            Ok(other) => {
                tracing::warn!(pid = %pid, outcome = ?other, "reply not final in this invocation; Lambda will retry");
                false
            }
            Err(error) => {
                tracing::error!(pid = %pid, %error, "reply delivery failed; Lambda will retry");
                false
            }
        };
        if !done {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = sequence;
            failures.push(failure);
        }
    }
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failures;
    response
}

/// The whole of the `outbox` function's `main`.
pub async fn run_outbox() -> Result<(), lambda_http::Error> {
    init_logs();
    let worker = outbox_worker().await.map_err(|e| {
        tracing::error!(error = %e, "cold start failed");
        e
    })?;
    let worker = &worker;
    lambda_http::lambda_runtime::run(lambda_http::service_fn(move |event: LambdaEvent<DynamoEvent>| async move {
        let deadline = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(event.context.deadline) * 1_000_000)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
            - DEADLINE_MARGIN;
        let response = handle_stream(worker, event.payload, deadline).await;
        if let Some(emf) = Emf::installed() {
            emf.flush();
        }
        Ok::<_, lambda_http::Error>(response)
    }))
    .await
}

/// JSON logs to CloudWatch (no ANSI, no local time: Lambda stamps lines).
pub fn init_logs() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_ansi(false)
        .without_time()
        .with_current_span(false)
        .init();
}

/// The whole of a function's `main`.
pub async fn run(role: Role) -> Result<(), lambda_http::Error> {
    init_logs();
    let app = app(role).await.map_err(|e| {
        tracing::error!(error = %e, "cold start failed");
        e
    })?;
    lambda_http::run(lambda_http::service_fn(move |request| invoke(app.clone(), request))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            config_parameter: "/p".into(),
            secret_id: Some("s".into()),
            table: "sms-consent-prod".into(),
            key_id: "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            public_base_url: Some("https://abc.execute-api.us-east-1.amazonaws.com/prod".into()),
            sns_topic_arns: vec!["arn:aws:sns:us-east-1:123456789012:inbound".into()],
        }
    }

    #[test]
    fn the_secret_and_the_settings_are_laid_over_the_parameter() {
        let parameter = "[server]\npublic_base_url = \"https://old.example\"\n[storage]\nbackend = \"embedded\"\n[providers.twilio]\nauth_tokens = [\"placeholder\"]\n";
        let secret = "[providers.twilio]\nauth_tokens = [\"real-token\"]\n[providers.sinch]\nsecrets = [\"s\"]\n";
        let config = compose(&settings(), parameter, Some(secret), Role::Webhook).unwrap();
        assert_eq!(config.providers.twilio.unwrap().auth_tokens[0].expose(), "real-token");
        assert!(config.providers.sinch.is_some());
        assert_eq!(config.storage.table.as_deref(), Some("sms-consent-prod"));
        assert_eq!(
            config.server.public_base_url.as_deref(),
            Some("https://abc.execute-api.us-east-1.amazonaws.com/prod")
        );
        assert_eq!(config.providers.aws_sns.unwrap().topic_arns, ["arn:aws:sns:us-east-1:123456789012:inbound"]);
    }

    #[test]
    fn settings_are_laid_over_as_values_not_as_escaped_text() {
        // Rust's `{:?}` escaping is not TOML's: `\u{7f}` or a quote would
        // have broken (or changed) the text overlay.
        let odd = "https://example.org/st\"age\\\u{7f}";
        let settings = Settings { public_base_url: Some(odd.into()), sns_topic_arns: vec![], ..settings() };
        let config = compose(&settings, "", None, Role::Webhook).unwrap();
        assert_eq!(config.server.public_base_url.as_deref(), Some(odd));
        assert!(config.providers.aws_sns.is_none());
    }

    #[test]
    fn a_bad_parameter_names_its_field() {
        for role in [Role::Webhook, Role::Authorize] {
            let err = compose(&settings(), "[[programs]]\nid = \"x\"\n", None, role).unwrap_err();
            assert!(err.to_string().contains("programs"), "{err}");
        }
    }

    #[test]
    fn a_role_without_provider_routes_drops_the_provider_sections_it_has_no_secrets_for() {
        // The parameter's non-secret half of a section; its secret half is in
        // the secret, which these functions never read.
        let parameter = "[providers.vonage]\nsignature_method = \"sha256\"\n[providers.twilio]\n";
        let err = compose(&settings(), parameter, None, Role::Webhook).unwrap_err();
        assert!(err.to_string().contains("auth_tokens"), "the webhook function needs the secret: {err}");
        for role in [Role::Authorize, Role::Consents] {
            let config = compose(&settings(), parameter, None, role).unwrap();
            assert!(config.providers.vonage.is_none() && config.providers.aws_sns.is_none(), "{role:?}");
        }
        assert!(Role::Webhook.uses_providers() && Role::All.uses_providers());
    }
}
