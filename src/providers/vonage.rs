//! Vonage: the SMS API signs its parameters with a `sig` (md5hash, or HMAC
//! md5/sha1/sha256/sha512 as configured); the Messages API sends a JWT
//! (HS256) in `Authorization: Bearer` whose `payload_hash` covers the body.
//! Either arrives at one route; replies go to the outbox.

use hmac::{Hmac, Mac};
use jsonwebtoken::Algorithm;
use md5::Md5;
use serde::Deserialize;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use time::{OffsetDateTime, PrimitiveDateTime};

use super::{
    bad, bearer, check_window, decode_hmac_jwt, digits_phone, event_time, form_pairs, param, parse_rfc3339, required,
    same_bytes, secrets, sha256_hex, within_window, Configured, InboundMessage, Outside, PayloadError, Profile,
    Provider, ProviderConfigError, Received, Rejection, ReplyStyle, Secret, SignatureError, WebhookRequest,
    GET_AND_POST, TOLERANCE_SECONDS,
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
    if get("text").is_none() && (get("status").is_some() || get("err-code").is_some()) {
        return Ok(Received::Ignored("delivery receipt"));
    }
    let occurred_at = get("message-timestamp")
        .map(|t| {
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            let at = PrimitiveDateTime::parse(t, format)
                .map_err(|_| PayloadError("message-timestamp: expected YYYY-MM-DD HH:MM:SS".into()))?;
            event_time(at.assume_utc(), "message-timestamp")
        })
        .transpose()?;
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
}

/// Messages API inbound SMS; status webhooks and other channels are ignored.
pub fn parse_messages_api(body: &[u8]) -> Result<Received, PayloadError> {
    let m: MessagesApiInbound = super::json_body(body)?;
    if m.status.is_some() && m.text.is_none() {
        return Ok(Received::Ignored("message status"));
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
}
