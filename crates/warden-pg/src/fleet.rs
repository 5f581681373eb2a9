//! What one replica tells the others, and hears from them: PostgreSQL's LISTEN/NOTIFY on one
//! channel. A replica announces each change it made durable (a session opened, a step, an
//! approval resolved); the others pass it to their live views and wake the calls waiting on
//! that approval. A notification is a hint, never the record: a listener that lost its
//! connection says so when it is back, and its runtime re-reads what it waits on.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::Duration;

use tokio_postgres::{AsyncMessage, Client};

use crate::{wait, Database, PgError};

/// The channel every replica listens on.
pub const CHANNEL: &str = "warden_changes";

/// Payloads waiting to be sent; past this many, new ones are dropped (live views re-read).
const QUEUED: usize = 4096;

/// Sends notifications from a thread of its own, so a step never waits for one. Dropped, it
/// gives the thread up to 2 s to send what is queued (a CLI's approval, made just before the
/// process exits, still wakes the replica waiting on it at once).
pub struct Notifier {
    queue: Option<SyncSender<String>>,
    sent: std::sync::Mutex<Receiver<()>>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.queue.take();
        if let Ok(sent) = self.sent.lock() {
            let _ = sent.recv_timeout(Duration::from_secs(2));
        }
    }
}

impl Notifier {
    pub fn start(db: &Database) -> Result<Notifier, PgError> {
        let (queue, queued) = sync_channel::<String>(QUEUED);
        let (all_sent, sent) = sync_channel::<()>(1);
        let db = db.clone();
        std::thread::Builder::new()
            .name("warden-pg-notify".into())
            .spawn(move || {
                let mut client: Option<Client> = None;
                // Ends when the notifier is dropped.
                while let Ok(payload) = queued.recv() {
                    if client.as_ref().is_none_or(Client::is_closed) {
                        client = db.connect().ok();
                    }
                    let Some(c) = &client else {
                        continue;
                    };
                    if let Err(e) = wait(c.execute_typed(
                        "SELECT pg_notify($1, $2)",
                        &[
                            (&CHANNEL, tokio_postgres::types::Type::TEXT),
                            (&payload, tokio_postgres::types::Type::TEXT),
                        ],
                    )) {
                        tracing::debug!(error = %e, "a fleet notification was not sent");
                    }
                }
                let _ = all_sent.send(());
            })
            .map_err(|e| PgError(format!("cannot start the notifier thread: {e}")))?;
        Ok(Notifier {
            queue: Some(queue),
            sent: std::sync::Mutex::new(sent),
        })
    }

    /// Queues `payload` (at most 8000 bytes, PostgreSQL's limit) for the other replicas.
    pub fn send(&self, payload: String) {
        if let Some(queue) = &self.queue {
            let _ = queue.try_send(payload);
        }
    }
}

/// Listens on [`CHANNEL`] until dropped, reconnecting (every second) while the database is away.
pub struct Listener {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Calls `heard(Some(payload))` for each notification, and `heard(None)` each time the listener
/// (re)connects: anything may have changed while it was away.
pub fn listen(
    db: &Database,
    heard: impl Fn(Option<&str>) + Send + 'static,
) -> Result<Listener, PgError> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let (config, tls) = (db.config.clone(), db.tls.clone());
    let name = db.name.clone();
    crate::on_own_thread("warden-pg-listen", move || async move {
        loop {
            tokio::select! {
                ended = listen_once(&config, &tls, &heard) => {
                    if let Err(e) = ended {
                        tracing::warn!(database = %name, error = %e, "the fleet listener lost the database; reconnecting");
                    }
                }
                _ = &mut stopped => return,
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = &mut stopped => return,
            }
        }
    })?;
    Ok(Listener { stop: Some(stop) })
}

/// One connection's worth of listening: until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
    heard: &impl Fn(Option<&str>),
) -> Result<(), PgError> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (tell, mut told) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tell.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    heard(None);
    while let Some(payload) = told.recv().await {
        heard(Some(&payload));
    }
    driver.abort();
    Err(PgError("the connection ended".into()))
}
