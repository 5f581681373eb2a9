//! Properties of extraction and the provenance index over generated sessions: provenance never
//! names a source that lacks the value, the same adds give the same answers, and no input panics.

use proptest::prelude::*;
use serde_json::{json, Value};
use warden_model::{Confidentiality, Integrity, Label, Origin, Source};
use warden_provenance::{extract, extract_json, IndexConfig, ProvenanceIndex, Salient};

/// Words, addresses, numbers and names that recur across sources, so that values do match.
const VOCABULARY: &[&str] = &[
    "pay",
    "the",
    "invoice",
    "to",
    "send",
    "report",
    "bob@example.com",
    "eve@evil.example",
    "Bob Smith",
    "Le Marais Boutique",
    "1,250.00",
    "1250",
    "4096",
    "INV-2024-001",
    "cust_123",
    "https://example.com/pay/",
    "example.com",
    "DE89 3704 0044 0532 0130 00",
    "+1 555 123 4567",
    "/etc/passwd",
    "report.pdf",
    "\"wire now\"",
    "Amount:",
    "\n",
    "ü",
    "İ",
    "😀",
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(VOCABULARY), 0..24).prop_map(|w| w.join(" "))
}

/// (integrity, confidentiality, text) of each source, in seq order.
fn session() -> impl Strategy<Value = Vec<(bool, u8, String)>> {
    prop::collection::vec((any::<bool>(), 0u8..3, text()), 1..6)
}

fn query() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::String),
        prop::sample::select(VOCABULARY).prop_map(|w| Value::String(w.to_owned())),
        (text(), 0u64..5000).prop_map(|(t, n)| json!({"body": t, "amount": n})),
    ]
}

fn source(seq: u64, trusted: bool, confidentiality: u8) -> Source {
    Source {
        seq,
        label: Label {
            origin: Origin::ToolResult {
                tool: "t".to_owned(),
                call_id: String::new(),
            },
            integrity: if trusted {
                Integrity::Trusted
            } else {
                Integrity::Untrusted
            },
            confidentiality: match confidentiality {
                0 => Confidentiality::Public,
                1 => Confidentiality::Internal,
                _ => Confidentiality::Secret,
            },
        },
    }
}

fn build(session: &[(bool, u8, String)], config: IndexConfig) -> ProvenanceIndex {
    let mut index = ProvenanceIndex::new(config);
    for (seq, (trusted, conf, text)) in session.iter().enumerate() {
        index.add_text(source(seq as u64, *trusted, *conf), text);
    }
    index
}

/// The last `n` digits of a text, in order.
fn last_digits(text: &str, n: usize) -> String {
    let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(n)..].iter().collect()
}

/// What `add_text` indexes for a text: its extraction, as one JSON string leaf.
fn extraction_of(text: &str) -> Vec<Salient> {
    let mut out = Vec::new();
    extract_json(&Value::String(text.to_owned()), &mut out);
    out
}

proptest! {
    #[test]
    fn provenance_names_only_sources_that_contain_the_value(
        session in session(),
        query in query(),
        max_values in prop_oneof![Just(200_000usize), 1usize..40],
        max_sources in 1usize..4,
    ) {
        let config = IndexConfig { max_values, max_sources_per_value: max_sources };
        let index = build(&session, config);
        let p = index.provenance(&query);
        for m in p.values.iter().filter(|m| m.kind != "shingle") {
            for &seq in &m.sources {
                let (_, _, text) = &session[seq as usize];
                // A computed number is named by the sources of the numbers it was computed from;
                // a phone number by those of any phone with the same last eight digits (a country
                // code or a trunk `0` before them is the same number).
                let found = extraction_of(text).iter().any(|s| {
                    (s.kind.as_str() == m.kind && s.value == m.value)
                        || (m.kind == "computed number" && s.kind.as_str() == "number")
                        || (m.kind == "phone"
                            && s.kind.as_str() == "phone"
                            && last_digits(&s.value, 8) == last_digits(&m.value, 8))
                });
                prop_assert!(found, "{:?} ({}) named source {} which lacks it: {:?}",
                    m.value, m.kind, seq, text);
            }
        }
        for &seq in &p.sources {
            prop_assert!((seq as usize) < session.len());
        }
        if p.untrusted_only {
            prop_assert!(p.untrusted);
        }
    }

    #[test]
    fn same_adds_give_same_provenance(session in session(), queries in prop::collection::vec(query(), 1..4)) {
        let a = build(&session, IndexConfig::default());
        let b = build(&session, IndexConfig::default());
        for q in &queries {
            prop_assert_eq!(a.provenance(q), b.provenance(q));
        }
        prop_assert_eq!(a.len(), b.len());
    }

    #[test]
    fn extract_never_panics(text in any::<String>()) {
        let mut out = Vec::new();
        extract(&text, &mut out);
        extract_json(&Value::String(text), &mut out);
    }

    #[test]
    fn extract_never_panics_on_punctuation_soup(text in r#"[a-zA-Z0-9 @:/\\.,\-_+()'"“”’\n€ü]{0,200}"#) {
        let mut out = Vec::new();
        extract(&text, &mut out);
    }
}
