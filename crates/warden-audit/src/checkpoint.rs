//! Signed checkpoints in the C2SP formats: the tlog-checkpoint body (origin, tree size, base64
//! root hash), signed notes with Ed25519 signature lines, verifier key strings, and the log's
//! signing key, created once in the data dir (mode 0600) and reused.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// Each signature line begins with U+2014 (em dash) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    #[error("malformed verifier key `{0}`: expected <name>+<8 hex digits>+<base64 of 0x01 and a 32-byte Ed25519 key>")]
    BadVerifierKey(String),
    #[error("the note has no signature by key `{0}`")]
    NoSignature(String),
    #[error(
        "the signature by key `{0}` does not verify: the note was changed or signed by another key"
    )]
    BadSignature(String),
    #[error("checkpoint origin `{got}` is not this log's `{want}`")]
    WrongOrigin { got: String, want: String },
}

/// The extension line that carries the signing time, as Rekor writes it: `Timestamp: ` and
/// nanoseconds since the Unix epoch.
const TIMESTAMP_PREFIX: &str = "Timestamp: ";

/// A tree head: the log's identity, a size, the root at that size, and when it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// When the writer signed it, in milliseconds since the epoch; inside the signed text as a
    /// `Timestamp:` extension line. `None` for checkpoints signed before Warden wrote one.
    pub time_ms: Option<u64>,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`, then `Timestamp: <ns>\n` if timed.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        if let Some(ms) = self.time_ms {
            body.push_str(&format!(
                "{TIMESTAMP_PREFIX}{}\n",
                u128::from(ms) * 1_000_000
            ));
        }
        body
    }

    /// Parses a note text strictly: three non-empty lines, a decimal size without leading
    /// zeros, a base64 root of 32 bytes, and optionally one `Timestamp: <ns>` extension line.
    /// Any other extension line is refused (Warden writes none).
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(why.to_string());
        let lines = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text does not end with a newline"))?;
        let parts: Vec<&str> = lines.split('\n').collect();
        let (origin, size, root, timestamp) = match parts[..] {
            [origin, size, root] => (origin, size, root, None),
            [origin, size, root, ts] => (origin, size, root, Some(ts)),
            _ => {
                return Err(bad(
                    "expected three lines (origin, tree size, root hash) and at most a \
                     `Timestamp:` line",
                ))
            }
        };
        let time_ms = match timestamp {
            None => None,
            Some(line) => {
                let ns = line
                    .strip_prefix(TIMESTAMP_PREFIX)
                    .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse::<u128>().ok())
                    .ok_or_else(|| {
                        bad(&format!(
                            "extension line `{line}` is not `Timestamp: <nanoseconds>`"
                        ))
                    })?;
                Some(u64::try_from(ns / 1_000_000).map_err(|_| bad("timestamp out of range"))?)
            }
        };
        if origin.is_empty() {
            return Err(bad("empty origin line"));
        }
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size: u64 = match size_ok.then(|| size.parse().ok()).flatten() {
            Some(s) => s,
            None => return Err(bad(&format!("tree size `{size}` is not a decimal number"))),
        };
        let root_bytes = B64
            .decode(root)
            .map_err(|_| bad("root hash is not base64"))?;
        let root: Hash = root_bytes
            .try_into()
            .map_err(|_| bad("root hash is not 32 bytes"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            time_ms,
        })
    }
}

/// A checkpoint together with the signed note that carries it and when it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The whole signed note: body, a blank line, signature lines.
    pub note: String,
    /// When the writer signed it: the signed `Timestamp:` line, or for checkpoints signed
    /// before Warden wrote one, the time stored beside the note (unsigned).
    pub time_ms: u64,
}

/// The key hash of C2SP signed notes: the first 4 bytes of SHA-256(name ‖ 0x0A ‖ type ‖ key).
fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// The public half of a note signer: what a verifier needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_hash: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CheckpointError> {
        if !valid_key_name(name) {
            return Err(CheckpointError::BadVerifierKey(name.to_string()));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            key_hash: key_hash(name, key.as_bytes()),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Parses `<name>+<hex key hash>+<base64(0x01 ‖ public key)>`, checking the key hash.
    pub fn parse(s: &str) -> Result<Self, CheckpointError> {
        let bad = || CheckpointError::BadVerifierKey(s.to_string());
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let key = B64.decode(key).map_err(|_| bad())?;
        let [ED25519_TYPE, rest @ ..] = key.as_slice() else {
            return Err(bad());
        };
        let public: [u8; 32] = rest.try_into().map_err(|_| bad())?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad())?;
        let v = NoteVerifier::new(name, key).map_err(|_| bad())?;
        if hash.len() != 8 || hex(&v.key_hash) != hash {
            return Err(bad());
        }
        Ok(v)
    }

    /// Checks that `note` carries a valid signature by this key, and returns its text (the
    /// body). Signatures by other keys are ignored, as the format intends.
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(why.to_string());
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or_else(|| bad("the signatures do not end with a newline"))?;
        let mut found = false;
        for line in sigs.split('\n') {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
            let (name, sig) = rest
                .split_once(' ')
                .ok_or_else(|| bad("a signature line has no signature"))?;
            let sig = B64
                .decode(sig)
                .map_err(|_| bad("a signature is not base64"))?;
            if name != self.name || sig.len() < 4 || sig[..4] != self.key_hash {
                continue;
            }
            let sig = Signature::from_slice(&sig[4..])
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            self.key
                .verify(text.as_bytes(), &sig)
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            found = true;
        }
        if !found {
            return Err(CheckpointError::NoSignature(self.to_string()));
        }
        Ok(text)
    }

    /// Verifies a signed checkpoint note and parses its body; its origin must be this key's name.
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let cp = Checkpoint::parse_body(self.verify_note(note)?)?;
        if cp.origin != self.name {
            return Err(CheckpointError::WrongOrigin {
                got: cp.origin,
                want: self.name.clone(),
            });
        }
        Ok(cp)
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![ED25519_TYPE];
        key.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex(&self.key_hash),
            B64.encode(key)
        )
    }
}

/// The log's signing key and the name it signs under (the log's origin).
pub struct LogKey {
    key: SigningKey,
    verifier: NoteVerifier,
}

impl LogKey {
    /// Reads the 32-byte Ed25519 seed at `path`, or creates it (mode 0600) from the OS's
    /// random source if the file does not exist.
    pub fn load_or_create(path: &Path, name: &str) -> Result<LogKey, crate::AuditError> {
        let seed = read_or_create_secret(path)?;
        LogKey::from_seed(&seed, name)
    }

    pub fn from_seed(seed: &[u8; 32], name: &str) -> Result<LogKey, crate::AuditError> {
        let key = SigningKey::from_bytes(seed);
        let verifier = NoteVerifier::new(name, key.verifying_key())?;
        Ok(LogKey { key, verifier })
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// Signs a checkpoint: the note is the body, a blank line and one signature line.
    pub fn sign(&self, cp: &Checkpoint) -> String {
        let body = cp.body();
        let sig = self.key.sign(body.as_bytes());
        let mut blob = self.verifier.key_hash.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!(
            "{body}\n{SIG_PREFIX}{} {}\n",
            self.verifier.name,
            B64.encode(blob)
        )
    }
}

/// Reads a 32-byte secret, or creates it with mode 0600 if the file does not exist. A file that
/// others can read is refused, as ssh does: the key would no longer be this log's alone.
pub(crate) fn read_or_create_secret(path: &Path) -> Result<[u8; 32], crate::AuditError> {
    let io = |source| crate::AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::read(path) {
        Ok(bytes) => {
            check_private(path)?;
            bytes
                .try_into()
                .map_err(|b: Vec<u8>| crate::AuditError::Key {
                    path: path.to_path_buf(),
                    why: format!("it holds {} bytes, not 32", b.len()),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| crate::AuditError::Key {
                path: path.to_path_buf(),
                why: format!("the OS random source failed: {e}"),
            })?;
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(io)?;
            f.write_all(&seed).map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok(seed)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), crate::AuditError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = fs::metadata(path).map_err(|source| crate::AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(crate::AuditError::Key {
            path: path.to_path_buf(),
            why: format!(
                "it is readable by others (mode {:o}); run `chmod 600 {}`",
                meta.permissions().mode() & 0o777,
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), crate::AuditError> {
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LogKey {
        LogKey::from_seed(&[7u8; 32], "example.com/log").expect("key")
    }

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: "example.com/log".into(),
            size: 20852163,
            root: [9u8; 32],
            time_ms: None,
        }
    }

    #[test]
    fn a_signed_checkpoint_has_the_c2sp_layout_and_verifies() {
        let k = key();
        let note = k.sign(&cp());
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(lines[0], "example.com/log");
        assert_eq!(lines[1], "20852163");
        assert_eq!(lines[2], B64.encode([9u8; 32]));
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} example.com/log "));
        assert_eq!(lines[5], "");
        let sig = B64
            .decode(lines[4].rsplit(' ').next().expect("sig"))
            .expect("b64");
        assert_eq!(sig.len(), 4 + 64);
        assert_eq!(k.verifier().verify_checkpoint(&note), Ok(cp()));
    }

    #[test]
    fn the_signing_time_is_a_signed_timestamp_line() {
        let k = key();
        let timed = Checkpoint {
            time_ms: Some(1_795_641_670_624),
            ..cp()
        };
        let note = k.sign(&timed);
        assert_eq!(
            note.split('\n').nth(3),
            Some("Timestamp: 1795641670624000000")
        );
        assert_eq!(k.verifier().verify_checkpoint(&note), Ok(timed));
        let moved = note.replace("Timestamp: 1795641670624", "Timestamp: 1795641670625");
        assert_eq!(
            k.verifier().verify_checkpoint(&moved),
            Err(CheckpointError::BadSignature("example.com/log".into()))
        );
    }

    #[test]
    fn the_key_hash_follows_the_signed_note_spec() {
        let k = key();
        let mut h = Sha256::new();
        h.update(b"example.com/log\n\x01");
        h.update(k.verifier().key.as_bytes());
        let want = h.finalize();
        assert_eq!(k.verifier().key_hash, want[..4]);
    }

    #[test]
    fn an_edited_note_does_not_verify() {
        let k = key();
        let note = k.sign(&cp()).replace("20852163", "20852164");
        assert_eq!(
            k.verifier().verify_checkpoint(&note),
            Err(CheckpointError::BadSignature("example.com/log".into()))
        );
    }

    #[test]
    fn a_note_signed_by_another_key_has_no_signature_of_ours() {
        let other = LogKey::from_seed(&[8u8; 32], "example.com/log").expect("key");
        let note = other.sign(&cp());
        assert!(matches!(
            key().verifier().verify_checkpoint(&note),
            Err(CheckpointError::NoSignature(_))
        ));
    }

    #[test]
    fn the_verifier_key_string_round_trips_and_a_wrong_hash_is_refused() {
        let v = key().verifier().clone();
        let s = v.to_string();
        assert!(s.starts_with("example.com/log+"));
        assert_eq!(NoteVerifier::parse(&s), Ok(v));
        let mut parts: Vec<String> = s.split('+').map(str::to_string).collect();
        parts[1] = "00000000".into();
        assert!(NoteVerifier::parse(&parts.join("+")).is_err());
    }

    #[test]
    fn bodies_with_extra_lines_or_leading_zeros_are_malformed() {
        let root = B64.encode([1u8; 32]);
        assert!(Checkpoint::parse_body(&format!("o\n5\n{root}\n")).is_ok());
        assert!(Checkpoint::parse_body(&format!("o\n05\n{root}\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("o\n5\n{root}\nextra\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("o\n5\n{root}\nTimestamp: 12x\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("o\n5\n{root}\nTimestamp: 1\nextra\n")).is_err());
        assert!(Checkpoint::parse_body(&format!("o\n5\n{root}")).is_err());
        assert!(Checkpoint::parse_body("o\n5\nAAAA\n").is_err());
    }

    #[test]
    fn a_created_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.key");
        let a = LogKey::load_or_create(&path, "n").expect("create");
        let b = LogKey::load_or_create(&path, "n").expect("reuse");
        assert_eq!(a.verifier(), b.verifier());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(
                LogKey::load_or_create(&path, "n"),
                Err(crate::AuditError::Key { .. })
            ));
        }
    }
}
