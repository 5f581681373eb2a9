//! Throughput of the audit log, printed as a table: durable appends/s with group commit at 1, 8
//! and 64 concurrent appenders, and verified events/s over a 100k-event log; with baselines in
//! the same run (raw SQLite inserts of the same bytes, one transaction per row and batched, and
//! raw SHA-256 leaf hashing of the same entries). Run with `cargo bench -p warden-audit`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{params, Connection};
use serde_json::json;
use warden_audit::event::entry_bytes;
use warden_audit::merkle::leaf_hash;
use warden_audit::{
    AuditConfig, AuditLog, AuditReader, Durability, Event, EventKind, VerifyOptions,
};

fn event(thread: u64, i: u64) -> Event {
    Event {
        kind: EventKind::Decision,
        session: format!("session-{thread}"),
        time_ms: 1_700_000_000_000 + i,
        body: json!({
            "call": {"tool": "send_email", "args": {"to": "bob@example.com", "subject": format!("report {i}")}},
            "verdict": "allow",
            "reasons": [{"policy": "baseline.writes", "message": "recipient is in the task parameters"}],
            "policy_set": "9f2c1e7a",
        }),
        causes: if i == 0 { vec![] } else { vec![0, i / 2] },
    }
}

struct Row {
    what: String,
    events: u64,
    secs: f64,
}

fn appends(dir: &Path, threads: u64, total: u64, durability: Durability) -> Row {
    let config = AuditConfig {
        durability,
        ..AuditConfig::default()
    };
    let log = Arc::new(AuditLog::open(dir, &config).expect("open"));
    // The first event, so that `causes` [0, …] always points back.
    log.append(&event(0, 0)).expect("append");
    let per = total / threads;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 1..=per {
                    log.append(&event(t, i)).expect("append");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    let secs = start.elapsed().as_secs_f64();
    let what = format!(
        "AuditLog::append, {threads} appender{}, durability={}",
        if threads == 1 { "" } else { "s" },
        match durability {
            Durability::Process => "process",
            Durability::Power => "power",
        }
    );
    Row {
        what,
        events: per * threads,
        secs,
    }
}

fn sample_entries(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| entry_bytes(i, &event(i % 64, i).canonical_body()))
        .collect()
}

fn raw_sqlite(dir: &Path, entries: &[Vec<u8>], batch: usize) -> Row {
    let conn = Connection::open(dir.join(format!("raw-{batch}.db"))).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("sync");
    conn.execute_batch(
        "CREATE TABLE t (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL, leaf_hash BLOB NOT NULL)",
    )
    .expect("schema");
    let hash = [0u8; 32];
    let start = Instant::now();
    for (chunk_no, chunk) in entries.chunks(batch).enumerate() {
        conn.execute_batch("BEGIN").expect("begin");
        {
            let mut stmt = conn
                .prepare_cached("INSERT INTO t (idx, entry, leaf_hash) VALUES (?1, ?2, ?3)")
                .expect("prepare");
            for (j, e) in chunk.iter().enumerate() {
                let idx = (chunk_no * batch + j) as i64;
                stmt.execute(params![idx, e, &hash[..]]).expect("insert");
            }
        }
        conn.execute_batch("COMMIT").expect("commit");
    }
    Row {
        what: format!(
            "baseline: raw SQLite INSERT, {} row{} per transaction (WAL, NORMAL)",
            batch,
            if batch == 1 { "" } else { "s" }
        ),
        events: entries.len() as u64,
        secs: start.elapsed().as_secs_f64(),
    }
}

fn raw_hashing(entries: &[Vec<u8>]) -> Row {
    let start = Instant::now();
    let mut acc = 0u8;
    for e in entries {
        acc ^= leaf_hash(e)[0];
    }
    std::hint::black_box(acc);
    Row {
        what: "baseline: raw SHA-256 leaf hashing of the same entries".into(),
        events: entries.len() as u64,
        secs: start.elapsed().as_secs_f64(),
    }
}

fn verify(dir: &Path) -> Row {
    let reader = AuditReader::open(dir).expect("reader");
    let start = Instant::now();
    let report = reader.verify(&VerifyOptions::default()).expect("verify");
    let secs = start.elapsed().as_secs_f64();
    assert!(report.ok(), "{}", report.message());
    Row {
        what: format!(
            "verify (rehash every entry, rebuild the tree, check {} checkpoints)",
            report.checkpoints_checked
        ),
        events: report.entries,
        secs,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is ignored.
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();
    let dir = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        d
    };
    rows.push(appends(&dir("a1"), 1, 20_000, Durability::Process));
    rows.push(appends(&dir("a8"), 8, 100_000, Durability::Process));
    rows.push(appends(&dir("a64"), 64, 200_000, Durability::Process));
    rows.push(appends(&dir("p64"), 64, 100_000, Durability::Power));
    let big = dir("v100k");
    appends(&big, 64, 100_032, Durability::Process);
    rows.push(verify(&big));
    let entries = sample_entries(100_000);
    let avg = entries.iter().map(Vec::len).sum::<usize>() / entries.len();
    rows.push(raw_sqlite(&dir("r1"), &entries[..20_000], 1));
    rows.push(raw_sqlite(&dir("rb"), &entries, 1000));
    rows.push(raw_hashing(&entries));

    println!();
    println!(
        "average entry: {avg} bytes; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| {:<78} | {:>9} | {:>8} | {:>12} |",
        "what", "events", "seconds", "events/s"
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(80),
        "-".repeat(11),
        "-".repeat(10),
        "-".repeat(14)
    );
    for r in rows {
        println!(
            "| {:<78} | {:>9} | {:>8.3} | {:>12.0} |",
            r.what,
            r.events,
            r.secs,
            r.events as f64 / r.secs
        );
    }
}
