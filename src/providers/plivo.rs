//! Plivo: `X-Plivo-Signature-V3` (a comma-separated list; any match passes)
//! with `X-Plivo-Signature-V3-Nonce`. No timestamp: the message id makes a
//! replay a no-op. The older V2 pair signs only the URL and a nonce, not the
//! body, so one observed pair would carry any body: it is refused unless
//! config turns it on (`accept_v2_signatures`), and then its nonce is the
//! message's `replay_key`, accepted once. Replies are Plivo XML.
//!
//! With a `send` table it also sends through the Message API, and a message
//! status callback carrying error 200 (the destination opted out) becomes a
//! provider opt-out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::send::{self, HttpAnswer};
use super::{
    bad, digits_phone, form_pairs, param, required, same_bytes, secrets, xml_escape, Answer, Configured,
    InboundMessage, OutboundMessage, Outcome, Outside, PayloadError, Profile, Provider, ProviderBlock,
    ProviderConfigError, Received, Rejection, ReplyStyle, Secret, SendError, Sent, SignatureError, WebhookRequest,
    GET_AND_POST,
};

pub const NAME: &str = "plivo";
pub const V3_HEADER: &str = "x-plivo-signature-v3";
pub const V3_MAIN_ACCOUNT_HEADER: &str = "x-plivo-signature-ma-v3";
pub const V3_NONCE_HEADER: &str = "x-plivo-signature-v3-nonce";
pub const V2_HEADER: &str = "x-plivo-signature-v2";
pub const V2_MAIN_ACCOUNT_HEADER: &str = "x-plivo-signature-ma-v2";
pub const V2_NONCE_HEADER: &str = "x-plivo-signature-v2-nonce";
pub const REPLY_STYLE: ReplyStyle = ReplyStyle {
    inline: true,
    auto_reply_keywords: &[
        "STOP", "END", "QUIT", "CANCEL", "UNSUB", "STOP ALL", "START", "YES", "UNSTOP", "HELP", "INFO",
    ],
};
const PROFILE: Profile = Profile { name: NAME, methods: GET_AND_POST, reply_style: REPLY_STYLE };

/// Plivo's REST API.
pub const DEFAULT_BASE_URL: &str = "https://api.plivo.com";

/// Plivo's SMS error codes that mean the destination will not take our
/// messages: 200, a destination that replied STOP to the sending number
/// (Plivo blocks every later message to it and marks it failed with 200).
/// Plivo reports it in the message status callback's `ErrorCode`; its send
/// API accepts the message (202) and fails it afterwards, and its error
/// answers carry no code. https://www.plivo.com/docs/messaging/troubleshooting/error-codes
/// and https://support.plivo.com/support/solutions/articles/17000089602
pub const OPT_OUT_CODES: &[&str] = &["200"];

fn hmac(token: &str, message: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// `scheme://host[:port]/path` of a URL: no query, no fragment.
fn base_url(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

fn sorted_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort();
    pairs
}

fn joined(pairs: &[(String, String)], kv: &str, between: &str) -> String {
    pairs.iter().map(|(k, v)| format!("{k}{kv}{v}")).collect::<Vec<_>>().join(between)
}

/// The V3 string before `.nonce`, as the Plivo SDKs build it.
pub fn v3_string(method: &str, url: &str, params: &[(String, String)]) -> String {
    let base = base_url(url);
    let query: Vec<(String, String)> =
        url.split_once('?').map(|(_, q)| form_pairs(q.split('#').next().unwrap_or(q).as_bytes())).unwrap_or_default();
    if method.eq_ignore_ascii_case("GET") {
        let all = sorted_pairs(query.into_iter().chain(params.iter().cloned()));
        return if all.is_empty() { base.to_owned() } else { format!("{base}?{}", joined(&all, "=", "&")) };
    }
    let body = joined(&sorted_pairs(params.iter().cloned()), "", "");
    match (query.is_empty(), body.is_empty()) {
        (false, false) => format!("{base}?{}.{body}", joined(&sorted_pairs(query), "=", "&")),
        (false, true) => format!("{base}?{}", joined(&sorted_pairs(query), "=", "&")),
        (true, false) => format!("{base}?{body}"),
        (true, true) => base.to_owned(),
    }
}

pub fn sign_v3(token: &str, method: &str, url: &str, params: &[(String, String)], nonce: &str) -> String {
    STANDARD.encode(hmac(token, &format!("{}.{nonce}", v3_string(method, url, params))))
}

pub fn sign_v2(token: &str, url: &str, nonce: &str) -> String {
    STANDARD.encode(hmac(token, &format!("{}{nonce}", base_url(url))))
}

/// Which signature a request passed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    V3,
    /// The legacy scheme, with its nonce (the only thing that tells one
    /// signed V2 request from another).
    V2 {
        nonce: String,
    },
}

/// Tries V3 first (either header: the subaccount's or the main account's),
/// then V2 when `accept_v2` is on; every configured token during rotation.
pub fn verify(
    tokens: &[Secret],
    accept_v2: bool,
    request: &WebhookRequest<'_>,
    params: &[(String, String)],
) -> Result<Verified, SignatureError> {
    let candidates = |headers: &[&str]| -> Vec<Vec<u8>> {
        headers
            .iter()
            .filter_map(|h| request.header(h))
            .flat_map(|v| v.split(','))
            .filter_map(|s| STANDARD.decode(s.trim()).ok())
            .collect()
    };
    let matches = |expected: &dyn Fn(&str) -> Vec<u8>, provided: &[Vec<u8>]| {
        tokens.iter().any(|t| {
            let mac = expected(t.expose());
            provided.iter().any(|p| same_bytes(&mac, p))
        })
    };
    if let Some(nonce) = request.header(V3_NONCE_HEADER) {
        let provided = candidates(&[V3_HEADER, V3_MAIN_ACCOUNT_HEADER]);
        if provided.is_empty() {
            return Err(SignatureError::MissingHeader("X-Plivo-Signature-V3"));
        }
        let string = format!("{}.{nonce}", v3_string(request.method, request.url, params));
        return if matches(&|t| hmac(t, &string), &provided) {
            Ok(Verified::V3)
        } else {
            Err(SignatureError::InvalidSignature)
        };
    }
    if let Some(nonce) = request.header(V2_NONCE_HEADER) {
        if !accept_v2 {
            return Err(SignatureError::SchemeDisabled(
                "Plivo V2 signatures do not cover the body; send V3 or set providers.plivo.accept_v2_signatures",
            ));
        }
        let provided = candidates(&[V2_HEADER, V2_MAIN_ACCOUNT_HEADER]);
        if provided.is_empty() {
            return Err(SignatureError::MissingHeader("X-Plivo-Signature-V2"));
        }
        if nonce.trim().is_empty() {
            return Err(SignatureError::MalformedHeader("X-Plivo-Signature-V2-Nonce"));
        }
        let string = format!("{}{nonce}", base_url(request.url));
        return if matches(&|t| hmac(t, &string), &provided) {
            Ok(Verified::V2 { nonce: nonce.to_owned() })
        } else {
            Err(SignatureError::InvalidSignature)
        };
    }
    Err(SignatureError::MissingHeader("X-Plivo-Signature-V3-Nonce"))
}

/// Plivo posts a form (or sends a query on GET).
pub fn params(request: &WebhookRequest<'_>) -> Vec<(String, String)> {
    if request.method.eq_ignore_ascii_case("GET") {
        Vec::new()
    } else {
        form_pairs(request.body)
    }
}

/// Reads Plivo's incoming-message webhook; a delivery report is a provider
/// opt-out when it carries an opt-out `ErrorCode`, and is otherwise ignored.
pub fn parse(request: &WebhookRequest<'_>, params: &[(String, String)]) -> Result<Received, PayloadError> {
    let query = request.query_pairs();
    let get = |name: &str| param(params, name).or_else(|| param(&query, name));
    if get("Text").is_none() && get("Status").is_some() {
        return delivery_report(&get);
    }
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: required(get("MessageUUID"), "MessageUUID")?.to_owned(),
        from: digits_phone(required(get("From"), "From")?, "From")?,
        to: Some(digits_phone(required(get("To"), "To")?, "To")?),
        text: get("Text").ok_or_else(|| PayloadError("missing field Text".into()))?.to_owned(),
        occurred_at: None,
        replay_key: None,
    }))
}

/// A message status callback for one of our messages: `MessageUUID`, `Status`
/// (`queued`, `sent`, `failed`, `delivered`, `undelivered`), `ErrorCode`,
/// `From` (our number) and `To` (the patient), digits without `+`.
/// https://www.plivo.com/docs/messaging/concepts/callbacks
fn delivery_report<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> Result<Received, PayloadError> {
    let failed = matches!(get("Status"), Some("failed" | "undelivered"));
    let Some(code) = get("ErrorCode").map(str::trim).filter(|c| failed && OPT_OUT_CODES.contains(c)) else {
        return Ok(Received::Ignored("delivery report"));
    };
    Ok(Received::ProviderOptOut(ProviderBlock {
        provider: NAME.to_owned(),
        message_id: required(get("MessageUUID"), "MessageUUID")?.to_owned(),
        number: digits_phone(required(get("To"), "To")?, "To")?,
        // A sender id or short code is no number: the opt-out then counts
        // for every program.
        clinic: get("From").and_then(|from| crate::domain::PhoneNumber::parse_digits(from).ok()),
        code: code.to_owned(),
        occurred_at: None,
    }))
}

/// Plivo's error answers carry no opt-out code (see `OPT_OUT_CODES`).
fn opted_out(_: &HttpAnswer) -> Option<String> {
    None
}

/// Plivo's `error` text can quote the numbers: a refusal keeps it with every
/// run of digits masked.
fn describe(status: http::StatusCode, answer: Option<&serde_json::Value>) -> String {
    let error = answer.and_then(|v| v.get("error")).map(|e| match e {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    match error {
        Some(error) => {
            let mut masked = String::with_capacity(error.len());
            for c in error.chars().take(200) {
                if c.is_ascii_digit() {
                    if !masked.ends_with('#') {
                        masked.push('#');
                    }
                } else {
                    masked.push(c);
                }
            }
            format!("Plivo answered {status}: {masked}")
        }
        None => format!("Plivo answered {status}"),
    }
}

/// Sends one message through the Message API: `POST
/// /v1/Account/{auth_id}/Message/`, HTTP Basic with the Auth ID and token,
/// JSON `src`, `dst`, `text` (numbers in E.164 with `+`); 202 with
/// `message_uuid`, a list. https://www.plivo.com/docs/messaging/api/message/send-a-message
pub async fn send_message(config: &PlivoSendConfig, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
    let Some(from) = message.from else {
        return Err(SendError::refused("no sender: the reply names no clinic number to send from"));
    };
    let body = serde_json::json!({
        "src": from.as_e164(),
        "dst": message.to.as_e164(),
        "text": message.body,
    });
    let url = format!(
        "{}/v1/Account/{}/Message/",
        send::base_url(config.base_url.as_deref(), DEFAULT_BASE_URL),
        config.auth_id
    );
    let request = send::client()
        .post(url)
        .basic_auth(&config.auth_id, Some(config.auth_token.expose()))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    let refusal = |a: &send::HttpAnswer| describe(a.status, a.json::<serde_json::Value>().as_ref());
    let answer = send::execute(request).await?.accepted(opted_out, refusal)?;
    let parsed = answer.json::<serde_json::Value>();
    let id = parsed.as_ref().and_then(|v| v.get("message_uuid")).and_then(|ids| match ids {
        serde_json::Value::Array(ids) => ids.first().and_then(|id| id.as_str()).map(str::to_owned),
        serde_json::Value::String(id) => Some(id.clone()),
        _ => None,
    });
    Ok(Sent { message_id: id })
}

/// The `replay_key` of a message that came with a V2 signature.
pub fn v2_replay_key(nonce: &str) -> String {
    format!("plivo-v2-nonce:{nonce}")
}

pub fn receive(tokens: &[Secret], accept_v2: bool, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
    let params = params(request);
    let verified = verify(tokens, accept_v2, request, &params)?;
    let mut parsed = parse(request, &params)?;
    match (verified, &mut parsed) {
        (Verified::V2 { nonce }, Received::Message(message)) => message.replay_key = Some(v2_replay_key(&nonce)),
        // A V2 signature does not cover the body, so the number in it could
        // be anyone's: an opt-out is taken only from a V3-signed report.
        (Verified::V2 { .. }, Received::ProviderOptOut(_)) => {
            return Ok(Received::Ignored("delivery report under a V2 signature, which does not cover the body"))
        }
        _ => {}
    }
    Ok(parsed)
}

/// Plivo XML: the confirmation goes back from the clinic number to the
/// patient (Plivo's `<Message>` needs both); the text carries no PHI.
pub fn reply(message: Option<(&str, &InboundMessage)>) -> String {
    match message {
        Some((text, inbound)) => {
            let src = inbound.to.as_ref().map(|n| n.as_e164().trim_start_matches('+')).unwrap_or_default();
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message src=\"{src}\" dst=\"{dst}\" type=\"sms\">{body}</Message></Response>",
                dst = inbound.from.as_e164().trim_start_matches('+'),
                body = xml_escape(text),
            )
        }
        None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>".to_owned(),
    }
}

/// Plivo, built from `[providers.plivo]`.
pub struct Plivo {
    auth_tokens: Vec<Secret>,
    accept_v2_signatures: bool,
    send: Option<PlivoSendConfig>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlivoConfig {
    pub auth_tokens: Vec<Secret>,
    /// Accept the legacy V2 signature, which covers only the URL and a nonce
    /// (not the body): off by default; turn on only for an account that
    /// cannot send V3. Each V2 nonce is then accepted once.
    #[serde(default)]
    pub accept_v2_signatures: bool,
    /// The Message API, for replies sent on their own.
    #[serde(default)]
    pub send: Option<PlivoSendConfig>,
}

/// `[providers.plivo.send]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlivoSendConfig {
    /// The account's (or subaccount's) Auth ID: the user and the URL's account.
    pub auth_id: String,
    pub auth_token: Secret,
    /// Defaults to `DEFAULT_BASE_URL`.
    #[serde(default)]
    pub base_url: Option<String>,
}

fn check_send(config: &PlivoSendConfig) -> Result<(), ProviderConfigError> {
    // The Auth ID goes into the URL path: letters and digits only.
    if config.auth_id.is_empty() || !config.auth_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad("send.auth_id", "must be a non-empty Auth ID (letters and digits)"));
    }
    if config.auth_token.expose().is_empty() {
        return Err(bad("send.auth_token", "must not be empty"));
    }
    if let Some(base_url) = &config.base_url {
        send::check_base_url(base_url, "send.base_url")?;
    }
    Ok(())
}

impl Configured for Plivo {
    type Config = PlivoConfig;

    fn from_config(config: &PlivoConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        secrets(&config.auth_tokens, "auth_tokens")?;
        if let Some(send) = &config.send {
            check_send(send)?;
        }
        Ok(Plivo {
            auth_tokens: config.auth_tokens.clone(),
            accept_v2_signatures: config.accept_v2_signatures,
            send: config.send.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Plivo {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        receive(&self.auth_tokens, self.accept_v2_signatures, request)
    }

    /// Plivo XML, with the confirmation inline.
    fn answer(&self, outcome: &Outcome<'_>) -> Answer {
        Answer::xml(reply(outcome.reply))
    }

    fn sends(&self) -> bool {
        self.send.is_some()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match &self.send {
            Some(config) => send_message(config, message).await,
            None => Err(SendError::NotConfigured("providers.plivo.send is not set")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use serde_json::Value;
    use time::OffsetDateTime;

    fn plivo() -> Value {
        let all: Value = serde_json::from_str(include_str!("../../tests/vectors/signatures/vectors.json")).unwrap();
        all["plivo"].clone()
    }

    fn params_of(v: &Value) -> Vec<(String, String)> {
        v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect()
    }

    fn request<'a>(method: &'a str, url: &'a str, headers: &'a HeaderMap) -> WebhookRequest<'a> {
        WebhookRequest { method, url, headers, body: b"", now: OffsetDateTime::UNIX_EPOCH }
    }

    #[test]
    fn every_v3_vector_signs_and_verifies() {
        for v in plivo()["v3"]["vectors"].as_array().unwrap() {
            let (method, url, nonce, token) = (
                v["method"].as_str().unwrap(),
                v["url"].as_str().unwrap(),
                v["nonce"].as_str().unwrap(),
                v["auth_token"].as_str().unwrap(),
            );
            let params = params_of(&v["params"]);
            assert_eq!(
                format!("{}.{nonce}", v3_string(method, url, &params)),
                v["string_to_sign"].as_str().unwrap(),
                "{}",
                v["name"]
            );
            assert_eq!(sign_v3(token, method, url, &params, nonce), v["expected_signature"].as_str().unwrap());
            let mut h = HeaderMap::new();
            h.insert(V3_NONCE_HEADER, nonce.parse().unwrap());
            h.insert(V3_HEADER, format!("bm90IGl0, {}", v["expected_signature"].as_str().unwrap()).parse().unwrap());
            assert_eq!(verify(&[Secret::new(token)], false, &request(method, url, &h), &params), Ok(Verified::V3));
            let mut tampered = params.clone();
            tampered[0].1.push('x');
            assert_eq!(
                verify(&[Secret::new(token)], false, &request(method, url, &h), &tampered),
                Err(SignatureError::InvalidSignature)
            );
            assert_eq!(
                verify(&[Secret::new("wrong")], false, &request(method, url, &h), &params),
                Err(SignatureError::InvalidSignature)
            );
        }
    }

    #[test]
    fn every_v2_vector_signs_and_verifies() {
        for v in plivo()["v2"]["vectors"].as_array().unwrap() {
            let (url, nonce, token) =
                (v["url"].as_str().unwrap(), v["nonce"].as_str().unwrap(), v["auth_token"].as_str().unwrap());
            assert_eq!(sign_v2(token, url, nonce), v["expected_signature"].as_str().unwrap());
            let mut h = HeaderMap::new();
            h.insert(V2_NONCE_HEADER, nonce.parse().unwrap());
            h.insert(V2_MAIN_ACCOUNT_HEADER, v["expected_signature"].as_str().unwrap().parse().unwrap());
            let rotation = [Secret::new("old"), Secret::new(token)];
            assert_eq!(
                verify(&rotation, true, &request("POST", url, &h), &[]),
                Ok(Verified::V2 { nonce: nonce.to_owned() })
            );
            assert!(matches!(
                verify(&rotation, false, &request("POST", url, &h), &[]),
                Err(SignatureError::SchemeDisabled(_))
            ));
        }
    }

    #[test]
    fn a_v2_message_carries_its_nonce_as_replay_key_and_v3_none() {
        let url = "https://x/webhooks/plivo";
        let body = b"From=14158675309&To=14155550100&Text=STOP&Type=sms&MessageUUID=abc-123";
        let mut h = HeaderMap::new();
        h.insert(V2_NONCE_HEADER, "n-1".parse().unwrap());
        h.insert(V2_HEADER, sign_v2("t", url, "n-1").parse().unwrap());
        let r = WebhookRequest { method: "POST", url, headers: &h, body, now: OffsetDateTime::UNIX_EPOCH };
        let Received::Message(m) = receive(&[Secret::new("t")], true, &r).unwrap() else { panic!() };
        assert_eq!(m.replay_key.as_deref(), Some("plivo-v2-nonce:n-1"));
        assert!(receive(&[Secret::new("t")], false, &r).is_err());
        let params = params(&r);
        let mut h = HeaderMap::new();
        h.insert(V3_NONCE_HEADER, "n-2".parse().unwrap());
        h.insert(V3_HEADER, sign_v3("t", "POST", url, &params, "n-2").parse().unwrap());
        let r = WebhookRequest { headers: &h, ..r };
        let Received::Message(m) = receive(&[Secret::new("t")], false, &r).unwrap() else { panic!() };
        assert_eq!(m.replay_key, None);
    }

    #[test]
    fn missing_headers_are_refused() {
        let h = HeaderMap::new();
        assert_eq!(
            verify(&[Secret::new("t")], true, &request("POST", "https://x/", &h), &[]),
            Err(SignatureError::MissingHeader("X-Plivo-Signature-V3-Nonce"))
        );
        let mut h = HeaderMap::new();
        h.insert(V3_NONCE_HEADER, "1".parse().unwrap());
        assert_eq!(
            verify(&[Secret::new("t")], true, &request("POST", "https://x/", &h), &[]),
            Err(SignatureError::MissingHeader("X-Plivo-Signature-V3"))
        );
    }

    #[test]
    fn an_inbound_message_is_parsed_and_a_reply_addressed_back() {
        let h = HeaderMap::new();
        let body = b"From=14158675309&To=14155550100&Text=Stop&Type=sms&MessageUUID=abc-123&Units=1";
        let request = WebhookRequest {
            method: "POST",
            url: "https://x/webhooks/plivo",
            headers: &h,
            body,
            now: OffsetDateTime::UNIX_EPOCH,
        };
        let Received::Message(m) = parse(&request, &params(&request)).unwrap() else { panic!() };
        assert_eq!((m.from.as_e164(), m.message_id.as_str()), ("+14158675309", "abc-123"));
        let xml = reply(Some(("A & B", &m)));
        assert!(
            xml.contains(r#"<Message src="14155550100" dst="14158675309" type="sms">A &amp; B</Message>"#),
            "{xml}"
        );
        let report = b"MessageUUID=abc&Status=delivered&From=14155550100&To=14158675309";
        let request = WebhookRequest { body: report, ..request };
        assert!(matches!(parse(&request, &params(&request)).unwrap(), Received::Ignored(_)));
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<Plivo>(r#"auth_tokens = ["a"]"#).is_ok());
        for (section, field) in
            [(r#"auth_tokens = ["a", ""]"#, "auth_tokens[1]"), (r#"auth_tokens = []"#, "auth_tokens")]
        {
            let error = crate::providers::tests::build::<Plivo>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }
    use crate::domain::PhoneNumber;
    use crate::providers::send::fake::{FakeApi, Reply};

    const AUTH_ID: &str = "MAXXXXXXXXXXXXXXXXXX";

    fn sender(base_url: &str) -> Plivo {
        crate::providers::tests::build::<Plivo>(&format!(
            "auth_tokens = [\"hook-token\"]\n[send]\nauth_id = \"{AUTH_ID}\"\nauth_token = \"api-token\"\nbase_url = \"{base_url}\"\n"
        ))
        .unwrap()
    }

    fn numbers() -> (PhoneNumber, PhoneNumber) {
        (PhoneNumber::parse("+14158675309").unwrap(), PhoneNumber::parse("+14155550100").unwrap())
    }

    #[tokio::test]
    async fn a_reply_is_posted_as_plivo_documents_it_and_its_uuid_read() {
        let fake = FakeApi::start(vec![Reply::json(
            202,
            serde_json::json!({"api_id": "db342550-e8b2-11e4-b423-22000ac8a2f8", "message": "message(s) queued",
                "message_uuid": ["db3ce55a-7f1d-11e1-8ea7-1231380bc196"]}),
        )])
        .await;
        let plivo = sender(&fake.base_url);
        assert!(plivo.sends());
        let (to, from) = numbers();
        let message =
            OutboundMessage { to: &to, from: Some(&from), body: "Lakeside: you are unsubscribed.", reference: "ev-1" };
        assert_eq!(
            plivo.send(&message).await,
            Ok(Sent { message_id: Some("db3ce55a-7f1d-11e1-8ea7-1231380bc196".into()) })
        );
        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.uri, format!("/v1/Account/{AUTH_ID}/Message/"));
        let basic = format!("Basic {}", STANDARD.encode(format!("{AUTH_ID}:api-token")));
        assert_eq!(request.header("authorization"), Some(basic.as_str()));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.json(),
            serde_json::json!({"src": "+14155550100", "dst": "+14158675309", "text": "Lakeside: you are unsubscribed."})
        );
        let raw = String::from_utf8_lossy(&request.body).to_string();
        assert!(!raw.contains("hook-token") && !raw.contains("api-token"), "no secret in the body");
    }

    #[tokio::test]
    async fn error_answers_are_refused_without_numbers_or_temporary() {
        let fake = FakeApi::start(vec![
            Reply::json(
                400,
                serde_json::json!({"api_id": "a1", "error": "dst parameter 14158675309 is not a valid number"}),
            ),
            Reply::json(401, serde_json::json!({"api_id": "a2", "error": "Authentication failed"})),
            Reply::json(429, serde_json::json!({"api_id": "a3", "error": "too many requests"}))
                .with_header("retry-after", "12"),
            Reply::json(500, serde_json::json!({"api_id": "a4", "error": "internal error"})),
        ])
        .await;
        let plivo = sender(&fake.base_url);
        let (to, from) = numbers();
        let message = OutboundMessage { to: &to, from: Some(&from), body: "x", reference: "ev-2" };
        let Err(SendError::Refused { reason }) = plivo.send(&message).await else { panic!("not refused") };
        assert!(
            reason.contains("400") && reason.contains("not a valid number") && !reason.contains("8675309"),
            "{reason}"
        );
        assert!(
            matches!(plivo.send(&message).await, Err(SendError::Refused { reason }) if reason.contains("Authentication failed"))
        );
        assert!(matches!(
            plivo.send(&message).await,
            Err(SendError::Temporary { retry_after: Some(d), .. }) if d == std::time::Duration::from_secs(12)
        ));
        assert!(matches!(plivo.send(&message).await, Err(SendError::Temporary { .. })));
        let no_sender = OutboundMessage { from: None, ..message };
        assert!(matches!(plivo.send(&no_sender).await, Err(SendError::Refused { .. })));
        assert_eq!(fake.seen().len(), 4, "nothing sent without a sender");
        let unconfigured = crate::providers::tests::build::<Plivo>(r#"auth_tokens = ["t"]"#).unwrap();
        assert!(!unconfigured.sends());
        assert!(matches!(unconfigured.send(&message).await, Err(SendError::NotConfigured(_))));
    }

    async fn signed_report(plivo: &Plivo, form: &str, token: &str) -> Result<Received, Rejection> {
        let url = "https://consent.example/webhooks/plivo";
        let params = form_pairs(form.as_bytes());
        let mut headers = HeaderMap::new();
        headers.insert(V3_NONCE_HEADER, "12345".parse().unwrap());
        headers.insert(V3_HEADER, sign_v3(token, "POST", url, &params, "12345").parse().unwrap());
        let request = WebhookRequest {
            method: "POST",
            url,
            headers: &headers,
            body: form.as_bytes(),
            now: OffsetDateTime::UNIX_EPOCH,
        };
        plivo.receive(&request).await
    }

    #[tokio::test]
    async fn a_signed_status_callback_with_error_200_is_a_provider_opt_out() {
        let plivo = sender("https://api.plivo.com");
        let form = "MessageUUID=db3ce55a-7f1d-11e1-8ea7-1231380bc196&Status=failed&ErrorCode=200\
                    &From=14155550100&To=14158675309&Units=1&TotalRate=0&TotalAmount=0&MessageTime=";
        let Received::ProviderOptOut(block) = signed_report(&plivo, form, "hook-token").await.unwrap() else {
            panic!("not an opt-out")
        };
        assert_eq!(block.provider, "plivo");
        assert_eq!(block.message_id, "db3ce55a-7f1d-11e1-8ea7-1231380bc196");
        assert_eq!(block.number.as_e164(), "+14158675309");
        assert_eq!(block.clinic.as_ref().map(|c| c.as_e164()), Some("+14155550100"));
        assert_eq!(block.code, "200");
        assert_eq!(block.occurred_at, None);
        let undelivered = form.replace("Status=failed", "Status=undelivered");
        assert!(matches!(
            signed_report(&plivo, &undelivered, "hook-token").await.unwrap(),
            Received::ProviderOptOut(_)
        ));
    }

    #[tokio::test]
    async fn other_status_callbacks_are_ignored_and_a_bad_signature_refused() {
        let plivo = sender("https://api.plivo.com");
        let delivered = "MessageUUID=u1&Status=delivered&ErrorCode=000&From=14155550100&To=14158675309";
        assert!(matches!(signed_report(&plivo, delivered, "hook-token").await.unwrap(), Received::Ignored(_)));
        let spam = "MessageUUID=u1&Status=undelivered&ErrorCode=30&From=14155550100&To=14158675309";
        assert!(matches!(signed_report(&plivo, spam, "hook-token").await.unwrap(), Received::Ignored(_)));
        let opt_out = "MessageUUID=u1&Status=failed&ErrorCode=200&From=14155550100&To=14158675309";
        assert_eq!(
            signed_report(&plivo, opt_out, "not-the-token").await.unwrap_err(),
            Rejection::Signature(SignatureError::InvalidSignature)
        );
        let unsigned = WebhookRequest {
            method: "POST",
            url: "https://consent.example/webhooks/plivo",
            headers: &HeaderMap::new(),
            body: opt_out.as_bytes(),
            now: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(matches!(plivo.receive(&unsigned).await, Err(Rejection::Signature(SignatureError::MissingHeader(_)))));
    }

    #[tokio::test]
    async fn an_opt_out_report_under_a_v2_signature_is_not_taken() {
        let plivo =
            crate::providers::tests::build::<Plivo>("auth_tokens = [\"t\"]\naccept_v2_signatures = true").unwrap();
        let url = "https://consent.example/webhooks/plivo";
        let form = "MessageUUID=u1&Status=failed&ErrorCode=200&From=14155550100&To=14158675309";
        let mut headers = HeaderMap::new();
        headers.insert(V2_NONCE_HEADER, "n-9".parse().unwrap());
        headers.insert(V2_HEADER, sign_v2("t", url, "n-9").parse().unwrap());
        let request = WebhookRequest {
            method: "POST",
            url,
            headers: &headers,
            body: form.as_bytes(),
            now: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(matches!(plivo.receive(&request).await.unwrap(), Received::Ignored(_)));
    }

    #[test]
    fn a_bad_send_table_is_named_by_its_field() {
        for (send, field) in [
            ("auth_id = \"\"\nauth_token = \"t\"", "send.auth_id"),
            ("auth_id = \"MA/x\"\nauth_token = \"t\"", "send.auth_id"),
            ("auth_id = \"MA1\"\nauth_token = \"\"", "send.auth_token"),
            ("auth_id = \"MA1\"\nauth_token = \"t\"\nbase_url = \"http://api.plivo.com\"", "send.base_url"),
        ] {
            let section = format!("auth_tokens = [\"t\"]\n[send]\n{send}");
            let error = crate::providers::tests::build::<Plivo>(&section).err().expect(send);
            assert_eq!(error.field, field, "{send}: {error}");
        }
    }
}
