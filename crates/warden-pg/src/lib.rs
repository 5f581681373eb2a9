//! PostgreSQL as the shared store of a fleet: any number of `warden serve` replicas keep their
//! sessions, steps, approvals, carried labels, pinned tools and the one audit log in one
//! database, so any replica serves any session and a person's approval on one releases the call
//! waiting on another.
//!
//! - [`PgStore`] is the fleet's `SessionStore`; [`PgLogStore`] the audit log's `LogStore`. A
//!   step's entry and its store row commit in one transaction, as on SQLite (the log's writer
//!   runs the store's [`write_step`] as the entry's companion).
//! - The log's indexes are sequenced by PostgreSQL: every append holds a transaction-scoped
//!   advisory lock ([`LOG_LOCK`]), catches up with what other replicas appended, and inserts the
//!   next indexes; contiguous, one RFC 9162 tree, no consensus of our own.
//! - Per-session order is the database's too: `steps` is keyed by (session, seq), so of two
//!   replicas writing the same step of one session, one commit fails and that call is refused.
//! - What a replica changes it announces on a LISTEN/NOTIFY channel ([`fleet`]): the others
//!   wake the calls waiting on an approval made there, and show the change in their live views.
//! - Migrations are versioned ([`migrate`]) and applied at start under an advisory lock, so
//!   replicas starting together apply each once.
//!
//! The clients are `tokio-postgres`'s, each driven on a thread of its own: the store traits are
//! synchronous (SQLite is the embedded default), and a blocking wait on a client future
//! (`futures_executor::block_on`) works from any thread, a tokio worker included.

pub mod fleet;
mod log;
mod store;
pub mod testing;

use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

pub use fleet::{listen, Listener, Notifier};
pub use log::PgLogStore;
pub use store::{resolve_pending, write_session, write_step, PgStore, STEP_TAKEN};

/// The advisory lock every audit append holds for its transaction (the log's sequencer).
pub const LOG_LOCK: i64 = 0x5741_5244_454e_0001;
/// The advisory lock migrations are applied under.
pub const MIGRATE_LOCK: i64 = 0x5741_5244_454e_0002;
/// The advisory lock a tool's pin is checked and written under.
pub const PIN_LOCK: i64 = 0x5741_5244_454e_0003;

/// The `[store]` settings: where the shared database is. Without `url`, the store is SQLite in
/// the data dir (the embedded default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user@host:port/database` (or the `host=… user=…` form), without a
    /// password: the password comes from `password_env` or `password_file`.
    pub url: Option<String>,
    /// The environment variable holding the password (default `WARDEN_STORE_PASSWORD`, read
    /// when set).
    pub password_env: Option<String>,
    /// A file holding the password (its first line); mode 0600 is advised.
    pub password_file: Option<PathBuf>,
    /// Certificates (PEM) to trust for the server's TLS besides the platform's roots: a private
    /// CA, or the server's own self-signed certificate. TLS follows the URL's `sslmode`:
    /// `prefer` (the default: TLS when the server offers it), `require`, or `disable`.
    pub ca_file: Option<PathBuf>,
    /// The most connections the session store opens (the audit log keeps two of its own).
    pub max_connections: usize,
}

/// The environment variable a password is read from when `password_env` names none.
pub const DEFAULT_PASSWORD_ENV: &str = "WARDEN_STORE_PASSWORD";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError(pub String);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PgError {}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> PgError {
        // The server's own message (with its detail) says more than the client's summary.
        match e.as_db_error() {
            Some(db) => PgError(format!(
                "PostgreSQL: {}{}",
                db.message(),
                db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            )),
            // The client's summary ("error performing TLS handshake") and what caused it.
            None => {
                let mut why = format!("PostgreSQL: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    why.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                PgError(why)
            }
        }
    }
}

impl From<PgError> for warden_store::StoreError {
    fn from(e: PgError) -> Self {
        warden_store::StoreError::Database(e.0)
    }
}

impl From<PgError> for warden_audit::AuditError {
    fn from(e: PgError) -> Self {
        warden_audit::AuditError::Database(e.0)
    }
}

/// A parsed `[store]` config: the connection settings with the password filled in, and how to
/// name the database in messages (never with the password).
#[derive(Clone)]
pub struct Database {
    config: tokio_postgres::Config,
    name: String,
    max_connections: usize,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Database {
    /// Reads `[store]`: the URL (refused when it holds a password), the password from the
    /// environment or a file. `None` when no URL is set.
    pub fn from_config(c: &StoreConfig) -> Result<Option<Database>, PgError> {
        let Some(url) = &c.url else {
            return Ok(None);
        };
        let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
            PgError(format!(
                "store.url is not a PostgreSQL connection string: {e}"
            ))
        })?;
        if config.get_password().is_some() {
            return Err(PgError(
                "store.url holds a password: keep it out of the config, in the environment \
                 variable store.password_env names (default WARDEN_STORE_PASSWORD) or in the \
                 file store.password_file names"
                    .into(),
            ));
        }
        let env = c.password_env.as_deref().unwrap_or(DEFAULT_PASSWORD_ENV);
        match (&c.password_file, std::env::var(env)) {
            (Some(file), _) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    PgError(format!(
                        "store.password_file {} cannot be read: {e}",
                        file.display()
                    ))
                })?;
                config.password(text.lines().next().unwrap_or("").as_bytes());
            }
            (None, Ok(password)) => {
                config.password(password.as_bytes());
            }
            (None, Err(std::env::VarError::NotUnicode(_))) => {
                return Err(PgError(format!(
                    "the environment variable {env} is not UTF-8"
                )));
            }
            (None, Err(std::env::VarError::NotPresent)) if c.password_env.is_some() => {
                return Err(PgError(format!(
                    "store.password_env names {env}, which is not set"
                )));
            }
            (None, Err(std::env::VarError::NotPresent)) => {}
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("warden");
        let name = describe(&config);
        let tls = tls(c.ca_file.as_deref())?;
        Ok(Some(Database {
            config,
            tls,
            name,
            max_connections: if c.max_connections == 0 {
                8
            } else {
                c.max_connections
            },
        }))
    }

    /// The database as messages name it: `postgres://user@host:port/database`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens one connection, driven on a thread of its own, with Warden's schema first on its
    /// search path.
    pub fn connect(&self) -> Result<Client, PgError> {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let (config, tls) = (self.config.clone(), self.tls.clone());
        on_own_thread("warden-pg", move || async move {
            match config.connect(tls).await {
                Ok((client, connection)) => {
                    let _ = answer.send(Ok(client));
                    // Ends when the client is dropped or the server goes away.
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "PostgreSQL connection ended");
                    }
                }
                Err(e) => {
                    let _ = answer.send(Err(PgError::from(e)));
                }
            }
        })?;
        let client = answered
            .recv()
            .map_err(|_| PgError("the connection thread stopped".into()))?
            .map_err(|e| PgError(format!("cannot connect to {}: {e}", self.name)))?;
        wait(client.batch_execute("SET search_path TO warden"))?;
        Ok(client)
    }
}

/// Runs `work` on a thread of its own, in a runtime of that thread's (a connection's driver,
/// the fleet's listener): the callers' threads only wait on futures.
pub(crate) fn on_own_thread<F: std::future::Future<Output = ()>>(
    name: &str,
    work: impl FnOnce() -> F + Send + 'static,
) -> Result<(), PgError> {
    let what = name.to_owned();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(work()),
                Err(e) => tracing::error!(error = %e, "no runtime for the {what} thread"),
            }
        })
        .map(|_| ())
        .map_err(|e| PgError(format!("cannot start the {name} thread: {e}")))
}

/// The TLS a connection speaks when the server offers it (or the URL requires it): rustls with
/// the ring provider, trusting the platform's roots and the certificates of `ca_file`.
fn tls(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    // A platform store that cannot be read in part still gives the rest.
    let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| PgError(format!("store.ca_file {shown}: not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(PgError(format!(
                "store.ca_file {shown}: holds no certificate"
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                PgError(format!(
                    "store.ca_file {shown}: a certificate rustls refuses: {e}"
                ))
            })?;
        }
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError(format!("cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn describe(c: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        c.get_user().unwrap_or(""),
        c.get_dbname().unwrap_or("")
    )
}

/// Waits for a client future on this thread (the connection is driven on its own).
pub(crate) fn wait<T>(
    f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, PgError> {
    futures_executor::block_on(f).map_err(PgError::from)
}

/// A few connections, opened as needed up to a cap and reused; one whose server went away is
/// dropped, and the next caller opens a new one (the database coming back is noticed then).
pub(crate) struct Pool {
    db: Database,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

/// A connection taken from the pool; given back when dropped (unless it broke).
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Present until drop.
        self.client
            .as_ref()
            .expect("a pooled client until it is given back")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a pooled client until it is given back")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        match self.client.take() {
            // Not one a panic left in an unknown state (a transaction open, say).
            Some(c) if !c.is_closed() && !std::thread::panicking() => state.idle.push(c),
            _ => state.open -= 1,
        }
        self.pool.freed.notify_one();
    }
}

impl Pool {
    pub(crate) fn new(db: Database) -> Pool {
        Pool {
            db,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A connection: an idle one, a new one while fewer than the cap are open, or the first
    /// given back (waiting up to 10 s).
    pub(crate) fn get(&self) -> Result<Pooled<'_>, PgError> {
        let mut state = self.lock();
        loop {
            while let Some(c) = state.idle.pop() {
                if !c.is_closed() {
                    return Ok(Pooled {
                        pool: self,
                        client: Some(c),
                    });
                }
                state.open -= 1;
            }
            if state.open < self.db.max_connections {
                state.open += 1;
                drop(state);
                return match self.db.connect() {
                    Ok(c) => Ok(Pooled {
                        pool: self,
                        client: Some(c),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (s, timeout) = self
                .freed
                .wait_timeout(state, Duration::from_secs(10))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state = s;
            if timeout.timed_out() && state.idle.is_empty() && state.open >= self.db.max_connections
            {
                return Err(PgError(format!(
                    "all {} connections to {} stayed busy for 10 s",
                    self.db.max_connections, self.db.name
                )));
            }
        }
    }

    pub(crate) fn database(&self) -> &Database {
        &self.db
    }
}

/// The schema, one migration per version: never edit one that has shipped, add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "sessions, steps, approvals, labels, pins and the audit log",
    V1,
)];

const V1: &str = "
CREATE SCHEMA IF NOT EXISTS warden;
CREATE TABLE warden.sessions (
    id TEXT PRIMARY KEY,
    opened_at_ms BIGINT NOT NULL,
    token_hash TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX sessions_by_token ON warden.sessions (token_hash);
CREATE INDEX sessions_by_time ON warden.sessions (opened_at_ms DESC, id);
CREATE TABLE warden.steps (
    session_id TEXT NOT NULL REFERENCES warden.sessions(id),
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    audit_index BIGINT,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE warden.snapshots (
    session_id TEXT PRIMARY KEY REFERENCES warden.sessions(id),
    from_seq BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE warden.approvals (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES warden.sessions(id),
    seq BIGINT NOT NULL,
    tool TEXT NOT NULL,
    args TEXT NOT NULL,
    reasons TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    approver TEXT,
    comment TEXT,
    decided_ms BIGINT
);
CREATE INDEX approvals_by_status ON warden.approvals (status, created_ms);
CREATE TABLE warden.carried_labels (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    prose BOOLEAN NOT NULL,
    session_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    tool TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    n BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (kind, value)
);
CREATE INDEX carried_labels_by_time ON warden.carried_labels (at_ms, n);
CREATE TABLE warden.tool_pins (
    upstream TEXT NOT NULL,
    tool TEXT NOT NULL,
    digest TEXT NOT NULL,
    definition TEXT NOT NULL,
    pinned_at_ms BIGINT NOT NULL,
    seen_digest TEXT,
    seen_definition TEXT,
    seen_at_ms BIGINT,
    PRIMARY KEY (upstream, tool)
);
CREATE TABLE warden.entries (
    idx BIGINT PRIMARY KEY,
    entry BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL,
    session TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
CREATE INDEX entries_by_session ON warden.entries (session, idx);
CREATE TABLE warden.checkpoints (
    tree_size BIGINT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    root_hash BYTEA NOT NULL,
    note TEXT NOT NULL,
    frontier BYTEA NOT NULL
);
";

/// Brings the database's schema to this build's version: each migration not yet applied, in
/// order, in one transaction under [`MIGRATE_LOCK`] (replicas starting together wait for each
/// other, and each migration is applied once). A database a newer Warden migrated is refused.
pub fn migrate(db: &Database) -> Result<u32, PgError> {
    let mut client = db.connect()?;
    let tx = wait(client.transaction())?;
    wait(tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATE_LOCK}); \
         CREATE TABLE IF NOT EXISTS public.warden_migrations ( \
             version INTEGER PRIMARY KEY, what TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )))?;
    let have: Option<i32> =
        wait(tx.query_one("SELECT MAX(version) FROM public.warden_migrations", &[]))?.get(0);
    let have = have.unwrap_or(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if have > newest {
        return Err(PgError(format!(
            "{} was migrated by a newer Warden (schema version {have}; this build knows up to \
             {newest}): run the same Warden version on every replica",
            db.name
        )));
    }
    for (version, what, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        wait(tx.batch_execute(sql))
            .map_err(|e| PgError(format!("migration {version} ({what}) failed: {e}")))?;
        wait(tx.execute(
            "INSERT INTO public.warden_migrations (version, what) VALUES ($1, $2)",
            &[version, what],
        ))?;
    }
    wait(tx.commit())?;
    Ok(newest as u32)
}

/// Why a pipelined statement failed: what to say, and whether it was a unique key already
/// taken (the statement's `taken` message is then what is said).
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: PgError,
    pub(crate) taken: bool,
}

/// Sends `statements` (then `COMMIT`, with `commit`) at once and waits for every answer: one
/// round trip for all. The first failure is returned; the statements after it fail too (the
/// transaction is aborted) and a `COMMIT` after it rolls the transaction back.
pub(crate) fn pipeline(
    client: &Client,
    statements: &[warden_audit::PgStatement],
    commit: bool,
) -> Result<(), Failed> {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio_postgres::types::{ToSql, Type};
    type Answer<'f> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + 'f>>;
    let params: Vec<Vec<(&(dyn ToSql + Sync), Type)>> = statements
        .iter()
        .map(|s| {
            s.params
                .iter()
                .map(|(v, t)| (&**v as &(dyn ToSql + Sync), t.clone()))
                .collect()
        })
        .collect();
    let mut answers: Vec<Answer<'_>> = statements
        .iter()
        .zip(&params)
        .map(|(s, p)| Box::pin(client.execute_typed(s.sql, p)) as Answer<'_>)
        .collect();
    if commit {
        answers.push(Box::pin(async {
            client.batch_execute("COMMIT").await.map(|()| 0)
        }));
    }
    // Polled once each, in order, every request is on its way (a client future sends its
    // request when first polled)...
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut results: Vec<Option<Result<u64, tokio_postgres::Error>>> = answers
        .iter_mut()
        .map(|a| match a.as_mut().poll(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
        .collect();
    // ...then the answers are awaited, in order.
    for (answer, result) in answers.iter_mut().zip(results.iter_mut()) {
        if result.is_none() {
            *result = Some(futures_executor::block_on(answer.as_mut()));
        }
    }
    for (i, result) in results.into_iter().enumerate() {
        let Some(Err(e)) = result else {
            continue;
        };
        let unique = e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION);
        return Err(match statements.get(i).and_then(|s| s.taken.as_ref()) {
            Some(taken) if unique => Failed {
                error: PgError(taken.clone()),
                taken: true,
            },
            _ => Failed {
                error: PgError::from(e),
                taken: false,
            },
        });
    }
    Ok(())
}

/// A u64 as PostgreSQL's BIGINT (values past i64::MAX do not occur: indexes, sequence numbers
/// and milliseconds).
pub(crate) fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> StoreConfig {
        StoreConfig {
            url: Some(url.into()),
            ..StoreConfig::default()
        }
    }

    #[test]
    fn a_url_holding_a_password_is_refused_saying_where_it_goes() {
        let e = Database::from_config(&config("postgres://warden:hunter2@db/warden"))
            .expect_err("refused");
        assert!(
            e.0.contains("holds a password") && e.0.contains("password_env"),
            "{e}"
        );
        assert!(
            !e.0.contains("hunter2"),
            "the password is not repeated: {e}"
        );
    }

    #[test]
    fn a_bad_url_and_a_ca_file_that_is_not_pem_are_named() {
        let e = Database::from_config(&config("postgres://warden@db:notaport/warden"))
            .expect_err("refused");
        assert!(e.0.contains("store.url"), "{e}");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").expect("write");
        let bad_ca = StoreConfig {
            ca_file: Some(file),
            ..config("postgres://warden@db/warden?sslmode=require")
        };
        let e = Database::from_config(&bad_ca).expect_err("refused");
        assert!(e.0.contains("store.ca_file"), "{e}");
    }

    #[test]
    fn the_password_comes_from_the_named_variable_or_file_and_a_missing_one_is_named() {
        let missing = StoreConfig {
            password_env: Some("WARDEN_TEST_NO_SUCH_VARIABLE".into()),
            ..config("postgres://warden@db/warden")
        };
        let e = Database::from_config(&missing).expect_err("refused");
        assert!(e.0.contains("WARDEN_TEST_NO_SUCH_VARIABLE"), "{e}");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        let from_file = StoreConfig {
            password_file: Some(file),
            ..config("postgres://warden@db:6543/fleet")
        };
        let db = Database::from_config(&from_file)
            .expect("parsed")
            .expect("a url");
        assert_eq!(db.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(db.name(), "postgres://warden@db:6543/fleet");
        assert!(Database::from_config(&StoreConfig::default())
            .expect("no url")
            .is_none());
    }
}
