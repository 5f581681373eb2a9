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
    history(&rt)
}

/// Opens a session and decides one call in it; the session's id.
fn history(rt: &warden_gateway::Runtime) -> String {
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

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[test]
fn a_new_data_dir_and_its_databases_are_private_to_their_owner() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("state");
    // While it runs: SQLite removes the -wal and -shm files when the last connection closes.
    let rt = warden_gateway::runtime(config(&dir)).expect("a fresh data dir starts");
    history(&rt);
    assert_eq!(mode(&dir), 0o700, "the data dir");
    for file in [
        "warden.db",
        "warden.db-wal",
        "warden.db-shm",
        "audit.db",
        "audit.db-wal",
        "audit.db-shm",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

#[cfg(unix)]
#[test]
fn databases_others_could_read_are_narrowed_to_their_owner_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    used_data_dir(dir.path());
    for file in ["warden.db", "audit.db"] {
        std::fs::set_permissions(
            dir.path().join(file),
            std::fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
    }
    let _rt = warden_gateway::runtime(config(dir.path())).expect("restart");
    assert_eq!(mode(&dir.path().join("warden.db")), 0o600);
    assert_eq!(mode(&dir.path().join("audit.db")), 0o600);
}

#[test]
fn a_decision_after_audit_db_was_deleted_while_running_is_denied_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = warden_gateway::runtime(config(dir.path())).expect("start");
    let session = history(&rt);
    remove_db(dir.path(), "audit.db");
    let record = rt
        .decide(
            &session,
            warden_model::Call {
                tool: "pay".into(),
                args: [("invoice".to_string(), json!("8"))].into(),
                call_id: "c2".into(),
                upstream: None,
            },
        )
        .expect("a decision");
    assert_eq!(record.decision.verdict, warden_model::Verdict::Deny);
    let reason = &record.decision.reasons[0];
    assert_eq!(reason.policy, "warden.record");
    assert!(
        reason
            .message
            .contains("audit.db was deleted or replaced while Warden ran"),
        "{}",
        reason.message
    );
}
