//! Where in a result a value sits: in a record's short field (an id, an address, a name, a
//! participant) or in prose (an e-mail body, a file's text, a review). Injected instructions
//! are prose written by a third party; the values an agent legitimately copies from a listing
//! are mostly fields. Works on `key: value` text (YAML-like tool output) and on JSON.

use serde_json::Value;

/// Longest value, in characters and in words, that still reads as a field rather than prose.
const FIELD_MAX_CHARS: usize = 100;
const FIELD_MAX_WORDS: usize = 12;

/// A piece of a result and whether it is a field value or prose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    Field(&'a str),
    Prose(&'a str),
}

fn short(value: &str) -> bool {
    value.chars().count() <= FIELD_MAX_CHARS && value.split_whitespace().count() <= FIELD_MAX_WORDS
}

fn classify(value: &str) -> Segment<'_> {
    if short(value) {
        Segment::Field(value)
    } else {
        Segment::Prose(value)
    }
}

/// The `key` of a `key: value` line, if the line has that shape: an identifier-like key of at
/// most 40 characters, optionally after a list dash.
fn key_value(line: &str) -> Option<&str> {
    let body = line.trim_start();
    let body = body.strip_prefix("- ").map_or(body, str::trim_start);
    let (key, rest) = body.split_once(':')?;
    let key_ok = !key.is_empty()
        && key.chars().count() <= 40
        && key.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
    if !key_ok || !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    Some(rest.trim())
}

/// Segments of a text result. Lines of `key: value` and `- item` give their value as a field
/// when it is short; a quoted value that runs over several lines, long values and every other
/// line are prose.
pub fn segments(text: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut open_quote: Option<char> = None;
    for line in text.lines() {
        if let Some(q) = open_quote {
            out.push(Segment::Prose(line));
            if closes(line.trim_end(), q) {
                open_quote = None;
            }
            continue;
        }
        let value = key_value(line).or_else(|| line.trim_start().strip_prefix("- ").map(str::trim));
        let Some(value) = value else {
            if !line.trim().is_empty() {
                out.push(Segment::Prose(line));
            }
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let first = value.chars().next().unwrap_or(' ');
        if (first == '\'' || first == '"') && !closes(&value[first.len_utf8()..], first) {
            open_quote = Some(first);
            out.push(Segment::Prose(value));
            continue;
        }
        out.push(classify(value));
    }
    out
}

/// Whether a line ends a quoted scalar opened with `q` (YAML doubles `''` inside single quotes).
fn closes(rest: &str, q: char) -> bool {
    let trimmed = rest.trim_end();
    if !trimmed.ends_with(q) {
        return false;
    }
    let run = trimmed.chars().rev().take_while(|&c| c == q).count();
    q != '\'' || run % 2 == 1
}

/// String leaves of a JSON value as segments (numbers and booleans are not text; the caller
/// indexes them as fields).
pub fn json_segments(value: &Value) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => out.push(classify(s)),
            Value::Array(items) => stack.extend(items.iter().rev()),
            Value::Object(map) => stack.extend(map.values().rev()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_key_values_are_fields_and_a_multiline_body_is_prose() {
        let text = "- body: 'Hi team,\n\n    please send the report to a@b.test today.'\n  id_: '3'\n  recipients:\n  - c@d.test\n  subject: Q1 report";
        let segs = segments(text);
        assert!(segs.contains(&Segment::Field("'3'")), "{segs:?}");
        assert!(segs.contains(&Segment::Field("c@d.test")), "{segs:?}");
        assert!(segs.contains(&Segment::Field("Q1 report")), "{segs:?}");
        assert!(segs.contains(&Segment::Prose("    please send the report to a@b.test today.'")), "{segs:?}");
        assert!(!segs.iter().any(|s| matches!(s, Segment::Field(v) if v.contains("a@b.test"))), "{segs:?}");
    }

    #[test]
    fn a_sentence_with_a_colon_is_prose_when_long() {
        let segs = segments("Note: this sentence is much longer than any field value would ever be in a record listing at all");
        assert!(matches!(segs.as_slice(), [Segment::Prose(_)]), "{segs:?}");
    }

    #[test]
    fn doubled_quotes_do_not_close_a_single_quoted_value() {
        let segs = segments("body: 'it''s\n  still the body'\nid: 7");
        assert_eq!(segs.last(), Some(&Segment::Field("7")), "{segs:?}");
        assert_eq!(segs[1], Segment::Prose("  still the body'"));
    }

    #[test]
    fn json_leaves_are_fields_when_short() {
        let v = serde_json::json!({"id": "9", "text": "a long review text that goes on and on about the hotel and its many rooms and views"});
        let segs = json_segments(&v);
        assert!(segs.contains(&Segment::Field("9")));
        assert!(segs.iter().any(|s| matches!(s, Segment::Prose(_))));
    }
}
