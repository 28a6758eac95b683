//! Bandwidth: HTTP Basic credentials set on the messaging application,
//! compared in constant time. No timestamp: the message id makes a replay a
//! no-op. Callbacks are a JSON array of events; a `message-failed` event
//! with an opt-out or block code is the provider's opt-out. Replies go out
//! through `POST /users/{accountId}/messages` when
//! `[providers.bandwidth.send]` is configured.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::send::{self, OutboundMessage, SendError, Sent};
use super::{
    authorization, bad, json_body, non_empty, parse_rfc3339, phone, required, Configured, InboundMessage, Outside,
    PayloadError, Profile, Provider, ProviderBlock, ProviderConfigError, Received, Rejection, ReplyStyle, Secret,
    SignatureError, WebhookRequest,
};

pub const NAME: &str = "bandwidth";
pub const REPLY_STYLE: ReplyStyle = ReplyStyle { inline: false, auto_reply_keywords: &[] };
const PROFILE: Profile = Profile { name: NAME, methods: super::POST, reply_style: REPLY_STYLE };
/// The Messaging API v2.
pub const DEFAULT_BASE_URL: &str = "https://messaging.bandwidth.com/api/v2";
/// A `message-failed` callback's `errorCode` for a recipient who opted out
/// or is blocked: `4775` destination-rejected-due-to-user-opt-out (the
/// carrier's STOP) and `4482` rejected-to-number-in-blacklist (the number
/// is blocked from receiving). Bandwidth's send API answers errors with a
/// `type` and `description` only, never one of these codes, so a send's
/// answer is never read as an opt-out. See
/// https://dev.bandwidth.com/docs/messaging/errors (the error code table).
pub const OPT_OUT_CODES: &[i64] = &[4775, 4482];

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
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    time: Option<String>,
    /// A status event's recipient.
    to: Option<String>,
    error_code: Option<serde_json::Value>,
    message: Option<Message>,
}

impl Event {
    fn opt_out_code(&self) -> Option<i64> {
        if self.kind != "message-failed" {
            return None;
        }
        let code = match self.error_code.as_ref()? {
            serde_json::Value::Number(n) => n.as_i64()?,
            serde_json::Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        OPT_OUT_CODES.contains(&code).then_some(code)
    }
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
///
/// Every `message-failed` event that carries an opt-out code
/// (`OPT_OUT_CODES`) is a provider opt-out, recorded beside the messages.
pub fn parse(body: &[u8]) -> Result<Received, PayloadError> {
    let events: Vec<Event> = json_body(body)?;
    let mut messages = Vec::new();
    let mut opt_outs = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        if event.kind == "message-received" {
            messages.push(inbound(i, event)?);
        } else if event.opt_out_code().is_some() {
            opt_outs.push(opt_out(i, event)?);
        }
    }
    Ok(match (messages.len(), opt_outs.len()) {
        (0, 0) => Received::Ignored("no inbound message"),
        (1, 0) => Received::Message(messages.remove(0)),
        (0, 1) => Received::ProviderOptOut(opt_outs.remove(0)),
        _ => Received::Batch { messages, opt_outs },
    })
}

/// A `message-failed` event with an opt-out code: the recipient of our
/// message is the patient, its `from` (or `owner`) the clinic.
fn opt_out(index: usize, event: Event) -> Result<ProviderBlock, PayloadError> {
    let field = |name: &str| format!("[{index}].{name}");
    let code = event.opt_out_code().map(|c| c.to_string()).unwrap_or_default();
    let message = event.message.ok_or_else(|| PayloadError(format!("missing field {}", field("message"))))?;
    let patient = event.to.or_else(|| message.to.into_iter().next());
    let clinic = message.from.or(message.owner);
    let at = event.time.or(message.time);
    Ok(ProviderBlock {
        provider: NAME.to_owned(),
        message_id: required(message.id.as_deref(), &field("message.id"))?.to_owned(),
        number: phone(required(patient.as_deref(), &field("to"))?, &field("to"))?,
        clinic: clinic.as_deref().map(|c| phone(c, &field("message.from"))).transpose()?,
        code,
        occurred_at: at.as_deref().map(|t| parse_rfc3339(t, &field("time"))).transpose()?,
    })
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
    send: Option<BandwidthSend>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthConfig {
    pub credentials: Vec<BasicCredential>,
    /// Replies through the Messaging API.
    pub send: Option<BandwidthSendConfig>,
}

/// `[providers.bandwidth.send]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandwidthSendConfig {
    pub account_id: String,
    /// The messaging application the clinic numbers belong to.
    pub application_id: String,
    /// An API user's credentials (HTTP Basic).
    pub username: String,
    pub password: Secret,
    /// Defaults to `DEFAULT_BASE_URL`.
    pub base_url: Option<String>,
}

struct BandwidthSend {
    account_id: String,
    application_id: String,
    username: String,
    password: Secret,
    base_url: String,
}

impl BandwidthSend {
    fn from_config(config: &BandwidthSendConfig) -> Result<Self, ProviderConfigError> {
        // The account id goes into the path: digits and letters only.
        let account = config.account_id.trim();
        if account.is_empty() || !account.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad("send.account_id", "must be the account id (letters and digits)"));
        }
        if config.application_id.trim().is_empty() {
            return Err(bad("send.application_id", "must not be empty"));
        }
        if config.username.trim().is_empty() || config.username.contains(':') {
            return Err(bad("send.username", "must not be empty or contain ':'"));
        }
        if config.password.expose().is_empty() {
            return Err(bad("send.password", "must not be empty"));
        }
        if let Some(url) = &config.base_url {
            send::check_base_url(url, "send.base_url")?;
        }
        Ok(BandwidthSend {
            account_id: account.to_owned(),
            application_id: config.application_id.trim().to_owned(),
            username: config.username.clone(),
            password: config.password.clone(),
            base_url: send::base_url(config.base_url.as_deref(), DEFAULT_BASE_URL),
        })
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        let Some(from) = message.from else {
            return Err(SendError::refused("Bandwidth sends from a number, and the clinic number is unknown"));
        };
        let body = serde_json::json!({
            "applicationId": self.application_id,
            "to": [message.to.as_e164()],
            "from": from.as_e164(),
            "text": message.body,
            "tag": message.reference,
        });
        let request = send::client()
            .post(format!("{}/users/{}/messages", self.base_url, self.account_id))
            .basic_auth(&self.username, Some(self.password.expose()))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        // A refusal names its error `type`, never the error's text (which
        // may quote the numbers).
        let answer = send::execute(request).await?.accepted(|_| None, send::refusal_coded("/type"))?;
        Ok(Sent { message_id: answer.text_at("/id") })
    }
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
        let send = config.send.as_ref().map(BandwidthSend::from_config).transpose()?;
        Ok(Bandwidth { credentials: config.credentials.clone(), send })
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

    fn sends(&self) -> bool {
        self.send.is_some()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match &self.send {
            Some(send) => send.send(message).await,
            None => Err(SendError::NotConfigured("no [providers.bandwidth.send] table")),
        }
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
        let Received::Batch { messages: all, opt_outs } = parse(body).unwrap() else { panic!() };
        assert!(opt_outs.is_empty());
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

    // --- Replies and the provider's opt-outs ---

    use crate::domain::PhoneNumber;
    use crate::providers::send::fake::{FakeApi, Reply};
    use serde_json::json;

    fn with_send(base_url: &str) -> Bandwidth {
        crate::providers::tests::build::<Bandwidth>(&format!(
            "credentials = [{{ username = \"cb\", password = \"cbpass\" }}]\n[send]\naccount_id = \"9900000\"\n\
             application_id = \"93de2206-9669-4e07-948d-329f4b722ee2\"\nusername = \"api-user\"\n\
             password = \"api-pass\"\nbase_url = \"{base_url}\"\n"
        ))
        .unwrap()
    }

    fn numbers() -> (PhoneNumber, PhoneNumber) {
        (PhoneNumber::parse("+14158675309").unwrap(), PhoneNumber::parse("+14155550100").unwrap())
    }

    async fn send_one(provider: &Bandwidth, from: Option<&PhoneNumber>) -> Result<Sent, SendError> {
        let (patient, _) = numbers();
        provider
            .send(&OutboundMessage { to: &patient, from, body: "Lakeside: you are unsubscribed.", reference: "ev-1" })
            .await
    }

    #[tokio::test]
    async fn a_reply_is_posted_to_the_accounts_messages_as_documented_and_its_id_read() {
        let fake = FakeApi::start(vec![Reply::json(
            202,
            json!({"id": "1589228074636lm4k2je7j7jklbn2", "owner": "+14155550100",
                "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2", "time": "2026-05-11T20:14:34.636Z",
                "segmentCount": 1, "direction": "out", "to": ["+14158675309"], "from": "+14155550100",
                "text": "Lakeside: you are unsubscribed.", "tag": "ev-1"}),
        )])
        .await;
        let provider = with_send(&fake.base_url);
        assert!(provider.sends());
        let (_, clinic) = numbers();
        let sent = send_one(&provider, Some(&clinic)).await.unwrap();
        assert_eq!(sent.message_id.as_deref(), Some("1589228074636lm4k2je7j7jklbn2"));
        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, http::Method::POST);
        assert_eq!(seen[0].uri, "/users/9900000/messages");
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Basic {}", STANDARD.encode("api-user:api-pass")).as_str())
        );
        assert_eq!(seen[0].header("content-type"), Some("application/json"));
        assert_eq!(
            seen[0].json(),
            json!({"applicationId": "93de2206-9669-4e07-948d-329f4b722ee2", "to": ["+14158675309"],
                "from": "+14155550100", "text": "Lakeside: you are unsubscribed.", "tag": "ev-1"})
        );
        assert!(!String::from_utf8_lossy(&seen[0].body).contains("cbpass"), "no callback secret sent");
    }

    #[tokio::test]
    async fn error_answers_are_refused_or_temporary_and_no_sender_is_refused() {
        let fake = FakeApi::start(vec![
            Reply::json(
                400,
                json!({"type": "request-validation", "description": "Your request could not be accepted",
                    "fieldErrors": [{"fieldName": "to", "description": "'+14158675309' must be a valid number"}]}),
            ),
            Reply::json(429, json!({"type": "too-many-requests", "description": "Slow down"}))
                .with_header("retry-after", "12"),
            Reply::json(500, json!({})),
        ])
        .await;
        let provider = with_send(&fake.base_url);
        let (_, clinic) = numbers();
        let Err(SendError::Refused { reason }) = send_one(&provider, Some(&clinic)).await else { panic!() };
        assert!(reason.contains("request-validation"), "{reason}");
        assert!(!reason.contains("4158675309"), "{reason}");
        assert_eq!(
            send_one(&provider, Some(&clinic)).await,
            Err(SendError::Temporary {
                reason: "the provider answered 429 Too Many Requests".into(),
                retry_after: Some(std::time::Duration::from_secs(12))
            })
        );
        assert!(matches!(send_one(&provider, Some(&clinic)).await, Err(SendError::Temporary { .. })));
        let Err(SendError::Refused { reason }) = send_one(&provider, None).await else { panic!() };
        assert!(!reason.contains("+1"), "{reason}");
        assert_eq!(fake.seen().len(), 3, "nothing sent without a sender");
        let plain =
            crate::providers::tests::build::<Bandwidth>(r#"credentials = [{ username = "u", password = "p" }]"#)
                .unwrap();
        assert!(!plain.sends());
        assert!(matches!(send_one(&plain, Some(&clinic)).await, Err(SendError::NotConfigured(_))));
    }

    fn failed(code: &str) -> String {
        format!(
            r#"[{{"type":"message-failed","time":"2026-05-11T20:15:01.000Z","description":"destination-rejected-due-to-user-opt-out","to":"+14158675309","errorCode":{code},"message":{{"id":"1589228074636lm4k2je7j7jklbn2","owner":"+14155550100","applicationId":"93de2206","time":"2026-05-11T20:14:34.636Z","segmentCount":1,"direction":"out","to":["+14158675309"],"from":"+14155550100","text":"","tag":"ev-1"}}}}]"#
        )
    }

    async fn receive_with(
        provider: &Bandwidth,
        authorization: Option<&str>,
        body: &str,
    ) -> Result<Received, Rejection> {
        let mut h = HeaderMap::new();
        if let Some(a) = authorization {
            h.insert("authorization", a.parse().unwrap());
        }
        let request = WebhookRequest {
            method: "POST",
            url: "https://x/webhooks/bandwidth",
            headers: &h,
            body: body.as_bytes(),
            now: OffsetDateTime::UNIX_EPOCH,
        };
        provider.receive(&request).await
    }

    #[tokio::test]
    async fn an_authenticated_message_failed_callback_with_an_opt_out_code_is_a_provider_opt_out() {
        let provider = with_send("https://messaging.bandwidth.com/api/v2");
        for code in ["4775", "4482", "\"4775\""] {
            let result = receive_with(&provider, Some(&basic("cb", "cbpass")), &failed(code)).await.unwrap();
            let Received::ProviderOptOut(block) = result else { panic!("{code}") };
            assert_eq!(block.provider, "bandwidth");
            assert_eq!(block.message_id, "1589228074636lm4k2je7j7jklbn2");
            assert_eq!(block.number.as_e164(), "+14158675309");
            assert_eq!(block.clinic.as_ref().map(PhoneNumber::as_e164), Some("+14155550100"));
            assert_eq!(block.code, code.trim_matches('"'));
            assert_eq!(block.occurred_at, Some(time::macros::datetime!(2026-05-11 20:15:01 UTC)));
        }
    }

    #[tokio::test]
    async fn other_status_callbacks_are_ignored_and_bad_credentials_refused() {
        let provider = with_send("https://messaging.bandwidth.com/api/v2");
        let delivered = failed("0").replace("message-failed", "message-delivered");
        for body in [failed("4720"), delivered] {
            assert!(matches!(
                receive_with(&provider, Some(&basic("cb", "cbpass")), &body).await.unwrap(),
                Received::Ignored(_)
            ));
        }
        assert!(matches!(
            receive_with(&provider, Some(&basic("cb", "guess")), &failed("4775")).await,
            Err(Rejection::Signature(SignatureError::InvalidCredentials))
        ));
        assert!(matches!(
            receive_with(&provider, None, &failed("4775")).await,
            Err(Rejection::Signature(SignatureError::MissingHeader(_)))
        ));
    }

    #[test]
    fn a_bad_send_table_names_its_field() {
        let good = [
            ("account_id", "\"9900000\""),
            ("application_id", "\"app\""),
            ("username", "\"u\""),
            ("password", "\"p\""),
        ];
        let section = |replace: &str, value: &str| {
            let mut out = String::from("credentials = [{ username = \"u\", password = \"p\" }]\n[send]\n");
            for (key, v) in good {
                if key != replace {
                    out.push_str(&format!("{key} = {v}\n"));
                }
            }
            if !value.is_empty() {
                out.push_str(&format!("{replace} = {value}\n"));
            }
            out
        };
        assert!(crate::providers::tests::build::<Bandwidth>(&section("base_url", "")).is_ok());
        for (field, value) in [
            ("account_id", "\"\""),
            ("account_id", "\"99/../x\""),
            ("application_id", "\" \""),
            ("username", "\"\""),
            ("password", "\"\""),
            ("base_url", "\"http://messaging.example.com\""),
        ] {
            let error = crate::providers::tests::build::<Bandwidth>(&section(field, value)).err().expect(field);
            assert_eq!(error.field, format!("send.{field}"), "{field}: {error}");
        }
    }
}
