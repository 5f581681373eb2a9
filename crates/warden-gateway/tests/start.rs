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

/// Runs SQL on the data dir's database, as someone editing it by hand would.
fn edit_db(dir: &Path, sql: &str) {
    let conn = warden_store::rusqlite::Connection::open(dir.join("warden.db")).expect("open");
    conn.execute_batch(sql).expect("edit");
}

#[test]
fn start_refuses_when_the_audit_log_was_emptied_but_the_store_has_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = used_data_dir(dir.path());
    edit_db(dir.path(), "DELETE FROM entries; DELETE FROM checkpoints;");
    let err = start_error(dir.path());
    assert!(
        err.contains("warden.db holds sessions that the audit log does not record"),
        "{err}"
    );
    assert!(err.contains(&session), "names the session: {err}");
    assert!(
        err.contains("Put back the warden.db") && err.contains("aside"),
        "says how to recover: {err}"
    );
}

#[test]
fn start_refuses_when_the_store_lost_its_sessions_but_the_audit_log_has_decisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = used_data_dir(dir.path());
    edit_db(
        dir.path(),
        "DELETE FROM approvals; DELETE FROM steps; DELETE FROM snapshots; DELETE FROM sessions;",
    );
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

/// Every step is one write: its store row names the audit entry committed with it, and the
/// two agree in number (a step's entry and row are in one transaction).
#[test]
fn each_step_and_its_audit_entry_are_in_one_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = used_data_dir(dir.path());
    let conn =
        warden_store::rusqlite::Connection::open(dir.path().join("warden.db")).expect("open");
    let rows: Vec<(i64, String, i64)> = conn
        .prepare("SELECT s.seq, e.kind, s.audit_index FROM steps s JOIN entries e ON e.idx = s.audit_index WHERE s.session_id = ?1 ORDER BY s.seq")
        .expect("prepare")
        .query_map([&session], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let steps: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM steps WHERE session_id = ?1",
            [&session],
            |r| r.get(0),
        )
        .expect("count");
    assert!(!rows.is_empty());
    assert_eq!(
        rows.len() as i64,
        steps,
        "every step names an entry in the same database: {rows:?}"
    );
    assert!(
        rows.iter().any(|(_, kind, _)| kind == "decision"),
        "{rows:?}"
    );
    assert!(
        !dir.path().join("audit.db").exists(),
        "no separate audit database"
    );
}

/// A data dir an older Warden wrote (its log alone in audit.db) starts: the log moves into
/// warden.db, checks as before, and the old file is kept aside.
#[test]
fn an_older_data_dir_with_a_separate_audit_db_is_moved_in_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let session = used_data_dir(dir.path());
    // Make it an older layout: the log's tables in audit.db, none in warden.db.
    let conn =
        warden_store::rusqlite::Connection::open(dir.path().join("warden.db")).expect("open");
    let old = dir.path().join("audit.db");
    conn.execute("ATTACH DATABASE ?1 AS old", [old.to_str().expect("utf-8")])
        .expect("attach");
    conn.execute_batch(
        "CREATE TABLE old.entries AS SELECT * FROM main.entries; \
         CREATE TABLE old.checkpoints AS SELECT * FROM main.checkpoints; \
         DROP TABLE main.entries; DROP TABLE main.checkpoints; DETACH DATABASE old;",
    )
    .expect("split");
    drop(conn);
    let entries_before = warden_audit::AuditReader::open(dir.path())
        .expect("a reader reads the old layout where it is")
        .verify(&Default::default())
        .expect("verify");
    assert!(entries_before.ok(), "{entries_before:?}");

    let rt = warden_gateway::runtime(config(dir.path())).expect("the older data dir starts");
    assert!(!old.exists(), "audit.db was set aside");
    assert!(dir.path().join("audit.db.moved").exists());
    let report = rt
        .audit()
        .expect("a log")
        .verify(&Default::default())
        .expect("verify");
    assert!(report.ok(), "{report:?}");
    // The session goes on where it was.
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
    assert_ne!(
        record.decision.verdict,
        warden_model::Verdict::Deny,
        "{record:?}"
    );
    drop(rt);
    warden_gateway::runtime(config(dir.path())).expect("and starts again");
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
    for file in ["warden.db", "warden.db-wal", "warden.db-shm"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

#[cfg(unix)]
#[test]
fn databases_others_could_read_are_narrowed_to_their_owner_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    used_data_dir(dir.path());
    std::fs::set_permissions(
        dir.path().join("warden.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let _rt = warden_gateway::runtime(config(dir.path())).expect("restart");
    assert_eq!(mode(&dir.path().join("warden.db")), 0o600);
}

#[test]
fn a_decision_after_warden_db_was_deleted_while_running_is_denied_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = warden_gateway::runtime(config(dir.path())).expect("start");
    let session = history(&rt);
    remove_db(dir.path(), "warden.db");
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
            .contains("warden.db was deleted or replaced while Warden ran"),
        "{}",
        reason.message
    );
}
