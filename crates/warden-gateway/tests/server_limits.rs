//! What a client that sends slowly, or not at all, can hold: a connection that never finishes its
//! request head is closed after `server.header_timeout_secs`, a body that never finishes arriving
//! is answered 408 after `server.body_timeout_secs`, and idle connections past
//! `server.max_connections` cannot stop Warden answering others.

mod support;
use support::Server;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_gateway::Config;

fn config(toml: &str, dir: &std::path::Path) -> Config {
    let mut config = Config::parse(toml, "test.toml").expect("the test config parses");
    config.server.data_dir = dir.to_path_buf();
    config
}

fn addr(server: &Server) -> String {
    server.url("").trim_start_matches("http://").to_owned()
}

/// Everything the server sends until it closes the connection; panics past `secs`.
async fn until_closed(tcp: &mut tokio::net::TcpStream, secs: u64) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(secs), async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection was still open after {secs} s");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_head_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config("[server]\nheader_timeout_secs = 1\n", dir.path())).await;
    let mut tcp = tokio::net::TcpStream::connect(addr(&server))
        .await
        .expect("connect");
    tcp.write_all(b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("half a head");
    // Ten times the timeout: closed, not held.
    until_closed(&mut tcp, 10).await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_never_finishes_arriving_is_answered_408_with_a_json_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config("[server]\nbody_timeout_secs = 1\n", dir.path())).await;
    let mut tcp = tokio::net::TcpStream::connect(addr(&server))
        .await
        .expect("connect");
    tcp.write_all(
        b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"principal\": ",
    )
    .await
    .expect("a head and part of a body");
    let answer = until_closed(&mut tcp, 10).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "body_timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("server.body_timeout_secs")),
        "{body}"
    );
    server.stop().await;
}
