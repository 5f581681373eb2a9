//! The writing side: `AuditLog::append` queues the event. With no commit running, the appender
//! leads: it commits everything queued in one transaction on its own thread, assigning indexes,
//! growing the tree's frontier and signing checkpoints, until its own append is committed; then it
//! hands the lead to the first appender still queued. Appenders that arrive while a commit runs
//! wait for their answer and are committed together by the next batch (group commit). An append
//! returns only once its batch is committed. One background thread only signs the checkpoints
//! that fall due while no one appends.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::checkpoint::{
    hex, read_or_create_secret, Checkpoint, LogKey, NoteVerifier, SignedCheckpoint,
};
use crate::event::{entry_bytes, Event, EventKind, LoggedEvent};
use crate::merkle::{leaf_hash, Frontier};
use crate::reader::AuditReader;
use crate::redact::DigestKey;
use crate::store::{
    Companion, Durability, EventFilter, LogStore, SqliteLogStore, StoredCheckpoint, StoredEntry,
};
use crate::verify::{
    check_row, unsigned_tail_problem, Problem, ProblemKind, UnsignedTail, VerifyOptions,
    VerifyReport,
};
use crate::{AuditError, DB_FILE, DIGEST_KEY_FILE, KEY_FILE, OLD_DB_FILE, PUBLIC_KEY_FILE};

/// The `[audit]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// `"process"` (survives kill -9) or `"power"` (also survives power loss; fsync per batch).
    /// The gateway opens the session store with the same durability.
    pub durability: Durability,
    /// Sign a checkpoint after this many new events...
    pub checkpoint_every: u64,
    /// ...or this many milliseconds after the first unsigned event, whichever comes first.
    pub checkpoint_ms: u64,
    /// The most events committed in one transaction.
    pub max_batch: usize,
    /// The log's origin (checkpoint first line and key name). Default: `warden.audit/<first 8
    /// hex digits of SHA-256 of the public key>`, fixed at the first start.
    pub origin: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            durability: Durability::Process,
            checkpoint_every: 1000,
            checkpoint_ms: 1000,
            max_batch: 4096,
            origin: None,
        }
    }
}

/// How many times one batch catches up with another process's appends before it fails.
const MAX_CATCH_UPS: u32 = 8;

/// An append waiting for a commit to give it an index.
struct Append {
    event: Vec<u8>,
    session: String,
    kind: EventKind,
    time_ms: u64,
    latest_cause: Option<u64>,
    /// Written in the entry's transaction (see [`Companion`]).
    with: Option<Companion>,
    reply: SyncSender<Turn>,
}

/// What a queued appender is told: how its append ended, or that it now leads (commits for
/// everyone queued).
enum Turn {
    Done(Result<u64, AuditError>),
    Lead,
}

/// The appends no commit has taken yet, and whether an appender is leading (committing them).
#[derive(Default)]
struct Queue {
    appends: Vec<Append>,
    leading: bool,
}

/// What appenders share: the queue, and the writer the leader commits with.
struct Shared {
    queue: Mutex<Queue>,
    writer: Mutex<Writer>,
    /// Set when the log is dropped: the checkpoint thread stops.
    closing: AtomicBool,
}

impl Shared {
    fn writer(&self) -> Result<MutexGuard<'_, Writer>, AuditError> {
        // A committer that panicked left the writer in an unknown state: nothing more is written.
        self.writer.lock().map_err(|_| AuditError::Closed)
    }

    /// The oldest `max` queued appends.
    fn take(&self, max: usize) -> Vec<Append> {
        match self.queue.lock() {
            Ok(mut q) => {
                let n = q.appends.len().min(max);
                q.appends.drain(..n).collect()
            }
            Err(_) => Vec::new(),
        }
    }
}

/// The lead, held by one appender at a time. Given up (also when its holder unwinds), it passes
/// to the first appender still queued, or ends when none is.
struct Lead<'a>(&'a Shared);

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let Ok(mut q) = self.0.queue.lock() else {
            return;
        };
        while let Some(next) = q.appends.first() {
            // Its channel is empty (it is queued, so unanswered): this never blocks.
            if next.reply.try_send(Turn::Lead).is_ok() {
                return;
            }
            // Its appender is gone: nobody waits for it.
            q.appends.remove(0);
        }
        q.leading = false;
    }
}

/// The audit log, open for appending. Dropping it signs a last checkpoint over any unsigned
/// entries and stops the checkpoint thread.
pub struct AuditLog {
    shared: Arc<Shared>,
    ticker: Option<JoinHandle<()>>,
    reader: AuditReader,
    digest_key: DigestKey,
    checkpoint_ms: u64,
    unsigned_at_start: Range<u64>,
}

impl AuditLog {
    /// Opens the log in `data_dir` (creating the directory, database and keys on first start)
    /// and starts the writer.
    pub fn open(data_dir: &Path, config: &AuditConfig) -> Result<AuditLog, AuditError> {
        create_private_dir(data_dir).map_err(|source| AuditError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let db = data_dir.join(DB_FILE);
        let mut store = SqliteLogStore::open(&db, config.durability)?;
        let old = data_dir.join(OLD_DB_FILE);
        if old.exists() {
            store.take_in(&old).map_err(|e| match e {
                AuditError::Damaged { why, recover, .. } => AuditError::Damaged {
                    dir: Some(data_dir.to_path_buf()),
                    why,
                    recover,
                },
                other => other,
            })?;
            set_aside(&old)?;
        }
        let reader_store = SqliteLogStore::open(&db, config.durability)?;
        AuditLog::open_in(data_dir, config, Box::new(store), Box::new(reader_store))
    }

    /// Opens the log kept in `store` (written through it) and read through `reader_store` (a
    /// second connection to the same data), with the keys in `data_dir` (created with the
    /// directory on first start): a fleet's replicas each open the one log in PostgreSQL this
    /// way, each with the same keys.
    pub fn open_in(
        data_dir: &Path,
        config: &AuditConfig,
        store: Box<dyn LogStore>,
        reader_store: Box<dyn LogStore>,
    ) -> Result<AuditLog, AuditError> {
        create_private_dir(data_dir).map_err(|source| AuditError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let latest = store.latest_checkpoint()?;
        let key_path = data_dir.join(KEY_FILE);
        let key_missing = matches!(
            std::fs::metadata(&key_path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        );
        if key_missing && latest.is_some() {
            return Err(AuditError::Key {
                path: key_path,
                why: format!(
                    "it is missing, but {} holds checkpoints signed with it, and a new key would \
                     make every later checkpoint fail `warden audit verify`. Restore audit.key \
                     from a backup (mode 0600); to start a new log instead, move the data dir \
                     {} aside",
                    store.describe(),
                    data_dir.display()
                ),
            });
        }
        let seed = read_or_create_secret(&key_path)?;
        let origin = origin(data_dir, config, &seed, latest.as_ref())?;
        let key = LogKey::from_seed(&seed, &origin)?;
        write_public_key(data_dir, &key)?;
        let digest_key = DigestKey::load_or_create(&data_dir.join(DIGEST_KEY_FILE))?;
        let reader = AuditReader::from_store(reader_store, key.verifier().clone());
        AuditLog::start(store, key, reader, digest_key, config).map_err(|e| match e {
            AuditError::Damaged { why, recover, .. } => AuditError::Damaged {
                dir: Some(data_dir.to_path_buf()),
                why,
                recover,
            },
            other => other,
        })
    }

    /// Starts a log over any store: `writer_store` is owned by the writer thread, `reader` reads
    /// the same data through its own connection.
    pub fn start(
        writer_store: Box<dyn LogStore>,
        key: LogKey,
        reader: AuditReader,
        digest_key: DigestKey,
        config: &AuditConfig,
    ) -> Result<AuditLog, AuditError> {
        let (wake, woken) = mpsc::sync_channel(1);
        let writer = Writer::resume(writer_store, key, config, wake)?;
        let unsigned_at_start = writer.unsigned_at_start.clone();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            writer: Mutex::new(writer),
            closing: AtomicBool::new(false),
        });
        let ticking = shared.clone();
        let ticker = std::thread::Builder::new()
            .name("warden-audit-checkpoints".into())
            .spawn(move || sign_when_due(&ticking, &woken))
            .map_err(|source| AuditError::Io {
                path: PathBuf::from("<checkpoint thread>"),
                source,
            })?;
        Ok(AuditLog {
            shared,
            ticker: Some(ticker),
            reader,
            digest_key,
            checkpoint_ms: config.checkpoint_ms,
            unsigned_at_start,
        })
    }

    /// Records `event` and returns its index once it is durably committed. On `Err` the event
    /// is not in the log, and the caller must act as if it never happened (the gateway denies).
    pub fn append(&self, event: &Event) -> Result<u64, AuditError> {
        self.append_with(event, None)
    }

    /// `append`, with `with` written in the same transaction as the entry (the session
    /// store's row for the step, in the same database): both are durable, or neither is.
    pub fn append_with(&self, event: &Event, with: Option<Companion>) -> Result<u64, AuditError> {
        let (reply, turn) = mpsc::sync_channel(1);
        let append = Append {
            event: event.canonical_body(),
            session: event.session.clone(),
            kind: event.kind,
            time_ms: event.time_ms,
            latest_cause: event.causes.iter().copied().max(),
            with,
            reply,
        };
        let leads = {
            let mut q = self.shared.queue.lock().map_err(|_| AuditError::Closed)?;
            q.appends.push(append);
            !std::mem::replace(&mut q.leading, true)
        };
        if !leads {
            match turn.recv() {
                Ok(Turn::Done(answer)) => return answer,
                Ok(Turn::Lead) => {}
                Err(_) => return Err(AuditError::Closed),
            }
        }
        let _lead = Lead(&self.shared);
        loop {
            let taken = {
                let mut writer = self.shared.writer()?;
                let mut batch = self.shared.take(writer.max_batch);
                let taken = !batch.is_empty();
                writer.commit(&mut batch);
                if writer.due() {
                    // A failed signature is tried again at the next commit or tick.
                    let _ = writer.sign();
                }
                taken
            };
            match turn.try_recv() {
                Ok(Turn::Done(answer)) => return answer,
                // More than a batch was queued ahead of this append: commit the next one.
                Ok(Turn::Lead) | Err(TryRecvError::Empty) if taken => {}
                _ => return Err(AuditError::Closed),
            }
        }
    }

    /// Signs a checkpoint over everything appended so far (if anything is unsigned) and
    /// returns the latest checkpoint.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        let mut writer = self.shared.writer()?;
        writer
            .sign()
            .map_err(|e| AuditError::Write(e.to_string()))?;
        writer.latest()
    }

    /// The reading side (queries, proofs, verification) over the same log.
    pub fn reader(&self) -> &AuditReader {
        &self.reader
    }

    pub fn event(&self, index: u64) -> Result<Option<LoggedEvent>, AuditError> {
        self.reader.event(index)
    }

    pub fn events(&self, filter: &EventFilter) -> Result<Vec<LoggedEvent>, AuditError> {
        self.reader.events(filter)
    }

    pub fn causes_closure(&self, index: u64) -> Result<Vec<LoggedEvent>, AuditError> {
        self.reader.causes_closure(index)
    }

    /// Verifies the whole log (with this log's `checkpoint_ms` unless `options` names one).
    pub fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
        let options = VerifyOptions {
            checkpoint_ms: options.checkpoint_ms.or(Some(self.checkpoint_ms)),
            ..options.clone()
        };
        self.reader.verify(&options)
    }

    /// The entries no checkpoint covered when the log was opened: what a writer that was
    /// killed left unsigned, or what another process's writer is about to sign. They were
    /// checked (as `verify` would) and are signed soon.
    pub fn unsigned_at_start(&self) -> Range<u64> {
        self.unsigned_at_start.clone()
    }

    /// The C2SP verifier key string of the log's signing key.
    pub fn public_key(&self) -> String {
        self.reader.verifier().to_string()
    }

    /// What to store of a tool result's body: a keyed digest, or (with `full`) the body with
    /// obvious secrets redacted. See [`crate::redact::result_body`].
    pub fn result_body(&self, value: &serde_json::Value, full: bool) -> serde_json::Value {
        crate::redact::result_body(value, full, &self.digest_key)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Ok(writer) = self.shared.writer() {
            let _ = writer.wake.try_send(());
        }
        if let Some(handle) = self.ticker.take() {
            let _ = handle.join();
        }
        // Cover what is left with a checkpoint.
        if let Ok(mut writer) = self.shared.writer() {
            let _ = writer.sign();
        }
    }
}

/// The checkpoint thread: signs a checkpoint once the oldest unsigned entry is `checkpoint_ms`
/// old, when no append came to do it. Sleeps while everything is signed (the writer wakes it).
fn sign_when_due(shared: &Shared, woken: &Receiver<()>) {
    while !shared.closing.load(Ordering::SeqCst) {
        let wait = match shared.writer() {
            Ok(writer) => match writer.unsigned_since {
                // Not less than 10 ms, so a store that cannot sign is not asked in a busy loop.
                Some(since) => (since + writer.interval)
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(10)),
                // Other writers may append (and die) at any time: look every interval.
                None if writer.store.shared() => writer.interval.max(Duration::from_millis(10)),
                None => Duration::from_secs(3600),
            },
            Err(_) => return,
        };
        match woken.recv_timeout(wait) {
            Ok(()) => continue,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        match shared.writer() {
            Ok(mut writer) => {
                if writer.store.shared() {
                    // What other writers appended since this one last looked (a failure is
                    // tried again at the next tick).
                    let _ = writer.catch_up();
                }
                if writer.due() {
                    // A failed signature is tried again at the next append or tick.
                    let _ = writer.sign();
                }
            }
            Err(_) => return,
        }
    }
}

/// The origin is fixed at the first start (kept in `audit.pub`, and the first line of every
/// checkpoint); a config that names another one later is refused rather than silently starting a
/// second identity for the same log. An `audit.pub` a file-system failure damaged is rewritten:
/// the origin is then the latest checkpoint's (whose signature start-up checks).
fn origin(
    data_dir: &Path,
    config: &AuditConfig,
    seed: &[u8; 32],
    latest: Option<&StoredCheckpoint>,
) -> Result<String, AuditError> {
    let path = data_dir.join(PUBLIC_KEY_FILE);
    let recorded = match std::fs::read_to_string(&path) {
        Ok(s) => NoteVerifier::parse(&s).ok().map(|v| v.name().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(AuditError::Io { path, source }),
    };
    let signed = latest.and_then(|cp| cp.note.split('\n').next().map(str::to_string));
    match (recorded.or(signed), &config.origin) {
        (Some(have), Some(want)) if &have != want => Err(AuditError::Config(format!(
            "audit.origin is `{want}` but this log was created as `{have}` (see {}); \
             remove audit.origin or set it back",
            path.display()
        ))),
        (Some(have), _) => Ok(have),
        (None, Some(want)) => Ok(want.clone()),
        (None, None) => {
            let public = LogKey::from_seed(seed, "x")?.verifier().public_key();
            let digest = sha2::Sha256::digest(public);
            Ok(format!("warden.audit/{}", hex(&digest[..4])))
        }
    }
}

/// Writes `audit.pub` if it does not already say `key`: to a temporary file that is synced and
/// then renamed over it, so a crash or a file-system failure leaves the old file or the new one,
/// never an empty one.
fn write_public_key(data_dir: &Path, key: &LogKey) -> Result<(), AuditError> {
    let path = data_dir.join(PUBLIC_KEY_FILE);
    let text = format!("{}\n", key.verifier());
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    let partial = data_dir.join(format!("{PUBLIC_KEY_FILE}.partial"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuditError::Io { path, source }
    };
    let mut file = std::fs::File::create(&partial).map_err(io(&partial))?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io(&partial))?;
    file.sync_all().map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    // The rename is durable once the directory is.
    #[cfg(unix)]
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io(data_dir))?;
    Ok(())
}

/// Creates `dir` (and any missing parent) with mode 0700: only its owner may list the log's
/// files. A directory that exists is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A log start-up refuses: `why` it is damaged.
fn damaged(why: String) -> AuditError {
    AuditError::Damaged {
        dir: None,
        why,
        recover: REPAIR.into(),
    }
}

/// What to do about a damaged log.
const REPAIR: &str = "run `warden audit verify` for the full report, then keep the log as \
     evidence by moving the data dir aside (warden.db with its -wal and -shm files, audit.key, \
     audit.pub and audit.hmac) and start afresh";

/// A start-up refusal for `problem`, found by the same rules as `verify`.
fn damaged_at(problem: Problem) -> AuditError {
    let recover = match (problem.kind, problem.index) {
        (ProblemKind::Unsigned, Some(start)) => format!(
            "if they are not Warden's, remove them (the signed entries stay as they are): \
             `sqlite3 warden.db \"DELETE FROM entries WHERE idx >= {start}\"`; or keep them as \
             evidence by moving the data dir aside and start afresh"
        ),
        _ => REPAIR.into(),
    };
    AuditError::Damaged {
        dir: None,
        why: problem.message,
        recover,
    }
}

/// Renames the old log file (and its -wal, if SQLite left one) to `<name>.moved`, once its
/// contents are in the shared database; its -shm is only an index of the -wal, and is removed.
fn set_aside(old: &Path) -> Result<(), AuditError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuditError::Io { path, source }
    };
    let with = |suffix: &str| {
        let mut name = old.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let wal = with("-wal");
    if wal.exists() {
        std::fs::rename(&wal, with(".moved-wal")).map_err(io(&wal))?;
    }
    let shm = with("-shm");
    if shm.exists() {
        std::fs::remove_file(&shm).map_err(io(&shm))?;
    }
    std::fs::rename(old, with(".moved")).map_err(io(old))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Answers every append of a batch that was not committed with why.
fn fail(appends: &mut Vec<Append>, why: &AuditError) {
    let why = why.to_string();
    for append in appends.drain(..) {
        let _ = append
            .reply
            .send(Turn::Done(Err(AuditError::Write(why.clone()))));
    }
}

/// The writer thread's state.
struct Writer {
    store: Box<dyn LogStore>,
    key: LogKey,
    frontier: Frontier,
    signed: u64,
    /// The entries no checkpoint covered when the writer started (a stopped writer's tail).
    unsigned_at_start: Range<u64>,
    unsigned_since: Option<Instant>,
    every: u64,
    interval: Duration,
    max_batch: usize,
    /// Wakes the checkpoint thread when an entry is first left unsigned.
    wake: SyncSender<()>,
}

impl Writer {
    /// Resumes from the latest checkpoint after checking what it builds on: the checkpoint's
    /// signature and its stored compact range, that no entry is missing, and every entry after
    /// it, read from its bytes (`verify::check_row`) and one a stopped writer could have left
    /// unsigned (`verify::unsigned_tail_problem`). Signing over a damaged log would vouch for
    /// the damage, so it is refused.
    fn resume(
        store: Box<dyn LogStore>,
        key: LogKey,
        config: &AuditConfig,
        wake: SyncSender<()>,
    ) -> Result<Self, AuditError> {
        let (mut frontier, signed, signed_ms) = match store.latest_checkpoint()? {
            None => (Frontier::default(), 0, None),
            Some(cp) => {
                let note = key.verifier().verify_checkpoint(&cp.note).map_err(|e| {
                    damaged(format!(
                        "the latest checkpoint (stored at size {}) does not verify: {e}",
                        cp.size
                    ))
                })?;
                if note.size != cp.size || note.root != cp.root {
                    return Err(damaged(format!(
                        "the latest checkpoint is stored at size {} but its signed text says \
                         size {}: its columns were edited",
                        cp.size, note.size
                    )));
                }
                let frontier = Frontier::from_bytes(cp.size, &cp.frontier)
                    .filter(|f| f.root() == cp.root)
                    .ok_or_else(|| {
                        damaged(format!(
                            "the compact range stored with the latest checkpoint (size {}) does \
                             not give its signed root: it was edited",
                            cp.size
                        ))
                    })?;
                (frontier, cp.size, Some(note.time_ms.unwrap_or(cp.time_ms)))
            }
        };
        // Read together: another process may be appending while this one starts.
        let (next, count) = store.extent()?;
        if count != next {
            return Err(damaged(format!(
                "it holds {count} entries but numbers them up to {}: {} entries were deleted",
                next.saturating_sub(1),
                next.saturating_sub(count)
            )));
        }
        if next < signed {
            return Err(damaged(format!(
                "it holds {next} entries but its latest checkpoint covers {signed}: entries \
                 {next} to {} were removed",
                signed - 1
            )));
        }
        let mut tail = UnsignedTail::default();
        let mut problem = None;
        store.scan(signed, &mut |row| match check_row(frontier.size(), row) {
            Ok((leaf, time_ms)) => {
                frontier.push(leaf);
                tail.add(row.index, time_ms);
                true
            }
            Err(p) => {
                problem = Some(p);
                false
            }
        })?;
        if let Some(p) =
            problem.or_else(|| unsigned_tail_problem(&tail, signed_ms, config.checkpoint_ms))
        {
            return Err(damaged_at(p));
        }
        let unsigned = frontier.size() > signed;
        Ok(Writer {
            store,
            key,
            frontier,
            signed,
            unsigned_at_start: signed..next,
            unsigned_since: unsigned.then(Instant::now),
            every: config.checkpoint_every.max(1),
            interval: Duration::from_millis(config.checkpoint_ms),
            max_batch: config.max_batch.max(1),
            wake,
        })
    }

    /// Whether a checkpoint is due: `every` entries unsigned, or the oldest `interval` old.
    fn due(&self) -> bool {
        self.frontier.size() - self.signed >= self.every
            || self
                .unsigned_since
                .is_some_and(|since| since.elapsed() >= self.interval)
    }

    /// Notes that entries are unsigned from now (if none were), waking the checkpoint thread.
    fn mark_unsigned(&mut self) {
        if self.unsigned_since.is_none() {
            self.unsigned_since = Some(Instant::now());
            let _ = self.wake.try_send(());
        }
    }

    /// Commits `appends` in one transaction and answers them.
    fn commit(&mut self, appends: &mut Vec<Append>) {
        // Another process on the same data dir (`warden approvals approve` beside `warden mcp`)
        // may have taken the indexes this writer would hand out: the commit then fails on the
        // taken index; catch up with what it wrote and try again.
        // An append may name as its cause an entry another process wrote since this writer
        // last looked (an approval of a decision `warden mcp` made): catch up first.
        let size = self.frontier.size();
        if appends
            .iter()
            .any(|a| a.latest_cause.is_some_and(|c| c >= size))
        {
            if let Err(e) = self.catch_up() {
                fail(appends, &e);
                return;
            }
        }
        let mut attempts = 0;
        loop {
            // A store shared with writers elsewhere (a fleet's PostgreSQL) is locked for this
            // append: catch up with what they wrote, then the indexes handed out are free.
            let sequenced = self.store.begin_sequenced().and_then(|locked| {
                if locked {
                    self.catch_up()
                } else {
                    Ok(false)
                }
            });
            if let Err(e) = sequenced {
                self.store.abandon();
                fail(appends, &e);
                return;
            }
            let before = self.frontier.clone();
            let (entries, indexes) = self.assign(appends);
            if entries.is_empty() {
                self.store.abandon();
                return;
            }
            let with: Vec<Option<Companion>> = appends.iter().map(|a| a.with.clone()).collect();
            let failure = match self.store.append(&entries, &with) {
                Ok(()) => {
                    self.mark_unsigned();
                    for (append, index) in appends.drain(..).zip(indexes) {
                        let _ = append.reply.send(Turn::Done(Ok(index)));
                    }
                    return;
                }
                Err(e) => e,
            };
            // Nothing of the batch is in the log: the indexes are handed out again.
            self.frontier = before;
            attempts += 1;
            let caught_up = attempts <= MAX_CATCH_UPS && self.catch_up().unwrap_or(false);
            if !caught_up && appends.len() > 1 && appends.iter().any(|a| a.with.is_some()) {
                // One append's own write may be what failed (its step already stored): commit
                // them one at a time, so only that one fails.
                for append in std::mem::take(appends) {
                    self.commit(&mut vec![append]);
                }
                return;
            }
            if !caught_up {
                fail(appends, &failure);
                return;
            }
        }
    }

    /// Gives each append the next index and its entry bytes, growing the frontier; an append
    /// whose cause is not earlier than its index is refused and dropped.
    fn assign(&mut self, appends: &mut Vec<Append>) -> (Vec<StoredEntry>, Vec<u64>) {
        let mut entries = Vec::with_capacity(appends.len());
        let mut indexes = Vec::with_capacity(appends.len());
        let mut kept = Vec::with_capacity(appends.len());
        for append in appends.drain(..) {
            let index = self.frontier.size();
            if let Some(cause) = append.latest_cause.filter(|c| *c >= index) {
                let _ = append
                    .reply
                    .send(Turn::Done(Err(AuditError::InvalidCause { index, cause })));
                continue;
            }
            let entry = entry_bytes(index, &append.event);
            let leaf = leaf_hash(&entry);
            self.frontier.push(leaf);
            entries.push(StoredEntry {
                index,
                entry,
                leaf_hash: leaf,
                session: append.session.clone(),
                kind: append.kind,
                time_ms: append.time_ms,
            });
            indexes.push(index);
            kept.push(append);
        }
        *appends = kept;
        (entries, indexes)
    }

    /// Adds to the frontier the entries another writer stored past it, each checked against
    /// its bytes (`verify::check_row`) as at start; false if there were none.
    fn catch_up(&mut self) -> Result<bool, AuditError> {
        let start = self.frontier.size();
        if self.store.next_index()? <= start {
            return Ok(false);
        }
        let mut grown = self.frontier.clone();
        let mut problem = None;
        self.store
            .scan(start, &mut |row| match check_row(grown.size(), row) {
                Ok((leaf, _)) => {
                    grown.push(leaf);
                    true
                }
                Err(p) => {
                    problem = Some(p);
                    false
                }
            })?;
        if let Some(p) = problem {
            return Err(damaged_at(p));
        }
        self.frontier = grown;
        self.mark_unsigned();
        Ok(true)
    }

    fn sign(&mut self) -> Result<(), AuditError> {
        if self.frontier.size() == self.signed && self.signed > 0 {
            return Ok(());
        }
        let now = now_ms();
        let cp = Checkpoint {
            origin: self.key.verifier().name().to_string(),
            size: self.frontier.size(),
            root: self.frontier.root(),
            time_ms: Some(now),
        };
        let stored = StoredCheckpoint {
            size: cp.size,
            time_ms: now,
            root: cp.root,
            note: self.key.sign(&cp),
            frontier: self.frontier.to_bytes(),
        };
        self.store.put_checkpoint(&stored)?;
        self.signed = cp.size;
        self.unsigned_since = None;
        Ok(())
    }

    fn latest(&self) -> Result<SignedCheckpoint, AuditError> {
        let stored = self
            .store
            .latest_checkpoint()?
            .ok_or_else(|| AuditError::NotCovered("no checkpoint has been signed yet".into()))?;
        let checkpoint = self.key.verifier().verify_checkpoint(&stored.note)?;
        Ok(SignedCheckpoint {
            time_ms: checkpoint.time_ms.unwrap_or(stored.time_ms),
            checkpoint,
            note: stored.note,
        })
    }
}
