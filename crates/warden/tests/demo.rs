//! `warden demo` as a first-time user runs it: the real binary starts Warden, its built-in MCP
//! mailbox (`warden demo-tools`) and the scripted agent. With `--no-wait` the story ends on its
//! own: the three decisions with their reasons, the audit log's explanation of the held call,
//! the expired approval in the store and an audit log that verifies. Without it, the demo waits
//! until a person signs in to the dashboard with the admin token it printed and approves the
//! held call there, then says the call went through.

mod support;
use support::Killed;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

fn warden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env_remove("WARDEN_CONFIG").env_remove("RUST_LOG");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn data_dir_arg(dir: &Path) -> &str {
    dir.to_str().expect("a UTF-8 temp path")
}

/// The lines of a numbered step (`3. delete_file …`) up to the next step or blank line.
fn step<'a>(out: &'a str, prefix: &str) -> &'a str {
    let start = out
        .find(prefix)
        .unwrap_or_else(|| panic!("no step `{prefix}` in:\n{out}"));
    let rest = &out[start..];
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i)
        .find(|&i| {
            let next = &rest[i + 1..];
            next.is_empty()
                || next.starts_with('\n')
                || next.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .unwrap_or(rest.len());
    &rest[..end]
}

fn approvals(dir: &Path) -> Vec<Value> {
    let out = warden()
        .args(["approvals", "list", "--all", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .expect("warden approvals list runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("approvals as JSON")
}

fn verify(dir: &Path) -> Output {
    warden()
        .args(["audit", "verify", "--data-dir"])
        .arg(dir)
        .output()
        .expect("warden audit verify runs")
}

#[test]
fn demo_allows_the_task_holds_the_injected_send_and_denies_the_out_of_profile_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let out = warden()
        .args(["demo", "--no-wait", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir_arg(&state))
        .output()
        .expect("warden demo runs");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );

    let read = step(&stdout, "1. read_inbox");
    assert!(read.contains("\n   ALLOW "), "{read}");
    assert!(read.contains("2 e-mails"), "{read}");

    let reply = step(&stdout, "2. send_email");
    assert!(reply.contains("\"to\":\"alice@example.com\""), "{reply}");
    assert!(reply.contains("\n   ALLOW "), "{reply}");
    assert!(
        reply.contains("E-mail sent to alice@example.com"),
        "the tool server answered: {reply}"
    );

    let delete = step(&stdout, "3. delete_file");
    assert!(delete.contains("\n   DENY "), "{delete}");
    assert!(
        delete.contains("`delete_file` is not among the tools of task profile `demo.inbox`"),
        "{delete}"
    );

    let held = step(&stdout, "4. send_email");
    assert!(held.contains("\n   HOLD "), "{held}");
    assert!(
        held.contains("[baseline.untrusted-value-in-sink]")
            && held.contains("comes from result of `read_inbox` call"),
        "the hold names the read_inbox result: {held}"
    );

    // The explanation of the held call: the instruction, the untrusted read_inbox result that
    // carried the address, and the held call.
    let explain = stdout
        .split("$ warden audit explain ")
        .nth(1)
        .unwrap_or_else(|| panic!("no explain output in:\n{stdout}"));
    assert!(
        explain.contains("instruction: \"Read my inbox and reply to Alice"),
        "{explain}"
    );
    assert!(
        explain.contains("result of `read_inbox` call") && explain.contains("UNTRUSTED content"),
        "{explain}"
    );
    assert!(
        explain.contains("argument `to` carries a value found only in untrusted content"),
        "{explain}"
    );
    assert!(explain.contains("→ HOLD"), "{explain}");
    assert!(
        stdout.contains("was not carried out"),
        "the agent hears the held call was refused: {stdout}"
    );

    // The dashboard address and an admin token are printed.
    assert!(
        stdout.contains("/ui/  — sign in with the admin token wk_"),
        "{stdout}"
    );

    // The store holds the held call's approval, expired by --no-wait; the audit log verifies.
    let all = approvals(&state);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["tool"], "send_email");
    assert_eq!(all[0]["status"], "expired");
    assert_eq!(all[0]["args"]["to"], "backup-desk@example.net");
    let verified = verify(&state);
    assert!(
        verified.status.success() && text(&verified.stdout).contains("audit log intact"),
        "{}{}",
        text(&verified.stdout),
        text(&verified.stderr)
    );
}

/// Read the demo's stdout until a line containing `want`; every line so far.
fn read_until(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, want: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("no line with `{want}`; stdout so far:\n{}", seen.join("\n"))
            });
        seen.push(line.clone());
        if line.contains(want) {
            return line;
        }
    }
}

fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    line.split(marker)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `{marker}` in {line:?}"))
}

/// `POST /v1/approvals/{id}` approving the call, as a person at the dashboard would.
/// Sign in to the dashboard with the token the demo printed and approve the held call there,
/// as a person would: the sign-in's cookie, its CSRF token, and the page's own origin.
fn approve_in_dashboard(addr: &str, id: &str, token: &str) -> Value {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    tokio.block_on(async {
        let http = support::http();
        let signed_in = http
            .post(format!("http://{addr}/ui/api/login"))
            .json(&json!({"token": token}))
            .send()
            .await
            .expect("POST /ui/api/login");
        assert_eq!(signed_in.status(), 200, "signing in with the printed token");
        let cookie = signed_in
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let me: Value = http
            .get(format!("http://{addr}/ui/api/me"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await
            .expect("GET /ui/api/me")
            .json()
            .await
            .expect("JSON");
        assert_eq!(me["role"], "admin", "{me}");
        let csrf = me["csrf"].as_str().expect("a CSRF token");
        let response = http
            .post(format!("http://{addr}/ui/api/approvals/{id}"))
            .header(reqwest::header::COOKIE, &cookie)
            .header("x-warden-csrf", csrf)
            .header(reqwest::header::ORIGIN, format!("http://{addr}"))
            .json(&json!({"decision": "approve", "comment": "checked with Sam"}))
            .send()
            .await
            .expect("POST /ui/api/approvals/{id}");
        assert_eq!(response.status(), 200, "approving {id}");
        response.json().await.expect("the approval as JSON")
    })
}

#[test]
fn demo_waits_for_a_person_and_the_approved_call_goes_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let mut child = Killed(
        warden()
            .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir_arg(&state))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("warden demo starts"),
    );
    let stdout = child.0.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("[warden demo] {line}");
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let served = read_until(&rx, &mut seen, "Warden serves http://");
    let addr = after(&served, "http://").to_owned();
    let pending = read_until(&rx, &mut seen, "waiting for a person: approval ");
    let id = after(&pending, "approval ").to_owned();
    let token_line = read_until(&rx, &mut seen, "sign in with the admin token ");
    let admin = after(&token_line, "admin token ").to_owned();
    read_until(&rx, &mut seen, "Waiting for a person to approve or deny");

    // A person signs in to the dashboard with the admin token the demo printed, and approves.
    let response = approve_in_dashboard(&addr, &id, &admin);
    assert_eq!(response["status"], "approved", "{response}");

    let outcome = read_until(&rx, &mut seen, "Approval ");
    assert!(
        outcome.contains("approved by demo-admin")
            && outcome
                .contains("the held call went through: E-mail sent to backup-desk@example.net"),
        "{outcome}"
    );
    read_until(&rx, &mut seen, "Still serving");

    // Ctrl-C (SIGTERM here) ends the demo cleanly.
    let term = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let status = child.0.wait().expect("the demo exits");
    assert!(status.success(), "{status}");

    let all = approvals(&state);
    assert_eq!(all[0]["status"], "approved", "{all:?}");
    assert_eq!(all[0]["approver"], "demo-admin", "{all:?}");
    let verified = verify(&state);
    assert!(verified.status.success(), "{}", text(&verified.stderr));
}
