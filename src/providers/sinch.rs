//! Sinch (SMS REST callbacks and the Conversation API):
//! `base64(HMAC-SHA256(secret, body.nonce.timestamp))` in
//! `x-sinch-webhook-signature`, timestamps within five minutes. Replies go
//! to the outbox.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    check_timestamp, digits_phone, json_body, parse_rfc3339, required, same_bytes, secrets, Configured, InboundMessage,
    Outside, PayloadError, Profile, Provider, ProviderConfigError, Received, Rejection, ReplyStyle, Secret,
    SignatureError, WebhookRequest,
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
    // SMS REST inbound (`mo_text`).
    id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    body: Option<String>,
    received_at: Option<String>,
    // Conversation API inbound (`message_inbound`).
    message: Option<ConversationMessage>,
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
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinchConfig {
    pub secrets: Vec<Secret>,
}

impl Configured for Sinch {
    type Config = SinchConfig;

    fn from_config(config: &SinchConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        secrets(&config.secrets, "secrets")?;
        Ok(Sinch { secrets: config.secrets.clone() })
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
}
