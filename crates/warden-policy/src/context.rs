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
    /// Party sinks (a recipient, an account, a command: who receives the user's data, money or
    /// orders) that only untrusted content gives, as a field or in prose, or that only the prose
    /// of a record the user designated names: the content's author chose them, not the user.
    /// Arguments already in `steered_args` are not repeated here.
    pub unvouched_party_args: Vec<String>,
    /// Sink arguments with a salient value found nowhere in the session.
    pub unknown_sink_args: Vec<String>,
    /// High-risk sink arguments (a recipient, a URL, an account, an amount) with a value that no
    /// content of the session explains and no trusted content gives: unexplained is not trusted.
    pub unexplained_sink_args: Vec<String>,
    /// URL arguments of an open-world tool that send data the agent filled in, to an address
    /// nothing trusted gives (see `composed_egress` in this crate's root).
    pub egress_args: Vec<String>,
    /// URL arguments of an open-world tool that lead the agent where only untrusted prose
    /// pointed, to a site no trusted content names (see `steered_navigation` in this crate's
    /// root).
    pub navigation_args: Vec<String>,
    /// Text arguments of a write (a message's body, a post) that pass on a link only untrusted
    /// prose named, to a site no trusted content names (see `steered_links` in this crate's
    /// root).
    pub link_args: Vec<String>,
    /// Arguments carrying values from secret content.
    pub secret_args: Vec<String>,
    /// Arguments carrying values from internal (or secret) content.
    pub internal_args: Vec<String>,
    /// The call has sink arguments and every one of them is `all_trusted`.
    pub sinks_trusted: bool,
    /// The call names a party (a recipient, an account, a command, the address a write sends
    /// to) and the user's own words alone give every party it names (`user_named`): who learns
    /// what the call carries is the user's choice.
    pub parties_user_named: bool,
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

/// Who receives the user's data, money or orders: a recipient, an account, a command to run,
/// the address a write sends to (an upload's or a webhook's URL). Only the user's words, a
/// trusted system or a record the user designated (its fields, not its prose) may choose one; a
/// field of untrusted content is its author's choice (an outside message's sender, a listing's
/// seller account, a channel an outsider named, a "destination:" line).
fn is_party(kind: Option<SinkKind>) -> bool {
    matches!(
        kind,
        Some(SinkKind::Recipient | SinkKind::Account | SinkKind::Command | SinkKind::Url)
    )
}

impl Flow {
    pub fn of(tool: &Tool, call: &Call, provenance: &BTreeMap<String, ArgProvenance>) -> Flow {
        let mut flow = Flow::default();
        let mut sinks = 0;
        let mut trusted_sinks = 0;
        let (mut parties, mut parties_user_named) = (0, 0);
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
            // A party argument left empty (`cc: null`) names nobody.
            if is_party(sink_kind) && (p.unknown || !p.values.is_empty()) {
                parties += 1;
                parties_user_named += usize::from(p.user_named);
            }
            // A one-time code the tool asked for labels nothing: whoever wrote it selects nothing.
            let code = !sink && crate::tools::is_one_time_code(&crate::tools::words(arg));
            let label_like = sink || (!code && call.args.get(arg).is_some_and(is_short_text));
            if label_like && p.untrusted_prose_only {
                flow.steered_args.push(arg.clone());
            } else if is_party(sink_kind)
                && (p.untrusted_only || (p.designated_only && sink_kind != Some(SinkKind::Url)))
            {
                // A record the user designated gives the user's choice of a link (the page
                // Alice sent), as of most sinks; never of whom to write to or pay.
                flow.unvouched_party_args.push(arg.clone());
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
            // A secret may go where the tool asks for one (a `password`, an `api_key`): that is
            // how a credential is used. Anywhere else (a URL, a body, a form's values) it leaks.
            if p.confidentiality == Confidentiality::Secret
                && !warden_provenance::secret_key_name(arg)
            {
                flow.secret_args.push(arg.clone());
            }
        }
        flow.sinks_trusted = sinks > 0 && trusted_sinks == sinks;
        flow.parties_user_named = parties > 0 && parties_user_named == parties;
        flow
    }

    /// Take `args` out of the untrusted, steered and unvouched sink lists (see `parts_of_target`).
    pub fn set_aside(&mut self, args: &[String]) {
        if args.is_empty() {
            return;
        }
        self.untrusted_sink_args.retain(|a| !args.contains(a));
        self.steered_args.retain(|a| !args.contains(a));
        self.unvouched_party_args.retain(|a| !args.contains(a));
    }
}

pub const SESSION_TYPE: &str = "Warden::Session";
pub const AGENT_TYPE: &str = "Warden::Agent";
pub const USER_TYPE: &str = "Warden::User";
pub const ACTION_TYPE: &str = "Warden::Action";
/// The one action: a tool call.
pub const CALL_ACTION: &str = "call";

/// The attribute names the policies in force read (`context.flow.steered` reads `flow` and
/// `steered`; `resource.write` reads `write`). A call's context and entities carry only those:
/// no policy can read an attribute it does not name, so a decision builds no value nobody reads.
#[derive(Debug, Clone, Default)]
pub struct Read(Option<HashSet<SmolStr>>);

impl Read {
    /// Every attribute (for tools that show or check the whole context).
    pub fn all() -> Read {
        Read(None)
    }

    /// What these policy conditions read.
    pub fn of<'a>(conditions: impl IntoIterator<Item = &'a ast::Expr>) -> Read {
        let mut names = HashSet::new();
        for condition in conditions {
            for e in condition.subexpressions() {
                match e.expr_kind() {
                    ast::ExprKind::GetAttr { attr, .. } | ast::ExprKind::HasAttr { attr, .. } => {
                        names.insert(attr.clone());
                    }
                    ast::ExprKind::ExtHasAttr { attrs, .. } => {
                        names.extend(attrs.iter().cloned());
                    }
                    _ => {}
                }
            }
        }
        Read(Some(names))
    }

    fn wants(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|names| names.contains(name))
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
            session: t(SESSION_TYPE)?,
            profile: t(PROFILE_TYPE)?,
            agent: t(AGENT_TYPE)?,
            user: t(USER_TYPE)?,
            tool: t(TOOL_TYPE)?,
            action: ast::EntityUID::from_components(
                t(ACTION_TYPE)?,
                ast::Eid::new(CALL_ACTION),
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

/// What one call's Cedar view is built from.
pub struct Inputs<'a> {
    pub state: &'a SessionState,
    pub tool: &'a Tool,
    pub call: &'a Call,
    pub provenance: &'a BTreeMap<String, ArgProvenance>,
    pub flow: &'a Flow,
    pub anomaly: &'a Anomaly,
}

/// What one argument's `context.provenance.<arg>` record is built from.
pub struct ArgInputs<'a> {
    pub arg: &'a str,
    pub provenance: &'a ArgProvenance,
    pub tool: &'a Tool,
}

/// The Cedar type of a declared attribute, as the schema states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CedarType {
    Bool,
    Long,
    String,
    Decimal,
    SetOfLong,
    SetOfString,
}

/// One attribute with a fixed name: its Cedar type and how its value is read. The context
/// builder and the schema generator (`crate::schema`) both read these tables, so an attribute
/// added here is in both; a unit test checks that the values built have the declared types.
pub struct Field<G> {
    pub name: &'static str,
    pub ty: CedarType,
    pub get: G,
}

pub type CallField = Field<fn(&Inputs<'_>) -> Value>;
pub type ArgField = Field<fn(&ArgInputs<'_>) -> Value>;

const fn field<G>(name: &'static str, ty: CedarType, get: G) -> Field<G> {
    Field { name, ty, get }
}

use CedarType::{Bool, Long, SetOfLong, SetOfString, String as Str};

fn profile_of(i: &Inputs<'_>) -> Value {
    string(i.state.session.profile.as_deref().unwrap_or(""))
}

/// Attributes of the principal, `Warden::Session`.
pub const SESSION_ATTRS: &[CallField] = &[
    field("principal", Str, |i| string(&i.state.session.principal)),
    field("agent", Str, |i| string(&i.state.session.agent)),
    field("profile", Str, profile_of),
    field("channel", Str, |i| string(&i.state.session.channel)),
];

/// Attributes of the resource, `Warden::Tool`.
pub const TOOL_ATTRS: &[CallField] = &[
    field("name", Str, |i| string(&i.tool.name)),
    field("upstream", Str, |i| string(&i.tool.upstream)),
    field("read", Bool, |i| boolean(i.tool.read.value)),
    field("write", Bool, |i| boolean(i.tool.write.value)),
    field("destructive", Bool, |i| boolean(i.tool.destructive.value)),
    field("open_world", Bool, |i| boolean(i.tool.open_world.value)),
    field("returns", Str, |i| string(i.tool.returns.as_str())),
    field("sinks", SetOfString, |i| {
        strings(i.tool.sinks.iter().map(|s| &s.param))
    }),
    field("changed", Bool, |i| boolean(i.tool.changed.is_some())),
];

/// `context.session`.
pub const CONTEXT_SESSION: &[CallField] = &[
    field("id", Str, |i| string(&i.state.session.id)),
    field("principal", Str, |i| string(&i.state.session.principal)),
    field("agent", Str, |i| string(&i.state.session.agent)),
    field("profile", Str, profile_of),
    field("channel", Str, |i| string(&i.state.session.channel)),
    field("untrusted_seen", Bool, |i| boolean(i.state.untrusted_seen)),
    field("secret_seen", Bool, |i| boolean(i.state.secret_seen)),
    field("provenance_evicted", Long, |i| {
        long(i.state.index.evicted())
    }),
];

/// `context.provenance.<arg>`, one record per argument of the call.
pub const ARG_PROVENANCE: &[ArgField] = &[
    field("sources", SetOfLong, |a| {
        Value::set(a.provenance.sources.iter().map(|&s| long(s)), None)
    }),
    field("trusted", Bool, |a| boolean(a.provenance.trusted)),
    field("untrusted", Bool, |a| boolean(a.provenance.untrusted)),
    field("untrusted_only", Bool, |a| {
        boolean(a.provenance.untrusted_only)
    }),
    field("untrusted_prose_only", Bool, |a| {
        boolean(a.provenance.untrusted_prose_only)
    }),
    field("unknown", Bool, |a| boolean(a.provenance.unknown)),
    field("all_trusted", Bool, |a| boolean(a.provenance.all_trusted)),
    field("user_named", Bool, |a| boolean(a.provenance.user_named)),
    field("confidentiality", Str, |a| {
        string(a.provenance.confidentiality.as_str())
    }),
    field("sink", Str, |a| {
        string(a.tool.sink(a.arg).map_or("", |s| s.kind.as_str()))
    }),
];

/// `context.flow`.
pub const CONTEXT_FLOW: &[CallField] = &[
    field("untrusted_sink", Bool, |i| {
        boolean(!i.flow.untrusted_sink_args.is_empty())
    }),
    field("untrusted_sink_args", SetOfString, |i| {
        strings(&i.flow.untrusted_sink_args)
    }),
    field("steered", Bool, |i| {
        boolean(!i.flow.steered_args.is_empty())
    }),
    field("steered_args", SetOfString, |i| {
        strings(&i.flow.steered_args)
    }),
    field("unknown_sink", Bool, |i| {
        boolean(!i.flow.unknown_sink_args.is_empty())
    }),
    field("unknown_sink_args", SetOfString, |i| {
        strings(&i.flow.unknown_sink_args)
    }),
    field("unexplained_sink", Bool, |i| {
        boolean(!i.flow.unexplained_sink_args.is_empty())
    }),
    field("unexplained_sink_args", SetOfString, |i| {
        strings(&i.flow.unexplained_sink_args)
    }),
    field("unvouched_party", Bool, |i| {
        boolean(!i.flow.unvouched_party_args.is_empty())
    }),
    field("unvouched_party_args", SetOfString, |i| {
        strings(&i.flow.unvouched_party_args)
    }),
    field("egress", Bool, |i| boolean(!i.flow.egress_args.is_empty())),
    field("egress_args", SetOfString, |i| strings(&i.flow.egress_args)),
    field("steered_navigation", Bool, |i| {
        boolean(!i.flow.navigation_args.is_empty())
    }),
    field("steered_navigation_args", SetOfString, |i| {
        strings(&i.flow.navigation_args)
    }),
    field("steered_link", Bool, |i| {
        boolean(!i.flow.link_args.is_empty())
    }),
    field("steered_link_args", SetOfString, |i| {
        strings(&i.flow.link_args)
    }),
    field("secret_in_args", Bool, |i| {
        boolean(!i.flow.secret_args.is_empty())
    }),
    field("secret_args", SetOfString, |i| strings(&i.flow.secret_args)),
    field("internal_in_args", Bool, |i| {
        boolean(!i.flow.internal_args.is_empty())
    }),
    field("sinks_trusted", Bool, |i| boolean(i.flow.sinks_trusted)),
    field("parties_user_named", Bool, |i| {
        boolean(i.flow.parties_user_named)
    }),
];

/// `context.history`.
pub const CONTEXT_HISTORY: &[CallField] = &[
    field("calls", Long, |i| long(i.state.history.calls)),
    field("tool_calls", Long, |i| {
        long(
            i.state
                .history
                .per_tool
                .get(&i.call.tool)
                .copied()
                .unwrap_or(0),
        )
    }),
    field("allowed", Long, |i| long(i.state.history.allowed)),
    field("held", Long, |i| long(i.state.history.held)),
    field("denied", Long, |i| long(i.state.history.denied)),
];

/// `context.anomaly`.
pub const CONTEXT_ANOMALY: &[CallField] = &[
    // Cedar has no floats: the score in thousandths, 0..=1000.
    field("score", Long, |i| {
        long((i.anomaly.score.clamp(0.0, 1.0) * 1000.0).round() as u64)
    }),
    field("reasons", SetOfString, |i| {
        Value::set(i.anomaly.reasons.iter().map(|(r, _)| string(r)), None)
    }),
];

/// How a top-level record of the context is made.
pub enum Part {
    /// Fixed attributes.
    Record(&'static [CallField]),
    /// Named by the session or the agent (`task`, `args`): any names, any JSON values. The
    /// schema gives each policy the names it reads, as optional attributes.
    Params(for<'a> fn(&'a Inputs<'a>) -> &'a warden_model::Params),
    /// One `ARG_PROVENANCE` record per argument of the call.
    PerArg(&'static [ArgField]),
}

/// The context's top-level records, in the order the schema lists them.
pub const CONTEXT: &[(&str, Part)] = &[
    ("session", Part::Record(CONTEXT_SESSION)),
    ("task", Part::Params(|i| &i.state.session.task)),
    ("args", Part::Params(|i| &i.call.args)),
    ("provenance", Part::PerArg(ARG_PROVENANCE)),
    ("flow", Part::Record(CONTEXT_FLOW)),
    ("history", Part::Record(CONTEXT_HISTORY)),
    ("anomaly", Part::Record(CONTEXT_ANOMALY)),
];

/// The record of the `fields` the policies read, each valued by `value` from its getter.
fn record_of<G>(fields: &[Field<G>], read: &Read, value: impl Fn(&G) -> Value) -> Value {
    record(
        fields
            .iter()
            .filter(|f| read.wants(f.name))
            .map(|f| (f.name, value(&f.get))),
    )
}

fn attrs_of(
    fields: &'static [CallField],
    inputs: &Inputs<'_>,
    read: &Read,
) -> Vec<(SmolStr, PartialValue)> {
    fields
        .iter()
        .filter(|f| read.wants(f.name))
        .map(|f| {
            (
                SmolStr::new_static(f.name),
                PartialValue::from((f.get)(inputs)),
            )
        })
        .collect()
}

/// The Cedar entities and request for one call, built directly as Cedar values: going through
/// Cedar's restricted-expression evaluator costs about 0.2 µs per value, most of a decision.
pub fn build(
    types: &Types,
    read: &Read,
    state: &SessionState,
    tool: &Tool,
    call: &Call,
    provenance: &BTreeMap<String, ArgProvenance>,
    flow: &Flow,
    anomaly: &Anomaly,
) -> Result<(ast::Request, Entities), String> {
    let inputs = Inputs {
        state,
        tool,
        call,
        provenance,
        flow,
        anomaly,
    };
    let s = &state.session;
    let session_uid = uid(&types.session, &s.id);
    let mut parents = HashSet::from([uid(&types.agent, &s.agent), uid(&types.user, &s.principal)]);
    parents.insert(uid(
        &types.profile,
        s.profile.as_deref().unwrap_or(NO_PROFILE),
    ));
    let session_entity = ast::Entity::new_with_attr_partial_value(
        session_uid.clone(),
        attrs_of(SESSION_ATTRS, &inputs, read),
        HashSet::new(),
        parents,
        [],
    );
    let tool_uid = uid(&types.tool, &tool.name);
    let tool_entity = ast::Entity::new_with_attr_partial_value(
        tool_uid.clone(),
        attrs_of(TOOL_ATTRS, &inputs, read),
        HashSet::new(),
        HashSet::new(),
        [],
    );
    let context: BTreeMap<SmolStr, Value> = CONTEXT
        .iter()
        .filter(|(name, _)| read.wants(name))
        .map(|(name, part)| {
            let value = match part {
                Part::Record(fields) => record_of(fields, read, |get| get(&inputs)),
                Part::Params(get) => params(get(&inputs).iter()),
                Part::PerArg(fields) => Value::record(
                    provenance.iter().map(|(arg, p)| {
                        let a = ArgInputs {
                            arg,
                            provenance: p,
                            tool,
                        };
                        (arg.as_str(), record_of(fields, read, |get| get(&a)))
                    }),
                    None,
                ),
            };
            (SmolStr::new_static(name), value)
        })
        .collect();
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
            // A value an earlier write carried out of untrusted content is untrusted in
            // whatever result reads it back: the reason says which write.
            let sources: Vec<String> = m
                .sources
                .iter()
                .filter_map(|&seq| {
                    let source = state.index.source(seq)?;
                    let carried = state.carried_at(seq, &m.kind, &m.value);
                    let untrusted =
                        source.label.integrity == warden_model::Integrity::Untrusted;
                    (!only_untrusted || untrusted || carried.is_some()).then(|| match carried {
                        Some(c) => format!(
                            "{source}, where `{}` put it in session {} (step #{}) while it was known only from untrusted content",
                            c.tool, c.session, c.seq
                        ),
                        None => source.to_string(),
                    })
                })
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

/// The placeholders `render` fills; a `@reason` naming any other is refused at load.
pub const PLACEHOLDERS: &[&str] = &[
    "tool",
    "tool_change",
    "profile",
    "untrusted_sink",
    "steered",
    "unknown_sink",
    "unexplained_sink",
    "unvouched_party",
    "egress",
    "navigation",
    "links",
    "secret_args",
];

/// One piece of a reason template: text kept as written, or a `{name}` placeholder.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Split a reason template into text and placeholders, the way `render` and the loader read it.
/// `{{` and `}}` stand for one literal brace (so compiled profiles can quote any name), and a
/// brace that opens no placeholder-like name is text.
pub fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        if at > 0 {
            out.push(Piece::Text(&rest[..at]));
        }
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push(Piece::Text(&tail[..1]));
            rest = &tail[2..];
            continue;
        }
        let name = tail[1..].find('}').map(|close| &tail[1..1 + close]);
        match name {
            Some(name) if tail.starts_with('{') && is_placeholder_name(name) => {
                out.push(Piece::Placeholder(name));
                rest = &tail[name.len() + 2..];
            }
            _ => {
                out.push(Piece::Text(&tail[..1]));
                rest = &tail[1..];
            }
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// Quote text so that a reason template shows it as written: every brace doubled.
pub fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// Fill a reason template's placeholders from the call, in one pass: text a placeholder puts in
/// (a tool's name, an argument's value) is never read as a placeholder in turn.
pub fn render(
    template: &str,
    state: &SessionState,
    tool: &Tool,
    provenance: &BTreeMap<String, ArgProvenance>,
    flow: &Flow,
) -> String {
    let list = |args: &[String]| {
        args.iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template) {
        let name = match piece {
            Piece::Text(text) => {
                out.push_str(text);
                continue;
            }
            Piece::Placeholder(name) => name,
        };
        let filled = match name {
            "tool" => tool.name.clone(),
            "tool_change" => tool.changed.clone().unwrap_or_default(),
            "profile" => state.session.profile.clone().unwrap_or_else(|| "(none)".to_owned()),
            "untrusted_sink" => format!(
                "a value in {} was found only in untrusted content — {}",
                list(&flow.untrusted_sink_args),
                evidence(state, &flow.untrusted_sink_args, provenance, true)
            ),
            "steered" => format!(
                "{} carries a value the agent could only have read inside untrusted text — {}",
                list(&flow.steered_args),
                evidence(state, &flow.steered_args, provenance, true)
            ),
            "unvouched_party" => format!(
                "{} names who receives (a recipient, an account, a command, the address a write sends to) from untrusted content alone: neither the user's words nor a trusted system's data nor a record the user designated gives it — {}",
                list(&flow.unvouched_party_args),
                evidence(state, &flow.unvouched_party_args, provenance, true)
            ),
            "unknown_sink" => format!(
                "{} carries a value seen nowhere in this session",
                list(&flow.unknown_sink_args)
            ),
            "unexplained_sink" => format!(
                "{} carries a value that nothing trusted in this session gives (not the user's words, not a trusted system's data) while the session has read untrusted content",
                list(&flow.unexplained_sink_args)
            ),
            "egress" => format!(
                "{} sends data the agent filled into a link (a query, a path or a host name that no link the session read has as written) to a site that neither the user nor a trusted system gave",
                list(&flow.egress_args)
            ),
            "navigation" => format!(
                "{} leads the agent to an address that only untrusted text names, on a site that neither the user nor a trusted system gave — {}",
                list(&flow.navigation_args),
                evidence(state, &flow.navigation_args, provenance, true)
            ),
            "links" => {
                let untrusted = |seq: &u64| {
                    state.index.source(*seq).is_some_and(|s| {
                        s.label.integrity == warden_model::Integrity::Untrusted
                    })
                };
                let links: Vec<String> = flow
                    .link_args
                    .iter()
                    .filter_map(|a| provenance.get(a))
                    .flat_map(|p| p.values.iter())
                    .filter(|m| m.kind == "url" && m.sources.iter().all(untrusted))
                    .map(|m| {
                        let from: Vec<String> = m
                            .sources
                            .iter()
                            .filter_map(|&seq| state.index.source(seq).map(|s| s.to_string()))
                            .collect();
                        format!("\"{}\" comes from {}", m.value, from.join(", "))
                    })
                    .collect();
                format!(
                    "{} passes on a link that only untrusted text names, on a site that neither the user nor a trusted system gave — {}: whoever reads it is sent where that text chose",
                    list(&flow.link_args),
                    links.join(", ")
                )
            }
            "secret_args" => format!(
                "{} ({})",
                list(&flow.secret_args),
                evidence(state, &flow.secret_args, provenance, false)
            ),
            other => format!("{{{other}}}"),
        };
        out.push_str(&filled);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text as read, with each placeholder shown as `<name>`.
    fn read(template: &str) -> String {
        pieces(template)
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t.to_owned(),
                Piece::Placeholder(name) => format!("<{name}>"),
            })
            .collect()
    }

    #[test]
    fn pieces_read_placeholders_doubled_braces_and_stray_braces() {
        assert_eq!(
            read("a {tool} b {{x}} {not closed"),
            "a <tool> b {x} {not closed"
        );
        assert_eq!(read("{} {a b} }{steered}"), "{} {a b} }<steered>");
        assert_eq!(read("{{{tool}}}"), "{<tool>}");
    }

    #[test]
    fn escaped_text_reads_back_as_text_only() {
        for text in ["{A}", "{{tool}}", "}{", "{steered}x{", "plain"] {
            assert_eq!(read(&escape(text)), text);
        }
    }
}
