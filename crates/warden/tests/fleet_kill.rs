//! A fleet under load loses a replica to kill -9: two `warden serve` processes share one real
//! PostgreSQL (a throwaway cluster); agents' calls alternate between them; one is killed. Every
//! step a replica acknowledged is in the store and in the log, the survivor keeps serving every
//! session (those the killed one opened included), and `warden audit verify` passes on the one
//! log.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::{http, open_session, start_serve};
use warden_audit::{EventFilter, EventKind};
use warden_pg::testing::TestServer;
use warden_pg::{Database, PgLogStore, PgStore};
use warden_store::SessionStore as _;

fn write_config(dir: &Path, store: &warden_pg::StoreConfig) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("data dir");
    let path = dir.join("warden.toml");
    let toml = format!(
        r#"
[server]
data_dir = "{data}"

[store]
url = "{url}"
password_file = "{pw}"

[profiles.support]
params = ["customer_id"]
tools = ["search_tickets", "refund_order"]

[tools.search_tickets]
params = ["query"]
open_world = true
"#,
        data = dir.join("data").display(),
        url = store.url.as_deref().expect("url"),
        pw = store
            .password_file
            .as_ref()
            .expect("password file")
            .display(),
    );
    std::fs::write(&path, toml).expect("write config");
    path
}

fn serve(config: &Path) -> (support::Killed, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env_remove("WARDEN_CONFIG")
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0"]);
    start_serve(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_no_acknowledged_step_and_its_sessions_go_on_elsewhere() {
    let pg = TestServer::start().expect("start PostgreSQL");
    let store = pg.store_config("killed").expect("database");
    let root = tempfile::tempdir().expect("tempdir");
    let (conf_a, conf_b) = (
        write_config(&root.path().join("a"), &store),
        write_config(&root.path().join("b"), &store),
    );
    let (mut a, addr_a) = serve(&conf_a);
    // The fleet's keys, made by the first replica, are the second's too.
    std::fs::create_dir_all(root.path().join("b/data")).expect("dir");
    for f in ["audit.key", "audit.hmac", "audit.pub"] {
        std::fs::copy(
            root.path().join("a/data").join(f),
            root.path().join("b/data").join(f),
        )
        .expect("copy a key");
    }
    let (_b, addr_b) = serve(&conf_b);

    let open = |addr: String| async move {
        open_session(
            &addr,
            None,
            json!({"principal": "alice", "profile": "support", "task": {"customer_id": "C-1"},
                   "instruction": "Look through the tickets of customer C-1"}),
        )
        .await
    };
    let sessions = vec![
        open(addr_a.clone()).await,
        open(addr_a.clone()).await,
        open(addr_b.clone()).await,
        open(addr_b.clone()).await,
    ];

    // (session, seq, replica) of every acknowledged decision.
    let acked: Arc<Mutex<Vec<(String, u64, usize)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let addrs = [addr_a.clone(), addr_b.clone()];
    let load: Vec<_> = sessions
        .iter()
        .cloned()
        .map(|(session, token)| {
            let (acked, stop, addrs) = (acked.clone(), stop.clone(), addrs.clone());
            tokio::spawn(async move {
                let client = http();
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let replica = n % 2;
                    let sent = client
                        .post(format!("http://{}/v1/decide", addrs[replica]))
                        .bearer_auth(&token)
                        .json(&json!({"session": session, "tool": "search_tickets",
                                      "args": {"query": format!("ticket {n}")}}))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    let Ok(resp) = sent else { continue };
                    if resp.status() != 200 {
                        continue;
                    }
                    let Ok(body) = resp.json::<Value>().await else {
                        continue;
                    };
                    if let Some(seq) = body["seq"].as_u64() {
                        acked
                            .lock()
                            .expect("lock")
                            .push((session.clone(), seq, replica));
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = a.0.kill(); // SIGKILL
    let _ = a.0.wait();
    let killed_at = acked.lock().expect("lock").len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.expect("load task");
    }
    let acked = acked.lock().expect("lock").clone();
    eprintln!(
        "acknowledged: {killed_at} before the kill, {} after (on the survivor)",
        acked.len() - killed_at
    );
    assert!(
        acked[..killed_at].iter().any(|(_, _, r)| *r == 0),
        "replica A acknowledged steps before it was killed"
    );
    // Every session, those A opened included, went on on B after A died.
    let after: BTreeSet<&str> = acked[killed_at..]
        .iter()
        .map(|(s, _, _)| s.as_str())
        .collect();
    assert_eq!(after.len(), sessions.len(), "{after:?}");

    // Every acknowledged step is in the store and in the log.
    let db = Database::from_config(&store).expect("config").expect("url");
    let st = PgStore::open(&db).expect("store");
    let reader = warden_audit::AuditReader::with_key_in(
        &root.path().join("b/data"),
        Box::new(PgLogStore::open(&db).expect("log")),
    )
    .expect("reader");
    for (session, _) in &sessions {
        let stored: BTreeSet<u64> = st
            .load_session(session)
            .expect("load")
            .expect("present")
            .steps
            .iter()
            .map(|s| s.seq)
            .collect();
        let logged: BTreeSet<u64> = reader
            .events(&EventFilter {
                session: Some(session.clone()),
                kind: Some(EventKind::Decision),
                ..EventFilter::default()
            })
            .expect("events")
            .iter()
            .filter_map(|e| e.event.body["seq"].as_u64())
            .collect();
        for (s, seq, _) in acked.iter().filter(|(s, _, _)| s == session) {
            assert!(
                stored.contains(seq),
                "step {seq} of {s} acknowledged, not stored"
            );
            assert!(
                logged.contains(seq),
                "step {seq} of {s} acknowledged, not logged"
            );
        }
    }

    // The survivor signs what is unsigned (the killed replica's last entries included); then
    // the one log verifies.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let verified = Command::new(env!("CARGO_BIN_EXE_warden"))
        .env_remove("WARDEN_CONFIG")
        .arg("--config")
        .arg(&conf_b)
        .args(["audit", "verify"])
        .output()
        .expect("warden audit verify");
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    // Shadow replay reads the fleet's traffic from the shared database: every session, every
    // decision the store holds.
    let replayed = Command::new(env!("CARGO_BIN_EXE_warden"))
        .env_remove("WARDEN_CONFIG")
        .arg("--config")
        .arg(&conf_b)
        .args(["replay", "--from-audit", "--json"])
        .output()
        .expect("warden replay --from-audit");
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    let report: Value = serde_json::from_slice(&replayed.stdout).expect("JSON report");
    assert_eq!(report["sessions"], sessions.len(), "{report}");
    assert!(
        report["decisions"].as_u64().expect("decisions") >= acked.len() as u64,
        "{report}"
    );
}
