//! The reading side of the log: events by index or filter, the causal closure of an event,
//! inclusion and consistency proofs against signed checkpoints, and verification. It never
//! writes, so the CLI can use it beside a running gateway.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::checkpoint::{NoteVerifier, SignedCheckpoint};
use crate::event::{decode_entry, LoggedEvent};
use crate::merkle::{self, Hash};
use crate::store::{EventFilter, LogStore, SqliteLogStore};
use crate::verify::{self, VerifyOptions, VerifyReport};
use crate::{AuditError, DB_FILE, OLD_DB_FILE, PUBLIC_KEY_FILE};

/// An inclusion proof of one event in the tree a signed checkpoint vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub index: u64,
    pub leaf_hash: Hash,
    pub path: Vec<Hash>,
    /// The checkpoint the proof leads to (its size and root).
    pub checkpoint: SignedCheckpoint,
}

/// A consistency proof between two signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old: SignedCheckpoint,
    pub new: SignedCheckpoint,
    pub path: Vec<Hash>,
}

pub struct AuditReader {
    store: Mutex<Box<dyn LogStore>>,
    verifier: NoteVerifier,
}

impl AuditReader {
    /// Opens the log in `data_dir` to read it, trusting the verifier key in `audit.pub`.
    pub fn open(data_dir: &Path) -> Result<AuditReader, AuditError> {
        // A data dir an older Warden wrote, not yet started by this one, keeps its log apart.
        let mut store = SqliteLogStore::open_existing(&data_dir.join(DB_FILE));
        let old = data_dir.join(OLD_DB_FILE);
        if old.exists() && !store.as_ref().is_ok_and(|s| s.holds_log().unwrap_or(false)) {
            store = SqliteLogStore::open_existing(&old);
        }
        AuditReader::with_key_in(data_dir, Box::new(store?))
    }

    /// Reads the log kept in `store` (a fleet's database), trusting the verifier key in
    /// `data_dir`'s `audit.pub`.
    pub fn with_key_in(
        data_dir: &Path,
        store: Box<dyn LogStore>,
    ) -> Result<AuditReader, AuditError> {
        let path = data_dir.join(PUBLIC_KEY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| AuditError::Io {
            path: path.clone(),
            source,
        })?;
        let verifier = NoteVerifier::parse(&text)?;
        Ok(AuditReader::from_store(store, verifier))
    }

    pub fn from_store(store: Box<dyn LogStore>, verifier: NoteVerifier) -> AuditReader {
        AuditReader {
            store: Mutex::new(store),
            verifier,
        }
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    fn store(&self) -> Result<MutexGuard<'_, Box<dyn LogStore>>, AuditError> {
        self.store
            .lock()
            .map_err(|_| AuditError::Write("a reader panicked while holding the store".into()))
    }

    /// The number of entries stored.
    pub fn len(&self) -> Result<u64, AuditError> {
        self.store()?.next_index()
    }

    pub fn is_empty(&self) -> Result<bool, AuditError> {
        Ok(self.len()? == 0)
    }

    /// The event at `index`, decoded from its stored bytes.
    pub fn event(&self, index: u64) -> Result<Option<LoggedEvent>, AuditError> {
        let bytes = self.store()?.entry(index)?;
        bytes.map(|b| decode(index, &b)).transpose()
    }

    /// Events matching `filter`, oldest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<LoggedEvent>, AuditError> {
        let rows = self.store()?.find(filter)?;
        rows.iter().map(|(i, b)| decode(*i, b)).collect()
    }

    /// The event at `index` and everything it follows from, walking `causes` back (to the
    /// session-opened event), oldest first. Empty if there is no such event.
    pub fn causes_closure(&self, index: u64) -> Result<Vec<LoggedEvent>, AuditError> {
        let mut seen = BTreeMap::new();
        let mut todo = BTreeSet::from([index]);
        while let Some(i) = todo.pop_last() {
            if seen.contains_key(&i) {
                continue;
            }
            let Some(e) = self.event(i)? else {
                if i == index {
                    return Ok(Vec::new());
                }
                return Err(AuditError::Corrupt {
                    index: Some(i),
                    why: "an event names it as a cause, but it is not in the log".into(),
                });
            };
            for &c in &e.event.causes {
                if c >= i {
                    return Err(AuditError::InvalidCause { index: i, cause: c });
                }
                todo.insert(c);
            }
            seen.insert(i, e);
        }
        Ok(seen.into_values().collect())
    }

    /// The latest signed checkpoint, its signature checked.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        let stored = self.store()?.latest_checkpoint()?;
        stored.map(|s| self.signed(s)).transpose()
    }

    fn signed(&self, s: crate::store::StoredCheckpoint) -> Result<SignedCheckpoint, AuditError> {
        let checkpoint = self.verifier.verify_checkpoint(&s.note)?;
        Ok(SignedCheckpoint {
            time_ms: checkpoint.time_ms.unwrap_or(s.time_ms),
            checkpoint,
            note: s.note,
        })
    }

    /// The signed checkpoint at exactly `size`.
    pub fn checkpoint_at(&self, size: u64) -> Result<SignedCheckpoint, AuditError> {
        let all = self.store()?.checkpoints()?;
        let found = all.into_iter().find(|c| c.size == size).ok_or_else(|| {
            AuditError::NotCovered(format!("no signed checkpoint has tree size {size}"))
        })?;
        self.signed(found)
    }

    /// The stored leaf hashes of the first `size` entries, which must all be there.
    fn leaves(&self, size: u64) -> Result<Vec<Hash>, AuditError> {
        let rows = self.store()?.leaf_hashes_below(size)?;
        let mut out = Vec::with_capacity(rows.len());
        for (expected, (idx, h)) in rows.into_iter().enumerate() {
            if idx != expected as u64 {
                return Err(AuditError::Corrupt {
                    index: Some(expected as u64),
                    why: "it is missing".into(),
                });
            }
            out.push(h.try_into().map_err(|_| AuditError::Corrupt {
                index: Some(idx),
                why: "its leaf hash is not 32 bytes".into(),
            })?);
        }
        if (out.len() as u64) < size {
            return Err(AuditError::Corrupt {
                index: Some(out.len() as u64),
                why: format!("it is missing, though a checkpoint covers {size} entries"),
            });
        }
        Ok(out)
    }

    /// Proves that event `index` is in the tree of the latest signed checkpoint, and checks the
    /// proof before returning it.
    pub fn inclusion_proof(&self, index: u64) -> Result<InclusionProof, AuditError> {
        let checkpoint = self
            .latest_checkpoint()?
            .filter(|c| c.checkpoint.size > index);
        let checkpoint = checkpoint.ok_or_else(|| {
            AuditError::NotCovered(format!(
                "event {index} is not covered by a signed checkpoint yet; try again after the \
                 next one (or run `warden audit checkpoint` while the gateway runs)"
            ))
        })?;
        let size = checkpoint.checkpoint.size;
        let leaves = self.leaves(size)?;
        let path = merkle::inclusion_proof(&leaves, index, size)?;
        let leaf_hash = leaves[index as usize];
        merkle::verify_inclusion(&leaf_hash, index, size, &path, &checkpoint.checkpoint.root)?;
        Ok(InclusionProof {
            index,
            leaf_hash,
            path,
            checkpoint,
        })
    }

    /// Proves that the tree of the checkpoint at `old` is a prefix of the one at `new` (both
    /// must be sizes of signed checkpoints), and checks the proof before returning it.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<ConsistencyProof, AuditError> {
        let old_cp = self.checkpoint_at(old)?;
        let new_cp = self.checkpoint_at(new)?;
        let leaves = self.leaves(new)?;
        let path = merkle::consistency_proof(&leaves, old, new)?;
        merkle::verify_consistency(
            old,
            new,
            &old_cp.checkpoint.root,
            &new_cp.checkpoint.root,
            &path,
        )?;
        Ok(ConsistencyProof {
            old: old_cp,
            new: new_cp,
            path,
        })
    }

    /// Recomputes everything; see [`crate::verify`].
    pub fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
        let verifier = options.verifier.as_ref().unwrap_or(&self.verifier);
        verify::verify(self.store()?.as_ref(), verifier, options)
    }
}

fn decode(index: u64, bytes: &[u8]) -> Result<LoggedEvent, AuditError> {
    let e = decode_entry(bytes).map_err(|e| AuditError::Corrupt {
        index: Some(index),
        why: format!("its bytes are not an event: {e}"),
    })?;
    if e.index != index {
        return Err(AuditError::Corrupt {
            index: Some(index),
            why: format!("it says it is entry {}", e.index),
        });
    }
    Ok(e)
}
