//! Sending a message through a provider's own API: what the outbox worker
//! hands a provider, what comes back, and the HTTP plumbing every HTTP
//! provider shares (one client, the answer's classification, `Retry-After`).
//!
//! A provider reads its own answer: a 2xx is `Sent` (with the provider's
//! message id when it gives one); 408, 429 and 5xx, and a network error,
//! are `Temporary` (the worker retries with backoff, after `Retry-After`
//! when the provider says); any other answer is `Refused`, or `OptedOut`
//! when it carries the provider's opt-out or block code.

use std::sync::OnceLock;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

pub use crate::domain::outbound::{OutboundMessage, SendError, Sent};

/// How long one send may take, connect included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// A provider's HTTP answer, read in full.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The answer of a 2xx, or the error it means. `opted_out` reads the
    /// provider's opt-out code from a non-2xx answer (`None`: not one);
    /// `refusal` describes any other refusal from the provider's own error
    /// code (never its error text, which can echo the numbers).
    pub fn accepted(
        self,
        opted_out: impl Fn(&HttpAnswer) -> Option<String>,
        refusal: impl Fn(&HttpAnswer) -> String,
    ) -> Result<HttpAnswer, SendError> {
        let status = self.status;
        if status.is_success() {
            return Ok(self);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
        {
            return Err(SendError::Temporary {
                reason: format!("the provider answered {status}"),
                retry_after: retry_after(&self.headers, time::OffsetDateTime::now_utc()),
            });
        }
        if let Some(code) = opted_out(&self) {
            return Err(SendError::OptedOut { code, reason: format!("the provider answered {status}") });
        }
        Err(SendError::Refused { reason: refusal(&self) })
    }

    /// The body as JSON, when it is.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The string at a JSON pointer of the body (`/id`, `/data/id`).
    pub fn text_at(&self, pointer: &str) -> Option<String> {
        self.json::<serde_json::Value>()?.pointer(pointer)?.as_str().map(str::to_owned)
    }
}

/// A refusal described by the status and the provider's error code at a
/// JSON pointer of its error body, never its error text (which can echo the
/// numbers).
pub fn refusal_coded(pointer: &'static str) -> impl Fn(&HttpAnswer) -> String {
    move |answer| format!("the provider answered {}: {}", answer.status, answer.text_at(pointer).unwrap_or_default())
}

/// The one HTTP client of every provider's send API, built on first use
/// (a function that never sends never pays for it): TLS through aws-lc-rs,
/// no redirects, `SEND_TIMEOUT` per request.
pub fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // Installing the process-wide TLS provider fails harmlessly once
        // it is there (the SNS client or the AWS SDK may have done it).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds")
    })
}

/// Sends a request and reads the whole answer; a network error or a timeout
/// is `Temporary` (its message never carries the body sent).
pub async fn execute(request: reqwest::RequestBuilder) -> Result<HttpAnswer, SendError> {
    let temporary =
        |e: reqwest::Error| SendError::Temporary { reason: format!("network: {}", e.without_url()), retry_after: None };
    let response = request.send().await.map_err(temporary)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(temporary)?.to_vec();
    Ok(HttpAnswer { status, headers, body })
}

/// `Retry-After` as seconds or an HTTP date, from `now`; at most an hour.
pub fn retry_after(headers: &HeaderMap, now: time::OffsetDateTime) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            let at = time::OffsetDateTime::from(at);
            Duration::try_from(at - now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// The send table's `base_url`, or the provider's real API; a trailing `/`
/// is dropped so paths join cleanly.
pub fn base_url(configured: Option<&str>, default: &str) -> String {
    configured.unwrap_or(default).trim_end_matches('/').to_owned()
}

/// Checks a configured `base_url`: `https://`, or `http://` only for a
/// loopback host (a local fake in tests).
pub fn check_base_url(value: &str, field: &str) -> Result<(), super::ProviderConfigError> {
    let url = url::Url::parse(value).map_err(|e| super::bad(field, format!("not a URL: {e}")))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(super::bad(field, "must be an https:// URL (http:// only for a loopback host)")),
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A provider's send API on a real local socket: it records every
    //! request and answers from a script, so a provider's test can check
    //! the request exactly as the provider documents it.

    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};

    /// One request as the fake saw it.
    #[derive(Debug, Clone)]
    pub(crate) struct Seen {
        pub method: Method,
        /// Path and query.
        pub uri: String,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
    }

    impl Seen {
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }

        pub(crate) fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("the request body is JSON")
        }

        pub(crate) fn form(&self) -> Vec<(String, String)> {
            super::super::form_pairs(&self.body)
        }
    }

    /// An answer: status, extra headers, JSON or text body.
    #[derive(Debug, Clone)]
    pub(crate) struct Reply {
        pub status: u16,
        pub headers: Vec<(&'static str, String)>,
        pub body: String,
        pub content_type: &'static str,
    }

    impl Reply {
        pub(crate) fn json(status: u16, body: serde_json::Value) -> Self {
            Reply { status, headers: Vec::new(), body: body.to_string(), content_type: "application/json" }
        }

        pub(crate) fn with_header(mut self, name: &'static str, value: &str) -> Self {
            self.headers.push((name, value.to_owned()));
            self
        }
    }

    #[derive(Clone, Default)]
    struct Shared {
        seen: Arc<Mutex<Vec<Seen>>>,
        /// Answers in order; the last one repeats.
        script: Arc<Mutex<Vec<Reply>>>,
    }

    /// A running fake; its base URL is `http://127.0.0.1:<port>`.
    pub(crate) struct FakeApi {
        pub base_url: String,
        shared: Shared,
    }

    impl FakeApi {
        /// Starts a fake that answers `script` in order (the last repeats).
        pub(crate) async fn start(script: Vec<Reply>) -> FakeApi {
            let shared = Shared { seen: Default::default(), script: Arc::new(Mutex::new(script)) };
            let app = axum::Router::new().fallback(record).with_state(shared.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let base_url = format!("http://{}", listener.local_addr().expect("addr"));
            tokio::spawn(async move { axum::serve(listener, app).await });
            FakeApi { base_url, shared }
        }

        pub(crate) fn seen(&self) -> Vec<Seen> {
            self.shared.seen.lock().unwrap().clone()
        }
    }

    async fn record(
        State(shared): State<Shared>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        shared.seen.lock().unwrap().push(Seen { method, uri: uri.to_string(), headers, body: body.to_vec() });
        let reply = {
            let mut script = shared.script.lock().unwrap();
            if script.len() > 1 {
                script.remove(0)
            } else {
                script.first().cloned().unwrap_or_else(|| Reply::json(500, serde_json::json!({})))
            }
        };
        let mut response =
            (StatusCode::from_u16(reply.status).unwrap(), [("content-type", reply.content_type)], reply.body)
                .into_response();
        for (name, value) in reply.headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeApi, Reply};
    use super::*;

    #[tokio::test]
    async fn answers_are_classified_by_status_and_retry_after_is_read() {
        let fake = FakeApi::start(vec![
            Reply::json(429, serde_json::json!({})).with_header("retry-after", "7"),
            Reply::json(503, serde_json::json!({})),
            Reply::json(400, serde_json::json!({"code": 21610})),
            Reply::json(401, serde_json::json!({"error": "bad key"})),
            Reply::json(202, serde_json::json!({"id": "m1"})),
        ])
        .await;
        let opted_out = |a: &HttpAnswer| {
            a.json::<serde_json::Value>()
                .and_then(|v| v["code"].as_i64())
                .filter(|c| *c == 21610)
                .map(|c| c.to_string())
        };
        let send = || execute(client().post(format!("{}/send", fake.base_url)).body("x"));
        assert_eq!(
            send().await.unwrap().accepted(opted_out, |a| format!("the provider answered {}", a.status)).unwrap_err(),
            SendError::Temporary {
                reason: "the provider answered 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            send().await.unwrap().accepted(opted_out, |a| format!("the provider answered {}", a.status)),
            Err(SendError::Temporary { retry_after: None, .. })
        ));
        assert!(
            matches!(send().await.unwrap().accepted(opted_out, |a| format!("the provider answered {}", a.status)), Err(SendError::OptedOut { code, .. }) if code == "21610")
        );
        assert!(
            matches!(send().await.unwrap().accepted(opted_out, |a| format!("the provider answered {}", a.status)), Err(SendError::Refused { reason }) if reason == "the provider answered 401 Unauthorized")
        );
        let ok = send().await.unwrap().accepted(opted_out, |a| format!("the provider answered {}", a.status)).unwrap();
        assert_eq!(ok.json::<serde_json::Value>().unwrap()["id"], "m1");
        assert_eq!(fake.seen().len(), 5);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_temporary_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        drop(listener);
        assert!(matches!(execute(client().post(url)).await, Err(SendError::Temporary { .. })));
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_caps_at_an_hour() {
        let now = time::macros::datetime!(2026-11-22 10:00 UTC);
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "120".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert("retry-after", "Sun, 22 Nov 2026 10:00:30 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert("retry-after", "999999".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(3600)));
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn a_base_url_is_https_or_loopback_http() {
        assert!(check_base_url("https://api.example.com/v2", "send.base_url").is_ok());
        assert!(check_base_url("http://127.0.0.1:4010", "send.base_url").is_ok());
        let e = check_base_url("http://api.example.com", "send.base_url").unwrap_err();
        assert_eq!(e.field, "send.base_url");
        assert!(check_base_url("not a url", "send.base_url").is_err());
        assert_eq!(base_url(Some("http://127.0.0.1:1/"), "https://x"), "http://127.0.0.1:1");
        assert_eq!(base_url(None, "https://x"), "https://x");
    }
}
