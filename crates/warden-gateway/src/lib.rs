//! Warden's enforcement points: the runtime that drives sessions through the decision core and
//! makes every step durable, the guard API in front of it, the MCP stdio wrapper, and the MCP
//! streamable HTTP front (`/mcp`) of the servers the config declares, and the web dashboard
//! (`/ui/`).

pub mod api;
pub mod config;
pub mod dashboard;
pub mod mcp;
pub mod mcp_http;
pub mod outbound;
pub mod runtime;
pub mod telemetry;

use std::sync::Arc;

pub use config::Config;
pub use runtime::Runtime;

/// Build a runtime from a config: the policy engine, and the store: SQLite under the data dir,
/// or the PostgreSQL database `[store] url` names (a fleet's, shared with other replicas).
pub fn runtime(config: Config) -> Result<Arc<Runtime>, StartError> {
    config.validate()?;
    let engine = config.engine()?;
    let dir = config.data_dir();
    warden_audit::create_private_dir(&dir)
        .map_err(|e| StartError::DataDir(dir.display().to_string(), e))?;
    let fleet = shared_database(&config)?;
    let (store, audit, shared, place): (Arc<dyn warden_store::SessionStore>, _, _, _) = match &fleet
    {
        Some(db) => {
            let store = warden_pg::PgStore::open(db)?;
            let audit = warden_audit::AuditLog::open_in(
                &dir,
                &config.audit,
                Box::new(warden_pg::PgLogStore::open(db)?),
                Box::new(warden_pg::PgLogStore::open(db)?),
            )?;
            let place = (
                db.name().to_string(),
                "Restore the database from a backup that holds both".to_string(),
            );
            (Arc::new(store), audit, true, place)
        }
        None => {
            // The session store survives what the audit log survives.
            let durability = match config.audit.durability {
                warden_audit::Durability::Process => warden_store::Durability::Process,
                warden_audit::Durability::Power => warden_store::Durability::Power,
            };
            let db = dir.join(warden_audit::DB_FILE);
            let store = warden_store::SqliteStore::open_with(&db, durability)?;
            let audit = warden_audit::AuditLog::open(&dir, &config.audit)?;
            let place = (
                db.display().to_string(),
                format!(
                    "Put back the {} (with its -wal and -shm files) that holds both",
                    warden_audit::DB_FILE
                ),
            );
            (Arc::new(store), audit, false, place)
        }
    };
    let unsigned = audit.unsigned_at_start();
    if !unsigned.is_empty() {
        tracing::warn!(
            "audit log: entries {}..{} were covered by no signed checkpoint at start: the \
             Warden that wrote them was killed (or the machine lost power) before signing them, \
             or another Warden on this data is about to; they were checked against their \
             bytes and are signed soon",
            unsigned.start,
            unsigned.end
        );
    }
    check_same_history(&*store, &audit, &dir, &place.0, &place.1)?;
    let mut rt = Runtime::new(config.clone(), engine, store)
        .with_audit_in_store(Arc::new(audit))
        .with_shared_store(shared)
        .with_shadow(config.server.shadow)
        .with_carried_labels()?
        .with_published_tools()?;
    if config.detect.enabled {
        rt = rt.with_detector(detector_model(&config)?);
    }
    if let Some(t) = telemetry::Telemetry::start(&config.telemetry)? {
        rt = rt.with_telemetry(Arc::new(t));
    }
    let rt = Arc::new(rt);
    if let Some(db) = &fleet {
        rt.join_fleet(db)?;
    }
    Ok(rt)
}

/// The shared database `[store] url` names, if any (its migrations not yet applied).
pub fn shared_database(config: &Config) -> Result<Option<warden_pg::Database>, StartError> {
    Ok(warden_pg::Database::from_config(&config.store)?)
}

/// The audit log, to read it beside a running Warden: in the shared database when the config
/// names one (trusting the verifier key in `data_dir`'s `audit.pub`, which every replica
/// holds), else in `data_dir`.
pub fn audit_reader(
    config: &Config,
    data_dir: &std::path::Path,
) -> Result<warden_audit::AuditReader, StartError> {
    Ok(match shared_database(config)? {
        Some(db) => warden_audit::AuditReader::with_key_in(
            data_dir,
            Box::new(warden_pg::PgLogStore::open(&db)?),
        )?,
        None => warden_audit::AuditReader::open(data_dir)?,
    })
}

/// The session store, to read it (or accept a pin) beside a running Warden: the shared
/// database when the config names one, else `data_dir`'s `warden.db`; `None` when that file
/// does not exist yet (nothing was recorded there).
pub fn existing_store(
    config: &Config,
    data_dir: &std::path::Path,
) -> Result<Option<Box<dyn warden_store::SessionStore>>, StartError> {
    if let Some(db) = shared_database(config)? {
        return Ok(Some(Box::new(warden_pg::PgStore::open(&db)?)));
    }
    let file = data_dir.join(warden_audit::DB_FILE);
    if !file.exists() {
        return Ok(None);
    }
    Ok(Some(Box::new(warden_store::SqliteStore::open(&file)?)))
}

/// The session store and the audit log must tell one history. They share one database, but
/// each table can still be emptied or copied in from elsewhere on its own: the log is written
/// first (or with the step), so it records the opening of the newest stored session; and a
/// decision is made only in a session the store holds, so the store holds the session of the
/// log's newest decision. Otherwise starting would record a history the other half does not
/// back.
fn check_same_history(
    store: &dyn warden_store::SessionStore,
    audit: &warden_audit::AuditLog,
    dir: &std::path::Path,
    db: &str,
    restore: &str,
) -> Result<(), StartError> {
    use warden_audit::{EventFilter, EventKind};
    let afresh = format!(
        "to start afresh, move the data dir {} aside (it is the evidence) and start again",
        dir.display()
    );
    if let Some(newest) = store.list_sessions(1)?.into_iter().next() {
        let opened = audit.events(&EventFilter {
            session: Some(newest.id.clone()),
            kind: Some(EventKind::SessionOpened),
            limit: 1,
            ..EventFilter::default()
        })?;
        if opened.is_empty() {
            return Err(StartError::Disagree(format!(
                "{} holds sessions that the audit log does not record (the newest is `{}`): \
                 the log's entries were deleted, or the sessions were put in from another \
                 data dir. {restore}; {afresh}",
                db, newest.id,
            )));
        }
    }
    let newest_decision = audit.events(&EventFilter {
        kind: Some(EventKind::Decision),
        limit: 1,
        newest: true,
        ..EventFilter::default()
    })?;
    if let Some(decision) = newest_decision.first() {
        if !store.has_session(&decision.event.session)? {
            return Err(StartError::Disagree(format!(
                "the audit log in {} records decisions in session `{}`, which the session \
                 store does not hold: the store's sessions were deleted (and its pending \
                 approvals with them), or the log was put in from another data dir. \
                 {restore}; {afresh}",
                db, decision.event.session,
            )));
        }
    }
    Ok(())
}

/// The detector's model file under the data dir.
pub fn detector_path(config: &Config) -> std::path::PathBuf {
    config.data_dir().join(&config.detect.model)
}

/// The behavioural baseline: the saved model if there is one, else an empty one that learns
/// from traffic (and falls back to per-agent and global models while it is young).
pub fn detector_model(config: &Config) -> Result<warden_detect::Baseline, StartError> {
    let path = detector_path(config);
    if path.exists() {
        let mut model = warden_detect::Baseline::load(&path)?;
        model.config = config.detect.tuning.clone();
        Ok(model)
    } else {
        Ok(warden_detect::Baseline::new(config.detect.tuning.clone()))
    }
}

/// How long a shutdown waits for open connections to finish their requests.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serve the guard API (and `/mcp` when upstreams are declared) until `shutdown` resolves, then
/// wait (up to `SHUTDOWN_GRACE`) for open connections to finish their requests.
///
/// Each connection is served by hyper with `server.header_timeout_secs` to send a request head
/// (also while idle between requests), at most `server.max_connections` at once (past it, new
/// connections wait in the listen queue), and bodies have `server.body_timeout_secs` (a layer of
/// the router). So half-sent requests and idle connections cannot hold Warden's descriptors.
pub async fn serve(
    rt: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Open MCP streams would hold the graceful shutdown: end them when it starts.
    let streams = tokio_util::sync::CancellationToken::new();
    let server = &rt.config().server;
    // Bounded so that every slot can be counted back (`acquire_many` takes a u32).
    let max_connections = server.max_connections.clamp(1, 1 << 20);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(server.header_timeout_secs));
    let sweeper = tokio::spawn(sweep_stale_approvals(rt.clone()));
    let app = api::router_with(rt, streams.clone());
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was accepted: wait a
                // little rather than spin, and keep serving the others.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if slots.available_permits() == 0 {
            tracing::warn!(
                "{max_connections} connections open (server.max_connections): new ones wait"
            );
        }
        // Small request/response exchanges (a decision, an MCP call) must not wait for Nagle's
        // algorithm: without `TCP_NODELAY` each answer sat ~40 ms behind the client's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("could not set TCP_NODELAY: {e}");
        }
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
        let stop = streams.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    streams.cancel();
    // Every connection holds a slot until it is done: all of them back means all are closed. A
    // response that never ends (an event stream a client keeps open) must not keep Warden from
    // stopping: past the grace period the rest are dropped with the process.
    let all = slots.acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX));
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!(
            "{} connection(s) still open {}s after shutdown began: closing them",
            max_connections - slots.available_permits(),
            SHUTDOWN_GRACE.as_secs()
        );
    }
    sweeper.abort();
    Ok(())
}

/// Held calls nobody will decide any more expire after `server.approval_expiry_secs`.
async fn sweep_stale_approvals(rt: Arc<Runtime>) {
    let max_age = std::time::Duration::from_secs(rt.config().server.approval_expiry_secs);
    let every = (max_age / 2).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(60),
    );
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let rt = rt.clone();
        match tokio::task::spawn_blocking(move || rt.expire_stale_approvals(max_age)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!("expired {n} held call(s) nobody decided"),
            Ok(Err(e)) => tracing::warn!("sweeping stale approvals: {e}"),
            Err(e) => tracing::warn!("sweeping stale approvals: {e}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] warden_store::StoreError),
    #[error("opening the audit log: {0}")]
    Audit(#[from] warden_audit::AuditError),
    #[error("the shared store: {0}")]
    Database(#[from] warden_pg::PgError),
    #[error("joining the fleet: {0}")]
    Fleet(#[from] runtime::RuntimeError),
    #[error("the session store and the audit log disagree: {0}")]
    Disagree(String),
    #[error("loading the detector model: {0}")]
    Detect(#[from] warden_detect::DetectError),
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
}
