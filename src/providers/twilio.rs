//! Twilio: `X-Twilio-Signature` is `base64(HMAC-SHA1(auth_token, URL + params))`
//! over the URL exactly as Twilio requested it, with both port variants
//! accepted; JSON bodies are covered by a `bodySHA256` query parameter. No
//! timestamp: replays are made harmless by the message id. Replies are TwiML.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{
    bad, form_pairs, param, phone, required, same_bytes, secrets, sha256_hex, xml_escape, Answer, Configured,
    InboundMessage, Outcome, Outside, PayloadError, Profile, Provider, ProviderConfigError, Received, Rejection,
    ReplyStyle, Secret, SignatureError, WebhookRequest,
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

/// The signature Twilio would send for `url` and form `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params))
}

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    let mut sorted: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Keys by byte order; a repeated key's values sorted, duplicates once.
    sorted.sort_unstable();
    sorted.dedup();
    for (key, value) in sorted {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
}

/// The two URLs validators accept: with any port removed, and with the port
/// kept (or the scheme's default added).
pub fn url_variants(url: &str) -> [String; 2] {
    let Some(scheme_end) = url.find("://") else {
        return [url.to_owned(), url.to_owned()];
    };
    let (scheme, after) = (&url[..scheme_end], &url[scheme_end + 3..]);
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let port_start = if hostport.starts_with('[') { hostport.find("]:").map(|i| i + 1) } else { hostport.rfind(':') };
    let host = port_start.map_or(hostport, |i| &hostport[..i]);
    let with_port = match port_start {
        Some(_) => url.to_owned(),
        None => {
            let default = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
            format!("{scheme}://{userinfo}{host}:{default}{rest}")
        }
    };
    [format!("{scheme}://{userinfo}{host}{rest}"), with_port]
}

/// Verifies a request against every configured token and both URL variants.
/// `params` are the form-decoded body; for a JSON body pass none, and the
/// `bodySHA256` query parameter is checked against `body`.
pub fn verify(
    tokens: &[Secret],
    url: &str,
    params: &[(String, String)],
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::MissingHeader("X-Twilio-Signature"))?;
    let provided =
        STANDARD.decode(signature.trim()).map_err(|_| SignatureError::MalformedHeader("X-Twilio-Signature"))?;
    let body_hash = query_param(url, "bodySHA256");
    let signed_params: &[(String, String)] = if body_hash.is_some() { &[] } else { params };
    let matched = url_variants(url).iter().any(|candidate| {
        tokens.iter().any(|token| same_bytes(&mac(token.expose(), candidate, signed_params), &provided))
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
    param(&form_pairs(query.as_bytes()), name).map(str::to_owned)
}

/// Reads Twilio's incoming-message webhook. Status callbacks (a
/// `MessageStatus` and no `Body`) are acknowledged and ignored.
pub fn parse(params: &[(String, String)]) -> Result<Received, PayloadError> {
    let get = |name: &str| param(params, name);
    if get("Body").is_none() && get("MessageStatus").is_some() {
        return Ok(Received::Ignored("status callback"));
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
    /// Every token accepted; more than one during rotation.
    auth_tokens: Vec<Secret>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// Every token accepted; more than one during rotation.
    pub auth_tokens: Vec<Secret>,
}

impl Configured for Twilio {
    type Config = TwilioConfig;

    fn from_config(config: &TwilioConfig, _: &Outside) -> Result<Self, ProviderConfigError> {
        secrets(&config.auth_tokens, "auth_tokens")
            .map_err(|_| bad("auth_tokens", "needs at least one non-empty token"))?;
        Ok(Twilio { auth_tokens: config.auth_tokens.clone() })
    }
}

#[async_trait::async_trait]
impl Provider for Twilio {
    fn profile(&self) -> Profile {
        PROFILE
    }

    async fn receive(&self, request: &WebhookRequest<'_>) -> Result<Received, Rejection> {
        let params = form_pairs(request.body);
        verify(&self.auth_tokens, request.url, &params, request.body, request.header(SIGNATURE_HEADER))?;
        Ok(parse(&params)?)
    }

    /// TwiML, with the confirmation inline.
    fn answer(&self, outcome: &Outcome<'_>) -> Answer {
        Answer::xml(reply(outcome.reply.map(|(text, _)| text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            &[],
            b"{\"tampered\": true}",
            case["expected_signature"].as_str(),
        );
        assert_eq!(result, Err(SignatureError::BodyHashMismatch));
    }

    #[test]
    fn url_variants_cover_ports_credentials_and_ipv6() {
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
}
