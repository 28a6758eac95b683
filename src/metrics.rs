//! What the running service reports about itself, through the `metrics`
//! facade: locally as Prometheus text at `GET /metrics` (scope `metrics`),
//! on Lambda as CloudWatch Embedded Metric Format (EMF) lines, one set per
//! invocation.
//!
//! Every label is a fixed enum of the code (an event kind, a provider name,
//! a decision reason, a store operation, an outcome, a route template):
//! never a number, a message text, an id from a request or a token. Without
//! an installed recorder (tests, `[metrics] enabled = false`) every call is
//! a no-op.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

use crate::domain::{serde_name, Reason};
use crate::ports::DeliveryStatus;

/// Messages recorded (stored as events), by `kind` (`opt_out`, `opt_in`,
/// `help`, `unclear`, ...) and `provider`.
pub const EVENTS_RECORDED: &str = "sms_consent_events_recorded_total";
/// Deliveries already recorded under their message id, by `provider`.
pub const DUPLICATES: &str = "sms_consent_duplicates_total";
/// Messages not stored (no keyword, nothing to act on), by `provider`.
pub const IGNORED: &str = "sms_consent_ignored_messages_total";
/// Webhook deliveries refused for their signature, by `provider`.
pub const SIGNATURE_FAILURES: &str = "sms_consent_signature_failures_total";
/// Stored states that failed their integrity check (see `service`).
pub const INTEGRITY_ALARMS: &str = "sms_consent_integrity_alarms_total";
/// Authorization decisions, by `reason` (`allowed`, `opted_out`, ...).
pub const AUTHORIZATIONS: &str = "sms_consent_authorizations_total";
/// Each store call's duration, by `operation` and `outcome` (`ok`, `error`).
pub const STORE_LATENCY: &str = "sms_consent_store_latency_seconds";
/// Replies from the outbox, by `outcome`: `sent`, `failed`, `expired`,
/// `superseded`, or `retry` (a temporary failure, tried again later).
pub const REPLIES: &str = "sms_consent_replies_total";
/// Each HTTP request's duration, by `route` (the route's template, or
/// `unmatched`) and `status` (`2xx`, `4xx`, `5xx`...).
pub const HTTP_REQUESTS: &str = "sms_consent_http_request_duration_seconds";

/// Histogram buckets (seconds) of the local exporter: 100 µs to 5 s.
const BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

pub fn event_recorded(kind: String, provider: &'static str) {
    metrics::counter!(EVENTS_RECORDED, "kind" => kind, "provider" => provider).increment(1);
}

/// A provider's report that a number opted out or is blocked: an event of
/// kind `provider_block`, or a duplicate.
pub fn block_recorded(provider: &str, new: bool) {
    let provider = provider_label(provider);
    if new {
        event_recorded("provider_block".into(), provider);
    } else {
        duplicate(provider);
    }
}

/// A provider's name as a label: one of the providers', or `other`.
pub fn provider_label(name: &str) -> &'static str {
    use crate::providers::*;
    [
        aws_sns::NAME,
        bandwidth::NAME,
        bird::NAME,
        plivo::NAME,
        sinch::NAME,
        standard_webhooks::NAME,
        telnyx::NAME,
        twilio::NAME,
        vonage::NAME,
    ]
    .into_iter()
    .find(|known| *known == name)
    .unwrap_or("other")
}

pub fn duplicate(provider: &'static str) {
    metrics::counter!(DUPLICATES, "provider" => provider).increment(1);
}

pub fn ignored(provider: &'static str) {
    metrics::counter!(IGNORED, "provider" => provider).increment(1);
}

pub fn signature_failure(provider: &'static str) {
    metrics::counter!(SIGNATURE_FAILURES, "provider" => provider).increment(1);
}

pub fn integrity_alarm() {
    metrics::counter!(INTEGRITY_ALARMS).increment(1);
}

pub fn authorization(reason: &Reason) {
    metrics::counter!(AUTHORIZATIONS, "reason" => serde_name(reason)).increment(1);
}

pub fn store_call(operation: &'static str, ok: bool, took: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!(STORE_LATENCY, "operation" => operation, "outcome" => outcome).record(took.as_secs_f64());
}

pub fn reply(status: Option<DeliveryStatus>) {
    let outcome = match status {
        None => "retry".to_owned(),
        Some(status) => serde_name(&status),
    };
    metrics::counter!(REPLIES, "outcome" => outcome).increment(1);
}

pub fn request(route: String, status: u16, took: Duration) {
    let class = match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::histogram!(HTTP_REQUESTS, "route" => route, "status" => class).record(took.as_secs_f64());
}

/// Renders the Prometheus text, once `install_prometheus` ran. Kept behind
/// a function pointer so that the Lambda functions, which never install
/// it, do not link the exporter.
static PROMETHEUS: OnceLock<Box<dyn Fn() -> String + Send + Sync>> = OnceLock::new();

/// The local server's recorder: the Prometheus text renderer, installed
/// once per process (a second server in the same process shares it). Its
/// upkeep (folding recorded histogram values into their buckets) runs every
/// five seconds on the current Tokio runtime. False when another recorder
/// was installed first.
pub fn install_prometheus() -> bool {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    if PROMETHEUS.get().is_some() {
        return true;
    }
    let builder = match PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS) {
        Ok(builder) => builder,
        Err(error) => {
            tracing::error!(%error, "metrics: the histogram buckets were refused; no metrics");
            return false;
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return PROMETHEUS.get().is_some();
    }
    // Counted from the start, so an alert on them sees a zero.
    metrics::counter!(INTEGRITY_ALARMS).absolute(0);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let _ = PROMETHEUS.set(Box::new(move || handle.render()));
    true
}

/// The Prometheus text (format 0.0.4), or None when no exporter is installed.
pub fn render() -> Option<String> {
    PROMETHEUS.get().map(|render| render())
}

/// Where EMF lines go: stdout (Lambda sends it to CloudWatch Logs, which
/// reads the lines as metrics), or a writer a test reads.
pub type EmfSink = Box<dyn Write + Send>;

/// The Lambda functions' recorder: counts and durations aggregated in
/// memory over one invocation, then written by `flush` as EMF lines (one
/// JSON object per distinct set of labels).
#[derive(Clone)]
pub struct Emf {
    inner: Arc<EmfInner>,
}

struct EmfInner {
    namespace: String,
    counters: Mutex<HashMap<Key, Arc<EmfCounter>>>,
    histograms: Mutex<HashMap<Key, Arc<EmfHistogram>>>,
    sink: Mutex<EmfSink>,
}

struct EmfCounter(AtomicU64);

impl CounterFn for EmfCounter {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

struct EmfHistogram(Mutex<Vec<f64>>);

impl HistogramFn for EmfHistogram {
    fn record(&self, value: f64) {
        if let Ok(mut values) = self.0.lock() {
            values.push(value);
        }
    }
}

/// The namespace of the EMF metrics (the template sets it per stage).
pub const NAMESPACE_ENV: &str = "SMS_CONSENT_METRICS_NAMESPACE";
pub const DEFAULT_NAMESPACE: &str = "sms-consent";
/// EMF takes at most 100 values per metric in one line.
const MAX_VALUES: usize = 100;

static EMF: OnceLock<Emf> = OnceLock::new();

impl Emf {
    /// Installs the EMF recorder for this process (once; later calls get the
    /// first one), writing to `sink`.
    pub fn install(namespace: &str, sink: EmfSink) -> Option<Emf> {
        if let Some(emf) = EMF.get() {
            return Some(emf.clone());
        }
        let emf = Emf {
            inner: Arc::new(EmfInner {
                namespace: namespace.to_owned(),
                counters: Mutex::default(),
                histograms: Mutex::default(),
                sink: Mutex::new(sink),
            }),
        };
        metrics::set_global_recorder(emf.clone()).ok()?;
        let _ = EMF.set(emf.clone());
        Some(emf)
    }

    /// The recorder of this process, if installed.
    pub fn installed() -> Option<&'static Emf> {
        EMF.get()
    }

    /// The lines of what was recorded since the last call, and resets it.
    pub fn take_lines(&self, timestamp_ms: i64) -> Vec<String> {
        // Label set -> metric name -> value (a count, or durations).
        let mut groups: BTreeMap<Vec<(String, String)>, BTreeMap<String, EmfValue>> = BTreeMap::new();
        let labels = |key: &Key| {
            let mut labels: Vec<(String, String)> =
                key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            labels.sort();
            labels
        };
        if let Ok(counters) = self.inner.counters.lock() {
            for (key, counter) in counters.iter() {
                let count = counter.0.swap(0, Ordering::Relaxed);
                if count > 0 {
                    groups.entry(labels(key)).or_default().insert(emf_name(key.name()), EmfValue::Count(count));
                }
            }
        }
        if let Ok(histograms) = self.inner.histograms.lock() {
            for (key, histogram) in histograms.iter() {
                let values = histogram.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default();
                if !values.is_empty() {
                    groups.entry(labels(key)).or_default().insert(emf_name(key.name()), EmfValue::Seconds(values));
                }
            }
        }
        let mut lines = Vec::new();
        for (labels, metrics) in groups {
            // At most 100 values per metric and line: the rest in more lines.
            let mut rest = metrics;
            while !rest.is_empty() {
                let mut line = serde_json::Map::new();
                let mut definitions = Vec::new();
                let mut later = BTreeMap::new();
                for (name, value) in rest {
                    let (unit, json) = match value {
                        EmfValue::Count(n) => ("Count", serde_json::json!(n)),
                        EmfValue::Seconds(mut values) => {
                            if values.len() > MAX_VALUES {
                                later.insert(name.clone(), EmfValue::Seconds(values.split_off(MAX_VALUES)));
                            }
                            ("Seconds", serde_json::json!(values))
                        }
                    };
                    definitions.push(serde_json::json!({ "Name": name, "Unit": unit }));
                    line.insert(name, json);
                }
                rest = later;
                let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
                // Each metric by its labels, and over all of them (the set
                // an alarm reads without naming a provider or a reason).
                let dimensions = if keys.is_empty() { vec![keys] } else { vec![keys, Vec::new()] };
                for (key, value) in &labels {
                    line.insert(key.clone(), serde_json::json!(value));
                }
                line.insert(
                    "_aws".into(),
                    serde_json::json!({
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": self.inner.namespace,
                            "Dimensions": dimensions,
                            "Metrics": definitions,
                        }],
                    }),
                );
                lines.push(serde_json::Value::Object(line).to_string());
            }
        }
        lines
    }

    /// Writes the invocation's lines to the sink (stdout on Lambda).
    pub fn flush(&self) {
        let now = time::OffsetDateTime::now_utc();
        let lines = self.take_lines((now.unix_timestamp_nanos() / 1_000_000) as i64);
        if lines.is_empty() {
            return;
        }
        if let Ok(mut sink) = self.inner.sink.lock() {
            let text: String = lines.into_iter().map(|line| line + "\n").collect();
            // One write: the lines are not interleaved with log lines.
            let _ = sink.write_all(text.as_bytes()).and_then(|()| sink.flush());
        }
    }
}

enum EmfValue {
    Count(u64),
    Seconds(Vec<f64>),
}

/// `sms_consent_signature_failures_total` is `signature_failures` in its
/// namespace.
pub fn emf_name(name: &str) -> String {
    let name = name.strip_prefix("sms_consent_").unwrap_or(name);
    name.strip_suffix("_total").unwrap_or(name).to_owned()
}

impl Recorder for Emf {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let Ok(mut counters) = self.inner.counters.lock() else { return Counter::noop() };
        let counter = counters.entry(key.clone()).or_insert_with(|| Arc::new(EmfCounter(AtomicU64::new(0))));
        Counter::from_arc(counter.clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let Ok(mut histograms) = self.inner.histograms.lock() else { return Histogram::noop() };
        let histogram = histograms.entry(key.clone()).or_insert_with(|| Arc::new(EmfHistogram(Mutex::default())));
        Histogram::from_arc(histogram.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_prefix_and_total() {
        assert_eq!(emf_name(SIGNATURE_FAILURES), "signature_failures");
        assert_eq!(emf_name(STORE_LATENCY), "store_latency_seconds");
    }

    #[test]
    fn lines_group_by_labels_and_split_past_100_values() {
        let emf = Emf {
            inner: Arc::new(EmfInner {
                namespace: "ns".into(),
                counters: Mutex::default(),
                histograms: Mutex::default(),
                sink: Mutex::new(Box::new(std::io::sink())),
            }),
        };
        metrics::with_local_recorder(&emf, || {
            signature_failure("twilio");
            signature_failure("twilio");
            duplicate("twilio");
            integrity_alarm();
            for _ in 0..150 {
                store_call("commit", true, Duration::from_millis(1));
            }
        });
        let lines: Vec<serde_json::Value> =
            emf.take_lines(1).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        let twilio = lines.iter().find(|l| l["provider"] == "twilio").unwrap();
        assert_eq!(twilio["signature_failures"], 2);
        assert_eq!(twilio["duplicates"], 1);
        assert_eq!(twilio["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["provider"], []]));
        let commits: Vec<_> = lines.iter().filter(|l| l["operation"] == "commit").collect();
        let sizes: Vec<usize> = commits.iter().map(|l| l["store_latency_seconds"].as_array().unwrap().len()).collect();
        assert_eq!(sizes, [100, 50]);
        assert!(emf.take_lines(2).is_empty(), "each invocation's counts are written once");
    }
}
