//! `warden serve` as an MCP streamable HTTP front (`/mcp`) in front of two real npm filesystem
//! servers (`tests/node`), driven by an rmcp streamable-HTTP client: both servers' tools are
//! listed under their namespaces, the session opened through the guard API binds the MCP session
//! (its instruction is trusted), a write steered by a file's text is held and never reaches the
//! server, the user's own path is written, and an upstream killed mid-session is started again
//! on the next call while the other keeps working; what a server says before its answer (200
//! progress notifications) reaches the client before that answer, on a busy machine too.

mod support;
use support::{call, filesystem_server, start_serve, text_of, Client, Inbox, Killed};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// Two folders, each served by its own filesystem server started through a shell that records
/// its pid (then `exec`s node, so the pid is the server's): the inbox's files (see
/// `support::Inbox`) and a docs folder; and a Warden config fronting both.
struct Workspace {
    inbox: Inbox,
}

impl std::ops::Deref for Workspace {
    type Target = Inbox;
    fn deref(&self) -> &Inbox {
        &self.inbox
    }
}

impl Workspace {
    fn new(extra_config: &str) -> Workspace {
        let ws = Workspace {
            inbox: Inbox::new(),
        };
        std::fs::create_dir_all(ws.docs()).expect("mkdir");
        std::fs::write(ws.docs().join("readme.txt"), "The docs folder.\n").expect("write doc");
        let upstream = |name: &str, folder: &Path| {
            let script = format!(
                "echo $$ >> '{}'; exec node '{}' '{}'",
                ws.pids(name).display(),
                filesystem_server().display(),
                folder.display()
            );
            format!("[[upstreams]]\nname = \"{name}\"\ncommand = [\"sh\", \"-c\", {script:?}]\n\n")
        };
        // The server annotates its reads as closed-world; this inbox holds outsiders' text.
        let config = format!(
            "[mcp]\nhold_timeout_secs = 0\n\n[tools.read_text_file]\nopen_world = true\n\n{}{}{extra_config}",
            upstream("files", &ws.files()),
            upstream("docs", &ws.docs()),
        );
        std::fs::write(ws.config(), config).expect("write config");
        ws
    }

    fn docs(&self) -> PathBuf {
        self.inbox.dir.path().join("docs")
    }

    fn pids(&self, upstream: &str) -> PathBuf {
        self.inbox.dir.path().join(format!("{upstream}.pids"))
    }

    /// The pids the upstream's processes had, in start order.
    fn started(&self, upstream: &str) -> Vec<i32> {
        std::fs::read_to_string(self.pids(upstream))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Start `warden serve` on a free port; its address.
    fn serve(&self) -> (Killed, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.env_remove("WARDEN_CONFIG")
            .arg("serve")
            .arg("--config")
            .arg(self.config())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.inbox.dir.path().join("state"));
        start_serve(cmd)
    }
}

/// Connect to `/mcp` with these credentials.
async fn connect(addr: &str, bearer: Option<&str>, session: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"));
    if let Some(b) = bearer {
        config = config.auth_header(b.to_owned());
    }
    if let Some(s) = session {
        let mut headers = HashMap::new();
        headers.insert(
            HeaderName::from_static("warden-session"),
            HeaderValue::from_str(s).expect("a header value"),
        );
        config = config.custom_headers(headers);
    }
    let transport = StreamableHttpClientTransport::with_client(support::http(), config);
    ().serve(transport).await.expect("initialize through /mcp")
}

async fn open_session(addr: &str, instruction: &str) -> (String, String) {
    let body = json!({"principal": "alice", "agent": "bot", "instruction": instruction});
    support::open_session(addr, None, body).await
}

/// Whether the process is gone (or a zombie nobody reaped yet).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_upstreams_behind_mcp_a_steered_write_is_held_and_a_killed_upstream_restarts() {
    let ws = Workspace::new("");
    let (_serve, addr) = ws.serve();
    let instruction = format!(
        "Summarise the report {} into {}",
        ws.report_path(),
        ws.summary_path()
    );
    let (session, token) = open_session(&addr, &instruction).await;
    let client = connect(&addr, Some(&token), None).await;
    assert_eq!(
        client
            .peer_info()
            .and_then(|i| i.server_info.as_ref().map(|s| s.name.clone())),
        Some("warden".to_owned())
    );

    let names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for name in [
        "files__read_text_file",
        "files__write_file",
        "docs__read_text_file",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("files__") || n.starts_with("docs__")),
        "{names:?}"
    );

    let read = call(
        &client,
        "files__read_text_file",
        json!({"path": ws.report_path()}),
    )
    .await;
    assert_ne!(read.is_error, Some(true), "{read:?}");
    assert!(text_of(&read).contains("someone@outside.test"), "{read:?}");

    // Steered by the report: the path occurs only in the file's text.
    let held = call(
        &client,
        "files__write_file",
        json!({"path": ws.exfil_path(), "content": "Quarterly report: revenue up 4%."}),
    )
    .await;
    let wire = serde_json::to_value(&held).expect("json");
    assert_eq!(wire["isError"], json!(true), "{wire}");
    let text = text_of(&held);
    assert!(
        text.starts_with(&format!(
            "Warden held this call to `write_file` for a person's approval (decision {session}/"
        )),
        "{text}"
    );
    assert!(
        text.contains("- baseline.untrusted-value-in-sink: "),
        "{text}"
    );
    assert!(
        text.contains("read_text_file"),
        "the reason names the source: {text}"
    );
    assert_eq!(
        wire["_meta"]["io.warden/decision"]["verdict"],
        json!("hold"),
        "{wire}"
    );
    assert!(
        !Path::new(&ws.exfil_path()).exists(),
        "a held call must not reach the server"
    );

    // The path from the session's instruction (opened through the guard API).
    let written = call(
        &client,
        "files__write_file",
        json!({"path": ws.summary_path(), "content": "Revenue up 4%."}),
    )
    .await;
    assert_ne!(written.is_error, Some(true), "{written:?}");
    assert_eq!(
        std::fs::read_to_string(ws.summary_path()).expect("the summary was written"),
        "Revenue up 4%."
    );

    // The calls were decided in the session the token named, on the servers' own tool names.
    let view: Value = support::http()
        .get(format!("http://{addr}/v1/sessions/{session}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET session")
        .json()
        .await
        .expect("JSON");
    let tools: Vec<&str> = view["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["body"]["call"]["tool"].as_str())
        .collect();
    assert_eq!(
        tools,
        ["read_text_file", "write_file", "write_file"],
        "{view}"
    );

    // Kill the `files` server; its next call starts it again, and `docs` is unaffected.
    let first = *ws.started("files").last().expect("files was started");
    let docs_pid = *ws.started("docs").last().expect("docs was started");
    let killed = Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    for _ in 0..100 {
        if dead(first) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dead(first), "the files server was killed");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let docs = call(
        &client,
        "docs__read_text_file",
        json!({"path": ws.docs().join("readme.txt")}),
    )
    .await;
    assert_ne!(docs.is_error, Some(true), "{docs:?}");
    assert!(text_of(&docs).contains("The docs folder."), "{docs:?}");

    let again = call(
        &client,
        "files__read_text_file",
        json!({"path": ws.summary_path()}),
    )
    .await;
    assert_ne!(again.is_error, Some(true), "{again:?}");
    assert!(text_of(&again).contains("Revenue up 4%."), "{again:?}");
    let started = ws.started("files");
    assert_eq!(started.len(), 2, "files was started again: {started:?}");
    assert_ne!(started[1], first);
    assert_eq!(ws.started("docs"), [docs_pid], "docs was not restarted");
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_api_keys_mcp_needs_one_and_binds_a_session_to_the_key() {
    // `warden keys new` makes the pair; this one is fixed for the test.
    let key = "wk_test_key_for_mcp_http";
    let out = Command::new("sh")
        .args(["-c", &format!("printf %s '{key}' | sha256sum")])
        .output()
        .expect("sha256sum runs");
    let digest = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned();
    let ws = Workspace::new(&format!(
        "[[api_keys]]\nname = \"bot\"\nsha256 = \"{digest}\"\nprincipals = [\"*\"]\nprofiles = [\"\"]\n\n\
         [[upstreams]]\nname = \"broken\"\ncommand = [\"sh\", \"-c\", \"exit 3\"]\n"
    ));
    let (_serve, addr) = ws.serve();

    let anonymous = support::http()
        .post(format!("http://{addr}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"}}}),
        )
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(anonymous.status(), 401);

    let client = connect(&addr, Some(key), None).await;
    let read = call(
        &client,
        "docs__read_text_file",
        json!({"path": ws.docs().join("readme.txt")}),
    )
    .await;
    assert_ne!(read.is_error, Some(true), "{read:?}");
    // A server that cannot start: its calls are refused in words, the session goes on.
    let broken = call(
        &client,
        "broken__read_text_file",
        json!({"path": ws.docs().join("readme.txt")}),
    )
    .await;
    assert_eq!(broken.is_error, Some(true), "{broken:?}");
    let text = text_of(&broken);
    assert!(
        text.contains("could not reach the MCP server `broken`"),
        "{text}"
    );
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list with one upstream down")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(
        names.iter().any(|n| n == "docs__read_text_file"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("broken__")),
        "{names:?}"
    );
    let unknown = client
        .call_tool(CallToolRequestParams::new("nowhere__read_text_file"))
        .await;
    assert!(
        unknown.is_err_and(|e| e.to_string().contains("unknown tool")),
        "an unknown namespace is a protocol error"
    );
    client.cancel().await.expect("close");

    // The key's session: principal and agent are the key's name.
    let reader =
        warden_audit::AuditReader::open(&ws.dir.path().join("state")).expect("the audit log opens");
    let opened = reader
        .events(&warden_audit::EventFilter {
            kind: Some(warden_audit::EventKind::SessionOpened),
            ..Default::default()
        })
        .expect("events");
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].event.body["principal"], "bot");
    assert_eq!(opened[0].event.body["agent"], "bot");
    assert_eq!(opened[0].event.body["channel"], "mcp");
}

/// npm server-everything as a remote streamable HTTP server on this port; killed when dropped.
fn remote_everything(port: u16) -> Killed {
    let entry = support::node_package("@modelcontextprotocol/server-everything/dist/index.js");
    let child = Killed(
        Command::new("node")
            .arg(entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node starts server-everything"),
    );
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server-everything did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_http_upstream_is_fronted_beside_a_child_and_reconnected_after_it_restarts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let remote = remote_everything(port);
    let ws = Workspace::new(&format!(
        "[[upstreams]]\nname = \"remote\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n\
         headers = {{ X-Tenant = \"acme\" }}\ntimeout_secs = 2\n"
    ));
    let (_serve, addr) = ws.serve();
    let (_session, token) = open_session(&addr, "Echo hello, then read the docs").await;
    let client = connect(&addr, Some(&token), None).await;
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for name in [
        "remote__echo",
        "files__read_text_file",
        "docs__read_text_file",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }

    let echoed = call(&client, "remote__echo", json!({"message": "hello"})).await;
    assert_ne!(echoed.is_error, Some(true), "{echoed:?}");
    assert!(text_of(&echoed).contains("hello"), "{echoed:?}");

    // The remote server goes away: its calls fail with its name, the others keep working.
    drop(remote);
    let gone = call(&client, "remote__echo", json!({"message": "anyone?"})).await;
    assert_eq!(gone.is_error, Some(true), "{gone:?}");
    assert!(text_of(&gone).contains("`remote`"), "{}", text_of(&gone));
    let docs = call(
        &client,
        "docs__read_text_file",
        json!({"path": ws.docs().join("readme.txt")}),
    )
    .await;
    assert_ne!(docs.is_error, Some(true), "{docs:?}");

    // It comes back (a new process: its old MCP sessions are gone); the next call reconnects.
    let remote = remote_everything(port);
    let back = call(&client, "remote__echo", json!({"message": "back again"})).await;
    assert_ne!(back.is_error, Some(true), "{back:?}");
    assert!(text_of(&back).contains("back again"), "{back:?}");

    // Restarted between two calls: Warden's MCP session there is gone. server-everything
    // answers the stale session with 400 and a JSON-RPC error without an id (the spec says 404,
    // which rmcp's client would answer by opening a new session unnoticed), so the call waits
    // out its `timeout_secs`; the ping after it gets no answer either, and the next call
    // connects afresh.
    drop(remote);
    let _remote = remote_everything(port);
    let lost = call(&client, "remote__echo", json!({"message": "lost"})).await;
    assert_eq!(lost.is_error, Some(true), "{lost:?}");
    let text = text_of(&lost);
    assert!(
        text.contains("did not answer this call to `echo` within 2 s")
            && text.contains("connects to it afresh"),
        "{text}"
    );
    let again = call(&client, "remote__echo", json!({"message": "still here"})).await;
    assert_ne!(again.is_error, Some(true), "{again:?}");
    assert!(text_of(&again).contains("still here"), "{again:?}");
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_is_known_by_its_upstream_and_name_so_alike_names_keep_their_own_traits() {
    let ws = Workspace::new("");
    // The operator vouches for the `docs` server's reads (closed-world: trusted); the `files`
    // server publishes a tool of the same name and keeps its own traits: its annotation says
    // closed-world too, but a server's hint never lowers a guard, so its reads stay untrusted.
    let config = std::fs::read_to_string(ws.config()).expect("read config");
    let scoped = config.replacen(
        "[tools.read_text_file]\nopen_world = true",
        "[tools.read_text_file]\nupstream = \"docs\"\nopen_world = false",
        1,
    );
    assert_ne!(config, scoped, "the config names the tool");
    std::fs::write(ws.config(), scoped).expect("write config");
    let (_serve, addr) = ws.serve();
    let (session, token) = open_session(&addr, "Compare the docs with the report").await;
    let client = connect(&addr, Some(&token), None).await;
    client.list_all_tools().await.expect("tools/list");

    let doc = json!({"path": ws.docs().join("readme.txt")});
    let read = call(&client, "docs__read_text_file", doc).await;
    assert_ne!(read.is_error, Some(true), "{read:?}");
    let report = json!({"path": ws.report_path()});
    let read = call(&client, "files__read_text_file", report).await;
    assert_ne!(read.is_error, Some(true), "{read:?}");

    let view: Value = support::http()
        .get(format!("http://{addr}/v1/sessions/{session}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET session")
        .json()
        .await
        .expect("JSON");
    let steps = view["steps"].as_array().expect("steps");
    let calls: Vec<&Value> = steps.iter().filter_map(|s| s["body"].get("call")).collect();
    assert_eq!(calls.len(), 2, "{view}");
    assert_eq!(calls[0]["upstream"], "docs", "{view}");
    assert_eq!(calls[1]["upstream"], "files", "{view}");
    // Each server's tool list is what the agent read of that server: untrusted, whatever the
    // operator says of one of its tools.
    let integrity = |lists: bool| -> Vec<&str> {
        steps
            .iter()
            .filter(|s| (s["body"]["tool"] == "tools/list") == lists)
            .filter_map(|s| s["body"]["integrity"].as_str())
            .collect()
    };
    assert_eq!(integrity(false), ["trusted", "untrusted"], "{view}");
    assert_eq!(integrity(true), ["untrusted", "untrusted"], "{view}");
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_front_of_several_servers_prompts_are_namespaced_and_resources_routed_by_uri() {
    let everything = support::node_package("@modelcontextprotocol/server-everything/dist/index.js");
    let ws = Workspace::new(&format!(
        "[[upstreams]]\nname = \"ev\"\ncommand = [\"node\", {:?}, \"stdio\"]\n",
        everything.display().to_string()
    ));
    let (_serve, addr) = ws.serve();
    let (session, token) = open_session(&addr, "Use the prompts and resources").await;
    let client = connect(&addr, Some(&token), None).await;
    let caps = client
        .peer_info()
        .map(|i| i.capabilities.clone())
        .expect("initialized");
    assert!(
        caps.prompts.is_some() && caps.resources.is_some(),
        "{caps:?}"
    );

    let prompts: Vec<String> = client
        .list_all_prompts()
        .await
        .expect("prompts/list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(
        prompts.iter().any(|p| p == "ev__simple-prompt"),
        "{prompts:?}"
    );
    assert!(
        prompts.iter().all(|p| p.contains("__")),
        "every prompt names its server: {prompts:?}"
    );
    let prompt = client
        .get_prompt(rmcp::model::GetPromptRequestParams::new(
            "ev__simple-prompt",
        ))
        .await
        .expect("prompts/get");
    assert!(!prompt.messages.is_empty(), "{prompt:?}");
    let unknown = client
        .get_prompt(rmcp::model::GetPromptRequestParams::new(
            "nope__simple-prompt",
        ))
        .await
        .expect_err("an unknown server");
    assert!(
        unknown.to_string().contains("upstreams: docs, ev, files"),
        "{unknown}"
    );

    let resources = client.list_all_resources().await.expect("resources/list");
    let uri = resources
        .iter()
        .map(|r| r.uri.clone())
        .find(|u| u.starts_with("demo://resource/static/document/"))
        .unwrap_or_else(|| panic!("a document among {resources:?}"));
    let read = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(uri.clone()))
        .await
        .expect("resources/read");
    assert!(!read.contents.is_empty(), "{read:?}");
    // A URI nobody listed goes to the only server with resources, which answers for itself.
    let unlisted = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "demo://never/listed",
        ))
        .await
        .expect_err("nobody has it");
    assert!(
        unlisted
            .to_string()
            .contains("demo://never/listed not found"),
        "{unlisted}"
    );

    // What the prompt and the resource brought is observed, as untrusted content of its server.
    let view: Value = support::http()
        .get(format!("http://{addr}/v1/sessions/{session}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET session")
        .json()
        .await
        .expect("JSON");
    let observed: Vec<(&str, &str)> = view["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| {
            Some((
                s["body"]["tool"].as_str()?,
                s["body"]["integrity"].as_str()?,
            ))
        })
        .collect();
    assert_eq!(
        observed,
        [
            ("prompts/get", "untrusted"),
            ("resources/read", "untrusted")
        ],
        "{view}"
    );
    client.cancel().await.expect("close");
}

/// Counts the progress notifications an agent's client receives.
#[derive(Clone, Default)]
struct ProgressSeen(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl ProgressSeen {
    fn count(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl rmcp::ClientHandler for ProgressSeen {
    async fn on_progress(
        &self,
        _params: rmcp::model::ProgressNotificationParam,
        _ctx: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What a server says about a call before answering reaches the agent before the answer, on
/// the answer's own stream: the server sends 200 progress notifications right before its
/// result, and all of them arrive. rmcp hands each notification to a task of its own, so
/// under load the answer used to overtake the last ones, close the stream they belonged on,
/// and leave them nowhere to go (MCP conformance `tools-call-with-progress` failed through
/// Warden on a busy machine). The test keeps every core busy while it calls.
#[tokio::test(flavor = "multi_thread")]
async fn every_progress_notification_sent_before_an_answer_reaches_the_agent() {
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../warden-gateway/tests/fixtures/misbehaving_server.py"
    );
    let ws = Workspace::new(&format!(
        "[[upstreams]]\nname = \"chatty\"\ncommand = [\"python3\", {server:?}, \"chatty\"]\n"
    ));
    let (_serve, addr) = ws.serve();
    let (_session, token) = open_session(&addr, "Run the chatty tool a few times").await;
    let config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
        .auth_header(token);
    let seen = ProgressSeen::default();
    let client = seen
        .clone()
        .serve(StreamableHttpClientTransport::with_client(
            support::http(),
            config,
        ))
        .await
        .expect("initialize through /mcp");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let mut short = Vec::new();
    for round in 1..=10 {
        let before = seen.count();
        let r = client
            .call_tool(CallToolRequestParams::new("chatty__echo"))
            .await
            .expect("tools/call");
        assert_eq!(text_of(&r), "chatted", "{r:?}");
        // The client handles notifications on tasks of its own too: give them a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen.count() < before + 200 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if seen.count() - before != 200 {
            short.push((round, seen.count() - before));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    assert!(
        short.is_empty(),
        "rounds (round, notifications received of 200) that lost some: {short:?}"
    );
    client.cancel().await.expect("close");
}
