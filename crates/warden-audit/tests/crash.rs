//! Crash test: a child process (this test binary again, switched by an environment variable)
//! appends with 8 threads and prints every acknowledged index; it is killed with SIGKILL mid-way.
//! After reopening, every acknowledged event must be in the log and the log must verify.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::json;
use warden_audit::{AuditConfig, AuditLog, Event, EventKind, VerifyOptions};

const CHILD_DIR: &str = "WARDEN_AUDIT_CRASH_CHILD_DIR";
const THREADS: u64 = 8;
const PER_THREAD: u64 = 5_000;
/// Kill the child once this many appends were acknowledged (of 40 000 it would make).
const KILL_AFTER: usize = 12_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The child's body; does nothing unless the parent test started this binary to be killed.
#[test]
fn crash_child_appends_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let config = AuditConfig {
        checkpoint_every: 1000,
        checkpoint_ms: 50,
        ..AuditConfig::default()
    };
    let log = Arc::new(AuditLog::open(Path::new(&dir), &config).expect("open"));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let index = log
                        .append(&Event {
                            kind: EventKind::Call,
                            session: format!("s{t}"),
                            // A real time: a restart checks that the unsigned tail is recent.
                            time_ms: now_ms(),
                            body: json!({"thread": t, "i": i}),
                            causes: vec![],
                        })
                        .expect("append");
                    // Printed only after `append` returned: the event is acknowledged.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {index} {t} {i}").expect("stdout");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
}

#[test]
fn every_acknowledged_event_survives_kill_9_and_the_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child_appends_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Vec<(u64, u64, u64)> = Vec::new();
    let parse = |line: &str| -> Option<(u64, u64, u64)> {
        let mut it = line.strip_prefix("ack ")?.split(' ');
        let mut next = || it.next()?.parse().ok();
        Some((next()?, next()?, next()?))
    };
    for line in lines.by_ref() {
        if let Some(a) = parse(&line.expect("line")) {
            acked.push(a);
            if acked.len() == KILL_AFTER {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Acknowledgements already in the pipe when the child died count too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(a) = parse(&line) {
            acked.push(a);
        }
    }
    assert!(acked.len() >= KILL_AFTER, "only {} acks", acked.len());
    assert!(
        (acked.len() as u64) < THREADS * PER_THREAD,
        "the child finished before it was killed; the test proves nothing"
    );

    let log = AuditLog::open(dir.path(), &AuditConfig::default()).expect("reopen after kill -9");
    let report = log.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{}", report.message());
    for &(index, t, i) in &acked {
        let e = log
            .event(index)
            .expect("read")
            .unwrap_or_else(|| panic!("acknowledged event {index} is gone"));
        assert_eq!(e.event.body, json!({"thread": t, "i": i}), "event {index}");
    }
    drop(log);
    let log = AuditLog::open(dir.path(), &AuditConfig::default()).expect("reopen");
    let report = log.verify(&VerifyOptions::default()).expect("verify");
    assert!(report.ok(), "{}", report.message());
    assert!(report.unsigned().is_empty(), "{}", report.message());
}
