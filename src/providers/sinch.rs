//! Sinch (SMS REST callbacks and the Conversation API):
//! `base64(HMAC-SHA256(secret, body.nonce.timestamp))` in
//! `x-sinch-webhook-signature`, timestamps within five minutes. A delivery
//! report with the opt-out code is the provider's opt-out. Replies go out
//! through the SMS REST API's batches when `[providers.sinch.send]` is set.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::send::{self, OutboundMessage, SendError, Sent};
use super::{
    bad, check_timestamp, digits_phone, json_body, parse_rfc3339, required, same_bytes, secrets, Configured,
    InboundMessage, Outside, PayloadError, Profile, Provider, ProviderBlock, ProviderConfigError, Received, Rejection,
    ReplyStyle, Secret, SignatureError, WebhookRequest,
};

pub const NAME: &str = "sinch";
pub const SIGNATURE_HEADER: &str = "x-sinch-webhook-signature";
pub const NONCE_HEADER: &str = "x-sinch-webhook-signature-nonce";
pub const TIMESTAMP_HEADER: &str = "x-sinch-webhook-signature-timestamp";
pub const ALGORITHM_HEADER: &str = "x-sinch-webhook-signature-algorithm";
pub const REPLY_STYLE: ReplyStyle = ReplyStyle {
    inline: false,
    auto_reply_keywords: &[
        "STOP",
        "UNSUBSCRIBE",
        "DETENER",
        "SALIR",
        "PARAR",
        "CANCELAR",
        "START",
        "SUBSCRIBE",
        "VOLVER",
        "RECIBIR",
        "VOLTAR",
        "RECEBER",
    ],
};
const PROFILE: Profile = Profile { name: NAME, methods: super::POST, reply_style: REPLY_STYLE };
/// The SMS REST API's regions.
pub const REGIONS: &[&str] = &["us", "eu", "au", "br", "ca"];
/// A delivery report's `code` for a recipient who opted out: `257` "User
/// opted out (STOP)", which Sinch reports for a message to a subscriber who
/// texted STOP (the REST API's codes include the SMPP status-report codes).
/// See https://community.sinch.com/t5/Toll-Free-Numbers-TFN/How-does-STOP-work-on-a-Toll-Free-number/ta-p/15313
/// and https://developers.sinch.com/docs/sms/api-reference/sms/delivery-reports/delivery-report-error-codes
/// Sinch's send errors (`code`, `text`) carry no opt-out code.
pub const OPT_OUT_CODES: &[i64] = &[257];

pub fn sign(secret: &str, body: &[u8], nonce: &str, timestamp: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.update(format!(".{nonce}.{timestamp}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

pub fn verify(secrets: &[Secret], request: &WebhookRequest<'_>) -> Result<(), SignatureError> {
    let signature = request.header(SIGNATURE_HEADER).ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
    let nonce = request.header(NONCE_HEADER).ok_or(SignatureError::MissingHeader(NONCE_HEADER))?;
    let timestamp = request.header(TIMESTAMP_HEADER).ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    if request.header(ALGORITHM_HEADER).is_some_and(|a| !a.eq_ignore_ascii_case("HmacSHA256")) {
        return Err(SignatureError::MalformedHeader(ALGORITHM_HEADER));
    }
    let provided = STANDARD.decode(signature.trim()).map_err(|_| SignatureError::MalformedHeader(SIGNATURE_HEADER))?;
    check_timestamp(timestamp, TIMESTAMP_HEADER, request.now)?;
    let matched = secrets.iter().any(|s| {
        let expected = STANDARD.decode(sign(s.expose(), request.body, nonce, timestamp)).expect("own base64");
        same_bytes(&expected, &provided)
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::InvalidSignature)
    }
}

#[derive(Deserialize)]
struct Callback {
    #[serde(rename = "type")]
    kind: Option<String>,
    // Delivery reports (`delivery_report_sms`, `recipient_delivery_report_sms`).
    batch_id: Option<String>,
    recipient: Option<String>,
    code: Option<i64>,
    at: Option<String>,
    #[serde(default)]
    statuses: Vec<BatchStatus>,
    // SMS REST inbound (`mo_text`).
    id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    body: Option<String>,
    received_at: Option<String>,
    // Conversation API inbound (`message_inbound`).
    message: Option<ConversationMessage>,
}

/// One line of a batch delivery report (`full` lists its recipients).
#[derive(Deserialize)]
struct BatchStatus {
    code: Option<i64>,
    #[serde(default)]
    recipients: Vec<String>,
}

/// A delivery report whose code is an opt-out: the recipient is the
/// patient. The report names no sender, so the opt-out has no clinic.
fn delivery_report(callback: Callback) -> Result<Received, PayloadError> {
    let opted_out = |code: Option<i64>| code.is_some_and(|c| OPT_OUT_CODES.contains(&c));
    let (code, recipient, field) = if opted_out(callback.code) {
        (callback.code, callback.recipient, "recipient")
    } else if let Some(status) = callback.statuses.into_iter().find(|s| opted_out(s.code)) {
        (status.code, status.recipients.into_iter().next(), "statuses[].recipients[0]")
    } else {
        return Ok(Received::Ignored("a delivery report without an opt-out code"));
    };
    Ok(Received::ProviderOptOut(ProviderBlock {
        provider: NAME.to_owned(),
        message_id: required(callback.batch_id.as_deref(), "batch_id")?.to_owned(),
        number: digits_phone(required(recipient.as_deref(), field)?, field)?,
        clinic: None,
        code: code.map(|c| c.to_string()).unwrap_or_default(),
        occurred_at: callback.at.as_deref().map(|t| parse_rfc3339(t, "at")).transpose()?,
    }))
}

#[derive(Deserialize)]
struct ConversationMessage {
    id: Option<String>,
    direction: Option<String>,
    contact_message: Option<ContactMessage>,
    channel_identity: Option<ChannelIdentity>,
    accept_time: Option<String>,
}

#[derive(Deserialize)]
struct ContactMessage {
    text_message: Option<TextMessage>,
}

#[derive(Deserialize)]
struct TextMessage {
    text: Option<String>,
}

#[derive(Deserialize)]
struct ChannelIdentity {
    channel: Option<String>,
    identity: Option<String>,
}

pub fn parse(body: &[u8]) -> Result<Received, PayloadError> {
    let callback: Callback = json_body(body)?;
    if let Some(message) = callback.message {
        if message.direction.as_deref() != Some("TO_APP") {
            return Ok(Received::Ignored("not an inbound message"));
        }
        let identity =
            message.channel_identity.ok_or_else(|| PayloadError("missing field message.channel_identity".into()))?;
        if identity.channel.as_deref() != Some("SMS") {
            return Ok(Received::Ignored("not an SMS"));
        }
        let Some(text) = message.contact_message.and_then(|c| c.text_message).and_then(|t| t.text) else {
            return Ok(Received::Ignored("not a text message"));
        };
        // The Conversation API names the app, not the clinic number.
        return Ok(Received::Message(InboundMessage {
            provider: NAME,
            message_id: required(message.id.as_deref(), "message.id")?.to_owned(),
            from: digits_phone(
                required(identity.identity.as_deref(), "message.channel_identity.identity")?,
                "identity",
            )?,
            to: None,
            text,
            occurred_at: message.accept_time.as_deref().map(|t| parse_rfc3339(t, "message.accept_time")).transpose()?,
            replay_key: None,
        }));
    }
    match callback.kind.as_deref() {
        Some("mo_text") => Ok(Received::Message(InboundMessage {
            provider: NAME,
            message_id: required(callback.id.as_deref(), "id")?.to_owned(),
            from: digits_phone(required(callback.from.as_deref(), "from")?, "from")?,
            to: Some(digits_phone(required(callback.to.as_deref(), "to")?, "to")?),
            text: callback.body.ok_or_else(|| PayloadError("missing field body".into()))?,
            occurred_at: callback.received_at.as_deref().map(|t| parse_rfc3339(t, "received_at")).transpose()?,
            replay_key: None,
        })),
        Some("delivery_report_sms" | "recipient_delivery_report_sms") => delivery_report(callback),
        Some(_) => Ok(Received::Ignored("not an inbound text")),
        None => Err(PayloadError("missing field type".into())),
    }
}

pub fn receive(secrets: &[Secret], request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
    verify(secrets, request)?;
    Ok(parse(request.body)?)
}

/// Sinch, built from `[providers.sinch]`.
pub struct Sinch {
    secrets: Vec<Secret>,
    send: Option<SinchSend>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinchConfig {
    pub secrets: Vec<Secret>,
    /// Replies through the SMS REST API.
    pub send: Option<SinchSendConfig>,
}

/// `[providers.sinch.send]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinchSendConfig {
    pub service_plan_id: String,
    pub api_token: Secret,
    /// `us` (the default), `eu`, `au`, `br` or `ca`.
    pub region: Option<String>,
    /// Overrides the region's `https://<region>.sms.api.sinch.com`.
    pub base_url: Option<String>,
}

struct SinchSend {
    service_plan_id: String,
    api_token: Secret,
    base_url: String,
}

impl SinchSend {
    fn from_config(config: &SinchSendConfig) -> Result<Self, ProviderConfigError> {
        // The plan id goes into the path: letters and digits only.
        let plan = config.service_plan_id.trim();
        if plan.is_empty() || !plan.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad("send.service_plan_id", "must be the service plan id (letters and digits)"));
        }
        if config.api_token.expose().trim().is_empty() {
            return Err(bad("send.api_token", "must not be empty"));
        }
        let region = config.region.as_deref().unwrap_or("us");
        if !REGIONS.contains(&region) {
            return Err(bad("send.region", format!("must be one of {}", REGIONS.join(", "))));
        }
        if let Some(url) = &config.base_url {
            send::check_base_url(url, "send.base_url")?;
        }
        let default = format!("https://{region}.sms.api.sinch.com");
        Ok(SinchSend {
            service_plan_id: plan.to_owned(),
            api_token: config.api_token.clone(),
            base_url: send::base_url(config.base_url.as_deref(), &default),
        })
    }

    /// One batch to one recipient. Without a clinic number `from` is left
    /// out and Sinch sends from the plan's default originator. The delivery
    /// report of each recipient's final status comes to the webhook.
    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        let mut body = serde_json::json!({
            "to": [message.to.as_e164()],
            "body": message.body,
            "client_reference": message.reference,
            "delivery_report": "per_recipient_final",
        });
        if let Some(from) = message.from {
            body["from"] = from.as_e164().into();
        }
        let request = send::client()
            .post(format!("{}/xms/v1/{}/batches", self.base_url, self.service_plan_id))
            .bearer_auth(self.api_token.expose())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        // A refusal names its error `code`, never the error's text (which
        // may quote the numbers).
        let answer = send::execute(request).await?.accepted(|_| None, send::refusal_coded("/code"))?;
        Ok(Sent { message_id: answer.text_at("/id") })
    }
}

impl Configured for Sinch {
    type Config = SinchConfig;

    fn from_config(config: &SinchConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        secrets(&config.secrets, "secrets")?;
        let send = config.send.as_ref().map(SinchSend::from_config).transpose()?;
        Ok(Sinch { secrets: config.secrets.clone(), send })
    }
}

#[async_trait::async_trait]
impl Provider for Sinch {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        receive(&self.secrets, request)
    }

    fn sends(&self) -> bool {
        self.send.is_some()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match &self.send {
            Some(send) => send.send(message).await,
            None => Err(SendError::NotConfigured("no [providers.sinch.send] table")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::Value;
    use time::OffsetDateTime;

    fn vectors() -> Vec<Value> {
        let all: Value = serde_json::from_str(include_str!("../../tests/vectors/signatures/vectors.json")).unwrap();
        all["sinch"]["vectors"].as_array().unwrap().clone()
    }

    fn headers(v: &Value, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        h.insert(NONCE_HEADER, v["nonce"].as_str().unwrap().parse().unwrap());
        h.insert(TIMESTAMP_HEADER, v["timestamp"].as_str().unwrap().parse().unwrap());
        h.insert(ALGORITHM_HEADER, "HmacSHA256".parse().unwrap());
        h
    }

    fn check(v: &Value, secret: &str, signature: &str, body: &str, now: i64) -> Result<(), SignatureError> {
        let h = headers(v, signature);
        let request = WebhookRequest {
            method: "POST",
            url: "https://x/",
            headers: &h,
            body: body.as_bytes(),
            now: OffsetDateTime::from_unix_timestamp(now).unwrap(),
        };
        verify(&[Secret::new(secret)], &request)
    }

    #[test]
    fn both_published_vectors_verify() {
        for v in vectors() {
            let ts: i64 = v["timestamp"].as_str().unwrap().parse().unwrap();
            let (secret, sig, body) =
                (v["secret"].as_str().unwrap(), v["expected_signature"].as_str().unwrap(), v["body"].as_str().unwrap());
            assert_eq!(
                sign(secret, body.as_bytes(), v["nonce"].as_str().unwrap(), v["timestamp"].as_str().unwrap()),
                sig
            );
            assert_eq!(check(&v, secret, sig, body, ts), Ok(()));
            assert_eq!(check(&v, secret, sig, &body.replace('0', "1"), ts), Err(SignatureError::InvalidSignature));
            assert_eq!(check(&v, "wrong", sig, body, ts), Err(SignatureError::InvalidSignature));
            assert_eq!(check(&v, secret, sig, body, ts + 301), Err(SignatureError::TimestampTooOld));
            assert_eq!(check(&v, secret, sig, body, ts - 301), Err(SignatureError::FutureTimestamp));
        }
    }

    #[test]
    fn sms_and_conversation_inbound_are_parsed_and_reports_ignored() {
        let sms = br#"{"type":"mo_text","id":"01FC66621XXXXX119Z8PMV1QPQ","from":"14158675309","to":"14155550100","body":"Stop","operator_id":"311071","received_at":"2026-08-24T14:15:22Z"}"#;
        let Received::Message(m) = parse(sms).unwrap() else { panic!() };
        assert_eq!(m.to.unwrap().as_e164(), "+14155550100");
        let conversation = br#"{"app_id":"app","accepted_time":"2026-10-18T17:49:13Z","message":{"id":"01FJ","direction":"TO_APP","contact_message":{"text_message":{"text":"STOP"}},"channel_identity":{"channel":"SMS","identity":"14158675309","app_id":""},"accept_time":"2026-10-18T17:49:13Z"}}"#;
        let Received::Message(m) = parse(conversation).unwrap() else { panic!() };
        assert!(m.to.is_none());
        assert!(matches!(parse(vectors()[1]["body"].as_str().unwrap().as_bytes()).unwrap(), Received::Ignored(_)));
        assert!(parse(b"{}").is_err());
    }

    #[test]
    fn a_time_outside_1970_to_9999_is_a_payload_error() {
        let sms = br#"{"type":"mo_text","id":"01FC","from":"14158675309","to":"14155550100","body":"Stop","received_at":"0000-01-01T00:00:00+01:00"}"#;
        assert!(parse(sms).is_err());
        let conversation = br#"{"app_id":"app","message":{"id":"01FJ","direction":"TO_APP","contact_message":{"text_message":{"text":"STOP"}},"channel_identity":{"channel":"SMS","identity":"14158675309"},"accept_time":"1969-12-31T23:59:59Z"}}"#;
        assert!(parse(conversation).is_err());
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<Sinch>(r#"secrets = ["s"]"#).is_ok());
        for (section, field) in [(r#"secrets = [""]"#, "secrets[0]"), (r#"secrets = []"#, "secrets")] {
            let error = crate::providers::tests::build::<Sinch>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }

    // --- Replies and the provider's opt-outs ---

    use crate::domain::PhoneNumber;
    use crate::providers::send::fake::{FakeApi, Reply};
    use serde_json::json;

    fn with_send(extra: &str) -> Sinch {
        crate::providers::tests::build::<Sinch>(&format!(
            "secrets = [\"whsecret\"]\n[send]\nservice_plan_id = \"jd63jf88477ll123ab4567cd89012ef3\"\n\
             api_token = \"tok3n\"\n{extra}"
        ))
        .unwrap()
    }

    async fn send_one(provider: &Sinch, from: Option<&PhoneNumber>) -> Result<Sent, SendError> {
        let patient = PhoneNumber::parse("+14158675309").unwrap();
        provider
            .send(&OutboundMessage { to: &patient, from, body: "Lakeside: you are unsubscribed.", reference: "ev-1" })
            .await
    }

    #[tokio::test]
    async fn a_reply_is_posted_as_a_batch_as_documented_and_its_id_read() {
        let fake = FakeApi::start(vec![Reply::json(
            201,
            json!({"id": "01FC66621XXXXX119Z8PMV1QPQ", "to": ["14158675309"], "from": "14155550100",
                "canceled": false, "body": "Lakeside: you are unsubscribed.", "type": "mt_text",
                "created_at": "2026-06-06T14:16:54.777Z", "delivery_report": "per_recipient_final"}),
        )])
        .await;
        let provider = with_send(&format!("base_url = \"{}\"", fake.base_url));
        assert!(provider.sends());
        let clinic = PhoneNumber::parse("+14155550100").unwrap();
        let sent = send_one(&provider, Some(&clinic)).await.unwrap();
        assert_eq!(sent.message_id.as_deref(), Some("01FC66621XXXXX119Z8PMV1QPQ"));
        let seen = fake.seen();
        assert_eq!(seen[0].method, http::Method::POST);
        assert_eq!(seen[0].uri, "/xms/v1/jd63jf88477ll123ab4567cd89012ef3/batches");
        assert_eq!(seen[0].header("authorization"), Some("Bearer tok3n"));
        assert_eq!(seen[0].header("content-type"), Some("application/json"));
        assert_eq!(
            seen[0].json(),
            json!({"from": "+14155550100", "to": ["+14158675309"], "body": "Lakeside: you are unsubscribed.",
                "client_reference": "ev-1", "delivery_report": "per_recipient_final"})
        );
        assert!(!String::from_utf8_lossy(&seen[0].body).contains("whsecret"));
        // Without a clinic number, the plan's default originator sends.
        send_one(&provider, None).await.unwrap();
        assert!(fake.seen()[1].json().get("from").is_none());
    }

    #[tokio::test]
    async fn error_answers_are_refused_or_temporary() {
        let fake = FakeApi::start(vec![
            Reply::json(
                400,
                json!({"code": "syntax_invalid_parameter_format",
                    "text": "Invalid recipient '+14158675309' in the to parameter"}),
            ),
            Reply::json(429, json!({"code": "too_many_requests", "text": "Slow down"})).with_header("retry-after", "3"),
            Reply::json(500, json!({})),
        ])
        .await;
        let provider = with_send(&format!("base_url = \"{}\"", fake.base_url));
        let Err(SendError::Refused { reason }) = send_one(&provider, None).await else { panic!() };
        assert!(reason.contains("syntax_invalid_parameter_format"), "{reason}");
        assert!(!reason.contains("4158675309"), "{reason}");
        assert_eq!(
            send_one(&provider, None).await,
            Err(SendError::Temporary {
                reason: "the provider answered 429 Too Many Requests".into(),
                retry_after: Some(std::time::Duration::from_secs(3))
            })
        );
        assert!(matches!(send_one(&provider, None).await, Err(SendError::Temporary { .. })));
        let plain = crate::providers::tests::build::<Sinch>(r#"secrets = ["s"]"#).unwrap();
        assert!(!plain.sends());
        assert!(matches!(send_one(&plain, None).await, Err(SendError::NotConfigured(_))));
    }

    #[test]
    fn the_region_picks_the_host_and_a_bad_send_table_names_its_field() {
        assert_eq!(with_send("").send.unwrap().base_url, "https://us.sms.api.sinch.com");
        assert_eq!(with_send("region = \"eu\"").send.unwrap().base_url, "https://eu.sms.api.sinch.com");
        let head = "secrets = [\"s\"]\n[send]\n";
        for (section, field) in [
            ("service_plan_id = \"\"\napi_token = \"t\"", "send.service_plan_id"),
            ("service_plan_id = \"a/b\"\napi_token = \"t\"", "send.service_plan_id"),
            ("service_plan_id = \"p\"\napi_token = \"\"", "send.api_token"),
            ("service_plan_id = \"p\"\napi_token = \"t\"\nregion = \"mars\"", "send.region"),
            ("service_plan_id = \"p\"\napi_token = \"t\"\nbase_url = \"http://sms.example.com\"", "send.base_url"),
        ] {
            let error = crate::providers::tests::build::<Sinch>(&format!("{head}{section}")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }

    fn signed(body: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, sign("whsecret", body.as_bytes(), "n0nce", "1780000000").parse().unwrap());
        h.insert(NONCE_HEADER, "n0nce".parse().unwrap());
        h.insert(TIMESTAMP_HEADER, "1780000000".parse().unwrap());
        h
    }

    async fn receive_with(provider: &Sinch, h: &HeaderMap, body: &str) -> Result<Received, Rejection> {
        let request = WebhookRequest {
            method: "POST",
            url: "https://x/webhooks/sinch",
            headers: h,
            body: body.as_bytes(),
            now: OffsetDateTime::from_unix_timestamp(1_780_000_001).unwrap(),
        };
        provider.receive(&request).await
    }

    fn recipient_report(code: i64, status: &str) -> String {
        json!({"type": "recipient_delivery_report_sms", "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
            "recipient": "14158675309", "code": code, "status": status, "at": "2026-06-06T14:17:02.000Z",
            "operator_status_at": "2026-06-06T14:17:00Z", "client_reference": "ev-1"})
        .to_string()
    }

    #[tokio::test]
    async fn a_signed_delivery_report_with_the_opt_out_code_is_a_provider_opt_out() {
        let provider = with_send("");
        let body = recipient_report(257, "Failed");
        let Received::ProviderOptOut(block) = receive_with(&provider, &signed(&body), &body).await.unwrap() else {
            panic!()
        };
        assert_eq!(block.provider, "sinch");
        assert_eq!(block.message_id, "01FC66621XXXXX119Z8PMV1QPQ");
        assert_eq!(block.number.as_e164(), "+14158675309");
        assert!(block.clinic.is_none());
        assert_eq!(block.code, "257");
        assert_eq!(block.occurred_at, Some(time::macros::datetime!(2026-06-06 14:17:02 UTC)));
        // A full batch report names the recipients per code.
        let batch = json!({"type": "delivery_report_sms", "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
            "total_message_count": 1, "statuses": [{"code": 257, "status": "Failed", "count": 1,
            "recipients": ["14158675309"]}], "client_reference": "ev-1"})
        .to_string();
        let Received::ProviderOptOut(block) = receive_with(&provider, &signed(&batch), &batch).await.unwrap() else {
            panic!()
        };
        assert_eq!((block.number.as_e164(), block.code.as_str()), ("+14158675309", "257"));
    }

    #[tokio::test]
    async fn other_delivery_reports_are_ignored_and_unsigned_ones_refused() {
        let provider = with_send("");
        for body in [recipient_report(0, "Delivered"), recipient_report(402, "Aborted")] {
            assert!(matches!(receive_with(&provider, &signed(&body), &body).await.unwrap(), Received::Ignored(_)));
        }
        let body = recipient_report(257, "Failed");
        let forged = signed(&recipient_report(0, "Delivered"));
        assert!(matches!(
            receive_with(&provider, &forged, &body).await,
            Err(Rejection::Signature(SignatureError::InvalidSignature))
        ));
        assert!(matches!(
            receive_with(&provider, &HeaderMap::new(), &body).await,
            Err(Rejection::Signature(SignatureError::MissingHeader(_)))
        ));
    }
}
