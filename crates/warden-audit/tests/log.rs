//! The log through its public API: appends and their indexes, queries, the causal closure,
//! checkpoints and proofs, restarts, concurrency, and failing closed when a write fails.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use warden_audit::merkle;
use warden_audit::store::{RowVisitor, StoredCheckpoint, StoredEntry, Tx};
use warden_audit::{
    AuditConfig, AuditError, AuditLog, AuditReader, Companion, DigestKey, Event, EventFilter,
    EventKind, LogKey, LogStore, NoteVerifier, SqliteLogStore, VerifyOptions,
};

/// When this test binary started: events are dated `t0() + n`, as a real writer dates them
/// (a restart checks that the entries it finds unsigned are recent).
fn t0() -> u64 {
    static T0: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *T0.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

fn event(kind: EventKind, session: &str, n: u64, causes: Vec<u64>) -> Event {
    Event {
        kind,
        session: session.into(),
        time_ms: t0() + n,
        body: json!({"n": n}),
        causes,
    }
}

fn open(dir: &Path, every: u64) -> AuditLog {
    let config = AuditConfig {
        checkpoint_every: every,
        checkpoint_ms: 60_000,
        ..AuditConfig::default()
    };
    AuditLog::open(dir, &config).expect("open")
}

#[test]
fn appends_get_consecutive_indexes_and_read_back_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 1000);
    let e = Event {
        kind: EventKind::Call,
        session: "s1".into(),
        time_ms: 5,
        body: json!({"tool": "send_email", "args": {"to": "a@b.c"}}),
        causes: vec![],
    };
    assert_eq!(log.append(&e).expect("append"), 0);
    assert_eq!(log.append(&e).expect("append"), 1);
    let got = log.event(1).expect("read").expect("present");
    assert_eq!(got.index, 1);
    assert_eq!(got.event, e);
    assert!(log.event(2).expect("read").is_none());
}

#[test]
fn events_are_filtered_by_session_kind_time_and_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 1000);
    log.append(&event(EventKind::SessionOpened, "a", 10, vec![]))
        .expect("append");
    log.append(&event(EventKind::Call, "a", 20, vec![0]))
        .expect("append");
    log.append(&event(EventKind::SessionOpened, "b", 30, vec![]))
        .expect("append");
    log.append(&event(EventKind::Call, "a", 40, vec![0]))
        .expect("append");
    let idx = |f: EventFilter| -> Vec<u64> {
        log.events(&f)
            .expect("events")
            .iter()
            .map(|e| e.index)
            .collect()
    };
    let session_a = || EventFilter {
        session: Some("a".into()),
        ..EventFilter::default()
    };
    assert_eq!(idx(session_a()), vec![0, 1, 3]);
    assert_eq!(
        idx(EventFilter {
            kind: Some(EventKind::Call),
            ..session_a()
        }),
        vec![1, 3]
    );
    assert_eq!(
        idx(EventFilter {
            since_ms: Some(t0() + 20),
            until_ms: Some(t0() + 30),
            ..EventFilter::default()
        }),
        vec![1, 2]
    );
    assert_eq!(
        idx(EventFilter {
            limit: 2,
            newest: true,
            ..session_a()
        }),
        vec![1, 3]
    );
}

#[test]
fn the_causes_closure_walks_back_to_the_session_opened_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 1000);
    let opened = log
        .append(&event(EventKind::SessionOpened, "s", 1, vec![]))
        .expect("append");
    let result = log
        .append(&event(EventKind::Result, "s", 2, vec![opened]))
        .expect("append");
    let _unrelated = log
        .append(&event(EventKind::Result, "s", 3, vec![opened]))
        .expect("append");
    let call = log
        .append(&event(EventKind::Call, "s", 4, vec![opened, result]))
        .expect("append");
    let decision = log
        .append(&event(EventKind::Decision, "s", 5, vec![call]))
        .expect("append");
    let chain: Vec<u64> = log
        .causes_closure(decision)
        .expect("closure")
        .iter()
        .map(|e| e.index)
        .collect();
    assert_eq!(chain, vec![opened, result, call, decision]);
}

#[test]
fn a_cause_that_is_not_earlier_is_refused_and_takes_no_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 1000);
    let err = log
        .append(&event(EventKind::Call, "s", 1, vec![0]))
        .expect_err("cause 0 for entry 0");
    assert!(matches!(
        err,
        AuditError::InvalidCause { index: 0, cause: 0 }
    ));
    assert_eq!(
        log.append(&event(EventKind::Call, "s", 1, vec![]))
            .expect("append"),
        0
    );
}

#[test]
fn checkpoints_are_signed_every_n_events_and_verify_with_the_exported_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 10);
    for t in 0..25 {
        log.append(&event(EventKind::Message, "s", t, vec![]))
            .expect("append");
    }
    let verifier = NoteVerifier::parse(&log.public_key()).expect("verifier key");
    // The 10th and 20th appends each triggered a checkpoint; `checkpoint()` adds one at 25.
    let cp = log.checkpoint().expect("checkpoint");
    assert_eq!(cp.checkpoint.size, 25);
    assert_eq!(
        verifier.verify_checkpoint(&cp.note).expect("signature"),
        cp.checkpoint
    );
    let report = log.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{}", report.message());
    assert_eq!(report.checkpoints_checked, 3);
    assert_eq!(report.entries, 25);
    assert!(report.unsigned().is_empty());
}

#[test]
fn inclusion_and_consistency_proofs_verify_against_signed_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 7);
    for t in 0..21 {
        log.append(&event(EventKind::Message, "s", t, vec![]))
            .expect("append");
    }
    log.checkpoint().expect("checkpoint");
    let reader = log.reader();
    let p = reader.inclusion_proof(9).expect("inclusion proof");
    let cp = &p.checkpoint.checkpoint;
    assert_eq!(cp.size, 21);
    merkle::verify_inclusion(&p.leaf_hash, 9, cp.size, &p.path, &cp.root).expect("verifies");
    let c = reader.consistency_proof(7, 21).expect("consistency proof");
    merkle::verify_consistency(
        7,
        21,
        &c.old.checkpoint.root,
        &c.new.checkpoint.root,
        &c.path,
    )
    .expect("verifies");
    assert!(matches!(
        reader.consistency_proof(8, 21),
        Err(AuditError::NotCovered(_))
    ));
}

#[test]
fn a_reopened_log_continues_its_indexes_and_tree_and_keeps_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = {
        let log = open(dir.path(), 4);
        for t in 0..6 {
            log.append(&event(EventKind::Message, "s", t, vec![]))
                .expect("append");
        }
        log.public_key()
    };
    let log = open(dir.path(), 4);
    assert_eq!(log.public_key(), key);
    assert_eq!(
        log.append(&event(EventKind::Message, "s", 6, vec![]))
            .expect("append"),
        6
    );
    drop(log);
    let reader = AuditReader::open(dir.path()).expect("reader");
    let report = reader.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{}", report.message());
    assert_eq!(report.entries, 7);
    assert_eq!(report.signed_size, 7);
}

#[test]
fn concurrent_appends_all_get_distinct_contiguous_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(open(dir.path(), 100));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..250)
                    .map(|i| {
                        log.append(&event(EventKind::Call, &format!("s{t}"), i, vec![]))
                            .expect("append")
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..2000).collect::<Vec<u64>>());
    let report = log.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{}", report.message());
}

/// Batches of two with sixteen appenders: a leader commits batch after batch until its own append
/// is in, then hands the lead on; every append is answered with its own index, and a checkpoint
/// falls due by time alone (no append signs it: `checkpoint_every` is never reached).
#[test]
fn appenders_hand_the_lead_on_and_idle_checkpoints_are_signed_in_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AuditConfig {
        checkpoint_every: 1_000_000,
        checkpoint_ms: 50,
        max_batch: 2,
        ..AuditConfig::default()
    };
    let log = Arc::new(AuditLog::open(dir.path(), &config).expect("open"));
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let session = format!("s{t}");
                        let index = log
                            .append(&event(EventKind::Call, &session, i, vec![]))
                            .expect("append");
                        let read = log.event(index).expect("read").expect("present").event;
                        assert_eq!(
                            (read.session.as_str(), read.time_ms),
                            (session.as_str(), t0() + i)
                        );
                        index
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..800).collect::<Vec<u64>>());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let signed = log
            .reader()
            .latest_checkpoint()
            .expect("read")
            .map(|c| c.checkpoint.size);
        if signed == Some(800) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint covers the 800 entries 10 s after the last append (latest: {signed:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let report = log.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{}", report.message());
}

#[test]
fn two_writers_on_one_data_dir_interleave_without_losing_an_append() {
    // `warden mcp` and a `warden approvals approve` process each open the log.
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(dir.path(), 1000);
    assert_eq!(
        first
            .append(&event(EventKind::SessionOpened, "s", 0, vec![]))
            .expect("append"),
        0
    );
    let second = open(dir.path(), 1000);
    assert_eq!(
        second
            .append(&event(EventKind::Approval, "s", 1, vec![0]))
            .expect("the second writer appends after the first's entries"),
        1
    );
    assert_eq!(
        first
            .append(&event(EventKind::Result, "s", 2, vec![0]))
            .expect("the first writer catches up instead of failing"),
        2
    );
    assert_eq!(
        second
            .append(&event(EventKind::Message, "s", 3, vec![]))
            .expect("and so does the second"),
        3
    );
    drop(second);
    drop(first);
    let reader = AuditReader::open(dir.path()).expect("reader");
    let report = reader.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{}", report.message());
    assert_eq!(report.entries, 4);
    assert_eq!(report.signed_size, 4);
}

#[test]
fn an_origin_other_than_the_one_the_log_was_created_with_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), 10));
    let config = AuditConfig {
        origin: Some("example.com/other".into()),
        ..AuditConfig::default()
    };
    assert!(matches!(
        AuditLog::open(dir.path(), &config),
        Err(AuditError::Config(_))
    ));
}

/// A store whose commits fail while `failing` is set.
struct FlakyStore {
    inner: SqliteLogStore,
    failing: Arc<AtomicBool>,
}

impl LogStore for FlakyStore {
    fn describe(&self) -> String {
        "a flaky store".into()
    }
    fn next_index(&self) -> Result<u64, AuditError> {
        self.inner.next_index()
    }
    fn append(
        &mut self,
        entries: &[StoredEntry],
        with: &[Option<Companion>],
    ) -> Result<(), AuditError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(AuditError::Write("disk full".into()));
        }
        self.inner.append(entries, with)
    }
    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), AuditError> {
        self.inner.put_checkpoint(cp)
    }
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, AuditError> {
        self.inner.entry(index)
    }
    fn leaf_hashes_below(&self, size: u64) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        self.inner.leaf_hashes_below(size)
    }
    fn count(&self) -> Result<u64, AuditError> {
        self.inner.count()
    }
    fn scan(&self, from: u64, visit: &mut RowVisitor<'_>) -> Result<(), AuditError> {
        self.inner.scan(from, visit)
    }
    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        self.inner.checkpoints()
    }
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditError> {
        self.inner.latest_checkpoint()
    }
    fn find(&self, filter: &EventFilter) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        self.inner.find(filter)
    }
}

#[test]
fn a_failed_commit_fails_the_append_and_leaves_no_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("warden.db");
    let failing = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        inner: SqliteLogStore::open(&db, Default::default()).expect("store"),
        failing: Arc::clone(&failing),
    };
    let key = LogKey::from_seed(&[3; 32], "test/log").expect("key");
    let reader = AuditReader::from_store(
        Box::new(SqliteLogStore::open(&db, Default::default()).expect("store")),
        key.verifier().clone(),
    );
    let log = AuditLog::start(
        Box::new(store),
        key,
        reader,
        DigestKey::from_bytes([0; 32]),
        &AuditConfig::default(),
    )
    .expect("start");
    assert_eq!(
        log.append(&event(EventKind::Call, "s", 1, vec![]))
            .expect("append"),
        0
    );
    failing.store(true, Ordering::SeqCst);
    let err = log
        .append(&event(EventKind::Call, "s", 2, vec![]))
        .expect_err("disk full");
    assert!(matches!(err, AuditError::Write(ref why) if why.contains("disk full")));
    failing.store(false, Ordering::SeqCst);
    assert_eq!(
        log.append(&event(EventKind::Call, "s", 3, vec![]))
            .expect("append"),
        1
    );
    log.checkpoint().expect("checkpoint");
    let report = log.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{}", report.message());
    assert_eq!(
        log.event(1).expect("read").expect("present").event.time_ms,
        t0() + 3
    );
}

#[test]
fn an_append_caused_by_another_writers_newer_entry_catches_up_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let late = open(dir.path(), 1000);
    let other = open(dir.path(), 1000);
    let decision = other
        .append(&event(EventKind::Decision, "s", 1, vec![]))
        .expect("the other process's decision");
    let approval = late
        .append(&event(EventKind::Approval, "s", 2, vec![decision]))
        .expect("an approval of a decision another process logged");
    assert_eq!(approval, decision + 1);
}

#[test]
fn start_refuses_when_audit_key_is_missing_on_a_log_with_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = open(dir.path(), 1);
        log.append(&event(EventKind::Call, "s", 1, vec![]))
            .expect("append");
    }
    std::fs::remove_file(dir.path().join("audit.key")).expect("remove the key");
    let err = match AuditLog::open(dir.path(), &AuditConfig::default()) {
        Ok(_) => panic!("a new key was made for a log signed with another"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("audit.key") && err.contains("it is missing"),
        "{err}"
    );
    assert!(err.contains("Restore audit.key from a backup"), "{err}");
    assert!(
        !dir.path().join("audit.key").exists(),
        "no key was created in its place"
    );
}

#[test]
fn a_damaged_audit_pub_is_rewritten_from_the_key_and_the_checkpoints_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let named = AuditConfig {
        origin: Some("example.org/warden".into()),
        checkpoint_every: 1,
        ..AuditConfig::default()
    };
    let public_key = {
        let log = AuditLog::open(dir.path(), &named).expect("open");
        log.append(&event(EventKind::Call, "s", 1, vec![]))
            .expect("append");
        log.public_key()
    };
    // What a file-system failure left of an unsynced write.
    std::fs::write(dir.path().join("audit.pub"), "").expect("truncate");
    let log = AuditLog::open(dir.path(), &AuditConfig::default()).expect("start");
    assert_eq!(log.public_key(), public_key);
    drop(log);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("audit.pub")).expect("audit.pub"),
        format!("{public_key}\n")
    );
    let report = AuditReader::open(dir.path())
        .expect("reader")
        .verify(&VerifyOptions::default())
        .expect("verify");
    assert!(report.ok(), "{}", report.message());
}

#[test]
fn an_append_after_warden_db_was_deleted_fails_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 1000);
    log.append(&event(EventKind::Call, "s", 1, vec![]))
        .expect("append");
    for file in ["warden.db", "warden.db-wal", "warden.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(file));
    }
    let err = log
        .append(&event(EventKind::Call, "s", 2, vec![]))
        .expect_err("the log's file is gone");
    assert!(
        err.to_string()
            .contains("warden.db was deleted or replaced while Warden ran"),
        "{err}"
    );
}

/// A companion write is in the entry's transaction: its row is there with the entry's index
/// when the append returns, and when it fails the entry is not in the log either (the next
/// append takes the same index). Under concurrency, a failing companion fails only its own
/// append, whatever batch it was committed in.
#[test]
fn a_companion_write_commits_with_its_entry_or_neither_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), 1000);
    let db = dir.path().join(warden_audit::DB_FILE);
    rusqlite::Connection::open(&db)
        .expect("open")
        .execute_batch("CREATE TABLE rows (entry INTEGER PRIMARY KEY, who TEXT NOT NULL)")
        .expect("table");
    let row = |who: &'static str| -> Companion {
        Arc::new(move |tx, index| {
            if who.starts_with("fail") {
                return Err(format!("{who} refuses"));
            }
            let Tx::Sqlite(conn) = tx else {
                return Err("not SQLite".into());
            };
            conn.execute(
                "INSERT INTO rows (entry, who) VALUES (?1, ?2)",
                rusqlite::params![index as i64, who],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
    };
    let e = event(EventKind::Call, "s1", 1, vec![]);
    assert_eq!(log.append_with(&e, Some(row("first"))).expect("append"), 0);
    let failed = log.append_with(&e, Some(row("fail-1")));
    assert!(
        matches!(&failed, Err(AuditError::Write(why)) if why.contains("fail-1 refuses")),
        "{failed:?}"
    );
    assert_eq!(log.append_with(&e, Some(row("second"))).expect("append"), 1);

    let log = Arc::new(log);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let log = log.clone();
            let who: &'static str = if i % 5 == 0 { "fail-many" } else { "many" };
            std::thread::spawn(move || {
                let e = event(EventKind::Call, "s2", 10 + i, vec![]);
                (who, log.append_with(&e, Some(row(who))))
            })
        })
        .collect();
    for t in threads {
        let (who, result) = t.join().expect("thread");
        assert_eq!(result.is_ok(), who == "many", "{who}: {result:?}");
    }
    let conn = rusqlite::Connection::open(&db).expect("open");
    let (rows, entries): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM rows), (SELECT COUNT(*) FROM entries)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!(
        (rows, entries),
        (2 + 12, 2 + 12),
        "one row per entry, no more, no less"
    );
    let unmatched: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM entries WHERE idx NOT IN (SELECT entry FROM rows)",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(unmatched, 0);
    let report = log.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{report:?}");
}

/// Another process may open the log (`warden approvals approve` beside a running `warden mcp`)
/// while this one appends: start-up reads the number of entries and the highest index as of
/// one moment, so appends in between never look like deleted entries.
#[test]
fn opening_the_log_while_another_writer_appends_never_sees_it_damaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let writer = Arc::new(open(dir.path(), 1_000_000));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (writer, stop) = (writer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                writer
                    .append(&event(EventKind::Call, "busy", n, vec![]))
                    .expect("append");
                n += 1;
            }
            n
        })
    };
    for _ in 0..100 {
        let other = open(dir.path(), 1_000_000);
        drop(other);
    }
    stop.store(true, Ordering::SeqCst);
    let appended = appender.join().expect("appender");
    assert!(appended > 0);
}
