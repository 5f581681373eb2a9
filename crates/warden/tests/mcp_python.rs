//! Warden in front of the real npm filesystem server, driven by an agent written with the
//! official Python MCP SDK (PyPI `mcp`, `tests/python/agent.py`): over streamable HTTP in both
//! protocol eras (2025-11-25 with `initialize` and `Mcp-Session-Id`; 2026-07-28 stateless) and
//! over stdio (`warden mcp`). In each, the agent reads a report whose text carries an
//! instruction and an outside address; its write to that address is held and reaches the server
//! only once a person approves it (and the approver is recorded); its write to the path from the
//! user's instruction goes through at once.

mod support;
use support::{filesystem_server, python, start_serve, Inbox};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const AGENT_KEY: &str = "agent-key-for-the-python-tests";
const APPROVER_KEY: &str = "approver-key-for-the-python-tests";
const AGENT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/agent.py");

/// The inbox, with a config for it: an agent's and an approver's API key, a held call waits a
/// minute for a person, and the filesystem server as the one upstream.
fn inbox() -> Inbox {
    inbox_where("")
}

/// [`inbox`], with more `[mcp]` settings (`confirm = "user"`).
fn inbox_where(mcp: &str) -> Inbox {
    let inbox = Inbox::new();
    let key = |name: &str, key: &str, role: &str| {
        format!(
            "[[api_keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nprincipals = [\"*\"]\n\
             profiles = [\"*\"]\nrole = \"{role}\"\n\n",
            warden_gateway::runtime::sha256_hex(key)
        )
    };
    // The server annotates its reads as closed-world; this inbox holds outsiders' text.
    let config = format!(
        "[server]\ndata_dir = {state:?}\n\n[mcp]\nhold_timeout_secs = 60\n{mcp}\n\n\
         [tools.read_text_file]\nopen_world = true\n\n{}{}\
         [[upstreams]]\nname = \"files\"\ncommand = [\"node\", {:?}, {:?}]\n",
        key("bot", AGENT_KEY, "agent"),
        key("security-desk", APPROVER_KEY, "approver"),
        filesystem_server().display().to_string(),
        inbox.files().display().to_string(),
        state = inbox.state().display().to_string(),
    );
    std::fs::write(inbox.config(), config).expect("write config");
    inbox
}

/// Read the report, write where its text says, then write where the user said.
fn plan(inbox: &Inbox, era: &str) -> Value {
    json!([
        {"tool": "read_text_file", "arguments": {"path": inbox.report_path()}},
        {"tool": "write_file", "arguments": {"path": inbox.exfil_path(), "content": format!("copy ({era})")}},
        {"tool": "write_file", "arguments": {"path": inbox.summary_path(), "content": format!("summary ({era})")}},
    ])
}

/// Start `agent.py` with these arguments and feed it the plan.
async fn start_agent(args: &[String], plan: &Value) -> tokio::process::Child {
    let python = python("mcp, httpx2");
    let mut child = tokio::process::Command::new(&python)
        .arg(AGENT_PY)
        .args(args)
        .env_remove("WARDEN_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the Python MCP agent starts");
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin
        .write_all(plan.to_string().as_bytes())
        .await
        .expect("write the plan");
    drop(stdin);
    child
}

/// Wait for the agent; its JSON lines (the first says the protocol and the tools).
async fn finish(agent: tokio::process::Child) -> Vec<Value> {
    let out = tokio::time::timeout(Duration::from_secs(120), agent.wait_with_output())
        .await
        .expect("the agent finishes within 2 minutes")
        .expect("agent.py runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "agent.py failed:\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Session termination failed"),
        "the SDK's DELETE at the end was answered as it expects: {stderr}"
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The agent's report of a call, checked to have succeeded.
fn succeeded<'a>(lines: &'a [Value], i: usize, tool: &str) -> &'a Value {
    let line = &lines[i];
    assert_eq!(line["tool"], tool, "{lines:#?}");
    assert_eq!(line["is_error"], false, "call {i}: {line}");
    line
}

/// `warden serve` on `inbox`'s config, on a free loopback port: the process and its address.
fn serve(inbox: &Inbox) -> (support::Killed, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env_remove("WARDEN_CONFIG")
        .args(["serve", "--config"])
        .arg(inbox.config())
        .args(["--listen", "127.0.0.1:0"]);
    start_serve(cmd)
}

/// Open a Warden session for alice with `inbox`'s instruction, as the agent's key; its token.
async fn open_session(addr: &str, inbox: &Inbox) -> String {
    let body = json!({"principal": "alice", "instruction": inbox.instruction()});
    support::open_session(addr, Some(AGENT_KEY), body).await.1
}

/// Wait until Warden holds a call; check that it reached nothing yet, and give its id.
async fn held(pending: impl Fn() -> Vec<Value>, exfil: &str) -> String {
    for _ in 0..600 {
        if let Some(a) = pending().first() {
            assert_eq!(a["tool"], "write_file", "{a}");
            assert!(
                !Path::new(exfil).exists(),
                "nothing is written before the approval"
            );
            return a["id"].as_str().expect("an approval id").to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no call was held within a minute")
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_over_streamable_http_in_both_eras_a_steered_write_waits_for_a_person() {
    let inbox = inbox();
    let (_serve, addr) = serve(&inbox);
    let http = support::http();

    for (era, mode) in [("2025-11-25", "legacy"), ("2026-07-28", "2026-07-28")] {
        let _ = std::fs::remove_file(inbox.exfil_path());
        let token = open_session(&addr, &inbox).await;
        let args: Vec<String> = [
            "--url",
            &format!("http://{addr}/mcp"),
            "--token",
            &token,
            "--mode",
            mode,
        ]
        .map(String::from)
        .into();
        let agent = start_agent(&args, &plan(&inbox, era)).await;

        let pending = || {
            let http = http.clone();
            let url = format!("http://{addr}/v1/approvals");
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new()
                    .expect("runtime")
                    .block_on(async {
                        let list: Value = http
                            .get(url)
                            .bearer_auth(APPROVER_KEY)
                            .send()
                            .await
                            .expect("GET /v1/approvals")
                            .json()
                            .await
                            .expect("JSON");
                        list["approvals"].as_array().cloned().unwrap_or_default()
                    })
            })
            .join()
            .expect("listing approvals")
        };
        let id = held(pending, &inbox.exfil_path()).await;
        let resolved = http
            .post(format!("http://{addr}/v1/approvals/{id}"))
            .bearer_auth(APPROVER_KEY)
            .json(&json!({"decision": "approve", "approver": "Dana", "comment": "checked with Alice"}))
            .send()
            .await
            .expect("POST /v1/approvals/{id}");
        assert!(
            resolved.status().is_success(),
            "{:?}",
            resolved.text().await
        );

        let lines = finish(agent).await;
        assert_eq!(lines[0]["protocol"], era, "{lines:#?}");
        assert!(
            lines[0]["tools"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("write_file"))),
            "{lines:#?}"
        );
        assert!(succeeded(&lines, 1, "read_text_file")["text"]
            .as_str()
            .is_some_and(|t| t.contains("Quarterly report")));
        succeeded(&lines, 2, "write_file");
        succeeded(&lines, 3, "write_file");
        assert_eq!(
            std::fs::read_to_string(inbox.exfil_path()).expect("the approved write happened"),
            format!("copy ({era})")
        );
        assert_eq!(
            std::fs::read_to_string(inbox.summary_path()).expect("the user's write happened"),
            format!("summary ({era})")
        );
        let approval: Value = http
            .get(format!("http://{addr}/v1/approvals/{id}"))
            .bearer_auth(APPROVER_KEY)
            .send()
            .await
            .expect("GET /v1/approvals/{id}")
            .json()
            .await
            .expect("JSON");
        assert_eq!(approval["status"], "approved", "{approval}");
        assert!(
            approval["approver"]
                .as_str()
                .is_some_and(|a| a.contains("Dana") && a.contains("security-desk")),
            "the person and the key are recorded: {approval}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_over_stdio_a_steered_write_waits_for_a_person() {
    let inbox = inbox();
    let agent = start_agent(&stdio_args(&inbox, None), &plan(&inbox, "stdio")).await;

    let approvals = |args: &[&str]| warden_output(&inbox, &[&["approvals"], args].concat());
    let pending = || {
        serde_json::from_slice::<Vec<Value>>(&approvals(&["list", "--json"])).expect("a JSON list")
    };
    let id = held(pending, &inbox.exfil_path()).await;
    approvals(&["approve", &id, "--approver", "Dana", "--comment", "checked"]);

    let lines = finish(agent).await;
    // The wrapper is transparent: it speaks exactly its server's version, which the SDK's
    // `server/discover` probe finds to be the handshake era.
    assert_eq!(lines[0]["protocol"], "2025-11-25", "{lines:#?}");
    succeeded(&lines, 1, "read_text_file");
    succeeded(&lines, 2, "write_file");
    succeeded(&lines, 3, "write_file");
    assert_eq!(
        std::fs::read_to_string(inbox.exfil_path()).expect("the approved write happened"),
        "copy (stdio)"
    );
    assert_eq!(
        std::fs::read_to_string(inbox.summary_path()).expect("the user's write happened"),
        "summary (stdio)"
    );
    let all: Vec<Value> =
        serde_json::from_slice(&approvals(&["list", "--all", "--json"])).expect("a JSON list");
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["status"], "approved");
    assert_eq!(all[0]["approver"], "Dana (cli)");
}

/// `warden mcp` for `inbox`, under the Python agent (which answers held calls with `confirm`,
/// if given).
fn stdio_args(inbox: &Inbox, confirm: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = confirm
        .map(|c| vec!["--confirm".to_owned(), c.to_owned()])
        .unwrap_or_default();
    args.extend(["--stdio", "--"].map(String::from));
    args.push(env!("CARGO_BIN_EXE_warden").into());
    args.extend(["mcp", "--config"].map(String::from));
    args.push(inbox.config().display().to_string());
    args.extend(["--principal", "alice", "--instruction"].map(String::from));
    args.push(inbox.instruction());
    args.extend(["--", "node"].map(String::from));
    args.push(filesystem_server().display().to_string());
    args.push(inbox.files().display().to_string());
    args
}

/// What `warden ARGS --config <inbox's config>` prints, checked to have succeeded.
fn warden_output(inbox: &Inbox, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .env_remove("WARDEN_CONFIG")
        .args(args)
        .arg("--config")
        .arg(inbox.config())
        .output()
        .expect("warden runs");
    assert!(
        out.status.success(),
        "warden {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every approval of `inbox`'s data dir, as `warden approvals list --all --json` prints them.
fn all_approvals(inbox: &Inbox) -> Vec<Value> {
    let out = warden_output(inbox, &["approvals", "list", "--all", "--json"]);
    serde_json::from_slice(&out).expect("a JSON list")
}

/// The audit log's approval events for `inbox`.
fn approval_events(inbox: &Inbox) -> Vec<Value> {
    let out = warden_output(inbox, &["audit", "export", "--format", "json"]);
    String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|e| e["kind"] == "approval")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_confirm_user_a_held_call_is_put_to_the_user_in_their_client_and_their_answer_decides()
{
    for answer in ["yes", "no"] {
        let inbox = inbox_where("confirm = \"user\"");
        let agent = start_agent(&stdio_args(&inbox, Some(answer)), &plan(&inbox, answer)).await;
        let lines = finish(agent).await;
        succeeded(&lines, 1, "read_text_file");
        // The steered write was put to the user: what it is, and why Warden held it.
        let asked = lines[2]["asked"]
            .as_str()
            .unwrap_or_else(|| panic!("{lines:#?}"));
        assert!(
            asked.contains("`write_file`") && asked.contains(&inbox.exfil_path()),
            "{asked}"
        );
        assert!(asked.contains("Allow this one call?"), "{asked}");
        let approvals = all_approvals(&inbox);
        assert_eq!(approvals.len(), 1, "{approvals:#?}");
        assert_eq!(
            approvals[0]["approver"],
            "alice (the user, in their MCP client)"
        );
        let events = approval_events(&inbox);
        assert_eq!(events.len(), 1, "{events:#?}");
        let body = &events[0]["body"];
        assert_eq!(body["confirmed_by"], "user", "{body}");
        assert_eq!(body["question"], asked, "the question is recorded as asked");
        if answer == "yes" {
            assert_eq!(approvals[0]["status"], "approved");
            assert_eq!(body["answer"]["action"], "accept", "{body}");
            assert_eq!(body["answer"]["content"]["allow"], true, "{body}");
            succeeded(&lines, 3, "write_file");
            assert_eq!(
                std::fs::read_to_string(inbox.exfil_path()).expect("the confirmed write happened"),
                "copy (yes)"
            );
        } else {
            assert_eq!(approvals[0]["status"], "denied");
            assert_eq!(body["answer"]["action"], "decline", "{body}");
            assert_eq!(lines[3]["is_error"], true, "{lines:#?}");
            assert!(
                lines[3]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("alice (the user")),
                "{lines:#?}"
            );
            assert!(!Path::new(&inbox.exfil_path()).exists(), "nothing written");
        }
        // The user's own write goes through at once, unasked.
        succeeded(&lines, 4, "write_file");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_confirm_user_over_streamable_http_the_user_is_asked_and_a_client_that_cannot_be_asked_waits_for_a_person(
) {
    let inbox = inbox_where("confirm = \"user\"");
    let (_serve, addr) = serve(&inbox);
    let http = support::http();
    let open = || open_session(&addr, &inbox);
    let args = |token: &str, mode: &str, confirm: Option<&str>| {
        let mut args: Vec<String> = confirm
            .map(|c| vec!["--confirm".to_owned(), c.to_owned()])
            .unwrap_or_default();
        args.extend(
            [
                "--url",
                &format!("http://{addr}/mcp"),
                "--token",
                token,
                "--mode",
                mode,
            ]
            .map(String::from),
        );
        args
    };

    // 2025-11-25, a client that can be asked: the user says yes, and the write goes through.
    let token = open().await;
    let agent = start_agent(
        &args(&token, "legacy", Some("yes")),
        &plan(&inbox, "legacy"),
    )
    .await;
    let lines = finish(agent).await;
    assert!(
        lines[2]["asked"]
            .as_str()
            .is_some_and(|q| q.contains("`write_file`")),
        "{lines:#?}"
    );
    succeeded(&lines, 3, "write_file");
    assert_eq!(
        std::fs::read_to_string(inbox.exfil_path()).expect("the confirmed write happened"),
        "copy (legacy)"
    );
    std::fs::remove_file(inbox.exfil_path()).expect("remove");

    // 2026-07-28, where a server may not ask: the held call answers `input_required` with the
    // question, the SDK asks the user and calls again with the answer, and the answer decides
    // the held call (not decided again). No refuses it.
    for answer in ["no", "yes"] {
        let token = open().await;
        let agent = start_agent(
            &args(&token, "2026-07-28", Some(answer)),
            &plan(&inbox, answer),
        )
        .await;
        let lines = finish(agent).await;
        assert_eq!(lines[0]["protocol"], "2026-07-28", "{lines:#?}");
        assert!(
            lines[2]["asked"]
                .as_str()
                .is_some_and(|q| q.contains("`write_file`") && q.contains("Allow this one call?")),
            "{lines:#?}"
        );
        if answer == "yes" {
            succeeded(&lines, 3, "write_file");
            assert_eq!(
                std::fs::read_to_string(inbox.exfil_path()).expect("the confirmed write happened"),
                "copy (yes)"
            );
        } else {
            assert_eq!(lines[3]["is_error"], true, "{lines:#?}");
            assert!(!Path::new(&inbox.exfil_path()).exists(), "nothing written");
        }
        succeeded(&lines, 4, "write_file");
    }
    std::fs::remove_file(inbox.exfil_path()).expect("remove");
    assert_eq!(all_approvals(&inbox).len(), 3, "one approval per held call");

    // A client that declares no elicitation: the held call waits for a person instead.
    let token = open().await;
    let agent = start_agent(&args(&token, "legacy", None), &plan(&inbox, "unasked")).await;
    let pending = || {
        all_approvals(&inbox)
            .into_iter()
            .filter(|a| a["status"] == "pending")
            .collect::<Vec<_>>()
    };
    let id = held(pending, &inbox.exfil_path()).await;
    let resolved = http
        .post(format!("http://{addr}/v1/approvals/{id}"))
        .bearer_auth(APPROVER_KEY)
        .json(&json!({"decision": "approve", "approver": "Dana"}))
        .send()
        .await
        .expect("POST /v1/approvals/{id}");
    assert!(resolved.status().is_success());
    let lines = finish(agent).await;
    assert!(lines.iter().all(|l| l.get("asked").is_none()), "{lines:#?}");
    succeeded(&lines, 2, "write_file");
    let approvals = all_approvals(&inbox);
    assert_eq!(approvals.len(), 4, "{approvals:#?}");
    let mut approvers: Vec<&str> = approvals
        .iter()
        .filter_map(|a| a["approver"].as_str())
        .collect();
    approvers.sort_unstable();
    assert_eq!(
        approvers,
        [
            "Dana (key security-desk)",
            "alice (the user, in their MCP client)",
            "alice (the user, in their MCP client)",
            "alice (the user, in their MCP client)"
        ]
    );
}

/// The team's conformance fixture (the Python SDK's server), which asks the user through its
/// answer in the 2026-07-28 era (`input_required`).
const FIXTURE_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/server.py");

/// A server of the stateless era asks its user through its answer (2026-07-28 `input_required`,
/// which a handshake session may not carry): through `/mcp` and through `warden mcp`, a client
/// of that era gets the server's own question, answers it, and its retry (the server's
/// `requestState` and the answer, passed on untouched) completes the call.
#[tokio::test(flavor = "multi_thread")]
async fn a_servers_input_required_question_reaches_a_2026_client_through_both_fronts() {
    let python = python("mcp, httpx2");
    let inbox = Inbox::new();
    std::fs::write(
        inbox.config(),
        format!(
            "[server]\ndata_dir = {:?}\n\n[[upstreams]]\nname = \"fixture\"\n\
             command = [{python:?}, {FIXTURE_PY:?}, \"--stdio\"]\n",
            inbox.state().display().to_string(),
        ),
    )
    .expect("write config");
    let plan = json!([{"tool": "test_streaming_elicitation", "arguments": {}}]);
    let answered = |lines: &[Value], front: &str| {
        assert_eq!(lines[0]["protocol"], "2026-07-28", "{front}: {lines:#?}");
        assert_eq!(
            lines[1]["asked"], "Please confirm",
            "{front}: the server's question: {lines:#?}"
        );
        let done = succeeded(lines, 2, "test_streaming_elicitation");
        assert_eq!(
            done["text"], "Streaming elicitation completed: action=accept",
            "{front}: {lines:#?}"
        );
    };

    let (_serve, addr) = serve(&inbox);
    let url = format!("http://{addr}/mcp");
    let args = ["--confirm", "yes", "--mode", "2026-07-28", "--url", &url].map(String::from);
    answered(&finish(start_agent(&args, &plan).await).await, "/mcp");

    let mut args = ["--confirm", "yes", "--mode", "2026-07-28", "--stdio", "--"]
        .map(String::from)
        .to_vec();
    args.push(env!("CARGO_BIN_EXE_warden").into());
    args.extend(["mcp", "--config"].map(String::from));
    args.push(inbox.config().display().to_string());
    args.extend(["--principal", "alice", "--instruction", "Confirm it."].map(String::from));
    args.extend(["--", &python, FIXTURE_PY, "--stdio"].map(String::from));
    answered(&finish(start_agent(&args, &plan).await).await, "warden mcp");
}
