//! The policy context: turns a session's state, a tool and a call into Cedar entities and a
//! request (documented field by field in ARCHITECTURE.md), and renders reason templates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};
use serde_json::Value;
use warden_model::{ArgProvenance, Call, Confidentiality, Tool};

use crate::engine::{PROFILE_TYPE, TOOL_TYPE};
use crate::session::SessionState;

/// What the call's arguments carry, summarised over its sinks (`context.flow`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flow {
    /// Sink arguments with a salient value found only in untrusted content.
    pub untrusted_sink_args: Vec<String>,
    /// Sink arguments with a salient value found nowhere in the session.
    pub unknown_sink_args: Vec<String>,
    /// Arguments carrying values from secret content.
    pub secret_args: Vec<String>,
    /// Arguments carrying values from internal (or secret) content.
    pub internal_args: Vec<String>,
}

impl Flow {
    pub fn of(tool: &Tool, provenance: &BTreeMap<String, ArgProvenance>) -> Flow {
        let mut flow = Flow::default();
        for (arg, p) in provenance {
            let sink = tool.sink(arg).is_some();
            if sink && p.untrusted_only {
                flow.untrusted_sink_args.push(arg.clone());
            }
            if sink && p.unknown {
                flow.unknown_sink_args.push(arg.clone());
            }
            if p.confidentiality >= Confidentiality::Internal {
                flow.internal_args.push(arg.clone());
            }
            if p.confidentiality == Confidentiality::Secret {
                flow.secret_args.push(arg.clone());
            }
        }
        flow
    }
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let t = EntityTypeName::from_str(type_name).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(|s| string(s)))
}

fn record(
    fields: impl IntoIterator<Item = (String, RestrictedExpression)>,
) -> Result<RestrictedExpression, String> {
    RestrictedExpression::new_record(fields).map_err(|e| e.to_string())
}

/// A JSON value as a Cedar value. Cedar has no null and no floats: nulls are left out, floats
/// become `decimal` where they fit (4 places) and strings otherwise. Built directly rather than
/// through Cedar's JSON format, so that an argument shaped like `{"__entity": …}` stays data.
pub fn cedar_value(v: &Value) -> Result<RestrictedExpression, String> {
    Ok(match v {
        Value::Null => string(""),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => RestrictedExpression::new_long(i),
            (None, Some(f)) if f.is_finite() && (f * 1e4).fract() == 0.0 && f.abs() < 9e14 => {
                RestrictedExpression::new_decimal(format!("{f:.4}"))
            }
            _ => string(&n.to_string()),
        },
        Value::String(s) => string(s),
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .filter(|i| !i.is_null())
                .map(cedar_value)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Object(map) => record(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Ok((k.clone(), cedar_value(v)?)))
                .collect::<Result<Vec<_>, String>>()?,
        )?,
    })
}

fn params_record(params: &BTreeMap<String, Value>) -> Result<RestrictedExpression, String> {
    record(
        params
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| Ok((k.clone(), cedar_value(v)?)))
            .collect::<Result<Vec<_>, String>>()?,
    )
}

/// The Cedar entities and request for one call.
pub fn build(
    state: &SessionState,
    tool: &Tool,
    call: &Call,
    provenance: &BTreeMap<String, ArgProvenance>,
    flow: &Flow,
) -> Result<(Request, Entities), String> {
    let s = &state.session;
    let profile = s.profile.as_deref().unwrap_or("");
    let session_uid = uid("Warden::Session", &s.id)?;
    let mut parents = HashSet::from([
        uid("Warden::Agent", &s.agent)?,
        uid("Warden::User", &s.principal)?,
    ]);
    if let Some(p) = &s.profile {
        parents.insert(uid(PROFILE_TYPE, p)?);
    }
    let session_entity = Entity::new(
        session_uid.clone(),
        HashMap::from([
            ("principal".to_owned(), string(&s.principal)),
            ("agent".to_owned(), string(&s.agent)),
            ("profile".to_owned(), string(profile)),
            ("channel".to_owned(), string(&s.channel)),
        ]),
        parents,
    )
    .map_err(|e| e.to_string())?;
    let tool_uid = uid(TOOL_TYPE, &tool.name)?;
    let tool_entity = Entity::new(
        tool_uid.clone(),
        HashMap::from([
            ("name".to_owned(), string(&tool.name)),
            ("upstream".to_owned(), string(&tool.upstream)),
            (
                "read".to_owned(),
                RestrictedExpression::new_bool(tool.read.value),
            ),
            (
                "write".to_owned(),
                RestrictedExpression::new_bool(tool.write.value),
            ),
            (
                "destructive".to_owned(),
                RestrictedExpression::new_bool(tool.destructive.value),
            ),
            (
                "open_world".to_owned(),
                RestrictedExpression::new_bool(tool.open_world.value),
            ),
            ("returns".to_owned(), string(tool.returns.as_str())),
            (
                "sinks".to_owned(),
                strings(tool.sinks.iter().map(|s| &s.param)),
            ),
        ]),
        HashSet::new(),
    )
    .map_err(|e| e.to_string())?;

    let provenance_record = record(
        provenance
            .iter()
            .map(|(arg, p)| {
                Ok((
                    arg.clone(),
                    record([
                        (
                            "sources".to_owned(),
                            RestrictedExpression::new_set(p.sources.iter().map(|&s| long(s))),
                        ),
                        (
                            "trusted".to_owned(),
                            RestrictedExpression::new_bool(p.trusted),
                        ),
                        (
                            "untrusted".to_owned(),
                            RestrictedExpression::new_bool(p.untrusted),
                        ),
                        (
                            "untrusted_only".to_owned(),
                            RestrictedExpression::new_bool(p.untrusted_only),
                        ),
                        (
                            "unknown".to_owned(),
                            RestrictedExpression::new_bool(p.unknown),
                        ),
                        (
                            "confidentiality".to_owned(),
                            string(p.confidentiality.as_str()),
                        ),
                        (
                            "sink".to_owned(),
                            string(tool.sink(arg).map_or("", |s| s.kind.as_str())),
                        ),
                    ])?,
                ))
            })
            .collect::<Result<Vec<_>, String>>()?,
    )?;
    let h = &state.history;
    let context = Context::from_pairs([
        (
            "session".to_owned(),
            record([
                ("id".to_owned(), string(&s.id)),
                ("principal".to_owned(), string(&s.principal)),
                ("agent".to_owned(), string(&s.agent)),
                ("profile".to_owned(), string(profile)),
                ("channel".to_owned(), string(&s.channel)),
                (
                    "untrusted_seen".to_owned(),
                    RestrictedExpression::new_bool(state.untrusted_seen),
                ),
                (
                    "secret_seen".to_owned(),
                    RestrictedExpression::new_bool(state.secret_seen),
                ),
                ("provenance_evicted".to_owned(), long(state.index.evicted())),
            ])?,
        ),
        ("task".to_owned(), params_record(&s.task)?),
        ("args".to_owned(), params_record(&call.args)?),
        ("provenance".to_owned(), provenance_record),
        (
            "flow".to_owned(),
            record([
                (
                    "untrusted_sink".to_owned(),
                    RestrictedExpression::new_bool(!flow.untrusted_sink_args.is_empty()),
                ),
                (
                    "untrusted_sink_args".to_owned(),
                    strings(&flow.untrusted_sink_args),
                ),
                (
                    "unknown_sink".to_owned(),
                    RestrictedExpression::new_bool(!flow.unknown_sink_args.is_empty()),
                ),
                (
                    "unknown_sink_args".to_owned(),
                    strings(&flow.unknown_sink_args),
                ),
                (
                    "secret_in_args".to_owned(),
                    RestrictedExpression::new_bool(!flow.secret_args.is_empty()),
                ),
                ("secret_args".to_owned(), strings(&flow.secret_args)),
                (
                    "internal_in_args".to_owned(),
                    RestrictedExpression::new_bool(!flow.internal_args.is_empty()),
                ),
            ])?,
        ),
        (
            "history".to_owned(),
            record([
                ("calls".to_owned(), long(h.calls)),
                (
                    "tool_calls".to_owned(),
                    long(h.per_tool.get(&call.tool).copied().unwrap_or(0)),
                ),
                ("allowed".to_owned(), long(h.allowed)),
                ("held".to_owned(), long(h.held)),
                ("denied".to_owned(), long(h.denied)),
            ])?,
        ),
    ])
    .map_err(|e| e.to_string())?;
    let action = uid("Warden::Action", "call")?;
    let entities =
        Entities::from_entities([session_entity, tool_entity], None).map_err(|e| e.to_string())?;
    let request =
        Request::new(session_uid, action, tool_uid, context, None).map_err(|e| e.to_string())?;
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
    if out.contains("{unknown_sink}") {
        let text = format!(
            "{} carries a value seen nowhere in this session",
            list(&flow.unknown_sink_args)
        );
        out = out.replace("{unknown_sink}", &text);
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
