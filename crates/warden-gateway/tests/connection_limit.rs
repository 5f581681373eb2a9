//! Idle connections cannot take Warden down: with this process's descriptors limited to 128, a
//! client (another process) opens 200 connections and sends nothing; a request on a fresh
//! connection is still answered, because Warden serves at most `server.max_connections` at once
//! (the rest wait in the listen queue, holding no descriptor of Warden's) and closes those that
//! send no request head within `server.header_timeout_secs`. Its own test binary: it lowers the
//! whole process's descriptor limit.

mod support;
use support::Server;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use warden_gateway::Config;

const HOLD_PY: &str = r#"
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port = sys.argv[1].rsplit(":", 1)
held = []
for _ in range(200):
    s = socket.socket()
    s.connect((host, int(port)))
    held.append(s)
print("holding", flush=True)
time.sleep(120)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_idle_connections_do_not_stop_warden_answering_with_128_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = "[server]\nmax_connections = 32\nheader_timeout_secs = 1\n";
    let mut config = Config::parse(toml, "test.toml").expect("parses");
    config.server.data_dir = dir.path().to_path_buf();
    let server = Server::start(config).await;
    let limited = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg("--nofile=128:")
        .status()
        .expect("run prlimit");
    assert!(limited.success(), "prlimit failed");

    let addr = server.url("").trim_start_matches("http://").to_owned();
    let mut holder = Command::new("python3")
        .args(["-c", HOLD_PY, &addr])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start the client holding connections");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the holder's word");
    assert_eq!(line.trim(), "holding");

    let client = support::http();
    let answered = tokio::time::timeout(Duration::from_secs(60), async {
        client.get(server.url("/healthz")).send().await
    })
    .await;
    let _ = holder.kill();
    let _ = holder.wait();
    let response = answered
        .expect("/healthz answered while 200 idle connections were open")
        .expect("GET /healthz");
    assert_eq!(response.status(), 200);
    let _ = std::io::stderr().flush();
    server.stop().await;
}
