//! Tampering with the stored log through the SQLite file itself, the way an attacker with the
//! file would: `verify` must fail and name the first bad entry, and an untouched log verifies.

use std::path::Path;

use rusqlite::{params, Connection};
use serde_json::json;
use warden_audit::merkle::leaf_hash;
use warden_audit::{
    AuditConfig, AuditLog, AuditReader, Event, EventKind, ProblemKind, VerifyOptions, VerifyReport,
};

/// A log of 20 events with signed checkpoints at 5, 10, 15 and 20.
fn written_log(dir: &Path) {
    let config = AuditConfig {
        checkpoint_every: 5,
        checkpoint_ms: 60_000,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(dir, &config).expect("open");
    for i in 0..20u64 {
        log.append(&Event {
            kind: EventKind::Call,
            session: "s1".into(),
            time_ms: 1000 + i,
            body: json!({"principal": "alice", "tool": "pay", "amount": i}),
            causes: vec![],
        })
        .expect("append");
    }
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("audit.db")).expect("open db")
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
        })
        .expect("verify");
    assert_first_problem(&with_saved, ProblemKind::Truncated, 12);
}

fn forged_entry_20(conn: &Connection) -> Vec<u8> {
    let e = entry(conn, 19);
    String::from_utf8(e)
        .expect("utf8")
        .replace("{\"index\":19,", "{\"index\":20,")
        .replace("\"amount\":19", "\"amount\":1000000")
        .into_bytes()
}

#[test]
fn an_appended_forged_entry_without_a_matching_leaf_hash_is_an_edit() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let forged = forged_entry_20(&conn);
    let stale_leaf: Vec<u8> = conn
        .query_row("SELECT leaf_hash FROM entries WHERE idx = 19", [], |r| {
            r.get(0)
        })
        .expect("leaf");
    conn.execute(
        "INSERT INTO entries (idx, entry, leaf_hash, session, kind, time_ms) \
         VALUES (20, ?1, ?2, 's1', 'call', 2000)",
        params![forged, stale_leaf],
    )
    .expect("insert");
    assert_first_problem(&verify(dir.path()), ProblemKind::Edited, 20);
}

#[test]
fn an_appended_forged_entry_with_its_leaf_hash_is_reported_unsigned() {
    let dir = tempfile::tempdir().expect("tempdir");
    written_log(dir.path());
    let conn = db(dir.path());
    let forged = forged_entry_20(&conn);
    conn.execute(
        "INSERT INTO entries (idx, entry, leaf_hash, session, kind, time_ms) \
         VALUES (20, ?1, ?2, 's1', 'call', 2000)",
        params![forged, &leaf_hash(&forged)[..]],
    )
    .expect("insert");
    let report = verify(dir.path());
    assert!(report.ok(), "{}", report.message());
    assert_eq!(report.unsigned(), 20..21);
    assert!(report.message().contains("20..21"), "{}", report.message());
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
