//! Salient-value extraction: the addresses, URLs, account numbers, numbers, paths, identifiers,
//! names and word shingles of a text or JSON value, each normalised so that equal values match.
//!
//! Both sides of provenance use these functions (content when it is indexed, arguments when they
//! are traced), so a rule only has to be deterministic, not perfect. Strong kinds (URLs, e-mail
//! addresses, IBANs, phone and account numbers) claim their span of the text, so that a value
//! written with or without separators (`DE89 3704 …` or `DE893704…`) yields the same values.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// What sort of salient value a [`Salient`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Url,
    Domain,
    Iban,
    Phone,
    Number,
    Path,
    Identifier,
    Quoted,
    Name,
    /// A whole short string (a JSON string leaf, the value of a `key: value` line).
    Text,
    /// Three consecutive words of free text.
    Shingle,
    /// One word of any text. Evidence only for an argument that is itself one word (a user
    /// name, a product, a repository): otherwise too weak, like a shingle.
    Word,
    /// A credential recognised by its shape (`crate::secrets`): secret wherever it occurs.
    Secret,
}

impl Kind {
    /// Whether a value of this kind says where something goes or whom it reaches: an address, a
    /// link, a host, an account, a phone number, a path, an identifier.
    pub fn is_target(self) -> bool {
        matches!(
            self,
            Kind::Email
                | Kind::Url
                | Kind::Domain
                | Kind::Iban
                | Kind::Phone
                | Kind::Path
                | Kind::Identifier
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Url => "url",
            Kind::Domain => "domain",
            Kind::Iban => "iban",
            Kind::Phone => "phone",
            Kind::Number => "number",
            Kind::Path => "path",
            Kind::Identifier => "identifier",
            Kind::Quoted => "quoted",
            Kind::Name => "name",
            Kind::Text => "text",
            Kind::Shingle => "shingle",
            Kind::Word => "word",
            Kind::Secret => "secret",
        }
    }
}

/// One salient value, normalised for matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Salient {
    pub kind: Kind,
    pub value: String,
}

impl Salient {
    fn new(kind: Kind, value: String) -> Self {
        Salient { kind, value }
    }
}

/// Shorter words ("a", "to", "is") say nothing about where a value came from.
const WORD_MIN_CHARS: usize = 3;
/// A number with fewer digits (a quantity, a price, a room) is found in many places by chance:
/// it is indexed wherever it occurs, but is evidence only for an argument that is that number.
const SPECIFIC_NUMBER_DIGITS: usize = 4;
/// Whole strings and `key: value` values longer than this are not values but prose.
const MAX_TEXT_CHARS: usize = 120;
/// Shortest text looked at for credentials: none is shorter.
const MIN_SECRET_TEXT: usize = 8;
/// Quoted strings outside this range (in chars) are not values.
const QUOTED_CHARS: std::ops::RangeInclusive<usize> = 2..=200;
/// Shingles past this many in one text are sampled (one in `SHINGLE_SAMPLE`, chosen by a hash of
/// the shingle), so that one huge page cannot flood a session's index. Sampling by content keeps
/// both sides consistent: a sampled-out shingle is simply not found, and unmatched shingles do
/// not count against an argument.
const SHINGLES_IN_FULL: usize = 4096;
const SHINGLE_SAMPLE: u64 = 8;

pub(crate) fn re(pattern: &str) -> Regex {
    // The patterns are constants of this module; a typo is caught by the first test that runs.
    Regex::new(pattern).unwrap_or_else(|e| panic!("invalid built-in pattern {pattern}: {e}"))
}

static URL: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)\b(?:https?|ftp|wss?)://[^\s<>"'`{}|\\^]+"#));
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)\b[a-z0-9][a-z0-9._%+\-]*@(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+[a-z]{2,}\b")
});
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"));
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\+[0-9]{7,15}\b|(?:\+[0-9]{1,3}[ .\-]?)?(?:\([0-9]{1,4}\)[ .\-]?|\b)[0-9]{1,4}(?:[ .\-][0-9]{2,5}){1,4}\b",
    )
});
static ACCOUNT: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9]{2,6}(?:[ \-][0-9]{2,6}){1,8}\b"));
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:[0-9]{4}[\-./][0-9]{1,2}[\-./][0-9]{1,2}|[0-9]{1,2}[\-./][0-9]{1,2}[\-./][0-9]{2,4})$")
});
static IPV4: LazyLock<Regex> = LazyLock::new(|| re(r"^[0-9]{1,3}(?:\.[0-9]{1,3}){3}$"));
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?\b"));
static DOMAIN: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+([a-z]{2,24})\b"));
static PATH: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"[A-Za-z]:\\[^\s"'<>|*?]*|(?:~|\.{1,2})?/[\w.\-~@+%]+(?:/[\w.\-~@+%]*)*|[\w.\-]+(?:/[\w.\-]+)+"#,
    )
});
static FILE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?i)\b[\w\-]+(?:\.[\w\-]+)*\.(?:{})\b",
        FILE_EXTENSIONS.join("|")
    ))
});
static TOKEN: LazyLock<Regex> = LazyLock::new(|| re(r"\w+(?:-\w+)*"));
static DOUBLE_QUOTED: LazyLock<Regex> = LazyLock::new(|| re(r#""([^"\n]+)"|“([^”\n]+)”"#));
// `\B'` : the quote follows a non-word character, so apostrophes (`don't`) do not open quotes.
static SINGLE_QUOTED: LazyLock<Regex> = LazyLock::new(|| re(r"\B'([^'\n]+)'\B"));
static NAME: LazyLock<Regex> = LazyLock::new(|| {
    let word = r"\p{Lu}(?:\p{Ll}|['’\-]?\p{Lu}\p{Ll})+";
    re(&format!(r"\b{word}(?: +{word}){{1,4}}\b"))
});
static NAME_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"\S+"));
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?m)^[ \t]*(?:[-*][ \t]+)?["']?(\p{L}[\p{L}\p{N} _.\-]*)["']?[ \t]*:[ \t]+(.+?)[ \t]*\r?$"#,
    )
});
/// The words of a text with their byte offsets: each longest run of `\w` characters, as
/// `\w+` finds them, without running a regex (every argument and result is scanned).
fn word_spans(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = chars.find(|(_, c)| regex_syntax::is_word_character(*c))?;
        let mut end = text.len();
        while let Some(&(at, c)) = chars.peek() {
            if !regex_syntax::is_word_character(c) {
                end = at;
                break;
            }
            chars.next();
        }
        Some((start, text.get(start..end).unwrap_or_default()))
    })
}

/// Extensions that make `name.ext` a file name rather than a word followed by a full stop.
const FILE_EXTENSIONS: &[&str] = &[
    "txt", "md", "pdf", "docx", "doc", "xlsx", "xls", "csv", "tsv", "json", "jsonl", "yaml", "yml",
    "toml", "xml", "html", "htm", "css", "js", "mjs", "tsx", "ts", "jsx", "py", "rs", "go", "java",
    "cpp", "hpp", "c", "h", "cc", "rb", "php", "sh", "bash", "zsh", "ps1", "bat", "exe", "dll",
    "so", "dylib", "sql", "sqlite", "db", "log", "ini", "cfg", "conf", "env", "pem", "key", "crt",
    "cer", "p12", "pfx", "zip", "tar", "gz", "tgz", "bz2", "xz", "7z", "rar", "png", "jpg", "jpeg",
    "gif", "svg", "webp", "bmp", "ico", "mp3", "mp4", "wav", "mov", "pptx", "ppt", "odt", "ods",
    "rtf", "eml", "msg", "ics", "vcf", "bak", "tmp", "lock", "ipynb", "parquet", "pkl", "tfvars",
    "tf", "pl", "pm", "swift", "kt", "scala", "lua", "jar", "apk", "dmg", "iso", "img", "bin",
    "dat",
];

/// Top-level domains beyond the two-letter country codes that make `a.b` a domain.
const GENERIC_TLDS: &[&str] = &[
    "com",
    "net",
    "org",
    "edu",
    "gov",
    "mil",
    "int",
    "info",
    "biz",
    "app",
    "dev",
    "xyz",
    "online",
    "site",
    "shop",
    "store",
    "tech",
    "cloud",
    "email",
    "name",
    "pro",
    "mobi",
    "travel",
    "jobs",
    "news",
    "blog",
    "page",
    "live",
    "today",
    "world",
    "company",
    "bank",
    "finance",
    "money",
    "one",
    "top",
    "club",
    "art",
    "design",
    "media",
    "agency",
    "network",
    "systems",
    "solutions",
    "digital",
    "global",
    "group",
    "capital",
    "ltd",
    "inc",
    "llc",
    "local",
    "internal",
    "corp",
    "lan",
    "intranet",
    "test",
    "example",
    "arpa",
    "localhost",
];

/// Country codes that are more often file extensions (`main.rs`, `setup.py`) than domains.
const NOT_TLDS: &[&str] = &[
    "md", "rs", "py", "sh", "cc", "ml", "pm", "ps", "mk", "so", "tf", "pl",
];

/// Characters stripped from the end of any value: sentence punctuation and closing brackets.
const TRAILING: &[char] = &[
    '.', ',', ';', ':', '!', '?', ')', ']', '>', '\'', '"', '”', '’',
];
/// Characters stripped from the start of any value: opening quotes and brackets.
const LEADING: &[char] = &['\'', '"', '“', '‘', '(', '[', '<'];

/// The salient values of free text, appended to `out` (each distinct value once per call).
pub fn extract(text: &str, out: &mut Vec<Salient>) {
    let canon = crate::canonical(text);
    let text: &str = &canon;
    let start = out.len();
    let mut claimed = Claims::default();
    // Each pattern needs some character to match at all; checking for it first skips most
    // regex scans on short arguments without changing what is found.
    let has = |c: char| text.contains(c);
    let digits = text.bytes().any(|b| b.is_ascii_digit());
    if text.contains("://") {
        urls(text, out, &mut claimed);
    }
    if has('@') {
        emails(text, out, &mut claimed);
    }
    if digits {
        ibans(text, out, &mut claimed);
        phones(text, out, &mut claimed);
        accounts(text, out, &mut claimed);
        numbers(text, out, &claimed);
    }
    if has('.') {
        domains(text, out, &claimed);
    }
    if has('/') || has('\\') || has('.') {
        paths(text, out, &claimed);
    }
    if digits || has('-') || has('_') {
        identifiers(text, out, &claimed);
    }
    if has('"') || has('\'') || has('“') {
        quoted(text, out);
    }
    if text.chars().any(char::is_uppercase) {
        names(text, out);
    }
    if has(':') {
        key_values(text, out);
    }
    if text.len() >= MIN_SECRET_TEXT {
        for (_, v) in crate::secrets::secrets_in(text) {
            out.push(Salient::new(Kind::Secret, v));
        }
    }
    shingles(text, out);
    words(text, out, &claimed);
    dedupe_from(out, start);
}

/// The salient values of a JSON value: every string leaf as text (and, when short, as a whole
/// [`Kind::Text`]), every number. Object keys are structure, not values.
pub fn extract_json(value: &Value, out: &mut Vec<Salient>) {
    let start = out.len();
    // An explicit stack: a JSON value built in memory may be nested deeper than the call stack.
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) => {
                extract(s, out);
                whole_text(s, out);
            }
            Value::Number(n) => {
                if let Some(number) = json_number(n) {
                    out.push(Salient::new(Kind::Number, number));
                }
            }
            Value::Array(items) => stack.extend(items.iter().rev()),
            Value::Object(map) => {
                // A member named like a secret (`password`, `api_key`) holds one, whatever its
                // shape.
                for (k, v) in map {
                    if let Some(s) = v.as_str().filter(|s| s.trim().chars().count() >= 4) {
                        if crate::secrets::secret_key_name(k) {
                            out.push(Salient::new(Kind::Secret, s.trim().to_owned()));
                        }
                    }
                }
                let values: Vec<&Value> = map.values().collect();
                stack.extend(values.into_iter().rev());
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
    dedupe_from(out, start);
}

/// A whole short string as one [`Kind::Text`] value.
pub(crate) fn whole_text(s: &str, out: &mut Vec<Salient>) {
    let text = clean(&crate::canonical(s));
    if !text.is_empty() && text.chars().count() <= MAX_TEXT_CHARS {
        out.push(Salient::new(Kind::Text, text));
    }
}

/// A JSON number as the extractor writes numbers (no sign, no trailing zeros).
pub(crate) fn json_number(n: &serde_json::Number) -> Option<String> {
    let text = if let Some(i) = n.as_i64() {
        i.unsigned_abs().to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        // `Display` for f64 writes no trailing zeros (1250.0 → "1250").
        let f = n.as_f64()?;
        let text = f.abs().to_string();
        // Exponent forms (1e-7) are not amounts anyone copies.
        if text.contains(['e', 'E', 'i', 'N']) {
            return None;
        }
        text
    };
    Some(text)
}

/// Whether a value is a number too short to be specific ([`SPECIFIC_NUMBER_DIGITS`]): evidence
/// only for an argument leaf that is that number.
pub(crate) fn is_short_number(s: &Salient) -> bool {
    s.kind == Kind::Number && count_digits(&s.value) < SPECIFIC_NUMBER_DIGITS
}

/// Byte spans of the text taken by a strong kind; weaker kinds skip matches that overlap one.
/// Kept disjoint (overlapping claims merge), so one lookup answers `overlaps`.
#[derive(Default)]
struct Claims {
    /// start → end of each span.
    spans: BTreeMap<usize, usize>,
}

impl Claims {
    fn claim(&mut self, mut start: usize, mut end: usize) {
        let touching: Vec<(usize, usize)> = self
            .spans
            .range(..end)
            .rev()
            .take_while(|&(_, &e)| e > start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.spans.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.spans.insert(start, end);
    }

    fn overlaps(&self, start: usize, end: usize) -> bool {
        self.spans
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
    }
}

fn urls(text: &str, out: &mut Vec<Salient>, claimed: &mut Claims) {
    for m in URL.find_iter(text) {
        let Some(url) = normalize_url(m.as_str()) else {
            continue;
        };
        if let Some(host) = url_host(&url) {
            out.push(Salient::new(Kind::Url, url_key(&url)));
            if !host.is_empty() {
                out.push(Salient::new(Kind::Domain, host));
            }
        }
        claimed.claim(m.start(), m.end());
    }
}

/// Lowercases scheme and host, keeps the rest, drops trailing punctuation and slashes.
fn normalize_url(raw: &str) -> Option<String> {
    let raw = raw.trim_end_matches(TRAILING).trim_end_matches('/');
    let (scheme, rest) = raw.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.is_empty() {
        return None;
    }
    Some(format!(
        "{}://{}{}",
        scheme.to_lowercase(),
        authority.to_lowercase(),
        tail
    ))
}

/// The host of a normalised URL, without user info, port or a leading `www.`.
fn url_host(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        // An IPv6 literal: the port follows the closing bracket.
        &host[..host.find(']').map_or(host.len(), |i| i + 1)]
    } else {
        host.split(':').next().unwrap_or(host)
    };
    Some(strip_www(host).to_owned())
}

/// A URL as it is matched: no scheme, no `www.`, no trailing slash, so that `example.org/x`
/// read in a page matches `https://www.example.org/x/` fetched by the agent.
fn url_key(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    strip_www(rest).trim_end_matches('/').to_owned()
}

fn strip_www(host: &str) -> &str {
    host.strip_prefix("www.").unwrap_or(host)
}

fn emails(text: &str, out: &mut Vec<Salient>, claimed: &mut Claims) {
    for m in EMAIL.find_iter(text) {
        let email = clean(m.as_str());
        if let Some((_, domain)) = email.split_once('@') {
            let domain = strip_www(domain).to_owned();
            out.push(Salient::new(Kind::Email, email));
            out.push(Salient::new(Kind::Domain, domain));
            claimed.claim(m.start(), m.end());
        }
    }
}

fn ibans(text: &str, out: &mut Vec<Salient>, claimed: &mut Claims) {
    for m in IBAN.find_iter(text) {
        let iban: String = m.as_str().chars().filter(|c| !c.is_whitespace()).collect();
        if (15..=34).contains(&iban.len()) && iban.bytes().skip(4).any(|b| b.is_ascii_digit()) {
            out.push(Salient::new(Kind::Iban, iban.to_uppercase()));
            claimed.claim(m.start(), m.end());
        }
    }
}

fn phones(text: &str, out: &mut Vec<Salient>, claimed: &mut Claims) {
    for m in PHONE.find_iter(text) {
        let raw = m.as_str();
        if claimed.overlaps(m.start(), m.end())
            || !stands_alone(text, m.start(), m.end())
            || DATE.is_match(raw)
            || IPV4.is_match(raw)
            || is_decimal(raw)
        {
            continue;
        }
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        if !(7..=15).contains(&digits.len()) {
            continue;
        }
        let phone = if raw.starts_with('+') {
            format!("+{digits}")
        } else {
            digits.clone()
        };
        out.push(Salient::new(Kind::Phone, phone));
        // The digits alone too, so that a number written without its punctuation still matches.
        out.push(Salient::new(Kind::Number, digits));
        claimed.claim(m.start(), m.end());
    }
}

/// Whether `text[start..end]` is a whole token, not the tail or head of one (`INV-2024-001`).
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let joins = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    text[..start].chars().next_back().is_none_or(|c| !joins(c))
        && text[end..].chars().next().is_none_or(|c| !joins(c))
}

/// `1234.5678`: one full stop and nothing else between the digits is a decimal, not a phone.
fn is_decimal(raw: &str) -> bool {
    let separators: Vec<char> = raw.chars().filter(|c| !c.is_ascii_digit()).collect();
    separators == ['.']
}

/// Digit groups separated by spaces or hyphens (card and account numbers): their digits joined.
fn accounts(text: &str, out: &mut Vec<Salient>, claimed: &mut Claims) {
    for m in ACCOUNT.find_iter(text) {
        let raw = m.as_str();
        if claimed.overlaps(m.start(), m.end())
            || !stands_alone(text, m.start(), m.end())
            || DATE.is_match(raw)
        {
            continue;
        }
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        if (8..=34).contains(&digits.len()) {
            out.push(Salient::new(Kind::Number, digits));
            claimed.claim(m.start(), m.end());
        }
    }
}

fn numbers(text: &str, out: &mut Vec<Salient>, claimed: &Claims) {
    for m in NUMBER.find_iter(text) {
        if claimed.overlaps(m.start(), m.end()) {
            continue;
        }
        out.push(Salient::new(Kind::Number, normalize_number(m.as_str())));
    }
}

/// Drops thousand separators and a fraction's trailing zeros (`1,250.50` → `1250.5`,
/// `1,250.00` → `1250`), so that text and JSON numbers agree.
fn normalize_number(raw: &str) -> String {
    let plain: String = raw.chars().filter(|&c| c != ',').collect();
    match plain.split_once('.') {
        Some((int, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                int.to_owned()
            } else {
                format!("{int}.{frac}")
            }
        }
        None => plain,
    }
}

fn count_digits(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

/// Domains, and a domain written without a scheme (`example.org/x`) also as the URL it names.
fn domains(text: &str, out: &mut Vec<Salient>, claimed: &Claims) {
    for caps in DOMAIN.captures_iter(text) {
        let (Some(whole), Some(tld)) = (caps.get(0), caps.get(1)) else {
            continue;
        };
        if is_tld(&tld.as_str().to_lowercase()) {
            let domain = whole.as_str().to_lowercase();
            let host = strip_www(&domain).to_owned();
            let after_at = text[..whole.start()].ends_with('@');
            if !claimed.overlaps(whole.start(), whole.end()) && !after_at {
                let path = text[whole.end()..]
                    .split(|c: char| c.is_whitespace() || "<>\"'`{}|\\^".contains(c))
                    .next()
                    .unwrap_or("");
                let path = path.trim_end_matches(TRAILING);
                let url = if path.starts_with(['/', '?', '#']) {
                    format!("{host}{path}")
                } else {
                    host.clone()
                };
                out.push(Salient::new(
                    Kind::Url,
                    url.trim_end_matches('/').to_owned(),
                ));
            }
            out.push(Salient::new(Kind::Domain, host));
        }
    }
}

fn is_tld(tld: &str) -> bool {
    if tld.len() == 2 {
        !NOT_TLDS.contains(&tld)
    } else {
        GENERIC_TLDS.contains(&tld)
    }
}

fn paths(text: &str, out: &mut Vec<Salient>, claimed: &Claims) {
    // A file name inside a full path is not a value of its own.
    let mut full_paths = Claims::default();
    for m in PATH.find_iter(text) {
        if claimed.overlaps(m.start(), m.end()) || !path_boundary_before(text, m.start()) {
            continue;
        }
        let raw = m.as_str();
        if is_path(raw) {
            push_path(raw, out);
            full_paths.claim(m.start(), m.end());
        }
    }
    for m in FILE.find_iter(text) {
        if !claimed.overlaps(m.start(), m.end()) && !full_paths.overlaps(m.start(), m.end()) {
            push_path(m.as_str(), out);
        }
    }
}

/// A path starts a token: not in the middle of a word or of `a:b` (as in `user:/x`... or URLs).
fn path_boundary_before(text: &str, start: usize) -> bool {
    text[..start]
        .chars()
        .next_back()
        .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '/' || c == '\\'))
}

/// Rooted paths need a letter; relative ones (`a/b`) need a file extension or two slashes, so
/// that `and/or`, `1/2` and `24/7` are not paths.
fn is_path(raw: &str) -> bool {
    let raw = raw.trim_end_matches(TRAILING);
    if !raw.chars().any(char::is_alphabetic) {
        return false;
    }
    if raw.contains(":\\") || raw.starts_with(['/', '~', '.']) {
        return raw.len() >= 2;
    }
    let last = raw.rsplit('/').next().unwrap_or(raw);
    let has_extension = last
        .rsplit_once('.')
        .is_some_and(|(_, ext)| FILE_EXTENSIONS.contains(&ext.to_lowercase().as_str()));
    has_extension || raw.matches('/').count() >= 2
}

fn push_path(raw: &str, out: &mut Vec<Salient>) {
    let path = clean(raw);
    let path = if path.len() > 1 {
        path.trim_end_matches(['/', '\\']).to_owned()
    } else {
        path
    };
    if !path.is_empty() {
        out.push(Salient::new(Kind::Path, path));
    }
}

/// Tokens of 4+ chars with a letter and either a digit or an inner `-`/`_`: `INV-2024-001`.
fn identifiers(text: &str, out: &mut Vec<Salient>, claimed: &Claims) {
    for m in TOKEN.find_iter(text) {
        let token = m.as_str();
        if token.chars().count() < 4 || claimed.overlaps(m.start(), m.end()) {
            continue;
        }
        let inner = token.trim_matches('_');
        let has_letter = token.chars().any(char::is_alphabetic);
        let has_digit = token.chars().any(|c| c.is_ascii_digit());
        if has_letter && (has_digit || inner.contains(['-', '_'])) {
            out.push(Salient::new(Kind::Identifier, token.to_lowercase()));
        }
    }
}

/// Quoted strings; a short one is also a whole [`Kind::Text`], as the same string would be as a
/// JSON leaf (tool results are often JSON sent as text). A quoted key (`"name":`) is skipped.
fn quoted(text: &str, out: &mut Vec<Salient>) {
    let double = DOUBLE_QUOTED.captures_iter(text);
    let single = SINGLE_QUOTED.captures_iter(text);
    for caps in double.chain(single) {
        let (Some(whole), Some(inner)) = (caps.get(0), caps.get(1).or_else(|| caps.get(2))) else {
            continue;
        };
        let is_key = text[whole.end()..].trim_start().starts_with(':');
        if is_key || !QUOTED_CHARS.contains(&inner.as_str().chars().count()) {
            continue;
        }
        let value = clean(inner.as_str());
        if !value.is_empty() {
            out.push(Salient::new(Kind::Quoted, value));
            whole_text(inner.as_str(), out);
        }
    }
}

/// Runs of 2–5 capitalised words, and every shorter run inside them, so that "Le Marais
/// Boutique" is found in "Visit The Le Marais Boutique".
fn names(text: &str, out: &mut Vec<Salient>) {
    for m in NAME.find_iter(text) {
        let words: Vec<&str> = NAME_WORD
            .find_iter(m.as_str())
            .map(|w| w.as_str())
            .collect();
        for len in (2..=words.len()).rev() {
            for run in words.windows(len) {
                out.push(Salient::new(Kind::Name, run.join(" ").to_lowercase()));
            }
        }
    }
}

/// `Label: value` lines (YAML, headers, tool output) give their value as one [`Kind::Text`].
fn key_values(text: &str, out: &mut Vec<Salient>) {
    for caps in KEY_VALUE.captures_iter(text) {
        let (Some(key), Some(value)) = (caps.get(1), caps.get(2)) else {
            continue;
        };
        if key.as_str().chars().count() <= 40 {
            whole_text(value.as_str(), out);
        }
    }
}

fn shingles(text: &str, out: &mut Vec<Salient>) {
    let lower = text.to_lowercase();
    let words: Vec<&str> = word_spans(&lower).map(|(_, w)| w).collect();
    for (i, w) in words.windows(3).enumerate() {
        let shingle = w.join(" ");
        if i < SHINGLES_IN_FULL || fingerprint(&shingle).is_multiple_of(SHINGLE_SAMPLE) {
            out.push(Salient::new(Kind::Shingle, shingle));
        }
    }
}

/// Every word of the text, lowercased: a single word anywhere is evidence for an argument that
/// is that one word.
fn words(text: &str, out: &mut Vec<Salient>, claimed: &Claims) {
    for (start, word) in word_spans(text) {
        // Inside an address or account number, and numbers, are values of their own kinds.
        let strong =
            claimed.overlaps(start, start + word.len()) || word.bytes().all(|b| b.is_ascii_digit());
        if !strong && word.chars().count() >= WORD_MIN_CHARS {
            out.push(Salient::new(Kind::Word, word.to_lowercase()));
        }
    }
}

/// The one word an argument's text is, if it is one word (surrounding punctuation aside).
pub(crate) fn single_word(text: &str) -> Option<String> {
    let canon = crate::canonical(text);
    let mut found = word_spans(&canon);
    let (_, word) = found.next()?;
    let rest_is_punctuation = found.next().is_none();
    (rest_is_punctuation && word.chars().count() >= WORD_MIN_CHARS).then(|| word.to_lowercase())
}

fn fingerprint(s: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    s.hash(&mut hasher);
    hasher.finish()
}

/// The normal form of any value: surrounding quotes, brackets and sentence punctuation and a
/// leading `mailto:` removed, whitespace collapsed, lowercased.
pub(crate) fn clean(raw: &str) -> String {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = collapsed.to_lowercase();
    let trimmed = lower.trim_start_matches(LEADING);
    let trimmed = trimmed.strip_prefix("mailto:").unwrap_or(trimmed);
    trimmed.trim_end_matches(TRAILING).trim().to_owned()
}

/// Keeps the first of each (kind, value) among `out[start..]`, in order.
fn dedupe_from(out: &mut Vec<Salient>, start: usize) {
    // Arguments give a handful of values: comparing them beats hashing and cloning each.
    if out.len() - start <= 32 {
        let mut kept = start;
        for i in start..out.len() {
            if !out[start..kept].contains(&out[i]) {
                out.swap(kept, i);
                kept += 1;
            }
        }
        out.truncate(kept);
        return;
    }
    // Which to keep is found over borrowed values, so none is cloned.
    let keep: Vec<bool> = {
        let mut seen: HashSet<&Salient> = HashSet::with_capacity(out.len() - start);
        out[start..].iter().map(|s| seen.insert(s)).collect()
    };
    let mut i = 0;
    out.retain(|_| {
        let kept = i < start || keep[i - start];
        i += 1;
        kept
    });
}

#[cfg(test)]
mod word_scan {
    use proptest::prelude::*;

    proptest! {
        /// The scan finds exactly what `\w+` finds, on any text.
        #[test]
        fn word_spans_are_what_the_word_regex_finds(text in "\\PC{0,40}|[a-z_0-9 .,\u{301}\u{200d}é²ﬁ]{0,40}") {
            let regex = regex::Regex::new(r"\w+").expect("compiles");
            let want: Vec<(usize, &str)> = regex.find_iter(&text).map(|m| (m.start(), m.as_str())).collect();
            let got: Vec<(usize, &str)> = super::word_spans(&text).collect();
            prop_assert_eq!(got, want);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The salient values but single words (which every text has).
    fn all(text: &str) -> Vec<Salient> {
        let mut out = Vec::new();
        extract(text, &mut out);
        out.retain(|s| s.kind != Kind::Word);
        out
    }

    fn of_kind(text: &str, kind: Kind) -> Vec<String> {
        all(text)
            .into_iter()
            .filter(|s| s.kind == kind)
            .map(|s| s.value)
            .collect()
    }

    fn json(value: Value) -> Vec<Salient> {
        let mut out = Vec::new();
        extract_json(&value, &mut out);
        out
    }

    fn has(out: &[Salient], kind: Kind, value: &str) -> bool {
        out.iter().any(|s| s.kind == kind && s.value == value)
    }

    #[test]
    fn email_is_lowercased_and_gives_its_domain() {
        let out = all("Send to  Bob@Example.COM.");
        assert_eq!(
            of_kind("Send to  Bob@Example.COM.", Kind::Email),
            ["bob@example.com"]
        );
        assert!(has(&out, Kind::Domain, "example.com"));
    }

    #[test]
    fn mailto_prefix_is_dropped() {
        assert_eq!(
            of_kind("<mailto:ops@corp.example>", Kind::Email),
            ["ops@corp.example"]
        );
    }

    #[test]
    fn url_loses_scheme_www_and_trailing_slash_and_lowercases_host_only() {
        assert_eq!(
            of_kind("see HTTPS://Example.com/", Kind::Url),
            ["example.com"]
        );
        assert_eq!(
            of_kind("at https://WWW.Shop.io/Cart/ABC).", Kind::Url),
            ["shop.io/Cart/ABC"]
        );
    }

    #[test]
    fn a_url_written_without_scheme_matches_the_url_fetched() {
        assert_eq!(
            of_kind("details at shop.example.org/deals/42.", Kind::Url),
            of_kind("https://www.shop.example.org/deals/42/", Kind::Url),
        );
        assert_eq!(
            of_kind("mail bob@corp.example", Kind::Url),
            Vec::<String>::new()
        );
    }

    #[test]
    fn disguised_values_match_their_plain_form() {
        for disguised in [
            "pay to ev\u{200b}e@mail.example now",
            "pay to ｅｖｅ＠ｍａｉｌ．ｅｘａｍｐｌｅ now",
            "pay to eve%40mail.example now",
            "pay to \u{435}ve@mail.example now",
        ] {
            assert_eq!(
                of_kind(disguised, Kind::Email),
                ["eve@mail.example"],
                "{disguised}"
            );
        }
    }

    #[test]
    fn every_word_is_a_value_but_inside_strong_kinds() {
        let mut out = Vec::new();
        extract("Add Priya to #launch, see bob@corp.example", &mut out);
        let words: Vec<&str> = out
            .iter()
            .filter(|s| s.kind == Kind::Word)
            .map(|s| s.value.as_str())
            .collect();
        assert_eq!(words, ["add", "priya", "launch", "see"]);
        assert_eq!(single_word("  @priya! "), Some("priya".into()));
        assert_eq!(single_word("Priya Patel"), None);
    }

    #[test]
    fn url_gives_its_domain_without_www_or_port() {
        let out = all("https://user@www.Evil.example:8443/x?y=1");
        assert!(has(&out, Kind::Domain, "evil.example"));
    }

    #[test]
    fn bare_domain_is_extracted_without_www() {
        assert_eq!(
            of_kind("go to www.Example.org today", Kind::Domain),
            ["example.org"]
        );
    }

    #[test]
    fn file_name_is_a_path_not_a_domain() {
        let out = all("edit main.rs");
        assert!(has(&out, Kind::Path, "main.rs"));
        assert!(!out.iter().any(|s| s.kind == Kind::Domain));
    }

    #[test]
    fn iban_with_spaces_is_compacted_and_uppercased() {
        assert_eq!(
            of_kind("IBAN: DE89 3704 0044 0532 0130 00", Kind::Iban),
            ["DE89370400440532013000"]
        );
    }

    #[test]
    fn iban_claims_its_span_so_spaced_and_compact_forms_agree() {
        let spaced = all("DE89 3704 0044 0532 0130 00");
        let compact = all("DE89370400440532013000");
        let strong = |v: &[Salient]| -> Vec<Salient> {
            v.iter()
                .filter(|s| s.kind != Kind::Shingle && s.kind != Kind::Text)
                .cloned()
                .collect()
        };
        assert_eq!(strong(&spaced), strong(&compact));
    }

    #[test]
    fn phone_keeps_leading_plus_and_digits_only() {
        assert_eq!(
            of_kind("call +1 (555) 123-4567 now", Kind::Phone),
            ["+15551234567"]
        );
    }

    #[test]
    fn date_is_not_a_phone() {
        assert!(of_kind("due 2024-01-15", Kind::Phone).is_empty());
    }

    #[test]
    fn card_number_groups_are_joined() {
        assert_eq!(
            of_kind("card 4111 1111 1111 1111", Kind::Number),
            ["4111111111111111"]
        );
    }

    #[test]
    fn number_loses_thousand_separators() {
        assert_eq!(of_kind("total 1,250 EUR", Kind::Number), ["1250"]);
    }

    #[test]
    fn decimal_keeps_point_but_not_trailing_zeros() {
        assert_eq!(
            of_kind("pay 1,250.50 or 2,000.00", Kind::Number),
            ["1250.5", "2000"]
        );
    }

    #[test]
    fn short_number_is_extracted_and_marked_short() {
        let out = all("room 123, floor 4, total 1250");
        let short: Vec<&str> = out
            .iter()
            .filter(|s| is_short_number(s))
            .map(|s| s.value.as_str())
            .collect();
        assert_eq!(short, ["123", "4"]);
        assert!(has(&out, Kind::Number, "1250") && !is_short_number(&out[2]));
    }

    #[test]
    fn absolute_unix_path_is_extracted() {
        assert_eq!(of_kind("read /etc/passwd.", Kind::Path), ["/etc/passwd"]);
    }

    #[test]
    fn windows_path_is_lowercased() {
        assert_eq!(
            of_kind(r"open C:\Users\Bob\secrets.txt", Kind::Path),
            [r"c:\users\bob\secrets.txt"]
        );
    }

    #[test]
    fn relative_path_needs_extension_or_depth() {
        assert!(of_kind("src/Main.rs", Kind::Path).contains(&"src/main.rs".to_owned()));
        assert!(of_kind("and/or 24/7", Kind::Path).is_empty());
    }

    #[test]
    fn url_path_is_not_a_file_path() {
        assert!(of_kind("https://example.com/a/b/c", Kind::Path).is_empty());
    }

    #[test]
    fn identifiers_mix_letters_and_digits_or_join_with_dash() {
        assert_eq!(
            of_kind("ref INV-2024-001 for cust_123 and abc", Kind::Identifier),
            ["inv-2024-001", "cust_123"]
        );
    }

    #[test]
    fn quoted_strings_in_straight_and_curly_quotes() {
        assert_eq!(
            of_kind(r#"say "Hello There" and “Yes” or 'ok go'"#, Kind::Quoted),
            ["hello there", "yes", "ok go"]
        );
    }

    #[test]
    fn quoted_json_key_is_not_a_value_but_its_value_is_text() {
        let out = all(r#"{"address": "12 Rue de Rivoli"}"#);
        let quoted: Vec<&str> = out
            .iter()
            .filter(|s| s.kind == Kind::Quoted)
            .map(|s| s.value.as_str())
            .collect();
        assert_eq!(quoted, ["12 rue de rivoli"]);
        assert!(has(&out, Kind::Text, "12 rue de rivoli"));
    }

    #[test]
    fn ipv4_address_is_not_a_phone() {
        assert!(of_kind("host 192.168.10.20", Kind::Phone).is_empty());
    }

    #[test]
    fn phone_with_one_digit_area_code() {
        assert_eq!(
            of_kind("tel +33 1 42 78 00 00", Kind::Phone),
            ["+33142780000"]
        );
    }

    #[test]
    fn apostrophes_do_not_open_quotes() {
        assert!(of_kind("don't do it, it's fine", Kind::Quoted).is_empty());
    }

    #[test]
    fn capitalised_run_is_a_name_with_its_inner_runs() {
        let names = of_kind("Visit The Le Marais Boutique today", Kind::Name);
        assert!(names.contains(&"le marais boutique".to_owned()));
        assert!(names.contains(&"the le marais boutique".to_owned()));
        assert_eq!(of_kind("from Bob Smith.", Kind::Name), ["bob smith"]);
    }

    #[test]
    fn single_capitalised_word_is_not_a_name() {
        assert!(of_kind("Hello there", Kind::Name).is_empty());
    }

    #[test]
    fn key_value_line_gives_its_value_as_text() {
        let texts = of_kind("Ship to:  12 Rue de Rivoli, Paris.\nnote: x", Kind::Text);
        assert_eq!(texts, ["12 rue de rivoli, paris", "x"]);
    }

    #[test]
    fn url_scheme_is_not_a_key() {
        assert!(of_kind("https://example.com", Kind::Text).is_empty());
    }

    #[test]
    fn shingles_are_lowercased_word_trigrams() {
        assert_eq!(
            of_kind("The quick, brown fox", Kind::Shingle),
            ["the quick brown", "quick brown fox"]
        );
    }

    #[test]
    fn json_string_leaf_is_also_whole_text() {
        let out = json(serde_json::json!({"to": "  Bob@Example.com "}));
        assert!(has(&out, Kind::Text, "bob@example.com"));
        assert!(has(&out, Kind::Email, "bob@example.com"));
    }

    #[test]
    fn json_keys_are_not_values() {
        let out = json(serde_json::json!({"recipient_email_address": true}));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn json_numbers_are_values_whatever_their_length() {
        let out = json(serde_json::json!([123, 1250, -4096, 1250.5, 2000.0]));
        let numbers: Vec<&str> = out.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(numbers, ["123", "1250", "4096", "1250.5", "2000"]);
    }

    #[test]
    fn long_json_string_is_not_whole_text() {
        let long = "word ".repeat(40);
        assert!(!json(Value::String(long))
            .iter()
            .any(|s| s.kind == Kind::Text));
    }

    #[test]
    fn each_value_once_per_call() {
        assert_eq!(of_kind("a@b.io a@b.io", Kind::Email), ["a@b.io"]);
    }

    #[test]
    fn weird_unicode_does_not_panic_and_keeps_values() {
        let text = "İ\u{0130}ﬃ \u{202e}Zoë Ærøskøbing ß@ẞ.de 𝔘𝔫𝔦 \u{0}\u{feff}x@y.com é́́́ 1٢3४5";
        let out = all(text);
        assert!(has(&out, Kind::Email, "x@y.com"));
        assert!(has(&out, Kind::Name, "zoë ærøskøbing"));
    }

    #[test]
    fn huge_text_samples_shingles_past_the_first() {
        let text = (0..20_000)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let count = of_kind(&text, Kind::Shingle).len();
        assert!(count > SHINGLES_IN_FULL && count < 20_000 / 2, "{count}");
    }
}
