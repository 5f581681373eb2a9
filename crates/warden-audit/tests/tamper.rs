//! Tampering with the stored log through the SQLite file itself, the way an attacker with the
//! file would: `verify` must fail and name the first bad entry, and an untouched log verifies.

use std::path::Path;

use rusqlite::{params, Connection};
use serde_json::json;
use warden_audit::merkle::leaf_hash;
use warden_audit::{
    AuditConfig, AuditLog, AuditReader, Event, EventKind, ProblemKind, VerifyOptions, VerifyReport,
};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

const HOUR_MS: u64 = 3_600_000;

fn config() -> AuditConfig {
    AuditConfig {
        checkpoint_every: 5,
        checkpoint_ms: 60_000,
        ..AuditConfig::default()
    }
}

/// A log of 20 events written just now, with signed checkpoints at 5, 10, 15 and 20.
fn written_log(dir: &Path) {
    written_log_at(dir, now_ms());
}

/// The same log, its events dated from `base_ms` on (one millisecond apart).
fn written_log_at(dir: &Path, base_ms: u64) {
    let log = AuditLog::open(dir, &config()).expect("open");
    for i in 0..20u64 {
        log.append(&Event {
            kind: EventKind::Call,
            session: "s1".into(),
            time_ms: base_ms + i,
            body: json!({"principal": "alice", "tool": "pay", "amount": i}),
            causes: vec![],
        })
        .expect("append");
    }
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("warden.db")).expect("open db")
}

fn entry(conn: &Connection, idx: u64) -> Vec<u8> {
    conn.query_row(
        "SELECT entry FROM entries WHERE idx = ?1",
        params![idx as i64],
        |r| r.get(0),
    )
    .expect("row")
}

fn set_entry(conn: &Connection, idx: u64, bytes: &[u8], leaf: Option<&[u8]>) {
    match leaf {
        Some(l) => conn.execute(
            "UPDATE entries SET entry = ?1, leaf_hash = ?2 WHERE idx = ?3",
            params![bytes, l, idx as i64],
        ),
        None => conn.execute(
            "UPDATE entries SET entry = ?1 WHERE idx = ?2",
            params![bytes, idx as i64],
        ),
    }
    .expect("update");
}

fn verify(dir: &Path) -> VerifyReport {
    AuditReader::open(dir)
        .expect("reader")
        .verify(&VerifyOptions::default())
        .expect("verify runs")
}

fn assert_first_problem(report: &VerifyReport, kind: ProblemKind, index: u64) {
    let p = report
        .first_problem()
        .unwrap_or_else(|| panic!("tampering went unnoticed: {}", report.message()));
    assert_eq!((p.kind, p.index), (kind, Some(index)), "{}", p.message);
    assert!(
        p.message.contains(&index.to_string()),
        "the message names the entry: {}",
        p.message
    );
}

fn edited(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .expect("utf8")
        .replace("alice", "mallory")
        .into_bytes()
}

#[test]
fn an_untouched_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let report = verify(dir.path());
    assert!(report.ok(), "{}", report.message());
    assert_eq!(report.entries, 20);
    assert_eq!(report.checkpoints_checked, 4);
    assert!(report.unsigned().is_empty());
}

#[test]
fn an_edited_field_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    set_entry(&conn, 7, &edited(&entry(&conn, 7)), None);
    assert_first_problem(&verify(dir.path()), ProblemKind::Edited, 7);
}

#[test]
fn an_edit_with_a_recomputed_leaf_hash_is_caught_by_the_next_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let forged = edited(&entry(&conn, 7));
    set_entry(&conn, 7, &forged, Some(&leaf_hash(&forged)));
    // Entries 0..5 still match the checkpoint at 5; the one at 10 does not: the damage is in
    // 5..=9, and 5 is the first entry nothing signed vouches for any more.
    let report = verify(dir.path());
    assert_first_problem(&report, ProblemKind::RootMismatch, 5);
    assert!(report
        .first_problem()
        .expect("problem")
        .message
        .contains("from 5 to 9"));
}

#[test]
fn a_deleted_entry_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    db(dir.path())
        .execute("DELETE FROM entries WHERE idx = 7", [])
        .expect("delete");
    assert_first_problem(&verify(dir.path()), ProblemKind::Missing, 7);
}

#[test]
fn a_deletion_hidden_by_renumbering_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    conn.execute("DELETE FROM entries WHERE idx = 7", [])
        .expect("delete");
    for idx in 8..20 {
        conn.execute(
            "UPDATE entries SET idx = ?1 WHERE idx = ?2",
            params![idx - 1, idx],
        )
        .expect("renumber");
    }
    assert_first_problem(&verify(dir.path()), ProblemKind::OutOfPlace, 7);
}

#[test]
fn reordered_entries_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let (a, b) = (entry(&conn, 3), entry(&conn, 8));
    // Whole rows swap places, leaf hashes with them, so each row is self-consistent.
    set_entry(&conn, 3, &b, Some(&leaf_hash(&b)));
    set_entry(&conn, 8, &a, Some(&leaf_hash(&a)));
    let report = verify(dir.path());
    assert_first_problem(&report, ProblemKind::OutOfPlace, 3);
    assert!(report
        .first_problem()
        .expect("problem")
        .message
        .contains("entry 8"));
}

#[test]
fn a_truncated_log_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    db(dir.path())
        .execute("DELETE FROM entries WHERE idx >= 12", [])
        .expect("truncate");
    assert_first_problem(&verify(dir.path()), ProblemKind::Truncated, 12);
}

#[test]
fn a_truncation_that_also_removes_checkpoints_is_caught_by_a_checkpoint_kept_outside() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let saved = AuditReader::open(dir.path())
        .expect("reader")
        .latest_checkpoint()
        .expect("read")
        .expect("signed");
    let conn = db(dir.path());
    conn.execute("DELETE FROM entries WHERE idx >= 12", [])
        .expect("truncate");
    conn.execute("DELETE FROM checkpoints WHERE tree_size > 10", [])
        .expect("remove evidence");
    // Without outside evidence the shortened log looks like a log with two unsigned entries.
    let alone = verify(dir.path());
    assert!(alone.ok(), "{}", alone.message());
    assert_eq!(alone.unsigned(), 10..12);
    let with_saved = AuditReader::open(dir.path())
        .expect("reader")
        .verify(&VerifyOptions {
            external: Some(("saved.checkpoint".into(), saved.note)),
            verifier: None,
            checkpoint_ms: None,
        })
        .expect("verify");
    assert_first_problem(&with_saved, ProblemKind::Truncated, 12);
}

/// Entry 19 again as entry 20, for a larger amount and dated `time_ms`.
fn forged_entry_20(conn: &Connection, time_ms: u64) -> Vec<u8> {
    let e = entry(conn, 19);
    let original: serde_json::Value = serde_json::from_slice(&e).expect("json");
    let old_time = original["time_ms"].as_u64().expect("time");
    String::from_utf8(e)
        .expect("utf8")
        .replace("{\"index\":19,", "{\"index\":20,")
        .replace("\"amount\":19", "\"amount\":1000000")
        .replace(
            &format!("\"time_ms\":{old_time},"),
            &format!("\"time_ms\":{time_ms},"),
        )
        .into_bytes()
}

/// Appends `forged` as entry 20, filed as the writer files it, with `leaf` as its leaf hash.
fn insert_entry_20(conn: &Connection, forged: &[u8], leaf: &[u8]) {
    let time_ms = serde_json::from_slice::<serde_json::Value>(forged).expect("json")["time_ms"]
        .as_i64()
        .expect("time");
    conn.execute(
        "INSERT INTO entries (idx, entry, leaf_hash, session, kind, time_ms) \
         VALUES (20, ?1, ?2, 's1', 'call', ?3)",
        params![forged, leaf, time_ms],
    )
    .expect("insert");
}

fn leaf_of(conn: &Connection, idx: u64) -> Vec<u8> {
    conn.query_row(
        "SELECT leaf_hash FROM entries WHERE idx = ?1",
        params![idx as i64],
        |r| r.get(0),
    )
    .expect("leaf")
}

#[test]
fn an_appended_forged_entry_without_a_matching_leaf_hash_is_an_edit() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let forged = forged_entry_20(&conn, now_ms());
    insert_entry_20(&conn, &forged, &leaf_of(&conn, 19));
    assert_first_problem(&verify(dir.path()), ProblemKind::Edited, 20);
}

#[test]
fn a_forged_entry_dated_before_the_last_checkpoint_fails_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let forged = forged_entry_20(&conn, now_ms() - HOUR_MS);
    insert_entry_20(&conn, &forged, &leaf_hash(&forged));
    let report = verify(dir.path());
    assert_first_problem(&report, ProblemKind::Unsigned, 20);
    assert!(
        report.message().contains("added outside Warden"),
        "{}",
        report.message()
    );
}

#[test]
fn a_log_far_older_than_checkpoint_ms_without_a_checkpoint_fails_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log_at(dir.path(), now_ms() - 2 * HOUR_MS);
    db(dir.path())
        .execute("DELETE FROM checkpoints", [])
        .expect("delete");
    let report = verify(dir.path());
    assert_first_problem(&report, ProblemKind::Unsigned, 0);
    assert!(report.message().contains("0..20"), "{}", report.message());
}

#[test]
fn the_unsigned_tail_a_killed_writer_left_verifies_as_not_yet_covered() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    db(dir.path())
        .execute("DELETE FROM checkpoints WHERE tree_size = 20", [])
        .expect("delete");
    let report = verify(dir.path());
    assert!(report.ok(), "{}", report.message());
    assert_eq!(report.unsigned(), 15..20);
}

fn start_error(dir: &Path) -> String {
    match AuditLog::open(dir, &config()) {
        Ok(_) => panic!("the log started on a damaged log"),
        Err(e) => e.to_string(),
    }
}

fn checkpoint_sizes(conn: &Connection) -> Vec<i64> {
    let mut stmt = conn
        .prepare("SELECT tree_size FROM checkpoints ORDER BY tree_size")
        .expect("prepare");
    let sizes = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<Vec<i64>, _>>()
        .expect("rows");
    sizes
}

#[test]
fn start_refuses_to_sign_a_forged_entry_dated_before_the_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let forged = forged_entry_20(&conn, now_ms() - HOUR_MS);
    insert_entry_20(&conn, &forged, &leaf_hash(&forged));
    let err = start_error(dir.path());
    assert!(err.contains("entries 20..21"), "{err}");
    assert!(
        err.contains("DELETE FROM entries WHERE idx >= 20"),
        "the refusal says how to recover: {err}"
    );
    assert_eq!(
        checkpoint_sizes(&conn),
        [5, 10, 15, 20],
        "nothing was signed"
    );
}

#[test]
fn resuming_recomputes_the_unsigned_tails_leaf_hashes_from_their_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    // The bytes of a forged entry 20 under the leaf hash of entry 19: a writer that trusted the
    // stored hash would sign a tree whose entry 20 is not these bytes.
    let forged = forged_entry_20(&conn, now_ms());
    insert_entry_20(&conn, &forged, &leaf_of(&conn, 19));
    let err = start_error(dir.path());
    assert!(err.contains("entry 20 was changed"), "{err}");
    assert!(err.contains("warden audit verify"), "{err}");
    assert_eq!(
        checkpoint_sizes(&conn),
        [5, 10, 15, 20],
        "nothing was signed"
    );
}

#[test]
fn an_edited_session_column_hides_nothing_from_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    db(dir.path())
        .execute("UPDATE entries SET session = 's2' WHERE idx = 7", [])
        .expect("update");
    let report = verify(dir.path());
    assert_first_problem(&report, ProblemKind::Misfiled, 7);
    let message = &report.first_problem().expect("problem").message;
    assert!(
        message.contains("`s2`") && message.contains("`s1`"),
        "{message}"
    );
}

#[test]
fn an_edited_kind_or_time_column_hides_nothing_from_verify() {
    for edit in [
        "UPDATE entries SET kind = 'message' WHERE idx = 7",
        "UPDATE entries SET time_ms = 0 WHERE idx = 7",
        "UPDATE entries SET time_ms = 'soon' WHERE idx = 7",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        written_log(dir.path());
        db(dir.path()).execute(edit, []).expect("update");
        assert_first_problem(&verify(dir.path()), ProblemKind::Misfiled, 7);
    }
}

#[test]
fn start_refuses_a_misfiled_entry_after_the_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    conn.execute("DELETE FROM checkpoints WHERE tree_size = 20", [])
        .expect("delete");
    conn.execute("UPDATE entries SET session = 's2' WHERE idx = 17", [])
        .expect("update");
    let err = start_error(dir.path());
    assert!(
        err.contains("entry 17 is filed under session `s2`"),
        "{err}"
    );
}

#[test]
fn start_refuses_a_log_whose_latest_checkpoint_does_not_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let note: String = conn
        .query_row(
            "SELECT note FROM checkpoints WHERE tree_size = 20",
            [],
            |r| r.get(0),
        )
        .expect("note");
    conn.execute(
        "UPDATE checkpoints SET note = ?1 WHERE tree_size = 20",
        params![note.replacen("\n20\n", "\n21\n", 1)],
    )
    .expect("update");
    let err = start_error(dir.path());
    assert!(
        err.contains("the latest checkpoint (stored at size 20) does not verify"),
        "{err}"
    );
    assert!(
        err.contains("moving the data dir aside"),
        "the refusal says how to recover: {err}"
    );
}

#[test]
fn start_refuses_a_log_with_a_deleted_signed_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    db(dir.path())
        .execute("DELETE FROM entries WHERE idx = 3", [])
        .expect("delete");
    let err = start_error(dir.path());
    assert!(err.contains("1 entries were deleted"), "{err}");
}

#[test]
fn start_refuses_a_log_with_swapped_entries_after_the_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    conn.execute("DELETE FROM checkpoints WHERE tree_size = 20", [])
        .expect("delete");
    let (a, b) = (entry(&conn, 16), entry(&conn, 17));
    set_entry(&conn, 16, &b, Some(&leaf_hash(&b)));
    set_entry(&conn, 17, &a, Some(&leaf_hash(&a)));
    let err = start_error(dir.path());
    assert!(
        err.contains("entry 16 holds the event written as entry 17"),
        "{err}"
    );
}

#[test]
fn start_signs_the_tail_a_killed_writer_left_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    db(dir.path())
        .execute("DELETE FROM checkpoints WHERE tree_size = 20", [])
        .expect("delete");
    let log = AuditLog::open(dir.path(), &config()).expect("a killed writer's tail is resumed");
    assert_eq!(log.unsigned_at_start(), 15..20);
    drop(log);
    let report = verify(dir.path());
    assert!(report.ok(), "{}", report.message());
    assert!(report.unsigned().is_empty(), "{}", report.message());
}

#[test]
fn an_edited_checkpoint_does_not_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let note: String = conn
        .query_row(
            "SELECT note FROM checkpoints WHERE tree_size = 10",
            [],
            |r| r.get(0),
        )
        .expect("note");
    conn.execute(
        "UPDATE checkpoints SET note = ?1 WHERE tree_size = 10",
        params![note.replacen("\n10\n", "\n11\n", 1)],
    )
    .expect("update");
    let report = verify(dir.path());
    let p = report.first_problem().expect("a problem");
    assert_eq!(p.kind, ProblemKind::BadCheckpoint, "{}", p.message);
    assert!(p.message.contains("size 10"), "{}", p.message);
}

#[test]
fn a_checkpoint_signs_its_time_and_a_moved_stored_time_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let (note, time_ms): (String, i64) = conn
        .query_row(
            "SELECT note, time_ms FROM checkpoints WHERE tree_size = 10",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("checkpoint");
    assert!(
        note.contains(&format!("\nTimestamp: {}000000\n", time_ms)),
        "the signing time is in the signed text: {note}"
    );
    conn.execute(
        "UPDATE checkpoints SET time_ms = time_ms - 3600000 WHERE tree_size = 10",
        [],
    )
    .expect("update");
    let report = verify(dir.path());
    let p = report.first_problem().expect("a problem");
    assert_eq!(p.kind, ProblemKind::BadCheckpoint, "{}", p.message);
    assert!(
        p.message.contains("size 10") && p.message.contains("signed Timestamp"),
        "{}",
        p.message
    );
}
