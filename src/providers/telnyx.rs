//! Telnyx: Ed25519 over `timestamp|body`, headers `telnyx-signature-ed25519`
//! and `telnyx-timestamp`, five minutes either way. Inbound messages are
//! `message.received` events; a `message.finalized` status webhook carrying
//! the STOP block code is the provider's opt-out. Replies go out through
//! `POST /messages` when `[providers.telnyx.send]` is configured.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

use super::send::{self, HttpAnswer, OutboundMessage, SendError, Sent};
use super::{
    bad, check_timestamp, json_body, non_empty, parse_rfc3339, phone, required, Configured, InboundMessage, Outside,
    PayloadError, Profile, Provider, ProviderBlock, ProviderConfigError, Received, Rejection, ReplyStyle, Secret,
    SignatureError, WebhookRequest,
};

pub const NAME: &str = "telnyx";
pub const SIGNATURE_HEADER: &str = "telnyx-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "telnyx-timestamp";
pub const REPLY_STYLE: ReplyStyle = ReplyStyle {
    inline: false,
    auto_reply_keywords: &[
        "STOP",
        "STOPALL",
        "STOP ALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "START",
        "UNSTOP",
        "HELP",
    ],
};
const PROFILE: Profile = Profile { name: NAME, methods: super::POST, reply_style: REPLY_STYLE };
/// The Messaging API.
pub const DEFAULT_BASE_URL: &str = "https://api.telnyx.com/v2";
/// The codes Telnyx writes when a recipient blocked the sender: `40300`
/// "Blocked due to STOP message", in a send's `errors[].code` and in a
/// `message.finalized` webhook's `data.payload.errors[].code`. See
/// https://developers.telnyx.com/docs/messaging/messages/advanced-opt-in-out/index
/// and https://developers.telnyx.com/docs/messaging/messages/error-codes/index
pub const OPT_OUT_CODES: &[&str] = &["40300"];

/// A public key from Mission Control: base64 of the raw 32 bytes.
pub fn decode_public_key(key: &str) -> Result<VerifyingKey, String> {
    let bytes = STANDARD.decode(key.trim()).map_err(|_| "is not base64".to_owned())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| "is not a 32-byte Ed25519 public key".to_owned())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "is not a valid Ed25519 public key".to_owned())
}

pub fn verify(public_keys: &[VerifyingKey], request: &WebhookRequest<'_>) -> Result<(), SignatureError> {
    let signature = request.header(SIGNATURE_HEADER).ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
    let timestamp = request.header(TIMESTAMP_HEADER).ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(SignatureError::MalformedHeader(SIGNATURE_HEADER))?;
    check_timestamp(timestamp, TIMESTAMP_HEADER, request.now)?;
    let mut message = Vec::with_capacity(timestamp.len() + 1 + request.body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'|');
    message.extend_from_slice(request.body);
    let valid = public_keys.iter().any(|key| key.verify_strict(&message, &signature).is_ok());
    if valid {
        Ok(())
    } else {
        Err(SignatureError::InvalidSignature)
    }
}

#[derive(Deserialize)]
struct Envelope {
    data: Event,
}

#[derive(Deserialize)]
struct Event {
    event_type: String,
    occurred_at: Option<String>,
    payload: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    id: Option<String>,
    from: Option<Party>,
    #[serde(default)]
    to: Vec<Party>,
    text: Option<String>,
    received_at: Option<String>,
    completed_at: Option<String>,
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Deserialize)]
struct Party {
    phone_number: Option<String>,
    status: Option<String>,
}

/// One of Telnyx's `errors[]`: `code` is a string in the docs; a number is
/// read the same.
#[derive(Deserialize)]
struct ApiError {
    code: Option<serde_json::Value>,
    title: Option<String>,
}

impl ApiError {
    fn code(&self) -> Option<String> {
        match self.code.as_ref()? {
            serde_json::Value::String(code) => Some(code.clone()),
            serde_json::Value::Number(code) => Some(code.to_string()),
            _ => None,
        }
    }
}

fn opt_out_code(errors: &[ApiError]) -> Option<String> {
    errors.iter().filter_map(ApiError::code).find(|c| OPT_OUT_CODES.contains(&c.as_str()))
}

/// A `message.finalized` webhook with the STOP block code: the recipient
/// (the one whose delivery failed, else the first) is the patient.
fn finalized(occurred_at: Option<String>, message: Message) -> Result<Received, PayloadError> {
    let Some(code) = opt_out_code(&message.errors) else {
        return Ok(Received::Ignored("a status event without an opt-out code"));
    };
    let failed = |p: &Party| p.status.as_deref().is_some_and(|s| s.ends_with("failed"));
    let recipient = message.to.iter().find(|p| failed(p)).or(message.to.first()).and_then(|p| p.phone_number.clone());
    let clinic = message.from.and_then(|p| p.phone_number);
    let at = message.completed_at.or(occurred_at);
    Ok(Received::ProviderOptOut(ProviderBlock {
        provider: NAME.to_owned(),
        message_id: required(message.id.as_deref(), "data.payload.id")?.to_owned(),
        number: phone(required(recipient.as_deref(), "data.payload.to[0].phone_number")?, "to")?,
        clinic: clinic.as_deref().map(|c| phone(c, "from")).transpose()?,
        code,
        occurred_at: at.as_deref().map(|t| parse_rfc3339(t, "data.payload.completed_at")).transpose()?,
    }))
}

pub fn parse(body: &[u8]) -> Result<Received, PayloadError> {
    let envelope: Envelope = json_body(body)?;
    if envelope.data.event_type == "message.finalized" {
        let message = envelope.data.payload.ok_or_else(|| PayloadError("missing field data.payload".into()))?;
        return finalized(envelope.data.occurred_at, message);
    }
    if envelope.data.event_type != "message.received" {
        return Ok(Received::Ignored("not an inbound message"));
    }
    let message = envelope.data.payload.ok_or_else(|| PayloadError("missing field data.payload".into()))?;
    let from = message.from.and_then(|p| p.phone_number);
    let to = message.to.into_iter().find_map(|p| p.phone_number);
    let at = message.received_at.or(envelope.data.occurred_at);
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: required(message.id.as_deref(), "data.payload.id")?.to_owned(),
        from: phone(required(from.as_deref(), "data.payload.from.phone_number")?, "from")?,
        to: Some(phone(required(to.as_deref(), "data.payload.to[0].phone_number")?, "to")?),
        text: message.text.unwrap_or_default(),
        occurred_at: at.as_deref().map(|t| parse_rfc3339(t, "data.payload.received_at")).transpose()?,
        replay_key: None,
    }))
}

pub fn receive(public_keys: &[VerifyingKey], request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
    verify(public_keys, request)?;
    Ok(parse(request.body)?)
}

/// Telnyx, built from `[providers.telnyx]`: the keys decoded once.
pub struct Telnyx {
    public_keys: Vec<VerifyingKey>,
    send: Option<TelnyxSend>,
}

struct TelnyxSend {
    api_key: Secret,
    messaging_profile_id: Option<String>,
    base_url: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelnyxConfig {
    /// Base64 Ed25519 public keys from Mission Control.
    pub public_keys: Vec<String>,
    /// Replies through the Messaging API.
    pub send: Option<TelnyxSendConfig>,
}

/// `[providers.telnyx.send]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelnyxSendConfig {
    /// An API key (v2) from the portal.
    pub api_key: Secret,
    /// The messaging profile to send with; with it, a reply without a known
    /// clinic number goes out from the profile's number pool.
    pub messaging_profile_id: Option<String>,
    /// Defaults to `DEFAULT_BASE_URL`.
    pub base_url: Option<String>,
}

impl TelnyxSend {
    fn from_config(config: &TelnyxSendConfig) -> Result<Self, ProviderConfigError> {
        if config.api_key.expose().trim().is_empty() {
            return Err(bad("send.api_key", "must not be empty"));
        }
        if config.messaging_profile_id.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(bad("send.messaging_profile_id", "must not be empty when set"));
        }
        if let Some(url) = &config.base_url {
            send::check_base_url(url, "send.base_url")?;
        }
        Ok(TelnyxSend {
            api_key: config.api_key.clone(),
            messaging_profile_id: config.messaging_profile_id.clone(),
            base_url: send::base_url(config.base_url.as_deref(), DEFAULT_BASE_URL),
        })
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        let mut body = serde_json::json!({ "to": message.to.as_e164(), "text": message.body });
        match (message.from, &self.messaging_profile_id) {
            (None, None) => {
                return Err(SendError::refused(
                    "no clinic number to send from and no send.messaging_profile_id to send with",
                ))
            }
            (from, profile) => {
                if let Some(from) = from {
                    body["from"] = from.as_e164().into();
                }
                if let Some(profile) = profile {
                    body["messaging_profile_id"] = profile.as_str().into();
                }
            }
        }
        let request = send::client()
            .post(format!("{}/messages", self.base_url))
            .bearer_auth(self.api_key.expose())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let opted_out = |a: &HttpAnswer| a.json::<ErrorBody>().and_then(|b| opt_out_code(&b.errors));
        let answer = send::execute(request).await?.accepted(opted_out, describe)?;
        Ok(Sent { message_id: answer.text_at("/data/id") })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ApiError>,
}

/// A refusal's reason: the status and each error's code and title, never
/// its `detail` (which names the numbers).
fn describe(answer: &HttpAnswer) -> String {
    let errors = answer.json::<ErrorBody>().map(|b| b.errors).unwrap_or_default();
    let listed: Vec<String> = errors
        .iter()
        .map(|e| format!("{} {}", e.code().unwrap_or_default(), e.title.as_deref().unwrap_or_default()))
        .collect();
    format!("the provider answered {}: {}", answer.status, listed.join("; ").trim())
}

impl Configured for Telnyx {
    type Config = TelnyxConfig;

    fn from_config(config: &TelnyxConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        non_empty(&config.public_keys, "public_keys")?;
        let public_keys = config
            .public_keys
            .iter()
            .enumerate()
            .map(|(j, key)| decode_public_key(key).map_err(|e| bad(format!("public_keys[{j}]"), e)))
            .collect::<Result<_, _>>()?;
        let send = config.send.as_ref().map(TelnyxSend::from_config).transpose()?;
        Ok(Telnyx { public_keys, send })
    }
}

#[async_trait::async_trait]
impl Provider for Telnyx {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        receive(&self.public_keys, request)
    }

    fn sends(&self) -> bool {
        self.send.is_some()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match &self.send {
            Some(send) => send.send(message).await,
            None => Err(SendError::NotConfigured("no [providers.telnyx.send] table")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::Value;
    use time::OffsetDateTime;

    fn request<'a>(headers: &'a HeaderMap, body: &'a [u8], now: i64) -> WebhookRequest<'a> {
        WebhookRequest {
            method: "POST",
            url: "https://x/webhooks/telnyx",
            headers,
            body,
            now: OffsetDateTime::from_unix_timestamp(now).unwrap(),
        }
    }

    fn headers(signature: &str, timestamp: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        h.insert(TIMESTAMP_HEADER, timestamp.parse().unwrap());
        h
    }

    fn keys(encoded: &[&str]) -> Vec<VerifyingKey> {
        encoded.iter().map(|k| decode_public_key(k).unwrap()).collect()
    }

    fn vectors() -> Vec<Value> {
        let all: Value = serde_json::from_str(include_str!("../../tests/vectors/signatures/vectors.json")).unwrap();
        all["telnyx"]["vectors"].as_array().unwrap().clone()
    }

    #[test]
    fn the_published_vectors_verify_and_the_tampered_one_does_not() {
        for v in vectors() {
            let sig = v["expected_signature_b64"].as_str().or(v["signature_b64"].as_str()).unwrap();
            let h = headers(sig, v["telnyx-timestamp"].as_str().unwrap());
            let key = keys(&[v["public_key_b64"].as_str().unwrap()]);
            let result = verify(&key, &request(&h, v["body"].as_str().unwrap().as_bytes(), 1_700_000_010));
            if v["expect"] == "invalid" {
                assert_eq!(result, Err(SignatureError::InvalidSignature));
            } else {
                assert_eq!(result, Ok(()), "{v}");
            }
        }
    }

    #[test]
    fn stale_future_wrong_key_and_missing_headers_are_refused() {
        let v = &vectors()[0];
        let (sig, body) = (v["expected_signature_b64"].as_str().unwrap(), v["body"].as_str().unwrap().as_bytes());
        let key = keys(&[v["public_key_b64"].as_str().unwrap()]);
        let h = headers(sig, "1700000000");
        assert_eq!(verify(&key, &request(&h, body, 1_700_000_301)), Err(SignatureError::TimestampTooOld));
        assert_eq!(verify(&key, &request(&h, body, 1_699_999_699)), Err(SignatureError::FutureTimestamp));
        let other = keys(&["jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs="]);
        assert_eq!(verify(&other, &request(&h, body, 1_700_000_000)), Err(SignatureError::InvalidSignature));
        let rotated = vec![other[0], key[0]];
        assert_eq!(verify(&rotated, &request(&h, body, 1_700_000_000)), Ok(()));
        assert_eq!(
            verify(&key, &request(&HeaderMap::new(), body, 1_700_000_000)),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
        // The timestamp is signed: a fresh one on an old signature fails.
        let h = headers(sig, "1700000001");
        assert_eq!(verify(&key, &request(&h, body, 1_700_000_000)), Err(SignatureError::InvalidSignature));
    }

    #[test]
    fn an_inbound_message_is_parsed_and_status_events_ignored() {
        let body = br#"{"data":{"event_type":"message.received","id":"e1","occurred_at":"2026-01-23T18:10:02.574Z","payload":{"id":"m1","from":{"phone_number":"+14158675309"},"to":[{"phone_number":"+14155550100"}],"text":"STOP","received_at":"2026-01-23T18:10:02.000Z"}}}"#;
        let Received::Message(m) = parse(body).unwrap() else { panic!() };
        assert_eq!((m.message_id.as_str(), m.text.as_str()), ("m1", "STOP"));
        assert!(matches!(
            parse(br#"{"data":{"event_type":"message.finalized","payload":{}}}"#).unwrap(),
            Received::Ignored(_)
        ));
        assert!(parse(br#"{"data":{"event_type":"message.received","payload":{"id":"m1"}}}"#).is_err());
    }

    #[test]
    fn a_time_outside_1970_to_9999_is_a_payload_error() {
        let body = br#"{"data":{"event_type":"message.received","id":"e1","payload":{"id":"m1","from":{"phone_number":"+14158675309"},"to":[{"phone_number":"+14155550100"}],"text":"STOP","received_at":"0000-01-01T00:00:00+01:00"}}}"#;
        assert!(parse(body).is_err());
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<Telnyx>(
            r#"public_keys = ["jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs="]"#
        )
        .is_ok());
        for (section, field) in [
            (r#"public_keys = ["not base64!"]"#, "public_keys[0]"),
            (r#"public_keys = ["jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs=", "YWJj"]"#, "public_keys[1]"),
            (r#"public_keys = []"#, "public_keys"),
        ] {
            let error = crate::providers::tests::build::<Telnyx>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }

    // --- Replies and the provider's opt-outs ---

    use crate::domain::PhoneNumber;
    use crate::providers::send::fake::{FakeApi, Reply};
    use ed25519_dalek::{Signer, SigningKey};
    use serde_json::json;

    const SEED: [u8; 32] = [7; 32];

    fn with_send(base_url: &str, profile: Option<&str>) -> Telnyx {
        let public = STANDARD.encode(SigningKey::from_bytes(&SEED).verifying_key().to_bytes());
        let profile = profile.map(|p| format!("messaging_profile_id = \"{p}\"\n")).unwrap_or_default();
        crate::providers::tests::build::<Telnyx>(&format!(
            "public_keys = [\"{public}\"]\n[send]\napi_key = \"KEY0123\"\n{profile}base_url = \"{base_url}\"\n"
        ))
        .unwrap()
    }

    fn numbers() -> (PhoneNumber, PhoneNumber) {
        (PhoneNumber::parse("+14158675309").unwrap(), PhoneNumber::parse("+14155550100").unwrap())
    }

    async fn send_one(provider: &Telnyx, from: Option<&PhoneNumber>) -> Result<Sent, SendError> {
        let (patient, _) = numbers();
        provider
            .send(&OutboundMessage { to: &patient, from, body: "Lakeside: you are unsubscribed.", reference: "ev-1" })
            .await
    }

    #[tokio::test]
    async fn a_reply_is_posted_to_messages_as_documented_and_its_id_read() {
        let fake = FakeApi::start(vec![Reply::json(
            200,
            json!({"data": {"record_type": "message", "id": "40317159-7e1c-4b5e-9b2b-6d8d7a0f1a2b", "direction": "outbound"}}),
        )])
        .await;
        let provider = with_send(&fake.base_url, None);
        assert!(provider.sends());
        let (_, clinic) = numbers();
        let sent = send_one(&provider, Some(&clinic)).await.unwrap();
        assert_eq!(sent.message_id.as_deref(), Some("40317159-7e1c-4b5e-9b2b-6d8d7a0f1a2b"));
        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, http::Method::POST);
        assert_eq!(seen[0].uri, "/messages");
        assert_eq!(seen[0].header("authorization"), Some("Bearer KEY0123"));
        assert_eq!(seen[0].header("content-type"), Some("application/json"));
        assert_eq!(
            seen[0].json(),
            json!({"from": "+14155550100", "to": "+14158675309", "text": "Lakeside: you are unsubscribed."})
        );
    }

    #[tokio::test]
    async fn without_a_clinic_number_the_profile_sends_or_the_reply_is_refused() {
        let fake = FakeApi::start(vec![Reply::json(200, json!({"data": {"id": "m2"}}))]).await;
        let provider = with_send(&fake.base_url, Some("4001a4b5-profile"));
        assert_eq!(send_one(&provider, None).await.unwrap().message_id.as_deref(), Some("m2"));
        assert_eq!(
            fake.seen()[0].json(),
            json!({"to": "+14158675309", "text": "Lakeside: you are unsubscribed.", "messaging_profile_id": "4001a4b5-profile"})
        );
        let (_, clinic) = numbers();
        send_one(&provider, Some(&clinic)).await.unwrap();
        assert_eq!(fake.seen()[1].json()["from"], "+14155550100");
        assert_eq!(fake.seen()[1].json()["messaging_profile_id"], "4001a4b5-profile");

        let provider = with_send(&fake.base_url, None);
        let Err(SendError::Refused { reason }) = send_one(&provider, None).await else { panic!() };
        assert!(!reason.contains("+1"), "{reason}");
        assert_eq!(fake.seen().len(), 2, "nothing sent");
    }

    #[tokio::test]
    async fn error_answers_are_opted_out_refused_or_temporary() {
        let fake = FakeApi::start(vec![
            Reply::json(
                400,
                json!({"errors": [{"code": "40300", "title": "Blocked due to STOP message",
                    "detail": "Messages cannot be sent from '+14155550100' to '+14158675309' due to an existing block rule."}]}),
            ),
            Reply::json(
                400,
                json!({"errors": [{"code": "40310", "title": "Invalid 'to' address",
                    "detail": "The 'to' address '+14158675309' is invalid."}]}),
            ),
            Reply::json(429, json!({"errors": [{"code": "10011", "title": "Too many requests"}]}))
                .with_header("retry-after", "30"),
            Reply::json(500, json!({})),
        ])
        .await;
        let provider = with_send(&fake.base_url, None);
        let (_, clinic) = numbers();
        let Err(SendError::OptedOut { code, reason }) = send_one(&provider, Some(&clinic)).await else { panic!() };
        assert_eq!(code, "40300");
        assert!(!reason.contains("4158675309"));
        let Err(SendError::Refused { reason }) = send_one(&provider, Some(&clinic)).await else { panic!() };
        assert!(reason.contains("40310"), "{reason}");
        assert!(!reason.contains("4158675309") && !reason.contains("4155550100"), "{reason}");
        assert_eq!(
            send_one(&provider, Some(&clinic)).await,
            Err(SendError::Temporary {
                reason: "the provider answered 429 Too Many Requests".into(),
                retry_after: Some(std::time::Duration::from_secs(30))
            })
        );
        assert!(matches!(send_one(&provider, Some(&clinic)).await, Err(SendError::Temporary { .. })));
    }

    #[tokio::test]
    async fn without_a_send_table_nothing_is_sent() {
        let provider = crate::providers::tests::build::<Telnyx>(
            r#"public_keys = ["jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs="]"#,
        )
        .unwrap();
        assert!(!provider.sends());
        assert!(matches!(send_one(&provider, None).await, Err(SendError::NotConfigured(_))));
    }

    fn signed(body: &[u8], timestamp: &str) -> HeaderMap {
        let mut message = timestamp.as_bytes().to_vec();
        message.push(b'|');
        message.extend_from_slice(body);
        headers(&STANDARD.encode(SigningKey::from_bytes(&SEED).sign(&message).to_bytes()), timestamp)
    }

    fn finalized_body(code: &str, status: &str) -> String {
        json!({"data": {"event_type": "message.finalized", "id": "e-77", "occurred_at": "2026-03-02T10:00:05.000+00:00",
            "payload": {"id": "40385f64-5717-4562-b3fc-2c963f66afa6", "direction": "outbound", "type": "SMS",
                "from": {"phone_number": "+14155550100", "carrier": "Telnyx", "line_type": "Wireless"},
                "to": [{"phone_number": "+14158675309", "status": status, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"}],
                "text": "Lakeside: your visit is tomorrow.",
                "completed_at": "2026-03-02T10:00:04.000+00:00",
                "errors": if code.is_empty() { json!([]) } else { json!([{"code": code, "title": "Blocked due to STOP message"}]) }}}})
        .to_string()
    }

    #[tokio::test]
    async fn a_signed_finalized_webhook_with_the_stop_block_code_is_a_provider_opt_out() {
        let provider = with_send("https://api.telnyx.com/v2", None);
        let body = finalized_body("40300", "delivery_failed");
        let h = signed(body.as_bytes(), "1772445605");
        let Received::ProviderOptOut(block) =
            provider.receive(&request(&h, body.as_bytes(), 1_772_445_606)).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(block.provider, "telnyx");
        assert_eq!(block.message_id, "40385f64-5717-4562-b3fc-2c963f66afa6");
        assert_eq!(block.number.as_e164(), "+14158675309");
        assert_eq!(block.clinic.as_ref().map(PhoneNumber::as_e164), Some("+14155550100"));
        assert_eq!(block.code, "40300");
        assert_eq!(block.occurred_at, Some(time::macros::datetime!(2026-03-02 10:00:04 UTC)));
        // A number code is read the same.
        let numeric = body.replace("\"40300\"", "40300");
        let Received::ProviderOptOut(block) = parse(numeric.as_bytes()).unwrap() else { panic!() };
        assert_eq!(block.code, "40300");
    }

    #[tokio::test]
    async fn other_finalized_webhooks_are_ignored_and_unsigned_ones_refused() {
        let provider = with_send("https://api.telnyx.com/v2", None);
        for body in [finalized_body("", "delivered"), finalized_body("40008", "delivery_failed")] {
            let h = signed(body.as_bytes(), "1772445605");
            assert!(matches!(
                provider.receive(&request(&h, body.as_bytes(), 1_772_445_606)).await.unwrap(),
                Received::Ignored(_)
            ));
        }
        let body = finalized_body("40300", "delivery_failed");
        let other = finalized_body("40300", "delivered");
        let h = signed(other.as_bytes(), "1772445605");
        assert!(matches!(
            provider.receive(&request(&h, body.as_bytes(), 1_772_445_606)).await,
            Err(Rejection::Signature(SignatureError::InvalidSignature))
        ));
        assert!(matches!(
            provider.receive(&request(&HeaderMap::new(), body.as_bytes(), 1_772_445_606)).await,
            Err(Rejection::Signature(SignatureError::MissingHeader(_)))
        ));
    }

    #[test]
    fn a_bad_send_table_names_its_field() {
        let key = "public_keys = [\"jrMBoswHlhhVx2W2Www72WU/xn4UMpjreslD0m2u0qs=\"]\n[send]\n";
        for (section, field) in [
            ("api_key = \"\"", "send.api_key"),
            ("api_key = \"k\"\nbase_url = \"http://api.example.com\"", "send.base_url"),
            ("api_key = \"k\"\nbase_url = \"nope\"", "send.base_url"),
            ("api_key = \"k\"\nmessaging_profile_id = \" \"", "send.messaging_profile_id"),
        ] {
            let error = crate::providers::tests::build::<Telnyx>(&format!("{key}{section}")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
        let parsed: Result<TelnyxConfig, _> = toml::from_str(&format!("{key}api_key = \"k\"\nfrom = \"x\""));
        assert!(parsed.is_err(), "unknown keys are refused");
    }
}
