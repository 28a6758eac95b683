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
    /// Load an existing opt-out list: every row becomes an opt-out event
    /// (source `import`) through the ledger's own commit, in batches; a
    /// re-run records nothing twice, an interrupted run resumes. Exit 0:
    /// every row recorded (or already there); 1: some rows were bad and
    /// skipped, or with --strict any bad row (then nothing is written); 2:
    /// could not run. Stop the local server first (embedded store).
    Import {
        #[arg(long, env = "SMS_CONSENT_CONFIG")]
        config: PathBuf,
        #[arg(long, value_enum)]
        format: sms_consent::runtime::import::Format,
        /// A country (ISO 3166 code, e.g. US) for numbers without `+` in CSVs.
        #[arg(long)]
        default_country: Option<String>,
        /// The program of rows that name none (default: every program).
        #[arg(long)]
        program: Option<String>,
        /// Check the whole file first; write nothing if any row is bad.
        #[arg(long)]
        strict: bool,
        /// DynamoDB write capacity units per second to stay under.
        #[arg(long)]
        rate: Option<f64>,
        path: PathBuf,
    },
    /// Write the numbers currently opted out (decrypted) to standard
    /// output; the export is recorded in the access report with the
    /// operator. Exit 0: done; 1: some states failed their check and were
    /// left out (run verify-ledger); 2: could not run.
    Export {
        #[arg(long, env = "SMS_CONSENT_CONFIG")]
        config: PathBuf,
        /// Required: only the opted-out list can be exported.
        #[arg(long, required = true)]
        opted_out: bool,
        /// The numbers opted out of this program (default: of every program).
        #[arg(long)]
        program: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: sms_consent::runtime::import::ExportFormat,
        /// Who exports, for the access report.
        #[arg(long)]
        operator: String,
        /// `--format aws`: the opt-out list's name.
        #[arg(long, default_value = "Default")]
        opt_out_list: String,
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
        Command::Import { config, format, default_country, program, strict, rate, path } => {
            let command = sms_consent::runtime::import::ImportCommand {
                config,
                format,
                path,
                default_country,
                program,
                strict,
                rate,
            };
            import(&command).await
        }
        Command::Export { config, opted_out: _, program, format, operator, opt_out_list, rate } => {
            let command =
                sms_consent::runtime::import::ExportCommand { config, program, format, operator, opt_out_list, rate };
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            match sms_consent::runtime::import::export(&command, &mut out).await {
                Ok(report) => {
                    eprintln!(
                        "exported {} opted-out numbers ({} walked, {} left out: their state failed its check)",
                        report.exported, report.numbers, report.unverified
                    );
                    if report.unverified == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("sms-consent: export: {e}");
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

/// Runs an import until done or Ctrl-C (then a re-run resumes from the
/// checkpoint); the summary on standard output.
async fn import(command: &sms_consent::runtime::import::ImportCommand) -> ExitCode {
    let outcome = tokio::select! {
        outcome = sms_consent::runtime::import::import(command) => outcome,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("sms-consent: import interrupted; run the same command again to resume");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(summary) if summary.refused => {
            println!("--strict: {} bad rows; nothing was written", summary.errors);
            ExitCode::FAILURE
        }
        Ok(summary) => {
            let rate = summary.rows.saturating_sub(summary.resumed) as f64 / summary.seconds.max(0.001);
            println!(
                "imported {}: {} rows read, {} recorded, {} already there, {} skipped (not opt-outs), {} errors, \
                 {} done before (resumed); {:.1} s, {rate:.0} rows/s",
                command.path.display(),
                summary.rows,
                summary.recorded,
                summary.duplicates,
                summary.skipped,
                summary.errors,
                summary.resumed,
                summary.seconds
            );
            if summary.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sms-consent: import: {e}");
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
