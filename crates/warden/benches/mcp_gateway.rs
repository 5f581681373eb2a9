//! `tools/call` round trips to npm server-everything's `echo` tool, direct and through Warden, in
//! one run with the two alternating (so machine noise hits both), over stdio (`warden mcp -- …`)
//! and streamable HTTP (`warden serve`'s `/mcp` in front of one stdio upstream). Reports p50/p99
//! latency, sequential calls/s, calls/s with 16 in flight, the added p50, the ratio of
//! sequential calls/s, and the gateway's CPU time per proxied call (from `/proc/<pid>/stat`).
//! The full decision and audit path is on; state goes to a fresh temp data dir.
//!
//!   cargo build --release -p warden
//!   cargo bench -p warden --bench mcp_gateway [stdio|http]
//!
//! `MCP_GATEWAY_QUICK=1` runs a tenth of the calls, for quick iteration (report full runs).
//!
//! Needs Node 20 and npm (the peers are pinned in `tests/node/package.json`; `npm ci` runs there
//! on first use). Everything runs on loopback; every child process is ended at the end.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, JsonObject};
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::json;

/// The `warden` binary cargo built for this bench (the bench profile: optimised).
const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

const WARMUP: usize = 200;
const SEQ_CALLS: usize = 2_000;
const SEQ_ROUNDS: usize = 10;
const CONC_CALLS: usize = 4_000;
const CONC_ROUNDS: usize = 4;
const IN_FLIGHT: usize = 16;

/// How many calls of each kind a run makes: all of them, or a tenth with `MCP_GATEWAY_QUICK`.
fn calls(full: usize) -> usize {
    if std::env::var_os("MCP_GATEWAY_QUICK").is_some_and(|v| !v.is_empty() && v != "0") {
        full / 10
    } else {
        full
    }
}

type Client = RunningService<RoleClient, ()>;

fn everything_server() -> PathBuf {
    support::node_package("@modelcontextprotocol/server-everything/dist/index.js")
}

/// Clock ticks per second for `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 if that fails).
fn clock_ticks() -> (f64, bool) {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .map(|t| (t, true))
        .unwrap_or((100.0, false))
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e} (did the gateway exit?)"));
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
}

/// Whether the process is gone (or a zombie nobody reaped yet).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Every live descendant of `pid`.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            let rest: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            if let Some(ppid) = rest.get(1).and_then(|p| p.parse::<u32>().ok()) {
                parent_of.insert(child, ppid);
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (&c, &pp) in &parent_of {
            if pp == p && !dead(c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Kill processes that outlived their parent; each one is reported (it is a leak).
fn reap_leftovers(what: &str, pids: &[u32]) {
    std::thread::sleep(Duration::from_millis(300));
    for &pid in pids {
        if !dead(pid) {
            eprintln!("note: {what}: process {pid} outlived its parent; killing it");
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

async fn wait_exit(child: &mut tokio::process::Child, secs: u64) -> bool {
    tokio::time::timeout(Duration::from_secs(secs), child.wait())
        .await
        .is_ok()
}

/// One `tools/call echo`; panics on anything but a plain result. Each call echoes a fresh
/// value: with one fixed message, every call after the first would pass a value an earlier
/// result carried into `message`, which the baseline policy holds for a person (see the report).
async fn echo(peer: &Peer<RoleClient>) {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut args = JsonObject::new();
    args.insert(
        "message".into(),
        json!(format!("m{:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
    );
    let result = peer
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("tools/call echo: {e}"));
    if result.is_error == Some(true) {
        panic!("tools/call echo answered an error: {result:?}");
    }
}

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    seq_elapsed: Duration,
    conc_calls: usize,
    conc_elapsed: Duration,
    cpu_ticks: u64,
    cpu_calls: usize,
}

impl Stats {
    fn pct(&self, p: usize) -> f64 {
        let mut v = self.latencies.clone();
        v.sort();
        let i = (v.len() * p / 100).min(v.len() - 1);
        v[i].as_secs_f64() * 1e6
    }
    fn seq_rate(&self) -> f64 {
        self.latencies.len() as f64 / self.seq_elapsed.as_secs_f64()
    }
    fn conc_rate(&self) -> f64 {
        self.conc_calls as f64 / self.conc_elapsed.as_secs_f64()
    }
}

/// One side of a comparison: a client, and the gateway's pid if it goes through Warden.
struct Side {
    peer: Peer<RoleClient>,
    gateway: Option<u32>,
    stats: Stats,
}

impl Side {
    async fn seq(&mut self, n: usize) {
        let cpu0 = self.gateway.map(cpu_ticks);
        let start = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            echo(&self.peer).await;
            self.stats.latencies.push(t.elapsed());
        }
        self.stats.seq_elapsed += start.elapsed();
        if let (Some(pid), Some(c0)) = (self.gateway, cpu0) {
            self.stats.cpu_ticks += cpu_ticks(pid) - c0;
            self.stats.cpu_calls += n;
        }
    }

    async fn conc(&mut self, n: usize) {
        let cpu0 = self.gateway.map(cpu_ticks);
        let start = Instant::now();
        in_flight(&self.peer, n).await;
        self.stats.conc_elapsed += start.elapsed();
        self.stats.conc_calls += n;
        if let (Some(pid), Some(c0)) = (self.gateway, cpu0) {
            self.stats.cpu_ticks += cpu_ticks(pid) - c0;
            self.stats.cpu_calls += n;
        }
    }
}

/// `n` calls with `IN_FLIGHT` outstanding at a time.
async fn in_flight(peer: &Peer<RoleClient>, n: usize) {
    let left = Arc::new(AtomicUsize::new(n));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let peer = peer.clone();
        let left = left.clone();
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                .is_ok()
            {
                echo(&peer).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("an in-flight worker");
    }
}

/// Warm both sides up, then measure them alternating, the order swapped every round.
async fn compare(direct: &mut Side, through: &mut Side) {
    for side in [&mut *direct, &mut *through] {
        for _ in 0..WARMUP {
            echo(&side.peer).await;
        }
        in_flight(&side.peer, WARMUP).await;
    }
    for round in 0..SEQ_ROUNDS {
        let n = calls(SEQ_CALLS) / SEQ_ROUNDS;
        if round % 2 == 0 {
            direct.seq(n).await;
            through.seq(n).await;
        } else {
            through.seq(n).await;
            direct.seq(n).await;
        }
    }
    for round in 0..CONC_ROUNDS {
        let n = calls(CONC_CALLS) / CONC_ROUNDS;
        if round % 2 == 0 {
            direct.conc(n).await;
            through.conc(n).await;
        } else {
            through.conc(n).await;
            direct.conc(n).await;
        }
    }
}

/// A client over a child's stdin/stdout; the child is ours to end.
async fn stdio_client(mut cmd: tokio::process::Command) -> (Client, tokio::process::Child) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the stdio server starts");
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let client = ().serve((stdout, stdin)).await.expect("initialize over stdio");
    (client, child)
}

/// Close the client (the child sees EOF on stdin), give the child a moment, then kill it and
/// anything it left behind.
async fn end_stdio(what: &str, client: Client, mut child: tokio::process::Child) {
    let pid = child.id().unwrap_or(0);
    let kids = descendants(pid);
    let _ = client.cancel().await;
    if !wait_exit(&mut child, 5).await {
        eprintln!("note: {what} did not exit within 5 s of its stdin closing; killing it");
        let _ = child.kill().await;
    }
    reap_leftovers(what, &kids);
}

async fn bench_stdio(everything: &Path, tmp: &Path) -> (Stats, Stats) {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(everything).arg("stdio");
    let (direct_client, direct_child) = stdio_client(cmd).await;

    let mut cmd = tokio::process::Command::new(WARDEN);
    cmd.env_remove("WARDEN_CONFIG")
        .arg("mcp")
        .arg("--data-dir")
        .arg(tmp.join("state-stdio"))
        .arg("--")
        .arg("node")
        .arg(everything)
        .arg("stdio");
    let (through_client, through_child) = stdio_client(cmd).await;

    let mut direct = Side {
        peer: direct_client.peer().clone(),
        gateway: None,
        stats: Stats::default(),
    };
    let mut through = Side {
        peer: through_client.peer().clone(),
        gateway: through_child.id(),
        stats: Stats::default(),
    };
    compare(&mut direct, &mut through).await;
    end_stdio("node (direct)", direct_client, direct_child).await;
    end_stdio("warden mcp", through_client, through_child).await;
    (direct.stats, through.stats)
}

/// A child ended (and waited for) when dropped, with its leftovers.
struct Proc {
    what: &'static str,
    child: std::process::Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let kids = descendants(self.child.id());
        // SIGTERM first, so the process can end its own children; then SIGKILL.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            eprintln!(
                "note: {} did not exit within 5 s of SIGTERM; killing it",
                self.what
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        reap_leftovers(self.what, &kids);
    }
}

/// Drain a child's stderr on a thread; lines go to `tx` and the last few are kept for errors.
fn drain(
    stderr: std::process::ChildStderr,
    tail: Arc<Mutex<Vec<String>>>,
) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            {
                let mut t = tail.lock().unwrap();
                t.push(line.clone());
                if t.len() > 20 {
                    t.remove(0);
                }
            }
            let _ = tx.send(line);
        }
    });
    rx
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

async fn http_client(addr: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"));
    let transport = StreamableHttpClientTransport::with_client(support::http(), config);
    ().serve(transport)
        .await
        .unwrap_or_else(|e| panic!("initialize over HTTP at {addr}: {e}"))
}

async fn bench_http(everything: &Path, tmp: &Path) -> (Stats, Stats) {
    // server-everything in streamable HTTP mode, on a free loopback port.
    let port = free_port();
    let direct_proc = Proc {
        what: "node streamableHttp (direct)",
        child: Command::new("node")
            .arg(everything)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let direct_addr = format!("127.0.0.1:{port}");

    // `warden serve` with one stdio upstream: /mcp is transparent, `echo` keeps its name.
    let config = tmp.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstreams]]\nname = \"everything\"\ncommand = [\"node\", {:?}, \"stdio\"]\n",
            everything.display().to_string()
        ),
    )
    .expect("write config");
    let mut child = Command::new(WARDEN)
        .env_remove("WARDEN_CONFIG")
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.join("state-http"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("warden serve starts");
    let tail = Arc::new(Mutex::new(Vec::new()));
    let rx = drain(child.stderr.take().unwrap(), tail.clone());
    let serve = Proc {
        what: "warden serve",
        child,
    };
    let through_addr = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                if let Some(rest) = line.split("guard API on http://").nth(1) {
                    break rest
                        .split_whitespace()
                        .next()
                        .expect("an address")
                        .to_owned();
                }
            }
            Err(_) => panic!(
                "no `guard API on` line from warden serve; its stderr:\n{}",
                tail.lock().unwrap().join("\n")
            ),
        }
    };

    let direct_client = http_client(&direct_addr).await;
    let through_client = http_client(&through_addr).await;
    let mut direct = Side {
        peer: direct_client.peer().clone(),
        gateway: None,
        stats: Stats::default(),
    };
    let mut through = Side {
        peer: through_client.peer().clone(),
        gateway: Some(serve.child.id()),
        stats: Stats::default(),
    };
    compare(&mut direct, &mut through).await;
    let _ = direct_client.cancel().await;
    let _ = through_client.cancel().await;
    drop(serve);
    drop(direct_proc);
    (direct.stats, through.stats)
}

fn report(rows: &[(&str, Stats, Stats)], ticks: (f64, bool)) {
    println!();
    println!(
        "`tools/call echo` on npm server-everything, {} sequential + {} with {IN_FLIGHT} in \
         flight per side, alternating direct and through Warden (full decision + audit path)",
        calls(SEQ_CALLS),
        calls(CONC_CALLS)
    );
    println!();
    println!(
        "| mode | path | p50 µs | p99 µs | calls/s seq | calls/s {IN_FLIGHT} in flight | added p50 µs | seq calls/s ratio | {IN_FLIGHT}-in-flight ratio | gateway CPU ms/call |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (mode, d, t) in rows {
        println!(
            "| {mode} | direct | {:.0} | {:.0} | {:.0} | {:.0} | | | | |",
            d.pct(50),
            d.pct(99),
            d.seq_rate(),
            d.conc_rate()
        );
        let cpu_ms = t.cpu_ticks as f64 / ticks.0 * 1e3 / t.cpu_calls as f64;
        println!(
            "| {mode} | through Warden | {:.0} | {:.0} | {:.0} | {:.0} | {:+.0} | {:.2} | {:.2} | {:.3} |",
            t.pct(50),
            t.pct(99),
            t.seq_rate(),
            t.conc_rate(),
            t.pct(50) - d.pct(50),
            t.seq_rate() / d.seq_rate(),
            t.conc_rate() / d.conc_rate(),
            cpu_ms,
        );
    }
    println!();
    println!(
        "Gateway CPU = utime+stime of the warden process (not its upstream child) over all {} \
         through-Warden calls (sequential and in flight), at {} clock ticks/s{}.",
        calls(SEQ_CALLS) + calls(CONC_CALLS),
        ticks.0,
        if ticks.1 {
            " (getconf CLK_TCK)"
        } else {
            " (assumed; getconf CLK_TCK failed)"
        }
    );
    println!(
        "Reference (issue 3): a well-known Rust MCP gateway, streamable HTTP in front of \
         server-everything: +330–370 µs p50, 0.65 of direct sequential calls/s, 0.29–0.32 ms CPU \
         per call. Goal: added p50 ≤ 150 µs, ≥ 0.85 of direct, ≤ 0.1 ms CPU per call."
    );
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: build-check only.
    if !std::env::args().any(|a| a == "--bench") {
        println!("mcp_gateway: run it with `cargo bench -p warden --bench mcp_gateway`");
        return;
    }
    assert!(
        Path::new(WARDEN).exists(),
        "{WARDEN} is missing: run `cargo build --release -p warden` first"
    );
    let everything = everything_server();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ticks = clock_ticks();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let modes: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a == "stdio" || a == "http")
        .collect();
    let want = |m: &str| modes.is_empty() || modes.iter().any(|x| x == m);
    let mut rows = Vec::new();
    if want("stdio") {
        eprintln!("mcp_gateway: stdio …");
        let (d, t) = rt.block_on(bench_stdio(&everything, tmp.path()));
        rows.push(("stdio", d, t));
    }
    if want("http") {
        eprintln!("mcp_gateway: streamable HTTP …");
        let (d, t) = rt.block_on(bench_http(&everything, tmp.path()));
        rows.push(("HTTP", d, t));
    }
    drop(rt);
    report(&rows, ticks);
}
