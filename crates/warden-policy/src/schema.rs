//! The Cedar schema of Warden's entities, action and context, generated from the tables that
//! `context` builds them from (so the two cannot drift), and the check of every policy against
//! it with Cedar's own validator in strict mode, plus Warden's annotations and reason templates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cedar_policy::{Policy, PolicySet, Schema, ValidationMode, ValidationWarning, Validator};
use cedar_policy_core::ast::{self, ExprKind, Var};
use miette::Diagnostic;

use crate::context::{
    CedarType, Part, AGENT_TYPE, CALL_ACTION, CONTEXT, PLACEHOLDERS, SESSION_ATTRS, SESSION_TYPE,
    TOOL_ATTRS, USER_TYPE,
};
use crate::engine::{PolicySource, PROFILE_TYPE, TOOL_TYPE};
use crate::PolicyError;

/// The annotations Warden reads; any other is refused (a typo such as `@idd` would otherwise
/// silently drop the policy's id).
pub const ANNOTATIONS: &[&str] = &["id", "hold", "reason"];

/// The names a policy reads in the context's open records (`task`, `args`, `provenance`), with
/// the Cedar type assumed for each value named by the session or the agent. The schema a policy
/// is checked against declares exactly these, as optional attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dynamic {
    /// Part name (`task`, `args`) → attribute → type.
    pub params: BTreeMap<String, BTreeMap<String, CedarType>>,
    /// Arguments named under `context.provenance`.
    pub per_arg: BTreeSet<String>,
}

/// The types tried for a value named by the session or the agent, in order.
const CANDIDATES: &[CedarType] = &[
    CedarType::String,
    CedarType::Long,
    CedarType::Bool,
    CedarType::SetOfString,
    CedarType::SetOfLong,
    CedarType::Decimal,
];

fn local(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

fn type_text(t: CedarType) -> &'static str {
    match t {
        CedarType::Bool => "Bool",
        CedarType::Long => "Long",
        CedarType::String => "String",
        CedarType::Decimal => "decimal",
        CedarType::SetOfLong => "Set<Long>",
        CedarType::SetOfString => "Set<String>",
    }
}

/// An attribute name as the schema syntax takes it: bare if it is an identifier, else quoted.
fn attr_name(name: &str) -> String {
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident {
        name.to_owned()
    } else {
        crate::profile::cedar_str(name)
    }
}

/// A record type, one attribute a line at `indent`.
fn record_text<'a>(indent: usize, fields: impl Iterator<Item = (&'a str, bool, String)>) -> String {
    let pad = " ".repeat(indent);
    let lines: Vec<String> = fields
        .map(|(name, required, ty)| {
            let mark = if required { "" } else { "?" };
            format!("{pad}  {}{mark}: {ty}", attr_name(name))
        })
        .collect();
    if lines.is_empty() {
        "{}".to_owned()
    } else {
        format!("{{\n{}\n{pad}}}", lines.join(",\n"))
    }
}

fn fixed_text(indent: usize, fields: &[crate::context::CallField]) -> String {
    record_text(
        indent,
        fields
            .iter()
            .map(|f| (f.name, true, type_text(f.ty).to_owned())),
    )
}

/// The schema in Cedar's schema syntax, with the open records holding `dynamic`'s names: what
/// policies are validated against, and what `warden policy show --schema` prints.
pub fn schema_source(dynamic: &Dynamic) -> String {
    let context = record_text(
        4,
        CONTEXT.iter().map(|(name, part)| {
            let t = match part {
                Part::Record(fields) => fixed_text(6, fields),
                Part::Params(_) => record_text(
                    6,
                    dynamic
                        .params
                        .get(*name)
                        .into_iter()
                        .flatten()
                        .map(|(k, t)| (k.as_str(), false, type_text(*t).to_owned())),
                ),
                Part::PerArg(_) => record_text(
                    6,
                    dynamic
                        .per_arg
                        .iter()
                        .map(|k| (k.as_str(), false, "ArgProvenance".to_owned())),
                ),
            };
            (*name, true, t)
        }),
    );
    let per_arg = CONTEXT.iter().find_map(|(_, p)| match p {
        Part::PerArg(fields) => Some(*fields),
        _ => None,
    });
    let arg_provenance = record_text(
        2,
        per_arg
            .unwrap_or_default()
            .iter()
            .map(|f| (f.name, true, type_text(f.ty).to_owned())),
    );
    let (namespace, session) = SESSION_TYPE
        .split_once("::")
        .unwrap_or(("Warden", SESSION_TYPE));
    format!(
        "namespace {namespace} {{\n  \
           type ArgProvenance = {arg_provenance};\n  \
           entity {profile}, {agent}, {user};\n  \
           entity {session} in [{profile}, {agent}, {user}] = {session_attrs};\n  \
           entity {tool} = {tool_attrs};\n  \
           action {action} appliesTo {{\n    \
             principal: [{session}],\n    \
             resource: [{tool}],\n    \
             context: {context}\n  \
           }};\n\
         }}\n",
        profile = local(PROFILE_TYPE),
        agent = local(AGENT_TYPE),
        user = local(USER_TYPE),
        tool = local(TOOL_TYPE),
        session_attrs = fixed_text(2, SESSION_ATTRS),
        tool_attrs = fixed_text(2, TOOL_ATTRS),
        action = crate::profile::cedar_str(CALL_ACTION),
    )
}

/// The schema a policy reading `dynamic`'s names is checked against.
pub fn schema(dynamic: &Dynamic) -> Result<Schema, String> {
    Schema::from_cedarschema_str(&schema_source(dynamic))
        .map(|(schema, _warnings)| schema)
        .map_err(|e| format!("Warden's schema: {e}"))
}

/// The schema for operators (`warden policy show --schema`), with what the open records hold.
pub fn schema_text() -> Result<String, String> {
    schema(&Dynamic::default())?;
    let open: Vec<String> = CONTEXT
        .iter()
        .filter(|(_, p)| !matches!(p, Part::Record(_)))
        .map(|(n, _)| format!("context.{n}"))
        .collect();
    Ok(format!(
        "// Warden's Cedar schema, generated from the code that builds the entities and context.\n\
         // {} hold one attribute per task parameter or argument.\n\
         // Each policy is checked with the names it reads declared as optional attributes (test\n\
         // them with `has` first). A task or argument value is given the first of String, Long,\n\
         // Bool, Set<String>, Set<Long>, decimal with which the policy validates; each\n\
         // `context.provenance.<arg>` is an ArgProvenance.\n{}",
        open.join(", "),
        schema_source(&Dynamic::default())
    ))
}

/// The names a policy reads under `context.<open record>`.
fn dynamic_names(policy: &ast::Policy) -> BTreeMap<&'static str, BTreeSet<String>> {
    let open: Vec<&'static str> = CONTEXT
        .iter()
        .filter(|(_, p)| !matches!(p, Part::Record(_)))
        .map(|(n, _)| *n)
        .collect();
    let part_of = |e: &ast::Expr| -> Option<&'static str> {
        match e.expr_kind() {
            ExprKind::GetAttr { expr, attr }
                if matches!(expr.expr_kind(), ExprKind::Var(Var::Context)) =>
            {
                open.iter().copied().find(|n| *n == attr.as_str())
            }
            _ => None,
        }
    };
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let Some(body) = policy.non_scope_constraints() else {
        return out;
    };
    for e in body.subexpressions() {
        let found = match e.expr_kind() {
            ExprKind::GetAttr { expr, attr } | ExprKind::HasAttr { expr, attr } => {
                part_of(expr).map(|p| (p, attr.to_string()))
            }
            ExprKind::ExtHasAttr { expr, attrs } => {
                let mut names = attrs.iter();
                match (part_of(expr), expr.expr_kind()) {
                    (Some(p), _) => Some((p, attrs.first().to_string())),
                    (None, ExprKind::Var(Var::Context)) => match (names.next(), names.next()) {
                        (Some(p), Some(a)) => open
                            .iter()
                            .copied()
                            .find(|n| *n == p.as_str())
                            .map(|p| (p, a.to_string())),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some((part, attr)) = found {
            out.entry(part).or_default().insert(attr);
        }
    }
    out
}

/// One finding of the check: where (a byte offset in the file) and what.
struct Finding {
    offset: usize,
    message: String,
}

/// The validators built so far, by `Dynamic`, shared by every load: building a schema costs
/// milliseconds, and a process loads the same few shapes again and again (reloads, tests).
fn validator(dynamic: &Dynamic) -> Result<Arc<Validator>, String> {
    static BUILT: OnceLock<Mutex<HashMap<Dynamic, Arc<Validator>>>> = OnceLock::new();
    const MAX_KEPT: usize = 1024;
    let built = BUILT.get_or_init(Mutex::default);
    let lock = || built.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = lock().get(dynamic) {
        return Ok(v.clone());
    }
    let v = Arc::new(Validator::new(schema(dynamic)?));
    let mut map = lock();
    if map.len() >= MAX_KEPT {
        map.clear();
    }
    map.insert(dynamic.clone(), v.clone());
    Ok(v)
}

/// Check one policy of a file: annotations, reason placeholders, then Cedar's strict
/// validation. The error names the file, line and column.
pub(crate) fn check(src: &PolicySource, id: &str, policy: &Policy) -> Result<(), PolicyError> {
    let core: &ast::Policy = policy.as_ref();
    let at = |offset: usize, message: String| {
        let (line, col) = crate::line_col(&src.text, offset);
        PolicyError::Validation {
            file: src.name.clone(),
            line,
            col,
            policy: id.to_owned(),
            message,
        }
    };
    let start = core.loc().map_or(0, |l| l.span.offset());
    for (key, annotation) in core.annotations() {
        let offset = annotation.loc.as_ref().map_or(start, |l| l.span.offset());
        let key = key.as_ref();
        if !ANNOTATIONS.contains(&key) {
            let known: Vec<String> = ANNOTATIONS.iter().map(|a| format!("@{a}")).collect();
            return Err(at(
                offset,
                format!(
                    "unknown annotation `@{key}`: Warden reads only {}",
                    known.join(", ")
                ),
            ));
        }
        if key == "reason" {
            if let Some(p) = unknown_placeholder(&annotation.val) {
                return Err(at(offset, unknown_placeholder_message(p)));
            }
        }
    }
    let findings = validate(policy).map_err(|m| at(start, m))?;
    match findings.first() {
        None => Ok(()),
        Some(first) => {
            let more = match findings.len() - 1 {
                0 => String::new(),
                n => format!(" (and {n} more in this policy)"),
            };
            Err(at(first.offset, format!("{}{more}", first.message)))
        }
    }
}

/// Cedar's strict validation of one policy. A value named by the session or the agent has
/// no type Warden knows, so each is given the candidate types in turn (all alike first,
/// then one at a time): the findings are those of the assignment with the fewest.
fn validate(policy: &Policy) -> Result<Vec<Finding>, String> {
    let names = dynamic_names(policy.as_ref());
    let mut dynamic = Dynamic::default();
    for (part, attrs) in &names {
        let is_per_arg = CONTEXT
            .iter()
            .any(|(n, p)| n == part && matches!(p, Part::PerArg(_)));
        if is_per_arg {
            dynamic.per_arg.extend(attrs.iter().cloned());
        } else {
            dynamic.params.insert(
                (*part).to_owned(),
                attrs
                    .iter()
                    .map(|a| (a.clone(), CedarType::String))
                    .collect(),
            );
        }
    }
    let mut best = findings(policy, &dynamic)?;
    if best.is_empty() {
        return Ok(best);
    }
    let slots: Vec<(String, String)> = dynamic
        .params
        .iter()
        .flat_map(|(p, attrs)| attrs.keys().map(move |a| (p.clone(), a.clone())))
        .collect();
    if slots.is_empty() {
        return Ok(best);
    }
    let set = |d: &mut Dynamic, (p, a): &(String, String), t: CedarType| {
        if let Some(slot) = d.params.get_mut(p).and_then(|m| m.get_mut(a)) {
            *slot = t;
        }
    };
    let mut best_dynamic = dynamic.clone();
    for &t in &CANDIDATES[1..] {
        let mut d = dynamic.clone();
        slots.iter().for_each(|s| set(&mut d, s, t));
        let f = findings(policy, &d)?;
        if f.len() < best.len() {
            (best, best_dynamic) = (f, d);
            if best.is_empty() {
                return Ok(best);
            }
        }
    }
    for slot in &slots {
        for &t in CANDIDATES {
            let mut d = best_dynamic.clone();
            set(&mut d, slot, t);
            let f = findings(policy, &d)?;
            if f.len() < best.len() {
                (best, best_dynamic) = (f, d);
                if best.is_empty() {
                    return Ok(best);
                }
            }
        }
    }
    for f in best
        .iter_mut()
        .filter(|f| !f.message.contains("optional attribute"))
    {
        f.message.push_str(
            "; Warden checked the policy with each value it reads under context.task and \
                 context.args as a String, Long, Boolean, Set<String>, Set<Long> or decimal, \
                 and none fits (a nested record cannot be checked)",
        );
    }
    Ok(best)
}

fn findings(policy: &Policy, dynamic: &Dynamic) -> Result<Vec<Finding>, String> {
    let validator = validator(dynamic)?;
    let mut set = PolicySet::new();
    set.add(policy.clone()).map_err(|e| e.to_string())?;
    let result = validator.validate(&set, ValidationMode::Strict);
    let offset = |d: &dyn Diagnostic| {
        d.labels()
            .and_then(|mut l| l.next())
            .map_or(0, |l| l.offset())
    };
    // Cedar's messages start "for policy `id`, ": Warden's error names the policy already.
    let prefix = format!("for policy `{}`, ", policy.id());
    let describe = |d: &dyn Diagnostic| {
        let text = d.to_string();
        let text = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
        match d.help() {
            Some(h) => format!("{text} ({h})"),
            None => text,
        }
    };
    let mut out: Vec<Finding> = result
        .validation_errors()
        .map(|e| Finding {
            offset: offset(e),
            message: describe(e),
        })
        .collect();
    // A policy that can never apply is a mistake (an entity type or action it can never
    // meet): an operator's forbid silently doing nothing is what the check is for.
    out.extend(
        result
            .validation_warnings()
            .filter(|w| {
                matches!(
                    w,
                    ValidationWarning::ImpossiblePolicy(_)
                        | ValidationWarning::InvalidActionApplication(_)
                )
            })
            .map(|w| Finding {
                offset: offset(w),
                message: describe(w),
            }),
    );
    Ok(out)
}

/// What is wrong with a reason that uses placeholder `{p}`, which Warden does not fill.
pub(crate) fn unknown_placeholder_message(p: &str) -> String {
    let known: Vec<String> = PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect();
    format!(
        "@reason uses the unknown placeholder `{{{p}}}`: reasons may use {}",
        known.join(", ")
    )
}

/// The first `{name}` in a reason template that Warden does not fill.
pub(crate) fn unknown_placeholder(template: &str) -> Option<&str> {
    crate::context::pieces(template)
        .into_iter()
        .find_map(|piece| match piece {
            crate::context::Piece::Placeholder(name) if !PLACEHOLDERS.contains(&name) => Some(name),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_parses_and_prints() {
        let text = schema_text().expect("schema");
        assert!(
            text.contains("entity Session in [Profile, Agent, User] = {"),
            "{text}"
        );
        assert!(text.contains("untrusted_prose_only"), "{text}");
    }

    #[test]
    fn an_unknown_placeholder_is_found_and_known_ones_are_not() {
        assert_eq!(
            unknown_placeholder("`{tool}` in {profile}: {steered}"),
            None
        );
        assert_eq!(unknown_placeholder("{tool} {tol}"), Some("tol"));
        assert_eq!(unknown_placeholder("a set {} and a lone { brace"), None);
    }
}
