//! The fleet's store and log on a real PostgreSQL server (a throwaway cluster each test binary
//! starts: `warden_pg::testing::TestServer`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde_json::json;
use warden_audit::{
    AuditConfig, AuditError, AuditLog, Companion, Event, EventKind, Tx, VerifyOptions,
};
use warden_model::{CarriedLabel, Session};
use warden_pg::testing::TestServer;
use warden_pg::{Database, PgLogStore, PgStore};
use warden_store::{
    Approval, ApprovalStatus, PinCheck, Resolution, Resolved, SessionStore, StoredStep,
};

fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::start().expect("start a PostgreSQL server for the tests"))
}

/// A new database on the shared server.
fn database(name: &str) -> Database {
    let config = server().store_config(name).expect("create database");
    Database::from_config(&config)
        .expect("config")
        .expect("a url")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn session(id: &str) -> Session {
    serde_json::from_value(json!({
        "id": id, "principal": "alice", "agent": "a1", "profile": "default",
        "instruction": "pay the invoice", "opened_at_ms": now_ms()
    }))
    .expect("session")
}

fn step(seq: u64) -> StoredStep {
    StoredStep {
        seq,
        kind: "call".into(),
        body: format!("{{\"seq\":{seq}}}"),
        audit: None,
    }
}

/// A replica's log: its own data dir holding the fleet's keys (copied from `keys`, when given).
fn replica_log(db: &Database, dir: &Path, keys: Option<&Path>) -> AuditLog {
    replica_log_signing(db, dir, keys, 60_000)
}

fn replica_log_signing(
    db: &Database,
    dir: &Path,
    keys: Option<&Path>,
    checkpoint_ms: u64,
) -> AuditLog {
    if let Some(keys) = keys {
        for f in ["audit.key", "audit.hmac", "audit.pub"] {
            std::fs::copy(keys.join(f), dir.join(f)).expect("copy key");
        }
    }
    let config = AuditConfig {
        checkpoint_every: 50,
        checkpoint_ms,
        ..AuditConfig::default()
    };
    AuditLog::open_in(
        dir,
        &config,
        Box::new(PgLogStore::open(db).expect("writer store")),
        Box::new(PgLogStore::open(db).expect("reader store")),
    )
    .expect("open log")
}

#[test]
fn the_session_store_keeps_sessions_steps_labels_pins_and_approvals() {
    let db = database("store_basics");
    let store = PgStore::open(&db).expect("open");
    store
        .create_session(&session("s1"), "hash1")
        .expect("create");
    assert!(matches!(
        store.create_session(&session("s1"), "hash1"),
        Err(warden_store::StoreError::Duplicate(_))
    ));
    store.append_step("s1", &step(1)).expect("step");
    // A value with a NUL (PostgreSQL text cannot hold one) reads back as written.
    let label = CarriedLabel {
        kind: "url".into(),
        value: "evil\u{0}.example".into(),
        prose: true,
        session: "s1".into(),
        seq: 2,
        tool: "write_note".into(),
    };
    store
        .append_step_carrying("s1", &step(2), std::slice::from_ref(&label))
        .expect("carrying");
    assert!(
        store.append_step("s1", &step(2)).is_err(),
        "a step is written once"
    );
    assert!(
        store.append_step("nobody", &step(1)).is_err(),
        "unknown session"
    );
    let loaded = store.load_session("s1").expect("load").expect("present");
    assert_eq!(loaded.token_hash, "hash1");
    assert_eq!(
        loaded.steps.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(store.steps_from("s1", 2, 10).expect("page").len(), 1);
    assert_eq!(store.carried_labels(10).expect("labels"), vec![label]);
    assert_eq!(
        store.session_by_token("hash1").expect("token").as_deref(),
        Some("s1")
    );

    assert_eq!(
        store.pin_tool("up", "t", "sha256:a", "{}").expect("pin"),
        PinCheck::New
    );
    assert!(matches!(
        store
            .pin_tool("up", "t", "sha256:b", "{\"x\":1}")
            .expect("pin"),
        PinCheck::Changed {
            first_seen: true,
            ..
        }
    ));
    let accepted = store.accept_tool("up", "t").expect("accept").expect("pin");
    assert_eq!(accepted.digest, "sha256:b");

    let approval = Approval {
        id: "ap1".into(),
        session: "s1".into(),
        seq: 3,
        tool: "send_money".into(),
        args: json!({"to": "x"}),
        reasons: json!(["held"]),
        created_ms: now_ms(),
        status: ApprovalStatus::Pending,
        approver: None,
        comment: None,
        decided_ms: None,
    };
    store.create_approval(&approval).expect("approval");
    assert_eq!(
        store
            .list_approvals(Some(ApprovalStatus::Pending), 10)
            .expect("list")
            .len(),
        1
    );
    // Two replicas (two stores) race to resolve it: exactly one wins, and only it records.
    let other = Arc::new(PgStore::open(&db).expect("open"));
    let store = Arc::new(store);
    let racers: Vec<_> = [store.clone(), other.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            std::thread::spawn(move || {
                let mut recorded = 0;
                let r = s
                    .resolve_approval(
                        "ap1",
                        &Resolution {
                            status: ApprovalStatus::Approved,
                            approver: Some(format!("approver-{i}")),
                            comment: None,
                            decided_ms: now_ms(),
                        },
                        &mut |_| {
                            recorded += 1;
                            Ok(())
                        },
                    )
                    .expect("resolve");
                (r, recorded)
            })
        })
        .collect();
    let results: Vec<_> = racers
        .into_iter()
        .map(|t| t.join().expect("join"))
        .collect();
    let wins = results
        .iter()
        .filter(|(r, _)| matches!(r, Resolved::Done(_)))
        .count();
    assert_eq!(wins, 1, "{results:?}");
    assert_eq!(results.iter().map(|(_, n)| n).sum::<i32>(), 1);
    assert_eq!(
        other
            .approval("ap1")
            .expect("read")
            .expect("present")
            .status,
        ApprovalStatus::Approved
    );
}

#[test]
fn replicas_append_to_one_log_with_contiguous_indexes_and_it_verifies() {
    let db = database("one_log");
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let first = Arc::new(replica_log(&db, a.path(), None));
    let second = Arc::new(replica_log(&db, b.path(), Some(a.path())));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let log = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            std::thread::spawn(move || {
                (0..40)
                    .map(|n| {
                        log.append(&Event {
                            kind: EventKind::Call,
                            session: format!("s{i}"),
                            time_ms: now_ms(),
                            body: json!({"n": n}),
                            causes: vec![],
                        })
                        .expect("append")
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let indexes: BTreeSet<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("join"))
        .collect();
    assert_eq!(indexes, (0..320).collect::<BTreeSet<u64>>());
    first.checkpoint().expect("sign");
    second.checkpoint().expect("sign");
    for log in [&first, &second] {
        let report = log.verify(&VerifyOptions::default()).expect("verify");
        assert_eq!(report.entries, 320);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.signed_size, 320);
    }
    // A replica given another key cannot sign this log's checkpoints: it refuses to start.
    let c = tempfile::tempdir().expect("dir");
    let refused = AuditLog::open_in(
        c.path(),
        &AuditConfig::default(),
        Box::new(PgLogStore::open(&db).expect("store")),
        Box::new(PgLogStore::open(&db).expect("store")),
    );
    assert!(
        refused.is_err(),
        "a replica with its own key must not start"
    );
}

#[test]
fn a_step_and_its_entry_commit_together_or_neither_does() {
    let db = database("one_write");
    let dir = tempfile::tempdir().expect("dir");
    let log = replica_log(&db, dir.path(), None);
    let store = PgStore::open(&db).expect("store");
    let opened: Companion = {
        let s = session("s1");
        Arc::new(move |tx, _| match tx {
            Tx::Postgres { queue, .. } => {
                warden_pg::write_session(queue, &s, "h").map_err(|e| e.to_string())
            }
            Tx::Sqlite(_) => Err("not PostgreSQL".into()),
        })
    };
    let e = |n: u64| Event {
        kind: EventKind::Call,
        session: "s1".into(),
        time_ms: now_ms(),
        body: json!({"seq": n}),
        causes: vec![],
    };
    log.append_with(&e(0), Some(opened)).expect("open");
    let step_write = |seq: u64| -> Companion {
        Arc::new(move |tx, index| match tx {
            Tx::Postgres { queue, .. } => {
                warden_pg::write_step(queue, "s1", &Arc::new(step(seq)), Some(index), &[])
                    .map_err(|e| e.to_string())
            }
            Tx::Sqlite(_) => Err("not PostgreSQL".into()),
        })
    };
    assert_eq!(
        log.append_with(&e(1), Some(step_write(1))).expect("step"),
        1
    );
    // The same step again (another replica wrote it first): the entry fails with it.
    let twice = log.append_with(&e(1), Some(step_write(1)));
    assert!(matches!(twice, Err(AuditError::Write(_))), "{twice:?}");
    assert_eq!(
        log.append_with(&e(2), Some(step_write(2))).expect("step"),
        2
    );
    let steps = store
        .load_session("s1")
        .expect("load")
        .expect("present")
        .steps;
    assert_eq!(
        steps.iter().map(|s| (s.seq, s.audit)).collect::<Vec<_>>(),
        vec![(1, Some(1)), (2, Some(2))]
    );
    assert_eq!(log.reader().len().expect("len"), 3);
}

#[test]
fn the_database_going_away_fails_every_write_and_they_work_again_when_it_returns() {
    // A server of its own: it is stopped and started again.
    let own = TestServer::start().expect("start a PostgreSQL server");
    let db = Database::from_config(&own.store_config("goes_away").expect("database"))
        .expect("config")
        .expect("a url");
    let dir = tempfile::tempdir().expect("dir");
    let log = replica_log(&db, dir.path(), None);
    let store = PgStore::open(&db).expect("store");
    store.create_session(&session("s1"), "h").expect("create");
    let e = Event {
        kind: EventKind::Call,
        session: "s1".into(),
        time_ms: now_ms(),
        body: json!({}),
        causes: vec![],
    };
    assert_eq!(log.append(&e).expect("append"), 0);
    own.stop().expect("stop");
    let failed = log.append(&e);
    assert!(failed.is_err(), "{failed:?}");
    assert!(store.append_step("s1", &step(1)).is_err());
    own.restart().expect("restart");
    assert_eq!(
        log.append(&e).expect("append after the database returned"),
        1
    );
    store
        .append_step("s1", &step(1))
        .expect("step after the database returned");
}

#[test]
fn what_a_dead_replica_left_unsigned_an_idle_one_signs() {
    let db = database("dead_replica");
    let (a, b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let first = replica_log_signing(&db, a.path(), None, 60_000);
    let second = replica_log_signing(&db, b.path(), Some(a.path()), 200);
    for n in 0..10 {
        first
            .append(&Event {
                kind: EventKind::Call,
                session: "s1".into(),
                time_ms: now_ms(),
                body: json!({"n": n}),
                causes: vec![],
            })
            .expect("append");
    }
    // The first replica "dies" without signing (its own checkpoint is a minute away).
    std::mem::forget(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = second.verify(&VerifyOptions::default()).expect("verify");
        if report.signed_size == 10 {
            assert!(report.problems.is_empty(), "{:?}", report.problems);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the idle replica never signed the dead one's entries: {report:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_database_a_newer_warden_migrated_is_refused() {
    let db = database("newer_schema");
    drop(PgStore::open(&db).expect("migrate"));
    let client = db.connect().expect("connect");
    futures_executor::block_on(client.batch_execute(
        "INSERT INTO public.warden_migrations (version, what) VALUES (999, 'from the future')",
    ))
    .expect("insert");
    let refused = PgStore::open(&db).err().expect("refused").to_string();
    assert!(
        refused.contains("newer Warden") && refused.contains("999"),
        "{refused}"
    );
}

#[test]
fn tls_to_the_database_is_verified_against_the_platform_and_the_ca_file() {
    let tls = TestServer::start_tls().expect("start PostgreSQL with TLS");
    let mut config = tls.store_config("over_tls").expect("database");
    config.url = config.url.map(|u| format!("{u}?sslmode=require"));
    let db = Database::from_config(&config)
        .expect("config")
        .expect("url");
    let store = PgStore::open(&db).expect("a store over TLS");
    store.create_session(&session("s1"), "h").expect("create");
    let client = db.connect().expect("connect");
    let ssl: bool = futures_executor::block_on(client.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    ))
    .expect("pg_stat_ssl")
    .get(0);
    assert!(ssl, "the connection is encrypted");

    // Without the CA the server's certificate is not trusted: the connection is refused.
    let untrusted = warden_pg::StoreConfig {
        ca_file: None,
        ..config
    };
    let db = Database::from_config(&untrusted)
        .expect("config")
        .expect("url");
    let refused = db.connect().expect_err("refused").to_string();
    assert!(
        refused.contains("certificate") || refused.contains("UnknownIssuer"),
        "{refused}"
    );
}
