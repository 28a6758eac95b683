//! Standard Webhooks (any gateway speaking the spec): `webhook-signature`
//! holds `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>` entries, the key
//! being the base64 after `whsec_`; timestamps within five minutes. The body
//! is `{"from", "to", "text", "id", "occurred_at"}` and the reply is JSON.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use time::OffsetDateTime;

use super::{
    bad, check_timestamp, non_empty, parse_rfc3339, phone, required, same_bytes, Configured, InboundMessage, Outside,
    PayloadError, Profile, Provider, ProviderConfigError, Received, Rejection, ReplyStyle, Secret, SignatureError,
    WebhookRequest,
};

pub const NAME: &str = "standard-webhooks";

/// The gateway sends the JSON `reply` itself; it has no auto-responder.
pub const REPLY_STYLE: ReplyStyle = ReplyStyle { inline: true, auto_reply_keywords: &[] };
const PROFILE: Profile = Profile { name: NAME, methods: super::POST, reply_style: REPLY_STYLE };
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("is not base64 (after the optional whsec_ prefix)")]
    NotBase64,
    #[error("is empty")]
    Empty,
}

/// The HMAC key of a `whsec_` secret (padded or not).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, SecretError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key =
        STANDARD.decode(encoded).or_else(|_| STANDARD_NO_PAD.decode(encoded)).map_err(|_| SecretError::NotBase64)?;
    if key.is_empty() {
        return Err(SecretError::Empty);
    }
    Ok(key)
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `webhook-signature` value a sender would put on this message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SecretError> {
    let key = decode_secret(secret)?;
    Ok(format!("v1,{}", STANDARD.encode(mac(&key, id, &timestamp.to_string(), body))))
}

pub struct Headers<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Checks the signature with every key (decoded `whsec_` secrets).
pub fn verify(keys: &[Vec<u8>], headers: &Headers<'_>, body: &[u8], now: OffsetDateTime) -> Result<(), SignatureError> {
    let id = headers.id.ok_or(SignatureError::MissingHeader(ID_HEADER))?;
    let timestamp = headers.timestamp.ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = headers.signature.ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
    check_timestamp(timestamp, TIMESTAMP_HEADER, now)?;
    let candidates: Vec<Vec<u8>> = signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|sig| STANDARD.decode(sig).ok())
        .collect();
    let matched = keys.iter().any(|key| {
        let expected = mac(key, id, timestamp, body);
        candidates.iter().any(|c| same_bytes(&expected, c))
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::InvalidSignature)
    }
}

#[derive(Deserialize)]
struct Body {
    id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    text: Option<String>,
    occurred_at: Option<String>,
}

pub fn parse(body: &[u8]) -> Result<Received, PayloadError> {
    let body: Body =
        serde_json::from_slice(body).map_err(|e| PayloadError(format!("body is not the expected JSON: {e}")))?;
    let occurred_at = body.occurred_at.as_deref().map(|t| parse_rfc3339(t, "occurred_at")).transpose()?;
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: required(body.id.as_deref(), "id")?.to_owned(),
        from: phone(required(body.from.as_deref(), "from")?, "from")?,
        to: Some(phone(required(body.to.as_deref(), "to")?, "to")?),
        text: body.text.ok_or_else(|| PayloadError("missing field text".into()))?,
        occurred_at,
        replay_key: None,
    }))
}

/// Standard Webhooks, built from `[providers.standard_webhooks]`: the
/// secrets decoded once.
pub struct StandardWebhooks {
    keys: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksConfig {
    /// `whsec_` secrets; more than one during rotation.
    pub secrets: Vec<Secret>,
}

impl Configured for StandardWebhooks {
    type Config = StandardWebhooksConfig;

    fn from_config(config: &StandardWebhooksConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        non_empty(&config.secrets, "secrets").map_err(|_| bad("secrets", "needs at least one secret"))?;
        let keys = config
            .secrets
            .iter()
            .enumerate()
            .map(|(j, secret)| decode_secret(secret.expose()).map_err(|e| bad(format!("secrets[{j}]"), e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(StandardWebhooks { keys })
    }
}

#[async_trait::async_trait]
impl Provider for StandardWebhooks {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        let headers = Headers {
            id: request.header(ID_HEADER),
            timestamp: request.header(TIMESTAMP_HEADER),
            signature: request.header(SIGNATURE_HEADER),
        };
        verify(&self.keys, &headers, request.body, request.now)?;
        Ok(parse(request.body)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::TOLERANCE_SECONDS;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let all: Value = serde_json::from_str(include_str!("../../tests/vectors/signatures/vectors.json")).unwrap();
        all["standard_webhooks"]["vectors"].as_array().unwrap().clone()
    }

    fn keys(secrets: &[&str]) -> Vec<Vec<u8>> {
        secrets.iter().map(|s| decode_secret(s).unwrap()).collect()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    fn check(v: &Value, secret: &str, signature: &str, body: &str, now: i64) -> Result<(), SignatureError> {
        let ts = v["timestamp"].as_i64().unwrap().to_string();
        let headers = Headers { id: v["msg_id"].as_str(), timestamp: Some(&ts), signature: Some(signature) };
        verify(&keys(&[secret]), &headers, body.as_bytes(), at(now))
    }

    #[test]
    fn every_published_vector_verifies_and_signs() {
        for v in vectors() {
            let (secret, expected, body) =
                (v["secret"].as_str().unwrap(), v["expected"].as_str().unwrap(), v["payload"].as_str().unwrap());
            let ts = v["timestamp"].as_i64().unwrap();
            assert_eq!(sign(secret, v["msg_id"].as_str().unwrap(), ts, body.as_bytes()).unwrap(), expected);
            assert_eq!(check(&v, secret, expected, body, ts), Ok(()));
        }
    }

    #[test]
    fn a_list_with_other_versions_and_a_valid_v1_passes() {
        let v = &vectors()[0];
        let header =
            format!("v2,abc v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {}", v["expected"].as_str().unwrap());
        let ts = v["timestamp"].as_i64().unwrap();
        assert_eq!(check(v, v["secret"].as_str().unwrap(), &header, v["payload"].as_str().unwrap(), ts), Ok(()));
    }

    #[test]
    fn tampered_stale_future_and_wrong_secret_are_refused() {
        let v = &vectors()[0];
        let (secret, sig, body) =
            (v["secret"].as_str().unwrap(), v["expected"].as_str().unwrap(), v["payload"].as_str().unwrap());
        let ts = v["timestamp"].as_i64().unwrap();
        assert_eq!(check(v, secret, sig, "{\"test\": 2432232315}", ts), Err(SignatureError::InvalidSignature));
        assert_eq!(
            check(v, secret, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=", body, ts),
            Err(SignatureError::InvalidSignature)
        );
        assert_eq!(
            check(v, "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", sig, body, ts),
            Err(SignatureError::InvalidSignature)
        );
        assert_eq!(check(v, secret, sig, body, ts + TOLERANCE_SECONDS + 1), Err(SignatureError::TimestampTooOld));
        assert_eq!(check(v, secret, sig, body, ts - TOLERANCE_SECONDS - 1), Err(SignatureError::FutureTimestamp));
        assert_eq!(check(v, secret, sig, body, ts + TOLERANCE_SECONDS), Ok(()));
    }

    #[test]
    fn missing_headers_are_named() {
        let none = Headers { id: None, timestamp: Some("1"), signature: Some("v1,x") };
        assert_eq!(
            verify(&keys(&["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]), &none, b"", at(1)),
            Err(SignatureError::MissingHeader(ID_HEADER))
        );
    }

    #[test]
    fn a_rotated_secret_list_accepts_either() {
        let v = &vectors()[0];
        let ts = v["timestamp"].as_i64().unwrap().to_string();
        let headers = Headers { id: v["msg_id"].as_str(), timestamp: Some(&ts), signature: v["expected"].as_str() };
        let secrets = keys(&["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", v["secret"].as_str().unwrap()]);
        assert_eq!(
            verify(&secrets, &headers, v["payload"].as_str().unwrap().as_bytes(), at(v["timestamp"].as_i64().unwrap())),
            Ok(())
        );
    }

    #[test]
    fn secrets_without_padding_or_prefix_decode() {
        assert_eq!(decode_secret("whsec_YWJj").unwrap(), b"abc");
        assert_eq!(decode_secret("YWJjZA").unwrap(), b"abcd");
        assert!(decode_secret("whsec_").is_err());
        assert!(decode_secret("whsec_!!!").is_err());
    }

    #[test]
    fn the_body_is_parsed_and_bad_bodies_refused() {
        let Received::Message(m) = parse(br#"{"id":"m1","from":"+14158675309","to":"+18005551212","text":"STOP","occurred_at":"2026-01-01T10:00:00Z"}"#).unwrap() else { panic!() };
        assert_eq!(m.occurred_at, Some(time::macros::datetime!(2026-01-01 10:00 UTC)));
        for bad in [
            &b"not json"[..],
            br#"{"id":"m1"}"#,
            br#"{"id":"m1","from":"+14158675309","to":"+18005551212","text":"x","occurred_at":"yesterday"}"#,
        ] {
            assert!(parse(bad).is_err());
        }
    }

    #[test]
    fn an_occurred_at_outside_1970_to_9999_is_a_payload_error() {
        for at in ["0000-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00"] {
            let body = format!(
                r#"{{"id":"m1","from":"+14158675309","to":"+18005551212","text":"STOP","occurred_at":"{at}"}}"#
            );
            assert!(parse(body.as_bytes()).is_err(), "{at}");
        }
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<StandardWebhooks>(r#"secrets = ["whsec_YWJj"]"#).is_ok());
        for (section, field) in [
            (r#"secrets = ["whsec_!!!"]"#, "secrets[0]"),
            (r#"secrets = ["whsec_YWJj", "whsec_"]"#, "secrets[1]"),
            (r#"secrets = []"#, "secrets"),
        ] {
            let error =
                crate::providers::tests::build::<StandardWebhooks>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }
}
