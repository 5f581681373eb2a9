//! What a live session costs in memory, and what resuming a long one costs after a restart.
//!
//!   cargo bench -p warden-gateway --bench sessions
//!
//! Each measurement runs in a fresh child process (this binary, re-run with a mode), so one
//! measurement's freed memory does not hide in the next one's RSS (read from `/proc/self/status`).
//! The runtime is the real one: a SQLite store and a signed audit log in a temp dir, the default
//! config, provenance and decisions on.
//!
//! - **live**: RSS growth with 10,000 live sessions, each opened with an instruction, one call
//!   decided and its result observed; beside it, in the same process, the bytes those sessions'
//!   texts take in plain `String`s (the raw baseline), and the ratio.
//! - **resume**: one session of N steps (call, result, call, …), then a new process on the same
//!   store resumes it by deciding one call: wall time and RSS growth. "snapshot" is the normal
//!   path; "replay" spoils the snapshot first, so every step is replayed (the baseline: what
//!   resuming cost before snapshots). Building the session prints its decide-and-observe rate
//!   over each tenth of it: flat once the provenance index is at its cap.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use warden_audit::AuditLog;
use warden_gateway::runtime::{OpenRequest, Runtime};
use warden_gateway::Config;
use warden_model::{Call, Params};
use warden_store::{SessionStore, Snapshot, SqliteStore};

const LIVE_SESSIONS: usize = 10_000;
const RESUME_STEPS: [usize; 2] = [5_000, 50_000];

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn runtime(dir: &Path) -> (Runtime, Arc<SqliteStore>) {
    let mut config = Config::default();
    // Every session of the live measurement stays live (the default cap is 10,000).
    config.server.max_live_sessions = LIVE_SESSIONS + 1;
    let engine = config.engine().expect("the default policies compile");
    let store = Arc::new(SqliteStore::open(&dir.join("warden.db")).expect("store"));
    let audit = AuditLog::open(dir, &config.audit).expect("audit log");
    let rt = Runtime::new(config, engine, store.clone()).with_audit(Arc::new(audit));
    (rt, store)
}

fn open(rt: &Runtime, instruction: String) -> String {
    rt.open_session(OpenRequest {
        principal: "bench".into(),
        agent: "assistant".into(),
        profile: None,
        task: Params::new(),
        instruction,
        channel: "bench".into(),
    })
    .expect("open")
    .0
    .id
}

fn call(tool: &str, args: Value) -> Call {
    Call {
        tool: tool.into(),
        args: serde_json::from_value(args).expect("args"),
        call_id: String::new(),
        upstream: None,
    }
}

fn instruction(i: usize) -> String {
    format!("Summarise the unread e-mails about project {i} and file the action items for the team")
}

fn result_text(i: usize) -> String {
    format!(
        "From: member{i}@team.example\nSubject: Project {i} status\nTicket PRJ-{i:06} moved to review; \
         invoice INV-{i:06} for 1,{:03}.00 EUR is due on 2026-12-{:02}. Notes: https://wiki.team.example/p/{i}",
        i % 1000,
        i % 28 + 1
    )
}

/// One call decided and its result observed.
fn step(rt: &Runtime, id: &str, i: usize) -> usize {
    let r = rt
        .decide(
            id,
            call("search_emails", json!({ "query": format!("project {i}") })),
        )
        .expect("decide");
    let text = result_text(i);
    let len = text.len();
    rt.observe(id, &r.call_id, None, None, Value::String(text))
        .expect("observe");
    len
}

fn live(dir: &Path) {
    let (rt, _) = runtime(dir);
    // Warm the paths (policies, SQLite statements, the log) before the first reading.
    let warm = open(&rt, instruction(0));
    step(&rt, &warm, 0);
    let before = rss_kb();
    let mut ids = Vec::with_capacity(LIVE_SESSIONS);
    for i in 1..=LIVE_SESSIONS {
        let id = open(&rt, instruction(i));
        step(&rt, &id, i);
        ids.push(id);
    }
    let after = rss_kb();
    assert!(rt.live_session_ids().len() > LIVE_SESSIONS, "all live");
    // The raw baseline: the same sessions' texts (id, instruction, call, result) held as strings.
    let raw_before = rss_kb();
    let raw: Vec<[String; 4]> = (1..=LIVE_SESSIONS)
        .map(|i| {
            [
                ids[i - 1].clone(),
                instruction(i),
                format!("{{\"query\": \"project {i}\"}}"),
                result_text(i),
            ]
        })
        .collect();
    let raw_after = rss_kb();
    std::hint::black_box(&raw);
    println!(
        "live {LIVE_SESSIONS} {} {}",
        after - before,
        raw_after - raw_before
    );
}

/// Builds one session of `steps` steps; prints its id and the decide-and-observe rate (steps a
/// second) over each tenth of it, first to last.
fn build(dir: &Path, steps: usize) {
    let (rt, _) = runtime(dir);
    let id = open(&rt, instruction(0));
    let pairs = steps / 2;
    let tenth = (pairs / 10).max(1);
    let mut rates = Vec::new();
    let mut t = Instant::now();
    for i in 0..pairs {
        step(&rt, &id, i);
        if (i + 1) % tenth == 0 {
            rates.push(format!(
                "{:.0}",
                (2 * tenth) as f64 / t.elapsed().as_secs_f64()
            ));
            t = Instant::now();
        }
    }
    println!("built {id} {}", rates.join(","));
}

fn resume(dir: &Path, id: &str, replay: bool) {
    let (rt, store) = runtime(dir);
    if replay {
        let stale = Snapshot {
            from: 1,
            body: "{\"build\": \"before snapshots\"}".into(),
        };
        store.save_snapshot(id, &stale).expect("spoil the snapshot");
    }
    let before = rss_kb();
    let t = Instant::now();
    rt.decide(id, call("search_emails", json!({"query": "resume"})))
        .expect("decide");
    let ms = t.elapsed().as_secs_f64() * 1e3;
    println!("resumed {ms:.1} {}", rss_kb().saturating_sub(before));
}

/// Run this binary in `mode`; its last line of output.
fn child(args: &[&str]) -> String {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe).args(args).output().expect("run a child");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn fields(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["live", dir] => return live(Path::new(dir)),
        ["build", dir, steps] => return build(Path::new(dir), steps.parse().expect("steps")),
        ["resume", dir, id] => return resume(Path::new(dir), id, false),
        ["resume", dir, id, "replay"] => return resume(Path::new(dir), id, true),
        _ => {}
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("live");
    std::fs::create_dir_all(&dir).expect("dir");
    eprintln!("opening {LIVE_SESSIONS} live sessions…");
    let l = fields(&child(&["live", dir.to_str().expect("utf-8 path")]));
    let (grew, raw): (f64, f64) = (
        l[2].parse().expect("kB"),
        l[3].parse::<f64>().expect("kB").max(1.0),
    );
    println!("\nlive sessions | RSS growth | raw texts (same process) | ratio | per session");
    println!("--------------|------------|--------------------------|-------|------------");
    println!(
        "{LIVE_SESSIONS:>13} | {:>7.1} MB | {:>21.1} MB | {:>5.1} | {:>7.1} kB",
        grew / 1024.0,
        raw / 1024.0,
        grew / raw,
        grew / LIVE_SESSIONS as f64
    );

    println!("\nsession steps | resume from snapshot | RSS growth | full replay (baseline) | RSS growth | snapshot ÷ replay");
    println!("--------------|----------------------|------------|------------------------|------------|------------------");
    let mut rates = Vec::new();
    for steps in RESUME_STEPS {
        let dir = tmp.path().join(format!("s{steps}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let d = dir.to_str().expect("utf-8 path");
        eprintln!("building a session of {steps} steps…");
        let built = fields(&child(&["build", d, &steps.to_string()]));
        let id = built[1].clone();
        let snap = fields(&child(&["resume", d, &id]));
        let replay = fields(&child(&["resume", d, &id, "replay"]));
        let (sm, sk): (f64, f64) = (snap[1].parse().expect("ms"), snap[2].parse().expect("kB"));
        let (rm, rk): (f64, f64) = (
            replay[1].parse().expect("ms"),
            replay[2].parse().expect("kB"),
        );
        rates.push((steps, built[2].clone()));
        println!(
            "{steps:>13} | {sm:>17.1} ms | {:>7.1} MB | {rm:>19.1} ms | {:>7.1} MB | {:.3}",
            sk / 1024.0,
            rk / 1024.0,
            sm / rm
        );
    }
    println!("\nsession steps | decided and observed steps/s, over each tenth of the session");
    println!("--------------|------------------------------------------------------------");
    for (steps, r) in rates {
        println!("{steps:>13} | {}", r.replace(',', " "));
    }
}
