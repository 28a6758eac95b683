//! AWS End User Messaging SMS two-way messages, delivered by an SNS HTTPS
//! subscription. SNS signs with RSA (SHA1 for `SignatureVersion` 1, SHA256
//! for 2) using a certificate it names by URL; that URL must be https on an
//! `sns.<region>.amazonaws.com` host in the region of the message's topic,
//! and the topic must be on the allow-list, both checked before anything is
//! fetched. Certificate fetches are bounded per minute, and a certificate
//! that has verified a message stays cached. A `SubscriptionConfirmation` is
//! confirmed only for allowed topics. The network is behind `SnsNetwork` so
//! tests replace it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256};
use aws_sdk_pinpointsmsvoicev2 as sms;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use time::OffsetDateTime;

use super::send::{self, OutboundMessage, SendError, Sent};
use super::{
    bad, event_time, json_body, non_empty, parse_rfc3339, phone, required, Configured, InboundMessage, Outside,
    PayloadError, Profile, Provider, ProviderBlock, ProviderConfigError, Received, Rejection, ReplyStyle,
    SignatureError, WebhookRequest,
};
use crate::domain::PhoneNumber;

pub const NAME: &str = "aws-sns";
pub const MESSAGE_TYPE_HEADER: &str = "x-amz-sns-message-type";
pub const REPLY_STYLE: ReplyStyle = ReplyStyle {
    inline: false,
    auto_reply_keywords: &[
        "ARRET",
        "CANCEL",
        "END",
        "OPT-OUT",
        "OPTOUT",
        "QUIT",
        "REMOVE",
        "STOP",
        "TD",
        "UNSUBSCRIBE",
        "HELP",
    ],
};
const PROFILE: Profile = Profile { name: NAME, methods: super::POST, reply_style: REPLY_STYLE };
/// Certificates kept in memory; SNS uses a handful per region. When full,
/// only certificates that never verified a message are dropped.
const CERTIFICATE_CACHE_SIZE: usize = 32;
/// Certificates fetched per minute at most, whatever the requests name: an
/// unauthenticated caller cannot make the server fetch more.
pub const CERTIFICATE_FETCHES_PER_MINUTE: u32 = 10;

/// The two calls SNS verification makes: fetch a signing certificate and
/// confirm a subscription. Both URLs are checked before either is called.
#[async_trait]
pub trait SnsNetwork: Send + Sync {
    async fn fetch_certificate(&self, url: &str) -> Result<Vec<u8>, String>;
    async fn confirm_subscription(&self, url: &str) -> Result<(), String>;
}

/// The real network: plain GETs with a short timeout. The client is built on
/// first use, so a function that never sees SNS never pays for it.
pub struct HttpSnsNetwork {
    client: std::sync::OnceLock<reqwest::Client>,
}

impl HttpSnsNetwork {
    pub fn new() -> Self {
        HttpSnsNetwork { client: std::sync::OnceLock::new() }
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            // reqwest shares the AWS SDK's TLS crypto (aws-lc-rs); installing
            // it as the process default fails harmlessly once it is there.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client builds")
        })
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, String> {
        let response = self.client().get(url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        Ok(response)
    }
}

impl Default for HttpSnsNetwork {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl SnsNetwork for HttpSnsNetwork {
    async fn fetch_certificate(&self, url: &str) -> Result<Vec<u8>, String> {
        Ok(self.get(url).await?.bytes().await.map_err(|e| e.to_string())?.to_vec())
    }

    async fn confirm_subscription(&self, url: &str) -> Result<(), String> {
        self.get(url).await.map(|_| ())
    }
}

/// True for `https://sns.<region>.amazonaws.com[.cn]/...`, nothing else.
pub fn is_sns_url(raw: &str, pem_path: bool) -> bool {
    let Ok(url) = url::Url::parse(raw) else {
        return false;
    };
    let host_ok = url.host_str().is_some_and(|host| {
        let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"));
        rest.and_then(|r| r.strip_prefix("sns."))
            .is_some_and(|region| region.len() >= 3 && region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    });
    url.scheme() == "https"
        && host_ok
        && url.port().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && (!pem_path || url.path().ends_with(".pem"))
}

/// A signing certificate's RSA key, parsed once for each signature version
/// (1: SHA-1, 2: SHA-256), and its validity.
struct Certificate {
    sha1: ParsedPublicKey,
    sha256: ParsedPublicKey,
    not_before: i64,
    not_after: i64,
}

fn parse_certificate(pem: &[u8]) -> Result<Certificate, String> {
    use x509_cert::der::{DecodePem, Encode};
    let cert = x509_cert::Certificate::from_pem(pem).map_err(|e| format!("certificate: {e}"))?;
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    // aws-lc-rs verifies only with RSA keys of 2,048 to 8,192 bits (SNS's
    // are 2,048): any other key makes the certificate unreadable, here,
    // rather than every message under it a bad signature.
    let bits = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki).map_err(|e| format!("certificate key: {e}"))?;
    if !(2048..=8192).contains(&bits.key_size_bits()) {
        return Err("certificate key: not 2,048 to 8,192 bits".into());
    }
    let key = |algorithm| ParsedPublicKey::new(algorithm, &spki).map_err(|e| format!("certificate key: {e}"));
    let validity = &cert.tbs_certificate.validity;
    Ok(Certificate {
        sha1: key(&RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY)?,
        sha256: key(&RSA_PKCS1_2048_8192_SHA256)?,
        not_before: validity.not_before.to_unix_duration().as_secs() as i64,
        not_after: validity.not_after.to_unix_duration().as_secs() as i64,
    })
}

/// Verifies SNS messages, caching certificates by URL.
pub struct SnsVerifier {
    network: Arc<dyn SnsNetwork>,
    cache: Mutex<HashMap<String, Cached>>,
    fetches: Mutex<FetchWindow>,
}

struct Cached {
    certificate: Arc<Certificate>,
    /// It has verified a message: never evicted.
    verified: bool,
}

/// Fetches made in the current minute.
struct FetchWindow {
    started: Option<Instant>,
    count: u32,
}

/// Why no certificate could be had for a message: a 5xx, so that SNS (which
/// retries only 5xx) delivers the message again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("too many signing certificate fetches this minute")]
    RateLimited,
    #[error("signing certificate unavailable")]
    Unavailable,
    #[error("signing certificate unreadable")]
    Unreadable,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An SNS message, as the HTTPS endpoint (or a Lambda event) carries it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnsMessage {
    #[serde(rename = "Type")]
    pub kind: String,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: String,
    pub timestamp: String,
    pub signature_version: String,
    pub signature: String,
    #[serde(alias = "SigningCertUrl", rename = "SigningCertURL")]
    pub signing_cert_url: String,
    #[serde(alias = "SubscribeUrl", rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    pub token: Option<String>,
}

impl SnsMessage {
    /// `Key\nValue\n` for each signed field present, in SNS's order.
    pub fn string_to_sign(&self) -> Result<String, SignatureError> {
        let mut out = String::new();
        let mut add = |key: &str, value: Option<&str>| {
            if let Some(value) = value {
                out.push_str(key);
                out.push('\n');
                out.push_str(value);
                out.push('\n');
            }
        };
        match self.kind.as_str() {
            "Notification" => {
                add("Message", Some(&self.message));
                add("MessageId", Some(&self.message_id));
                add("Subject", self.subject.as_deref());
                add("Timestamp", Some(&self.timestamp));
                add("TopicArn", Some(&self.topic_arn));
                add("Type", Some(&self.kind));
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                add("Message", Some(&self.message));
                add("MessageId", Some(&self.message_id));
                add(
                    "SubscribeURL",
                    Some(self.subscribe_url.as_deref().ok_or(SignatureError::MissingHeader("SubscribeURL"))?),
                );
                add("Timestamp", Some(&self.timestamp));
                add("Token", Some(self.token.as_deref().ok_or(SignatureError::MissingHeader("Token"))?));
                add("TopicArn", Some(&self.topic_arn));
                add("Type", Some(&self.kind));
            }
            _ => return Err(SignatureError::MalformedHeader("Type")),
        }
        Ok(out)
    }
}

impl SnsVerifier {
    pub fn new(network: Arc<dyn SnsNetwork>) -> Self {
        SnsVerifier {
            network,
            cache: Mutex::new(HashMap::new()),
            fetches: Mutex::new(FetchWindow { started: None, count: 0 }),
        }
    }

    /// One more fetch this minute, if the budget allows.
    fn fetch_permit(&self) -> bool {
        let mut window = lock(&self.fetches);
        let now = Instant::now();
        if window.started.is_none_or(|started| now.duration_since(started) >= Duration::from_secs(60)) {
            *window = FetchWindow { started: Some(now), count: 0 };
        }
        if window.count >= CERTIFICATE_FETCHES_PER_MINUTE {
            return false;
        }
        window.count += 1;
        true
    }

    async fn certificate(&self, url: &str) -> Result<Arc<Certificate>, CertificateError> {
        if let Some(cached) = lock(&self.cache).get(url) {
            return Ok(cached.certificate.clone());
        }
        if !self.fetch_permit() {
            tracing::warn!(alarm = "sns-certificate-fetches", "SNS certificate fetch budget spent; answering 502");
            return Err(CertificateError::RateLimited);
        }
        // The error names the URL, whose path the caller chose: not logged.
        let pem = self.network.fetch_certificate(url).await.map_err(|_| {
            tracing::warn!("could not fetch the SNS signing certificate");
            CertificateError::Unavailable
        })?;
        let certificate = Arc::new(parse_certificate(&pem).map_err(|_| CertificateError::Unreadable)?);
        let mut cache = lock(&self.cache);
        if cache.len() >= CERTIFICATE_CACHE_SIZE {
            cache.retain(|_, c| c.verified);
        }
        if cache.len() < CERTIFICATE_CACHE_SIZE {
            cache.insert(url.to_owned(), Cached { certificate: certificate.clone(), verified: false });
        }
        Ok(certificate)
    }

    /// Fetches (within the budget) and caches the message's certificate, so
    /// that `verify` finds it; a failure here is the network's, not the
    /// caller's.
    pub async fn prefetch(&self, message: &SnsMessage) -> Result<(), CertificateError> {
        self.certificate(&message.signing_cert_url).await.map(|_| ())
    }

    pub async fn verify(&self, message: &SnsMessage, now: OffsetDateTime) -> Result<(), SignatureError> {
        if !is_sns_url(&message.signing_cert_url, true) {
            return Err(SignatureError::InvalidToken("SigningCertURL is not an SNS certificate URL"));
        }
        let signed = message.string_to_sign()?;
        let signature =
            STANDARD.decode(message.signature.trim()).map_err(|_| SignatureError::MalformedHeader("Signature"))?;
        let cert = self.certificate(&message.signing_cert_url).await.map_err(|e| match e {
            CertificateError::RateLimited | CertificateError::Unavailable => {
                SignatureError::InvalidToken("signing certificate unavailable")
            }
            CertificateError::Unreadable => SignatureError::InvalidToken("signing certificate unreadable"),
        })?;
        let now = now.unix_timestamp();
        if now < cert.not_before || now > cert.not_after {
            return Err(SignatureError::InvalidToken("signing certificate is not valid now"));
        }
        let key = match message.signature_version.as_str() {
            "1" => &cert.sha1,
            "2" => &cert.sha256,
            _ => return Err(SignatureError::MalformedHeader("SignatureVersion")),
        };
        let valid = key.verify_sig(signed.as_bytes(), &signature).is_ok();
        if !valid {
            return Err(SignatureError::InvalidSignature);
        }
        if let Some(cached) = lock(&self.cache).get_mut(&message.signing_cert_url) {
            cached.verified = true;
        }
        Ok(())
    }

    pub async fn confirm(&self, url: &str) -> Result<(), String> {
        self.network.confirm_subscription(url).await
    }
}

/// What an SNS delivery turned out to be.
impl From<CertificateError> for Rejection {
    fn from(e: CertificateError) -> Self {
        Rejection::Upstream(e.to_string())
    }
}

fn topic_region(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    (parts.next()? == "arn").then_some(())?;
    let (_partition, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "sns" && !region.is_empty()).then_some(region)
}

/// The region of an `https://sns.<region>.amazonaws.com[.cn]/` URL.
fn url_region(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    let host = url.host_str()?;
    let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    rest.strip_prefix("sns.").map(str::to_owned)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TwoWayMessage {
    origination_number: Option<String>,
    destination_number: Option<String>,
    message_body: Option<String>,
    inbound_message_id: Option<String>,
}

/// An End User Messaging SMS event record (a delivery status of one of our
/// messages), as an event destination publishes it to an SNS topic.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventRecord {
    event_type: String,
    /// Unix milliseconds.
    event_timestamp: Option<i64>,
    /// Our number, or a sender id / pool when the message left from one.
    origination_phone_number: Option<String>,
    /// The patient.
    destination_phone_number: Option<String>,
    message_id: Option<String>,
    message_status: Option<String>,
}

/// The event types and `messageStatus` values that mean the patient's
/// carrier or device will not take our messages, or the patient opted out:
/// the number is recorded as opted out (`provider_block`). Per AWS End User
/// Messaging SMS "Event types for SMS, MMS, and voice" (TEXT_BLOCKED: "the
/// recipient's device or carrier is blocking messages to that recipient")
/// and "Example event data" (the `messageStatus` field),
/// https://docs.aws.amazon.com/sms-voice/latest/userguide/configuration-sets-event-types.html and
/// https://docs.aws.amazon.com/sms-voice/latest/userguide/configuration-sets-event-format.html.
/// TEXT_CARRIER_BLOCKED and TEXT_SPAM are carriers' filtering of the sender,
/// not the patient's choice: they stay ignored.
pub const OPT_OUT_EVENT_TYPES: &[&str] = &["TEXT_BLOCKED"];
pub const OPT_OUT_STATUSES: &[&str] = &["BLOCKED", "OPTED_OUT"];

fn parse_notification(message: &SnsMessage) -> Result<Received, PayloadError> {
    let not_ours = || PayloadError("Message is not an End User Messaging two-way SMS or SMS event".into());
    let value: serde_json::Value = serde_json::from_str(&message.message).map_err(|_| not_ours())?;
    if value.get("eventType").is_some() {
        let record: EventRecord = serde_json::from_value(value).map_err(|_| not_ours())?;
        return parse_event(message, record);
    }
    let inner: TwoWayMessage = serde_json::from_value(value).map_err(|_| not_ours())?;
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: inner.inbound_message_id.unwrap_or_else(|| message.message_id.clone()),
        from: phone(required(inner.origination_number.as_deref(), "originationNumber")?, "originationNumber")?,
        to: Some(phone(required(inner.destination_number.as_deref(), "destinationNumber")?, "destinationNumber")?),
        text: inner.message_body.ok_or_else(|| PayloadError("missing field messageBody".into()))?,
        occurred_at: Some(parse_rfc3339(&message.timestamp, "Timestamp")?),
        replay_key: None,
    }))
}

/// A delivery-status event: an opt-out when it carries an opt-out or block
/// status, otherwise acknowledged and ignored.
fn parse_event(message: &SnsMessage, record: EventRecord) -> Result<Received, PayloadError> {
    let status = record.message_status.as_deref().filter(|s| OPT_OUT_STATUSES.contains(s));
    let code = match status {
        Some(status) => status.to_owned(),
        None if OPT_OUT_EVENT_TYPES.contains(&record.event_type.as_str()) => record.event_type.clone(),
        None => return Ok(Received::Ignored("delivery status event")),
    };
    let number = phone(
        required(record.destination_phone_number.as_deref(), "destinationPhoneNumber")?,
        "destinationPhoneNumber",
    )?;
    // A sender id or a pool is not a number: the opt-out then counts for
    // every program.
    let clinic = record.origination_phone_number.as_deref().and_then(|n| PhoneNumber::parse(n).ok());
    let occurred_at = match record.event_timestamp {
        Some(millis) => Some(
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
                .map_err(|_| PayloadError("eventTimestamp: not a time".into()))
                .and_then(|at| event_time(at, "eventTimestamp"))?,
        ),
        None => Some(parse_rfc3339(&message.timestamp, "Timestamp")?),
    };
    Ok(Received::ProviderOptOut(ProviderBlock {
        provider: NAME.to_owned(),
        message_id: record.message_id.filter(|id| !id.is_empty()).unwrap_or_else(|| message.message_id.clone()),
        number,
        clinic,
        code,
        occurred_at,
    }))
}

pub async fn receive(
    verifier: &SnsVerifier,
    topic_arns: &[String],
    request: &WebhookRequest<'_>,
) -> Result<Received, Rejection> {
    let value: serde_json::Value = json_body(request.body)?;
    if !value.get("Signature").is_some_and(serde_json::Value::is_string) {
        return Err(SignatureError::MissingHeader("Signature").into());
    }
    let message: SnsMessage =
        serde_json::from_value(value).map_err(|e| PayloadError(format!("not an SNS message: {e}")))?;
    if request.header(MESSAGE_TYPE_HEADER).is_some_and(|t| t != message.kind) {
        return Err(SignatureError::MalformedHeader(MESSAGE_TYPE_HEADER).into());
    }
    // Nothing is fetched for a topic that is not ours, nor from another
    // region than the topic's: an unsigned request cannot steer the fetch.
    if !topic_arns.contains(&message.topic_arn) {
        return Err(Rejection::TopicNotAllowed);
    }
    if !is_sns_url(&message.signing_cert_url, true) {
        return Err(SignatureError::InvalidToken("SigningCertURL is not an SNS certificate URL").into());
    }
    if topic_region(&message.topic_arn).is_none_or(|r| url_region(&message.signing_cert_url).as_deref() != Some(r)) {
        return Err(SignatureError::InvalidToken("SigningCertURL is not in the topic's region").into());
    }
    verifier.prefetch(&message).await?;
    verifier.verify(&message, request.now).await?;
    match message.kind.as_str() {
        "Notification" => Ok(parse_notification(&message)?),
        "SubscriptionConfirmation" => {
            let url = message.subscribe_url.as_deref().unwrap_or_default();
            if !is_sns_url(url, false) {
                return Err(SignatureError::InvalidToken("SubscribeURL is not an SNS URL").into());
            }
            verifier.confirm(url).await.map_err(Rejection::Upstream)?;
            tracing::info!("SNS subscription confirmed");
            Ok(Received::SubscriptionConfirmed)
        }
        _ => Ok(Received::Ignored("unsubscribe confirmation")),
    }
}

/// AWS End User Messaging SMS over SNS, built from `[providers.aws_sns]`.
pub struct AwsSns {
    topic_arns: Vec<String>,
    verifier: SnsVerifier,
    send: Option<SmsSender>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSnsConfig {
    /// Only these topics are accepted and confirmed.
    pub topic_arns: Vec<String>,
    /// Replies through End User Messaging SMS `SendTextMessage`.
    pub send: Option<AwsSnsSendConfig>,
}

/// `[providers.aws_sns.send]`: the credentials are the process's own (the
/// Lambda role, or the usual AWS environment), never in this table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSnsSendConfig {
    /// The phone number, pool id or ARN replies leave from when the
    /// message names no clinic number.
    pub origination_identity: String,
    /// A configuration set, for its event destinations (delivery events and
    /// blocks back to the webhook's topic).
    pub configuration_set: Option<String>,
    /// Another endpoint than the region's (a local fake in tests).
    pub endpoint_url: Option<String>,
    /// The region of the origination identity, when not the process's.
    pub region: Option<String>,
}

/// The send path: the SDK client is built on the first send, so a function
/// that never sends does no work for it at start.
struct SmsSender {
    config: AwsSnsSendConfig,
    client: tokio::sync::OnceCell<sms::Client>,
    /// Tests hand in fixed credentials; otherwise the default chain.
    credentials: Option<sms::config::Credentials>,
}

/// The ConflictException reason `SendTextMessage` answers for a destination
/// on the opt-out list. The API reference of SendTextMessage lists its
/// errors as AccessDenied, Conflict, InternalServer, ResourceNotFound,
/// ServiceQuotaExceeded, Throttling and Validation: `OptedOutException` is
/// SNS's `Publish` error, not this API's (it is still read as an opt-out if
/// it ever comes). `DESTINATION_PHONE_NUMBER_BLOCKED_BY_PROTECT_NUMBER_OVERRIDE`
/// is the account's own protect rule, not the patient's word: refused.
pub const OPTED_OUT_REASON: &str = "DESTINATION_PHONE_NUMBER_OPTED_OUT";

impl SmsSender {
    async fn client(&self) -> &sms::Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    // The outbox worker retries with its own backoff.
                    .retry_config(aws_config::retry::RetryConfig::disabled())
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder().operation_timeout(send::SEND_TIMEOUT).build(),
                    );
                if let Some(region) = &self.config.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                if let Some(url) = &self.config.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                if let Some(credentials) = &self.credentials {
                    loader = loader.credentials_provider(credentials.clone());
                }
                sms::Client::new(&loader.load().await)
            })
            .await
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        // The clinic number the patient wrote to, else the configured one.
        let origination = message.from.map_or(self.config.origination_identity.as_str(), PhoneNumber::as_e164);
        let output = self
            .client()
            .await
            .send_text_message()
            .destination_phone_number(message.to.as_e164())
            .origination_identity(origination)
            .message_body(message.body)
            .message_type(sms::types::MessageType::Transactional)
            .set_configuration_set_name(self.config.configuration_set.clone())
            .send()
            .await
            .map_err(classify)?;
        Ok(Sent { message_id: output.message_id })
    }
}

/// The SDK's error as a `SendError`. Reasons carry the error's code and
/// reason enum only: AWS's messages may quote the request's values.
fn classify(
    error: sms::error::SdkError<
        sms::operation::send_text_message::SendTextMessageError,
        sms::config::http::HttpResponse,
    >,
) -> SendError {
    use sms::error::{ProvideErrorMetadata, SdkError};
    use sms::operation::send_text_message::SendTextMessageError as E;
    let temporary = |reason: String, retry_after| SendError::Temporary { reason, retry_after };
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let retry_after = service.raw().headers().get("retry-after").and_then(|value| {
                let mut headers = http::HeaderMap::new();
                headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_str(value).ok()?);
                send::retry_after(&headers, OffsetDateTime::now_utc())
            });
            let error = service.into_err();
            let code = error.code().unwrap_or("unknown error").to_owned();
            match &error {
                E::ThrottlingException(_) | E::InternalServerException(_) => {
                    temporary(format!("AWS answered {status}: {code}"), retry_after)
                }
                E::ConflictException(conflict) if conflict.reason().is_some_and(|r| r.as_str() == OPTED_OUT_REASON) => {
                    SendError::OptedOut {
                        code: OPTED_OUT_REASON.to_owned(),
                        reason: format!("AWS answered {status}: {code}"),
                    }
                }
                _ if code == "OptedOutException" => {
                    SendError::OptedOut { code, reason: format!("AWS answered {status}") }
                }
                _ if status == 408 || status == 429 || status >= 500 => {
                    temporary(format!("AWS answered {status}: {code}"), retry_after)
                }
                E::ConflictException(conflict) => SendError::refused(format!(
                    "AWS answered {status}: {code} ({})",
                    conflict.reason().map_or("no reason", |r| r.as_str())
                )),
                E::ValidationException(invalid) => SendError::refused(format!(
                    "AWS answered {status}: {code} ({})",
                    invalid.reason().map_or("no reason", |r| r.as_str())
                )),
                _ => SendError::refused(format!("AWS answered {status}: {code}")),
            }
        }
        SdkError::TimeoutError(_) => temporary("AWS did not answer in time".into(), None),
        SdkError::DispatchFailure(_) => temporary("network: the request to AWS could not be sent".into(), None),
        SdkError::ResponseError(_) => temporary("AWS's answer could not be read".into(), None),
        SdkError::ConstructionFailure(_) => SendError::refused("the request to AWS could not be built"),
        _ => temporary("AWS SDK error".into(), None),
    }
}

impl Configured for AwsSns {
    type Config = AwsSnsConfig;

    fn from_config(config: &AwsSnsConfig, outside: &Outside) -> Result<Self, ProviderConfigError> {
        non_empty(&config.topic_arns, "topic_arns")?;
        if let Some(j) =
            config.topic_arns.iter().position(|arn| !arn.starts_with("arn:aws") || arn.split(':').count() != 6)
        {
            return Err(bad(format!("topic_arns[{j}]"), "must be an SNS topic ARN (arn:aws:sns:region:account:name)"));
        }
        let send = match &config.send {
            Some(table) => {
                Some(SmsSender { config: check_send(table)?, client: Default::default(), credentials: None })
            }
            None => None,
        };
        Ok(AwsSns {
            topic_arns: config.topic_arns.clone(),
            verifier: SnsVerifier::new(outside.sns_network.clone()),
            send,
        })
    }
}

fn check_send(table: &AwsSnsSendConfig) -> Result<AwsSnsSendConfig, ProviderConfigError> {
    if table.origination_identity.trim().is_empty() {
        return Err(bad("send.origination_identity", "must be a phone number, pool id or ARN"));
    }
    if table.configuration_set.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(bad("send.configuration_set", "must not be empty"));
    }
    if let Some(region) = &table.region {
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(bad("send.region", "must be an AWS region (us-east-1)"));
        }
    }
    if let Some(url) = &table.endpoint_url {
        send::check_base_url(url, "send.endpoint_url")?;
    }
    Ok(table.clone())
}

#[async_trait]
impl Provider for AwsSns {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        receive(&self.verifier, &self.topic_arns, request).await
    }

    fn sends(&self) -> bool {
        self.send.is_some()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match &self.send {
            Some(sender) => sender.send(message).await,
            None => Err(SendError::NotConfigured("the provider has no send table")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;
    use sha1::Sha1;

    /// Serves fixed certificates and records confirmations.
    #[derive(Default)]
    pub struct FakeNetwork {
        pub certificates: HashMap<String, Vec<u8>>,
        pub fetches: Mutex<usize>,
        pub confirmed: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl SnsNetwork for FakeNetwork {
        async fn fetch_certificate(&self, url: &str) -> Result<Vec<u8>, String> {
            *self.fetches.lock().unwrap() += 1;
            self.certificates.get(url).cloned().ok_or_else(|| "404".into())
        }
        async fn confirm_subscription(&self, url: &str) -> Result<(), String> {
            self.confirmed.lock().unwrap().push(url.to_owned());
            Ok(())
        }
    }

    fn vectors() -> Vec<SnsMessage> {
        serde_json::from_str(include_str!("../../tests/vectors/signatures/aws_sns_messages.json")).unwrap()
    }

    fn network() -> Arc<FakeNetwork> {
        let pem = include_bytes!("../../tests/vectors/signatures/aws_sns_signing_cert_us-east-2_2022.pem").to_vec();
        let url = vectors()[0].signing_cert_url.clone();
        Arc::new(FakeNetwork { certificates: HashMap::from([(url, pem)]), ..Default::default() })
    }

    fn in_2022() -> OffsetDateTime {
        time::macros::datetime!(2022-07-29 00:00 UTC)
    }

    #[tokio::test]
    async fn the_four_real_messages_verify_and_the_certificate_is_fetched_once() {
        let network = network();
        let verifier = SnsVerifier::new(network.clone());
        let all: Value = serde_json::from_str(include_str!("../../tests/vectors/signatures/vectors.json")).unwrap();
        for (message, reference) in vectors().iter().zip(all["aws_sns"]["messages"].as_array().unwrap()) {
            assert_eq!(message.string_to_sign().unwrap(), reference["_string_to_sign"].as_str().unwrap());
            assert_eq!(verifier.verify(message, in_2022()).await, Ok(()), "{}", message.message_id);
        }
        assert_eq!(*network.fetches.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn tampered_expired_and_foreign_certificates_are_refused() {
        let verifier = SnsVerifier::new(network());
        let mut tampered = vectors()[0].clone();
        tampered.message = "Goodbye world".into();
        assert_eq!(verifier.verify(&tampered, in_2022()).await, Err(SignatureError::InvalidSignature));
        let mut v1_as_v2 = vectors()[0].clone();
        v1_as_v2.signature_version = "2".into();
        assert_eq!(verifier.verify(&v1_as_v2, in_2022()).await, Err(SignatureError::InvalidSignature));
        let expired = verifier.verify(&vectors()[0], time::macros::datetime!(2026-01-01 0:00 UTC)).await;
        assert_eq!(expired, Err(SignatureError::InvalidToken("signing certificate is not valid now")));
        for url in [
            "http://sns.us-east-2.amazonaws.com/cert.pem",
            "https://sns.us-east-2.amazonaws.com.evil.example/cert.pem",
            "https://evil.example/sns.us-east-2.amazonaws.com/cert.pem",
            "https://sns.us-east-2.amazonaws.com/cert.txt",
            "https://user@sns.us-east-2.amazonaws.com/cert.pem",
            "https://sns.us-east-2.amazonaws.com:8443/cert.pem",
        ] {
            let mut foreign = vectors()[0].clone();
            foreign.signing_cert_url = url.into();
            assert!(verifier.verify(&foreign, in_2022()).await.is_err(), "{url}");
        }
        assert!(is_sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", true));
    }

    #[tokio::test]
    async fn a_certificate_with_a_key_under_2048_bits_is_refused_as_unreadable() {
        assert!(parse_certificate(include_bytes!("../../tests/fixtures/sns/signing-cert.pem")).is_ok());
        assert!(parse_certificate(include_bytes!("../../tests/fixtures/sns/small-key-cert.pem")).is_err());
        let pem = include_bytes!("../../tests/fixtures/sns/small-key-cert.pem").to_vec();
        let network =
            FakeNetwork { certificates: HashMap::from([(TEST_CERT_URL.to_owned(), pem)]), ..Default::default() };
        let verifier = SnsVerifier::new(Arc::new(network));
        let message: SnsMessage = serde_json::from_value(signed_notification("{}")).unwrap();
        let at = OffsetDateTime::parse("2026-03-01T12:00:00Z", &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(
            verifier.verify(&message, at).await,
            Err(SignatureError::InvalidToken("signing certificate unreadable"))
        );
    }

    #[test]
    fn a_lambda_style_message_with_null_subject_parses() {
        let json = r#"{"Type":"Notification","MessageId":"m","TopicArn":"t","Subject":null,"Message":"x","Timestamp":"2022-07-28T21:23:58.317Z","SignatureVersion":"1","Signature":"s","SigningCertUrl":"https://sns.us-east-2.amazonaws.com/c.pem","UnsubscribeUrl":"u"}"#;
        let m: SnsMessage = serde_json::from_str(json).unwrap();
        assert!(!m.string_to_sign().unwrap().contains("Subject"));
    }

    #[test]
    fn a_two_way_sms_notification_is_parsed() {
        let mut m = vectors()[0].clone();
        m.message = r#"{"originationNumber":"+14158675309","destinationNumber":"+14155550100","messageKeyword":"KEYWORD_123","messageBody":"STOP","inboundMessageId":"cae173d2-66b9-564c-8309-21f858e9fb84","previousPublishedMessageId":"wJ0example"}"#.into();
        let Received::Message(inbound) = parse_notification(&m).unwrap() else { panic!() };
        assert_eq!(inbound.message_id, "cae173d2-66b9-564c-8309-21f858e9fb84");
        m.message = "Hello world".into();
        assert!(parse_notification(&m).is_err());
    }

    #[test]
    fn a_timestamp_outside_1970_to_9999_is_a_payload_error() {
        let mut m = vectors()[0].clone();
        m.message = r#"{"originationNumber":"+14158675309","destinationNumber":"+14155550100","messageBody":"STOP","inboundMessageId":"x"}"#.into();
        m.timestamp = "0000-01-01T00:00:00+01:00".into();
        assert!(parse_notification(&m).is_err());
    }

    fn request<'a>(headers: &'a http::HeaderMap, body: &'a [u8]) -> WebhookRequest<'a> {
        WebhookRequest { method: "POST", url: "https://x/webhooks/aws-sns", headers, body, now: in_2022() }
    }

    #[tokio::test]
    async fn nothing_is_fetched_for_a_foreign_topic_or_another_region() {
        let network = network();
        let verifier = SnsVerifier::new(network.clone());
        let h = http::HeaderMap::new();
        let genuine = vectors()[0].clone();
        let topics = [genuine.topic_arn.clone()];
        let body = |m: &SnsMessage| {
            serde_json::json!({"Type": m.kind, "MessageId": m.message_id, "TopicArn": m.topic_arn, "Message": m.message,
                "Timestamp": m.timestamp, "SignatureVersion": m.signature_version, "Signature": m.signature,
                "SigningCertURL": m.signing_cert_url, "Subject": m.subject})
            .to_string()
        };
        let other = ["arn:aws:sns:us-east-2:999999999999:elsewhere".to_owned()];
        let outcome = receive(&verifier, &other, &request(&h, body(&genuine).as_bytes())).await;
        assert!(matches!(outcome, Err(Rejection::TopicNotAllowed)), "{outcome:?}");
        let mut moved = genuine.clone();
        moved.signing_cert_url = moved.signing_cert_url.replace("us-east-2", "eu-west-1");
        let outcome = receive(&verifier, &topics, &request(&h, body(&moved).as_bytes())).await;
        assert!(matches!(outcome, Err(Rejection::Signature(SignatureError::InvalidToken(_)))));
        assert_eq!(*network.fetches.lock().unwrap(), 0);
        assert_eq!(topic_region("arn:aws:sns:us-east-2:123:t"), Some("us-east-2"));
        assert_eq!(url_region("https://sns.cn-north-1.amazonaws.com.cn/x.pem").as_deref(), Some("cn-north-1"));
    }

    #[tokio::test]
    async fn certificate_fetches_are_bounded_and_verified_certificates_are_kept() {
        let network = network();
        let verifier = SnsVerifier::new(network.clone());
        let genuine = vectors()[0].clone();
        assert_eq!(verifier.verify(&genuine, in_2022()).await, Ok(()));
        for i in 0..(2 * CERTIFICATE_CACHE_SIZE) {
            let mut probe = genuine.clone();
            probe.signing_cert_url = format!("https://sns.us-east-2.amazonaws.com/probe-{i}.pem");
            assert!(verifier.prefetch(&probe).await.is_err());
        }
        assert_eq!(*network.fetches.lock().unwrap(), CERTIFICATE_FETCHES_PER_MINUTE as usize);
        assert_eq!(verifier.verify(&genuine, in_2022()).await, Ok(()));
        assert_eq!(*network.fetches.lock().unwrap(), CERTIFICATE_FETCHES_PER_MINUTE as usize, "still cached");
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<AwsSns>(
            r#"topic_arns = ["arn:aws:sns:us-east-1:123456789012:inbound"]"#
        )
        .is_ok());
        for (section, field) in [(r#"topic_arns = ["inbound"]"#, "topic_arns[0]"), (r#"topic_arns = []"#, "topic_arns")]
        {
            let error = crate::providers::tests::build::<AwsSns>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }

    // ---------------------------------------------------------------- send

    use crate::providers::send::fake::{FakeApi, Reply};

    const AMZ_JSON: &str = "application/x-amz-json-1.0";

    fn amz(status: u16, body: Value) -> Reply {
        Reply { status, headers: Vec::new(), body: body.to_string(), content_type: AMZ_JSON }
    }

    /// A provider whose send table points at `fake`, signing with fixed
    /// test credentials (the process environment is left alone).
    fn sender(endpoint_url: &str, configuration_set: Option<&str>) -> AwsSns {
        let table = format!(
            "topic_arns = [\"arn:aws:sns:us-east-1:123456789012:inbound\"]\n[send]\norigination_identity = \"pool-0123456789abcdef0123456789abcdef\"\nendpoint_url = \"{}\"\nregion = \"eu-west-1\"\n{}",
            endpoint_url,
            configuration_set.map(|c| format!("configuration_set = \"{c}\"")).unwrap_or_default()
        );
        let mut provider = crate::providers::tests::build::<AwsSns>(&table).expect("valid send table");
        assert!(provider.sends());
        if let Some(sender) = provider.send.as_mut() {
            sender.credentials =
                Some(sms::config::Credentials::new("AKIDTESTING", "testing-secret", None, None, "test"));
        }
        provider
    }

    fn patient() -> PhoneNumber {
        PhoneNumber::parse("+14155550100").unwrap()
    }

    fn clinic() -> PhoneNumber {
        PhoneNumber::parse("+12065550152").unwrap()
    }

    fn outbound<'a>(to: &'a PhoneNumber, from: Option<&'a PhoneNumber>) -> OutboundMessage<'a> {
        OutboundMessage { to, from, body: "You are unsubscribed. Reply START to resubscribe.", reference: "evt-1" }
    }

    #[tokio::test]
    async fn send_text_message_is_signed_json_with_the_documented_fields() {
        let fake =
            FakeApi::start(vec![amz(200, serde_json::json!({"MessageId": "f3b3a1c2-0000-4000-8000-000000000001"}))])
                .await;
        let provider = sender(&fake.base_url, Some("replies"));
        let (to, from) = (patient(), clinic());
        let sent = provider.send(&outbound(&to, Some(&from))).await.unwrap();
        assert_eq!(sent, Sent { message_id: Some("f3b3a1c2-0000-4000-8000-000000000001".into()) });
        let sent = provider.send(&outbound(&to, None)).await.unwrap();
        assert!(sent.message_id.is_some());

        let seen = fake.seen();
        assert_eq!(seen.len(), 2);
        let first = &seen[0];
        assert_eq!(first.method, http::Method::POST);
        assert_eq!(first.uri, "/");
        assert_eq!(first.header("x-amz-target"), Some("PinpointSMSVoiceV2.SendTextMessage"));
        assert_eq!(first.header("content-type"), Some(AMZ_JSON));
        let authorization = first.header("authorization").unwrap();
        assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTESTING/"), "{authorization}");
        assert!(authorization.contains("/eu-west-1/sms-voice/aws4_request"), "{authorization}");
        assert!(!authorization.contains("testing-secret"));
        assert!(first.header("x-amz-date").is_some());
        assert_eq!(
            first.json(),
            serde_json::json!({
                "DestinationPhoneNumber": "+14155550100",
                "OriginationIdentity": "+12065550152",
                "MessageBody": "You are unsubscribed. Reply START to resubscribe.",
                "MessageType": "TRANSACTIONAL",
                "ConfigurationSetName": "replies",
            })
        );
        // No clinic number: the configured origination identity.
        assert_eq!(seen[1].json()["OriginationIdentity"], "pool-0123456789abcdef0123456789abcdef");
        let raw = String::from_utf8_lossy(&first.body);
        assert!(!raw.contains("testing-secret"));
    }

    #[tokio::test]
    async fn no_configuration_set_sends_none() {
        let fake = FakeApi::start(vec![amz(200, serde_json::json!({"MessageId": "m"}))]).await;
        let provider = sender(&fake.base_url, None);
        let to = patient();
        provider.send(&outbound(&to, None)).await.unwrap();
        assert!(fake.seen()[0].json().get("ConfigurationSetName").is_none());
    }

    #[tokio::test]
    async fn an_opted_out_destination_is_opted_out_and_other_answers_are_classified() {
        let fake = FakeApi::start(vec![
            amz(
                400,
                serde_json::json!({"__type": "ConflictException", "Message": "Destination +14155550100 is opted out",
                    "Reason": "DESTINATION_PHONE_NUMBER_OPTED_OUT", "ResourceType": "opt-out-list", "ResourceId": "Default"}),
            ),
            amz(
                400,
                serde_json::json!({"__type": "ValidationException", "Message": "Value +14155550100 is invalid",
                    "Reason": "INVALID_PARAMETER"}),
            ),
            amz(
                400,
                serde_json::json!({"__type": "ConflictException", "Message": "blocked",
                    "Reason": "DESTINATION_PHONE_NUMBER_BLOCKED_BY_PROTECT_NUMBER_OVERRIDE"}),
            ),
            amz(400, serde_json::json!({"__type": "ThrottlingException", "Message": "Rate exceeded"}))
                .with_header("retry-after", "3"),
            amz(500, serde_json::json!({"__type": "InternalServerException", "Message": "oops"})),
            amz(503, serde_json::json!({})),
            amz(400, serde_json::json!({"__type": "AccessDeniedException", "Message": "no"})),
        ])
        .await;
        let provider = sender(&fake.base_url, None);
        let to = patient();
        let message = outbound(&to, None);
        match provider.send(&message).await {
            Err(SendError::OptedOut { code, reason }) => {
                assert_eq!(code, "DESTINATION_PHONE_NUMBER_OPTED_OUT");
                assert!(!reason.contains("4155550100"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        match provider.send(&message).await {
            Err(SendError::Refused { reason }) => {
                assert!(reason.contains("ValidationException") && reason.contains("INVALID_PARAMETER"), "{reason}");
                assert!(!reason.contains("4155550100"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(provider.send(&message).await, Err(SendError::Refused { .. })));
        assert_eq!(
            provider.send(&message).await,
            Err(SendError::Temporary {
                reason: "AWS answered 400: ThrottlingException".into(),
                retry_after: Some(Duration::from_secs(3))
            })
        );
        assert!(matches!(provider.send(&message).await, Err(SendError::Temporary { .. })));
        assert!(matches!(provider.send(&message).await, Err(SendError::Temporary { .. })));
        assert!(matches!(provider.send(&message).await, Err(SendError::Refused { .. })));
        assert_eq!(fake.seen().len(), 7, "one request each: the worker, not the SDK, retries");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_temporary_and_no_send_table_is_not_configured() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let to = patient();
        assert!(matches!(sender(&url, None).send(&outbound(&to, None)).await, Err(SendError::Temporary { .. })));
        let plain =
            crate::providers::tests::build::<AwsSns>(r#"topic_arns = ["arn:aws:sns:us-east-1:123456789012:inbound"]"#)
                .unwrap();
        assert!(!plain.sends());
        assert!(matches!(plain.send(&outbound(&to, None)).await, Err(SendError::NotConfigured(_))));
    }

    #[test]
    fn a_bad_send_table_names_its_field() {
        let topics = "topic_arns = [\"arn:aws:sns:us-east-1:123456789012:inbound\"]\n[send]\n";
        for (table, field) in [
            ("origination_identity = \"\"", "send.origination_identity"),
            ("origination_identity = \"+12065550152\"\nendpoint_url = \"http://sms.example.com\"", "send.endpoint_url"),
            ("origination_identity = \"+12065550152\"\nendpoint_url = \"not a url\"", "send.endpoint_url"),
            ("origination_identity = \"+12065550152\"\nregion = \"\"", "send.region"),
            ("origination_identity = \"+12065550152\"\nconfiguration_set = \" \"", "send.configuration_set"),
        ] {
            let error = crate::providers::tests::build::<AwsSns>(&format!("{topics}{table}")).err().expect(table);
            assert_eq!(error.field, field, "{table}: {error}");
        }
        let unknown = toml::from_str::<AwsSnsConfig>(&format!("{topics}origination_identity = \"x\"\napi_key = \"k\""));
        assert!(unknown.is_err(), "unknown fields are refused");
        assert!(
            toml::from_str::<AwsSnsConfig>(&format!("{topics}region = \"us-east-1\"")).is_err(),
            "identity required"
        );
    }

    // ---------------------------------------------------------------- events

    fn event(status: &str, event_type: &str) -> String {
        serde_json::json!({
            "eventType": event_type, "eventVersion": "1.0", "eventTimestamp": 1_686_975_103_470_i64, "isFinal": true,
            "originationPhoneNumber": "+12065550152", "destinationPhoneNumber": "+14255550156",
            "isoCountryCode": "US", "messageId": "862a8790-60c0-4430-9b2b-658bdexample",
            "messageRequestTimestamp": 1_686_975_103_170_i64, "messageEncoding": "GSM", "messageType": "TRANSACTIONAL",
            "messageStatus": status, "messageStatusDescription": "x", "totalMessageParts": 1,
        })
        .to_string()
    }

    #[test]
    fn a_blocked_or_opted_out_event_record_is_a_provider_opt_out() {
        for (status, event_type, code) in [
            ("BLOCKED", "TEXT_BLOCKED", "BLOCKED"),
            ("OPTED_OUT", "TEXT_UNREACHABLE", "OPTED_OUT"),
            ("SOMETHING_NEW", "TEXT_BLOCKED", "TEXT_BLOCKED"),
        ] {
            let mut m = vectors()[0].clone();
            m.message = event(status, event_type);
            let Received::ProviderOptOut(block) = parse_notification(&m).unwrap() else { panic!("{status}") };
            assert_eq!(block.provider, NAME);
            assert_eq!(block.message_id, "862a8790-60c0-4430-9b2b-658bdexample");
            assert_eq!(block.number.as_e164(), "+14255550156");
            assert_eq!(block.clinic.as_ref().map(PhoneNumber::as_e164), Some("+12065550152"));
            assert_eq!(block.code, code);
            assert_eq!(block.occurred_at, Some(time::macros::datetime!(2023-06-17 04:11:43.470 UTC)));
        }
        // A sender id is no clinic number: the opt-out counts everywhere.
        let mut m = vectors()[0].clone();
        m.message = event("BLOCKED", "TEXT_BLOCKED").replace("+12065550152", "VAJZNBLLDX");
        let Received::ProviderOptOut(block) = parse_notification(&m).unwrap() else { panic!() };
        assert!(block.clinic.is_none());
        // An opt-out event without the patient's number is a payload error.
        m.message = event("BLOCKED", "TEXT_BLOCKED").replace("\"destinationPhoneNumber\":\"+14255550156\",", "");
        assert!(parse_notification(&m).is_err());
    }

    #[test]
    fn other_event_records_are_ignored() {
        for (status, event_type) in [
            ("SUCCESSFUL", "TEXT_SUCCESSFUL"),
            ("DELIVERED", "TEXT_DELIVERED"),
            ("CARRIER_BLOCKED", "TEXT_CARRIER_BLOCKED"),
        ] {
            let mut m = vectors()[0].clone();
            m.message = event(status, event_type);
            assert!(matches!(parse_notification(&m), Ok(Received::Ignored(_))), "{status}");
        }
    }

    /// An SNS notification carrying `inner`, signed (SignatureVersion 1)
    /// with the tests' throwaway key, whose certificate `signed_network`
    /// serves.
    fn signed_notification(inner: &str) -> Value {
        use rsa::pkcs8::DecodePrivateKey;
        use rsa::signature::{SignatureEncoding, Signer};
        let mut m = SnsMessage {
            kind: "Notification".into(),
            message_id: "5d6a0f4e-1111-4c2a-9c55-000000000001".into(),
            topic_arn: TEST_TOPIC.into(),
            subject: None,
            message: inner.into(),
            timestamp: "2026-03-01T12:00:00.000Z".into(),
            signature_version: "1".into(),
            signature: String::new(),
            signing_cert_url: TEST_CERT_URL.into(),
            subscribe_url: None,
            token: None,
        };
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../../tests/fixtures/sns/signing-key.pem")).unwrap();
        let signature = rsa::pkcs1v15::SigningKey::<Sha1>::new(key).sign(m.string_to_sign().unwrap().as_bytes());
        m.signature = STANDARD.encode(signature.to_bytes());
        serde_json::json!({"Type": m.kind, "MessageId": m.message_id, "TopicArn": m.topic_arn, "Message": m.message,
            "Timestamp": m.timestamp, "SignatureVersion": m.signature_version, "Signature": m.signature,
            "SigningCertURL": m.signing_cert_url})
    }

    const TEST_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:sms-consent-events";
    const TEST_CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";

    fn signed_network() -> Arc<FakeNetwork> {
        let pem = include_bytes!("../../tests/fixtures/sns/signing-cert.pem").to_vec();
        Arc::new(FakeNetwork { certificates: HashMap::from([(TEST_CERT_URL.to_owned(), pem)]), ..Default::default() })
    }

    async fn receive_signed(body: &Value) -> Result<Received, Rejection> {
        let verifier = SnsVerifier::new(signed_network());
        let h = http::HeaderMap::new();
        let body = body.to_string();
        let request = WebhookRequest {
            method: "POST",
            url: "https://x/webhooks/aws-sns",
            headers: &h,
            body: body.as_bytes(),
            now: time::macros::datetime!(2026-03-01 12:00 UTC),
        };
        receive(&verifier, &[TEST_TOPIC.to_owned()], &request).await
    }

    #[tokio::test]
    async fn a_signed_blocked_event_is_an_opt_out_and_a_signed_delivered_one_is_ignored() {
        let outcome = receive_signed(&signed_notification(&event("BLOCKED", "TEXT_BLOCKED"))).await;
        let Ok(Received::ProviderOptOut(block)) = outcome else { panic!("{outcome:?}") };
        assert_eq!((block.code.as_str(), block.number.as_e164()), ("BLOCKED", "+14255550156"));
        assert_eq!(block.message_id, "862a8790-60c0-4430-9b2b-658bdexample");
        let outcome = receive_signed(&signed_notification(&event("DELIVERED", "TEXT_DELIVERED"))).await;
        assert!(matches!(outcome, Ok(Received::Ignored(_))), "{outcome:?}");
    }

    #[tokio::test]
    async fn an_unsigned_or_tampered_blocked_event_is_refused() {
        let mut tampered = signed_notification(&event("DELIVERED", "TEXT_DELIVERED"));
        tampered["Message"] = event("BLOCKED", "TEXT_BLOCKED").into();
        let outcome = receive_signed(&tampered).await;
        assert!(matches!(outcome, Err(Rejection::Signature(SignatureError::InvalidSignature))), "{outcome:?}");
        let mut unsigned = signed_notification(&event("BLOCKED", "TEXT_BLOCKED"));
        unsigned.as_object_mut().unwrap().remove("Signature");
        let outcome = receive_signed(&unsigned).await;
        assert!(matches!(outcome, Err(Rejection::Signature(SignatureError::MissingHeader(_)))), "{outcome:?}");
    }
}
