//! The policy context: turns a session's state, a tool and a call into Cedar entities and a
//! request (documented field by field in ARCHITECTURE.md), and renders reason templates.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cedar_policy_core::ast::{self, PartialValue, Value};
use cedar_policy_core::entities::{Entities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::evaluator::RestrictedEvaluator;
use cedar_policy_core::extensions::Extensions;
use serde_json::Value as Json;
use smol_str::SmolStr;
use warden_model::{Anomaly, ArgProvenance, Call, Confidentiality, SinkKind, Tool};

use crate::engine::{NO_PROFILE, PROFILE_TYPE, TOOL_TYPE};
use crate::session::SessionState;

/// What the call's arguments carry, summarised (`context.flow`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// Sink arguments with a salient value found only in untrusted content (anywhere in it).
    pub untrusted_sink_args: Vec<String>,
    /// Arguments that look steered: a sink argument, or a short text argument (a title, a
    /// subject, a name), with a salient value found only inside untrusted prose.
    pub steered_args: Vec<String>,
    /// Sink arguments with a salient value found nowhere in the session.
    pub unknown_sink_args: Vec<String>,
    /// High-risk sink arguments (a recipient, a URL, an account, an amount) with a value that no
    /// content of the session explains and no trusted content gives: unexplained is not trusted.
    pub unexplained_sink_args: Vec<String>,
    /// Arguments carrying values from secret content.
    pub secret_args: Vec<String>,
    /// Arguments carrying values from internal (or secret) content.
    pub internal_args: Vec<String>,
    /// The call has sink arguments and every one of them is `all_trusted`.
    pub sinks_trusted: bool,
}

/// Longest text argument, in characters and words, that reads as a label (a title, a subject,
/// a name) rather than a composed body.
const SHORT_TEXT_CHARS: usize = 100;
const SHORT_TEXT_WORDS: usize = 12;

/// A string, or a list of strings, each short enough to be a label rather than a body.
fn is_short_text(v: &Json) -> bool {
    let short = |s: &str| {
        s.chars().count() <= SHORT_TEXT_CHARS && s.split_whitespace().count() <= SHORT_TEXT_WORDS
    };
    match v {
        Json::String(s) => short(s),
        Json::Array(items) => {
            !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(short))
        }
        _ => false,
    }
}

impl Flow {
    pub fn of(tool: &Tool, call: &Call, provenance: &BTreeMap<String, ArgProvenance>) -> Flow {
        let mut flow = Flow::default();
        let mut sinks = 0;
        let mut trusted_sinks = 0;
        for (arg, p) in provenance {
            let sink_kind = tool.sink(arg).map(|s| s.kind);
            let sink = sink_kind.is_some();
            if sink {
                sinks += 1;
                trusted_sinks += usize::from(p.all_trusted);
            }
            if sink && p.untrusted_only {
                flow.untrusted_sink_args.push(arg.clone());
            }
            let label_like = sink || call.args.get(arg).is_some_and(is_short_text);
            if label_like && p.untrusted_prose_only {
                flow.steered_args.push(arg.clone());
            }
            if sink && p.unknown {
                flow.unknown_sink_args.push(arg.clone());
            }
            let high_risk = matches!(
                sink_kind,
                Some(SinkKind::Recipient | SinkKind::Url | SinkKind::Account | SinkKind::Amount)
            );
            if high_risk && p.unknown && !p.all_trusted {
                flow.unexplained_sink_args.push(arg.clone());
            }
            if p.confidentiality >= Confidentiality::Internal {
                flow.internal_args.push(arg.clone());
            }
            if p.confidentiality == Confidentiality::Secret {
                flow.secret_args.push(arg.clone());
            }
        }
        flow.sinks_trusted = sinks > 0 && trusted_sinks == sinks;
        flow
    }
}

/// The entity types of Warden's Cedar vocabulary, parsed once.
#[derive(Debug, Clone)]
pub struct Types {
    session: ast::EntityType,
    profile: ast::EntityType,
    agent: ast::EntityType,
    user: ast::EntityType,
    tool: ast::EntityType,
    action: ast::EntityUID,
}

impl Types {
    pub fn new() -> Result<Types, String> {
        let t = |name: &str| {
            ast::EntityType::from_normalized_str(name)
                .map_err(|e| format!("entity type {name}: {e}"))
        };
        Ok(Types {
            session: t("Warden::Session")?,
            profile: t(PROFILE_TYPE)?,
            agent: t("Warden::Agent")?,
            user: t("Warden::User")?,
            tool: t(TOOL_TYPE)?,
            action: ast::EntityUID::from_components(
                t("Warden::Action")?,
                ast::Eid::new("call"),
                None,
            ),
        })
    }
}

fn uid(t: &ast::EntityType, id: &str) -> ast::EntityUID {
    ast::EntityUID::from_components(t.clone(), ast::Eid::new(id), None)
}

fn string(s: &str) -> Value {
    Value::from(s)
}

fn long(n: u64) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

fn boolean(b: bool) -> Value {
    Value::from(b)
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> Value {
    Value::set(items.into_iter().map(|s| string(s)), None)
}

/// A record with fixed field names: static names cost Cedar no copy.
fn record(fields: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::record(
        fields.into_iter().map(|(k, v)| (SmolStr::new_static(k), v)),
        None,
    )
}

/// A float as a Cedar `decimal` (4 places), built by Cedar's own extension function.
fn decimal(f: f64) -> Option<Value> {
    let expr = ast::RestrictedExpr::call_extension_fn(
        "decimal".parse().ok()?,
        [ast::RestrictedExpr::val(format!("{f:.4}"))],
    );
    RestrictedEvaluator::new(Extensions::all_available())
        .interpret(expr.as_borrowed())
        .ok()
}

/// A JSON value as a Cedar value. Cedar has no null and no floats: nulls are left out, floats
/// become `decimal` where they fit (4 places) and strings otherwise. Built directly as Cedar
/// values (not through Cedar's JSON format), so an argument shaped like `{"__entity": …}` stays data.
pub fn cedar_value(v: &Json) -> Value {
    match v {
        Json::Null => string(""),
        Json::Bool(b) => boolean(*b),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) if f.is_finite() && (f * 1e4).fract() == 0.0 && f.abs() < 9e14 => {
                decimal(f).unwrap_or_else(|| string(&n.to_string()))
            }
            _ => string(&n.to_string()),
        },
        Json::String(s) => string(s),
        Json::Array(items) => {
            Value::set(items.iter().filter(|i| !i.is_null()).map(cedar_value), None)
        }
        Json::Object(map) => params(map.iter()),
    }
}

fn params<'a>(items: impl Iterator<Item = (&'a String, &'a Json)>) -> Value {
    Value::record(
        items
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.as_str(), cedar_value(v))),
        None,
    )
}

/// The Cedar entities and request for one call, built directly as Cedar values: going through
/// Cedar's restricted-expression evaluator costs about 0.2 µs per value, most of a decision.
pub fn build(
    types: &Types,
    state: &SessionState,
    tool: &Tool,
    call: &Call,
    provenance: &BTreeMap<String, ArgProvenance>,
    flow: &Flow,
    anomaly: &Anomaly,
) -> Result<(ast::Request, Entities), String> {
    let s = &state.session;
    let profile = s.profile.as_deref().unwrap_or("");
    let session_uid = uid(&types.session, &s.id);
    let mut parents = HashSet::from([uid(&types.agent, &s.agent), uid(&types.user, &s.principal)]);
    parents.insert(uid(
        &types.profile,
        s.profile.as_deref().unwrap_or(NO_PROFILE),
    ));
    fn attrs(pairs: Vec<(&str, Value)>) -> Vec<(SmolStr, PartialValue)> {
        pairs
            .into_iter()
            .map(|(k, v)| (SmolStr::from(k), PartialValue::from(v)))
            .collect()
    }
    let session_entity = ast::Entity::new_with_attr_partial_value(
        session_uid.clone(),
        attrs(vec![
            ("principal", string(&s.principal)),
            ("agent", string(&s.agent)),
            ("profile", string(profile)),
            ("channel", string(&s.channel)),
        ]),
        HashSet::new(),
        parents,
        [],
    );
    let tool_uid = uid(&types.tool, &tool.name);
    let tool_entity = ast::Entity::new_with_attr_partial_value(
        tool_uid.clone(),
        attrs(vec![
            ("name", string(&tool.name)),
            ("upstream", string(&tool.upstream)),
            ("read", boolean(tool.read.value)),
            ("write", boolean(tool.write.value)),
            ("destructive", boolean(tool.destructive.value)),
            ("open_world", boolean(tool.open_world.value)),
            ("returns", string(tool.returns.as_str())),
            ("sinks", strings(tool.sinks.iter().map(|s| &s.param))),
        ]),
        HashSet::new(),
        HashSet::new(),
        [],
    );

    let provenance_record = Value::record(
        provenance.iter().map(|(arg, p)| {
            (
                arg.as_str(),
                record([
                    (
                        "sources",
                        Value::set(p.sources.iter().map(|&s| long(s)), None),
                    ),
                    ("trusted", boolean(p.trusted)),
                    ("untrusted", boolean(p.untrusted)),
                    ("untrusted_only", boolean(p.untrusted_only)),
                    ("untrusted_prose_only", boolean(p.untrusted_prose_only)),
                    ("unknown", boolean(p.unknown)),
                    ("all_trusted", boolean(p.all_trusted)),
                    ("confidentiality", string(p.confidentiality.as_str())),
                    (
                        "sink",
                        string(tool.sink(arg).map_or("", |s| s.kind.as_str())),
                    ),
                ]),
            )
        }),
        None,
    );
    let h = &state.history;
    let context: BTreeMap<SmolStr, Value> = BTreeMap::from([
        (
            "session".into(),
            record([
                ("id", string(&s.id)),
                ("principal", string(&s.principal)),
                ("agent", string(&s.agent)),
                ("profile", string(profile)),
                ("channel", string(&s.channel)),
                ("untrusted_seen", boolean(state.untrusted_seen)),
                ("secret_seen", boolean(state.secret_seen)),
                ("provenance_evicted", long(state.index.evicted())),
            ]),
        ),
        ("task".into(), params(s.task.iter())),
        ("args".into(), params(call.args.iter())),
        ("provenance".into(), provenance_record),
        (
            "flow".into(),
            record([
                (
                    "untrusted_sink",
                    boolean(!flow.untrusted_sink_args.is_empty()),
                ),
                ("untrusted_sink_args", strings(&flow.untrusted_sink_args)),
                ("steered", boolean(!flow.steered_args.is_empty())),
                ("steered_args", strings(&flow.steered_args)),
                ("unknown_sink", boolean(!flow.unknown_sink_args.is_empty())),
                ("unknown_sink_args", strings(&flow.unknown_sink_args)),
                (
                    "unexplained_sink",
                    boolean(!flow.unexplained_sink_args.is_empty()),
                ),
                (
                    "unexplained_sink_args",
                    strings(&flow.unexplained_sink_args),
                ),
                ("secret_in_args", boolean(!flow.secret_args.is_empty())),
                ("secret_args", strings(&flow.secret_args)),
                ("internal_in_args", boolean(!flow.internal_args.is_empty())),
                ("sinks_trusted", boolean(flow.sinks_trusted)),
            ]),
        ),
        (
            "history".into(),
            record([
                ("calls", long(h.calls)),
                (
                    "tool_calls",
                    long(h.per_tool.get(&call.tool).copied().unwrap_or(0)),
                ),
                ("allowed", long(h.allowed)),
                ("held", long(h.held)),
                ("denied", long(h.denied)),
            ]),
        ),
        (
            "anomaly".into(),
            record([
                // Cedar has no floats: the score in thousandths, 0..=1000.
                (
                    "score",
                    long((anomaly.score.clamp(0.0, 1.0) * 1000.0).round() as u64),
                ),
                (
                    "reasons",
                    Value::set(anomaly.reasons.iter().map(|(r, _)| string(r)), None),
                ),
            ]),
        ),
    ]);
    // The parents named above have no parents of their own, so the hierarchy is already closed.
    let entities = Entities::from_entities(
        [session_entity, tool_entity],
        None::<&NoEntitiesSchema>,
        TCComputation::AssumeAlreadyComputed,
        Extensions::all_available(),
    )
    .map_err(|e| e.to_string())?;
    let request = ast::Request::new_unchecked(
        ast::EntityUIDEntry::known(session_uid, None),
        ast::EntityUIDEntry::known(types.action.clone(), None),
        ast::EntityUIDEntry::known(tool_uid, None),
        Some(ast::Context::Value(Arc::new(context))),
    );
    Ok((request, entities))
}

/// Describe where the values of some arguments came from, naming the sources.
fn evidence(
    state: &SessionState,
    args: &[String],
    provenance: &BTreeMap<String, ArgProvenance>,
    only_untrusted: bool,
) -> String {
    let mut parts = Vec::new();
    for arg in args {
        let Some(p) = provenance.get(arg) else {
            continue;
        };
        let mut described = Vec::new();
        for m in p.values.iter().filter(|m| m.kind != "shingle") {
            let sources: Vec<String> = m
                .sources
                .iter()
                .filter_map(|&seq| state.index.source(seq))
                .filter(|s| {
                    !only_untrusted || s.label.integrity == warden_model::Integrity::Untrusted
                })
                .map(ToString::to_string)
                .collect();
            if only_untrusted && sources.len() < m.sources.len() {
                continue; // this value also occurs in trusted content: not the evidence
            }
            if !sources.is_empty() {
                described.push(format!(
                    "\"{}\" ({}) comes from {}",
                    m.value,
                    m.kind,
                    sources.join(", ")
                ));
            }
        }
        if described.is_empty() {
            parts.push(format!("argument `{arg}`"));
        } else {
            parts.push(format!("argument `{arg}`: {}", described.join("; ")));
        }
    }
    parts.join("; ")
}

/// Fill a reason template's placeholders from the call.
pub fn render(
    template: &str,
    state: &SessionState,
    tool: &Tool,
    provenance: &BTreeMap<String, ArgProvenance>,
    flow: &Flow,
) -> String {
    if !template.contains('{') {
        return template.to_owned();
    }
    let list = |args: &[String]| {
        args.iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = template.replace("{tool}", &tool.name).replace(
        "{profile}",
        state.session.profile.as_deref().unwrap_or("(none)"),
    );
    if out.contains("{untrusted_sink}") {
        let text = format!(
            "a value in {} was found only in untrusted content — {}",
            list(&flow.untrusted_sink_args),
            evidence(state, &flow.untrusted_sink_args, provenance, true)
        );
        out = out.replace("{untrusted_sink}", &text);
    }
    if out.contains("{steered}") {
        let text = format!(
            "{} carries a value the agent could only have read inside untrusted text — {}",
            list(&flow.steered_args),
            evidence(state, &flow.steered_args, provenance, true)
        );
        out = out.replace("{steered}", &text);
    }
    if out.contains("{unknown_sink}") {
        let text = format!(
            "{} carries a value seen nowhere in this session",
            list(&flow.unknown_sink_args)
        );
        out = out.replace("{unknown_sink}", &text);
    }
    if out.contains("{unexplained_sink}") {
        let text = format!(
            "{} carries a value that nothing trusted in this session gives (not the user's words, not a trusted system's data) while the session has read untrusted content",
            list(&flow.unexplained_sink_args)
        );
        out = out.replace("{unexplained_sink}", &text);
    }
    if out.contains("{secret_args}") {
        let text = format!(
            "{} ({})",
            list(&flow.secret_args),
            evidence(state, &flow.secret_args, provenance, false)
        );
        out = out.replace("{secret_args}", &text);
    }
    out
}
