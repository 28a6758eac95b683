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
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde::Deserialize;
use sha1::Sha1;
use sha2::Sha256;
use time::OffsetDateTime;

use super::{
    bad, json_body, non_empty, parse_rfc3339, phone, required, Configured, InboundMessage, Outside, PayloadError,
    Profile, Provider, ProviderConfigError, Received, Rejection, ReplyStyle, SignatureError, WebhookRequest,
};

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

struct Certificate {
    key: RsaPublicKey,
    not_before: i64,
    not_after: i64,
}

fn parse_certificate(pem: &[u8]) -> Result<Certificate, String> {
    use x509_cert::der::{DecodePem, Encode};
    let cert = x509_cert::Certificate::from_pem(pem).map_err(|e| format!("certificate: {e}"))?;
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    let key = RsaPublicKey::from_public_key_der(&spki).map_err(|e| format!("certificate key: {e}"))?;
    let validity = &cert.tbs_certificate.validity;
    Ok(Certificate {
        key,
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
        let signature = STANDARD
            .decode(message.signature.trim())
            .ok()
            .and_then(|b| Signature::try_from(b.as_slice()).ok())
            .ok_or(SignatureError::MalformedHeader("Signature"))?;
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
        let valid = match message.signature_version.as_str() {
            "1" => VerifyingKey::<Sha1>::new(cert.key.clone()).verify(signed.as_bytes(), &signature).is_ok(),
            "2" => VerifyingKey::<Sha256>::new(cert.key.clone()).verify(signed.as_bytes(), &signature).is_ok(),
            _ => return Err(SignatureError::MalformedHeader("SignatureVersion")),
        };
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

fn parse_notification(message: &SnsMessage) -> Result<Received, PayloadError> {
    let inner: TwoWayMessage = serde_json::from_str(&message.message)
        .map_err(|_| PayloadError("Message is not an End User Messaging two-way SMS".into()))?;
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSnsConfig {
    /// Only these topics are accepted and confirmed.
    pub topic_arns: Vec<String>,
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
        Ok(AwsSns { topic_arns: config.topic_arns.clone(), verifier: SnsVerifier::new(outside.sns_network.clone()) })
    }
}

#[async_trait]
impl Provider for AwsSns {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        receive(&self.verifier, &self.topic_arns, request).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

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
}
