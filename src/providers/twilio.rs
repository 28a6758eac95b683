//! Twilio: `X-Twilio-Signature` is `base64(HMAC-SHA1(auth_token, URL + params))`
//! over the URL exactly as Twilio requested it, with both port variants
//! accepted; JSON bodies are covered by a `bodySHA256` query parameter. No
//! timestamp: replays are made harmless by the message id. Replies are TwiML.
//!
//! With a `send` table it also sends through the Messages API (for replies
//! that cannot go inline), and a status callback carrying error 21610
//! (the recipient replied STOP to our number) becomes a provider opt-out.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::send::{self, HttpAnswer};
use super::{
    bad, form_fields, param, phone, required, same_bytes, secrets, sha256_hex, xml_escape, Answer, Configured,
    InboundMessage, OutboundMessage, Outcome, Outside, PayloadError, Profile, Provider, ProviderBlock,
    ProviderConfigError, Received, Rejection, ReplyStyle, Secret, SendError, Sent, SignatureError, WebhookRequest,
};

pub const SIGNATURE_HEADER: &str = "x-twilio-signature";
pub const NAME: &str = "twilio";

/// Twilio Advanced Opt-Out's default keywords, which it answers itself.
pub const REPLY_STYLE: ReplyStyle = ReplyStyle {
    inline: true,
    auto_reply_keywords: &[
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
        "START",
        "YES",
        "UNSTOP",
        "HELP",
        "INFO",
    ],
};
const PROFILE: Profile = Profile { name: NAME, methods: super::POST, reply_style: REPLY_STYLE };

/// Twilio's REST API.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Twilio's error codes that mean the recipient will not take messages from
/// us: 21610, "Attempt to send to unsubscribed recipient" (the number replied
/// STOP to this sender), in a send's error answer and in a status callback's
/// `ErrorCode`. https://www.twilio.com/docs/api/errors/21610
pub const OPT_OUT_CODES: &[&str] = &["21610"];

/// The signature Twilio would send for `url` and form `params`.
pub fn sign<K: AsRef<str>, V: AsRef<str>>(auth_token: &str, url: &str, params: &[(K, V)]) -> String {
    STANDARD.encode(mac(&keyed(auth_token), url, &signed_order(params)))
}

/// A token's HMAC, its key blocks hashed once: each request clones it.
fn keyed(auth_token: &str) -> Hmac<Sha1> {
    <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("any key length")
}

/// The pairs in the order Twilio signs them: keys by byte order, a repeated
/// key's values sorted, duplicates once.
fn signed_order<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Vec<SignedPair<'_>> {
    let mut sorted: Vec<SignedPair> = params
        .iter()
        .map(|(key, value)| SignedPair { prefix: prefix(key.as_ref()), key: key.as_ref(), value: value.as_ref() })
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// A pair ordered by its key's first 8 bytes first: most comparisons are one
/// integer comparison instead of a call to `memcmp`, in the same order as
/// comparing (key, value). The prefix is a function of the key, and a short
/// key is padded with zero bytes: where it ends it is below any longer key's
/// byte, or equal to a zero byte and then the keys themselves decide.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct SignedPair<'a> {
    prefix: u64,
    key: &'a str,
    value: &'a str,
}

fn prefix(key: &str) -> u64 {
    let mut bytes = [0; 8];
    let n = key.len().min(8);
    bytes[..n].copy_from_slice(&key.as_bytes()[..n]);
    u64::from_be_bytes(bytes)
}

fn mac(key: &Hmac<Sha1>, url: &str, sorted: &[SignedPair]) -> [u8; 20] {
    let mut mac = key.clone();
    mac.update(url.as_bytes());
    for pair in sorted {
        mac.update(pair.key.as_bytes());
        mac.update(pair.value.as_bytes());
    }
    mac.finalize().into_bytes().into()
}

/// One of the two URLs validators accept: with any port removed, or with the
/// port kept (or the scheme's default added); `url` itself when it already
/// has that form.
fn url_variant(url: &str, with_port: bool) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let (scheme, after) = (&url[..scheme_end], &url[scheme_end + 3..]);
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let port_start = if hostport.starts_with('[') { hostport.find("]:").map(|i| i + 1) } else { hostport.rfind(':') };
    match (port_start, with_port) {
        (Some(_), true) | (None, false) => Cow::Borrowed(url),
        (Some(i), false) => Cow::Owned(format!("{scheme}://{userinfo}{}{rest}", &hostport[..i])),
        (None, true) => {
            let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
            Cow::Owned(format!("{scheme}://{userinfo}{hostport}:{default}{rest}"))
        }
    }
}

/// Verifies a request against every configured token and both URL variants.
/// `params` are the form-decoded body; for a JSON body pass none, and the
/// `bodySHA256` query parameter is checked against `body`.
pub fn verify<K: AsRef<str>, V: AsRef<str>>(
    tokens: &[Secret],
    url: &str,
    params: &[(K, V)],
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let keys: Vec<_> = tokens.iter().map(|token| keyed(token.expose())).collect();
    verify_keyed(&keys, url, params, body, signature)
}

/// [`verify`] with each token's HMAC already keyed.
fn verify_keyed<K: AsRef<str>, V: AsRef<str>>(
    keys: &[Hmac<Sha1>],
    url: &str,
    params: &[(K, V)],
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::MissingHeader("X-Twilio-Signature"))?;
    let provided =
        STANDARD.decode(signature.trim()).map_err(|_| SignatureError::MalformedHeader("X-Twilio-Signature"))?;
    let body_hash = query_param(url, "bodySHA256");
    let signed = if body_hash.is_some() { Vec::new() } else { signed_order(params) };
    // The port-less form first, the other built only if that one fails.
    let matched = [false, true].into_iter().any(|with_port| {
        let candidate = url_variant(url, with_port);
        keys.iter().any(|key| same_bytes(&mac(key, &candidate, &signed), &provided))
    });
    if !matched {
        return Err(SignatureError::InvalidSignature);
    }
    if let Some(expected) = body_hash {
        let actual = sha256_hex(body);
        if !same_bytes(actual.as_bytes(), expected.to_ascii_lowercase().as_bytes()) {
            return Err(SignatureError::BodyHashMismatch);
        }
    }
    Ok(())
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    param(&form_fields(query.as_bytes()), name).map(str::to_owned)
}

/// Reads Twilio's incoming-message webhook. A status callback (a
/// `MessageStatus` and no `Body`) is a provider opt-out when it reports a
/// failed or undelivered message with an opt-out `ErrorCode`, and is
/// otherwise acknowledged and ignored.
pub fn parse<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Result<Received, PayloadError> {
    let get = |name: &str| param(params, name);
    if get("Body").is_none() && get("MessageStatus").is_some() {
        return status_callback(params);
    }
    let message_id = required(get("MessageSid").or(get("SmsMessageSid")).or(get("SmsSid")), "MessageSid")?;
    let from = phone(required(get("From"), "From")?, "From")?;
    let to = phone(required(get("To"), "To")?, "To")?;
    let text = get("Body").ok_or_else(|| PayloadError("missing field Body".into()))?;
    Ok(Received::Message(InboundMessage {
        provider: NAME,
        message_id: message_id.to_owned(),
        from,
        to: Some(to),
        text: text.to_owned(),
        occurred_at: None,
        replay_key: None,
    }))
}

/// A status callback: our message `MessageSid` from `From` (our number, or a
/// sender id) to `To` (the patient). Documented at
/// https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
fn status_callback<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> Result<Received, PayloadError> {
    let get = |name: &str| param(params, name);
    let failed = matches!(get("MessageStatus"), Some("failed" | "undelivered"));
    let Some(code) = get("ErrorCode").filter(|c| failed && OPT_OUT_CODES.contains(&c.trim())) else {
        return Ok(Received::Ignored("status callback"));
    };
    let message_id = required(get("MessageSid").or(get("SmsSid")), "MessageSid")?;
    Ok(Received::ProviderOptOut(ProviderBlock {
        provider: NAME.to_owned(),
        message_id: message_id.to_owned(),
        number: phone(required(get("To"), "To")?, "To")?,
        // A Messaging Service may send from a short code or a sender id: no
        // number, so the opt-out then counts for every program.
        clinic: get("From").and_then(|from| crate::domain::PhoneNumber::parse(from).ok()),
        code: code.trim().to_owned(),
        occurred_at: None,
    }))
}

/// The opt-out code in a Messages API error answer
/// (`{"code": 21610, "message": ..., "more_info": ..., "status": 400}`).
fn opted_out(answer: &HttpAnswer) -> Option<String> {
    let code = answer.json::<serde_json::Value>()?.get("code")?.as_i64()?.to_string();
    OPT_OUT_CODES.contains(&code.as_str()).then_some(code)
}

/// Twilio's `message` can quote the numbers ("The 'To' number +1... is not a
/// valid phone number"): a refusal names only the status and Twilio's code.
fn describe(status: http::StatusCode, code: Option<i64>) -> String {
    match code {
        Some(code) => {
            format!("Twilio answered {status} with error {code} (https://www.twilio.com/docs/api/errors/{code})")
        }
        None => format!("Twilio answered {status}"),
    }
}

/// Sends one message through the Messages API: `POST
/// /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic with the
/// account SID and auth token, a form with `To`, `From` (or
/// `MessagingServiceSid`) and `Body`; 201 with the message's `sid`.
/// https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
pub async fn send_message(config: &TwilioSendConfig, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
    let mut form: Vec<(&str, &str)> = vec![("To", message.to.as_e164())];
    match (&config.messaging_service_sid, message.from) {
        (Some(service), _) => form.push(("MessagingServiceSid", service.as_str())),
        (None, Some(from)) => form.push(("From", from.as_e164())),
        (None, None) => {
            return Err(SendError::refused(
                "no sender: the reply names no clinic number and send.messaging_service_sid is not set",
            ))
        }
    }
    form.push(("Body", message.body));
    let url = format!(
        "{}/2010-04-01/Accounts/{}/Messages.json",
        send::base_url(config.base_url.as_deref(), DEFAULT_BASE_URL),
        config.account_sid
    );
    let request =
        send::client().post(url).basic_auth(&config.account_sid, Some(config.auth_token.expose())).form(&form);
    let refusal = |a: &send::HttpAnswer| {
        describe(a.status, a.json::<serde_json::Value>().and_then(|v| v.get("code").and_then(|c| c.as_i64())))
    };
    let answer = send::execute(request).await?.accepted(opted_out, refusal)?;
    Ok(Sent { message_id: answer.text_at("/sid") })
}

/// TwiML: the confirmation inline, or an empty response.
pub fn reply(message: Option<&str>) -> String {
    match message {
        Some(text) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
            xml_escape(text)
        ),
        None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned(),
    }
}

/// Twilio, built from `[providers.twilio]`.
pub struct Twilio {
    /// Every token's HMAC, keyed once; more than one during rotation.
    keys: Vec<Hmac<Sha1>>,
    send: Option<TwilioSendConfig>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// Every token accepted; more than one during rotation.
    pub auth_tokens: Vec<Secret>,
    /// The Messages API, for replies that cannot go inline.
    #[serde(default)]
    pub send: Option<TwilioSendConfig>,
}

/// `[providers.twilio.send]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSendConfig {
    /// `AC…`: the account (or subaccount) that owns the numbers.
    pub account_sid: String,
    pub auth_token: Secret,
    /// `MG…`: send through this Messaging Service instead of `From`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Defaults to `DEFAULT_BASE_URL`.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// A SID goes into the URL path: letters and digits only.
fn check_sid(value: &str, field: &str) -> Result<(), ProviderConfigError> {
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad(field, "must be a non-empty SID (letters and digits)"));
    }
    Ok(())
}

fn check_send(config: &TwilioSendConfig) -> Result<(), ProviderConfigError> {
    check_sid(&config.account_sid, "send.account_sid")?;
    if config.auth_token.expose().is_empty() {
        return Err(bad("send.auth_token", "must not be empty"));
    }
    if let Some(service) = &config.messaging_service_sid {
        check_sid(service, "send.messaging_service_sid")?;
    }
    if let Some(base_url) = &config.base_url {
        send::check_base_url(base_url, "send.base_url")?;
    }
    Ok(())
}

impl Configured for Twilio {
    type Config = TwilioConfig;

    fn from_config(config: &TwilioConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        secrets(&config.auth_tokens, "auth_tokens")
            .map_err(|_| bad("auth_tokens", "needs at least one non-empty token"))?;
        if let Some(send) = &config.send {
            check_send(send)?;
        }
        let keys = config.auth_tokens.iter().map(|token| keyed(token.expose())).collect();
        Ok(Twilio { keys, send: config.send.clone() })
    }
}

#[async_trait::async_trait]
impl Provider for Twilio {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        let params = form_fields(request.body);
        verify_keyed(&self.keys, request.url, &params, request.body, request.header(SIGNATURE_HEADER))?;
        Ok(parse(&params)?)
    }

    /// TwiML, with the confirmation inline.
    fn answer(&self, outcome: &Outcome<'_>) -> Answer {
        Answer::xml(reply(outcome.reply.map(|(text, _)| text)))
    }

    fn sends(&self) -> bool {
        self.send.is_some()
    }

    async fn send(&self, message: &OutboundMessage<'_>) -> Result<Sent, SendError> {
        match &self.send {
            Some(config) => send_message(config, message).await,
            None => Err(SendError::NotConfigured("providers.twilio.send is not set")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::form_pairs;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../tests/vectors/signatures/vectors.json")).unwrap()
    }

    fn params_of(v: &Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in v.as_object().unwrap() {
            match v {
                Value::Array(values) => out.extend(values.iter().map(|x| (k.clone(), x.as_str().unwrap().to_owned()))),
                Value::String(s) => out.push((k.clone(), s.clone())),
                Value::Null => out.push((k.clone(), String::new())),
                other => panic!("unexpected param {other}"),
            }
        }
        out
    }

    fn tokens(t: &str) -> Vec<Secret> {
        vec![Secret::new(t)]
    }

    #[test]
    fn every_published_twilio_vector_verifies() {
        let v = vectors();
        let body = v["twilio"]["body_sha256"]["body"].as_str().unwrap();
        let cases = v["twilio"]["vectors"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let url = case["url"].as_str().unwrap();
            let result = verify(
                &tokens(case["auth_token"].as_str().unwrap()),
                url,
                &params_of(&case["params"]),
                body.as_bytes(),
                case["expected_signature"].as_str(),
            );
            assert_eq!(result, Ok(()), "{}", case["name"]);
        }
    }

    #[test]
    fn signing_reproduces_the_basic_vector() {
        let params = params_of(&vectors()["twilio"]["vectors"][0]["params"]);
        assert_eq!(
            sign("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    fn basic() -> (String, Vec<(String, String)>, String) {
        let case = &vectors()["twilio"]["vectors"][0];
        (
            case["url"].as_str().unwrap().to_owned(),
            params_of(&case["params"]),
            case["expected_signature"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn a_tampered_parameter_is_refused() {
        let (url, mut params, sig) = basic();
        params[0].1.push('x');
        assert_eq!(verify(&tokens("12345"), &url, &params, b"", Some(&sig)), Err(SignatureError::InvalidSignature));
    }

    #[test]
    fn a_wrong_token_is_refused_and_a_rotated_one_accepted() {
        let (url, params, sig) = basic();
        assert_eq!(verify(&tokens("54321"), &url, &params, b"", Some(&sig)), Err(SignatureError::InvalidSignature));
        let rotation = vec![Secret::new("new-token"), Secret::new("12345")];
        assert_eq!(verify(&rotation, &url, &params, b"", Some(&sig)), Ok(()));
    }

    #[test]
    fn a_missing_or_garbled_header_is_refused() {
        let (url, params, _) = basic();
        assert_eq!(
            verify(&tokens("12345"), &url, &params, b"", None),
            Err(SignatureError::MissingHeader("X-Twilio-Signature"))
        );
        assert_eq!(
            verify(&tokens("12345"), &url, &params, b"", Some("not base64!")),
            Err(SignatureError::MalformedHeader("X-Twilio-Signature"))
        );
    }

    #[test]
    fn a_json_body_that_does_not_match_its_hash_is_refused() {
        let case = &vectors()["twilio"]["vectors"][21];
        assert!(case["url"].as_str().unwrap().contains("bodySHA256"));
        let result = verify(
            &tokens("12345"),
            case["url"].as_str().unwrap(),
            &[] as &[(&str, &str)],
            b"{\"tampered\": true}",
            case["expected_signature"].as_str(),
        );
        assert_eq!(result, Err(SignatureError::BodyHashMismatch));
    }

    proptest::proptest! {
        /// The prefix shortcut sorts and deduplicates exactly as comparing the
        /// (key, value) pairs does, with short keys, zero bytes and repeats.
        #[test]
        fn signed_order_is_the_pairs_order(
            pairs in proptest::collection::vec(("[a\\x00b]{0,10}", "[a\\x00b]{0,3}"), 0..12)
        ) {
            let mut expected: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            expected.sort();
            expected.dedup();
            let ours: Vec<(&str, &str)> = signed_order(&pairs).iter().map(|p| (p.key, p.value)).collect();
            proptest::prop_assert_eq!(ours, expected);
        }
    }

    #[test]
    fn url_variants_cover_ports_credentials_and_ipv6() {
        let url_variants = |url| [url_variant(url, false), url_variant(url, true)];
        assert_eq!(
            url_variants("https://user:pass@example.com/a?b=1"),
            ["https://user:pass@example.com/a?b=1".to_owned(), "https://user:pass@example.com:443/a?b=1".to_owned()]
        );
        assert_eq!(
            url_variants("http://[::1]:8080/a"),
            ["http://[::1]/a".to_owned(), "http://[::1]:8080/a".to_owned()]
        );
        assert_eq!(
            url_variants("http://example.com"),
            ["http://example.com".to_owned(), "http://example.com:80".to_owned()]
        );
    }

    #[test]
    fn an_incoming_message_is_parsed_and_a_status_callback_ignored() {
        let form = b"MessageSid=SM123&From=%2B14158675309&To=%2B18005551212&Body=Stop.+Thank+you";
        let Received::Message(m) = parse(&form_pairs(form)).unwrap() else { panic!("not a message") };
        assert_eq!(
            (m.message_id.as_str(), m.text.as_str(), m.to.unwrap().as_e164()),
            ("SM123", "Stop. Thank you", "+18005551212")
        );
        let status = b"MessageSid=SM123&MessageStatus=delivered&From=%2B1&To=%2B1";
        assert!(matches!(parse(&form_pairs(status)).unwrap(), Received::Ignored(_)));
        assert!(parse(&form_pairs(b"From=nonsense&To=%2B18005551212&Body=STOP&MessageSid=SM1")).is_err());
    }

    #[test]
    fn replies_are_escaped_twiml() {
        assert_eq!(
            reply(Some("A & B <c>")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>A &amp; B &lt;c&gt;</Message></Response>"
        );
    }

    #[test]
    fn a_bad_secret_or_key_is_refused_at_construction_with_its_field_named() {
        assert!(crate::providers::tests::build::<Twilio>(r#"auth_tokens = ["t"]"#).is_ok());
        for (section, field) in [(r#"auth_tokens = []"#, "auth_tokens"), (r#"auth_tokens = [""]"#, "auth_tokens")] {
            let error = crate::providers::tests::build::<Twilio>(&section.replace("\\n", "\n")).err().expect(section);
            assert_eq!(error.field, field, "{section}: {error}");
        }
    }
    use crate::domain::PhoneNumber;
    use crate::providers::send::fake::{FakeApi, Reply};

    const SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn sender(base_url: &str, service: Option<&str>) -> Twilio {
        let service = service.map(|s| format!("messaging_service_sid = \"{s}\"\n")).unwrap_or_default();
        crate::providers::tests::build::<Twilio>(&format!(
            "auth_tokens = [\"hook-token\"]\n[send]\naccount_sid = \"{SID}\"\nauth_token = \"api-token\"\n{service}base_url = \"{base_url}\"\n"
        ))
        .unwrap()
    }

    fn numbers() -> (PhoneNumber, PhoneNumber) {
        (PhoneNumber::parse("+14158675309").unwrap(), PhoneNumber::parse("+14155550100").unwrap())
    }

    #[tokio::test]
    async fn a_reply_is_posted_as_twilio_documents_it_and_its_sid_read() {
        let fake = FakeApi::start(vec![Reply::json(
            201,
            serde_json::json!({"sid": "SM1234567890abcdef1234567890abcdef", "status": "queued", "error_code": null}),
        )])
        .await;
        let twilio = sender(&fake.base_url, None);
        assert!(twilio.sends());
        let (to, from) = numbers();
        let message =
            OutboundMessage { to: &to, from: Some(&from), body: "Lakeside: you are unsubscribed.", reference: "ev-1" };
        assert_eq!(
            twilio.send(&message).await,
            Ok(Sent { message_id: Some("SM1234567890abcdef1234567890abcdef".into()) })
        );
        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.uri, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
        let basic = format!("Basic {}", STANDARD.encode(format!("{SID}:api-token")));
        assert_eq!(request.header("authorization"), Some(basic.as_str()));
        assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
        let form = request.form();
        let expected: Vec<(String, String)> =
            [("To", "+14158675309"), ("From", "+14155550100"), ("Body", "Lakeside: you are unsubscribed.")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(form, expected);
        let raw = String::from_utf8_lossy(&request.body).to_string();
        assert!(!raw.contains("hook-token") && !raw.contains("api-token"), "no secret in the body");
    }

    #[tokio::test]
    async fn a_messaging_service_replaces_from_and_without_either_the_send_is_refused() {
        let fake = FakeApi::start(vec![Reply::json(201, serde_json::json!({"sid": "SM2"}))]).await;
        let (to, _) = numbers();
        let message = OutboundMessage { to: &to, from: None, body: "Reply HELP for help.", reference: "ev-2" };
        let twilio = sender(&fake.base_url, Some("MGbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"));
        assert_eq!(twilio.send(&message).await, Ok(Sent { message_id: Some("SM2".into()) }));
        let form = fake.seen()[0].form();
        assert_eq!(param(&form, "MessagingServiceSid"), Some("MGbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"));
        assert_eq!(param(&form, "From"), None);
        let bare = sender(&fake.base_url, None);
        let Err(SendError::Refused { reason }) = bare.send(&message).await else { panic!("not refused") };
        assert!(!reason.contains("+1"), "{reason}");
        assert_eq!(fake.seen().len(), 1, "nothing sent without a sender");
    }

    #[tokio::test]
    async fn error_answers_are_opted_out_refused_or_temporary() {
        let fake = FakeApi::start(vec![
            Reply::json(
                400,
                serde_json::json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                    "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400}),
            ),
            Reply::json(
                400,
                serde_json::json!({"code": 21211, "message": "The 'To' number +14158675309 is not a valid phone number.",
                    "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}),
            ),
            Reply::json(429, serde_json::json!({"code": 20429, "message": "Too Many Requests", "status": 429}))
                .with_header("retry-after", "30"),
            Reply::json(500, serde_json::json!({"code": 20500, "message": "Internal Server Error", "status": 500})),
        ])
        .await;
        let twilio = sender(&fake.base_url, None);
        let (to, from) = numbers();
        let message = OutboundMessage { to: &to, from: Some(&from), body: "x", reference: "ev-3" };
        assert!(matches!(twilio.send(&message).await, Err(SendError::OptedOut { code, .. }) if code == "21610"));
        let Err(SendError::Refused { reason }) = twilio.send(&message).await else { panic!("not refused") };
        assert!(reason.contains("21211") && !reason.contains("8675309"), "{reason}");
        assert!(matches!(
            twilio.send(&message).await,
            Err(SendError::Temporary { retry_after: Some(d), .. }) if d == std::time::Duration::from_secs(30)
        ));
        assert!(matches!(twilio.send(&message).await, Err(SendError::Temporary { .. })));
    }

    #[tokio::test]
    async fn without_a_send_table_nothing_is_sent() {
        let twilio = crate::providers::tests::build::<Twilio>(r#"auth_tokens = ["t"]"#).unwrap();
        assert!(!twilio.sends());
        let (to, from) = numbers();
        let message = OutboundMessage { to: &to, from: Some(&from), body: "x", reference: "ev" };
        assert!(matches!(twilio.send(&message).await, Err(SendError::NotConfigured(_))));
    }

    async fn signed_callback(twilio: &Twilio, form: &str, signature: Option<&str>) -> Result<Received, Rejection> {
        let url = "https://consent.example/webhooks/twilio";
        let params = form_pairs(form.as_bytes());
        let mut headers = http::HeaderMap::new();
        let signature = signature.map(str::to_owned).unwrap_or_else(|| sign("hook-token", url, &params));
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        let request = WebhookRequest {
            method: "POST",
            url,
            headers: &headers,
            body: form.as_bytes(),
            now: time::OffsetDateTime::UNIX_EPOCH,
        };
        twilio.receive(&request).await
    }

    #[tokio::test]
    async fn a_signed_status_callback_with_21610_is_a_provider_opt_out() {
        let twilio = sender("https://api.twilio.com", None);
        let form = "MessageSid=SM9f&SmsSid=SM9f&AccountSid=ACaaaa&MessageStatus=undelivered&ErrorCode=21610\
                    &From=%2B14155550100&To=%2B14158675309&ApiVersion=2010-04-01";
        let Received::ProviderOptOut(block) = signed_callback(&twilio, form, None).await.unwrap() else {
            panic!("not an opt-out")
        };
        assert_eq!(block.provider, "twilio");
        assert_eq!(block.message_id, "SM9f");
        assert_eq!(block.number.as_e164(), "+14158675309");
        assert_eq!(block.clinic.as_ref().map(|c| c.as_e164()), Some("+14155550100"));
        assert_eq!(block.code, "21610");
        assert_eq!(block.occurred_at, None);
        let failed = form.replace("undelivered", "failed");
        assert!(matches!(signed_callback(&twilio, &failed, None).await.unwrap(), Received::ProviderOptOut(_)));
    }

    #[tokio::test]
    async fn other_status_callbacks_are_ignored_and_a_bad_signature_refused() {
        let twilio = sender("https://api.twilio.com", None);
        let delivered = "MessageSid=SM9f&MessageStatus=delivered&From=%2B14155550100&To=%2B14158675309";
        assert!(matches!(signed_callback(&twilio, delivered, None).await.unwrap(), Received::Ignored(_)));
        let other_error =
            "MessageSid=SM9f&MessageStatus=undelivered&ErrorCode=30003&From=%2B14155550100&To=%2B14158675309";
        assert!(matches!(signed_callback(&twilio, other_error, None).await.unwrap(), Received::Ignored(_)));
        let opt_out = "MessageSid=SM9f&MessageStatus=failed&ErrorCode=21610&From=%2B14155550100&To=%2B14158675309";
        let forged = sign("not-the-token", "https://consent.example/webhooks/twilio", &form_pairs(opt_out.as_bytes()));
        assert_eq!(
            signed_callback(&twilio, opt_out, Some(&forged)).await.unwrap_err(),
            Rejection::Signature(SignatureError::InvalidSignature)
        );
        let url = "https://consent.example/webhooks/twilio";
        let genuine = sign("hook-token", url, &form_pairs(opt_out.as_bytes()));
        let swapped = opt_out.replace("%2B14158675309", "%2B14158675310");
        assert_eq!(
            signed_callback(&twilio, &swapped, Some(&genuine)).await.unwrap_err(),
            Rejection::Signature(SignatureError::InvalidSignature),
            "a signed callback's number cannot be swapped"
        );
    }

    #[test]
    fn a_bad_send_table_is_named_by_its_field() {
        for (send, field) in [
            ("account_sid = \"\"\nauth_token = \"t\"", "send.account_sid"),
            ("account_sid = \"AC/../x\"\nauth_token = \"t\"", "send.account_sid"),
            ("account_sid = \"AC1\"\nauth_token = \"\"", "send.auth_token"),
            ("account_sid = \"AC1\"\nauth_token = \"t\"\nmessaging_service_sid = \"\"", "send.messaging_service_sid"),
            ("account_sid = \"AC1\"\nauth_token = \"t\"\nbase_url = \"http://api.twilio.com\"", "send.base_url"),
            ("account_sid = \"AC1\"\nauth_token = \"t\"\nbase_url = \"nonsense\"", "send.base_url"),
        ] {
            let section = format!("auth_tokens = [\"t\"]\n[send]\n{send}");
            let error = crate::providers::tests::build::<Twilio>(&section).err().expect(send);
            assert_eq!(error.field, field, "{send}: {error}");
        }
        let section = "auth_tokens = [\"t\"]\n[send]\naccount_sid = \"AC1\"";
        assert!(toml::from_str::<TwilioConfig>(section).is_err(), "auth_token is required");
    }
}
