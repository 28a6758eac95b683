//! Authorization latency in process, for `scripts/bench-import`: opens the
//! ledger a config names (the server stopped) and times `authorize` for
//! numbers drawn from `+1415<7 digits>` starting at `first`, `count` of them
//! imported: half the queries ask for an imported number, half for one
//! with no record. Prints `p50_us p99_us` of `samples` sequential queries.
//!
//! `cargo run --profile bench --example authorize_latency -- CONFIG FIRST COUNT SAMPLES`

use std::sync::Arc;
use std::time::Instant;

use sms_consent::ports::SystemClock;
use sms_consent::runtime::backends::Backends;
use sms_consent::runtime::local::load_config;
use sms_consent::service::{AuthorizationQuery, ConsentService};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, first, count, samples] = &args[..] else {
        eprintln!("usage: authorize_latency CONFIG FIRST COUNT SAMPLES");
        std::process::exit(2);
    };
    let (first, count, samples): (u64, u64, usize) =
        (first.parse().unwrap_or(0), count.parse().unwrap_or(1).max(1), samples.parse().unwrap_or(10_000));
    let config = load_config(std::path::Path::new(config)).unwrap_or_else(|e| panic!("config: {e}"));
    let backends = Backends::open(&config).await.unwrap_or_else(|e| panic!("store: {e}"));
    let crypto = backends.crypto(&config).await.unwrap_or_else(|e| panic!("keys: {e}"));
    let program = config.programs().sorted().first().map(|p| (p.id.clone(), p.categories.first().cloned()));
    let Some((program, Some(category))) = program else { panic!("the config needs a program with a category") };
    let service =
        ConsentService::new(config.programs(), backends.store.clone(), Arc::new(crypto), Arc::new(SystemClock));
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples + 1000 {
        let r = next();
        let n = if r & 1 == 0 { first + (r >> 1) % count } else { 9_000_000 + (r >> 1) % 999_999 };
        let to = format!("+1415{n:07}");
        let query = AuthorizationQuery { to: &to, program: &program, category: &category };
        let started = Instant::now();
        let decision = service.authorize(&query).await;
        let took = started.elapsed();
        std::hint::black_box(decision);
        if i >= 1000 {
            times.push(took.as_nanos() as u64);
        }
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!("{:.1} {:.1}", at(0.50), at(0.99));
}
