//! Property tests over the outside input the policy crate parses: Cedar policy files and task
//! profiles (TOML, and arbitrary names in them). Arbitrary Unicode (combining marks,
//! right-to-left text, emoji, NUL): loading never panics, it is Ok or an error naming the file;
//! a profile that compiles always loads, since its Cedar is Warden's own.
//! Cases per property: proptest's default, or `PROPTEST_CASES` (CI runs a longer pass).

use std::collections::BTreeMap;

use proptest::prelude::*;
use warden_policy::profile::{Budget, Constraint};
use warden_policy::{PolicyEngine, PolicySource, TaskProfile};

fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("e\u{301}\u{302}".to_owned()),
        Just("\u{202e}evil\u{202c}".to_owned()),
        Just("שלום".to_owned()),
        Just("👩\u{200d}👩\u{200d}👧".to_owned()),
        Just("東京都".to_owned()),
        Just("\0".to_owned()),
        Just("\u{2028}".to_owned()),
        Just("{tool}".to_owned()),
        Just("\"\\*".to_owned()),
        Just("(none)".to_owned()),
        "[a-z_.]{0,8}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..5).prop_map(|v| v.concat())
}

/// Fragments of Cedar, so that random text gets past the first token often.
fn cedarish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("permit(principal, action, resource)".to_owned()),
        Just("forbid(principal in Warden::Profile::\"".to_owned()),
        Just("resource == Warden::Tool::\"".to_owned()),
        Just(" when { context.args has ".to_owned()),
        Just("context.args.".to_owned()),
        Just("context.provenance[\"".to_owned()),
        Just(" && ".to_owned()),
        Just("\" ".to_owned()),
        Just("};\n".to_owned()),
        Just("@id(\"".to_owned()),
        Just("@reason(\"".to_owned()),
        Just("@hold ".to_owned()),
        Just(" like \"*".to_owned()),
        Just(" > 3".to_owned()),
        nasty(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn load(text: &str) -> Result<PolicyEngine, warden_policy::PolicyError> {
    PolicyEngine::load(&[PolicySource {
        name: "p.cedar".into(),
        text: text.into(),
    }])
}

fn value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        nasty().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
    ]
}

fn constraint() -> impl Strategy<Value = Constraint> {
    (
        nasty(),
        0u8..5,
        value(),
        proptest::collection::vec(value(), 0..3),
        any::<i64>(),
        proptest::option::of(nasty()),
    )
        .prop_map(|(s, rule, v, vs, n, reason)| {
            let mut c = Constraint {
                arg: s.clone(),
                reason,
                ..Constraint::default()
            };
            match rule {
                0 => c.equals_task = Some(s),
                1 => c.equals = Some(v),
                2 => c.one_of = Some(vs),
                3 => c.max = Some(n),
                _ => c.ends_with = Some(s),
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn any_policy_text_loads_or_fails_with_an_error_naming_the_file(text in cedarish()) {
        if let Err(e) = load(&text) {
            prop_assert!(e.to_string().starts_with("p.cedar"), "{e}");
        }
    }

    #[test]
    fn any_profile_toml_compiles_or_fails_with_an_error(text in nasty(), names in nasty()) {
        let text = format!("[{}]\ntools = [{}]\n{text}", toml::Value::String(names.clone()), toml::Value::String(names));
        if let Ok(profiles) = toml::from_str::<BTreeMap<String, TaskProfile>>(&text) {
            if let Ok(sources) = warden_policy::policy_sources(true, &profiles, vec![]) {
                let _ = PolicyEngine::load(&sources);
            }
        }
    }

    #[test]
    fn a_profile_with_any_names_that_compiles_loads(
        name in nasty(), tool in nasty(), param in nasty(),
        require in proptest::collection::vec(constraint(), 0..3),
        calls in proptest::option::of(any::<u64>()), per_tool in any::<u64>(),
    ) {
        let require: Vec<Constraint> = require
            .into_iter()
            .map(|c| Constraint { tool: tool.clone(), ..c })
            .collect();
        let profile = TaskProfile {
            params: vec![param.clone()],
            tools: vec![tool.clone()],
            require,
            budget: Budget { calls, tools: BTreeMap::from([(tool.clone(), per_tool)]) },
            ..TaskProfile::default()
        };
        let profiles = BTreeMap::from([(name, profile)]);
        if let Ok(sources) = warden_policy::policy_sources(true, &profiles, vec![]) {
            if let Err(e) = PolicyEngine::load(&sources) {
                prop_assert!(false, "a compiled profile does not load: {e}\n{}", sources[1].text);
            }
        }
    }

    #[test]
    fn line_col_takes_any_offset(text in nasty(), offset in 0usize..64) {
        let (line, col) = warden_policy::line_col(&text, offset);
        prop_assert!(line >= 1 && col >= 1);
    }
}

/// proptest's case count: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Found by the property above: two constraints on one argument compiled to two policies with
/// the same `@id`, so the profile did not load.
#[test]
fn two_constraints_on_one_argument_load_with_ids_of_their_own() {
    let constraint = |c: Constraint| Constraint {
        tool: "pay".into(),
        arg: "to".into(),
        ..c
    };
    let profile = TaskProfile {
        params: vec!["payee".into()],
        tools: vec!["pay".into()],
        require: vec![
            constraint(Constraint {
                equals_task: Some("payee".into()),
                ..Constraint::default()
            }),
            constraint(Constraint {
                ends_with: Some("@corp.example".into()),
                ..Constraint::default()
            }),
        ],
        ..TaskProfile::default()
    };
    let profiles = BTreeMap::from([("p".to_owned(), profile)]);
    let sources = warden_policy::policy_sources(true, &profiles, vec![]).expect("compiles");
    PolicyEngine::load(&sources).expect("loads");
    let text: String = sources.iter().map(|s| s.text.clone()).collect();
    assert!(text.contains("\"profile.p.require.pay.to\""), "{text}");
    assert!(text.contains("\"profile.p.require.pay.to.2\""), "{text}");
}
