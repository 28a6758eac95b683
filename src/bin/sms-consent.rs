//! The `sms-consent` command: `serve` runs the local server; the other
//! subcommands are small tools. Only wiring lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use sms_consent::ports::SystemClock;
use sms_consent::providers::aws_sns::HttpSnsNetwork;
use sms_consent::runtime::local::{self, Options};
use sms_consent::runtime::StartError;

#[derive(Parser)]
#[command(name = "sms-consent", version, about = "The SMS consent ledger for healthcare")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service locally over the embedded store.
    Serve {
        /// TOML config file; without one, a demo program and development
        /// credentials are used.
        #[arg(long, env = "SMS_CONSENT_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (overrides `server.listen`).
        #[arg(long, env = "SMS_CONSENT_LISTEN")]
        listen: Option<String>,
        /// Data directory (overrides `server.data_dir`).
        #[arg(long, env = "SMS_CONSENT_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Create what the config names when it is missing: the DynamoDB table,
    /// the KMS key and alias (with an endpoint_url, i.e. an emulator), and
    /// the wrapped index and integrity keys. Safe to run again.
    Provision {
        #[arg(long, env = "SMS_CONSENT_CONFIG")]
        config: PathBuf,
    },
    /// Check a config file and report the first problem, naming its field.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Walk every number's event chain and report each break, by blind
    /// index. Exit 0: intact; 1: broken (those numbers are quarantined: they
    /// deny); 2: could not run. Stop the local server first (the embedded
    /// ledger opens in one process at a time).
    VerifyLedger {
        #[arg(long, env = "SMS_CONSENT_CONFIG")]
        config: PathBuf,
        /// DynamoDB read capacity units per second the scan may use.
        #[arg(long, default_value_t = sms_consent::runtime::verify::DEFAULT_RATE)]
        rate: f64,
    },
    /// Print the public half of the key that signs evidence bundles (its id,
    /// base64 and PEM), for the organisation to publish.
    EvidencePublicKey {
        #[arg(long, env = "SMS_CONSENT_CONFIG")]
        config: PathBuf,
    },
    /// Apply `[retention] events_years`: delete the events that arrived
    /// longer ago, except each number's chain anchor and the events that
    /// decide its consent (its latest opt-out among them); each number's
    /// purge is recorded (with the operator) so verify-ledger stays clean.
    /// Exit 0: done; 1: some numbers skipped (broken chains); 2: could not
    /// run. Stop the local server first. On
    /// DynamoDB it needs an operator's credentials (deletes of numbers'
    /// items), not a function's.
    Purge {
        #[arg(long, env = "SMS_CONSENT_CONFIG")]
        config: PathBuf,
        /// Count what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who runs it, for the access report (default: `purge`).
        #[arg(long, default_value = "purge")]
        operator: String,
        /// DynamoDB read capacity units per second the scan may use.
        #[arg(long, default_value_t = sms_consent::runtime::verify::DEFAULT_RATE)]
        rate: f64,
    },
    /// Read an API key on standard input and print its `token_sha256`.
    HashApiKey,
    /// Print the OpenAPI document of the sender and staff API.
    Openapi,
}

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, listen, data_dir } => {
            init_logs();
            let server = match local::start_default(Options { config, listen, data_dir, sns_network: None }).await {
                Ok(server) => server,
                Err(e) => {
                    eprintln!("sms-consent: {e}");
                    return ExitCode::FAILURE;
                }
            };
            println!("{}", server.banner());
            shutdown_signal().await;
            tracing::info!("shutting down: finishing requests in flight");
            match server.shutdown().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sms-consent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Provision { config } => {
            init_logs();
            match local::provision(&config).await {
                Ok(report) => {
                    for line in report {
                        println!("{line}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sms-consent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        // Everything a start checks, providers' keys included.
        Command::CheckConfig { config } => match local::load_config(&config)
            .and_then(|c| c.providers(Arc::new(HttpSnsNetwork::new())).map_err(StartError::from))
        {
            Ok(providers) => {
                println!("{}: ok", config.display());
                for provider in sms_consent::runtime::outbox::unsent_providers(&providers) {
                    println!(
                        "note: {provider} has no send table: its replies will wait in the outbox \
                         (see \"Replies\" in the README)"
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sms-consent: {e}");
                ExitCode::from(2)
            }
        },
        Command::VerifyLedger { config, rate } => verify_ledger(&config, rate).await,
        Command::EvidencePublicKey { config } => match local::evidence_public_key(&config).await {
            Ok(key) => {
                println!("key_id: {}", key.key_id);
                println!("public_key: {}", key.base64);
                print!("{}", key.pem);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sms-consent: evidence-public-key: {e}");
                ExitCode::from(2)
            }
        },
        Command::Purge { config, dry_run, operator, rate } => {
            let options = sms_consent::runtime::verify::PurgeOptions { dry_run, operator, rate };
            match sms_consent::runtime::verify::purge(&config, &options, Arc::new(SystemClock)).await {
                Ok(report) => {
                    for pid in &report.skipped {
                        println!("skipped {pid}: its event chain does not verify (run verify-ledger)");
                    }
                    let verb = if dry_run { "would purge" } else { "purged" };
                    println!(
                        "{verb} {} events of {} numbers ({} walked)",
                        report.events_purged, report.purged_numbers, report.numbers
                    );
                    if report.skipped.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("sms-consent: purge: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Openapi => {
            print!("{}", sms_consent::http::openapi::document());
            ExitCode::SUCCESS
        }
        Command::HashApiKey => {
            let mut key = String::new();
            if std::io::stdin().read_line(&mut key).is_err() || key.trim().is_empty() {
                eprintln!("sms-consent: give the API key on standard input");
                return ExitCode::from(2);
            }
            println!("{}", sms_consent::http::auth::sha256_hex(key.trim()));
            ExitCode::SUCCESS
        }
    }
}

/// A progress bar on a terminal (indicatif draws nothing elsewhere), one
/// line per break and a summary line on standard output.
async fn verify_ledger(config: &std::path::Path, rate: f64) -> ExitCode {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed} {msg}") {
        bar.set_style(style);
    }
    let progress = |numbers: u64, events: u64| bar.set_message(format!("{numbers} numbers, {events} events"));
    let report = sms_consent::runtime::verify::verify_ledger(config, rate, &progress).await;
    bar.finish_and_clear();
    match report {
        Ok(report) => {
            for number in &report.broken {
                for broken in &number.breaks {
                    println!("broken {}: {broken}", number.pid);
                }
                if number.quarantined {
                    println!("quarantined {}: its authorizations now deny", number.pid);
                }
            }
            let verdict = if report.intact() { "intact".to_owned() } else { format!("{} broken", report.broken.len()) };
            println!("verified {} numbers, {} events: {verdict}", report.numbers, report.events);
            if report.intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sms-consent: verify-ledger: {e}");
            ExitCode::from(2)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
