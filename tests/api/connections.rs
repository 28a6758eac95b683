//! Slow and idle clients cannot hold the local server: a request head must
//! arrive within `server.header_read_timeout_seconds`, a request must be
//! answered within `server.request_timeout_seconds`, and at most
//! `server.max_connections` connections are served at once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The test config with short local-server limits.
fn limited_config(header_seconds: u64, request_seconds: u64, max_connections: usize) -> String {
    format!(
        "[server]\nheader_read_timeout_seconds = {header_seconds}\nrequest_timeout_seconds = {request_seconds}\n\
         max_connections = {max_connections}\n{}",
        config_text()
    )
}

/// Reads until the server closes the connection (or `limit` passes), and
/// returns what it sent and how long it took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let app = TestApp::spawn_with(&limited_config(1, 30, 64)).await;
    let mut stream = TcpStream::connect(app.server().addr).await.unwrap();
    stream.write_all(b"POST /webhooks/twilio HTTP/1.1\r\nHost: example\r\nX-Slow: ").await.unwrap();

    let (_, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;

    assert!(took < Duration::from_secs(5), "the stalled connection stayed open {took:?}");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_connection_closes() {
    let app = TestApp::spawn_with(&limited_config(10, 1, 64)).await;
    let mut stream = TcpStream::connect(app.server().addr).await.unwrap();
    stream
        .write_all(
            b"POST /webhooks/twilio HTTP/1.1\r\nHost: example\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 200\r\n\r\nMessageSid=SM1&Body=ST",
        )
        .await
        .unwrap();

    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;

    assert!(answer.starts_with("HTTP/1.1 408"), "answer: {answer:?}");
    assert!(answer.contains("application/problem+json"), "answer: {answer:?}");
    assert!(took < Duration::from_secs(5), "the stalled body held the connection {took:?}");
    assert_eq!(app.ledger_len(PATIENT).await, 0);
}

#[tokio::test]
async fn a_bad_limit_is_refused_naming_the_field() {
    let config = limited_config(0, 30, 64);

    let error = sms_consent::config::Config::from_toml(&config).unwrap_err();

    assert_eq!(error.field, "server.header_read_timeout_seconds");
}

/// The review's attack: more idle connections than the server has file
/// descriptors. The server runs as its own process under `ulimit -n 256`;
/// 300 connections send nothing; a health check and a signed STOP must
/// still be answered once the idle ones time out.
#[tokio::test]
async fn idle_connections_beyond_the_descriptor_limit_do_not_starve_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let config = limited_config(2, 30, 1000)
        .replace("[server]", &format!("[server]\nlisten = \"{addr}\"\npublic_base_url = \"http://{addr}\""));
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let server = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" serve --config \"$1\" --data-dir \"$2\"")
        .arg(env!("CARGO_BIN_EXE_sms-consent"))
        .arg(&config_path)
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(server);
    let client = http_client();
    let health = format!("http://{addr}/healthz");
    let mut ready = false;
    for _ in 0..100 {
        if client.get(&health).send().await.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the server did not start");

    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    // A fresh client: the readiness check's pooled connection must not
    // carry the requests past the queue.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let started = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(30), client.get(&health).send()).await;
    let params = twilio_params("SMidle1", PATIENT, CLINIC, "STOP");
    let url = format!("http://{addr}/webhooks/twilio");
    let signature = sms_consent::providers::twilio::sign(TWILIO_TOKEN, &url, &params);
    let stop = tokio::time::timeout(
        Duration::from_secs(30),
        client.post(&url).header("X-Twilio-Signature", signature).form(&params).send(),
    )
    .await;

    assert!(matches!(answered, Ok(Ok(ref r)) if r.status() == 200), "health check: {answered:?}");
    assert!(matches!(stop, Ok(Ok(ref r)) if r.status() == 200), "signed STOP: {stop:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(idle);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
