//! Warden's tamper-evident audit log. Every event (session opened, call, decision, approval,
//! result, alert, message) is an entry of an RFC 9162 Merkle tree over SHA-256, committed to a
//! `LogStore` by the appenders themselves: one leads at a time and commits every append queued
//! meanwhile in one transaction (group commit), and signs C2SP checkpoints every N events or T
//! milliseconds. `verify` recomputes
//! everything from the stored bytes and names the first entry that does not fit.
//!
//! # On disk (in the data dir)
//!
//! | file | what |
//! |---|---|
//! | `warden.db` (+ `-wal`, `-shm`) | SQLite, mode 0600, shared with the session store: `entries(idx, entry, leaf_hash, session, kind, time_ms)` and `checkpoints(tree_size, time_ms, root_hash, note, frontier)`, beside the store's tables, so a step's entry and its store row commit in one transaction ([`Companion`]). A data dir an older Warden wrote keeps the log in `audit.db`: the writer moves it into `warden.db` at start ([`AuditLog::open`]), readers read it where it is |
//! | `audit.key` | the Ed25519 signing key: its 32-byte seed, mode 0600, created on first start |
//! | `audit.pub` | the C2SP verifier key string (`<origin>+<key hash>+<base64 key>`), for readers |
//! | `audit.hmac` | the 32-byte key of result-body digests, mode 0600 |
//!
//! A checkpoint's signed text is the tlog-checkpoint body (origin, size, root) and one
//! extension line, `Timestamp: <nanoseconds since the epoch>` (as Rekor writes it), so the
//! signing time is covered by the signature. Checkpoints from before that line existed (three
//! lines) still verify; their time is the one stored beside them, unsigned.

pub mod checkpoint;
pub mod event;
mod log;
pub mod merkle;
pub mod ocsf;
mod reader;
pub mod redact;
pub mod store;
pub mod verify;

use std::path::PathBuf;

pub use checkpoint::{Checkpoint, CheckpointError, LogKey, NoteVerifier, SignedCheckpoint};
pub use event::{Event, EventKind, LoggedEvent};
pub use log::{create_private_dir, AuditConfig, AuditLog};
pub use merkle::{Hash, ProofError};
pub use reader::{AuditReader, ConsistencyProof, InclusionProof};
pub use redact::{redact_secrets, result_body, DigestKey};
pub use store::{
    Companion, Durability, EventFilter, LogStore, PgParam, PgQueue, PgStatement, SqliteLogStore, Tx,
};
pub use verify::{Problem, ProblemKind, VerifyOptions, VerifyReport};

/// File names inside the data dir. The log's tables live in the session store's database.
pub const DB_FILE: &str = "warden.db";
/// Where an older Warden kept the log, alone (moved into [`DB_FILE`] by the writer at start).
pub const OLD_DB_FILE: &str = "audit.db";
pub const KEY_FILE: &str = "audit.key";
pub const PUBLIC_KEY_FILE: &str = "audit.pub";
pub const DIGEST_KEY_FILE: &str = "audit.hmac";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The shared database (PostgreSQL) failed or could not be reached.
    #[error("audit log: {0}")]
    Database(String),
    #[error("audit log: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log: no log at {0}; it is created when `warden serve` first starts")]
    NoLog(PathBuf),
    #[error("audit log: key file {path} cannot be used: {why}")]
    Key { path: PathBuf, why: String },
    #[error("audit log: {0}")]
    Config(String),
    #[error("audit log: {}stored data is not valid: {why}; run `warden audit verify`", index.map(|i| format!("entry {i}: ")).unwrap_or_default())]
    Corrupt { index: Option<u64>, why: String },
    #[error(
        "audit log{}: {why}. Warden will not append to a damaged log: {recover}",
        dir.as_ref().map(|d| format!(" in {}", d.display())).unwrap_or_default()
    )]
    Damaged {
        dir: Option<PathBuf>,
        why: String,
        recover: String,
    },
    #[error("audit log: the append was not committed: {0}")]
    Write(String),
    #[error("audit log: the writer has stopped; nothing more can be recorded")]
    Closed,
    #[error(
        "audit log: event {index} cannot have event {cause} as a cause: causes must come earlier"
    )]
    InvalidCause { index: u64, cause: u64 },
    #[error("audit log: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("audit log: {0}")]
    Proof(#[from] ProofError),
    #[error("audit log: {0}")]
    NotCovered(String),
}
