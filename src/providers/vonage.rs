//! Vonage: the SMS API signs its parameters with a `sig` (md5hash, or HMAC
//! md5/sha1/sha256/sha512 as configured); the Messages API sends a JWT
//! (HS256) in `Authorization: Bearer` whose `payload_hash` covers the body.
//! Either arrives at one route; replies go to the outbox.
//!
//! With a `send` table it also sends through the SMS API or the Messages
//! API, and a delivery receipt or status webhook carrying Vonage's opt-out
//! code becomes a provider opt-out.

use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use md5::Md5;
use serde::Deserialize;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use time::{OffsetDateTime, PrimitiveDateTime};

use super::send::{self, HttpAnswer};
use super::{
    bad, bearer, check_window, decode_hmac_jwt, digits_phone, event_time, form_pairs, param, parse_rfc3339, required,
    same_bytes, secrets, sha256_hex, within_window, Configured, InboundMessage, OutboundMessage, Outside, PayloadError,
    Profile, Provider, ProviderBlock, ProviderConfigError, Received, Rejection, ReplyStyle, Secret, SendError, Sent,
    SignatureError, WebhookRequest, GET_AND_POST, TOLERANCE_SECONDS,
};

pub const NAME: &str = "vonage";
/// How old a signed SMS API `timestamp` may be. Vonage keeps retrying an
/// undelivered inbound message for 24 hours with the parameters (and so the
/// timestamp) of the first attempt; a tighter window would turn an outage of
/// a few minutes into a STOP refused for good. Replays inside the window are
/// no-ops: the message id is deduplicated for 30 days.
pub const SIG_TOLERANCE_SECONDS: i64 = 25 * 60 * 60;
pub const REPLY_STYLE: ReplyStyle = ReplyStyle {
    inline: false,
    auto_reply_keywords: &["STOP", "END", "QUIT", "CANCEL", "UNSUBSCRIBE", "START", "JOIN", "HELP"],
};
const PROFILE: Profile = Profile { name: NAME, methods: GET_AND_POST, reply_style: REPLY_STYLE };

/// The SMS API's host.
pub const DEFAULT_SMS_BASE_URL: &str = "https://rest.nexmo.com";
/// The Messages API's host.
pub const DEFAULT_MESSAGES_BASE_URL: &str = "https://api.nexmo.com";

/// SMS API delivery receipt `err-code`s meaning the recipient will not take
/// our messages: 9, the recipient asked not to receive messages from the
/// sending number (its STOP), reported with `status` `failed` or `rejected`.
/// https://developer.vonage.com/en/opt-out-assist/guides/messaging-opted-out-numbers
pub const DLR_OPT_OUT_CODES: &[&str] = &["9"];
/// SMS API send answer `status`es meaning the same: 7, "Number Barred" (the
/// recipient is on a block list and may not receive messages).
/// https://developer.vonage.com/en/api-errors/sms
pub const SMS_API_OPT_OUT_STATUSES: &[&str] = &["7"];
/// SMS API send answer `status`es worth retrying: 1 (throttled), 5 (internal
/// error), 10 (too many binds: back off and retry).
pub const SMS_API_TEMPORARY_STATUSES: &[&str] = &["1", "5", "10"];
/// Messages API error codes (the `#<code>` of an error's `type`, or its
/// `title`) meaning the recipient is barred: 1050, "Number barred", in an
/// error answer to a send and in a `rejected` or `undeliverable` status
/// webhook. https://developer.vonage.com/en/api-errors/messages
pub const MESSAGES_API_OPT_OUT_CODES: &[&str] = &["1050"];

/// The string Vonage signs: every parameter but `sig`, sorted by key, as
/// `&key=value`, with `&` and `=` in values replaced by `_`.
pub fn sig_string(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort();
    sorted.iter().map(|(k, v)| format!("&{k}={}", v.replace(['&', '='], "_"))).collect()
}

fn hmac_hex<M: Mac + hmac::digest::KeyInit>(secret: &str, message: &str) -> String {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn sign(method: VonageSignatureMethod, secret: &str, params: &[(String, String)]) -> String {
    let string = sig_string(params);
    match method {
        VonageSignatureMethod::Md5hash => hex::encode(Md5::digest(format!("{string}{secret}").as_bytes())),
        VonageSignatureMethod::Md5 => hmac_hex::<Hmac<Md5>>(secret, &string),
        VonageSignatureMethod::Sha1 => hmac_hex::<Hmac<Sha1>>(secret, &string),
        VonageSignatureMethod::Sha256 => hmac_hex::<Hmac<Sha256>>(secret, &string),
        VonageSignatureMethod::Sha512 => hmac_hex::<Hmac<Sha512>>(secret, &string),
    }
}

/// Checks `sig` (hex, either case) and the freshness of `timestamp`.
pub fn verify_sig(
    method: VonageSignatureMethod,
    secrets: &[Secret],
    params: &[(String, String)],
    now: OffsetDateTime,
) -> Result<(), SignatureError> {
    let get = |name: &str| param(params, name);
    let provided = get("sig").ok_or(SignatureError::MissingHeader("sig"))?.to_ascii_lowercase();
    let matched = secrets.iter().any(|s| same_bytes(sign(method, s.expose(), params).as_bytes(), provided.as_bytes()));
    if !matched {
        return Err(SignatureError::InvalidSignature);
    }
    let timestamp = get("timestamp").ok_or(SignatureError::MissingHeader("timestamp"))?;
    check_window(timestamp, "timestamp", now, SIG_TOLERANCE_SECONDS).map(|_| ())
}

#[derive(Deserialize)]
struct Claims {
    iat: Option<i64>,
    exp: Option<i64>,
    payload_hash: Option<String>,
    api_key: Option<String>,
    application_id: Option<String>,
}

/// What config says a Messages API token must name, beyond its signature:
/// the account's `api_key` and one of its `application_id`s, when set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    pub api_key: Option<&'a str>,
    pub application_ids: &'a [String],
}

/// Checks a Messages API JWT: HS256 with one of the secrets (no other
/// algorithm, never `none`), `iat` fresh, `exp` not passed, `payload_hash`
/// equal to the body's SHA-256 (required whenever there is a body: without
/// it a captured token would carry any body for its lifetime), and the
/// `api_key` and `application_id` claims Vonage documents, where config
/// names them.
pub fn verify_jwt(
    secrets: &[Secret],
    expected: &Expected<'_>,
    token: &str,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), SignatureError> {
    let claims: Claims = decode_hmac_jwt(token, secrets, &[Algorithm::HS256])?;
    let iat = claims.iat.ok_or(SignatureError::InvalidToken("no iat claim"))?;
    within_window(iat, now, TOLERANCE_SECONDS)?;
    let now = now.unix_timestamp();
    if claims.exp.is_some_and(|exp| exp <= now) {
        return Err(SignatureError::TimestampTooOld);
    }
    if let Some(api_key) = expected.api_key {
        if claims.api_key.as_deref() != Some(api_key) {
            return Err(SignatureError::InvalidToken("api_key claim is not the configured account"));
        }
    }
    if !expected.application_ids.is_empty()
        && !claims.application_id.as_deref().is_some_and(|id| expected.application_ids.iter().any(|a| a == id))
    {
        return Err(SignatureError::InvalidToken("application_id claim is not a configured application"));
    }
    match claims.payload_hash {
        Some(hash) => {
            let actual = sha256_hex(body);
            if !same_bytes(actual.as_bytes(), hash.to_ascii_lowercase().as_bytes()) {
                return Err(SignatureError::BodyHashMismatch);
            }
        }
        None if !body.is_empty() => {
            return Err(SignatureError::InvalidToken("no payload_hash claim to bind the body"));
        }
        None => {}
    }
    Ok(())
}

/// The request's parameters: the query on GET, the form or JSON body on POST.
pub fn params(request: &WebhookRequest<'_>) -> Result<Vec<(String, String)>, PayloadError> {
    let mut out = request.query_pairs();
    if request.method.eq_ignore_ascii_case("GET") || request.body.is_empty() {
        return Ok(out);
    }
    let is_json = request.header("content-type").is_some_and(|c| c.contains("json"));
    if is_json {
        let Value::Object(map) =
            serde_json::from_slice(request.body).map_err(|e| PayloadError(format!("body is not JSON: {e}")))?
        else {
            return Err(PayloadError("body is not a JSON object".into()));
        };
        out.extend(map.into_iter().filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        }));
    } else {
        out.extend(form_pairs(request.body));
    }
    Ok(out)
}

/// SMS API inbound: `msisdn`, `to`, `messageId`, `text`; delivery receipts
/// (with `status`) are ignored.
pub fn parse_sms_api(params: &[(String, String)]) -> Result<Received, PayloadError> {
    let get = |name: &str| param(params, name);
    let occurred_at = || {
        get("message-timestamp")
            .map(|t| {
                let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
                let at = PrimitiveDateTime::parse(t, format)
                    .map_err(|_| PayloadError("message-timestamp: expected YYYY-MM-DD HH:MM:SS".into()))?;
                event_time(at.assume_utc(), "message-timestamp")
            })
            .transpose()
    };
    if get("text").is_none() && (get("status").is_some() || get("err-code").is_some()) {
        // A delivery receipt for one of our messages: `msisdn` is the
        // recipient (the patient), `to` our sender (a number or a name).
        let failed = matches!(get("status"), Some("failed" | "rejected"));
        let Some(code) = get("err-code").map(str::trim).filter(|c| failed && DLR_OPT_OUT_CODES.contains(c)) else {
            return Ok(Received::Ignored("delivery receipt"));
        };
        return Ok(Received::ProviderOptOut(ProviderBlock {
            provider: NAME.to_owned(),
            message_id: required(get("messageId"), "messageId")?.to_owned(),
            number: digits_phone(required(get("msisdn"), "msisdn")?, "msisdn")?,
            clinic: get("to").and_then(|to| crate::domain::PhoneNumber::parse_digits(to).ok()),
            code: code.to_owned(),
            occurred_at: occurred_at()?,
        }));
    }
    let occurred_at = occurred_at()?;
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: required(get("messageId"), "messageId")?.to_owned(),
        from: digits_phone(required(get("msisdn"), "msisdn")?, "msisdn")?,
        to: Some(digits_phone(required(get("to"), "to")?, "to")?),
        text: get("text").ok_or_else(|| PayloadError("missing field text".into()))?.to_owned(),
        occurred_at,
        replay_key: None,
    }))
}

#[derive(Deserialize)]
struct MessagesApiInbound {
    message_uuid: Option<String>,
    from: Option<String>,
    to: Option<String>,
    text: Option<String>,
    timestamp: Option<String>,
    status: Option<String>,
    channel: Option<String>,
    error: Option<Value>,
}

/// A Messages API error's code: the `#<code>` that ends its `type` URL, or
/// its `title` when that is a number. Status webhooks have been seen with the
/// error object nested once more (`error.error`).
fn messages_error_code(error: &Value) -> Option<String> {
    let error = error.get("error").filter(|inner| inner.is_object()).unwrap_or(error);
    let from_type = error
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| t.rsplit_once('#'))
        .map(|(_, code)| code.to_owned())
        .filter(|code| !code.is_empty() && code.chars().all(|c| c.is_ascii_digit()));
    let from_title = || match error.get("title")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => Some(s.clone()),
        _ => None,
    };
    from_type.or_else(from_title)
}

/// A Messages API status webhook for one of our messages: `to` is the
/// patient, `from` our number; `rejected` or `undeliverable` with an opt-out
/// error code is a provider opt-out.
/// https://developer.vonage.com/en/messages/concepts/messages-status-callbacks
fn messages_status(m: &MessagesApiInbound) -> Result<Received, PayloadError> {
    let failed = matches!(m.status.as_deref(), Some("rejected" | "undeliverable"));
    let code = m.error.as_ref().and_then(messages_error_code);
    let Some(code) = code.filter(|c| failed && MESSAGES_API_OPT_OUT_CODES.contains(&c.as_str())) else {
        return Ok(Received::Ignored("message status"));
    };
    if m.channel.as_deref().is_some_and(|c| c != "sms" && c != "mms") {
        return Ok(Received::Ignored("message status of another channel"));
    }
    Ok(Received::ProviderOptOut(ProviderBlock {
        provider: NAME.to_owned(),
        message_id: required(m.message_uuid.as_deref(), "message_uuid")?.to_owned(),
        number: digits_phone(required(m.to.as_deref(), "to")?, "to")?,
        clinic: m.from.as_deref().and_then(|from| crate::domain::PhoneNumber::parse_digits(from).ok()),
        code,
        occurred_at: m.timestamp.as_deref().map(|t| parse_rfc3339(t, "timestamp")).transpose()?,
    }))
}

/// Messages API inbound SMS; a status webhook is a provider opt-out when it
/// carries an opt-out code, other status webhooks and channels are ignored.
pub fn parse_messages_api(body: &[u8]) -> Result<Received, PayloadError> {
    let m: MessagesApiInbound = super::json_body(body)?;
    if m.status.is_some() && m.text.is_none() {
        return messages_status(&m);
    }
    if m.channel.as_deref().is_some_and(|c| c != "sms") {
        return Ok(Received::Ignored("not an SMS"));
    }
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: required(m.message_uuid.as_deref(), "message_uuid")?.to_owned(),
        from: digits_phone(required(m.from.as_deref(), "from")?, "from")?,
        to: Some(digits_phone(required(m.to.as_deref(), "to")?, "to")?),
        text: m.text.ok_or_else(|| PayloadError("missing field text".into()))?,
        occurred_at: m.timestamp.as_deref().map(|t| parse_rfc3339(t, "timestamp")).transpose()?,
        replay_key: None,
    }))
}

/// Which Vonage API sends: the SMS API (`sms`, the default) or the Messages
/// API (`messages`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VonageSendApi {
    #[default]
    Sms,
    Messages,
}

/// `[providers.vonage.send]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageSendConfig {
    pub api_key: String,
    pub api_secret: Secret,
    #[serde(default)]
    pub api: VonageSendApi,
    /// Defaults to `DEFAULT_SMS_BASE_URL` or `DEFAULT_MESSAGES_BASE_URL`.
    #[serde(default)]
    pub base_url: Option<String>,
}

fn check_send(config: &VonageSendConfig) -> Result<(), ProviderConfigError> {
    if config.api_key.trim().is_empty() {
        return Err(bad("send.api_key", "must not be empty"));
    }
    if config.api_secret.expose().is_empty() {
        return Err(bad("send.api_secret", "must not be empty"));
    }
    if let Some(base_url) = &config.base_url {
        send::check_base_url(base_url, "send.base_url")?;
    }
    Ok(())
}

/// Vonage wants numbers as digits, without the `+`.
fn digits(number: &crate::domain::PhoneNumber) -> &str {
    number.as_e164().trim_start_matches('+')
}

/// What an SMS API `status` means (its `error-text` may quote the numbers,
/// so a refusal names the status only). https://developer.vonage.com/en/api-errors/sms
fn sms_api_status(status: &str) -> &'static str {
    match status {
        "1" => "throttled",
        "2" => "missing parameters",
        "3" => "invalid parameters",
        "4" => "invalid credentials",
        "5" => "internal error",
        "6" => "invalid message",
        "7" => "number barred",
        "8" => "partner account barred",
        "9" => "partner quota violation",
        "10" => "too many existing binds",
        "11" => "account not enabled for HTTP",
        "12" => "message too long",
        "14" => "invalid signature",
        "15" => "invalid sender address",
        _ => "see Vonage's SMS API error codes",
    }
}

/// The SMS API: `POST /sms/json`, a form with `api_key`, `api_secret`,
/// `from`, `to` (digits), `text` and our `client-ref`. It answers 200 even
/// for a refused message: each `messages[]` entry has a `status`, "0" for
/// success with its `message-id`. https://developer.vonage.com/en/api/sms
async fn send_sms_api(config: &VonageSendConfig, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
    let Some(from) = message.from else {
        return Err(SendError::refused("no sender: the reply names no clinic number to send from"));
    };
    let url = format!("{}/sms/json", send::base_url(config.base_url.as_deref(), DEFAULT_SMS_BASE_URL));
    let form = [
        ("api_key", config.api_key.as_str()),
        ("api_secret", config.api_secret.expose()),
        ("from", digits(from)),
        ("to", digits(message.to)),
        ("text", message.body),
        ("client-ref", message.reference),
    ];
    let answer = send::execute(send::client().post(url).form(&form))
        .await?
        .accepted(|_| None, |a| format!("Vonage answered {}", a.status))?;
    let body: Value = answer.json().ok_or_else(|| SendError::refused("Vonage answered a body that is not JSON"))?;
    let first =
        body.get("messages").and_then(|m| m.get(0)).ok_or_else(|| SendError::refused("Vonage answered no messages"))?;
    let status = match first.get("status") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(SendError::refused("Vonage answered a message without a status")),
    };
    let reason = format!("Vonage SMS API status {status} ({})", sms_api_status(&status));
    match status.as_str() {
        "0" => Ok(Sent { message_id: first.get("message-id").and_then(Value::as_str).map(str::to_owned) }),
        s if SMS_API_TEMPORARY_STATUSES.contains(&s) => Err(SendError::Temporary { reason, retry_after: None }),
        s if SMS_API_OPT_OUT_STATUSES.contains(&s) => Err(SendError::OptedOut { code: status.clone(), reason }),
        _ => Err(SendError::Refused { reason }),
    }
}

/// The opt-out code in a Messages API error answer.
fn messages_opted_out(answer: &HttpAnswer) -> Option<String> {
    let code = messages_error_code(&answer.json::<Value>()?)?;
    MESSAGES_API_OPT_OUT_CODES.contains(&code.as_str()).then_some(code)
}

/// The Messages API: `POST /v1/messages`, HTTP Basic with the API key and
/// secret, JSON `message_type` "text", `channel` "sms", `to`, `from`
/// (digits), `text` and our `client_ref`; 202 with `message_uuid`. Errors are
/// RFC 7807 bodies: a refusal names their `type` and `title`, never `detail`
/// (which can quote the request). https://developer.vonage.com/en/api/messages
async fn send_messages_api(config: &VonageSendConfig, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
    let Some(from) = message.from else {
        return Err(SendError::refused("no sender: the reply names no clinic number to send from"));
    };
    let url = format!("{}/v1/messages", send::base_url(config.base_url.as_deref(), DEFAULT_MESSAGES_BASE_URL));
    let body = serde_json::json!({
        "message_type": "text",
        "channel": "sms",
        "to": digits(message.to),
        "from": digits(from),
        "text": message.body,
        "client_ref": message.reference,
    });
    let request = send::client()
        .post(url)
        .basic_auth(&config.api_key, Some(config.api_secret.expose()))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    let refusal = |a: &send::HttpAnswer| {
        let problem = a.json::<Value>();
        let field = |name: &str| problem.as_ref().and_then(|p| p.get(name)).and_then(Value::as_str).unwrap_or("");
        format!("Vonage answered {}: {} {}", a.status, field("type"), field("title")).trim_end().to_owned()
    };
    let answer = send::execute(request).await?.accepted(messages_opted_out, refusal)?;
    let id = answer.json::<Value>().and_then(|v| v.get("message_uuid")?.as_str().map(str::to_owned));
    Ok(Sent { message_id: id })
}

/// Sends one message through the configured API.
pub async fn send_message(config: &VonageSendConfig, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
    match config.api {
        VonageSendApi::Sms => send_sms_api(config, message).await,
        VonageSendApi::Messages => send_messages_api(config, message).await,
    }
}

pub struct Secrets<'a> {
    pub method: VonageSignatureMethod,
    pub signature_secrets: &'a [Secret],
    pub jwt_secrets: &'a [Secret],
    pub expected: Expected<'a>,
}

pub fn receive(secrets: &Secrets<'_>, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
    if let Some(token) = request.header("authorization").and_then(bearer) {
        verify_jwt(secrets.jwt_secrets, &secrets.expected, token, request.body, request.now)?;
        return Ok(parse_messages_api(request.body)?);
    }
    let params = params(request)?;
    verify_sig(secrets.method, secrets.signature_secrets, &params, request.now)?;
    Ok(parse_sms_api(&params)?)
}

/// Vonage, built from `[providers.vonage]`.
pub struct Vonage {
    config: VonageConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VonageSignatureMethod {
    Md5hash,
    Md5,
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageConfig {
    /// Signature secrets for the SMS API's `sig` parameter.
    #[serde(default)]
    pub signature_secrets: Vec<Secret>,
    #[serde(default)]
    pub signature_method: VonageSignatureMethod,
    /// Signature secrets for the Messages API's signed JWTs.
    #[serde(default)]
    pub jwt_secrets: Vec<Secret>,
    /// When set, a Messages API JWT must carry this `api_key` claim.
    #[serde(default)]
    pub api_key: Option<String>,
    /// When set, a Messages API JWT must carry one of these
    /// `application_id` claims.
    #[serde(default)]
    pub application_ids: Vec<String>,
    /// The SMS API or the Messages API, for replies (which Vonage cannot
    /// take inline).
    #[serde(default)]
    pub send: Option<VonageSendConfig>,
}

impl Configured for Vonage {
    type Config = VonageConfig;

    fn from_config(config: &VonageConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        if config.signature_secrets.is_empty() && config.jwt_secrets.is_empty() {
            return Err(bad("", "set signature_secrets, jwt_secrets or both"));
        }
        if !config.signature_secrets.is_empty() {
            secrets(&config.signature_secrets, "signature_secrets")?;
        }
        if !config.jwt_secrets.is_empty() {
            secrets(&config.jwt_secrets, "jwt_secrets")?;
        }
        if config.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(bad("api_key", "must not be empty when set"));
        }
        if let Some(j) = config.application_ids.iter().position(|a| a.trim().is_empty()) {
            return Err(bad(format!("application_ids[{j}]"), "must not be empty"));
        }
        if let Some(send) = &config.send {
            check_send(send)?;
        }
        Ok(Vonage { config: config.clone() })
    }
}

#[async_trait::async_trait]
impl Provider for Vonage {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        let c = &self.config;
        let secrets = Secrets {
            method: c.signature_method,
            signature_secrets: &c.signature_secrets,
            jwt_secrets: &c.jwt_secrets,
            expected: Expected { api_key: c.api_key.as_deref(), application_ids: &c.application_ids },
        };
        receive(&secrets, request)
    }

    fn sends(&self) -> bool {
        self.config.send.is_some()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match &self.config.send {
            Some(config) => send_message(config, message).await,
            None => Err(SendError::NotConfigured("providers.vonage.send is not set")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vonage() -> Value {
        let all: Value = serde_json::from_str(include_str!("../../tests/vectors/signatures/vectors.json")).unwrap();
        all["vonage"].clone()
    }

    fn method(name: &str) -> VonageSignatureMethod {
        serde_json::from_value(Value::String(name.into())).unwrap()
    }

    fn params_of(v: &Value) -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect()
    }

    fn at(seconds: &str) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds.parse().unwrap()).unwrap()
    }

    #[test]
    fn every_sig_vector_signs_and_verifies() {
        let vectors = vonage()["sms_sig"]["vectors"].as_array().unwrap().clone();
        assert!(vectors.len() >= 20);
        for v in vectors {
            let (m, secret) = (method(v["method"].as_str().unwrap()), v["signature_secret"].as_str().unwrap());
            let mut params = params_of(&v["params"]);
            assert_eq!(sign(m, secret, &params), v["expected_sig"].as_str().unwrap().to_ascii_lowercase(), "{v}");
            params.retain(|(k, _)| k != "sig");
            params.push(("sig".into(), v["expected_sig"].as_str().unwrap().into()));
            let now = at(&params.iter().find(|(k, _)| k == "timestamp").unwrap().1);
            assert_eq!(verify_sig(m, &[Secret::new(secret)], &params, now), Ok(()), "{v}");
        }
    }

    #[test]
    fn tampered_stale_and_unsigned_parameters_are_refused() {
        let v = &vonage()["sms_sig"]["vectors"][3];
        let mut params = params_of(&v["params"]);
        params.push(("sig".into(), v["expected_sig"].as_str().unwrap().into()));
        let secrets = [Secret::new(v["signature_secret"].as_str().unwrap())];
        let now = at("1461605396");
        let m = VonageSignatureMethod::Sha256;
        let mut tampered = params.clone();
        tampered[0].1 = "9".into();
        assert_eq!(verify_sig(m, &secrets, &tampered, now), Err(SignatureError::InvalidSignature));
        assert_eq!(verify_sig(m, &secrets, &params, at("1461605997")), Ok(()), "a retry ten minutes on still counts");
        assert_eq!(verify_sig(m, &secrets, &params, at("1461695397")), Err(SignatureError::TimestampTooOld));
        assert_eq!(verify_sig(m, &secrets, &params, at("1461604795")), Err(SignatureError::FutureTimestamp));
        assert_eq!(verify_sig(m, &[Secret::new("nope")], &params, now), Err(SignatureError::InvalidSignature));
        assert_eq!(
            verify_sig(VonageSignatureMethod::Md5hash, &secrets, &params, now),
            Err(SignatureError::InvalidSignature)
        );
        params.pop();
        assert_eq!(verify_sig(m, &secrets, &params, now), Err(SignatureError::MissingHeader("sig")));
    }

    #[test]
    fn the_published_jwt_verifies_with_its_secret_only() {
        let v = &vonage()["signed_webhook_jwt"]["vectors"][0];
        let token = v["token"].as_str().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_697_634_680 + 30).unwrap();
        let secret = [Secret::new(v["signature_secret"].as_str().unwrap())];
        let any = Expected::default();
        // The published token has no payload_hash: it verifies for an empty
        // body only; with a body it would leave the body unbound.
        assert_eq!(verify_jwt(&secret, &any, token, b"", now), Ok(()));
        assert_eq!(
            verify_jwt(&secret, &any, token, b"{}", now),
            Err(SignatureError::InvalidToken("no payload_hash claim to bind the body"))
        );
        assert_eq!(verify_jwt(&[Secret::new("asdf")], &any, token, b"", now), Err(SignatureError::InvalidSignature));
        let later = OffsetDateTime::from_unix_timestamp(1_697_634_680 + 301).unwrap();
        assert_eq!(verify_jwt(&secret, &any, token, b"", later), Err(SignatureError::TimestampTooOld));
    }

    fn hs256(secret: &str, header: &str, claims: &Value) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn the_payload_hash_binds_the_body_and_alg_none_is_refused() {
        let body = br#"{"channel":"sms","text":"STOP"}"#;
        let claims = serde_json::json!({ "iat": 1_700_000_000, "payload_hash": hex::encode(Sha256::digest(body)) });
        let token = hs256("s3cret", r#"{"alg":"HS256","typ":"JWT"}"#, &claims);
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let secrets = [Secret::new("s3cret")];
        let any = Expected::default();
        assert_eq!(verify_jwt(&secrets, &any, &token, body, now), Ok(()));
        assert_eq!(
            verify_jwt(&secrets, &any, &token, br#"{"channel":"sms","text":"START"}"#, now),
            Err(SignatureError::BodyHashMismatch)
        );
        let none = format!(
            "{}.",
            token.rsplit_once('.').unwrap().0.replacen(
                &base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    r#"{"alg":"HS256","typ":"JWT"}"#
                ),
                &base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    r#"{"alg":"none","typ":"JWT"}"#
                ),
                1,
            )
        );
        assert_eq!(verify_jwt(&secrets, &any, &none, body, now), Err(SignatureError::InvalidSignature));
        let hs512 = {
            use base64::Engine;
            let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let input = format!("{}.{}", enc.encode(r#"{"alg":"HS512"}"#), enc.encode(claims.to_string()));
            let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(b"s3cret").unwrap();
            mac.update(input.as_bytes());
            format!("{input}.{}", enc.encode(mac.finalize().into_bytes()))
        };
        assert_eq!(verify_jwt(&secrets, &any, &hs512, body, now), Err(SignatureError::InvalidSignature));
    }

    #[test]
    fn configured_api_key_and_application_ids_must_match_the_claims() {
        let body = br#"{"channel":"sms","text":"STOP"}"#;
        let hash = hex::encode(Sha256::digest(body));
        let claims = serde_json::json!({ "iat": 1_700_000_000, "payload_hash": hash, "api_key": "abcd1234",
            "application_id": "app-1" });
        let token = hs256("s3cret", r#"{"alg":"HS256","typ":"JWT"}"#, &claims);
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let secrets = [Secret::new("s3cret")];
        let apps = ["app-0".to_owned(), "app-1".to_owned()];
        let good = Expected { api_key: Some("abcd1234"), application_ids: &apps };
        assert_eq!(verify_jwt(&secrets, &good, &token, body, now), Ok(()));
        let other_key = Expected { api_key: Some("ffff0000"), ..good };
        assert!(matches!(verify_jwt(&secrets, &other_key, &token, body, now), Err(SignatureError::InvalidToken(_))));
        let other_apps = ["app-2".to_owned()];
        let other_app = Expected { application_ids: &other_apps, ..good };
        assert!(matches!(verify_jwt(&secrets, &other_app, &token, body, now), Err(SignatureError::InvalidToken(_))));
        let bare = hs256(
            "s3cret",
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &serde_json::json!({ "iat": 1_700_000_000, "payload_hash": hash }),
        );
        assert!(matches!(verify_jwt(&secrets, &good, &bare, body, now), Err(SignatureError::InvalidToken(_))));
    }

    #[test]
    fn a_message_timestamp_outside_1970_to_9999_is_a_payload_error() {
        let mut params = params_of(&vonage()["sms_sig"]["vectors"][9]["params"]);
        for bad in ["-0001-01-01 00:00:00", "0000-06-01 12:00:00", "1969-12-31 23:59:59"] {
            params.retain(|(k, _)| k != "message-timestamp");
            params.push(("message-timestamp".into(), bad.into()));
            assert!(parse_sms_api(&params).is_err(), "{bad}");
        }
        let messages = br#"{"channel":"sms","message_uuid":"u","to":"14155550100","from":"14158675309","timestamp":"0000-01-01T00:00:00+01:00","text":"STOP"}"#;
        assert!(parse_messages_api(messages).is_err());
    }

    #[test]
    fn both_inbound_shapes_are_parsed_and_receipts_ignored() {
        let sms = params_of(&vonage()["sms_sig"]["vectors"][9]["params"]);
        let Received::Message(m) = parse_sms_api(&sms).unwrap() else { panic!() };
        assert_eq!((m.from.as_e164(), m.message_id.as_str()), ("+14843472194", "020000001B0FE827"));
        assert_eq!(m.occurred_at, Some(time::macros::datetime!(2013-11-21 15:27:30 UTC)));
        let messages = br#"{"channel":"sms","message_uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","to":"14155550100","from":"14158675309","timestamp":"2026-02-03T12:14:25Z","text":"STOP","message_type":"text"}"#;
        let Received::Message(m) = parse_messages_api(messages).unwrap() else { panic!() };
        assert_eq!(m.text, "STOP");
        assert!(matches!(
            parse_messages_api(br#"{"message_uuid":"x","status":"delivered"}"#).unwrap(),
            Received::Ignored(_)
        ));
        let receipt = vec![("messageId".to_owned(), "x".to_owned()), ("status".to_owned(), "delivered".to_owned())];
        assert!(matches!(parse_sms_api(&receipt).unwrap(), Received::Ignored(_)));
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<Vonage>(r#"jwt_secrets = ["j"]"#).is_ok());
        for (section, field) in [
            (r#"signature_method = "sha1""#, ""),
            (r#"jwt_secrets = [""]"#, "jwt_secrets[0]"),
            (r#"signature_secrets = ["s"]\napi_key = " ""#, "api_key"),
            (r#"jwt_secrets = ["j"]\napplication_ids = ["a", ""]"#, "application_ids[1]"),
        ] {
            let error = crate::providers::tests::build::<Vonage>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }
    use crate::domain::PhoneNumber;
    use crate::providers::send::fake::{FakeApi, Reply};

    fn sender(base_url: &str, api: &str) -> Vonage {
        crate::providers::tests::build::<Vonage>(&format!(
            "signature_secrets = [\"sig-secret\"]\njwt_secrets = [\"jwt-secret\"]\n[send]\napi_key = \"abcd1234\"\napi_secret = \"api-secret\"\napi = \"{api}\"\nbase_url = \"{base_url}\"\n"
        ))
        .unwrap()
    }

    fn numbers() -> (PhoneNumber, PhoneNumber) {
        (PhoneNumber::parse("+14158675309").unwrap(), PhoneNumber::parse("+14155550100").unwrap())
    }

    fn sms_answer(entry: Value) -> Reply {
        Reply::json(200, serde_json::json!({"message-count": "1", "messages": [entry]}))
    }

    #[tokio::test]
    async fn an_sms_api_reply_is_posted_as_vonage_documents_it_and_its_id_read() {
        let fake = FakeApi::start(vec![sms_answer(serde_json::json!({"to": "14158675309",
            "message-id": "0A0000000123ABCD1", "status": "0", "remaining-balance": "3.14", "message-price": "0.03",
            "network": "310260"}))])
        .await;
        let vonage = sender(&fake.base_url, "sms");
        assert!(vonage.sends());
        let (to, from) = numbers();
        let message =
            OutboundMessage { to: &to, from: Some(&from), body: "Lakeside: you are unsubscribed.", reference: "ev-1" };
        assert_eq!(vonage.send(&message).await, Ok(Sent { message_id: Some("0A0000000123ABCD1".into()) }));
        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.uri, "/sms/json");
        assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
        assert_eq!(request.header("authorization"), None);
        let expected: Vec<(String, String)> = [
            ("api_key", "abcd1234"),
            ("api_secret", "api-secret"),
            ("from", "14155550100"),
            ("to", "14158675309"),
            ("text", "Lakeside: you are unsubscribed."),
            ("client-ref", "ev-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(request.form(), expected);
        let raw = String::from_utf8_lossy(&request.body).to_string();
        assert!(!raw.contains("sig-secret") && !raw.contains("jwt-secret"), "no webhook secret sent");
    }

    #[tokio::test]
    async fn sms_api_statuses_in_a_200_are_read_as_opted_out_refused_or_temporary() {
        let fake = FakeApi::start(vec![
            sms_answer(serde_json::json!({"status": "7", "error-text": "Number barred: 14158675309"})),
            sms_answer(serde_json::json!({"status": "3", "error-text": "Invalid to address 14158675309"})),
            sms_answer(serde_json::json!({"status": "1", "error-text": "Throughput Rate Exceeded"})),
            sms_answer(serde_json::json!({"status": "5", "error-text": "Internal error"})),
            Reply::json(429, serde_json::json!({})).with_header("retry-after", "4"),
            Reply::json(500, serde_json::json!({})),
        ])
        .await;
        let vonage = sender(&fake.base_url, "sms");
        let (to, from) = numbers();
        let message = OutboundMessage { to: &to, from: Some(&from), body: "x", reference: "ev-2" };
        assert!(matches!(vonage.send(&message).await, Err(SendError::OptedOut { code, .. }) if code == "7"));
        let Err(SendError::Refused { reason }) = vonage.send(&message).await else { panic!("not refused") };
        assert!(reason.contains("status 3") && !reason.contains("8675309"), "{reason}");
        assert!(matches!(vonage.send(&message).await, Err(SendError::Temporary { .. })));
        assert!(matches!(vonage.send(&message).await, Err(SendError::Temporary { .. })));
        assert!(matches!(
            vonage.send(&message).await,
            Err(SendError::Temporary { retry_after: Some(d), .. }) if d == std::time::Duration::from_secs(4)
        ));
        assert!(matches!(vonage.send(&message).await, Err(SendError::Temporary { .. })));
        let no_sender = OutboundMessage { from: None, ..message };
        assert!(matches!(vonage.send(&no_sender).await, Err(SendError::Refused { .. })));
        assert_eq!(fake.seen().len(), 6, "nothing sent without a sender");
    }

    #[tokio::test]
    async fn a_messages_api_reply_is_posted_as_vonage_documents_it_and_its_errors_read() {
        let fake = FakeApi::start(vec![
            Reply::json(202, serde_json::json!({"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"})),
            Reply::json(
                422,
                serde_json::json!({"type": "https://developer.vonage.com/api-errors/messages#1050",
                    "title": "Number barred", "detail": "The number 14158675309 is barred", "instance": "i-1"}),
            ),
            Reply::json(
                422,
                serde_json::json!({"type": "https://developer.vonage.com/api-errors/messages#1120",
                    "title": "Invalid sender", "detail": "The `from` parameter 14155550100 is invalid.", "instance": "i-2"}),
            ),
            Reply::json(
                429,
                serde_json::json!({"type": "https://developer.nexmo.com/api-errors/messages-olympus#1010",
                    "title": "Rate Limit Hit", "detail": "Please wait, then retry your request", "instance": "i-3"}),
            )
            .with_header("retry-after", "2"),
            Reply::json(500, serde_json::json!({"type": "https://developer.vonage.com/api-errors#internal-error"})),
        ])
        .await;
        let vonage = sender(&fake.base_url, "messages");
        let (to, from) = numbers();
        let message = OutboundMessage { to: &to, from: Some(&from), body: "Reply HELP for help.", reference: "ev-3" };
        assert_eq!(
            vonage.send(&message).await,
            Ok(Sent { message_id: Some("aaaaaaaa-bbbb-cccc-dddd-0123456789ab".into()) })
        );
        let request = &fake.seen()[0];
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.uri, "/v1/messages");
        let basic = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "abcd1234:api-secret")
        );
        assert_eq!(request.header("authorization"), Some(basic.as_str()));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.json(),
            serde_json::json!({"message_type": "text", "channel": "sms", "to": "14158675309", "from": "14155550100",
                "text": "Reply HELP for help.", "client_ref": "ev-3"})
        );
        assert!(matches!(vonage.send(&message).await, Err(SendError::OptedOut { code, .. }) if code == "1050"));
        let Err(SendError::Refused { reason }) = vonage.send(&message).await else { panic!("not refused") };
        assert!(
            reason.contains("#1120") && reason.contains("Invalid sender") && !reason.contains("5550100"),
            "{reason}"
        );
        assert!(matches!(
            vonage.send(&message).await,
            Err(SendError::Temporary { retry_after: Some(d), .. }) if d == std::time::Duration::from_secs(2)
        ));
        assert!(matches!(vonage.send(&message).await, Err(SendError::Temporary { .. })));
    }

    fn signed_receipt(params: &[(&str, &str)], secret: &str) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        params.push(("timestamp".into(), "1700000000".into()));
        let sig = sign(VonageSignatureMethod::Sha256, secret, &params);
        params.push(("sig".into(), sig));
        params
    }

    async fn receive_form(vonage: &Vonage, params: &[(String, String)]) -> Result<Received, Rejection> {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
        let request = WebhookRequest {
            method: "POST",
            url: "https://consent.example/webhooks/vonage",
            headers: &headers,
            body: body.as_bytes(),
            now: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        };
        vonage.receive(&request).await
    }

    const OPT_OUT_RECEIPT: &[(&str, &str)] = &[
        ("msisdn", "14158675309"),
        ("to", "14155550100"),
        ("network-code", "310260"),
        ("messageId", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"),
        ("price", "0.00000000"),
        ("status", "failed"),
        ("scts", "2001011400"),
        ("err-code", "9"),
        ("api-key", "abcd1234"),
        ("message-timestamp", "2026-01-01 12:00:00"),
    ];

    #[tokio::test]
    async fn a_signed_delivery_receipt_with_err_code_9_is_a_provider_opt_out() {
        let vonage = sender("https://rest.nexmo.com", "sms");
        let Received::ProviderOptOut(block) =
            receive_form(&vonage, &signed_receipt(OPT_OUT_RECEIPT, "sig-secret")).await.unwrap()
        else {
            panic!("not an opt-out")
        };
        assert_eq!(block.provider, "vonage");
        assert_eq!(block.message_id, "aaaaaaaa-bbbb-cccc-dddd-0123456789ab");
        assert_eq!(block.number.as_e164(), "+14158675309");
        assert_eq!(block.clinic.as_ref().map(|c| c.as_e164()), Some("+14155550100"));
        assert_eq!(block.code, "9");
        assert_eq!(block.occurred_at, Some(time::macros::datetime!(2026-01-01 12:00 UTC)));
        let named_sender: Vec<(&str, &str)> =
            OPT_OUT_RECEIPT.iter().map(|&(k, v)| if k == "to" { (k, "AcmeInc") } else { (k, v) }).collect();
        let Received::ProviderOptOut(block) =
            receive_form(&vonage, &signed_receipt(&named_sender, "sig-secret")).await.unwrap()
        else {
            panic!("not an opt-out")
        };
        assert!(block.clinic.is_none(), "a sender name is no clinic number");
    }

    #[tokio::test]
    async fn other_receipts_are_ignored_and_a_bad_signature_refused() {
        let vonage = sender("https://rest.nexmo.com", "sms");
        let delivered: Vec<(&str, &str)> = OPT_OUT_RECEIPT
            .iter()
            .map(|&(k, v)| match k {
                "status" => (k, "delivered"),
                "err-code" => (k, "0"),
                _ => (k, v),
            })
            .collect();
        assert!(matches!(
            receive_form(&vonage, &signed_receipt(&delivered, "sig-secret")).await.unwrap(),
            Received::Ignored(_)
        ));
        let spam: Vec<(&str, &str)> =
            OPT_OUT_RECEIPT.iter().map(|&(k, v)| if k == "err-code" { (k, "6") } else { (k, v) }).collect();
        assert!(matches!(
            receive_form(&vonage, &signed_receipt(&spam, "sig-secret")).await.unwrap(),
            Received::Ignored(_)
        ));
        assert_eq!(
            receive_form(&vonage, &signed_receipt(OPT_OUT_RECEIPT, "not-the-secret")).await.unwrap_err(),
            Rejection::Signature(SignatureError::InvalidSignature)
        );
        let mut swapped = signed_receipt(OPT_OUT_RECEIPT, "sig-secret");
        swapped[0].1 = "14158675310".into();
        assert_eq!(
            receive_form(&vonage, &swapped).await.unwrap_err(),
            Rejection::Signature(SignatureError::InvalidSignature),
            "a signed receipt's number cannot be swapped"
        );
    }

    async fn receive_status(vonage: &Vonage, body: &Value, secret: &str) -> Result<Received, Rejection> {
        let body = body.to_string();
        let claims = serde_json::json!({ "iat": 1_700_000_000, "payload_hash": sha256_hex(&body) });
        let token = hs256(secret, r#"{"alg":"HS256","typ":"JWT"}"#, &claims);
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let request = WebhookRequest {
            method: "POST",
            url: "https://consent.example/webhooks/vonage",
            headers: &headers,
            body: body.as_bytes(),
            now: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        };
        vonage.receive(&request).await
    }

    fn rejected_status(code: &str) -> Value {
        serde_json::json!({
            "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
            "to": "14158675309",
            "from": "14155550100",
            "timestamp": "2026-01-01T12:00:00Z",
            "status": "rejected",
            "channel": "sms",
            "error": {"type": format!("https://developer.vonage.com/api-errors/messages#{code}"), "title": code,
                "detail": "x", "instance": "i"}
        })
    }

    #[tokio::test]
    async fn a_signed_messages_status_with_a_barred_number_is_a_provider_opt_out() {
        let vonage = sender("https://api.nexmo.com", "messages");
        let Received::ProviderOptOut(block) =
            receive_status(&vonage, &rejected_status("1050"), "jwt-secret").await.unwrap()
        else {
            panic!("not an opt-out")
        };
        assert_eq!(block.message_id, "aaaaaaaa-bbbb-cccc-dddd-0123456789ab");
        assert_eq!(block.number.as_e164(), "+14158675309");
        assert_eq!(block.clinic.as_ref().map(|c| c.as_e164()), Some("+14155550100"));
        assert_eq!(block.code, "1050");
        assert_eq!(block.occurred_at, Some(time::macros::datetime!(2026-01-01 12:00 UTC)));
        let mut nested = rejected_status("1050");
        nested["error"] = serde_json::json!({"error": nested["error"].clone()});
        assert!(matches!(receive_status(&vonage, &nested, "jwt-secret").await.unwrap(), Received::ProviderOptOut(_)));
        let throttled = rejected_status("1000");
        assert!(matches!(receive_status(&vonage, &throttled, "jwt-secret").await.unwrap(), Received::Ignored(_)));
        let mut delivered = rejected_status("1050");
        delivered["status"] = "delivered".into();
        assert!(matches!(receive_status(&vonage, &delivered, "jwt-secret").await.unwrap(), Received::Ignored(_)));
        assert_eq!(
            receive_status(&vonage, &rejected_status("1050"), "not-the-secret").await.unwrap_err(),
            Rejection::Signature(SignatureError::InvalidSignature)
        );
    }

    #[tokio::test]
    async fn a_bad_send_table_is_named_by_its_field_and_none_sends_nothing() {
        for (send, field) in [
            ("api_key = \"\"\napi_secret = \"s\"", "send.api_key"),
            ("api_key = \"k\"\napi_secret = \"\"", "send.api_secret"),
            ("api_key = \"k\"\napi_secret = \"s\"\nbase_url = \"http://rest.nexmo.com\"", "send.base_url"),
        ] {
            let section = format!("jwt_secrets = [\"j\"]\n[send]\n{send}");
            let error = crate::providers::tests::build::<Vonage>(&section).err().expect(send);
            assert_eq!(error.field, field, "{send}: {error}");
        }
        assert!(toml::from_str::<VonageConfig>(
            "jwt_secrets = [\"j\"]\n[send]\napi_key = \"k\"\napi_secret = \"s\"\napi = \"voice\""
        )
        .is_err());
        let vonage = crate::providers::tests::build::<Vonage>(r#"jwt_secrets = ["j"]"#).unwrap();
        assert!(!vonage.sends());
        let (to, from) = numbers();
        let message = OutboundMessage { to: &to, from: Some(&from), body: "x", reference: "ev" };
        assert!(matches!(vonage.send(&message).await, Err(SendError::NotConfigured(_))));
    }
}
