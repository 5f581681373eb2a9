//! The fleet's session store: the SQLite store's tables and semantics, in PostgreSQL.

use std::sync::Arc;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, Row};
use warden_audit::{PgParam, PgQueue};
use warden_model::{CarriedLabel, Session};
use warden_store::{
    now_ms, Approval, ApprovalStatus, PinCheck, RecordDecision, Resolution, Resolved, Resume,
    SeenDefinition, SessionStore, Snapshot, StoreError, StoredSession, StoredStep, ToolPin,
};

use crate::{big, pipeline, wait, Database, PgError, Pool, PIN_LOCK};

/// What a step's write says when another replica wrote that step of the session first: the
/// runtime then decides the call again on the session as it now is.
pub const STEP_TAKEN: &str = "was recorded by another replica at the same moment";

/// Sessions, steps, approvals, carried labels and pins in PostgreSQL, shared by every replica.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects (applying migrations first: see [`crate::migrate`]).
    pub fn open(db: &Database) -> Result<PgStore, PgError> {
        crate::migrate(db)?;
        let pool = Pool::new(db.clone());
        // Fail at start, not at the first call, when the database cannot be reached.
        drop(pool.get()?);
        Ok(PgStore { pool })
    }

    pub fn database(&self) -> &Database {
        self.pool.database()
    }

    /// Runs `f` in a transaction on a pooled connection: committed when it returns `Ok`.
    fn in_tx<T>(&self, f: impl FnOnce(&Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let client = self.pool.get()?;
        wait(client.batch_execute("BEGIN")).map_err(StoreError::from)?;
        match f(&client) {
            Ok(t) => {
                wait(client.batch_execute("COMMIT")).map_err(StoreError::from)?;
                Ok(t)
            }
            Err(e) => {
                let _ = wait(client.batch_execute("ROLLBACK"));
                Err(e)
            }
        }
    }
}

fn db(e: tokio_postgres::Error) -> StoreError {
    PgError::from(e).into()
}

const INSERT_SESSION: &str =
    "INSERT INTO sessions (id, opened_at_ms, token_hash, body) VALUES ($1, $2, $3, $4)";
const INSERT_STEP: &str =
    "INSERT INTO steps (session_id, seq, kind, body, audit_index) VALUES ($1, $2, $3, $4, $5)";
const INSERT_LABEL: &str =
    "INSERT INTO carried_labels (kind, value, prose, session_id, seq, tool, at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (kind, value) DO UPDATE SET prose = carried_labels.prose OR excluded.prose";

fn text(s: impl Into<String>) -> PgParam {
    (Box::new(s.into()), Type::TEXT)
}

fn int(n: Option<u64>) -> PgParam {
    (Box::new(n.map(big)), Type::INT8)
}

/// Queues a new session for the caller's transaction (the audit log's writer sends it with the
/// session's opening entry). A session that exists fails the transaction.
pub fn write_session(
    queue: &mut PgQueue,
    session: &Session,
    token_hash: &str,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(session)?;
    queue.push(
        INSERT_SESSION,
        vec![
            text(session.id.clone()),
            int(Some(session.opened_at_ms)),
            text(token_hash),
            text(body),
        ],
        Some(StoreError::Duplicate(session.id.clone()).to_string()),
    );
    Ok(())
}

/// Resolves approval `id` if it is still pending, inside the caller's transaction, now (the
/// answer decides the append); whether it was (see `warden_store::resolve_pending`).
pub fn resolve_pending(client: &Client, id: &str, r: &Resolution) -> Result<bool, StoreError> {
    let changed = wait(client.execute_typed(
        "UPDATE approvals SET status = $2, approver = $3, comment = $4, decided_ms = $5 \
         WHERE id = $1 AND status = 'pending'",
        &[
            (&id, Type::TEXT),
            (&r.status.as_str(), Type::TEXT),
            (&r.approver, Type::TEXT),
            (&r.comment, Type::TEXT),
            (&big(r.decided_ms), Type::INT8),
        ],
    ))
    .map_err(StoreError::from)?;
    Ok(changed == 1)
}

/// A stored step's body as a statement parameter, shared rather than copied (a result's body
/// may be megabytes).
#[derive(Debug)]
struct Body(Arc<StoredStep>);

impl ToSql for Body {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.body.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// Queues a step (naming its audit entry `audit`, not `step.audit`) and the labels it carries
/// for the caller's transaction (the audit log's writer sends them with the step's entry and the
/// commit, in one round trip). Of two replicas writing the same step of one session, the second
/// fails on the key: per-session order is the database's.
pub fn write_step(
    queue: &mut PgQueue,
    session_id: &str,
    step: &Arc<StoredStep>,
    audit: Option<u64>,
    carried: &[CarriedLabel],
) -> Result<(), StoreError> {
    queue.push(
        INSERT_STEP,
        vec![
            text(session_id),
            int(Some(step.seq)),
            text(step.kind.clone()),
            (Box::new(Body(step.clone())), Type::TEXT),
            int(audit),
        ],
        Some(
            StoreError::Database(format!(
                "step {} of session `{session_id}` {STEP_TAKEN} (each step is recorded once); \
                 send the request again",
                step.seq
            ))
            .to_string(),
        ),
    );
    let now = now_ms();
    for c in carried {
        // Text in PostgreSQL cannot hold NUL: the value is kept as its JSON string.
        let value = serde_json::to_string(&c.value)?;
        queue.push(
            INSERT_LABEL,
            vec![
                text(c.kind.clone()),
                text(value),
                (Box::new(c.prose), Type::BOOL),
                text(c.session.clone()),
                int(Some(c.seq)),
                text(c.tool.clone()),
                (Box::new(now), Type::INT8),
            ],
            None,
        );
    }
    Ok(())
}

const APPROVAL_COLUMNS: &str =
    "id, session_id, seq, tool, args, reasons, created_ms, status, approver, comment, decided_ms";

fn approval_of(r: &Row) -> Result<Approval, StoreError> {
    let id: String = r.try_get(0).map_err(db)?;
    let status: String = r.try_get(7).map_err(db)?;
    let args: String = r.try_get(4).map_err(db)?;
    let reasons: String = r.try_get(5).map_err(db)?;
    Ok(Approval {
        session: r.try_get(1).map_err(db)?,
        seq: r.try_get::<_, i64>(2).map_err(db)? as u64,
        tool: r.try_get(3).map_err(db)?,
        args: serde_json::from_str(&args)?,
        reasons: serde_json::from_str(&reasons)?,
        created_ms: r.try_get::<_, i64>(6).map_err(db)? as u64,
        status: ApprovalStatus::parse(&status).ok_or_else(|| StoreError::BadStatus {
            id: id.clone(),
            status,
        })?,
        approver: r.try_get(8).map_err(db)?,
        comment: r.try_get(9).map_err(db)?,
        decided_ms: r
            .try_get::<_, Option<i64>>(10)
            .map_err(db)?
            .map(|t| t as u64),
        id,
    })
}

fn read_approval(client: &Client, id: &str, lock: bool) -> Result<Option<Approval>, StoreError> {
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    wait(client.query_typed_opt(&sql, &[(&id, Type::TEXT)]))
        .map_err(StoreError::from)?
        .as_ref()
        .map(approval_of)
        .transpose()
}

const PIN_COLUMNS: &str =
    "upstream, tool, digest, definition, pinned_at_ms, seen_digest, seen_definition, seen_at_ms";

fn pin_of(r: &Row) -> Result<ToolPin, StoreError> {
    let seen = match (
        r.try_get::<_, Option<String>>(5).map_err(db)?,
        r.try_get::<_, Option<String>>(6).map_err(db)?,
        r.try_get::<_, Option<i64>>(7).map_err(db)?,
    ) {
        (Some(digest), Some(definition), Some(at)) => Some(SeenDefinition {
            digest,
            definition,
            seen_at_ms: at as u64,
        }),
        _ => None,
    };
    Ok(ToolPin {
        upstream: r.try_get(0).map_err(db)?,
        tool: r.try_get(1).map_err(db)?,
        digest: r.try_get(2).map_err(db)?,
        definition: r.try_get(3).map_err(db)?,
        pinned_at_ms: r.try_get::<_, i64>(4).map_err(db)? as u64,
        seen,
    })
}

fn read_pin(client: &Client, upstream: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
    wait(client.query_opt(
        &format!("SELECT {PIN_COLUMNS} FROM tool_pins WHERE upstream = $1 AND tool = $2"),
        &[&upstream, &tool],
    ))
    .map_err(StoreError::from)?
    .as_ref()
    .map(pin_of)
    .transpose()
}

fn step_of(r: &Row) -> Result<StoredStep, StoreError> {
    Ok(StoredStep {
        seq: r.try_get::<_, i64>(0).map_err(db)? as u64,
        kind: r.try_get(1).map_err(db)?,
        body: r.try_get(2).map_err(db)?,
        audit: r
            .try_get::<_, Option<i64>>(3)
            .map_err(db)?
            .map(|i| i as u64),
    })
}

fn read_steps(
    client: &Client,
    id: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<StoredStep>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    wait(client.query_typed(
        "SELECT seq, kind, body, audit_index FROM steps WHERE session_id = $1 AND seq >= $2 \
         ORDER BY seq LIMIT $3",
        &[
            (&id, Type::TEXT),
            (&big(from), Type::INT8),
            (&limit, Type::INT8),
        ],
    ))
    .map_err(StoreError::from)?
    .iter()
    .map(step_of)
    .collect()
}

impl SessionStore for PgStore {
    fn create_session(&self, session: &Session, token_hash: &str) -> Result<(), StoreError> {
        let mut queue = PgQueue::default();
        write_session(&mut queue, session, token_hash)?;
        match pipeline(&*self.pool.get()?, &queue.statements, false) {
            Err(e) if e.taken => Err(StoreError::Duplicate(session.id.clone())),
            other => Ok(other.map_err(|e| e.error)?),
        }
    }

    fn append_step(&self, session_id: &str, step: &StoredStep) -> Result<(), StoreError> {
        self.append_step_carrying(session_id, step, &[])
    }

    fn append_step_carrying(
        &self,
        session_id: &str,
        step: &StoredStep,
        carried: &[CarriedLabel],
    ) -> Result<(), StoreError> {
        let mut queue = PgQueue::default();
        write_step(
            &mut queue,
            session_id,
            &Arc::new(step.clone()),
            step.audit,
            carried,
        )?;
        self.in_tx(|c| Ok(pipeline(c, &queue.statements, false).map_err(|e| e.error)?))
    }

    fn carried_labels(&self, limit: usize) -> Result<Vec<CarriedLabel>, StoreError> {
        self.carried_labels_since(0, limit)
    }

    fn carried_labels_since(
        &self,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<CarriedLabel>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = wait(self.pool.get()?.query_typed(
            "SELECT kind, value, prose, session_id, seq, tool FROM carried_labels \
             WHERE at_ms >= $1 ORDER BY at_ms DESC, n DESC LIMIT $2",
            &[(&big(since_ms), Type::INT8), (&limit, Type::INT8)],
        ))
        .map_err(StoreError::from)?;
        rows.iter()
            .map(|r| {
                let value: String = r.try_get(1).map_err(db)?;
                Ok(CarriedLabel {
                    kind: r.try_get(0).map_err(db)?,
                    value: serde_json::from_str(&value)?,
                    prose: r.try_get(2).map_err(db)?,
                    session: r.try_get(3).map_err(db)?,
                    seq: r.try_get::<_, i64>(4).map_err(db)? as u64,
                    tool: r.try_get(5).map_err(db)?,
                })
            })
            .collect()
    }

    fn pin_tool(
        &self,
        upstream: &str,
        tool: &str,
        digest: &str,
        definition: &str,
    ) -> Result<PinCheck, StoreError> {
        self.in_tx(|c| {
            // Replicas listing the same tool at once: one checks and pins at a time.
            wait(c.execute(&format!("SELECT pg_advisory_xact_lock({PIN_LOCK})"), &[]))
                .map_err(StoreError::from)?;
            let now = now_ms();
            Ok(match read_pin(c, upstream, tool)? {
                None => {
                    wait(c.execute(
                        "INSERT INTO tool_pins (upstream, tool, digest, definition, pinned_at_ms) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&upstream, &tool, &digest, &definition, &now],
                    ))
                    .map_err(StoreError::from)?;
                    PinCheck::New
                }
                Some(pin) if pin.digest == digest => {
                    if pin.seen.is_some() {
                        wait(c.execute(
                            "UPDATE tool_pins SET seen_digest = NULL, seen_definition = NULL, \
                             seen_at_ms = NULL WHERE upstream = $1 AND tool = $2",
                            &[&upstream, &tool],
                        ))
                        .map_err(StoreError::from)?;
                    }
                    PinCheck::Same
                }
                Some(pin) => {
                    let first_seen = pin.seen.as_ref().is_none_or(|s| s.digest != digest);
                    if first_seen {
                        wait(c.execute(
                            "UPDATE tool_pins SET seen_digest = $3, seen_definition = $4, \
                             seen_at_ms = $5 WHERE upstream = $1 AND tool = $2",
                            &[&upstream, &tool, &digest, &definition, &now],
                        ))
                        .map_err(StoreError::from)?;
                    }
                    PinCheck::Changed { pin, first_seen }
                }
            })
        })
    }

    fn tool_pins(&self) -> Result<Vec<ToolPin>, StoreError> {
        wait(self.pool.get()?.query(
            &format!("SELECT {PIN_COLUMNS} FROM tool_pins ORDER BY upstream, tool"),
            &[],
        ))
        .map_err(StoreError::from)?
        .iter()
        .map(pin_of)
        .collect()
    }

    fn tool_pin(&self, upstream: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
        read_pin(&*self.pool.get()?, upstream, tool)
    }

    fn accept_tool(&self, upstream: &str, tool: &str) -> Result<Option<ToolPin>, StoreError> {
        self.in_tx(|c| {
            wait(c.execute(
                "UPDATE tool_pins SET digest = seen_digest, definition = seen_definition, \
                 pinned_at_ms = $3, seen_digest = NULL, seen_definition = NULL, seen_at_ms = NULL \
                 WHERE upstream = $1 AND tool = $2 AND seen_digest IS NOT NULL",
                &[&upstream, &tool, &now_ms()],
            ))
            .map_err(StoreError::from)?;
            read_pin(c, upstream, tool)
        })
    }

    fn load_session(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        let client = self.pool.get()?;
        let Some(row) = wait(client.query_opt(
            "SELECT body, token_hash FROM sessions WHERE id = $1",
            &[&id],
        ))
        .map_err(StoreError::from)?
        else {
            return Ok(None);
        };
        let body: String = row.try_get(0).map_err(db)?;
        Ok(Some(StoredSession {
            session: serde_json::from_str(&body)?,
            token_hash: row.try_get(1).map_err(db)?,
            steps: read_steps(&client, id, 0, usize::MAX)?,
        }))
    }

    fn resume_session(&self, id: &str) -> Result<Option<Resume>, StoreError> {
        let Some(row) = wait(self.pool.get()?.query_typed_opt(
            "SELECT s.body, s.token_hash, n.from_seq, n.body FROM sessions s \
             LEFT JOIN snapshots n ON n.session_id = s.id WHERE s.id = $1",
            &[(&id, Type::TEXT)],
        ))
        .map_err(StoreError::from)?
        else {
            return Ok(None);
        };
        let body: String = row.try_get(0).map_err(db)?;
        let from: Option<i64> = row.try_get(2).map_err(db)?;
        let snapshot: Option<String> = row.try_get(3).map_err(db)?;
        Ok(Some(Resume {
            session: serde_json::from_str(&body)?,
            token_hash: row.try_get(1).map_err(db)?,
            snapshot: from.zip(snapshot).map(|(from, body)| Snapshot {
                from: from as u64,
                body,
            }),
        }))
    }

    fn steps_from(&self, id: &str, from: u64, limit: usize) -> Result<Vec<StoredStep>, StoreError> {
        read_steps(&*self.pool.get()?, id, from, limit)
    }

    fn save_snapshot(&self, id: &str, snapshot: &Snapshot) -> Result<(), StoreError> {
        // A replica that replayed fewer steps never replaces a newer snapshot.
        wait(self.pool.get()?.execute(
            "INSERT INTO snapshots (session_id, from_seq, body) VALUES ($1, $2, $3) \
             ON CONFLICT (session_id) DO UPDATE SET from_seq = excluded.from_seq, \
             body = excluded.body WHERE snapshots.from_seq <= excluded.from_seq",
            &[&id, &big(snapshot.from), &snapshot.body],
        ))
        .map_err(StoreError::from)?;
        Ok(())
    }

    fn has_session(&self, id: &str) -> Result<bool, StoreError> {
        Ok(wait(
            self.pool
                .get()?
                .query_typed_opt("SELECT 1 FROM sessions WHERE id = $1", &[(&id, Type::TEXT)]),
        )?
        .is_some())
    }

    fn session_by_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        wait(self.pool.get()?.query_typed_opt(
            "SELECT id FROM sessions WHERE token_hash = $1",
            &[(&token_hash, Type::TEXT)],
        ))?
        .map(|r| r.try_get(0).map_err(db))
        .transpose()
    }

    fn list_sessions(&self, limit: usize) -> Result<Vec<Session>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        wait(self.pool.get()?.query(
            "SELECT body FROM sessions ORDER BY opened_at_ms DESC, id LIMIT $1",
            &[&limit],
        ))?
        .iter()
        .map(|r| {
            let body: String = r.try_get(0).map_err(db)?;
            Ok(serde_json::from_str(&body)?)
        })
        .collect()
    }

    fn create_approval(&self, a: &Approval) -> Result<(), StoreError> {
        let (args, reasons) = (a.args.to_string(), a.reasons.to_string());
        let inserted = wait(self.pool.get()?.execute(
            &format!(
                "INSERT INTO approvals ({APPROVAL_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING"
            ),
            &[
                &a.id,
                &a.session,
                &big(a.seq),
                &a.tool,
                &args,
                &reasons,
                &big(a.created_ms),
                &a.status.as_str(),
                &a.approver,
                &a.comment,
                &a.decided_ms.map(big),
            ],
        ))?;
        if inserted == 0 {
            return Err(StoreError::DuplicateApproval(a.id.clone()));
        }
        Ok(())
    }

    fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        read_approval(&*self.pool.get()?, id, false)
    }

    fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: usize,
    ) -> Result<Vec<Approval>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        wait(self.pool.get()?.query(
            &format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE $1::TEXT IS NULL OR status = $1 \
                 ORDER BY created_ms DESC, id LIMIT $2"
            ),
            &[&status.map(ApprovalStatus::as_str), &limit],
        ))?
        .iter()
        .map(approval_of)
        .collect()
    }

    fn resolve_approval(
        &self,
        id: &str,
        r: &Resolution,
        record: &mut RecordDecision<'_>,
    ) -> Result<Resolved, StoreError> {
        self.in_tx(|c| {
            // The row is locked until commit: another replica's resolution waits, then finds it
            // no longer pending.
            let pending = match read_approval(c, id, true)? {
                None => return Ok(Resolved::Unknown),
                Some(a) if a.status != ApprovalStatus::Pending => {
                    return Ok(Resolved::NotPending(a))
                }
                Some(a) => a,
            };
            record(&pending).map_err(StoreError::NotRecorded)?;
            resolve_pending(c, id, r)?;
            Ok(read_approval(c, id, false)?.map_or(Resolved::Unknown, Resolved::Done))
        })
    }
}
