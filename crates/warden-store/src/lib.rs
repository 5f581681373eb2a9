//! Durable session state: each session as opened, and its steps (messages, calls with their
//! decisions, labelled results) in order, so that provenance can be rebuilt after a restart; and
//! the approvals of held calls, shared by every process that opens the same store.
//! `SessionStore` is the seam for PostgreSQL; `SqliteStore` is the embedded default.

use std::path::Path;
use std::sync::Mutex;

pub use rusqlite;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_model::{CarriedLabel, Session};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The shared database (PostgreSQL) failed or could not be reached.
    #[error("session store: {0}")]
    Database(String),
    #[error("session store: stored record is not valid: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("session store: session `{0}` already exists")]
    Duplicate(String),
    #[error("session store: approval `{0}` already exists")]
    DuplicateApproval(String),
    #[error("session store: approval `{id}` has an unknown status `{status}`")]
    BadStatus { id: String, status: String },
    #[error("session store: {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("session store: the approval was left pending, since its decision could not be recorded: {0}")]
    NotRecorded(String),
}

/// What `resolve_approval` calls for the caller that wins, with the approval still pending,
/// before the change is committed: it records the decision elsewhere (the audit log). An `Err`
/// leaves the approval pending.
pub type RecordDecision<'a> = dyn FnMut(&Approval) -> Result<(), String> + 'a;

/// One stored step: its sequence number in the session, a kind, a JSON body, and the index of
/// its entry in the audit log (none without a log, and in stores written before it was kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStep {
    pub seq: u64,
    pub kind: String,
    pub body: String,
    pub audit: Option<u64>,
}

/// What resuming a session starts from: the session, its token's hash, and its newest snapshot
/// (the gateway's state after every step before `from`), if one was saved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    pub session: Session,
    pub token_hash: String,
    pub snapshot: Option<Snapshot>,
}

/// A session's state as the gateway saved it: opaque here, and only ever a cache of replaying
/// the steps before `from` (the gateway replays them instead when it cannot read it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub from: u64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub session: Session,
    /// SHA-256 of the session token; the token itself is never stored.
    pub token_hash: String,
    pub steps: Vec<StoredStep>,
}

/// Where an approval stands. Only a `Pending` one can change, and only once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 4] = [
        ApprovalStatus::Pending,
        ApprovalStatus::Approved,
        ApprovalStatus::Denied,
        ApprovalStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        ApprovalStatus::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A held call waiting for (or past) a person's decision, named by its decision id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// The held decision's id, `<session>/<seq>`.
    pub id: String,
    pub session: String,
    pub seq: u64,
    pub tool: String,
    pub args: Value,
    /// The reasons of the hold, as the decision gave them.
    pub reasons: Value,
    pub created_ms: u64,
    pub status: ApprovalStatus,
    pub approver: Option<String>,
    pub comment: Option<String>,
    pub decided_ms: Option<u64>,
}

/// How an approval left `Pending`: its new status, who decided, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub status: ApprovalStatus,
    pub approver: Option<String>,
    pub comment: Option<String>,
    pub decided_ms: u64,
}

/// What asking to resolve an approval did.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    /// It was pending and now holds the resolution.
    Done(Approval),
    /// It had already left `Pending`; unchanged.
    NotPending(Approval),
    Unknown,
}

/// A tool definition Warden pinned: the first it saw of `tool` from `upstream`, or the one an
/// operator accepted since; with the newest definition seen when it differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolPin {
    pub upstream: String,
    pub tool: String,
    /// `sha256:` and the hex digest of the pinned definition's canonical JSON.
    pub digest: String,
    /// The pinned definition (name, description, input schema, annotations), as JSON.
    pub definition: String,
    pub pinned_at_ms: u64,
    /// The newest definition seen, when it is not the pinned one: the change to review.
    pub seen: Option<SeenDefinition>,
}

/// A definition seen that differs from the pinned one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenDefinition {
    pub digest: String,
    pub definition: String,
    pub seen_at_ms: u64,
}

/// How a definition compares with the pinned one ([`SessionStore::pin_tool`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// Nothing was pinned for this tool: this definition is now.
    New,
    /// It is the pinned definition.
    Same,
    /// It differs from the pinned one; `first_seen` when it also differs from the change seen
    /// before (a change to report, not one already reported).
    Changed { pin: ToolPin, first_seen: bool },
}

/// Where sessions live. Implementations must make `append_step` durable before returning: the
/// gateway answers the agent only after it does.
pub trait SessionStore: Send + Sync {
    fn create_session(&self, session: &Session, token_hash: &str) -> Result<(), StoreError>;
    fn append_step(&self, session_id: &str, step: &StoredStep) -> Result<(), StoreError>;
    /// [`SessionStore::append_step`] for a write whose arguments carry untrusted values into
    /// storage: the step and the labels are durable together, or neither is. A store that keeps
    /// no carried labels (this default) only appends the step.
    fn append_step_carrying(
        &self,
        session_id: &str,
        step: &StoredStep,
        carried: &[CarriedLabel],
    ) -> Result<(), StoreError> {
        let _ = carried;
        self.append_step(session_id, step)
    }
    /// Up to `limit` carried labels, newest first: what every session reads back as untrusted.
    /// A value is kept once, with the first write that carried it (and as prose once any did).
    fn carried_labels(&self, limit: usize) -> Result<Vec<CarriedLabel>, StoreError> {
        let _ = limit;
        Ok(Vec::new())
    }
    /// Up to `limit` carried labels written at or after `since_ms` (by the writer's clock),
    /// newest first: what other replicas of a fleet carried lately. This default reads the
    /// newest `limit`.
    fn carried_labels_since(
        &self,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<CarriedLabel>, StoreError> {
        let _ = since_ms;
        self.carried_labels(limit)
    }
    /// Compare a tool's definition (`digest` of `definition`) with the one pinned for it, pinning
    /// it when none is, and remembering it as the change to review when it differs. A store that
    /// pins nothing (this default) takes every definition as the pinned one.
    fn pin_tool(
        &self,
        upstream: &str,
        tool: &str,
        digest: &str,
        definition: &str,
    ) -> Result<PinCheck, StoreError> {
        let _ = (upstream, tool, digest, definition);
        Ok(PinCheck::Same)
    }
    /// Every pinned tool, by upstream then name.
    fn tool_pins(&self) -> Result<Vec<ToolPin>, StoreError> {
        Ok(Vec::new())
    }
    /// The pin of one tool, if it has one.
    fn tool_pin(&self, upstream: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
        let _ = (upstream, tool);
        Ok(None)
    }
    /// Pin the definition last seen of `tool` (an operator reviewed the change); the pin as it
    /// is now, or `None` when no such tool is pinned.
    fn accept_tool(&self, upstream: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
        let _ = (upstream, tool);
        Ok(None)
    }
    /// A session with all its steps in order, or `None`.
    fn load_session(&self, id: &str) -> Result<Option<StoredSession>, StoreError>;
    /// A session to resume, without its steps, with its newest snapshot. A store that keeps no
    /// snapshots (this default) gives none, and the session is replayed from its first step.
    fn resume_session(&self, id: &str) -> Result<Option<Resume>, StoreError> {
        Ok(self.load_session(id)?.map(|s| Resume {
            session: s.session,
            token_hash: s.token_hash,
            snapshot: None,
        }))
    }
    /// Up to `limit` steps of session `id` from seq `from` on, in order: resuming reads a
    /// session a page at a time, so its memory does not depend on the session's length.
    fn steps_from(&self, id: &str, from: u64, limit: usize) -> Result<Vec<StoredStep>, StoreError> {
        Ok(self
            .load_session(id)?
            .map(|s| {
                s.steps
                    .into_iter()
                    .filter(|st| st.seq >= from)
                    .take(limit)
                    .collect()
            })
            .unwrap_or_default())
    }
    /// Keep `snapshot` as session `id`'s newest, replacing the one before. A store may keep
    /// none (this default): snapshots only save replaying.
    fn save_snapshot(&self, id: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        let _ = (id, snapshot);
        Ok(())
    }
    /// Whether the store holds session `id` (without loading its steps).
    fn has_session(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.load_session(id)?.is_some())
    }
    /// The id of the session whose token has this SHA-256, if any.
    fn session_by_token(&self, token_hash: &str) -> Result<Option<String>, StoreError>;
    /// Session summaries, newest first.
    fn list_sessions(&self, limit: usize) -> Result<Vec<Session>, StoreError>;
    /// Record a new approval; its id must be new.
    fn create_approval(&self, approval: &Approval) -> Result<(), StoreError>;
    fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError>;
    /// Approvals with this status (any, for `None`), newest first.
    fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError>;
    /// Move a pending approval to `resolution`, atomically: of two processes resolving the same
    /// approval, exactly one gets `Done`, and only that one calls `record` (inside the change, so
    /// no other process can resolve the approval between the call and the change).
    fn resolve_approval(
        &self,
        id: &str,
        resolution: &Resolution,
        record: &mut RecordDecision<'_>,
    ) -> Result<Resolved, StoreError>;
}

/// How hard a commit tries to survive a crash; the gateway sets it from `[audit] durability`,
/// so the session store survives what the audit log survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL`: a committed step survives a crash of the process (kill -9); the
    /// last few may be lost if the machine loses power.
    #[default]
    Process,
    /// `synchronous=FULL`: the WAL is fsynced at every commit, so a committed step also
    /// survives a power loss.
    Power,
}

/// SQLite in WAL mode (see `Durability` for what a commit survives).
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    opened_at_ms INTEGER NOT NULL,
    token_hash TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_token ON sessions (token_hash);
CREATE TABLE IF NOT EXISTS steps (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS snapshots (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    from_seq INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    tool TEXT NOT NULL,
    args TEXT NOT NULL,
    reasons TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    approver TEXT,
    comment TEXT,
    decided_ms INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_by_status ON approvals(status, created_ms);
CREATE TABLE IF NOT EXISTS carried_labels (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    prose INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    tool TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX IF NOT EXISTS carried_labels_by_time ON carried_labels(at_ms);
CREATE TABLE IF NOT EXISTS tool_pins (
    upstream TEXT NOT NULL,
    tool TEXT NOT NULL,
    digest TEXT NOT NULL,
    definition TEXT NOT NULL,
    pinned_at_ms INTEGER NOT NULL,
    seen_digest TEXT,
    seen_definition TEXT,
    seen_at_ms INTEGER,
    PRIMARY KEY (upstream, tool)
);
";

const APPROVAL_COLUMNS: &str =
    "id, session_id, seq, tool, args, reasons, created_ms, status, approver, comment, decided_ms";

/// An approval row as read: the JSON columns and the status still as text.
struct ApprovalRow {
    approval: Approval,
    args: String,
    reasons: String,
    status: String,
}

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(ApprovalRow {
        approval: Approval {
            id: r.get(0)?,
            session: r.get(1)?,
            seq: r.get::<_, i64>(2)? as u64,
            tool: r.get(3)?,
            args: Value::Null,
            reasons: Value::Null,
            created_ms: r.get::<_, i64>(6)? as u64,
            status: ApprovalStatus::Pending,
            approver: r.get(8)?,
            comment: r.get(9)?,
            decided_ms: r.get::<_, Option<i64>>(10)?.map(|t| t as u64),
        },
        args: r.get(4)?,
        reasons: r.get(5)?,
        status: r.get(7)?,
    })
}

impl ApprovalRow {
    fn into_approval(self) -> Result<Approval, StoreError> {
        let mut a = self.approval;
        a.args = serde_json::from_str(&self.args)?;
        a.reasons = serde_json::from_str(&self.reasons)?;
        a.status = ApprovalStatus::parse(&self.status).ok_or_else(|| StoreError::BadStatus {
            id: a.id.clone(),
            status: self.status.clone(),
        })?;
        Ok(a)
    }
}

fn read_approval(conn: &Connection, id: &str) -> Result<Option<Approval>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"
    ))?
    .query_row(params![id], approval_row)
    .optional()?
    .map(ApprovalRow::into_approval)
    .transpose()
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, surviving a crash of the process.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Process)
    }

    pub fn open_with(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        make_private(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::init(Connection::open(path)?, durability)
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, Durability::Process)
    }

    fn init(conn: Connection, durability: Durability) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match durability {
            Durability::Process => "NORMAL",
            Durability::Power => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Stores written before steps named their audit entries gain the column (empty there).
        let has_audit: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('steps') WHERE name = 'audit_index'")?
            .exists([])?;
        if !has_audit {
            conn.execute_batch("ALTER TABLE steps ADD COLUMN audit_index INTEGER")?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        // A panic while the connection was held leaves it usable: an open transaction is rolled
        // back as it drops, so one panic must not refuse every later caller.
        Ok(self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Creates the database file at `path` readable and writable by its owner only (SQLite gives its
/// -wal and -shm files the same mode), or narrows an existing one and its -wal and -shm files to
/// that: they hold full tool results.
#[cfg(unix)]
fn make_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Milliseconds since the Unix epoch, as the stores' time columns keep them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Stores a new session (its token as a digest), inside the caller's transaction on a
/// connection to the store's database: the audit log's writer calls it in the transaction of
/// the session's opening entry when the log shares the store's database.
pub fn write_session(
    conn: &Connection,
    session: &Session,
    token_hash: &str,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(session)?;
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO sessions (id, opened_at_ms, token_hash, body) VALUES (?1, ?2, ?3, ?4)",
        params![session.id, session.opened_at_ms as i64, token_hash, body],
    )?;
    if inserted == 0 {
        return Err(StoreError::Duplicate(session.id.clone()));
    }
    Ok(())
}

/// Resolves approval `id` if it is still pending, inside the caller's transaction on a
/// connection to the store's database; whether it was. The audit log's writer calls it in the
/// transaction of the approval's entry when the log shares the store's database: the entry and
/// the resolution are then one write, and a resolution that lost a race (the approval is no
/// longer pending) fails its entry, so only the winner is logged.
pub fn resolve_pending(conn: &Connection, id: &str, r: &Resolution) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE approvals SET status = ?2, approver = ?3, comment = ?4, decided_ms = ?5 \
         WHERE id = ?1 AND status = 'pending'",
        params![
            id,
            r.status.as_str(),
            r.approver,
            r.comment,
            r.decided_ms as i64
        ],
    )?;
    Ok(changed == 1)
}

/// Writes a step (naming its audit entry `audit`, not `step.audit`) and the labels it carries
/// out of untrusted content, inside the caller's
/// transaction on a connection to the store's database: the audit log's writer calls it in the
/// transaction of the step's entry when the log shares the store's database, so the step and
/// its entry are durable together or not at all.
pub fn write_step(
    conn: &Connection,
    session_id: &str,
    step: &StoredStep,
    audit: Option<u64>,
    carried: &[CarriedLabel],
) -> Result<(), StoreError> {
    insert_step(conn, session_id, step, audit)?;
    if carried.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO carried_labels (kind, value, prose, session_id, seq, tool, at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (kind, value) DO UPDATE SET prose = max(prose, excluded.prose)",
    )?;
    let now = now_ms();
    for c in carried {
        insert.execute(params![
            c.kind,
            c.value,
            c.prose,
            c.session,
            c.seq as i64,
            c.tool,
            now
        ])?;
    }
    Ok(())
}

/// Once per step of every call: the statement is parsed once per connection. `audit` is the
/// index of the step's audit entry (the log's writer knows it only in the entry's transaction).
fn insert_step(
    conn: &Connection,
    session_id: &str,
    step: &StoredStep,
    audit: Option<u64>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO steps (session_id, seq, kind, body, audit_index) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        session_id,
        step.seq as i64,
        step.kind,
        step.body,
        audit.map(|i| i as i64)
    ])?;
    Ok(())
}

fn read_steps(
    conn: &Connection,
    id: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<StoredStep>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, kind, body, audit_index FROM steps WHERE session_id = ?1 AND seq >= ?2 \
         ORDER BY seq LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let steps = stmt
        .query_map(params![id, from as i64, limit], |r| {
            Ok(StoredStep {
                seq: r.get::<_, i64>(0)? as u64,
                kind: r.get(1)?,
                body: r.get(2)?,
                audit: r.get::<_, Option<i64>>(3)?.map(|i| i as u64),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(steps)
}

const PIN_COLUMNS: &str =
    "upstream, tool, digest, definition, pinned_at_ms, seen_digest, seen_definition, seen_at_ms";

fn pin_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ToolPin> {
    let seen = match (
        r.get::<_, Option<String>>(5)?,
        r.get::<_, Option<String>>(6)?,
        r.get::<_, Option<i64>>(7)?,
    ) {
        (Some(digest), Some(definition), Some(at)) => Some(SeenDefinition {
            digest,
            definition,
            seen_at_ms: at as u64,
        }),
        _ => None,
    };
    Ok(ToolPin {
        upstream: r.get(0)?,
        tool: r.get(1)?,
        digest: r.get(2)?,
        definition: r.get(3)?,
        pinned_at_ms: r.get::<_, i64>(4)? as u64,
        seen,
    })
}

fn read_pin(conn: &Connection, upstream: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {PIN_COLUMNS} FROM tool_pins WHERE upstream = ?1 AND tool = ?2"),
            params![upstream, tool],
            pin_of_row,
        )
        .optional()?)
}

impl SessionStore for SqliteStore {
    fn create_session(&self, session: &Session, token_hash: &str) -> Result<(), StoreError> {
        write_session(&*self.conn()?, session, token_hash)
    }

    fn append_step(&self, session_id: &str, step: &StoredStep) -> Result<(), StoreError> {
        insert_step(&*self.conn()?, session_id, step, step.audit)
    }

    fn append_step_carrying(
        &self,
        session_id: &str,
        step: &StoredStep,
        carried: &[CarriedLabel],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        write_step(&tx, session_id, step, step.audit, carried)?;
        tx.commit()?;
        Ok(())
    }

    fn carried_labels(&self, limit: usize) -> Result<Vec<CarriedLabel>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT kind, value, prose, session_id, seq, tool FROM carried_labels \
             ORDER BY at_ms DESC, rowid DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(CarriedLabel {
                    kind: r.get(0)?,
                    value: r.get(1)?,
                    prose: r.get(2)?,
                    session: r.get(3)?,
                    seq: r.get::<_, i64>(4)? as u64,
                    tool: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn pin_tool(
        &self,
        upstream: &str,
        tool: &str,
        digest: &str,
        definition: &str,
    ) -> Result<PinCheck, StoreError> {
        let mut conn = self.conn()?;
        // It reads, then writes: take the write lock first. A deferred transaction would read a
        // snapshot that another connection's commit (the audit log's writer shares this
        // database) can make stale before the write, which SQLite then refuses at once.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_ms();
        let check = match read_pin(&tx, upstream, tool)? {
            None => {
                tx.execute(
                    "INSERT INTO tool_pins (upstream, tool, digest, definition, pinned_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![upstream, tool, digest, definition, now],
                )?;
                PinCheck::New
            }
            Some(pin) if pin.digest == digest => {
                if pin.seen.is_some() {
                    // The server went back to the pinned definition: nothing left to review.
                    tx.execute(
                        "UPDATE tool_pins SET seen_digest = NULL, seen_definition = NULL, \
                         seen_at_ms = NULL WHERE upstream = ?1 AND tool = ?2",
                        params![upstream, tool],
                    )?;
                }
                PinCheck::Same
            }
            Some(pin) => {
                let first_seen = pin.seen.as_ref().is_none_or(|s| s.digest != digest);
                if first_seen {
                    tx.execute(
                        "UPDATE tool_pins SET seen_digest = ?3, seen_definition = ?4, \
                         seen_at_ms = ?5 WHERE upstream = ?1 AND tool = ?2",
                        params![upstream, tool, digest, definition, now],
                    )?;
                }
                PinCheck::Changed { pin, first_seen }
            }
        };
        tx.commit()?;
        Ok(check)
    }

    fn tool_pins(&self) -> Result<Vec<ToolPin>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {PIN_COLUMNS} FROM tool_pins ORDER BY upstream, tool"
        ))?;
        let pins = stmt
            .query_map([], pin_of_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pins)
    }

    fn tool_pin(&self, upstream: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
        read_pin(&*self.conn()?, upstream, tool)
    }

    fn accept_tool(&self, upstream: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE tool_pins SET digest = seen_digest, definition = seen_definition, \
             pinned_at_ms = ?3, seen_digest = NULL, seen_definition = NULL, seen_at_ms = NULL \
             WHERE upstream = ?1 AND tool = ?2 AND seen_digest IS NOT NULL",
            params![upstream, tool, now_ms()],
        )?;
        let pin = read_pin(&tx, upstream, tool)?;
        tx.commit()?;
        Ok(pin)
    }

    fn has_session(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()?
            .query_row("SELECT 1 FROM sessions WHERE id = ?1", params![id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    fn session_by_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id FROM sessions WHERE token_hash = ?1",
                params![token_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn load_session(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        let conn = self.conn()?;
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT body, token_hash FROM sessions WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((body, token_hash)) = row else {
            return Ok(None);
        };
        let session: Session = serde_json::from_str(&body)?;
        let steps = read_steps(&conn, id, 0, usize::MAX)?;
        Ok(Some(StoredSession {
            session,
            token_hash,
            steps,
        }))
    }

    fn resume_session(&self, id: &str) -> Result<Option<Resume>, StoreError> {
        let conn = self.conn()?;
        let row: Option<(String, String, Option<i64>, Option<String>)> = conn
            .prepare_cached(
                "SELECT s.body, s.token_hash, n.from_seq, n.body FROM sessions s \
                 LEFT JOIN snapshots n ON n.session_id = s.id WHERE s.id = ?1",
            )?
            .query_row(params![id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((body, token_hash, from, snapshot)) = row else {
            return Ok(None);
        };
        Ok(Some(Resume {
            session: serde_json::from_str(&body)?,
            token_hash,
            snapshot: from.zip(snapshot).map(|(from, body)| Snapshot {
                from: from as u64,
                body,
            }),
        }))
    }

    fn steps_from(&self, id: &str, from: u64, limit: usize) -> Result<Vec<StoredStep>, StoreError> {
        read_steps(&*self.conn()?, id, from, limit)
    }

    fn save_snapshot(&self, id: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.conn()?
            .prepare_cached(
                "INSERT INTO snapshots (session_id, from_seq, body) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (session_id) DO UPDATE SET from_seq = excluded.from_seq, body = excluded.body",
            )?
            .execute(params![id, snapshot.from as i64, snapshot.body])?;
        Ok(())
    }

    fn list_sessions(&self, limit: usize) -> Result<Vec<Session>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT body FROM sessions ORDER BY opened_at_ms DESC, id LIMIT ?1")?;
        let bodies = stmt
            .query_map(params![limit as i64], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(StoreError::from))
            .collect()
    }

    fn create_approval(&self, a: &Approval) -> Result<(), StoreError> {
        let (args, reasons) = (a.args.to_string(), a.reasons.to_string());
        let inserted = self.conn()?.execute(
            &format!(
                "INSERT OR IGNORE INTO approvals ({APPROVAL_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                a.id,
                a.session,
                a.seq as i64,
                a.tool,
                args,
                reasons,
                a.created_ms as i64,
                a.status.as_str(),
                a.approver,
                a.comment,
                a.decided_ms.map(|t| t as i64),
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::DuplicateApproval(a.id.clone()));
        }
        Ok(())
    }

    fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        read_approval(&*self.conn()?, id)
    }

    fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE ?1 IS NULL OR status = ?1 \
             ORDER BY created_ms DESC, id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(
                params![status.map(ApprovalStatus::as_str), limit as i64],
                approval_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(ApprovalRow::into_approval).collect()
    }

    fn resolve_approval(
        &self,
        id: &str,
        r: &Resolution,
        record: &mut RecordDecision<'_>,
    ) -> Result<Resolved, StoreError> {
        let mut conn = self.conn()?;
        // An immediate transaction takes the database's write lock first: another process's
        // resolution waits until this one is committed or rolled back, so the `pending` test,
        // the winner's `record` and the update are one step for every process.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let pending = match read_approval(&tx, id)? {
            None => return Ok(Resolved::Unknown),
            Some(a) if a.status != ApprovalStatus::Pending => return Ok(Resolved::NotPending(a)),
            Some(a) => a,
        };
        record(&pending).map_err(StoreError::NotRecorded)?;
        resolve_pending(&tx, id, r)?;
        let done = read_approval(&tx, id)?;
        tx.commit()?;
        Ok(done.map_or(Resolved::Unknown, Resolved::Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            id: id.into(),
            principal: "alice".into(),
            agent: "bot".into(),
            profile: Some("support".into()),
            task: Default::default(),
            instruction: "help".into(),
            channel: "chat".into(),
            opened_at_ms: 7,
        }
    }

    #[test]
    fn session_and_steps_survive_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let store = SqliteStore::open(&path).expect("open");
            store.create_session(&session("s1"), "h").expect("create");
            for seq in [3, 1] {
                let step = StoredStep {
                    seq,
                    kind: "result".into(),
                    body: format!("{{\"n\":{seq}}}"),
                    audit: None,
                };
                store.append_step("s1", &step).expect("append");
            }
        }
        let store = SqliteStore::open(&path).expect("reopen");
        let loaded = store.load_session("s1").expect("load").expect("present");
        assert_eq!(loaded.session, session("s1"));
        assert_eq!(loaded.token_hash, "h");
        let seqs: Vec<u64> = loaded.steps.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![1, 3]);
    }

    #[test]
    fn a_session_resumes_from_its_newest_snapshot_and_reads_later_steps_a_page_at_a_time() {
        let store = SqliteStore::in_memory().expect("open");
        store.create_session(&session("s1"), "h").expect("create");
        for seq in 0..10 {
            let step = StoredStep {
                seq,
                kind: "call".into(),
                body: "{}".into(),
                audit: Some(100 + seq),
            };
            store.append_step("s1", &step).expect("append");
        }
        let resume = store
            .resume_session("s1")
            .expect("resume")
            .expect("present");
        assert_eq!((resume.token_hash.as_str(), resume.snapshot), ("h", None));
        for from in [4, 7] {
            let snapshot = Snapshot {
                from,
                body: format!("state before {from}"),
            };
            store.save_snapshot("s1", &snapshot).expect("snapshot");
        }
        let resume = store
            .resume_session("s1")
            .expect("resume")
            .expect("present");
        assert_eq!(
            resume.snapshot,
            Some(Snapshot {
                from: 7,
                body: "state before 7".into()
            })
        );
        let page = store.steps_from("s1", 7, 2).expect("page");
        let got: Vec<(u64, Option<u64>)> = page.iter().map(|s| (s.seq, s.audit)).collect();
        assert_eq!(got, [(7, Some(107)), (8, Some(108))]);
        assert_eq!(store.steps_from("s1", 10, 5).expect("page"), []);
        assert!(store.resume_session("nope").expect("resume").is_none());
    }

    #[test]
    fn a_store_written_before_steps_named_their_audit_entries_opens_and_keeps_its_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE sessions (id TEXT PRIMARY KEY, opened_at_ms INTEGER NOT NULL,
                     token_hash TEXT NOT NULL, body TEXT NOT NULL);
                 CREATE TABLE steps (session_id TEXT NOT NULL REFERENCES sessions(id),
                     seq INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
                     PRIMARY KEY (session_id, seq));",
            )
            .expect("old schema");
            let body = serde_json::to_string(&session("s1")).expect("json");
            conn.execute(
                "INSERT INTO sessions VALUES ('s1', 7, 'h', ?1)",
                params![body],
            )
            .expect("session");
            conn.execute("INSERT INTO steps VALUES ('s1', 0, 'call', '{}')", [])
                .expect("step");
        }
        let store = SqliteStore::open(&path).expect("open the old store");
        let step = StoredStep {
            seq: 1,
            kind: "result".into(),
            body: "{}".into(),
            audit: Some(5),
        };
        store.append_step("s1", &step).expect("append");
        let steps = store.steps_from("s1", 0, 10).expect("steps");
        let got: Vec<(u64, Option<u64>)> = steps.iter().map(|s| (s.seq, s.audit)).collect();
        assert_eq!(got, [(0, None), (1, Some(5))]);
    }

    #[test]
    fn a_power_durable_store_syncs_every_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let synchronous = |durability| -> i64 {
            let store =
                SqliteStore::open_with(&dir.path().join("state.db"), durability).expect("open");
            let conn = store.conn().expect("conn");
            conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
                .expect("pragma")
        };
        // SQLite's numbers: 1 is NORMAL, 2 is FULL.
        assert_eq!(synchronous(Durability::Power), 2);
        assert_eq!(synchronous(Durability::Process), 1);
    }

    fn carried(value: &str, prose: bool) -> CarriedLabel {
        CarriedLabel {
            kind: "email".into(),
            value: value.into(),
            prose,
            session: "s1".into(),
            seq: 3,
            tool: "save_contact".into(),
        }
    }

    #[test]
    fn a_tool_is_pinned_once_its_change_awaits_review_and_accepting_it_repins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path).expect("open");
        assert_eq!(
            store.pin_tool("up", "t", "d1", "v1").expect("pin"),
            PinCheck::New
        );
        assert_eq!(
            store.pin_tool("up", "t", "d1", "v1").expect("pin"),
            PinCheck::Same
        );
        let PinCheck::Changed { pin, first_seen } =
            store.pin_tool("up", "t", "d2", "v2").expect("pin")
        else {
            panic!("a new definition is a change");
        };
        assert!(first_seen && pin.digest == "d1" && pin.seen.is_none());
        // Seen again, the same change is not new; it is kept for review, durably.
        drop(store);
        let store = SqliteStore::open(&path).expect("reopen");
        let PinCheck::Changed { pin, first_seen } =
            store.pin_tool("up", "t", "d2", "v2").expect("pin")
        else {
            panic!("still changed");
        };
        assert!(!first_seen);
        assert_eq!(pin.seen.as_ref().map(|s| s.definition.as_str()), Some("v2"));
        assert_eq!(store.accept_tool("up", "other").expect("accept"), None);
        let accepted = store
            .accept_tool("up", "t")
            .expect("accept")
            .expect("pinned");
        assert_eq!((accepted.digest.as_str(), accepted.seen), ("d2", None));
        assert_eq!(
            store.pin_tool("up", "t", "d2", "v2").expect("pin"),
            PinCheck::Same
        );
        // A server going back to the pinned definition leaves nothing to review.
        store.pin_tool("up", "t", "d3", "v3").expect("pin");
        store.pin_tool("up", "t", "d2", "v2").expect("pin");
        assert_eq!(
            store
                .tool_pin("up", "t")
                .expect("read")
                .and_then(|p| p.seen),
            None
        );
        assert_eq!(store.tool_pins().expect("pins").len(), 1);
    }

    #[test]
    fn carried_labels_are_durable_with_their_step_and_kept_once_per_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        {
            let store = SqliteStore::open(&path).expect("open");
            store.create_session(&session("s1"), "h1").expect("create");
            let step = |seq| StoredStep {
                seq,
                kind: "call".into(),
                body: "{}".into(),
                audit: None,
            };
            store
                .append_step_carrying("s1", &step(3), &[carried("kim@relay.example", false)])
                .expect("append");
            // The same value carried again, this time out of prose: kept once, as prose.
            store
                .append_step_carrying("s1", &step(4), &[carried("kim@relay.example", true)])
                .expect("append");
            // A step that cannot be stored leaves no label behind.
            assert!(store
                .append_step_carrying("nope", &step(0), &[carried("lee@relay.example", true)])
                .is_err());
        }
        let store = SqliteStore::open(&path).expect("reopen");
        let labels = store.carried_labels(10).expect("labels");
        assert_eq!(labels, [carried("kim@relay.example", true)]);
        assert_eq!(
            store
                .load_session("s1")
                .expect("load")
                .expect("s1")
                .steps
                .len(),
            2
        );
    }

    #[test]
    fn creating_a_session_twice_is_an_error() {
        let store = SqliteStore::in_memory().expect("open");
        store.create_session(&session("s1"), "h").expect("create");
        let err = store
            .create_session(&session("s1"), "h")
            .expect_err("duplicate");
        assert!(matches!(err, StoreError::Duplicate(id) if id == "s1"));
    }

    #[test]
    fn a_step_for_an_unknown_session_is_refused() {
        let store = SqliteStore::in_memory().expect("open");
        let step = StoredStep {
            seq: 0,
            kind: "x".into(),
            body: "{}".into(),
            audit: None,
        };
        assert!(store.append_step("nope", &step).is_err());
    }

    fn pending(id: &str, seq: u64) -> Approval {
        Approval {
            id: id.into(),
            session: "s1".into(),
            seq,
            tool: "send_email".into(),
            args: serde_json::json!({"to": "x@y.test"}),
            reasons: serde_json::json!([{"policy": "p", "message": "m"}]),
            created_ms: seq,
            status: ApprovalStatus::Pending,
            approver: None,
            comment: None,
            decided_ms: None,
        }
    }

    fn approve(by: &str) -> Resolution {
        Resolution {
            status: ApprovalStatus::Approved,
            approver: Some(by.into()),
            comment: Some("ok".into()),
            decided_ms: 99,
        }
    }

    #[test]
    fn an_approval_resolved_through_one_handle_is_seen_resolved_through_another() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let first = SqliteStore::open(&path).expect("open");
        let second = SqliteStore::open(&path).expect("open again");
        first.create_session(&session("s1"), "h").expect("create");
        first
            .create_approval(&pending("s1/2", 2))
            .expect("approval");

        let done = second
            .resolve_approval("s1/2", &approve("bob"), &mut |_| Ok(()))
            .expect("resolve");
        let Resolved::Done(a) = done else {
            panic!("expected Done, got {done:?}")
        };
        assert_eq!(a.status, ApprovalStatus::Approved);

        let seen = first.approval("s1/2").expect("read").expect("present");
        assert_eq!(seen.status, ApprovalStatus::Approved);
        assert_eq!(seen.approver.as_deref(), Some("bob"));
        assert_eq!(seen.comment.as_deref(), Some("ok"));
        assert_eq!(seen.decided_ms, Some(99));
        assert_eq!(seen.args, serde_json::json!({"to": "x@y.test"}));
    }

    #[test]
    fn a_resolved_approval_is_not_resolved_again() {
        let store = SqliteStore::in_memory().expect("open");
        store.create_session(&session("s1"), "h").expect("create");
        store
            .create_approval(&pending("s1/2", 2))
            .expect("approval");
        store
            .resolve_approval("s1/2", &approve("bob"), &mut |_| Ok(()))
            .expect("first");
        let deny = Resolution {
            status: ApprovalStatus::Denied,
            approver: Some("eve".into()),
            comment: None,
            decided_ms: 100,
        };
        let again = store
            .resolve_approval("s1/2", &deny, &mut |_| Ok(()))
            .expect("second");
        let Resolved::NotPending(a) = again else {
            panic!("expected NotPending, got {again:?}")
        };
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(a.approver.as_deref(), Some("bob"));
        assert_eq!(
            store
                .resolve_approval("s1/9", &deny, &mut |_| Ok(()))
                .expect("unknown"),
            Resolved::Unknown
        );
    }

    #[test]
    fn only_the_winning_resolution_records_its_decision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let first = SqliteStore::open(&path).expect("open");
        let second = SqliteStore::open(&path).expect("open again");
        first.create_session(&session("s1"), "h").expect("create");
        first
            .create_approval(&pending("s1/2", 2))
            .expect("approval");
        let mut recorded = Vec::new();
        let won = first
            .resolve_approval("s1/2", &approve("bob"), &mut |a| {
                recorded.push(("bob", a.status));
                Ok(())
            })
            .expect("first");
        assert!(matches!(won, Resolved::Done(_)), "{won:?}");
        let lost = second
            .resolve_approval("s1/2", &approve("eve"), &mut |a| {
                recorded.push(("eve", a.status));
                Ok(())
            })
            .expect("second");
        assert!(matches!(lost, Resolved::NotPending(_)), "{lost:?}");
        assert_eq!(recorded, [("bob", ApprovalStatus::Pending)]);
    }

    #[test]
    fn a_resolution_that_cannot_be_recorded_leaves_the_approval_pending() {
        let store = SqliteStore::in_memory().expect("open");
        store.create_session(&session("s1"), "h").expect("create");
        store
            .create_approval(&pending("s1/2", 2))
            .expect("approval");
        let err = store
            .resolve_approval("s1/2", &approve("bob"), &mut |_| Err("disk full".into()))
            .expect_err("not recorded");
        assert!(err.to_string().contains("disk full"), "{err}");
        let a = store.approval("s1/2").expect("read").expect("present");
        assert_eq!((a.status, a.approver), (ApprovalStatus::Pending, None));
    }

    #[test]
    fn approvals_are_listed_by_status_newest_first() {
        let store = SqliteStore::in_memory().expect("open");
        store.create_session(&session("s1"), "h").expect("create");
        for seq in [1, 2, 3] {
            store
                .create_approval(&pending(&format!("s1/{seq}"), seq))
                .expect("approval");
        }
        store
            .resolve_approval("s1/2", &approve("bob"), &mut |_| Ok(()))
            .expect("resolve");
        let ids = |status| -> Vec<String> {
            store
                .list_approvals(status, 10)
                .expect("list")
                .into_iter()
                .map(|a| a.id)
                .collect()
        };
        assert_eq!(ids(Some(ApprovalStatus::Pending)), ["s1/3", "s1/1"]);
        assert_eq!(ids(Some(ApprovalStatus::Approved)), ["s1/2"]);
        assert_eq!(ids(None), ["s1/3", "s1/2", "s1/1"]);
    }

    #[test]
    fn unknown_session_loads_as_none() {
        let store = SqliteStore::in_memory().expect("open");
        assert!(store.load_session("nope").expect("load").is_none());
    }
}
