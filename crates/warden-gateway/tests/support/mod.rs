//! A guard-API server running in the test's own process, on a loopback port, over a real data
//! dir: shared by the gateway's end-to-end tests.

// Not every test binary that includes this module uses every helper.
#[allow(dead_code)]
pub mod guard;
#[allow(dead_code)]
pub mod mcp;

use tokio::sync::oneshot;
use warden_audit::{AuditReader, EventFilter, EventKind};
use warden_gateway::Config;

#[allow(dead_code)]
/// An HTTP client for the tests' own requests, with Warden's TLS set up (reqwest cannot build
/// one before a TLS provider is installed).
pub fn http() -> reqwest::Client {
    warden_gateway::outbound::client(None).expect("an HTTP client")
}

pub struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let rt = warden_gateway::runtime(config).expect("the runtime starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(warden_gateway::serve(rt, listener, async move {
            let _ = stopped.await;
        }));
        Server {
            base: format!("http://{addr}"),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stop the server and wait until it has let go of everything (the audit log included).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await
                .expect("the server task did not panic")
                .expect("the server shut down cleanly");
        }
    }
}

/// The bodies of the audit log's alerts under `data_dir`, oldest first.
#[allow(dead_code)]
pub fn alert_bodies(data_dir: &std::path::Path) -> Vec<serde_json::Value> {
    AuditReader::open(data_dir)
        .expect("the audit log opens")
        .events(&EventFilter {
            kind: Some(EventKind::Alert),
            ..EventFilter::default()
        })
        .expect("events")
        .into_iter()
        .map(|e| e.event.body)
        .collect()
}
