//! Local mode: one process over the embedded store and the local keyring.
//! With no config it makes a demo program and development credentials in the
//! data directory and prints how to try it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::adapters::local_keyring::write_private;
use crate::config::{
    ApiKeyConfig, ApiScope, Config, ConfigError, ProgramConfig, ProvidersConfig, Secret, ServerConfig,
    StandardWebhooksConfig, TwilioConfig,
};
use crate::domain::DefaultConsent;
use crate::http::auth::Authenticator;
use crate::http::error::ApiError;
use crate::http::{AppState, Role};
use crate::ports::{Clock, SystemClock};
use crate::providers::aws_sns::{HttpSnsNetwork, SnsNetwork};
use crate::providers::twilio;
use crate::runtime::backends::{Backends, Calls};
use crate::runtime::{build, outbox, Parts, StartError};

pub const CREDENTIALS_FILE: &str = "dev-credentials.json";
pub const DEMO_PROGRAM: &str = "demo-clinic";
pub const DEMO_CLINIC_NUMBER: &str = "+12025550100";
pub const DEMO_PATIENT_NUMBER: &str = "+12025550123";

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let context = context.into();
    move |source| StartError::Io { context, source }
}

/// Development credentials, made once per data directory (mode 0600).
#[derive(Clone, Serialize, Deserialize)]
pub struct DevCredentials {
    pub twilio_auth_token: String,
    pub standard_webhooks_secret: String,
    pub api_key: String,
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

impl DevCredentials {
    fn load_or_create(dir: &Path) -> Result<Self, StartError> {
        let path = dir.join(CREDENTIALS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| StartError::Other(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use base64::Engine;
                let mut secret = [0u8; 24];
                rand::rngs::OsRng.fill_bytes(&mut secret);
                let creds = DevCredentials {
                    twilio_auth_token: random_token(16),
                    standard_webhooks_secret: format!(
                        "whsec_{}",
                        base64::engine::general_purpose::STANDARD.encode(secret)
                    ),
                    api_key: format!("dev_{}", random_token(20)),
                };
                write_private(&path, &serde_json::to_vec_pretty(&creds).expect("serialises"))
                    .map_err(io(path.display().to_string()))?;
                Ok(creds)
            }
            Err(e) => Err(io(path.display().to_string())(e)),
        }
    }
}

/// The config used when none is given: a demo program whose patients
/// consented at intake, and Twilio, Standard Webhooks and an API key with
/// every scope, all with the development credentials.
pub fn demo_config(creds: &DevCredentials) -> Config {
    Config {
        programs: vec![ProgramConfig {
            id: DEMO_PROGRAM.into(),
            name: "Demo Clinic Reminders".into(),
            organization: "Demo Clinic".into(),
            numbers: vec![DEMO_CLINIC_NUMBER.into()],
            help_contact: "555-0100".into(),
            frequency: "Msg frequency varies".into(),
            categories: vec!["appointment_reminders".into(), "billing".into()],
            default: DefaultConsent::OptedIn,
            replies: Default::default(),
            unclear: Default::default(),
            reply_mode: Default::default(),
            // The demo answers the same at any hour; see "Sending rules".
            send_rules: Vec::new(),
            resume_wording: None,
        }],
        providers: ProvidersConfig {
            twilio: Some(TwilioConfig { auth_tokens: vec![Secret::new(creds.twilio_auth_token.clone())], send: None }),
            standard_webhooks: Some(StandardWebhooksConfig {
                secrets: vec![Secret::new(creds.standard_webhooks_secret.clone())],
            }),
            ..ProvidersConfig::default()
        },
        api_keys: vec![ApiKeyConfig {
            name: Some("local-dev".into()),
            token_sha256: Some(crate::http::auth::sha256_hex(&creds.api_key)),
            token: None,
            scopes: vec![
                ApiScope::Authorize,
                ApiScope::Record,
                ApiScope::ReadHistory,
                ApiScope::Erase,
                ApiScope::Review,
                ApiScope::Audit,
                ApiScope::Metrics,
            ],
        }],
        ..Config::default()
    }
}

/// What `serve` is asked to do.
#[derive(Clone, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// The network SNS verification uses; the real one when `None`.
    pub sns_network: Option<Arc<dyn SnsNetwork>>,
}

/// A running local server.
pub struct LocalServer {
    pub addr: SocketAddr,
    pub config: Config,
    /// Set when running on the demo config.
    pub dev_credentials: Option<DevCredentials>,
    pub state: AppState,
    /// AWS calls made so far (zero on the embedded store and local keyring).
    pub calls: Calls,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// The outbox worker's loop (none when no provider can send: nothing
    /// would be delivered, so nothing is polled), and how to stop it.
    outbox_stop: watch::Sender<bool>,
    outbox_task: Option<JoinHandle<()>>,
}

pub fn load_config(path: &Path) -> Result<Config, StartError> {
    let text = std::fs::read_to_string(path).map_err(io(path.display().to_string()))?;
    Config::from_toml(&text)
        .map_err(|e| ConfigError { field: e.field, message: format!("{} ({})", e.message, path.display()) }.into())
}

/// Opens the store and keys, binds the listener and starts serving.
pub async fn start(options: Options, clock: Arc<dyn Clock>) -> Result<LocalServer, StartError> {
    let mut config = match &options.config {
        Some(path) => load_config(path)?,
        None => Config::default(),
    };
    if let Some(listen) = &options.listen {
        config.server.listen = listen.clone();
    }
    if let Some(dir) = &options.data_dir {
        config.server.data_dir = dir.clone();
    }
    let dir = config.server.data_dir.clone();
    create_private_dir(&dir)?;
    let dev_credentials = match &options.config {
        Some(_) => None,
        None => {
            let creds = DevCredentials::load_or_create(&dir)?;
            let demo = demo_config(&creds);
            config.programs = demo.programs;
            config.providers = demo.providers;
            config.api_keys = demo.api_keys;
            Some(creds)
        }
    };
    config.validate()?;
    if config.metrics.enabled && !crate::metrics::install_prometheus() {
        tracing::warn!("metrics: another recorder was installed first; /metrics answers 404");
    }

    let backends = Backends::open(&config).await.map_err(StartError::other)?;
    let crypto = backends.crypto(&config).await.map_err(StartError::other)?;

    let listener =
        TcpListener::bind(&config.server.listen).await.map_err(io(format!("listen on {}", config.server.listen)))?;
    let addr = listener.local_addr().map_err(io("listener address"))?;
    if config.server.public_base_url.is_none() {
        config.server.public_base_url = Some(format!("http://{addr}"));
    }
    let parts = Parts {
        store: backends.store.clone(),
        crypto,
        clock,
        sns_network: options.sns_network.clone().unwrap_or_else(|| Arc::new(HttpSnsNetwork::new())),
        auth: Authenticator::api_keys(&config.api_keys),
    };
    let (state, app) = build(&config, Role::All, parts)?;
    let limits = ConnectionLimits::from_config(&config.server);
    let app = with_request_timeout(app, limits.request_timeout);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, app, limits, rx));
    let (outbox_stop, stopped) = watch::channel(false);
    let poll = Duration::from_millis(config.outbox.poll_interval_ms);
    let worker = outbox::worker(&state, &config);
    let outbox_task =
        state.providers.iter().any(|p| p.sends()).then(|| tokio::spawn(outbox::run_local(worker, poll, stopped)));
    tracing::info!(%addr, data_dir = %dir.display(), "sms-consent listening");
    Ok(LocalServer {
        addr,
        config,
        dev_credentials,
        state,
        calls: backends.calls.clone(),
        shutdown: Some(tx),
        task,
        outbox_stop,
        outbox_task,
    })
}

/// How the local server protects itself from slow or idle clients.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    header_read_timeout: Duration,
    request_timeout: Duration,
    max_connections: usize,
}

/// Descriptors kept back from the connection limit for the store, the
/// keyring and the process itself.
const RESERVED_DESCRIPTORS: u64 = 64;

impl ConnectionLimits {
    fn from_config(server: &ServerConfig) -> Self {
        let configured = server.max_connections;
        let max_connections = match open_file_limit() {
            Some(limit) if (configured as u64).saturating_add(RESERVED_DESCRIPTORS) > limit => {
                let fitted = limit.saturating_sub(RESERVED_DESCRIPTORS).max(1) as usize;
                tracing::warn!(
                    configured,
                    open_file_limit = limit,
                    max_connections = fitted,
                    "server.max_connections lowered to fit the open-file limit"
                );
                fitted
            }
            _ => configured,
        };
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(server.header_read_timeout_seconds),
            request_timeout: Duration::from_secs(server.request_timeout_seconds),
            max_connections,
        }
    }
}

/// The soft limit on open descriptors (`ulimit -n`), where there is one.
fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct it is given and nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 && limit.rlim_cur != libc::RLIM_INFINITY {
            return Some(limit.rlim_cur as u64);
        }
    }
    None
}

/// A request not answered in time gets 408 (problem details) and its
/// connection closes. A write already under way still completes or not as
/// a whole; the provider's retry is then applied once.
fn with_request_timeout(app: Router, limit: Duration) -> Router {
    app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(limit, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::RequestTimeout(limit.as_secs()).into_response(),
            }
        },
    ))
}

/// Serves HTTP/1.1 until `shutdown` fires, then lets requests in flight
/// finish. Each connection must send its request head within the header
/// timeout; at most `max_connections` are served at once (the rest wait in
/// the listen backlog), so idle or slow clients cannot starve the others.
async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was
                    // taken: wait a moment rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// `sms-consent provision`: creates what the config names, idempotently.
pub async fn provision(path: &Path) -> Result<Vec<String>, StartError> {
    let config = load_config(path)?;
    create_private_dir(&config.server.data_dir)?;
    let backends = Backends::open(&config).await.map_err(StartError::other)?;
    backends.provision(&config).await.map_err(StartError::other)
}

/// The public half of the evidence signing key, to publish.
pub struct EvidencePublicKey {
    /// `ed25519-<hex>`: what a bundle's `signature.key_id` names.
    pub key_id: String,
    /// The 32-byte Ed25519 public key, base64.
    pub base64: String,
    /// The same key as PEM (SubjectPublicKeyInfo).
    pub pem: String,
}

/// `sms-consent evidence-public-key`: unwraps the evidence signing key of
/// the ledger the config names (one key service call) and gives its public
/// half. Never creates a ledger or keys.
pub async fn evidence_public_key(path: &Path) -> Result<EvidencePublicKey, StartError> {
    use base64::Engine;
    let config = load_config(path)?;
    if config.storage.backend == crate::config::StorageBackend::Embedded
        && crate::adapters::embedded::ledger_file(&config.server.data_dir).map_err(StartError::other)?
            != crate::adapters::embedded::LedgerFile::Present
    {
        return Err(StartError::Other(format!(
            "no ledger at {}",
            config.server.data_dir.join(crate::adapters::embedded::DATABASE_FILE).display()
        )));
    }
    let backends = Backends::open(&config).await.map_err(StartError::other)?;
    let signer = backends.evidence_signer().await.map_err(StartError::other)?;
    Ok(EvidencePublicKey {
        key_id: signer.key_id().to_owned(),
        base64: base64::engine::general_purpose::STANDARD.encode(signer.public_key().as_bytes()),
        pem: signer.public_key_pem().map_err(StartError::other)?,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), StartError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io(format!("create data dir {}", dir.display())))
}

/// Starts the server with the system clock.
pub async fn start_default(options: Options) -> Result<LocalServer, StartError> {
    start(options, Arc::new(SystemClock)).await
}

impl LocalServer {
    pub fn base_url(&self) -> String {
        self.config.server.public_base_url.clone().unwrap_or_else(|| format!("http://{}", self.addr))
    }

    /// Stops taking requests, lets in-flight ones finish (their writes are
    /// durable before they answer), then closes the store.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = (&mut self.task).await.map_err(std::io::Error::other)?;
        // The worker finishes the reply it is sending, then stops.
        let _ = self.outbox_stop.send(true);
        if let Some(task) = self.outbox_task.take() {
            task.await.map_err(std::io::Error::other)?;
        }
        // Dropping the last handle closes the database file.
        drop(self.state);
        result
    }

    /// Text that tells a person what is running and how to try it.
    pub fn banner(&self) -> String {
        let base = self.base_url();
        let mut out = format!(
            "sms-consent is listening on http://{addr}\n\
             \n  health        GET  {base}/healthz\
             \n  Twilio        POST {base}/webhooks/twilio\
             \n  Std Webhooks  POST {base}/webhooks/standard-webhooks\
             \n  authorize     POST {base}/v1/authorizations\n\
             \n  data dir      {dir}\n",
            addr = self.addr,
            dir = self.config.server.data_dir.display(),
        );
        let Some(creds) = &self.dev_credentials else {
            return out;
        };
        let run = random_token(4);
        out.push_str(&format!(
            "\nNo config given: running the demo program '{DEMO_PROGRAM}' (clinic number {DEMO_CLINIC_NUMBER}).\n\
             Development credentials (kept in {dir}/{CREDENTIALS_FILE}):\n\
             \n  Twilio auth token          {tw}\
             \n  Standard Webhooks secret   {sw}\
             \n  API key (every scope)      {key}\n",
            dir = self.config.server.data_dir.display(),
            tw = creds.twilio_auth_token,
            sw = creds.standard_webhooks_secret,
            key = creds.api_key,
        ));
        for (label, text) in [("STOP", "STOP"), ("START", "START"), ("HELP", "HELP")] {
            let params = vec![
                ("MessageSid".to_owned(), format!("SMdemo{run}{label}")),
                ("From".to_owned(), DEMO_PATIENT_NUMBER.to_owned()),
                ("To".to_owned(), DEMO_CLINIC_NUMBER.to_owned()),
                ("Body".to_owned(), text.to_owned()),
            ];
            let url = format!("{base}/webhooks/twilio");
            let signature = twilio::sign(&creds.twilio_auth_token, &url, &params);
            out.push_str(&format!(
                "\nSend a signed {label} as Twilio would:\n  curl -sS {url} -H 'X-Twilio-Signature: {signature}'"
            ));
            for (k, v) in &params {
                out.push_str(&format!(" \\\n    --data-urlencode '{k}={v}'"));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "\nAsk whether the demo program may send to that number:\n  curl -sS {base}/v1/authorizations -H 'Authorization: Bearer {key}' \\\n    -H 'Content-Type: application/json' \\\n    -d '{{\"to\":\"{DEMO_PATIENT_NUMBER}\",\"program\":\"{DEMO_PROGRAM}\",\"category\":\"appointment_reminders\"}}'\n",
            key = creds.api_key,
        ));
        out
    }
}
