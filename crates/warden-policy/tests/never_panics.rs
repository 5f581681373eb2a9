//! Every function that reads outside text — extraction, structure reading, the provenance index,
//! tool inference, the Cedar context — over hostile Unicode: it decides, it never panics.
//! `PROPTEST_CASES` sets how many inputs each property tries (CI runs a longer pass).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use warden_model::{Call, Session};
use warden_policy::{decide, tools, PolicyEngine, SessionState, Step, ToolSpec};
use warden_provenance::IndexConfig;

/// Characters that break code written for ASCII: multibyte letters, combining marks, right-to-left
/// text and its overrides, zero-width and joiner characters, emoji (with modifiers), NUL and
/// control characters, private-use and non-characters, plus the ASCII punctuation parsers key on.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        1 => proptest::char::range('\u{300}', '\u{36f}'),
        1 => proptest::char::range('\u{590}', '\u{6ff}'),
        1 => prop::sample::select(vec![
            '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{202e}', '\u{2066}', '\u{feff}',
            '\u{0}', '\u{7}', '\n', '\r', '\t', '\u{85}', '\u{2028}', '\u{fffd}', '\u{ffff}',
            '\u{e000}', 'é', 'ß', 'İ', 'ﬁ', 'Å', 'ǅ', '東', '京', '𝔘', '😀', '\u{1f3fd}', '👩',
        ]),
        1 => any::<char>(),
    ]
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(hostile_char(), 0..48)
            .prop_map(|cs| cs.into_iter().collect::<String>()),
        // Shaped like the values extractors look for, with hostile characters spliced in.
        2 => (
            prop::sample::select(vec![
                "https://", "www.", "mailto:", "@", ".com/", "/home/", "~/", "C:\\", "+44 ", "GB29",
                "\"", "'", "`", "key: ", "- ", "* ", "1. ", "{\"a\":", "[", "<tag>", "```", "%2F",
            ]),
            proptest::collection::vec(hostile_char(), 0..24),
            proptest::collection::vec(hostile_char(), 0..24),
        )
            .prop_map(|(shape, a, b)| {
                let (a, b): (String, String) = (a.into_iter().collect(), b.into_iter().collect());
                format!("{a}{shape}{b}")
            }),
    ]
}

fn hostile_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        hostile_string().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((hostile_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The baseline, loaded once for all cases.
static ENGINE: std::sync::LazyLock<PolicyEngine> = std::sync::LazyLock::new(|| {
    PolicyEngine::load(
        &warden_policy::policy_sources(true, &BTreeMap::new(), vec![]).expect("sources"),
    )
    .expect("baseline loads")
});

fn session(instruction: String, task: BTreeMap<String, Value>) -> Session {
    Session {
        id: "s1".into(),
        principal: "alice".into(),
        agent: "bot".into(),
        profile: None,
        task,
        instruction,
        channel: "chat".into(),
        opened_at_ms: 0,
    }
}

fn args(value: Value) -> BTreeMap<String, Value> {
    match value {
        Value::Object(map) => map.into_iter().collect(),
        other => BTreeMap::from([("value".to_owned(), other)]),
    }
}

proptest! {
    /// A session fed hostile instructions, messages and results decides hostile calls of tools
    /// with hostile names and descriptions.
    #[test]
    fn hostile_content_and_calls_are_decided(
        instruction in hostile_string(),
        task in hostile_json(),
        message in hostile_string(),
        results in proptest::collection::vec((hostile_json(), any::<bool>()), 0..4),
        tool_name in hostile_string(),
        description in hostile_string(),
        call_args in hostile_json(),
    ) {
        let mut state = SessionState::open(session(instruction, args(task)), IndexConfig::default());
        state.apply(&Step::UserMessage { text: message });
        let spec = ToolSpec {
            name: tool_name.clone(),
            description,
            input_schema: json!({"type": "object", "properties": Value::Object(
                args(call_args.clone()).into_keys().map(|k| (k, json!({}))).collect()
            )}),
            ..ToolSpec::default()
        };
        let tool = tools::resolve(&spec, "test", None);
        for (i, (result, as_text)) in results.into_iter().enumerate() {
            let result = match (as_text, result) {
                (true, v) => Value::String(v.to_string()),
                (false, v) => v,
            };
            state.apply(&SessionState::result_step(&tool, &format!("c{i}"), result));
        }
        let call = Call {
            tool: tool_name,
            args: args(call_args),
            call_id: String::new(),
            upstream: None,
        };
        let decision = decide(&ENGINE, &state, &tool, &call);
        prop_assert!(!decision.reasons.is_empty() || decision.verdict == warden_model::Verdict::Allow);
    }

    /// The provenance extractors and structure readers on their own, text and JSON.
    #[test]
    fn extractors_read_any_text(text in hostile_string(), value in hostile_json()) {
        let mut out = Vec::new();
        warden_provenance::extract(&text, &mut out);
        warden_provenance::extract_json(&value, &mut out);
        warden_provenance::field_values(&text);
        warden_provenance::json_field_values(&value);
        warden_provenance::field_values(&value.to_string());
    }
}
