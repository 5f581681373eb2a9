//! The fleet's audit log: entries and checkpoints in PostgreSQL, appended by every replica in
//! turn under one advisory lock, so the indexes are contiguous and the tree is one.

use std::sync::Mutex;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row as PgRow};
use warden_audit::store::{
    Companion, EventFilter, LogStore, PgQueue, PgStatement, Row, RowVisitor, StoredCheckpoint,
    StoredEntry, Tx,
};
use warden_audit::AuditError;

use crate::{big, wait, Database, PgError, LOG_LOCK};

/// One connection to the log's tables (the writer keeps one, a reader another). A connection
/// the server dropped is opened again at the next call that is not inside an append.
pub struct PgLogStore {
    db: Database,
    client: Mutex<Option<Client>>,
    /// Between `begin_sequenced` and the end of the append: a transaction holds the lock.
    in_tx: bool,
    /// The next index as read under the lock (in the same round trip that took it): while the
    /// lock is held, no one else can change it.
    next_locked: Option<u64>,
}

const INSERT_ENTRIES: &str = "INSERT INTO entries (idx, entry, leaf_hash, session, kind, time_ms) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[], $4::TEXT[], $5::TEXT[], \
     $6::BIGINT[])";

/// Rows `scan` reads per query: a long log is read a page at a time.
const SCAN_PAGE: i64 = 10_000;

impl PgLogStore {
    /// Connects (applying migrations first: see [`crate::migrate`]).
    pub fn open(db: &Database) -> Result<PgLogStore, PgError> {
        crate::migrate(db)?;
        Ok(PgLogStore {
            client: Mutex::new(Some(db.connect()?)),
            db: db.clone(),
            in_tx: false,
            next_locked: None,
        })
    }

    /// Runs `f` on the connection, opened again first if the server dropped it (but not in
    /// the middle of an append: that transaction is gone with it).
    fn with<T>(&self, f: impl FnOnce(&Client) -> Result<T, AuditError>) -> Result<T, AuditError> {
        let mut client = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if client.as_ref().is_none_or(Client::is_closed) {
            if self.in_tx {
                return Err(AuditError::Database(format!(
                    "the connection to {} was lost in the middle of an append",
                    self.db.name()
                )));
            }
            *client = Some(self.db.connect()?);
        }
        match client.as_ref() {
            Some(c) => f(c),
            None => Err(AuditError::Database(format!(
                "no connection to {}",
                self.db.name()
            ))),
        }
    }

    fn rollback(&mut self) {
        self.next_locked = None;
        if std::mem::replace(&mut self.in_tx, false) {
            let _ = self.with(|c| Ok(wait(c.batch_execute("ROLLBACK"))?));
        }
    }
}

fn corrupt(index: Option<u64>, why: impl Into<String>) -> AuditError {
    AuditError::Corrupt {
        index,
        why: why.into(),
    }
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(r: &'a PgRow, i: usize) -> Result<T, AuditError> {
    r.try_get(i).map_err(|e| AuditError::from(PgError::from(e)))
}

fn checkpoint_of(r: &PgRow) -> Result<StoredCheckpoint, AuditError> {
    let size: i64 = get(r, 0)?;
    let root: Vec<u8> = get(r, 2)?;
    Ok(StoredCheckpoint {
        size: size as u64,
        time_ms: get::<i64>(r, 1)? as u64,
        root: root.try_into().map_err(|_| {
            corrupt(
                None,
                format!("the stored root of the checkpoint at size {size} is not 32 bytes"),
            )
        })?,
        note: get(r, 3)?,
        frontier: get(r, 4)?,
    })
}

const CHECKPOINT_COLUMNS: &str = "tree_size, time_ms, root_hash, note, frontier";

impl LogStore for PgLogStore {
    fn describe(&self) -> String {
        self.db.name().to_string()
    }

    fn next_index(&self) -> Result<u64, AuditError> {
        if let (true, Some(next)) = (self.in_tx, self.next_locked) {
            return Ok(next);
        }
        let row = self.with(|c| Ok(wait(c.query_one("SELECT MAX(idx) FROM entries", &[]))?))?;
        Ok(get::<Option<i64>>(&row, 0)?.map_or(0, |m| m as u64 + 1))
    }

    fn begin_sequenced(&mut self) -> Result<bool, AuditError> {
        self.rollback();
        // One round trip: begin, take the lock, read where the log ends.
        let messages = self.with(|c| {
            Ok(wait(c.simple_query(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({LOG_LOCK}); \
                 SELECT COALESCE(MAX(idx) + 1, 0) FROM entries"
            )))?)
        })?;
        self.in_tx = true;
        let next = messages.iter().rev().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse::<u64>().ok(),
            _ => None,
        });
        self.next_locked = next;
        Ok(true)
    }

    fn abandon(&mut self) {
        self.rollback();
    }

    fn shared(&self) -> bool {
        true
    }

    fn append(
        &mut self,
        entries: &[StoredEntry],
        with: &[Option<Companion>],
    ) -> Result<(), AuditError> {
        if !self.in_tx {
            self.begin_sequenced()?;
        }
        let written = self.with(|c| {
            // Companions run now what must be answered now (an approval still pending) and
            // queue the rest; the entries, the queue and the commit then go in one round trip.
            let mut queue = PgQueue::default();
            for (e, write) in entries.iter().zip(with) {
                if let Some(write) = write {
                    write(
                        Tx::Postgres {
                            client: c,
                            queue: &mut queue,
                        },
                        e.index,
                    )
                    .map_err(AuditError::Write)?;
                }
            }
            let mut statements = Vec::with_capacity(queue.statements.len() + 1);
            statements.push(PgStatement {
                sql: INSERT_ENTRIES,
                params: vec![
                    (
                        Box::new(entries.iter().map(|e| big(e.index)).collect::<Vec<i64>>()),
                        Type::INT8_ARRAY,
                    ),
                    (
                        Box::new(entries.iter().map(|e| e.entry.clone()).collect::<Vec<_>>()),
                        Type::BYTEA_ARRAY,
                    ),
                    (
                        Box::new(
                            entries
                                .iter()
                                .map(|e| e.leaf_hash.to_vec())
                                .collect::<Vec<_>>(),
                        ),
                        Type::BYTEA_ARRAY,
                    ),
                    (
                        Box::new(
                            entries
                                .iter()
                                .map(|e| e.session.clone())
                                .collect::<Vec<_>>(),
                        ),
                        Type::TEXT_ARRAY,
                    ),
                    (
                        Box::new(
                            entries
                                .iter()
                                .map(|e| e.kind.as_str().to_owned())
                                .collect::<Vec<_>>(),
                        ),
                        Type::TEXT_ARRAY,
                    ),
                    (
                        Box::new(entries.iter().map(|e| big(e.time_ms)).collect::<Vec<i64>>()),
                        Type::INT8_ARRAY,
                    ),
                ],
                taken: None,
            });
            statements.extend(queue.statements);
            crate::pipeline(c, &statements, true).map_err(|f| match f.taken {
                // A companion's row was written already (another replica's step): say so.
                true => AuditError::Write(f.error.0),
                false => AuditError::from(f.error),
            })
        });
        match written {
            Ok(()) => {
                self.in_tx = false;
                self.next_locked = None;
                Ok(())
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), AuditError> {
        // Two replicas may sign the same size: both signed the same root, one row is kept.
        self.with(|c| {
            Ok(wait(c.execute(
                "INSERT INTO checkpoints (tree_size, time_ms, root_hash, note, frontier) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING",
                &[
                    &big(cp.size),
                    &big(cp.time_ms),
                    &&cp.root[..],
                    &cp.note,
                    &cp.frontier,
                ],
            ))?)
        })?;
        Ok(())
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, AuditError> {
        self.with(|c| {
            Ok(wait(c.query_opt(
                "SELECT entry FROM entries WHERE idx = $1",
                &[&big(index)],
            ))?)
        })?
        .map(|r| get(&r, 0))
        .transpose()
    }

    fn leaf_hashes_below(&self, size: u64) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        self.with(|c| {
            Ok(wait(c.query(
                "SELECT idx, leaf_hash FROM entries WHERE idx < $1 ORDER BY idx",
                &[&big(size)],
            ))?)
        })?
        .iter()
        .map(|r| Ok((get::<i64>(r, 0)? as u64, get(r, 1)?)))
        .collect()
    }

    fn count(&self) -> Result<u64, AuditError> {
        let row = self.with(|c| Ok(wait(c.query_one("SELECT COUNT(*) FROM entries", &[]))?))?;
        Ok(get::<i64>(&row, 0)? as u64)
    }

    fn extent(&self) -> Result<(u64, u64), AuditError> {
        let row = self.with(|c| {
            Ok(wait(
                c.query_one("SELECT MAX(idx), COUNT(*) FROM entries", &[]),
            )?)
        })?;
        let max: Option<i64> = get(&row, 0)?;
        Ok((max.map_or(0, |m| m as u64 + 1), get::<i64>(&row, 1)? as u64))
    }

    fn scan(&self, from: u64, visit: &mut RowVisitor<'_>) -> Result<(), AuditError> {
        let mut from = big(from);
        loop {
            let rows = self.with(|c| {
                Ok(wait(c.query(
                    "SELECT idx, entry, leaf_hash, session, kind, time_ms FROM entries \
                     WHERE idx >= $1 ORDER BY idx LIMIT $2",
                    &[&from, &SCAN_PAGE],
                ))?)
            })?;
            for r in &rows {
                let index: i64 = get(r, 0)?;
                let row = Row {
                    index: index as u64,
                    entry: get(r, 1)?,
                    leaf_hash: get(r, 2)?,
                    session: r.try_get(3).ok(),
                    kind: r.try_get(4).ok(),
                    time_ms: r.try_get(5).ok(),
                };
                if !visit(&row) {
                    return Ok(());
                }
                from = index + 1;
            }
            if (rows.len() as i64) < SCAN_PAGE {
                return Ok(());
            }
        }
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        self.with(|c| {
            Ok(wait(c.query(
                &format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size"),
                &[],
            ))?)
        })?
        .iter()
        .map(checkpoint_of)
        .collect()
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, AuditError> {
        self.with(|c| {
            Ok(wait(c.query_opt(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
                ),
                &[],
            ))?)
        })?
        .as_ref()
        .map(checkpoint_of)
        .transpose()
    }

    fn find(&self, f: &EventFilter) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let kind = f.kind.map(|k| k.as_str());
        let limit = if f.limit > 0 {
            i64::try_from(f.limit).unwrap_or(i64::MAX)
        } else {
            i64::MAX
        };
        let sql = format!(
            "SELECT idx, entry FROM entries WHERE ($1::TEXT IS NULL OR session = $1) \
             AND ($2::TEXT IS NULL OR kind = $2) AND ($3::BIGINT IS NULL OR time_ms >= $3) \
             AND ($4::BIGINT IS NULL OR time_ms <= $4) ORDER BY idx {} LIMIT $5",
            if f.newest { "DESC" } else { "ASC" }
        );
        let mut rows: Vec<(u64, Vec<u8>)> = self
            .with(|c| {
                Ok(wait(c.query(
                    &sql,
                    &[
                        &f.session,
                        &kind,
                        &f.since_ms.map(big),
                        &f.until_ms.map(big),
                        &limit,
                    ],
                ))?)
            })?
            .iter()
            .map(|r| Ok((get::<i64>(r, 0)? as u64, get(r, 1)?)))
            .collect::<Result<_, AuditError>>()?;
        if f.newest {
            rows.reverse();
        }
        Ok(rows)
    }
}
