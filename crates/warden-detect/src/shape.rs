//! What an argument value looks like, in terms that generalise across sessions: its *shape*
//! (kind and magnitude: an e-mail, a URL, a 3-element list, a 5-digit number, 200 characters of
//! text) and its *facets* — the hashed parts whose novelty matters (the whole value, an e-mail's
//! domain, a URL's host, a path's directory). Free text has a shape but no facets.

use serde_json::Value;

use crate::hash::{fnv, mix};

/// A part of a value whose novelty is tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Facet {
    Value,
    Domain,
    Host,
    Dir,
}

impl Facet {
    pub(crate) fn tag(self) -> u64 {
        self as u64 + 1
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Facet::Value => "value",
            Facet::Domain => "e-mail domain",
            Facet::Host => "URL host",
            Facet::Dir => "path directory",
        }
    }
}

/// Longer strings, or strings with line breaks, are free text: shape only.
const MAX_SHORT: usize = 128;
/// Elements of a list looked at; the rest only count towards its length.
const MAX_ELEMENTS: usize = 16;

mod kind {
    pub const NULL: u64 = 1;
    pub const BOOL: u64 = 2;
    pub const NUMBER: u64 = 3;
    pub const TEXT: u64 = 4;
    pub const EMAIL: u64 = 5;
    pub const URL: u64 = 6;
    pub const PATH: u64 = 7;
    pub const DATE: u64 = 8;
    pub const DIGITS: u64 = 9;
    pub const WORDS: u64 = 10;
    pub const LIST: u64 = 11;
    pub const OBJECT: u64 = 12;
}

/// The shape of a value as a hash.
pub(crate) fn shape(value: &Value) -> u64 {
    match value {
        Value::Null => kind::NULL,
        Value::Bool(b) => mix(kind::BOOL, u64::from(*b)),
        Value::Number(n) => number_shape(n.as_f64().unwrap_or(0.0), n.is_f64()),
        Value::String(s) => string_shape(s),
        Value::Array(items) => {
            let first = items.first().map_or(0, shape);
            mix(mix(kind::LIST, len_bucket(items.len())), first)
        }
        Value::Object(map) => mix(kind::OBJECT, len_bucket(map.len())),
    }
}

/// Calls `f` with every facet of the value (each element of a list, up to `MAX_ELEMENTS`).
pub(crate) fn facets(value: &Value, f: &mut impl FnMut(Facet, u64)) {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => f(Facet::Value, mix(kind::NUMBER, i as u64)),
            None => f(
                Facet::Value,
                mix(kind::NUMBER, n.as_f64().unwrap_or(0.0).to_bits()),
            ),
        },
        Value::String(s) => string_facets(s, f),
        Value::Array(items) => {
            for item in items.iter().take(MAX_ELEMENTS) {
                if !item.is_array() {
                    facets(item, f);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Object(_) => {}
    }
}

fn number_shape(x: f64, float: bool) -> u64 {
    let magnitude = if x == 0.0 {
        0
    } else {
        (x.abs().log10().floor() as i64).clamp(-4, 12) + 5
    };
    mix(
        mix(kind::NUMBER, magnitude as u64),
        u64::from(x < 0.0) * 2 + u64::from(float),
    )
}

/// 0, 1, 2, 3–4, 5–8, 9–16, …
fn len_bucket(n: usize) -> u64 {
    match n {
        0..=2 => n as u64,
        _ => 2 + u64::from(usize::BITS - (n - 1).leading_zeros()) - 1,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StrKind {
    Text,
    Email,
    Url,
    Path,
    Date,
    Digits,
    Words,
}

fn classify(s: &str) -> StrKind {
    if s.len() > MAX_SHORT || s.contains('\n') {
        return StrKind::Text;
    }
    let no_space = !s.contains(char::is_whitespace);
    // `get`, not `[..]`: the cut may fall inside a multibyte character.
    let lower_prefix = |p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    if no_space && (lower_prefix("http://") || lower_prefix("https://") || lower_prefix("www.")) {
        return StrKind::Url;
    }
    if no_space {
        if let Some((local, domain)) = s.split_once('@') {
            if !local.is_empty() && domain.contains('.') && !domain.contains('@') {
                return StrKind::Email;
            }
        }
        if s.starts_with('/') || s.starts_with("~/") || s.contains('/') || s.contains('\\') {
            return StrKind::Path;
        }
    }
    let b = s.as_bytes();
    if b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        return StrKind::Date;
    }
    if !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_digit() || b"+-.,: ".contains(c))
    {
        return StrKind::Digits;
    }
    StrKind::Words
}

fn string_shape(s: &str) -> u64 {
    let s = s.trim();
    match classify(s) {
        StrKind::Text => mix(kind::TEXT, len_bucket(s.len())),
        StrKind::Email => kind::EMAIL,
        StrKind::Url => kind::URL,
        StrKind::Path => mix(kind::PATH, len_bucket(s.matches(['/', '\\']).count())),
        StrKind::Date => mix(kind::DATE, s.len() as u64),
        StrKind::Digits => mix(kind::DIGITS, len_bucket(s.len())),
        StrKind::Words => mix(kind::WORDS, len_bucket(s.split_whitespace().count())),
    }
}

fn string_facets(s: &str, f: &mut impl FnMut(Facet, u64)) {
    let s = s.trim();
    let k = classify(s);
    if k == StrKind::Text || s.is_empty() {
        return;
    }
    f(Facet::Value, lower_hash(s));
    match k {
        StrKind::Email => {
            if let Some((_, domain)) = s.rsplit_once('@') {
                f(Facet::Domain, lower_hash(domain));
            }
        }
        StrKind::Url => f(Facet::Host, lower_hash(url_host(s))),
        StrKind::Path => {
            if let Some(cut) = s.rfind(['/', '\\']) {
                f(Facet::Dir, lower_hash(&s[..cut]));
            }
        }
        _ => {}
    }
}

fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next().unwrap_or(host);
    host.strip_prefix("www.").unwrap_or(host)
}

/// Case-insensitive hash of a short string, without allocating.
fn lower_hash(s: &str) -> u64 {
    let mut buf = [0u8; MAX_SHORT];
    let n = s.len().min(MAX_SHORT);
    for (d, c) in buf.iter_mut().zip(s.as_bytes()) {
        *d = c.to_ascii_lowercase();
    }
    fnv(&buf[..n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_multibyte_character_across_a_prefix_cut_is_words_not_a_panic() {
        for s in ["東京都", "naïveté", "ab😀cdefgh", "h\u{301}ttpwww"] {
            assert_eq!(classify(s), StrKind::Words, "{s}");
            facet_list(json!(s));
        }
        assert_eq!(classify("HTTPS://例え.jp/道"), StrKind::Url);
    }

    proptest! {
        /// Shapes and facets of any string, including combining marks, right-to-left text,
        /// emoji, NUL and private-use characters, never panic.
        #[test]
        fn any_string_has_a_shape_and_facets(s in any::<String>(), t in "\\PC{0,40}") {
            for v in [json!(s), json!(t), json!([s.clone(), t.clone()]), json!({ "k": s })] {
                shape(&v);
                facet_list(v);
            }
        }
    }

    fn facet_list(v: Value) -> Vec<(Facet, u64)> {
        let mut out = vec![];
        facets(&v, &mut |f, h| out.push((f, h)));
        out
    }

    #[test]
    fn emails_of_one_domain_share_shape_and_domain_but_not_value() {
        let a = facet_list(json!("alice@corp.example"));
        let b = facet_list(json!("Bob@CORP.example"));
        assert_eq!(
            shape(&json!("alice@corp.example")),
            shape(&json!("bob@corp.example"))
        );
        assert_eq!(a[1], b[1]);
        assert_eq!(a[1].0, Facet::Domain);
        assert_ne!(a[0], b[0]);
    }

    #[test]
    fn url_host_ignores_scheme_path_and_www() {
        assert_eq!(url_host("https://www.example.org/a?b=1"), "example.org");
        assert_eq!(url_host("http://user@host.example:8080/x"), "host.example");
    }

    #[test]
    fn free_text_has_a_shape_and_no_facets() {
        let text = json!("line one\nline two");
        assert!(facet_list(text.clone()).is_empty());
        assert_eq!(shape(&text), shape(&json!("other one\nother two")));
    }

    #[test]
    fn list_shape_depends_on_length_not_on_elements() {
        assert_eq!(
            shape(&json!(["a@x.example"])),
            shape(&json!(["b@y.example"]))
        );
        assert_ne!(
            shape(&json!(["a@x.example"])),
            shape(&json!(["a@x.example", "b@y.example", "c@z.example"]))
        );
    }

    #[test]
    fn numbers_are_shaped_by_magnitude() {
        assert_eq!(shape(&json!(120)), shape(&json!(450)));
        assert_ne!(shape(&json!(120)), shape(&json!(45_000)));
    }

    #[test]
    fn length_buckets_grow_by_powers_of_two() {
        let b: Vec<u64> = [0, 1, 2, 3, 4, 5, 8, 9, 16, 17]
            .iter()
            .map(|&n| len_bucket(n))
            .collect();
        assert_eq!(b, vec![0, 1, 2, 3, 3, 4, 4, 5, 5, 6]);
    }
}
