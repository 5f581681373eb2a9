//! Warden's enforcement points: the runtime that drives sessions through the decision core and
//! makes every step durable, and the guard API in front of it. Later: MCP (stdio and HTTP).

pub mod api;
pub mod config;
pub mod runtime;

use std::sync::Arc;

pub use config::Config;
pub use runtime::Runtime;

/// Build a runtime from a config: the policy engine, and the SQLite store under the data dir.
pub fn runtime(config: Config) -> Result<Arc<Runtime>, StartError> {
    config.validate()?;
    let engine = config.engine()?;
    let dir = config.data_dir();
    std::fs::create_dir_all(&dir).map_err(|e| StartError::DataDir(dir.display().to_string(), e))?;
    let store = warden_store::SqliteStore::open(&dir.join("warden.db"))?;
    let audit = warden_audit::AuditLog::open(&dir, &config.audit)?;
    Ok(Arc::new(
        Runtime::new(config.clone(), engine, Arc::new(store))
            .with_audit(Arc::new(audit))
            .with_shadow(config.server.shadow),
    ))
}

/// Serve the guard API until `shutdown` resolves.
pub async fn serve(
    rt: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, api::router(rt))
        .with_graceful_shutdown(shutdown)
        .await
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
}
