//! Where entries and checkpoints are kept: the `LogStore` trait (the seam for PostgreSQL) and
//! `SqliteLogStore`, SQLite in WAL mode. A store keeps bytes; it never decides what they mean.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::event::EventKind;
use crate::merkle::Hash;
use crate::AuditError;

/// How hard a commit tries to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: a committed entry survives the process being killed
    /// (kill -9, a panic, an OOM kill), because the WAL is written before the commit returns;
    /// the last commits before a power loss or kernel crash may be lost (never torn).
    #[default]
    Process,
    /// WAL with `synchronous=FULL`: the WAL is fsynced at every commit, so a committed entry also
    /// survives a power loss. Group commit makes this one fsync per batch, not per event.
    Power,
}

/// One entry as stored: its index, its canonical bytes and their leaf hash, and copies of the
/// fields queries filter on. The copies are not hashed: verification and start-up check them
/// against the bytes, so an edited copy cannot hide an event from a query unnoticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    pub entry: Vec<u8>,
    pub leaf_hash: Hash,
    pub session: String,
    pub kind: EventKind,
    pub time_ms: u64,
}

/// A signed checkpoint as stored, with the compact range of the tree at its size so that a
/// restarted writer resumes without rereading the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub time_ms: u64,
    pub root: Hash,
    pub note: String,
    /// The frontier's subtree roots, concatenated (32 bytes each).
    pub frontier: Vec<u8>,
}

/// Which events a query wants. `limit` 0 means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub session: Option<String>,
    pub kind: Option<EventKind>,
    /// Inclusive bounds on `time_ms`.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub limit: usize,
    /// Take the newest `limit` matches instead of the oldest (returned oldest first either way).
    pub newest: bool,
}

/// One stored row as `LogStore::scan` reads it, unchecked. A query column that does not hold the
/// type the writer stores is `None`.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub index: u64,
    pub entry: &'a [u8],
    pub leaf_hash: &'a [u8],
    pub session: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub time_ms: Option<i64>,
}

/// What `LogStore::scan` calls for each row; returns false to stop.
pub type RowVisitor<'a> = dyn FnMut(&Row<'_>) -> bool + 'a;

/// The transaction an append is written in, as a companion sees it: a SQLite connection inside
/// its transaction, or a PostgreSQL transaction: `client` runs a statement now (between its
/// `BEGIN` and `COMMIT`), `queue` takes statements that are sent with the entries and the commit,
/// in one round trip.
pub enum Tx<'a> {
    Sqlite(&'a Connection),
    Postgres {
        client: &'a tokio_postgres::Client,
        queue: &'a mut PgQueue,
    },
}

/// A parameter of a queued statement, owned, with its type (no statement is prepared).
pub type PgParam = (
    Box<dyn tokio_postgres::types::ToSql + Send + Sync>,
    tokio_postgres::types::Type,
);

/// A statement queued for an append's transaction.
pub struct PgStatement {
    pub sql: &'static str,
    pub params: Vec<PgParam>,
    /// What to say when it fails on a unique key (the row was written already); any other
    /// failure says what the server said.
    pub taken: Option<String>,
}

/// The statements companions queued for one append's transaction, in order. A failure of any
/// fails the append (the transaction's commit then rolls it back).
#[derive(Default)]
pub struct PgQueue {
    pub statements: Vec<PgStatement>,
}

impl PgQueue {
    pub fn push(&mut self, sql: &'static str, params: Vec<PgParam>, taken: Option<String>) {
        self.statements.push(PgStatement { sql, params, taken });
    }
}

/// A write made in the same transaction as one entry, given the entry's index: the session
/// store's row for the step the entry records, so that the two are durable together or not at
/// all. An error fails the entry's append (and the batch it was in, which is then committed
/// again one append at a time, so only the failing one fails).
pub type Companion = std::sync::Arc<dyn Fn(Tx<'_>, u64) -> Result<(), String> + Send + Sync>;

/// A store of log entries. `append` must be durable (per the store's `Durability`) and atomic
/// (all entries of the call or none) before it returns: the writer acknowledges appenders only
/// after it does.
pub trait LogStore: Send {
    /// One more than the highest stored index (0 when empty): the index the next entry gets.
    fn next_index(&self) -> Result<u64, AuditError>;
    /// Opens the next append's transaction holding the log's sequencing lock, when the store
    /// is shared by writers in other processes that may append at any time (a fleet's
    /// PostgreSQL): until `append` commits or fails, no other writer can append, so the writer
    /// catches up with what they wrote and hands out the next indexes with no race. False (this
    /// default) for a store whose appends are sequenced by failing on a taken index instead.
    fn begin_sequenced(&mut self) -> Result<bool, AuditError> {
        Ok(false)
    }
    /// Ends a transaction `begin_sequenced` opened without appending (rolled back).
    fn abandon(&mut self) {}
    /// Whether writers in other processes append to this store at any time (a fleet's
    /// database): the checkpoint thread then looks for their entries every interval, so what a
    /// replica that died left unsigned is signed by another even while no one appends.
    fn shared(&self) -> bool {
        false
    }
    /// Where the log is kept, for messages: a file's path, or a database without its password.
    fn describe(&self) -> String;
    /// `with[i]`, when present, is written in the same transaction as `entries[i]` (a store
    /// that cannot do that fails such an append).
    fn append(
        &mut self,
        entries: &[StoredEntry],
        with: &[Option<Companion>],
    ) -> Result<(), AuditError>;
    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), AuditError>;
    /// The bytes of the entry stored at `index`.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, AuditError>;
    /// The stored leaf hashes of the entries with index < `size`, in index order.
    fn leaf_hashes_below(&self, size: u64) -> Result<Vec<(u64, Vec<u8>)>, AuditError>;
    /// How many entries are stored (equal to `next_index` unless some were deleted).
    fn count(&self) -> Result<u64, AuditError>;
    /// `next_index` and `count` read together, as of one moment: another process appending
    /// between two separate reads would make the count pass the index.
    fn extent(&self) -> Result<(u64, u64), AuditError> {
        Ok((self.next_index()?, self.count()?))
    }
    /// The stored rows with index >= `from`, in index order. `visit` returns false to stop.
    fn scan(&self, from: u64, visit: &mut RowVisitor<'_>) -> Result<(), AuditError>;
    /// All checkpoints, smallest size first.
    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError>;
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditError>;
    /// Entries matching the filter: (index, bytes), oldest first.
    fn find(&self, filter: &EventFilter) -> Result<Vec<(u64, Vec<u8>)>, AuditError>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    entry BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    session TEXT NOT NULL,
    kind TEXT NOT NULL,
    time_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_session ON entries(session, idx);
CREATE TABLE IF NOT EXISTS checkpoints (
    tree_size INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    root_hash BLOB NOT NULL,
    note TEXT NOT NULL,
    frontier BLOB NOT NULL
);
";

/// SQLite in WAL mode (see `Durability` for what a commit survives).
pub struct SqliteLogStore {
    conn: Connection,
    /// The database file as opened, to notice it deleted or replaced while the log runs (SQLite
    /// would go on writing to a file nobody can open again).
    file: Option<OpenedFile>,
}

/// A file's path and identity (device and inode) when it was opened.
#[derive(Debug, Clone)]
struct OpenedFile {
    path: std::path::PathBuf,
    id: (u64, u64),
}

impl OpenedFile {
    #[cfg(unix)]
    fn id(path: &Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }

    #[cfg(not(unix))]
    fn id(_: &Path) -> Option<(u64, u64)> {
        Some((0, 0))
    }

    fn of(path: &Path) -> Option<OpenedFile> {
        Some(OpenedFile {
            path: path.to_path_buf(),
            id: OpenedFile::id(path)?,
        })
    }

    /// Err unless the path still names the file that was opened.
    fn check(&self) -> Result<(), AuditError> {
        if OpenedFile::id(&self.path) == Some(self.id) {
            return Ok(());
        }
        Err(AuditError::Write(format!(
            "{} was deleted or replaced while Warden ran, so nothing written to it could be \
             read again; stop Warden and put the file back (with its -wal and -shm files), or \
             move the data dir aside and start afresh",
            self.path.display()
        )))
    }
}

impl SqliteLogStore {
    /// Opens (creating if needed) the log at `path`.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, AuditError> {
        make_private(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match durability {
            Durability::Process => "NORMAL",
            Durability::Power => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteLogStore {
            conn,
            file: OpenedFile::of(path),
        })
    }

    /// Takes in the log an older Warden kept alone at `old` (its `entries` and `checkpoints`),
    /// in one transaction, when this database holds none yet. When it already holds that log
    /// (a start killed after taking it in, before setting the old file aside) nothing is
    /// copied; when it holds another one, that is an error naming both files.
    pub(crate) fn take_in(&mut self, old: &Path) -> Result<(), AuditError> {
        let name = old
            .to_str()
            .ok_or_else(|| AuditError::Config(format!("{} is not a UTF-8 path", old.display())))?;
        self.conn.execute("ATTACH DATABASE ?1 AS old", [name])?;
        let taken = self.take_in_attached(old);
        let detached = self.conn.execute("DETACH DATABASE old", []);
        taken?;
        detached?;
        Ok(())
    }

    fn take_in_attached(&mut self, old: &Path) -> Result<(), AuditError> {
        let has_log: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM old.sqlite_master WHERE type = 'table' AND name = 'entries'",
            [],
            |r| r.get(0),
        )?;
        if has_log == 0 {
            return Ok(());
        }
        let newest = |schema: &str| -> Result<Option<(i64, Vec<u8>)>, AuditError> {
            Ok(self
                .conn
                .query_row(
                    &format!(
                        "SELECT idx, leaf_hash FROM {schema}.entries ORDER BY idx DESC LIMIT 1"
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        };
        let Some((last, leaf)) = newest("old")? else {
            return Ok(());
        };
        if newest("main")?.is_some() {
            let here: Option<Vec<u8>> = self
                .conn
                .query_row(
                    "SELECT leaf_hash FROM main.entries WHERE idx = ?1",
                    [last],
                    |r| r.get(0),
                )
                .optional()?;
            if here.as_ref() == Some(&leaf) {
                return Ok(());
            }
            return Err(AuditError::Damaged {
                dir: None,
                why: format!(
                    "{} and {} each hold an audit log, and not the same one",
                    self.file
                        .as_ref()
                        .map_or_else(String::new, |f| f.path.display().to_string()),
                    old.display()
                ),
                recover: "keep the data dir as evidence (move it aside) and start afresh, or \
                          put back the pair of files that belong together"
                    .into(),
            });
        }
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "INSERT INTO main.entries (idx, entry, leaf_hash, session, kind, time_ms) \
                 SELECT idx, entry, leaf_hash, session, kind, time_ms FROM old.entries; \
             INSERT INTO main.checkpoints (tree_size, time_ms, root_hash, note, frontier) \
                 SELECT tree_size, time_ms, root_hash, note, frontier FROM old.checkpoints;",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Opens an existing log to read it; a missing file is an error, not a new log. (Opened
    /// read-write without creating anything: a read-only connection to a WAL database cannot
    /// always set up the shared-memory index.)
    pub fn open_existing(path: &Path) -> Result<Self, AuditError> {
        if !path.exists() {
            return Err(AuditError::NoLog(path.to_path_buf()));
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(SqliteLogStore {
            conn,
            file: OpenedFile::of(path),
        })
    }

    /// Whether the database holds a log (its `entries` table).
    pub fn holds_log(&self) -> Result<bool, AuditError> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'entries'",
            [],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }
}

/// Creates the log's database file at `path` readable and writable by its owner only (SQLite
/// gives its -wal and -shm files the same mode), or narrows an existing one and its -wal and
/// -shm files to that.
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

fn to_hash_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    bound: u64,
) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
    let rows = stmt
        .query_map(params![bound as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// (tree_size, time_ms, root_hash, note, frontier) as read.
type CheckpointRow = (i64, i64, Vec<u8>, String, Vec<u8>);

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_checkpoint(
    (size, time_ms, root, note, frontier): CheckpointRow,
) -> Result<StoredCheckpoint, AuditError> {
    let root: Hash = root.try_into().map_err(|_| AuditError::Corrupt {
        index: None,
        why: format!("the stored root of the checkpoint at size {size} is not 32 bytes"),
    })?;
    Ok(StoredCheckpoint {
        size: size as u64,
        time_ms: time_ms as u64,
        root,
        note,
        frontier,
    })
}

const CHECKPOINT_COLUMNS: &str = "tree_size, time_ms, root_hash, note, frontier";

impl LogStore for SqliteLogStore {
    fn describe(&self) -> String {
        self.file.as_ref().map_or_else(
            || "the log's database".into(),
            |f| f.path.display().to_string(),
        )
    }

    fn next_index(&self) -> Result<u64, AuditError> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT MAX(idx) FROM entries", [], |r| r.get(0))?;
        Ok(max.map_or(0, |m| m as u64 + 1))
    }

    fn append(
        &mut self,
        entries: &[StoredEntry],
        with: &[Option<Companion>],
    ) -> Result<(), AuditError> {
        if let Some(file) = &self.file {
            file.check()?;
        }
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO entries (idx, entry, leaf_hash, session, kind, time_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (i, e) in entries.iter().enumerate() {
                stmt.execute(params![
                    e.index as i64,
                    e.entry,
                    &e.leaf_hash[..],
                    e.session,
                    e.kind.as_str(),
                    e.time_ms as i64
                ])?;
                if let Some(write) = with.get(i).and_then(Option::as_ref) {
                    write(Tx::Sqlite(&tx), e.index).map_err(AuditError::Write)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), AuditError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO checkpoints (tree_size, time_ms, root_hash, note, frontier) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                cp.size as i64,
                cp.time_ms as i64,
                &cp.root[..],
                cp.note,
                cp.frontier
            ],
        )?;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, AuditError> {
        Ok(self
            .conn
            .prepare_cached("SELECT entry FROM entries WHERE idx = ?1")?
            .query_row(params![index as i64], |r| r.get(0))
            .optional()?)
    }

    fn leaf_hashes_below(&self, size: u64) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT idx, leaf_hash FROM entries WHERE idx < ?1 ORDER BY idx")?;
        to_hash_rows(&mut stmt, size)
    }

    fn count(&self) -> Result<u64, AuditError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn extent(&self) -> Result<(u64, u64), AuditError> {
        // One statement reads one snapshot of the database.
        let (max, n): (Option<i64>, i64) =
            self.conn
                .query_row("SELECT MAX(idx), COUNT(*) FROM entries", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok((max.map_or(0, |m| m as u64 + 1), n as u64))
    }

    fn scan(&self, from: u64, visit: &mut RowVisitor<'_>) -> Result<(), AuditError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT idx, entry, leaf_hash, session, kind, time_ms FROM entries \
             WHERE idx >= ?1 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![from as i64])?;
        while let Some(r) = rows.next()? {
            let idx = r.get::<_, i64>(0)? as u64;
            let not_bytes = |what: &str| AuditError::Corrupt {
                index: Some(idx),
                why: format!("its {what} is not a blob"),
            };
            let row = Row {
                index: idx,
                entry: r.get_ref(1)?.as_bytes().map_err(|_| not_bytes("entry"))?,
                leaf_hash: r
                    .get_ref(2)?
                    .as_bytes()
                    .map_err(|_| not_bytes("leaf hash"))?,
                session: r.get_ref(3)?.as_str().ok(),
                kind: r.get_ref(4)?.as_str().ok(),
                time_ms: r.get_ref(5)?.as_i64().ok(),
            };
            if !visit(&row) {
                break;
            }
        }
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size"
        ))?;
        let rows = stmt
            .query_map([], checkpoint_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(to_checkpoint).collect()
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
            ))?
            .query_row([], checkpoint_row)
            .optional()?
            .map(to_checkpoint)
            .transpose()
    }

    fn find(&self, f: &EventFilter) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let mut sql = String::from("SELECT idx, entry FROM entries WHERE 1=1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = &f.session {
            args.push(s.clone().into());
            sql.push_str(&format!(" AND session = ?{}", args.len()));
        }
        if let Some(k) = f.kind {
            args.push(k.as_str().to_string().into());
            sql.push_str(&format!(" AND kind = ?{}", args.len()));
        }
        if let Some(t) = f.since_ms {
            args.push((t as i64).into());
            sql.push_str(&format!(" AND time_ms >= ?{}", args.len()));
        }
        if let Some(t) = f.until_ms {
            args.push((t as i64).into());
            sql.push_str(&format!(" AND time_ms <= ?{}", args.len()));
        }
        sql.push_str(if f.newest {
            " ORDER BY idx DESC"
        } else {
            " ORDER BY idx"
        });
        if f.limit > 0 {
            sql.push_str(&format!(" LIMIT {}", f.limit));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if f.newest {
            rows.reverse();
        }
        Ok(rows)
    }
}
