//! Verification of a stored log from scratch: every entry's leaf hash is recomputed from its
//! bytes, the tree is rebuilt, and every signed checkpoint (and optionally one from outside the
//! log) is checked against the tree at its size. The report names the first entry that does not
//! fit and says what kind of damage it shows.

use std::ops::Range;

use crate::checkpoint::NoteVerifier;
use crate::event::claimed_index;
use crate::merkle::{leaf_hash, Frontier, Hash, EMPTY_ROOT};
use crate::store::LogStore;
use crate::AuditError;

/// What else to check, and whom to trust.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// A signed checkpoint kept outside the log (saved earlier, or a witness's copy): the log
    /// must still contain the tree it describes. (where it came from, the note text)
    pub external: Option<(String, String)>,
    /// Trust this key instead of the one the log's data dir names.
    pub verifier: Option<NoteVerifier>,
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
    if entry_problem.is_none() {
        store.scan(&mut |idx, entry, stored_leaf| {
            let expected = frontier.size();
            let problem = if idx != expected {
                Some(Problem {
                    index: Some(expected),
                    kind: ProblemKind::Missing,
                    message: format!(
                        "entry {expected} is missing (the next stored entry is {idx}): it was deleted"
                    ),
                })
            } else {
                match claimed_index(entry) {
                    Some(c) if c == idx => {
                        let leaf = leaf_hash(entry);
                        if stored_leaf != leaf {
                            Some(Problem {
                                index: Some(idx),
                                kind: ProblemKind::Edited,
                                message: format!(
                                    "entry {idx} was changed after it was written: its bytes \
                                     no longer match its leaf hash"
                                ),
                            })
                        } else {
                            frontier.push(leaf);
                            check_targets(&frontier, &mut next_target, &mut last_good, &mut checked)
                        }
                    }
                    Some(c) => Some(Problem {
                        index: Some(idx),
                        kind: ProblemKind::OutOfPlace,
                        message: format!(
                            "entry {idx} holds the event written as entry {c}: entries were \
                             reordered, or renumbered after a deletion"
                        ),
                    }),
                    None => Some(Problem {
                        index: Some(idx),
                        kind: ProblemKind::Malformed,
                        message: format!(
                            "entry {idx} is not an entry Warden wrote: its bytes do not begin \
                             with its index"
                        ),
                    }),
                }
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
