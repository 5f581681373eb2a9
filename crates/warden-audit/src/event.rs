//! What the log records: `Event`s with the causes they link to, and the canonical bytes an
//! event is stored as (the leaf of the Merkle tree is SHA-256(0x00 ‖ those bytes)).
//!
//! # The canonical form of an entry
//!
//! One JSON object, UTF-8, no whitespace, whose members are, in this order:
//! `index` (the event's position in the log), `kind`, `session`, `time_ms`, `body`, `causes`.
//! Inside `body`, the members of every object are sorted by the bytes of their keys. Strings are
//! escaped as serde_json writes them (only `"`, `\` and control characters; everything else as
//! raw UTF-8) and numbers as serde_json prints them (integers in decimal, floats in their
//! shortest round-trip form). The same event at the same index always gives the same bytes, and
//! the index is inside the signed bytes, so a moved or renumbered entry is told apart from an
//! edited one.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// The kind of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    SessionOpened,
    Call,
    Decision,
    Approval,
    Result,
    Alert,
    Message,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::SessionOpened,
        EventKind::Call,
        EventKind::Decision,
        EventKind::Approval,
        EventKind::Result,
        EventKind::Alert,
        EventKind::Message,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionOpened => "session_opened",
            EventKind::Call => "call",
            EventKind::Decision => "decision",
            EventKind::Approval => "approval",
            EventKind::Result => "result",
            EventKind::Alert => "alert",
            EventKind::Message => "message",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One record of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub session: String,
    pub time_ms: u64,
    #[serde(serialize_with = "canonical_value")]
    pub body: Value,
    /// Indexes of earlier events this one follows from: the session-opened event, the results
    /// whose values reached a call's arguments, the call a decision is about.
    pub causes: Vec<u64>,
}

/// An event with its position in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    pub index: u64,
    #[serde(flatten)]
    pub event: Event,
}

impl Event {
    /// The canonical bytes of this event without its index: `{"kind":…,"causes":[…]}`. The
    /// writer turns them into the entry by inserting `"index":N,` after the opening brace, so
    /// appenders can serialise in parallel and the single writer only hashes.
    pub fn canonical_body(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and JSON values into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The entry bytes for `event_bytes` (from [`Event::canonical_body`]) at `index`.
pub fn entry_bytes(index: u64, event_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(event_bytes.len() + 32);
    out.extend_from_slice(b"{\"index\":");
    out.extend_from_slice(index.to_string().as_bytes());
    out.push(b',');
    out.extend_from_slice(event_bytes.get(1..).unwrap_or_default());
    out
}

/// The index an entry says it has, read from its fixed prefix without parsing the rest.
pub fn claimed_index(entry: &[u8]) -> Option<u64> {
    let rest = entry.strip_prefix(b"{\"index\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || rest.get(end) != Some(&b',') || (end > 1 && rest[0] == b'0') {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// Decodes an entry into its index and event.
pub fn decode_entry(entry: &[u8]) -> Result<LoggedEvent, serde_json::Error> {
    serde_json::from_slice(entry)
}

/// Serialises a JSON value with the members of every object sorted by key, whatever map type
/// serde_json was built with (`preserve_order` keeps insertion order, and something in the
/// workspace turns it on).
pub fn canonical_value<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
    Canonical(v).serialize(s)
}

/// The canonical JSON bytes of any value (sorted keys, no whitespace).
pub fn canonical_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&Canonical(v)).unwrap_or_default()
}

struct Canonical<'a>(&'a Value);

impl Serialize for Canonical<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut m = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    m.serialize_entry(k, &Canonical(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Canonical(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(body: Value) -> Event {
        Event {
            kind: EventKind::Call,
            session: "s1".into(),
            time_ms: 7,
            body,
            causes: vec![0, 2],
        }
    }

    #[test]
    fn entry_bytes_are_the_documented_canonical_form() {
        let e = event(json!({"z": 1, "a": {"y": [true, null], "b": "é\n"}}));
        let bytes = entry_bytes(12, &e.canonical_body());
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf8"),
            r#"{"index":12,"kind":"call","session":"s1","time_ms":7,"body":{"a":{"b":"é\n","y":[true,null]},"z":1},"causes":[0,2]}"#
        );
    }

    #[test]
    fn key_order_of_the_input_does_not_change_the_bytes() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":3}}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"a":{"c":3,"d":2},"b":1}"#).expect("json");
        assert_eq!(event(a).canonical_body(), event(b).canonical_body());
    }

    #[test]
    fn an_entry_decodes_to_its_index_and_event() {
        let e = event(json!({"tool": "send"}));
        let decoded = decode_entry(&entry_bytes(3, &e.canonical_body())).expect("decode");
        assert_eq!(decoded.index, 3);
        assert_eq!(decoded.event, e);
    }

    #[test]
    fn the_claimed_index_is_read_from_the_prefix_only_when_well_formed() {
        assert_eq!(claimed_index(br#"{"index":42,"kind":"call"}"#), Some(42));
        assert_eq!(claimed_index(br#"{"index":0,"kind":"call"}"#), Some(0));
        assert_eq!(claimed_index(br#"{"index":042,"kind":"call"}"#), None);
        assert_eq!(claimed_index(br#"{"index":,"kind":"call"}"#), None);
        assert_eq!(claimed_index(br#"{"kind":"call","index":4}"#), None);
    }
}
