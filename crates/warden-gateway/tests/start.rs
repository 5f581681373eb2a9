//! What `warden serve` (and every command that opens a data dir) checks before it starts: the
//! session store and the audit log tell the same history.

use std::path::Path;

use serde_json::json;
use warden_gateway::runtime::OpenRequest;
use warden_gateway::Config;

fn config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.data_dir = dir.to_path_buf();
    config
}

/// A data dir with one session and one decision in it, as a stopped Warden leaves it.
fn used_data_dir(dir: &Path) -> String {
    let rt = warden_gateway::runtime(config(dir)).expect("a fresh data dir starts");
    let (session, _) = rt
        .open_session(OpenRequest {
            principal: "alice".into(),
            agent: "bot".into(),
            profile: None,
            task: Default::default(),
            instruction: "pay invoice 7".into(),
            channel: "test".into(),
        })
        .expect("open");
    rt.decide(
        &session.id,
        warden_model::Call {
            tool: "pay".into(),
            args: [("invoice".to_string(), json!("7"))].into(),
            call_id: "c1".into(),
            upstream: None,
        },
    )
    .expect("decide");
    session.id
}

fn start_error(dir: &Path) -> String {
    match warden_gateway::runtime(config(dir)) {
        Ok(_) => panic!("Warden started on a data dir whose files disagree"),
        Err(e) => e.to_string(),
    }
}

fn remove_db(dir: &Path, name: &str) {
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.join(format!("{name}{suffix}"));
        if path.exists() {
            std::fs::remove_file(&path).expect("remove");
        }
    }
}

#[test]
fn a_used_data_dir_starts_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    used_data_dir(dir.path());
    warden_gateway::runtime(config(dir.path())).expect("restart");
}

#[test]
fn start_refuses_when_audit_log_was_deleted_but_store_has_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = used_data_dir(dir.path());
    remove_db(dir.path(), "audit.db");
    let err = start_error(dir.path());
    assert!(
        err.contains("warden.db holds sessions that the audit log"),
        "{err}"
    );
    assert!(err.contains(&session), "names the session: {err}");
    assert!(
        err.contains("Put back the audit.db") && err.contains("aside"),
        "says how to recover: {err}"
    );
}

#[test]
fn start_refuses_when_session_store_was_deleted_but_audit_log_has_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = used_data_dir(dir.path());
    remove_db(dir.path(), "warden.db");
    let err = start_error(dir.path());
    assert!(
        err.contains(&format!("records decisions in session `{session}`")),
        "{err}"
    );
    assert!(
        err.contains("Put back the warden.db") && err.contains("aside"),
        "says how to recover: {err}"
    );
}
