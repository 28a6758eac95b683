//! Plivo: `X-Plivo-Signature-V3` (a comma-separated list; any match passes)
//! with `X-Plivo-Signature-V3-Nonce`. No timestamp: the message id makes a
//! replay a no-op. The older V2 pair signs only the URL and a nonce, not the
//! body, so one observed pair would carry any body: it is refused unless
//! config turns it on (`accept_v2_signatures`), and then its nonce is the
//! message's `replay_key`, accepted once. Replies are Plivo XML.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{
    digits_phone, form_pairs, param, required, same_bytes, secrets, xml_escape, Answer, Configured, InboundMessage,
    Outcome, Outside, PayloadError, Profile, Provider, ProviderConfigError, Received, Rejection, ReplyStyle, Secret,
    SignatureError, WebhookRequest, GET_AND_POST,
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

/// Reads Plivo's incoming-message webhook; delivery reports are ignored.
pub fn parse(request: &WebhookRequest<'_>, params: &[(String, String)]) -> Result<Received, PayloadError> {
    let query = request.query_pairs();
    let get = |name: &str| param(params, name).or_else(|| param(&query, name));
    if get("Text").is_none() && get("Status").is_some() {
        return Ok(Received::Ignored("delivery report"));
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

/// The `replay_key` of a message that came with a V2 signature.
pub fn v2_replay_key(nonce: &str) -> String {
    format!("plivo-v2-nonce:{nonce}")
}

pub fn receive(tokens: &[Secret], accept_v2: bool, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
    let params = params(request);
    let verified = verify(tokens, accept_v2, request, &params)?;
    let mut parsed = parse(request, &params)?;
    if let (Verified::V2 { nonce }, Received::Message(message)) = (verified, &mut parsed) {
        message.replay_key = Some(v2_replay_key(&nonce));
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
}

impl Configured for Plivo {
    type Config = PlivoConfig;

    fn from_config(config: &PlivoConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        secrets(&config.auth_tokens, "auth_tokens")?;
        Ok(Plivo { auth_tokens: config.auth_tokens.clone(), accept_v2_signatures: config.accept_v2_signatures })
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
}
