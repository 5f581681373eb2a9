//! A fleet's throughput, printed as a table:
//!
//!   cargo bench -p warden-gateway --bench fleet
//!
//! Needs PostgreSQL's server binaries (a throwaway cluster is started, as the tests do; fsync
//! off, so the figures are the gateway's and the protocol's, not this machine's disk).
//!
//! - **appends**: durable audit appends/s with 1, 8 and 64 concurrent appenders, on SQLite (the
//!   embedded default) and on PostgreSQL (appends sequenced by the advisory lock), with the raw
//!   baseline in the same run: the same entry bytes inserted into PostgreSQL by one client,
//!   1,000 rows per transaction, no lock and no tree.
//! - **decisions**: decisions/s (decide one call, observe its result: two durable steps each)
//!   with 1, 2 and 3 in-process replicas on one PostgreSQL, 16 sessions spread over them, each
//!   session's calls going round the replicas (each call replays the other's step first) or
//!   staying on one (a load balancer with session affinity); against one replica on SQLite in
//!   the same run.
//!   The ratio column is against that SQLite replica.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use warden_audit::{AuditConfig, AuditLog, Event, EventKind};
use warden_gateway::runtime::{OpenRequest, Runtime};
use warden_gateway::Config;
use warden_model::{Call, Params};
use warden_pg::testing::TestServer;
use warden_pg::{Database, PgLogStore};

const SESSIONS: usize = 16;
const DECISIONS: usize = 4_000;

fn event(thread: u64, i: u64) -> Event {
    Event {
        kind: EventKind::Decision,
        session: format!("session-{thread}"),
        time_ms: 1_700_000_000_000 + i,
        body: json!({
            "call": {"tool": "send_email", "args": {"to": "bob@example.com", "subject": format!("report {i}")}},
            "verdict": "allow",
            "reasons": [{"policy": "baseline.writes", "message": "recipient is in the task parameters"}],
        }),
        causes: vec![],
    }
}

struct Row {
    what: String,
    n: u64,
    secs: f64,
    ratio_to: Option<f64>,
}

fn appends(log: AuditLog, what: &str, threads: u64, total: u64) -> Row {
    let log = Arc::new(log);
    let per = total / threads;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..per {
                    log.append(&event(t, i)).expect("append");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    Row {
        what: format!("{what}: AuditLog::append, {threads} appender(s)"),
        n: per * threads,
        secs: start.elapsed().as_secs_f64(),
        ratio_to: None,
    }
}

fn pg_log(db: &Database, dir: &Path) -> AuditLog {
    AuditLog::open_in(
        dir,
        &AuditConfig::default(),
        Box::new(PgLogStore::open(db).expect("store")),
        Box::new(PgLogStore::open(db).expect("store")),
    )
    .expect("log")
}

fn raw_pg(db: &Database, total: u64) -> Row {
    let client = db.connect().expect("connect");
    let run = |sql: &str| futures_executor::block_on(client.batch_execute(sql)).expect("query");
    run(
        "CREATE TABLE IF NOT EXISTS public.raw (idx BIGINT PRIMARY KEY, entry BYTEA NOT NULL, \
         leaf_hash BYTEA NOT NULL)",
    );
    let entries: Vec<Vec<u8>> = (0..total)
        .map(|i| warden_audit::event::entry_bytes(i, &event(i % 64, i).canonical_body()))
        .collect();
    let hash = [0u8; 32];
    let start = Instant::now();
    for (c, chunk) in entries.chunks(1000).enumerate() {
        let idx: Vec<i64> = (0..chunk.len()).map(|j| (c * 1000 + j) as i64).collect();
        let bytes: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        let hashes: Vec<&[u8]> = chunk.iter().map(|_| &hash[..]).collect();
        run("BEGIN");
        futures_executor::block_on(client.execute(
            "INSERT INTO public.raw SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[])",
            &[&idx, &bytes, &hashes],
        ))
        .expect("insert");
        run("COMMIT");
    }
    Row {
        what: "baseline: raw PostgreSQL INSERT, 1,000 rows per transaction, one client".into(),
        n: total,
        secs: start.elapsed().as_secs_f64(),
        ratio_to: None,
    }
}

fn config(dir: &Path, store: Option<&warden_pg::StoreConfig>) -> Config {
    let mut config = Config::default();
    config.server.data_dir = dir.to_path_buf();
    if let Some(s) = store {
        config.store = s.clone();
    }
    config
}

fn open(rt: &Runtime, i: usize) -> String {
    rt.open_session(OpenRequest {
        principal: "bench".into(),
        agent: "assistant".into(),
        profile: None,
        task: Params::new(),
        instruction: format!("Summarise the unread e-mails about project {i}"),
        channel: "bench".into(),
    })
    .expect("open")
    .0
    .id
}

/// Decide-and-observe pairs/s over `replicas`, 16 sessions on as many threads; each session's
/// calls go round the replicas, or (`sticky`) all to one (a load balancer with affinity).
fn decisions(replicas: &[Arc<Runtime>], sticky: bool, what: String) -> Row {
    let sessions: Vec<String> = (0..SESSIONS)
        .map(|i| open(&replicas[i % replicas.len()], i))
        .collect();
    let per = DECISIONS / SESSIONS;
    let start = Instant::now();
    let handles: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(s, id)| {
            let replicas: Vec<Arc<Runtime>> = replicas.to_vec();
            std::thread::spawn(move || {
                for i in 0..per {
                    let rt = &replicas[(s + if sticky { 0 } else { i }) % replicas.len()];
                    let call = Call {
                        tool: "search_emails".into(),
                        args: serde_json::from_value(json!({"query": format!("project {i}")}))
                            .expect("args"),
                        call_id: format!("c{i}"),
                        upstream: None,
                    };
                    rt.decide(&id, call).expect("decide");
                    rt.observe(
                        &id,
                        &format!("c{i}"),
                        Some("search_emails"),
                        None,
                        json!({"emails": [{"from": "carol@example.com", "subject": format!("project {i}")}]}),
                    )
                    .expect("observe");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    Row {
        what,
        n: (per * SESSIONS) as u64,
        secs: start.elapsed().as_secs_f64(),
        ratio_to: None,
    }
}

fn main() {
    let pg = TestServer::start().expect("start PostgreSQL (see the bench's header)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        d
    };
    let mut rows = Vec::new();
    for threads in [1u64, 8, 64] {
        let sqlite =
            AuditLog::open(&dir(&format!("s{threads}")), &AuditConfig::default()).expect("log");
        rows.push(appends(sqlite, "SQLite", threads, 20_000));
        let store = pg
            .store_config(&format!("append{threads}"))
            .expect("database");
        let db = Database::from_config(&store).expect("config").expect("url");
        rows.push(appends(
            pg_log(&db, &dir(&format!("p{threads}"))),
            "PostgreSQL",
            threads,
            20_000,
        ));
    }
    let raw = pg.store_config("raw").expect("database");
    {
        let db = Database::from_config(&raw).expect("config").expect("url");
        let client = db.connect().expect("connect");
        let start = Instant::now();
        for _ in 0..2000 {
            futures_executor::block_on(client.simple_query("SELECT 1")).expect("select");
        }
        rows.push(Row {
            what: "baseline: one round trip (SELECT 1) from a caller thread".into(),
            n: 2000,
            secs: start.elapsed().as_secs_f64(),
            ratio_to: None,
        });
    }
    rows.push(raw_pg(
        &Database::from_config(&raw).expect("config").expect("url"),
        20_000,
    ));

    let sqlite = warden_gateway::runtime(config(&dir("sqlite-replica"), None)).expect("runtime");
    let base = decisions(&[sqlite], false, "baseline: one replica on SQLite".into());
    let base_rate = base.n as f64 / base.secs;
    rows.push(base);
    for n in 1..=3usize {
        let store = pg.store_config(&format!("fleet{n}")).expect("database");
        let first = dir(&format!("fleet{n}-0"));
        let mut replicas =
            vec![warden_gateway::runtime(config(&first, Some(&store))).expect("replica")];
        for r in 1..n {
            let d = dir(&format!("fleet{n}-{r}"));
            for f in ["audit.key", "audit.hmac", "audit.pub"] {
                std::fs::copy(first.join(f), d.join(f)).expect("copy key");
            }
            replicas.push(warden_gateway::runtime(config(&d, Some(&store))).expect("replica"));
        }
        let mut row = decisions(
            &replicas,
            false,
            format!("{n} replica(s) on one PostgreSQL, calls going round them"),
        );
        row.ratio_to = Some(base_rate);
        rows.push(row);
        if n > 1 {
            let mut row = decisions(
                &replicas,
                true,
                format!("{n} replicas on one PostgreSQL, each session on one of them"),
            );
            row.ratio_to = Some(base_rate);
            rows.push(row);
        }
    }

    println!();
    println!(
        "{} cores; decisions: {SESSIONS} sessions, each a decide and an observe per call",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| {:<72} | {:>7} | {:>8} | {:>10} | {:>13} |",
        "what", "n", "seconds", "per second", "ratio to base"
    );
    println!(
        "|{}|{}|{}|{}|{}|",
        "-".repeat(74),
        "-".repeat(9),
        "-".repeat(10),
        "-".repeat(12),
        "-".repeat(15)
    );
    for r in rows {
        let rate = r.n as f64 / r.secs;
        println!(
            "| {:<72} | {:>7} | {:>8.3} | {:>10.0} | {:>13} |",
            r.what,
            r.n,
            r.secs,
            rate,
            r.ratio_to
                .map(|b| format!("{:.2}", rate / b))
                .unwrap_or_default()
        );
    }
}
