//! Bird / MessageBird: the `MessageBird-Signature-JWT` header (HS256/384/512
//! keyed with the signing key; `iss`, `nbf`/`exp`, `jti`, `url_hash` and
//! `payload_hash` checked) or the newer `messagebird-signature` HMAC over
//! timestamp, URL (legacy: sorted query) and the body's SHA-256. Replies go
//! out through the Channels API when `[providers.bird.send]` is configured.
//!
//! Opt-outs: Bird documents no failure code or reason meaning "the
//! recipient opted out" for SMS; its failed-message statuses carry generic
//! failure codes (11xxx–15xxx) and the SMS platform's delivery reasons
//! (https://docs.bird.com/api/channels-api/message-status-and-interactions/message-failure-codes
//! and .../message-failure-sources/sms-platform-extended-error-codes), so
//! status callbacks stay ignored and no send error is read as an opt-out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::send::{self, OutboundMessage, SendError, Sent};
use super::{
    bad, check_timestamp, decode_hmac_jwt, form_pairs, param, parse_rfc3339, phone, required, same_bytes, secrets,
    sha256_hex, Configured, InboundMessage, Outside, PayloadError, Profile, Provider, ProviderConfigError, Received,
    Rejection, ReplyStyle, Secret, SignatureError, WebhookRequest, GET_AND_POST,
};

pub const NAME: &str = "bird";
pub const JWT_HEADER: &str = "messagebird-signature-jwt";
pub const SIGNATURE_HEADER: &str = "messagebird-signature";
pub const TIMESTAMP_HEADER: &str = "messagebird-request-timestamp";
/// Clock skew allowed on `nbf` and `exp`, as the MessageBird SDKs allow.
const JWT_LEEWAY_SECONDS: i64 = 1;
pub const REPLY_STYLE: ReplyStyle = ReplyStyle { inline: false, auto_reply_keywords: &[] };
const PROFILE: Profile = Profile { name: NAME, methods: GET_AND_POST, reply_style: REPLY_STYLE };
/// The Bird API.
pub const DEFAULT_BASE_URL: &str = "https://api.bird.com";

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    nbf: Option<i64>,
    exp: Option<i64>,
    jti: Option<String>,
    url_hash: Option<String>,
    payload_hash: Option<String>,
}

pub fn verify_jwt(
    keys: &[Secret],
    token: &str,
    url: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), SignatureError> {
    let claims: Claims = decode_hmac_jwt(token, keys, &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])?;
    if claims.iss.as_deref() != Some("MessageBird") {
        return Err(SignatureError::InvalidToken("iss is not MessageBird"));
    }
    let now = now.unix_timestamp();
    if claims.nbf.is_some_and(|nbf| nbf > now + JWT_LEEWAY_SECONDS) {
        return Err(SignatureError::FutureTimestamp);
    }
    match claims.exp {
        Some(exp) if exp + JWT_LEEWAY_SECONDS > now => {}
        _ => return Err(SignatureError::TimestampTooOld),
    }
    if claims.jti.as_deref().is_none_or(str::is_empty) {
        return Err(SignatureError::InvalidToken("jti is missing"));
    }
    let url_hash = claims.url_hash.ok_or(SignatureError::InvalidToken("url_hash is missing"))?;
    if !same_bytes(sha256_hex(url.as_bytes()).as_bytes(), url_hash.as_bytes()) {
        return Err(SignatureError::InvalidToken("url_hash does not match the URL"));
    }
    match (claims.payload_hash, body.is_empty()) {
        (Some(hash), false) if same_bytes(sha256_hex(body).as_bytes(), hash.as_bytes()) => Ok(()),
        (Some(_), false) => Err(SignatureError::BodyHashMismatch),
        (Some(_), true) => Err(SignatureError::InvalidToken("payload_hash is set but the body is empty")),
        (None, false) => Err(SignatureError::InvalidToken("the body is not covered by payload_hash")),
        (None, true) => Ok(()),
    }
}

/// `base64(HMAC-SHA256(key, timestamp \n signed-part \n sha256(body)))`.
pub fn sign_hmac(key: &str, timestamp: &str, signed_part: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(signed_part.as_bytes());
    mac.update(b"\n");
    mac.update(&Sha256::digest(body));
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The query sorted by key, as the legacy scheme signs it.
pub fn sorted_query(query: &str) -> String {
    let mut pairs = form_pairs(query.as_bytes());
    pairs.sort();
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// Accepts the new Bird form (the full URL) and the legacy one (the sorted
/// query), with every configured key.
pub fn verify_hmac(keys: &[Secret], request: &WebhookRequest<'_>, signature: &str) -> Result<(), SignatureError> {
    let timestamp = request.header(TIMESTAMP_HEADER).ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    let provided = STANDARD.decode(signature.trim()).map_err(|_| SignatureError::MalformedHeader(SIGNATURE_HEADER))?;
    check_timestamp(timestamp, TIMESTAMP_HEADER, request.now)?;
    let parts = [request.url.to_owned(), sorted_query(request.query())];
    let matched = keys.iter().any(|k| {
        parts.iter().any(|part| {
            let expected = STANDARD.decode(sign_hmac(k.expose(), timestamp, part, request.body)).expect("own base64");
            same_bytes(&expected, &provided)
        })
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::InvalidSignature)
    }
}

pub fn verify(keys: &[Secret], request: &WebhookRequest<'_>) -> Result<(), SignatureError> {
    if let Some(token) = request.header(JWT_HEADER) {
        return verify_jwt(keys, token.trim(), request.url, request.body, request.now);
    }
    if let Some(signature) = request.header(SIGNATURE_HEADER) {
        return verify_hmac(keys, request, signature);
    }
    Err(SignatureError::MissingHeader("MessageBird-Signature-JWT"))
}

#[derive(Deserialize)]
struct Envelope {
    event: Option<String>,
    payload: Option<ChannelMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelMessage {
    id: Option<String>,
    direction: Option<String>,
    sender: Option<Party>,
    receiver: Option<Party>,
    body: Option<Body>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct Party {
    contact: Option<Identifier>,
    connector: Option<Identifier>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identifier {
    identifier_value: Option<String>,
}

#[derive(Deserialize)]
struct Body {
    text: Option<TextBody>,
}

#[derive(Deserialize)]
struct TextBody {
    text: Option<String>,
}

fn parse_channel_message(m: ChannelMessage) -> Result<Received, PayloadError> {
    if m.direction.as_deref().is_some_and(|d| d != "incoming") {
        return Ok(Received::Ignored("not an incoming message"));
    }
    let from = m.sender.and_then(|s| s.contact).and_then(|c| c.identifier_value);
    // The receiver is a connector; it names its number when it has one.
    let to = m.receiver.and_then(|r| r.connector.or(r.contact)).and_then(|c| c.identifier_value);
    let Some(text) = m.body.and_then(|b| b.text).and_then(|t| t.text) else {
        return Ok(Received::Ignored("not a text message"));
    };
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: required(m.id.as_deref(), "payload.id")?.to_owned(),
        from: phone(required(from.as_deref(), "payload.sender.contact.identifierValue")?, "sender")?,
        to: to.as_deref().map(|t| phone(t, "receiver")).transpose()?,
        text,
        occurred_at: m.created_at.as_deref().map(|t| parse_rfc3339(t, "payload.createdAt")).transpose()?,
        replay_key: None,
    }))
}

/// Bird's Channels API (`sms.inbound` events, JSON) or MessageBird's legacy
/// SMS webhook (`originator`, `recipient`, `body` as form or query).
pub fn parse(request: &WebhookRequest<'_>) -> Result<Received, PayloadError> {
    let is_json = request.body.first().is_some_and(|b| *b == b'{');
    if is_json {
        let envelope: Envelope = super::json_body(request.body)?;
        return match (envelope.event.as_deref(), envelope.payload) {
            (Some("sms.inbound"), Some(m)) => parse_channel_message(m),
            (Some(_), _) => Ok(Received::Ignored("not an inbound SMS")),
            (None, _) => parse_channel_message(super::json_body(request.body)?),
        };
    }
    let mut params = request.query_pairs();
    params.extend(form_pairs(request.body));
    let get = |name: &str| param(&params, name);
    if get("body").is_none() && get("status").is_some() {
        return Ok(Received::Ignored("status report"));
    }
    let digits = |v: &str, field: &str| super::digits_phone(v, field);
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: required(get("id").or(get("message_id")), "id")?.to_owned(),
        from: digits(required(get("originator"), "originator")?, "originator")?,
        to: Some(digits(required(get("recipient"), "recipient")?, "recipient")?),
        text: get("body").ok_or_else(|| PayloadError("missing field body".into()))?.to_owned(),
        occurred_at: get("createdDatetime").map(|t| parse_rfc3339(t, "createdDatetime")).transpose()?,
        replay_key: None,
    }))
}

pub fn receive(keys: &[Secret], request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
    verify(keys, request)?;
    Ok(parse(request)?)
}

/// Bird / MessageBird, built from `[providers.bird]`.
pub struct Bird {
    signing_keys: Vec<Secret>,
    send: Option<BirdSend>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BirdConfig {
    pub signing_keys: Vec<Secret>,
    /// Replies through the Channels API.
    pub send: Option<BirdSendConfig>,
}

/// `[providers.bird.send]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BirdSendConfig {
    pub workspace_id: String,
    /// The SMS channel the replies go out on (it owns the sending number).
    pub channel_id: String,
    pub access_key: Secret,
    /// Defaults to `DEFAULT_BASE_URL`.
    pub base_url: Option<String>,
}

struct BirdSend {
    workspace_id: String,
    channel_id: String,
    access_key: Secret,
    base_url: String,
}

/// An id that goes into the path: letters, digits and `-`.
fn path_id(value: &str, field: &str) -> Result<String, ProviderConfigError> {
    let value = value.trim();
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(bad(field, "must be an id (letters, digits and '-')"));
    }
    Ok(value.to_owned())
}

impl BirdSend {
    fn from_config(config: &BirdSendConfig) -> Result<Self, ProviderConfigError> {
        let workspace_id = path_id(&config.workspace_id, "send.workspace_id")?;
        let channel_id = path_id(&config.channel_id, "send.channel_id")?;
        if config.access_key.expose().trim().is_empty() {
            return Err(bad("send.access_key", "must not be empty"));
        }
        if let Some(url) = &config.base_url {
            send::check_base_url(url, "send.base_url")?;
        }
        Ok(BirdSend {
            workspace_id,
            channel_id,
            access_key: config.access_key.clone(),
            base_url: send::base_url(config.base_url.as_deref(), DEFAULT_BASE_URL),
        })
    }

    /// Sends through the channel, which owns the number: `from` is not used.
    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        let body = serde_json::json!({
            "receiver": { "contacts": [{ "identifierValue": message.to.as_e164() }] },
            "body": { "type": "text", "text": { "text": message.body } },
        });
        let url = format!("{}/workspaces/{}/channels/{}/messages", self.base_url, self.workspace_id, self.channel_id);
        let request = send::client()
            .post(url)
            .header(http::header::AUTHORIZATION, format!("AccessKey {}", self.access_key.expose()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        // A refusal names its error `code`, never the error's text (which
        // may quote the numbers).
        let answer = send::execute(request).await?.accepted(|_| None, send::refusal_coded("/code"))?;
        Ok(Sent { message_id: answer.text_at("/id") })
    }
}

impl Configured for Bird {
    type Config = BirdConfig;

    fn from_config(config: &BirdConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        secrets(&config.signing_keys, "signing_keys")?;
        let send = config.send.as_ref().map(BirdSend::from_config).transpose()?;
        Ok(Bird { signing_keys: config.signing_keys.clone(), send })
    }
}

#[async_trait::async_trait]
impl Provider for Bird {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        receive(&self.signing_keys, request)
    }

    fn sends(&self) -> bool {
        self.send.is_some()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match &self.send {
            Some(send) => send.send(message).await,
            None => Err(SendError::NotConfigured("no [providers.bird.send] table")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::Value;

    #[test]
    fn all_43_reference_cases_give_the_expected_answer() {
        let cases: Vec<Value> =
            serde_json::from_str(include_str!("../../tests/vectors/signatures/messagebird_reference.json")).unwrap();
        assert_eq!(cases.len(), 43);
        for case in cases {
            let now = parse_rfc3339(case["timestamp"].as_str().unwrap(), "timestamp").unwrap();
            let body = case["payload"].as_str().unwrap_or("").as_bytes();
            let result = verify_jwt(
                &[Secret::new(case["secret"].as_str().unwrap_or(""))],
                case["token"].as_str().unwrap(),
                case["url"].as_str().unwrap(),
                body,
                now,
            );
            assert_eq!(result.is_ok(), case["valid"].as_bool().unwrap(), "{}: {result:?}", case["name"]);
        }
    }

    #[test]
    fn every_legacy_hmac_vector_signs() {
        let all: Value = serde_json::from_str(include_str!("../../tests/vectors/signatures/vectors.json")).unwrap();
        for v in all["messagebird"]["legacy_hmac_and_bird_format"]["vectors"].as_array().unwrap() {
            let signature = sign_hmac(
                v["signing_key"].as_str().unwrap(),
                v["MessageBird-Request-Timestamp"].as_str().unwrap(),
                &sorted_query(v["sorted_query"].as_str().unwrap()),
                v["body"].as_str().unwrap().as_bytes(),
            );
            assert_eq!(signature, v["expected_signature"].as_str().unwrap());
        }
    }

    fn hmac_request<'a>(headers: &'a HeaderMap, url: &'a str, body: &'a [u8], now: i64) -> WebhookRequest<'a> {
        WebhookRequest { method: "POST", url, headers, body, now: OffsetDateTime::from_unix_timestamp(now).unwrap() }
    }

    #[test]
    fn the_hmac_scheme_checks_url_body_key_and_time() {
        let url = "https://consent.example.org/webhooks/bird?def=bar&abc=foo";
        let body = br#"{"a key":"some value"}"#;
        let signature = sign_hmac("other-secret", "1544544948", url, body);
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        h.insert(TIMESTAMP_HEADER, "1544544948".parse().unwrap());
        let keys = [Secret::new("other-secret")];
        assert_eq!(verify(&keys, &hmac_request(&h, url, body, 1_544_544_950)), Ok(()));
        let legacy = sign_hmac("other-secret", "1544544948", "abc=foo&def=bar", body);
        h.insert(SIGNATURE_HEADER, legacy.parse().unwrap());
        assert_eq!(verify(&keys, &hmac_request(&h, url, body, 1_544_544_950)), Ok(()));
        assert_eq!(verify(&keys, &hmac_request(&h, url, b"{}", 1_544_544_950)), Err(SignatureError::InvalidSignature));
        assert_eq!(
            verify(&[Secret::new("x")], &hmac_request(&h, url, body, 1_544_544_950)),
            Err(SignatureError::InvalidSignature)
        );
        assert_eq!(verify(&keys, &hmac_request(&h, url, body, 1_544_545_300)), Err(SignatureError::TimestampTooOld));
        assert_eq!(
            verify(&keys, &hmac_request(&HeaderMap::new(), url, body, 0)),
            Err(SignatureError::MissingHeader("MessageBird-Signature-JWT"))
        );
    }

    #[test]
    fn channel_and_legacy_messages_are_parsed() {
        let h = HeaderMap::new();
        let json = br#"{"service":"channels","event":"sms.inbound","payload":{"id":"96a0b5fa","channelId":"614208aa","sender":{"contact":{"id":"32cf","identifierKey":"phonenumber","identifierValue":"+14158675309"}},"receiver":{"connector":{"id":"86cc"}},"body":{"type":"text","text":{"text":"STOP"}},"direction":"incoming","createdAt":"2026-12-22T08:32:50.736Z"}}"#;
        let Received::Message(m) = parse(&hmac_request(&h, "https://x/", json, 0)).unwrap() else { panic!() };
        assert!(m.to.is_none());
        assert_eq!(m.text, "STOP");
        let form = b"id=e8077d8&recipient=14155550100&originator=14158675309&body=Stop&createdDatetime=2026-08-21T14%3A04%3A13%2B00%3A00";
        let Received::Message(m) = parse(&hmac_request(&h, "https://x/", form, 0)).unwrap() else { panic!() };
        assert_eq!(m.to.unwrap().as_e164(), "+14155550100");
        let other = br#"{"service":"channels","event":"sms.outbound","payload":{}}"#;
        assert!(matches!(parse(&hmac_request(&h, "https://x/", other, 0)).unwrap(), Received::Ignored(_)));
    }

    #[test]
    fn a_time_outside_1970_to_9999_is_a_payload_error() {
        let h = HeaderMap::new();
        let json = br#"{"service":"channels","event":"sms.inbound","payload":{"id":"96a0b5fa","sender":{"contact":{"identifierValue":"+14158675309"}},"receiver":{"connector":{"id":"86cc"}},"body":{"type":"text","text":{"text":"STOP"}},"direction":"incoming","createdAt":"0000-01-01T00:00:00+01:00"}}"#;
        assert!(parse(&hmac_request(&h, "https://x/", json, 0)).is_err());
        let form = b"id=e8077d8&recipient=14155550100&originator=14158675309&body=Stop&createdDatetime=1969-12-31T23%3A59%3A59Z";
        assert!(parse(&hmac_request(&h, "https://x/", form, 0)).is_err());
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<Bird>(r#"signing_keys = ["k"]"#).is_ok());
        for (section, field) in
            [(r#"signing_keys = [""]"#, "signing_keys[0]"), (r#"signing_keys = []"#, "signing_keys")]
        {
            let error = crate::providers::tests::build::<Bird>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }

    // --- Replies ---

    use crate::domain::PhoneNumber;
    use crate::providers::send::fake::{FakeApi, Reply};
    use serde_json::json;

    fn with_send(base_url: &str) -> Bird {
        crate::providers::tests::build::<Bird>(&format!(
            "signing_keys = [\"sk\"]\n[send]\nworkspace_id = \"2b6a3a45-ws\"\nchannel_id = \"8a5b6c7d-ch\"\n\
             access_key = \"acc3ss\"\nbase_url = \"{base_url}\"\n"
        ))
        .unwrap()
    }

    async fn send_one(provider: &Bird) -> Result<Sent, SendError> {
        let patient = PhoneNumber::parse("+14158675309").unwrap();
        let clinic = PhoneNumber::parse("+14155550100").unwrap();
        provider
            .send(&OutboundMessage {
                to: &patient,
                from: Some(&clinic),
                body: "Lakeside: you are unsubscribed.",
                reference: "ev-1",
            })
            .await
    }

    #[tokio::test]
    async fn a_reply_is_posted_to_the_channel_as_documented_and_its_id_read() {
        let fake = FakeApi::start(vec![Reply::json(
            202,
            json!({"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "channelId": "8a5b6c7d-ch", "status": "accepted",
                "direction": "outgoing", "createdAt": "2026-07-01T09:00:00Z"}),
        )])
        .await;
        let provider = with_send(&fake.base_url);
        assert!(provider.sends());
        assert_eq!(
            send_one(&provider).await.unwrap().message_id.as_deref(),
            Some("3fa85f64-5717-4562-b3fc-2c963f66afa6")
        );
        let seen = fake.seen();
        assert_eq!(seen[0].method, http::Method::POST);
        assert_eq!(seen[0].uri, "/workspaces/2b6a3a45-ws/channels/8a5b6c7d-ch/messages");
        assert_eq!(seen[0].header("authorization"), Some("AccessKey acc3ss"));
        assert_eq!(seen[0].header("content-type"), Some("application/json"));
        assert_eq!(
            seen[0].json(),
            json!({"receiver": {"contacts": [{"identifierValue": "+14158675309"}]},
                "body": {"type": "text", "text": {"text": "Lakeside: you are unsubscribed."}}})
        );
        assert!(!String::from_utf8_lossy(&seen[0].body).contains("4155550100"), "the channel owns the sender");
    }

    #[tokio::test]
    async fn error_answers_are_refused_or_temporary() {
        let fake = FakeApi::start(vec![
            Reply::json(
                422,
                json!({"code": "InvalidPayload", "message": "receiver '+14158675309' is not valid",
                    "details": {"receiver": ["invalid"]}}),
            ),
            Reply::json(429, json!({"code": "TooManyRequests"})).with_header("retry-after", "9"),
            Reply::json(503, json!({})),
        ])
        .await;
        let provider = with_send(&fake.base_url);
        let Err(SendError::Refused { reason }) = send_one(&provider).await else { panic!() };
        assert!(reason.contains("InvalidPayload"), "{reason}");
        assert!(!reason.contains("4158675309"), "{reason}");
        assert_eq!(
            send_one(&provider).await,
            Err(SendError::Temporary {
                reason: "the provider answered 429 Too Many Requests".into(),
                retry_after: Some(std::time::Duration::from_secs(9))
            })
        );
        assert!(matches!(send_one(&provider).await, Err(SendError::Temporary { .. })));
        let plain = crate::providers::tests::build::<Bird>(r#"signing_keys = ["k"]"#).unwrap();
        assert!(!plain.sends());
        assert!(matches!(send_one(&plain).await, Err(SendError::NotConfigured(_))));
    }

    #[test]
    fn a_failed_status_event_stays_ignored() {
        let h = HeaderMap::new();
        let failed = br#"{"service":"channels","event":"sms.outbound","payload":{"id":"3fa85f64","direction":"outgoing","status":"delivery_failed","reason":"details: unknown subscriber; reason: unknown_subscriber; code: 1","failure":{"code":15005,"source":{"name":"sms-messagebird","code":"1"}}}}"#;
        assert!(matches!(parse(&hmac_request(&h, "https://x/", failed, 0)).unwrap(), Received::Ignored(_)));
    }

    #[test]
    fn a_bad_send_table_names_its_field() {
        let head = "signing_keys = [\"k\"]\n[send]\n";
        for (section, field) in [
            ("workspace_id = \"\"\nchannel_id = \"c\"\naccess_key = \"a\"", "send.workspace_id"),
            ("workspace_id = \"w\"\nchannel_id = \"c/../x\"\naccess_key = \"a\"", "send.channel_id"),
            ("workspace_id = \"w\"\nchannel_id = \"c\"\naccess_key = \"\"", "send.access_key"),
            ("workspace_id = \"w\"\nchannel_id = \"c\"\naccess_key = \"a\"\nbase_url = \"ftp://x\"", "send.base_url"),
        ] {
            let error = crate::providers::tests::build::<Bird>(&format!("{head}{section}")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }
}
