//! Telnyx: Ed25519 over `timestamp|body`, headers `telnyx-signature-ed25519`
//! and `telnyx-timestamp`, five minutes either way. Inbound messages are
//! `message.received` events; replies go to the outbox.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;

use super::{
    bad, check_timestamp, json_body, non_empty, parse_rfc3339, phone, required, Configured, InboundMessage, Outside,
    PayloadError, Profile, Provider, ProviderConfigError, Received, Rejection, ReplyStyle, SignatureError,
    WebhookRequest,
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
}

#[derive(Deserialize)]
struct Party {
    phone_number: Option<String>,
}

pub fn parse(body: &[u8]) -> Result<Received, PayloadError> {
    let envelope: Envelope = json_body(body)?;
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
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelnyxConfig {
    /// Base64 Ed25519 public keys from Mission Control.
    pub public_keys: Vec<String>,
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
        Ok(Telnyx { public_keys })
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
}
