//! Durable session state: each session as opened, and its steps (messages, calls with their
//! decisions, labelled results) in order, so that provenance can be rebuilt after a restart.
//! `SessionStore` is the seam for PostgreSQL; `SqliteStore` is the embedded default.

use std::path::Path;
use std::sync::Mutex;

pub use rusqlite;
use rusqlite::{params, Connection, OptionalExtension};
use warden_model::Session;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("session store: stored record is not valid: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("session store: a previous operation panicked while holding the connection")]
    Poisoned,
    #[error("session store: session `{0}` already exists")]
    Duplicate(String),
}

/// One stored step: its sequence number in the session, a kind, and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStep {
    pub seq: u64,
    pub kind: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    pub session: Session,
    /// SHA-256 of the session token; the token itself is never stored.
    pub token_hash: String,
    pub steps: Vec<StoredStep>,
}

/// Where sessions live. Implementations must make `append_step` durable before returning: the
/// gateway answers the agent only after it does.
pub trait SessionStore: Send + Sync {
    fn create_session(&self, session: &Session, token_hash: &str) -> Result<(), StoreError>;
    fn append_step(&self, session_id: &str, step: &StoredStep) -> Result<(), StoreError>;
    /// A session with all its steps in order, or `None`.
    fn load_session(&self, id: &str) -> Result<Option<StoredSession>, StoreError>;
    /// Session summaries, newest first.
    fn list_sessions(&self, limit: usize) -> Result<Vec<Session>, StoreError>;
}

/// SQLite in WAL mode with `synchronous=NORMAL`: a committed step survives a crash of the
/// process (kill -9); the last few may be lost if the machine loses power.
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
CREATE TABLE IF NOT EXISTS steps (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(Connection::open(path)?)
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl SessionStore for SqliteStore {
    fn create_session(&self, session: &Session, token_hash: &str) -> Result<(), StoreError> {
        let body = serde_json::to_string(session)?;
        let conn = self.conn()?;
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO sessions (id, opened_at_ms, token_hash, body) VALUES (?1, ?2, ?3, ?4)",
            params![session.id, session.opened_at_ms as i64, token_hash, body],
        )?;
        if inserted == 0 {
            return Err(StoreError::Duplicate(session.id.clone()));
        }
        Ok(())
    }

    fn append_step(&self, session_id: &str, step: &StoredStep) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO steps (session_id, seq, kind, body) VALUES (?1, ?2, ?3, ?4)",
            params![session_id, step.seq as i64, step.kind, step.body],
        )?;
        Ok(())
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
        let mut stmt = conn.prepare_cached(
            "SELECT seq, kind, body FROM steps WHERE session_id = ?1 ORDER BY seq",
        )?;
        let steps = stmt
            .query_map(params![id], |r| {
                Ok(StoredStep {
                    seq: r.get::<_, i64>(0)? as u64,
                    kind: r.get(1)?,
                    body: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(StoredSession {
            session,
            token_hash,
            steps,
        }))
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
        };
        assert!(store.append_step("nope", &step).is_err());
    }

    #[test]
    fn unknown_session_loads_as_none() {
        let store = SqliteStore::in_memory().expect("open");
        assert!(store.load_session("nope").expect("load").is_none());
    }
}
