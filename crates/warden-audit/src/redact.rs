//! What of a tool result reaches the log: by default a keyed digest (HMAC-SHA256 under a key
//! kept beside the signing key, so short values cannot be guessed back from the log by hashing
//! candidates) and the size; with full bodies on, the body with obvious secrets redacted.

use std::path::Path;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use warden_provenance::{secret_assignment, secret_key_name, secret_shapes};

use crate::checkpoint::{hex, read_or_create_secret};
use crate::event::canonical_json;
use crate::AuditError;

/// The key of result digests.
#[derive(Clone)]
pub struct DigestKey([u8; 32]);

impl DigestKey {
    pub fn load_or_create(path: &Path) -> Result<DigestKey, AuditError> {
        Ok(DigestKey(read_or_create_secret(path)?))
    }

    pub fn from_bytes(key: [u8; 32]) -> DigestKey {
        DigestKey(key)
    }

    /// `hmac-sha256:<hex>` of `bytes`.
    pub fn digest(&self, bytes: &[u8]) -> String {
        // HMAC takes keys of any length; 32 bytes cannot be refused.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(bytes);
        format!("hmac-sha256:{}", hex(&mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

/// The body of a result event: `{"digest": "hmac-sha256:…", "size": n}` over the value's
/// canonical JSON, or with `full` the value itself with secrets redacted (see
/// [`redact_secrets`]) plus the digest of the original.
pub fn result_body(value: &Value, full: bool, key: &DigestKey) -> Value {
    let bytes = canonical_json(value);
    let digest = key.digest(&bytes);
    if full {
        json!({"digest": digest, "size": bytes.len(), "value": redact_secrets(value)})
    } else {
        json!({"digest": digest, "size": bytes.len()})
    }
}

/// A copy of `value` with obvious secrets replaced by `[REDACTED <what>]`: API-key-shaped tokens
/// (`sk_live_…`, `sk-…`, `AKIA…`, `ghp_…`, `xox…-`), JWTs, bearer tokens, private key blocks,
/// the values in `password: x`-style lines, and string values of object members named like
/// secrets (`password`, `api_key`, `authorization`, …).
pub fn redact_secrets(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact_text(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact_secrets).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(_) | Value::Number(_) if secret_key_name(k) => {
                            Value::String(format!("[REDACTED {k}]"))
                        }
                        other => redact_secrets(other),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The credential shapes are provenance's (`warden_provenance::secret_shapes`): what the log
/// redacts is what decisions treat as secret.
fn redact_text(s: &str) -> String {
    let mut out = s.to_string();
    for p in secret_shapes() {
        if p.re.is_match(&out) {
            out =
                p.re.replace_all(&out, format!("[REDACTED {}]", p.what))
                    .into_owned();
        }
    }
    secret_assignment()
        .replace_all(&out, "${1}${2}[REDACTED]")
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DigestKey {
        DigestKey::from_bytes([1u8; 32])
    }

    #[test]
    fn a_result_is_stored_as_a_keyed_digest_by_default() {
        let body = result_body(&json!({"pin": "1234"}), false, &key());
        assert_eq!(body["size"], br#"{"pin":"1234"}"#.len());
        let digest = body["digest"].as_str().expect("digest");
        assert!(digest.starts_with("hmac-sha256:"));
        assert!(body.get("value").is_none());
        // Not the plain hash: without the key the digest cannot be recomputed from a guess.
        let plain = hex(&<Sha256 as sha2::Digest>::digest(br#"{"pin":"1234"}"#));
        assert!(!digest.contains(&plain));
        let other = result_body(
            &json!({"pin": "1234"}),
            false,
            &DigestKey::from_bytes([2; 32]),
        );
        assert_ne!(body["digest"], other["digest"]);
    }

    #[test]
    fn the_digest_does_not_depend_on_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":2}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"b":2,"a":1}"#).expect("json");
        assert_eq!(
            result_body(&a, false, &key()),
            result_body(&b, false, &key())
        );
    }

    #[test]
    fn full_bodies_have_obvious_secrets_redacted() {
        let v = json!({
            "text": "charge with sk_live_4eC39HqLyjWDarjtT1zdp7dc and AKIAIOSFODNN7EXAMPLE\n\
                     Authorization: Bearer abc.def-ghi_jkl\npassword: hunter2\nkeep this",
            "api_key": "xyz",
            "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
            "n": 5
        });
        let out = result_body(&v, true, &key())["value"].clone();
        let text = out["text"].as_str().expect("text");
        for secret in [
            "sk_live_4eC39",
            "AKIAIOSFODNN7EXAMPLE",
            "abc.def-ghi_jkl",
            "hunter2",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert!(text.contains("keep this"));
        assert!(text.contains("password: [REDACTED]"));
        assert_eq!(out["api_key"], "[REDACTED api_key]");
        assert_eq!(out["pem"], "[REDACTED private key]");
        assert_eq!(out["n"], 5);
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let v = json!("Meeting at 10: bring the skeleton key and a bearer of good news");
        assert_eq!(redact_secrets(&v), v);
    }
}
