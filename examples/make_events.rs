//! Writes the sample API Gateway HTTP API (payload v2) events in `events/`,
//! signed with the test secrets of `events/secrets.toml`.
//!
//!     cargo run --example make_events            # the committed events (2026-11-22T00:00:00Z)
//!     cargo run --example make_events -- --now   # re-signed now, for `cargo lambda invoke`
//!
//! Schemes with a timestamp (Telnyx, Sinch, Bird, Vonage, Standard Webhooks)
//! are valid within five minutes of the time they were signed for; the
//! tests run the committed events with the clock set to that time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sms_consent::config::VonageSignatureMethod;
use sms_consent::providers::{bird, plivo, sinch, standard_webhooks, twilio, vonage};
use time::OffsetDateTime;

const BASE: &str = "https://abcdef1234.execute-api.us-east-1.amazonaws.com";
const PATIENT: &str = "+14158675309";
const CLINIC: &str = "+14155550100";
pub const EVENTS_TIME: i64 = 1_795_305_600; // 2026-11-22T00:00:00Z
const TELNYX_SEED: &str = "i1xxSkIuQOY9H8laaRslIoYGTJ1NwBAFdjsQwiwJH04=";
const SNS_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:sms-consent-inbound";
const SNS_CERT_URL: &str = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem";

struct Clock {
    now: OffsetDateTime,
}

impl Clock {
    fn unix(&self) -> i64 {
        self.now.unix_timestamp()
    }
    fn rfc3339(&self) -> String {
        self.now.format(&time::format_description::well_known::Rfc3339).unwrap()
    }
}

/// An API Gateway HTTP API v2 event around one request.
fn event(clock: &Clock, method: &str, path: &str, query: &str, headers: Value, body: &str, iam: Option<&str>) -> Value {
    // The template routes every provider through `/webhooks/{provider}`.
    let provider = path.strip_prefix("/webhooks/");
    let route = match provider {
        Some(_) => format!("{method} /webhooks/{{provider}}"),
        None => format!("{method} {path}"),
    };
    let mut context = json!({
        "accountId": "123456789012",
        "apiId": "abcdef1234",
        "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abcdef1234",
        "http": { "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "sample-event" },
        "requestId": format!("req-{}", &hex::encode(Sha256::digest(format!("{path}{body}")))[..16]),
        "routeKey": route,
        "stage": "$default",
        "time": clock.now.format(time::macros::format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000")).unwrap(),
        "timeEpoch": clock.unix() * 1000,
    });
    if let Some(arn) = iam {
        context["authorizer"] = json!({ "iam": {
            "accessKey": "ASIAEXAMPLEEXAMPLE", "accountId": "123456789012", "callerId": "AROAEXAMPLEEXAMPLE:session",
            "cognitoIdentity": null, "principalOrgId": null, "userArn": arn, "userId": "AROAEXAMPLEEXAMPLE:session" } });
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": context,
        "body": body,
        "isBase64Encoded": false,
    });
    if let Some(provider) = provider {
        event["pathParameters"] = json!({ "provider": provider });
    }
    event
}

fn form(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
}

fn pairs(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn bare(n: &str) -> &str {
    n.trim_start_matches('+')
}

/// (file stem, event) for one keyword through one provider.
fn webhook(clock: &Clock, provider: &str, id: &str, text: &str) -> Value {
    let url = format!("{BASE}/webhooks/{provider}");
    let path = format!("/webhooks/{provider}");
    match provider {
        "twilio" => {
            let params = pairs(&[
                ("AccountSid", "AC00000000000000000000000000000000"),
                ("Body", text),
                ("From", PATIENT),
                ("MessageSid", id),
                ("NumMedia", "0"),
                ("SmsStatus", "received"),
                ("To", CLINIC),
            ]);
            let headers = json!({ "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": twilio::sign("events-twilio-token", &url, &params) });
            event(clock, "POST", &path, "", headers, &form(&params), None)
        }
        "telnyx" => {
            use ed25519_dalek::{Signer, SigningKey};
            let body = json!({ "data": { "event_type": "message.received", "id": format!("evt-{id}"), "occurred_at": clock.rfc3339(), "record_type": "event",
                "payload": { "id": id, "direction": "inbound", "type": "SMS", "from": { "phone_number": PATIENT }, "to": [{ "phone_number": CLINIC, "status": "webhook_delivered" }],
                "text": text, "received_at": clock.rfc3339(), "record_type": "message" } } }).to_string();
            let seed: [u8; 32] = STANDARD.decode(TELNYX_SEED).unwrap().try_into().unwrap();
            let ts = clock.unix().to_string();
            let signature = SigningKey::from_bytes(&seed).sign(format!("{ts}|{body}").as_bytes());
            let headers = json!({ "content-type": "application/json", "telnyx-timestamp": ts, "telnyx-signature-ed25519": STANDARD.encode(signature.to_bytes()) });
            event(clock, "POST", &path, "", headers, &body, None)
        }
        "plivo" => {
            let params = pairs(&[
                ("From", bare(PATIENT)),
                ("To", bare(CLINIC)),
                ("Text", text),
                ("Type", "sms"),
                ("MessageUUID", id),
                ("Units", "1"),
            ]);
            let nonce = format!("nonce-{id}");
            let headers = json!({ "content-type": "application/x-www-form-urlencoded", "x-plivo-signature-v3-nonce": nonce,
                "x-plivo-signature-v3": plivo::sign_v3("events-plivo-token", "POST", &url, &params, &nonce) });
            event(clock, "POST", &path, "", headers, &form(&params), None)
        }
        "vonage" => {
            let ts = clock.unix().to_string();
            let stamp = clock
                .now
                .format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
                .unwrap();
            let mut params = pairs(&[
                ("msisdn", bare(PATIENT)),
                ("to", bare(CLINIC)),
                ("messageId", id),
                ("text", text),
                ("type", "text"),
                ("message-timestamp", &stamp),
                ("timestamp", &ts),
                ("nonce", &format!("nonce-{id}")),
            ]);
            let sig = vonage::sign(VonageSignatureMethod::Sha256, "events-vonage-secret", &params);
            params.push(("sig".into(), sig));
            event(
                clock,
                "POST",
                &path,
                "",
                json!({ "content-type": "application/x-www-form-urlencoded" }),
                &form(&params),
                None,
            )
        }
        "sinch" => {
            let body = json!({ "type": "mo_text", "id": id, "from": bare(PATIENT), "to": bare(CLINIC), "body": text, "received_at": clock.rfc3339(), "operator_id": "311071" }).to_string();
            let (nonce, ts) = (format!("nonce-{id}"), clock.unix().to_string());
            let headers = json!({ "content-type": "application/json", "x-sinch-webhook-signature-nonce": nonce, "x-sinch-webhook-signature-timestamp": ts,
                "x-sinch-webhook-signature-algorithm": "HmacSHA256", "x-sinch-webhook-signature": sinch::sign("events-sinch-secret", body.as_bytes(), &nonce, &ts) });
            event(clock, "POST", &path, "", headers, &body, None)
        }
        "bandwidth" => {
            let body = json!([{ "type": "message-received", "time": clock.rfc3339(), "description": "Incoming message received", "to": CLINIC,
                "message": { "id": id, "time": clock.rfc3339(), "to": [CLINIC], "from": PATIENT, "text": text, "applicationId": "93de2206-9669-4e07-948d-329f4b722ee2",
                "owner": CLINIC, "direction": "in", "segmentCount": 1 } }]).to_string();
            let auth = format!("Basic {}", STANDARD.encode("events-bandwidth:events-bandwidth-password"));
            event(
                clock,
                "POST",
                &path,
                "",
                json!({ "content-type": "application/json", "authorization": auth }),
                &body,
                None,
            )
        }
        "bird" => {
            let body = json!({ "service": "channels", "event": "sms.inbound", "payload": { "id": id, "channelId": "614208aa-b153-4d5d-9989-2fddfc0ce4c3",
                "sender": { "contact": { "identifierKey": "phonenumber", "identifierValue": PATIENT } }, "receiver": { "connector": { "id": "86cc4dc0", "identifierValue": CLINIC } },
                "body": { "type": "text", "text": { "text": text } }, "direction": "incoming", "status": "delivered", "createdAt": clock.rfc3339() } }).to_string();
            let ts = clock.unix().to_string();
            let headers = json!({ "content-type": "application/json", "messagebird-request-timestamp": ts, "messagebird-signature": bird::sign_hmac("events-bird-key", &ts, &url, body.as_bytes()) });
            event(clock, "POST", &path, "", headers, &body, None)
        }
        "aws-sns" => {
            let inner = json!({ "originationNumber": PATIENT, "destinationNumber": CLINIC, "messageKeyword": "KEYWORD_123456789012", "messageBody": text,
                "inboundMessageId": id, "previousPublishedMessageId": "wJ0gWL5s3F9example" }).to_string();
            let body = sns_notification(clock, &format!("sns-{id}"), &inner).to_string();
            event(
                clock,
                "POST",
                &path,
                "",
                json!({ "content-type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification" }),
                &body,
                None,
            )
        }
        "standard-webhooks" => {
            let body = json!({ "id": id, "from": PATIENT, "to": CLINIC, "text": text, "occurred_at": clock.rfc3339() })
                .to_string();
            let signature =
                standard_webhooks::sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id, clock.unix(), body.as_bytes())
                    .unwrap();
            let headers = json!({ "content-type": "application/json", "webhook-id": id, "webhook-timestamp": clock.unix().to_string(), "webhook-signature": signature });
            event(clock, "POST", &path, "", headers, &body, None)
        }
        other => panic!("no provider {other}"),
    }
}

fn sns_notification(clock: &Clock, message_id: &str, message: &str) -> Value {
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let timestamp = clock.rfc3339();
    let signed = format!("Message\n{message}\nMessageId\n{message_id}\nTimestamp\n{timestamp}\nTopicArn\n{SNS_TOPIC}\nType\nNotification\n");
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../tests/fixtures/sns/signing-key.pem")).unwrap();
    let signature = SigningKey::<Sha256>::new(key).sign(signed.as_bytes());
    json!({ "Type": "Notification", "MessageId": message_id, "TopicArn": SNS_TOPIC, "Message": message, "Timestamp": timestamp,
        "SignatureVersion": "2", "Signature": STANDARD.encode(signature.to_bytes()), "SigningCertURL": SNS_CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=example" })
}

/// The same event with the patient's word changed after signing; Bandwidth
/// signs nothing (HTTP Basic credentials only), so its tampered event
/// carries a wrong password instead.
fn tampered(mut event: Value) -> Value {
    if let Some(auth) = event["headers"].get("authorization").and_then(Value::as_str) {
        if auth.starts_with("Basic ") {
            event["headers"]["authorization"] =
                format!("Basic {}", STANDARD.encode("events-bandwidth:guessed-password")).into();
            return event;
        }
    }
    let body = event["body"].as_str().unwrap().replacen("STOP", "START", 1);
    event["body"] = body.into();
    event
}

fn api(clock: &Clock, path: &str, body: Value, arn: &str) -> Value {
    event(clock, "POST", path, "", json!({ "content-type": "application/json" }), &body.to_string(), Some(arn))
}

fn main() {
    let now = if std::env::args().any(|a| a == "--now") {
        OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
    } else {
        OffsetDateTime::from_unix_timestamp(EVENTS_TIME).unwrap()
    };
    let clock = Clock { now };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut files: Vec<(String, Value)> = Vec::new();
    for provider in
        ["twilio", "telnyx", "plivo", "vonage", "sinch", "bandwidth", "bird", "aws-sns", "standard-webhooks"]
    {
        for (word, text) in [("stop", "STOP"), ("start", "START"), ("help", "HELP")] {
            files.push((
                format!("webhook-{provider}-{word}"),
                webhook(&clock, provider, &format!("{provider}-{word}-0001"), text),
            ));
        }
        files.push((
            format!("webhook-{provider}-tampered"),
            tampered(webhook(&clock, provider, &format!("{provider}-tampered-0001"), "STOP")),
        ));
    }
    let sender = "arn:aws:sts::123456789012:assumed-role/reminder-sender/reminders-2026-11-22";
    let desk = "arn:aws:sts::123456789012:assumed-role/front-desk/desk-7";
    files.push((
        "authorize-allowed".into(),
        api(
            &clock,
            "/v1/authorizations",
            json!({ "to": PATIENT, "program": "clinic", "category": "appointment_reminders" }),
            sender,
        ),
    ));
    files.push((
        "authorize-denied".into(),
        api(
            &clock,
            "/v1/authorizations",
            json!({ "to": PATIENT, "program": "pharmacy", "category": "refills" }),
            sender,
        ),
    ));
    files.push((
        "authorize-batch".into(),
        api(
            &clock,
            "/v1/authorizations",
            json!({ "requests": [
        { "to": PATIENT, "program": "clinic", "category": "appointment_reminders" },
        { "to": PATIENT, "program": "pharmacy", "category": "refills" },
        { "to": "+14155550123", "program": "clinic", "category": "billing" } ] }),
            sender,
        ),
    ));
    files.push((
        "authorize-unmapped-principal".into(),
        api(
            &clock,
            "/v1/authorizations",
            json!({ "to": PATIENT, "program": "clinic", "category": "billing" }),
            "arn:aws:sts::123456789012:assumed-role/someone-else/x",
        ),
    ));
    files.push(("consents-record".into(), api(&clock, "/v1/consents", json!({ "to": PATIENT, "program": "pharmacy", "categories": ["refills"],
        "kind": "express_written", "source": "web_form", "captured_at": clock.rfc3339(), "evidence": "intake-form-2231", "id": "intake-2231" }), desk)));
    files.push(("consents-state".into(), api(&clock, "/v1/consents/state", json!({ "to": PATIENT }), desk)));
    for (name, value) in files {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap() + "\n").unwrap();
        println!("{}", path.display());
    }
}
