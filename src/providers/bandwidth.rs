//! Bandwidth: HTTP Basic credentials set on the messaging application,
//! compared in constant time. No timestamp: the message id makes a replay a
//! no-op. Callbacks are a JSON array of events; replies go to the outbox.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    authorization, bad, json_body, non_empty, parse_rfc3339, phone, required, Configured, InboundMessage, Outside,
    PayloadError, Profile, Provider, ProviderConfigError, Received, Rejection, ReplyStyle, Secret, SignatureError,
    WebhookRequest,
};

pub const NAME: &str = "bandwidth";
pub const REPLY_STYLE: ReplyStyle = ReplyStyle { inline: false, auto_reply_keywords: &[] };
const PROFILE: Profile = Profile { name: NAME, methods: super::POST, reply_style: REPLY_STYLE };

pub fn verify(credentials: &[BasicCredential], request: &WebhookRequest<'_>) -> Result<(), SignatureError> {
    let header = request.header("authorization").ok_or(SignatureError::MissingHeader("Authorization"))?;
    let encoded = authorization(header, "Basic").ok_or(SignatureError::MalformedHeader("Authorization"))?;
    let decoded = STANDARD.decode(encoded).map_err(|_| SignatureError::MalformedHeader("Authorization"))?;
    // Compare digests so neither length nor content leaks through timing.
    let presented = Sha256::digest(&decoded);
    let matched = credentials.iter().fold(false, |found, c| {
        let expected = Sha256::digest(format!("{}:{}", c.username, c.password.expose()).as_bytes());
        found | super::same_bytes(&expected, &presented)
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::InvalidCredentials)
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    time: Option<String>,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    id: Option<String>,
    from: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    owner: Option<String>,
    text: Option<String>,
    time: Option<String>,
}

/// Every `message-received` event of the callback, each under its own
/// message id (Bandwidth batches events, and a callback can carry several
/// patients' messages); status events are acknowledged and ignored. One
/// unreadable inbound event refuses the whole callback, recording nothing.
pub fn parse(body: &[u8]) -> Result<Received, PayloadError> {
    let events: Vec<Event> = json_body(body)?;
    let mut messages = events
        .into_iter()
        .enumerate()
        .filter(|(_, e)| e.kind == "message-received")
        .map(|(i, e)| inbound(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    if messages.len() > 1 {
        return Ok(Received::Messages(messages));
    }
    Ok(messages.pop().map_or(Received::Ignored("no inbound message"), Received::Message))
}

fn inbound(index: usize, event: Event) -> Result<InboundMessage, PayloadError> {
    let field = |name: &str| format!("[{index}].{name}");
    let message = event.message.ok_or_else(|| PayloadError(format!("missing field {}", field("message"))))?;
    let to = message.owner.or_else(|| message.to.into_iter().next());
    let at = message.time.or(event.time);
    Ok(InboundMessage {
        provider: NAME,
        message_id: required(message.id.as_deref(), &field("message.id"))?.to_owned(),
        from: phone(required(message.from.as_deref(), &field("message.from"))?, &field("message.from"))?,
        to: Some(phone(required(to.as_deref(), &field("message.owner"))?, &field("message.owner"))?),
        text: message.text.unwrap_or_default(),
        occurred_at: at.as_deref().map(|t| parse_rfc3339(t, &field("message.time"))).transpose()?,
        replay_key: None,
    })
}

pub fn receive(credentials: &[BasicCredential], request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
    verify(credentials, request)?;
    Ok(parse(request.body)?)
}

/// Bandwidth, built from `[providers.bandwidth]`.
pub struct Bandwidth {
    credentials: Vec<BasicCredential>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthConfig {
    pub credentials: Vec<BasicCredential>,
}

impl Configured for Bandwidth {
    type Config = BandwidthConfig;

    fn from_config(config: &BandwidthConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        non_empty(&config.credentials, "credentials")?;
        for (j, c) in config.credentials.iter().enumerate() {
            if c.username.is_empty() || c.username.contains(':') || c.password.expose().is_empty() {
                return Err(bad(format!("credentials[{j}]"), "needs a username (no ':') and a password"));
            }
        }
        Ok(Bandwidth { credentials: config.credentials.clone() })
    }
}

#[async_trait::async_trait]
impl Provider for Bandwidth {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        receive(&self.credentials, request)
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    pub username: String,
    pub password: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use time::OffsetDateTime;

    fn check(credentials: &[BasicCredential], authorization: Option<&str>) -> Result<(), SignatureError> {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert("authorization", a.parse().unwrap());
        }
        let request = WebhookRequest {
            method: "POST",
            url: "https://x/",
            headers: &h,
            body: b"[]",
            now: OffsetDateTime::UNIX_EPOCH,
        };
        verify(credentials, &request)
    }

    fn basic(user: &str, pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")))
    }

    #[test]
    fn only_configured_credentials_pass() {
        let creds = [
            BasicCredential { username: "bw".into(), password: Secret::new("old") },
            BasicCredential { username: "bw".into(), password: Secret::new("new") },
        ];
        assert_eq!(check(&creds, Some(&basic("bw", "new"))), Ok(()));
        assert_eq!(check(&creds, Some(&basic("bw", "old"))), Ok(()));
        assert_eq!(check(&creds, Some(&basic("bw", "guess"))), Err(SignatureError::InvalidCredentials));
        assert_eq!(check(&creds, Some(&basic("other", "new"))), Err(SignatureError::InvalidCredentials));
        assert_eq!(check(&creds, Some("Bearer x")), Err(SignatureError::MalformedHeader("Authorization")));
        assert_eq!(check(&creds, None), Err(SignatureError::MissingHeader("Authorization")));
    }

    #[test]
    fn a_message_received_event_is_parsed_and_status_events_ignored() {
        let body = br#"[{"type":"message-received","time":"2026-09-14T18:20:16Z","description":"Incoming message received","to":"+14155550100","message":{"id":"14762070468292kw2fuqty55yp2b2","time":"2026-09-14T18:20:16Z","to":["+14155550100"],"from":"+14158675309","text":"STOP","applicationId":"93de2206","owner":"+14155550100","direction":"in","segmentCount":1}}]"#;
        let Received::Message(m) = parse(body).unwrap() else { panic!() };
        assert_eq!((m.message_id.as_str(), m.text.as_str()), ("14762070468292kw2fuqty55yp2b2", "STOP"));
        assert!(matches!(
            parse(br#"[{"type":"message-delivered","message":{"id":"x"}}]"#).unwrap(),
            Received::Ignored(_)
        ));
        assert!(parse(br#"{"type":"message-received"}"#).is_err());
    }

    #[test]
    fn every_message_received_event_of_a_callback_is_parsed() {
        let body = br#"[{"type":"message-received","message":{"id":"m1","from":"+14158675309","owner":"+14155550100","text":"STOP"}},
            {"type":"message-delivered","message":{"id":"d1"}},
            {"type":"message-received","message":{"id":"m2","from":"+14158675310","owner":"+14155550100","text":"STOP"}}]"#;
        let Received::Messages(all) = parse(body).unwrap() else { panic!() };
        let ids: Vec<_> = all.iter().map(|m| (m.message_id.as_str(), m.from.as_e164())).collect();
        assert_eq!(ids, [("m1", "+14158675309"), ("m2", "+14158675310")]);
        let broken = br#"[{"type":"message-received","message":{"id":"m1","from":"+14158675309","owner":"+14155550100","text":"STOP"}},
            {"type":"message-received","message":{"id":"m2","owner":"+14155550100","text":"STOP"}}]"#;
        assert!(parse(broken).is_err(), "one unreadable event refuses the callback");
    }

    #[test]
    fn an_event_time_outside_1970_to_9999_is_a_payload_error() {
        let body = br#"[{"type":"message-received","time":"0000-01-01T00:00:00+01:00","message":{"id":"m1","from":"+14158675309","owner":"+14155550100","text":"STOP"}}]"#;
        assert!(parse(body).is_err());
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<Bandwidth>(r#"credentials = [{ username = "u", password = "p" }]"#)
            .is_ok());
        for (section, field) in [
            (r#"credentials = [{ username = "a:b", password = "p" }]"#, "credentials[0]"),
            (
                r#"credentials = [{ username = "u", password = "p" }, { username = "v", password = "" }]"#,
                "credentials[1]",
            ),
            (r#"credentials = []"#, "credentials"),
        ] {
            let error =
                crate::providers::tests::build::<Bandwidth>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }
}
