//! Warden's outgoing HTTPS (issue 15, items 2 and 3), to a remote MCP server and an OTLP endpoint:
//! the official
//! Python SDK's streamable HTTP server under uvicorn with TLS (`fixtures/tls_server.py`), whose
//! certificate comes from a CA the fixture makes at start. A call works with that CA in the
//! upstream's `ca_file` and fails, saying why, without it; Warden presents the upstream's own
//! credential (a bearer token from a file, or an OAuth client-credentials token it fetches, caches
//! and fetches again before it expires), never the agent's.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{json, Value};
use support::guard::open;
use support::mcp::{connect, text_of, Client};
use support::Server;
use warden_gateway::Config;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls_server.py");

/// The Python with the MCP SDK: `WARDEN_PYTHON`, else the environment `scripts/test` makes.
fn python() -> String {
    let python = std::env::var("WARDEN_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/test-python/bin/python"
        )
        .to_owned()
    });
    let ok = Command::new(&python)
        .args(["-c", "import mcp, uvicorn, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{python} cannot import mcp, uvicorn and cryptography: run `scripts/test` (it installs \
         scripts/test-requirements.txt into target/test-python), or point WARDEN_PYTHON at a \
         Python that has them"
    );
    python
}

/// The HTTPS MCP server, killed when dropped.
struct Upstream {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Upstream {
    fn start(env: &[(&str, &str)]) -> Upstream {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(python())
            .arg(FIXTURE)
            .arg(dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("start the HTTPS MCP server");
        let mut upstream = Upstream {
            child,
            dir,
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while upstream.port == 0 {
            if let Ok(text) = std::fs::read_to_string(upstream.dir.path().join("port")) {
                upstream.port = text.trim().parse().expect("a port number");
            } else if let Ok(Some(status)) = upstream.child.try_wait() {
                panic!("the HTTPS MCP server exited at start: {status}");
            } else {
                assert!(
                    Instant::now() < deadline,
                    "the HTTPS MCP server did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        upstream
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The lines of one of its logs (`auth.log`: the Authorization header of every `/mcp`
    /// request; `tokens.log`: every token its token endpoint issued).
    fn log(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.file(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn issued(&self) -> Vec<Value> {
        self.log("tokens.log")
            .iter()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

/// Warden (zero config but for the upstream `tls`, whose settings are `settings`).
async fn serve(data: &Path, upstream: &Upstream, settings: &str) -> Server {
    let toml = format!(
        "[[upstreams]]\nname = \"tls\"\nurl = \"{}\"\ntimeout_secs = 20\n{settings}\n",
        upstream.url("/mcp")
    );
    let mut config = Config::parse(&toml, "test.toml").expect("the config parses");
    config.validate().expect("the config is valid");
    config.server.data_dir = data.join("state");
    Server::start(config).await
}

async fn echo(client: &Client, text: &str) -> CallToolResult {
    let args = json!({ "text": text })
        .as_object()
        .cloned()
        .expect("object");
    client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await
        .expect("tools/call")
}

fn ca_line(upstream: &Upstream) -> String {
    format!(
        "ca_file = {:?}\n",
        upstream.file("ca.pem").display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_upstream_answers_with_its_ca_file_and_fails_naming_the_certificate_without_it() {
    let upstream = Upstream::start(&[]);
    let data = tempfile::tempdir().expect("tempdir");

    let server = serve(data.path(), &upstream, &ca_line(&upstream)).await;
    let client = connect(&server, None).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        ["echo", "whoami"],
        "one upstream: its tools as it names them"
    );
    let answered = echo(&client, "héllo wörld").await;
    assert_ne!(answered.is_error, Some(true), "{answered:?}");
    assert_eq!(text_of(&answered), "héllo wörld");
    drop(client);
    server.stop().await;

    // Without the CA, the platform's roots vouch for nothing here: the call fails and says so.
    let data = tempfile::tempdir().expect("tempdir");
    let server = serve(data.path(), &upstream, "").await;
    let client = connect(&server, None).await;
    let refused = echo(&client, "hello").await;
    let text = text_of(&refused);
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    assert!(
        text.contains("`tls`") && text.contains("certificate"),
        "{text}"
    );
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bearer_token_from_a_file_reaches_the_upstream_and_the_agents_token_never_does() {
    let token = "upstream-token-7f3a9c";
    let upstream = Upstream::start(&[("TEST_STATIC_TOKEN", token)]);
    let data = tempfile::tempdir().expect("tempdir");
    let token_file = data.path().join("docs-token");
    std::fs::write(&token_file, format!("{token}\n")).expect("write the token");
    let settings = format!(
        "{}bearer_token_file = {:?}\n",
        ca_line(&upstream),
        token_file.display().to_string()
    );
    let server = serve(data.path(), &upstream, &settings).await;

    // The agent authenticates to Warden with its session token; the upstream must not see it.
    let body = json!({"principal": "alice", "instruction": "Echo what I say"});
    let opened = open(&support::http(), &server, None, body).await;
    let client = connect(&server, Some(&opened.token)).await;
    let answered = echo(&client, "ping").await;
    assert_eq!(text_of(&answered), "ping", "{answered:?}");
    drop(client);
    server.stop().await;

    let seen = upstream.log("auth.log");
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|h| h == &format!("Bearer {token}")),
        "every request carries the upstream's token and nothing else: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oauth_token_is_fetched_once_cached_and_fetched_again_before_it_expires() {
    let secret = "client-secret-e1d2";
    let upstream = Upstream::start(&[
        ("TEST_CLIENT_ID", "warden-gw"),
        ("TEST_CLIENT_SECRET", secret),
        ("TEST_TOKEN_TTL", "4"),
    ]);
    let data = tempfile::tempdir().expect("tempdir");
    let secret_file = data.path().join("client-secret");
    std::fs::write(&secret_file, secret).expect("write the secret");
    let oauth = |secret_file: &Path| {
        format!(
            "{}[upstreams.oauth]\ntoken_url = {:?}\nclient_id = \"warden-gw\"\n\
             client_secret_file = {:?}\nscope = \"tools\"\n",
            ca_line(&upstream),
            upstream.url("/token"),
            secret_file.display().to_string()
        )
    };
    let server = serve(data.path(), &upstream, &oauth(&secret_file)).await;
    let client = connect(&server, None).await;
    assert_eq!(text_of(&echo(&client, "one").await), "one");
    assert_eq!(text_of(&echo(&client, "two").await), "two");
    let issued = upstream.issued();
    assert_eq!(
        issued.len(),
        1,
        "one token serves while it is fresh: {issued:?}"
    );
    assert_eq!(issued[0]["auth"], "basic");
    assert_eq!(issued[0]["scope"], "tools");
    assert_eq!(issued[0]["resource"], upstream.url("/mcp"));

    // Three quarters into its four seconds the token is fetched again, before it expires.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(text_of(&echo(&client, "three").await), "three");
    let issued = upstream.issued();
    assert_eq!(issued.len(), 2, "{issued:?}");
    let tokens: Vec<String> = issued
        .iter()
        .map(|t| format!("Bearer {}", t["token"].as_str().unwrap_or("?")))
        .collect();
    let seen = upstream.log("auth.log");
    assert!(
        seen.iter().all(|h| tokens.contains(h)),
        "only tokens Warden obtained reach the upstream: {seen:?}"
    );
    assert!(seen.contains(&tokens[1]), "the new token is used: {seen:?}");
    drop(client);
    server.stop().await;

    // A wrong secret: the token endpoint refuses it, and the call says so.
    let wrong = data.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret").expect("write");
    let data = tempfile::tempdir().expect("tempdir");
    let server = serve(data.path(), &upstream, &oauth(&wrong)).await;
    let client = connect(&server, None).await;
    let refused = echo(&client, "four").await;
    let text = text_of(&refused);
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    assert!(text.contains("invalid_client"), "{text}");
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oauth_token_the_server_revokes_early_is_replaced_and_the_call_goes_through() {
    let upstream = Upstream::start(&[
        ("TEST_CLIENT_ID", "warden-gw"),
        ("TEST_CLIENT_SECRET", "s3"),
        ("TEST_TOKEN_USES", "4"),
    ]);
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("secret"), "s3").expect("write the secret");
    let settings = format!(
        "{}[upstreams.oauth]\ntoken_url = {:?}\nclient_id = \"warden-gw\"\nclient_secret_file = {:?}\n",
        ca_line(&upstream),
        upstream.url("/token"),
        data.path().join("secret").display().to_string()
    );
    let server = serve(data.path(), &upstream, &settings).await;
    let client = connect(&server, None).await;
    // Four requests use the first token up (initialize, initialized, and calls); later calls
    // are refused once with 401, and go through with a new token.
    for text in ["one", "two", "three", "four"] {
        let answered = echo(&client, text).await;
        assert_eq!(text_of(&answered), text, "{answered:?}");
    }
    let issued = upstream.issued();
    assert!(
        issued.len() >= 2,
        "the revoked token was replaced: {issued:?}"
    );
    drop(client);
    server.stop().await;
}

#[test]
fn spans_reach_an_https_otlp_endpoint_whose_ca_is_configured_and_no_other() {
    use warden_gateway::config::TelemetryConfig;
    use warden_gateway::telemetry::Telemetry;
    let upstream = Upstream::start(&[]);
    let session = warden_model::Session {
        id: "s_otlp".into(),
        principal: "alice".into(),
        agent: "bot".into(),
        profile: None,
        task: Default::default(),
        instruction: "Echo".into(),
        channel: "chat".into(),
        opened_at_ms: 0,
    };
    let export = |ca_file: Option<PathBuf>| {
        let config = TelemetryConfig {
            endpoint: Some(upstream.url("")),
            ca_file,
            batch_delay_ms: 10,
            ..TelemetryConfig::default()
        };
        let telemetry = Telemetry::start(&config)
            .expect("the exporter starts")
            .expect("an endpoint is set");
        telemetry.session_opened(&session);
        telemetry.shutdown();
    };
    export(None);
    assert!(
        upstream.log("traces.log").is_empty(),
        "without the CA nothing is sent"
    );
    export(Some(upstream.file("ca.pem")));
    let exports = upstream.log("traces.log");
    assert_eq!(exports.len(), 1, "{exports:?}");
    let export: Value = serde_json::from_str(&exports[0]).expect("a JSON line");
    assert_eq!(export["content_type"], "application/x-protobuf");
    assert!(export["bytes"].as_u64().is_some_and(|b| b > 0), "{export}");
}
