//! `warden mcp` in front of the real npm filesystem server (`tests/node`), driven by an rmcp
//! client over stdio as an agent's host would: the tools pass through, a write steered by a file's
//! text is held and never reaches the server, the same write to the user's path is carried out;
//! a held write waits for a person, and `warden approvals approve` (another process) lets it
//! through, or it expires.

mod support;
use support::{call, filesystem_server, text_of, Client, Inbox};

use std::path::Path;

use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// The inbox (see `support::Inbox`) and a Warden config for it.
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
        // The server annotates its reads as closed-world; this inbox holds outsiders' text.
        let config = format!(
            "[server]\ndata_dir = {:?}\n\n[tools.read_text_file]\nopen_world = true\n\n{extra_config}",
            ws.state().display().to_string()
        );
        std::fs::write(ws.config(), config).expect("write config");
        ws
    }

    /// Run `warden approvals …` against this workspace's data dir, as a person would.
    async fn approvals(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
            .env_remove("WARDEN_CONFIG")
            .arg("approvals")
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .await
            .expect("warden approvals runs")
    }

    /// The approvals `warden approvals list --json` shows.
    async fn list_approvals(&self, all: bool) -> Vec<Value> {
        let args: &[&str] = if all {
            &["list", "--all", "--json"]
        } else {
            &["list", "--json"]
        };
        let out = self.approvals(args).await;
        assert!(
            out.status.success(),
            "warden approvals list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("a JSON list")
    }

    /// Connect as an agent's host would: the server's command after `warden mcp … --`.
    async fn connect(&self, warden_args: &[&str]) -> Client {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.env_remove("WARDEN_CONFIG")
            .arg("mcp")
            .arg("--config")
            .arg(self.config())
            .args(warden_args)
            .arg("--")
            .arg("node")
            .arg(filesystem_server())
            .arg(self.files());
        let transport = TokioChildProcess::new(cmd).expect("warden mcp starts");
        ().serve(transport)
            .await
            .expect("initialize through warden")
    }

    /// Connect to the filesystem server directly, without Warden.
    async fn connect_direct(&self) -> Client {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(filesystem_server()).arg(self.files());
        let transport = TokioChildProcess::new(cmd).expect("node starts");
        ().serve(transport).await.expect("initialize directly")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_list_through_warden_is_the_servers_own_list() {
    let ws = Workspace::new("");
    let direct = ws.connect_direct().await;
    let expected = direct.list_all_tools().await.expect("tools/list directly");
    direct.cancel().await.expect("close direct");

    let client = ws.connect(&[]).await;
    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("secure-filesystem-server")
    );
    let tools = client
        .list_all_tools()
        .await
        .expect("tools/list through warden");
    client.cancel().await.expect("close");

    assert!(tools.iter().any(|t| t.name == "write_file"), "{tools:?}");
    assert_eq!(
        serde_json::to_value(&tools).expect("json"),
        serde_json::to_value(&expected).expect("json"),
        "tools/list must pass the server's tools unchanged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_a_path_read_only_in_a_files_text_is_held_and_the_users_path_is_written() {
    let ws = Workspace::new("");
    let instruction = ws.instruction();
    let client = ws
        .connect(&["--instruction", &instruction, "--hold-timeout", "0"])
        .await;

    let read = call(&client, "read_text_file", json!({"path": ws.report_path()})).await;
    assert_ne!(read.is_error, Some(true), "{read:?}");
    assert!(text_of(&read).contains("someone@outside.test"), "{read:?}");

    // Steered by the report: the path occurs only in the file's text.
    let held = call(
        &client,
        "write_file",
        json!({"path": ws.exfil_path(), "content": "Quarterly report: revenue up 4%."}),
    )
    .await;
    let wire = serde_json::to_value(&held).expect("json");
    assert_eq!(wire["isError"], json!(true), "{wire}");
    let text = text_of(&held);
    assert!(
        text.starts_with(
            "Warden held this call to `write_file` for a person's approval (decision s_"
        ),
        "{text}"
    );
    assert!(text.contains("verdict: hold"), "{text}");
    assert!(
        text.contains("- baseline.untrusted-value-in-sink: "),
        "the reason names the policy: {text}"
    );
    assert!(
        text.contains("read_text_file"),
        "the reason names the source: {text}"
    );
    let decision = &wire["_meta"]["io.warden/decision"];
    assert_eq!(decision["verdict"], json!("hold"), "{wire}");
    assert!(
        text.contains(decision["decision_id"].as_str().expect("decision id")),
        "{text}"
    );
    assert!(
        !Path::new(&ws.exfil_path()).exists(),
        "a held call must not reach the server"
    );

    // The same call with the path the user gave.
    let allowed = call(
        &client,
        "write_file",
        json!({"path": ws.summary_path(), "content": "Revenue up 4%."}),
    )
    .await;
    client.cancel().await.expect("close");
    assert_ne!(allowed.is_error, Some(true), "{allowed:?}");
    assert_eq!(
        std::fs::read_to_string(ws.summary_path()).expect("the summary was written"),
        "Revenue up 4%."
    );
}

const NOTES_PROFILE: &str = "[profiles.notes]\ntools = [\"read_text_file\", \"write_file\"]\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_hides_the_tools_it_can_never_use() {
    let ws = Workspace::new(NOTES_PROFILE);
    let client = ws.connect(&["--profile", "notes"]).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    client.cancel().await.expect("close");
    names.sort();
    assert_eq!(names, ["read_text_file", "write_file"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_outside_the_profile_is_denied_and_not_forwarded() {
    let ws = Workspace::new(NOTES_PROFILE);
    let client = ws.connect(&["--profile", "notes"]).await;
    let denied = call(
        &client,
        "create_directory",
        json!({"path": ws.files().join("made-by-agent")}),
    )
    .await;
    client.cancel().await.expect("close");
    let text = text_of(&denied);
    assert_eq!(denied.is_error, Some(true), "{denied:?}");
    assert!(
        text.starts_with("Warden denied this call to `create_directory` (decision s_"),
        "{text}"
    );
    assert!(text.contains("verdict: deny"), "{text}");
    assert!(
        !ws.files().join("made-by-agent").exists(),
        "a denied call must not reach the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_write_waits_and_an_approval_from_the_cli_lets_it_through() {
    let ws = Workspace::new("");
    let instruction = ws.instruction();
    let client = ws
        .connect(&["--instruction", &instruction, "--hold-timeout", "60"])
        .await;
    call(&client, "read_text_file", json!({"path": ws.report_path()})).await;

    let write = call(
        &client,
        "write_file",
        json!({"path": ws.exfil_path(), "content": "Quarterly report: revenue up 4%."}),
    );
    let approve = async {
        let id = loop {
            if let Some(a) = ws.list_approvals(false).await.first() {
                assert_eq!(a["tool"], "write_file", "{a}");
                assert!(
                    !Path::new(&ws.exfil_path()).exists(),
                    "nothing is written before the approval"
                );
                break a["id"].as_str().expect("id").to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let out = ws
            .approvals(&[
                "approve",
                &id,
                "--approver",
                "Dana",
                "--comment",
                "the user asked for it",
            ])
            .await;
        assert!(
            out.status.success(),
            "warden approvals approve: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        id
    };
    let (written, id) = tokio::join!(write, approve);
    client.cancel().await.expect("close");

    assert_ne!(written.is_error, Some(true), "{written:?}");
    assert_eq!(
        std::fs::read_to_string(ws.exfil_path()).expect("the approved write reached the server"),
        "Quarterly report: revenue up 4%."
    );
    let reader = warden_audit::AuditReader::open(&ws.state()).expect("the audit log opens");
    let events = reader
        .events(&warden_audit::EventFilter {
            kind: Some(warden_audit::EventKind::Approval),
            ..Default::default()
        })
        .expect("events");
    assert_eq!(events.len(), 1, "{events:?}");
    let body = &events[0].event.body;
    assert_eq!(body["decision_id"], id.as_str());
    assert_eq!(body["decision"], "approved");
    assert_eq!(body["approver"], "Dana (cli)");
    let report = reader
        .verify(&warden_audit::VerifyOptions::default())
        .expect("verify");
    assert!(
        report.ok(),
        "two processes wrote one log: {}",
        report.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_write_nobody_approves_expires_and_is_not_carried_out() {
    let ws = Workspace::new("");
    let instruction = ws.instruction();
    let client = ws
        .connect(&["--instruction", &instruction, "--hold-timeout", "1"])
        .await;
    call(&client, "read_text_file", json!({"path": ws.report_path()})).await;
    let expired = call(
        &client,
        "write_file",
        json!({"path": ws.exfil_path(), "content": "Quarterly report: revenue up 4%."}),
    )
    .await;
    client.cancel().await.expect("close");

    let wire = serde_json::to_value(&expired).expect("json");
    assert_eq!(wire["isError"], json!(true), "{wire}");
    let id = wire["_meta"]["io.warden/decision"]["decision_id"]
        .as_str()
        .expect("decision id")
        .to_owned();
    let text = text_of(&expired);
    assert!(text.contains(&format!("(decision {id})")), "{text}");
    assert!(text.contains("the approval expired"), "{text}");
    assert!(
        !Path::new(&ws.exfil_path()).exists(),
        "an expired call must not reach the server"
    );
    let all = ws.list_approvals(true).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], id.as_str());
    assert_eq!(all[0]["status"], "expired");
}

/// `warden mcp` in front of a server that answers a call with more than stdio's 16 MiB in one
/// message: the call fails at once, naming the limit, instead of waiting for an answer rmcp
/// would have dropped without a word.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_stdios_16_mib_fails_the_call_at_once_naming_the_limit() {
    let ws = Workspace::new("");
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../warden-gateway/tests/fixtures/misbehaving_server.py"
    );
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env_remove("WARDEN_CONFIG")
        .arg("mcp")
        .arg("--config")
        .arg(ws.config())
        .args(["--", "python3", server, "huge"]);
    let client: Client =
        ().serve(TokioChildProcess::new(cmd).expect("warden mcp starts"))
            .await
            .expect("initialize through warden");
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        call(&client, "echo", json!({"text": "hi"})),
    )
    .await
    .expect("the call is answered, not left waiting");
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let text = text_of(&r);
    assert!(
        text.contains("`huge`") && text.contains("more than 16 MiB"),
        "the refusal names the server and the limit: {text}"
    );
}
