//! Verification of a stored log from scratch: every entry's leaf hash is recomputed from its
//! bytes and its query columns are checked against them, the tree is rebuilt, and every signed
//! checkpoint (and optionally one from outside the log) is checked against the tree at its size;
//! the entries no checkpoint covers must be ones a writer could have left unsigned. The report
//! names the first entry that does not fit and says what kind of damage it shows. The writer
//! checks the rows it resumes from and catches up with by the same rules (`check_row`,
//! `unsigned_tail_problem`).

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

use crate::checkpoint::NoteVerifier;
use crate::event::{claimed_index, EventKind};
use crate::merkle::{leaf_hash, Frontier, Hash, EMPTY_ROOT};
use crate::store::{LogStore, Row};
use crate::AuditError;

/// How long past `checkpoint_ms` an entry may stay unsigned without being suspect: the writer
/// signs at its next commit or tick, and an event's time is taken before its append waits for a
/// batch (or, from another process, for the database).
pub const SIGNING_MARGIN_MS: u64 = 60_000;

/// What else to check, and whom to trust.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// A signed checkpoint kept outside the log (saved earlier, or a witness's copy): the log
    /// must still contain the tree it describes. (where it came from, the note text)
    pub external: Option<(String, String)>,
    /// Trust this key instead of the one the log's data dir names.
    pub verifier: Option<NoteVerifier>,
    /// The writer's `[audit] checkpoint_ms` (the default when `None`): entries left unsigned
    /// for longer than this and `SIGNING_MARGIN_MS` are a problem.
    pub checkpoint_ms: Option<u64>,
}

/// The kind of damage a problem shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// An entry's bytes do not match its recorded leaf hash.
    Edited,
    /// An index has no entry, though later ones exist.
    Missing,
    /// An entry sits at another position than the index inside its signed bytes.
    OutOfPlace,
    /// An entry's bytes are not a canonical entry at all.
    Malformed,
    /// Entries hash consistently but the tree does not match a signed checkpoint: something in
    /// the range since the previous good checkpoint was rewritten, leaf hashes included.
    RootMismatch,
    /// Fewer entries than a signed checkpoint covers.
    Truncated,
    /// A checkpoint whose signature or text does not verify.
    BadCheckpoint,
    /// An entry's query columns (session, kind, time) are not what its bytes say: queries by
    /// session, kind or time would miss it or show it where it does not belong.
    Misfiled,
    /// Entries no signed checkpoint covers that no writer would have left unsigned: they are
    /// older than the writer's signing interval allows, or older than the checkpoint before
    /// them. They were added outside Warden, or (only for age) Warden stopped without signing.
    Unsigned,
}

/// One thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first entry the problem concerns (none for a checkpoint that does not verify).
    pub index: Option<u64>,
    pub kind: ProblemKind,
    /// What is wrong, for a person.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries read and found sound, from 0 on.
    pub entries: u64,
    /// The root of the tree over those entries.
    pub root: Hash,
    /// Signed checkpoints that verified and matched the tree.
    pub checkpoints_checked: usize,
    /// The largest size a matching signed checkpoint covers.
    pub signed_size: u64,
    /// What is wrong, first entry first; empty for a sound log.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem: the one to show.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }

    /// Entries no signed checkpoint covers yet: they hash correctly, but nothing signed vouches
    /// for them (the writer signs them within `checkpoint_ms`; after a crash, on restart).
    pub fn unsigned(&self) -> Range<u64> {
        self.signed_size.min(self.entries)..self.entries
    }

    /// A summary for a person.
    pub fn message(&self) -> String {
        if let Some(p) = self.first_problem() {
            let more = match self.problems.len() {
                1 => String::new(),
                n => format!(" ({} more problem{})", n - 1, if n > 2 { "s" } else { "" }),
            };
            return format!("audit log is NOT intact: {}{more}", p.message);
        }
        let unsigned = self.unsigned();
        let tail = if unsigned.is_empty() {
            String::new()
        } else {
            format!(
                "; entries {}..{} are not yet covered by a signed checkpoint",
                unsigned.start, unsigned.end
            )
        };
        format!(
            "audit log intact: {} entries, {} signed checkpoint{} match (up to size {}){tail}",
            self.entries,
            self.checkpoints_checked,
            if self.checkpoints_checked == 1 {
                ""
            } else {
                "s"
            },
            self.signed_size
        )
    }
}

struct Target {
    size: u64,
    root: Hash,
    /// When it was signed, if known.
    time_ms: Option<u64>,
    what: String,
}

/// Verifies everything in `store` against checkpoints signed by `verifier`.
pub fn verify(
    store: &dyn LogStore,
    verifier: &NoteVerifier,
    options: &VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut problems = Vec::new();
    let mut targets = Vec::new();
    for cp in store.checkpoints()? {
        match verifier.verify_checkpoint(&cp.note) {
            Ok(signed) => {
                if signed.time_ms.is_some_and(|t| t != cp.time_ms) {
                    problems.push(Problem {
                        index: None,
                        kind: ProblemKind::BadCheckpoint,
                        message: format!(
                            "the checkpoint stored at size {} has a stored time that is not its \
                             signed Timestamp; its columns were edited (the signed text is what \
                             counts)",
                            cp.size
                        ),
                    });
                }
                if signed.size != cp.size || signed.root != cp.root {
                    problems.push(Problem {
                        index: None,
                        kind: ProblemKind::BadCheckpoint,
                        message: format!(
                            "the checkpoint stored at size {} says size {} in its signed text; \
                             its columns were edited (the signed text is what counts)",
                            cp.size, signed.size
                        ),
                    });
                }
                targets.push(Target {
                    size: signed.size,
                    root: signed.root,
                    time_ms: Some(signed.time_ms.unwrap_or(cp.time_ms)),
                    what: format!("the checkpoint signed at size {}", signed.size),
                });
            }
            Err(e) => problems.push(Problem {
                index: None,
                kind: ProblemKind::BadCheckpoint,
                message: format!(
                    "the checkpoint stored at size {} does not verify: {e}",
                    cp.size
                ),
            }),
        }
    }
    if let Some((source, note)) = &options.external {
        match verifier.verify_checkpoint(note) {
            Ok(signed) => targets.push(Target {
                size: signed.size,
                root: signed.root,
                time_ms: signed.time_ms,
                what: format!("the checkpoint in {source} (size {})", signed.size),
            }),
            Err(e) => problems.push(Problem {
                index: None,
                kind: ProblemKind::BadCheckpoint,
                message: format!("the checkpoint in {source} does not verify: {e}"),
            }),
        }
    }
    targets.sort_by_key(|t| t.size);

    let mut frontier = Frontier::default();
    let mut next_target = 0;
    let mut last_good = 0u64;
    let mut checked = 0usize;
    let mut entry_problem: Option<Problem> = None;
    // A checkpoint of the empty tree is checked before any entry.
    let check_targets = |frontier: &Frontier,
                         next_target: &mut usize,
                         last_good: &mut u64,
                         checked: &mut usize|
     -> Option<Problem> {
        while let Some(t) = targets
            .get(*next_target)
            .filter(|t| t.size == frontier.size())
        {
            let root = if t.size == 0 {
                EMPTY_ROOT
            } else {
                frontier.root()
            };
            if root != t.root {
                return Some(Problem {
                    index: Some(*last_good),
                    kind: ProblemKind::RootMismatch,
                    message: format!(
                        "the first {} entries do not match {}: an entry from {} to {} was \
                         rewritten together with its leaf hash, or entries were replaced",
                        t.size,
                        t.what,
                        *last_good,
                        t.size - 1
                    ),
                });
            }
            *last_good = t.size;
            *checked += 1;
            *next_target += 1;
        }
        None
    };
    entry_problem = entry_problem.or(check_targets(
        &frontier,
        &mut next_target,
        &mut last_good,
        &mut checked,
    ));
    let mut tail = UnsignedTail::default();
    if entry_problem.is_none() {
        store.scan(0, &mut |row| {
            let problem = match check_row(frontier.size(), row) {
                Ok((leaf, time_ms)) => {
                    frontier.push(leaf);
                    let problem =
                        check_targets(&frontier, &mut next_target, &mut last_good, &mut checked);
                    if frontier.size() > last_good {
                        tail.add(row.index, time_ms);
                    } else {
                        tail = UnsignedTail::default();
                    }
                    problem
                }
                Err(p) => Some(p),
            };
            match problem {
                Some(p) => {
                    entry_problem = Some(p);
                    false
                }
                None => true,
            }
        })?;
    }
    let entries = frontier.size();
    if entry_problem.is_none() {
        if let Some(t) = targets.get(next_target) {
            entry_problem = Some(Problem {
                index: Some(entries),
                kind: ProblemKind::Truncated,
                message: format!(
                    "the log has {entries} entries but {} covers {}: entries {} to {} were \
                     removed (truncated)",
                    t.what,
                    t.size,
                    entries,
                    t.size - 1
                ),
            });
        }
    }
    if entry_problem.is_none() {
        let last_signed_ms = targets[..next_target]
            .iter()
            .filter_map(|t| t.time_ms)
            .max();
        let checkpoint_ms = options
            .checkpoint_ms
            .unwrap_or(crate::AuditConfig::default().checkpoint_ms);
        entry_problem = unsigned_tail_problem(&tail, last_signed_ms, checkpoint_ms)
            .or_else(|| stale_tail_problem(&tail, crate::log::now_ms(), checkpoint_ms));
    }
    if let Some(p) = entry_problem {
        problems.insert(0, p);
    }
    Ok(VerifyReport {
        entries,
        root: frontier.root(),
        checkpoints_checked: checked,
        signed_size: last_good,
        problems,
    })
}

/// The query columns of an entry as its bytes give them (the rest is skipped, not kept).
#[derive(Deserialize)]
struct Filed<'a> {
    #[serde(borrow)]
    session: Cow<'a, str>,
    kind: EventKind,
    time_ms: u64,
}

/// Checks one stored row that should be entry `expected`: its position, its bytes against its
/// leaf hash, and its query columns against its bytes. Returns its leaf hash and the time its
/// bytes say.
pub(crate) fn check_row(expected: u64, row: &Row<'_>) -> Result<(Hash, u64), Problem> {
    let idx = row.index;
    if idx != expected {
        return Err(Problem {
            index: Some(expected),
            kind: ProblemKind::Missing,
            message: format!(
                "entry {expected} is missing (the next stored entry is {idx}): it was deleted"
            ),
        });
    }
    match claimed_index(row.entry) {
        Some(c) if c == idx => {}
        Some(c) => {
            return Err(Problem {
                index: Some(idx),
                kind: ProblemKind::OutOfPlace,
                message: format!(
                    "entry {idx} holds the event written as entry {c}: entries were \
                     reordered, or renumbered after a deletion"
                ),
            })
        }
        None => {
            return Err(Problem {
                index: Some(idx),
                kind: ProblemKind::Malformed,
                message: format!(
                    "entry {idx} is not an entry Warden wrote: its bytes do not begin with its \
                     index"
                ),
            })
        }
    }
    let leaf = leaf_hash(row.entry);
    if row.leaf_hash != leaf {
        return Err(Problem {
            index: Some(idx),
            kind: ProblemKind::Edited,
            message: format!(
                "entry {idx} was changed after it was written: its bytes no longer match its \
                 leaf hash"
            ),
        });
    }
    let filed: Filed<'_> = serde_json::from_slice(row.entry).map_err(|e| Problem {
        index: Some(idx),
        kind: ProblemKind::Malformed,
        message: format!(
            "entry {idx} is not an entry Warden wrote: its bytes are not an event ({e})"
        ),
    })?;
    let columns = (row.session, row.kind, row.time_ms);
    let said = (
        Some(filed.session.as_ref()),
        Some(filed.kind.as_str()),
        i64::try_from(filed.time_ms).ok(),
    );
    if columns != said {
        let shown = |v: Option<&str>| v.map_or("(not text)".to_string(), |s| format!("`{s}`"));
        return Err(Problem {
            index: Some(idx),
            kind: ProblemKind::Misfiled,
            message: format!(
                "entry {idx} is filed under session {}, kind {}, time {} but its signed bytes \
                 say session `{}`, kind `{}`, time {}: its query columns were edited, so \
                 `audit tail`, `search` and `export` by session, kind or time miss it",
                shown(row.session),
                shown(row.kind),
                row.time_ms
                    .map_or("(not a number)".to_string(), |t| t.to_string()),
                filed.session,
                filed.kind.as_str(),
                filed.time_ms
            ),
        });
    }
    Ok((leaf, filed.time_ms))
}

/// The entries after the latest signed checkpoint: where they start and end, and the oldest and
/// newest time their bytes say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UnsignedTail {
    pub start: u64,
    pub end: u64,
    pub oldest_ms: u64,
    pub newest_ms: u64,
}

impl UnsignedTail {
    pub fn add(&mut self, index: u64, time_ms: u64) {
        if self.start == self.end {
            *self = UnsignedTail {
                start: index,
                end: index + 1,
                oldest_ms: time_ms,
                newest_ms: time_ms,
            };
        } else {
            self.end = index + 1;
            self.oldest_ms = self.oldest_ms.min(time_ms);
            self.newest_ms = self.newest_ms.max(time_ms);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Whether `tail` could be what a writer left unsigned when it stopped without signing (it was
/// killed, or the machine lost power): a writer signs once its oldest unsigned entry is
/// `checkpoint_ms` old, so its tail spans no more than that, and it was written after the
/// checkpoint before it was signed (`last_signed_ms`). Both allow `SIGNING_MARGIN_MS`.
pub(crate) fn unsigned_tail_problem(
    tail: &UnsignedTail,
    last_signed_ms: Option<u64>,
    checkpoint_ms: u64,
) -> Option<Problem> {
    if tail.is_empty() {
        return None;
    }
    let range = format!("entries {}..{}", tail.start, tail.end);
    if let Some(signed) = last_signed_ms {
        if tail.oldest_ms.saturating_add(SIGNING_MARGIN_MS) < signed {
            return Some(Problem {
                index: Some(tail.start),
                kind: ProblemKind::Unsigned,
                message: format!(
                    "{range} are covered by no signed checkpoint, and the oldest is dated {} s \
                     before the checkpoint before them was signed: Warden never leaves an entry \
                     that old unsigned, so they were added outside Warden",
                    (signed - tail.oldest_ms) / 1000
                ),
            });
        }
    }
    let span = tail.newest_ms - tail.oldest_ms;
    if span > checkpoint_ms.saturating_add(SIGNING_MARGIN_MS) {
        return Some(Problem {
            index: Some(tail.start),
            kind: ProblemKind::Unsigned,
            message: format!(
                "{range} are covered by no signed checkpoint, yet their times span {} s, and \
                 Warden signs within {checkpoint_ms} ms of an entry: they were added outside \
                 Warden",
                span / 1000
            ),
        });
    }
    None
}

/// Whether `tail` has been unsigned for longer than a running writer leaves entries unsigned.
fn stale_tail_problem(tail: &UnsignedTail, now_ms: u64, checkpoint_ms: u64) -> Option<Problem> {
    let age = now_ms.saturating_sub(tail.oldest_ms);
    if tail.is_empty() || age <= checkpoint_ms.saturating_add(SIGNING_MARGIN_MS) {
        return None;
    }
    Some(Problem {
        index: Some(tail.start),
        kind: ProblemKind::Unsigned,
        message: format!(
            "entries {}..{} are covered by no signed checkpoint, though the oldest was written \
             {} s ago and Warden signs within {checkpoint_ms} ms: either Warden stopped without \
             signing them (it was killed; start it again and it checks and signs them), or \
             they were added outside Warden",
            tail.start,
            tail.end,
            age / 1000
        ),
    })
}
