//! Credentials recognised by their shape, wherever they occur: the documented prefixes and
//! formats of well-known credentials (cloud and API keys, tokens, private key blocks, JWTs, bearer
//! tokens) and the values of `password: …`-style assignments. A value of this shape is secret
//! whatever the label of the content it came in (a key pasted into a ticket, a `.env` file read
//! from disk), and so is any form of it the agent encodes (see `ProvenanceIndex::provenance`).
//! The audit log redacts the same shapes.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

/// A credential shape: what it is, and where it is in a text (the whole match, or the capture
/// group `v` where the secret is only part of it).
pub struct Shape {
    pub what: &'static str,
    pub re: Regex,
}

/// The well-known credential shapes, in the order they are looked for.
pub fn shapes() -> &'static [Shape] {
    static SHAPES: LazyLock<Vec<Shape>> = LazyLock::new(|| {
        PATTERNS
            .iter()
            .map(|(what, re)| Shape {
                what,
                re: Regex::new(re).unwrap_or_else(|e| unreachable!("fixed pattern {re}: {e}")),
            })
            .collect()
    });
    &SHAPES
}

/// Which of [`shapes`] occur in a text: most texts hold none, and then no shape's own search
/// runs. Whether any does is asked first, of the set's DFA; which ones, only then (that search
/// reports every pattern, so it cannot stop early and costs several times more).
fn present(text: &str) -> Option<regex::SetMatches> {
    static SET: LazyLock<RegexSet> = LazyLock::new(|| {
        RegexSet::new(PATTERNS.iter().map(|(_, re)| re))
            .unwrap_or_else(|e| unreachable!("fixed patterns: {e}"))
    });
    SET.is_match(text).then(|| SET.matches(text))
}

/// What each credential shape is, and its pattern.
const PATTERNS: &[(&str, &str)] = &[
    (
        "private key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
    ),
    ("api key", r"\b[sr]k_(live|test)_[A-Za-z0-9]{8,}"),
    ("api key", r"\bsk-[A-Za-z0-9_-]{20,}"),
    ("aws access key", r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("github token", r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    ("slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    ("google api key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    ),
    (
        "bearer token",
        r"(?i)\bbearer\s+(?P<v>[A-Za-z0-9._~+/-]{8,}=*)",
    ),
];

/// `password: x`, `DB_PASSWORD=x`, `"client_secret": "x"`: the name of a secret (group 1),
/// how it is assigned (2), then its value (3).
pub fn assignment() -> &'static Regex {
    static R: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r#"(?im)\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret|secret[_-]?access[_-]?key))("?\s*[:=]\s*"?)([^\s"',;]+)"#,
        )
        .unwrap_or_else(|e| unreachable!("fixed pattern: {e}"))
    });
    &R
}

/// Whether an object member's name says its value is a secret (`password`, `api_key`,
/// `Authorization`, `clientSecret`, `private_key`).
pub fn secret_key_name(k: &str) -> bool {
    let k = k.to_ascii_lowercase().replace(['-', '_'], "");
    [
        "password",
        "passwd",
        "secret",
        "apikey",
        "accesstoken",
        "authtoken",
        "clientsecret",
        "privatekey",
        "authorization",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Shortest value an assignment's right-hand side must have to be a secret (`pwd=1` is not).
const MIN_ASSIGNED_CHARS: usize = 4;

/// The credentials in a text, by shape: each with what it is.
pub fn secrets_in(text: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let present = present(text);
    for (i, shape) in shapes().iter().enumerate() {
        if !present.as_ref().is_some_and(|p| p.matched(i)) {
            continue;
        }
        for caps in shape.re.captures_iter(text) {
            let m = caps.name("v").or_else(|| caps.get(0));
            if let Some(m) = m {
                out.push((shape.what, m.as_str().trim().to_owned()));
            }
        }
    }
    if text.contains([':', '=']) {
        for caps in assignment().captures_iter(text) {
            if let Some(m) = caps.get(3) {
                let v = m.as_str();
                // A plain word in a sentence ("reset your password: click the link") is no
                // value; one that ends its line, or has a digit, a symbol or a capital inside,
                // is.
                let ends_line = text[m.end()..]
                    .chars()
                    .next()
                    .is_none_or(|c| matches!(c, '\n' | '\r' | '"' | '\'' | ',' | ';' | '}'));
                let token = v.chars().skip(1).any(|c| !c.is_ascii_lowercase());
                if v.chars().count() >= MIN_ASSIGNED_CHARS
                    && (ends_line || token)
                    && !out.iter().any(|(_, s)| s == v)
                {
                    out.push(("password", v.to_owned()));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<String> {
        secrets_in(text).into_iter().map(|(_, v)| v).collect()
    }

    #[test]
    fn well_known_credentials_are_found_by_shape_and_prose_is_not() {
        assert_eq!(
            found("key AKIAIOSFODNN7EXAMPLE here"),
            ["AKIAIOSFODNN7EXAMPLE"]
        );
        assert_eq!(
            found("Authorization: Bearer abc.def-ghi_123"),
            ["abc.def-ghi_123"]
        );
        assert_eq!(found("DB_PASSWORD=s3cr3t-Pa55\nHOST=db"), ["s3cr3t-Pa55"]);
        assert_eq!(found(r#"{"api_key": "k-7781-zz"}"#), ["k-7781-zz"]);
        assert!(
            found("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----")[0]
                .starts_with("-----BEGIN RSA PRIVATE KEY")
        );
        assert!(found("Reset your password: click the link we sent.").is_empty());
        assert_eq!(found("Bank Account Password: emmabanking"), ["emmabanking"]);
        assert!(found("The meeting is at 10, bring the quarterly numbers.").is_empty());
        assert!(found("pwd=1").is_empty());
    }
}
