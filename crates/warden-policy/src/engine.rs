//! The Cedar engine: loads policy files (with `@id`, `@hold`, `@reason`), indexes them by the
//! entities in their scopes, and decides a call with the slice of the policy set that can apply.
//! Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use cedar_policy::{
    Effect, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint, ResourceConstraint,
};
use cedar_policy_core::ast;
use cedar_policy_core::entities::Entities;
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use warden_model::{Reason, Verdict};

use crate::context::escape;
use crate::PolicyError;

/// A policy file's text and the name to report it by (a path, or `<baseline>`).
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// One loaded policy: Cedar's policy, its condition built once (scope and body, as Cedar's own
/// authorizer would build it on every request), and what Warden reads from its annotations.
#[derive(Debug)]
struct Compiled {
    id: String,
    policy: Policy,
    condition: ast::Expr,
    effect: Effect,
    hold: bool,
    reason: Option<String>,
}

/// The policies that can apply to calls of one tool in sessions of one profile.
type Slice = Vec<Arc<Compiled>>;

/// Where a policy is filed in the index: the profile and the tool named in its scope, if any.
type IndexKey = (Option<String>, Option<String>);

#[derive(Debug)]
pub struct PolicyEngine {
    policies: BTreeMap<PolicyId, Arc<Compiled>>,
    by_key: HashMap<IndexKey, Vec<PolicyId>>,
    profiles: HashSet<String>,
    tools: HashSet<String>,
    slices: RwLock<HashMap<IndexKey, Arc<Slice>>>,
    /// The Cedar entity types of Warden's vocabulary.
    pub types: crate::context::Types,
    /// The attributes these policies read: what a call's context carries.
    pub read: crate::context::Read,
    /// A digest of the policy texts in force, for the audit log.
    pub digest: String,
}

/// The Cedar view of one call: entities and request, built by `context`.
pub struct CedarCall<'a> {
    pub request: &'a ast::Request,
    pub entities: &'a Entities,
    pub profile: Option<&'a str>,
    pub tool: &'a str,
}

/// What the engine decided, before Warden renders the reasons' templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
}

pub const PROFILE_TYPE: &str = "Warden::Profile";
/// The profile entity of sessions opened without a task profile; no task profile may be named so.
pub const NO_PROFILE: &str = "(none)";
pub const TOOL_TYPE: &str = "Warden::Tool";

fn entity_key(uid: &EntityUid, type_name: &str) -> Option<String> {
    (uid.type_name().to_string() == type_name).then(|| uid.id().unescaped().to_owned())
}

impl PolicyEngine {
    /// Parse and index policy files. Every error names its file, line and column.
    pub fn load(sources: &[PolicySource]) -> Result<Self, PolicyError> {
        Self::load_with(sources, true)
    }

    /// Like `load`, with the index switched off when `indexed` is false: every call is evaluated
    /// against the whole set. For benchmarks and for tests that the index changes no decision.
    pub fn load_with(sources: &[PolicySource], indexed: bool) -> Result<Self, PolicyError> {
        let mut policies = BTreeMap::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut digest_input = String::new();
        for src in sources {
            digest_input.push_str(&src.name);
            digest_input.push('\n');
            digest_input.push_str(&src.text);
            let set = PolicySet::from_str(&src.text).map_err(|e| {
                use miette::Diagnostic;
                let offset = e
                    .labels()
                    .and_then(|mut l| l.next())
                    .map_or(0, |l| l.offset());
                let (line, col) = crate::line_col(&src.text, offset);
                let help = e.help().map(|h| format!(" ({h})")).unwrap_or_default();
                PolicyError::Parse {
                    file: src.name.clone(),
                    line,
                    col,
                    message: format!("{}{help}", first_error(&e)),
                }
            })?;
            if set.templates().next().is_some() {
                return Err(PolicyError::Invalid {
                    file: src.name.clone(),
                    policy: "template".into(),
                    message: "policy templates (with ?principal/?resource slots) are not supported"
                        .into(),
                });
            }
            for (n, p) in set.policies().enumerate() {
                let id = p
                    .annotation("id")
                    .map_or_else(|| format!("{}#{}", src.name, n + 1), str::to_owned);
                if id.starts_with("warden.") {
                    return Err(PolicyError::Invalid {
                        file: src.name.clone(),
                        policy: id,
                        message: "@id values starting with `warden.` are reserved".into(),
                    });
                }
                if let Some(first) = seen.insert(id.clone(), src.name.clone()) {
                    return Err(PolicyError::Invalid {
                        file: src.name.clone(),
                        policy: id,
                        message: format!("duplicate @id (first defined in {first})"),
                    });
                }
                let hold = p.annotation("hold").is_some();
                if hold && p.effect() == cedar_policy::Effect::Permit {
                    return Err(PolicyError::Invalid {
                        file: src.name.clone(),
                        policy: id,
                        message: "@hold applies to forbid policies only".into(),
                    });
                }
                let pid = PolicyId::new(&id);
                let policy = p.new_id(pid.clone());
                crate::schema::check(src, &id, &policy)?;
                let condition =
                    located_free_condition(&policy).map_err(|message| PolicyError::Invalid {
                        file: src.name.clone(),
                        policy: id.clone(),
                        message,
                    })?;
                let compiled = Compiled {
                    reason: p.annotation("reason").map(str::to_owned),
                    effect: p.effect(),
                    id,
                    policy,
                    condition,
                    hold,
                };
                policies.insert(pid, Arc::new(compiled));
            }
        }
        let mut by_key: HashMap<IndexKey, Vec<PolicyId>> = HashMap::new();
        let (mut profiles, mut tools) = (HashSet::new(), HashSet::new());
        for (id, c) in &policies {
            let p = &c.policy;
            let profile = match p.principal_constraint() {
                PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid) => {
                    entity_key(&uid, PROFILE_TYPE)
                }
                _ => None,
            };
            let tool = match p.resource_constraint() {
                ResourceConstraint::Eq(uid) => entity_key(&uid, TOOL_TYPE),
                _ => None,
            };
            let (profile, tool) = if indexed {
                (profile, tool)
            } else {
                (None, None)
            };
            profiles.extend(profile.clone());
            tools.extend(tool.clone());
            by_key.entry((profile, tool)).or_default().push(id.clone());
        }
        let read = crate::context::Read::of(policies.values().map(|c| &c.condition));
        Ok(PolicyEngine {
            read,
            policies,
            by_key,
            profiles,
            tools,
            slices: RwLock::new(HashMap::new()),
            types: crate::context::Types::new().map_err(|message| PolicyError::Invalid {
                file: "<internal>".into(),
                policy: "types".into(),
                message,
            })?,
            digest: crate::digest(&digest_input),
        })
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policy ids and texts in force, for `warden policy show` and the dashboard.
    pub fn texts(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.policies
            .iter()
            .map(|(id, c)| (id.to_string(), c.policy.to_string()))
    }

    /// Whether any permit could ever let this profile use this tool: the tools a session may see.
    pub fn may_permit(&self, profile: Option<&str>, tool: &str) -> bool {
        let slice = self.slice(profile, tool);
        let any_permit = slice.iter().any(|c| c.effect == Effect::Permit);
        any_permit
    }

    /// The policies that can apply to a call of `tool` in a session of `profile`: those whose
    /// scope names that profile (or no profile) and that tool (or no tool). Cedar checks the
    /// scope again, so the slice only has to be a superset of what applies.
    fn slice(&self, profile: Option<&str>, tool: &str) -> Arc<Slice> {
        let profile = Some(profile.unwrap_or(NO_PROFILE))
            .filter(|p| self.profiles.contains(*p))
            .map(str::to_owned);
        let tool = self.tools.contains(tool).then(|| tool.to_owned());
        let key = (profile, tool);
        if let Some(s) = self.slices.read().ok().and_then(|m| m.get(&key).cloned()) {
            return s;
        }
        let mut ids: Vec<&PolicyId> = Vec::new();
        let profiles: HashSet<&Option<String>> = [&None, &key.0].into_iter().collect();
        let tools: HashSet<&Option<String>> = [&None, &key.1].into_iter().collect();
        for &p in &profiles {
            for &t in &tools {
                if let Some(v) = self.by_key.get(&(p.clone(), t.clone())) {
                    ids.extend(v);
                }
            }
        }
        ids.sort();
        let slice: Arc<Slice> = Arc::new(
            ids.into_iter()
                .filter_map(|id| self.policies.get(id).cloned())
                .collect(),
        );
        if let Ok(mut m) = self.slices.write() {
            m.insert(key, slice.clone());
        }
        slice
    }

    /// Evaluate every policy of the slice with Cedar's evaluator: which are satisfied, and which
    /// could not be evaluated. This is Cedar's authorizer loop over pre-built conditions.
    pub fn evaluate(&self, call: &CedarCall<'_>) -> Evaluation {
        let slice = self.slice(call.profile, call.tool);
        let evaluator = Evaluator::new(
            call.request.clone(),
            call.entities,
            Extensions::all_available(),
        );
        let no_slots = ast::SlotEnv::new();
        let mut out = Evaluation::default();
        for c in slice.iter() {
            // A condition is a conjunction, so Cedar makes it a Boolean or an error.
            match evaluator.interpret(&c.condition, &no_slots) {
                Ok(v) => match v.value_kind() {
                    ast::ValueKind::Lit(ast::Literal::Bool(true)) => out.satisfied.push(c.clone()),
                    ast::ValueKind::Lit(ast::Literal::Bool(false)) => {}
                    other => out.errors.push((
                        c.id.clone(),
                        format!("condition evaluated to {other}, not a Boolean"),
                    )),
                },
                Err(e) => out.errors.push((c.id.clone(), e.to_string())),
            }
        }
        out
    }

    /// Decide one call. Any evaluation error denies, naming the policy and the error; else a
    /// satisfied plain `forbid` denies; else no satisfied permit denies (default deny); else a
    /// satisfied `@hold` forbid holds; else allow.
    pub fn decide(&self, call: &CedarCall<'_>) -> Outcome {
        let evaluation = self.evaluate(call);
        let deny = |reasons| Outcome {
            verdict: Verdict::Deny,
            reasons,
        };
        if !evaluation.errors.is_empty() {
            return deny(
                evaluation
                    .errors
                    .into_iter()
                    .map(|(policy, error)| Reason {
                        policy,
                        message: escape(&format!(
                            "policy could not be evaluated, so the call is refused: {error}"
                        )),
                    })
                    .collect(),
            );
        }
        let reasons = |pick: &dyn Fn(&Compiled) -> bool| -> Vec<Reason> {
            evaluation
                .satisfied
                .iter()
                .filter(|c| pick(c))
                .map(|c| Reason {
                    policy: c.id.clone(),
                    message: c
                        .reason
                        .clone()
                        .unwrap_or_else(|| escape(&format!("policy `{}` decided", c.id))),
                })
                .collect()
        };
        let forbids = reasons(&|c| c.effect == Effect::Forbid && !c.hold);
        if !forbids.is_empty() {
            return deny(forbids);
        }
        let permits = reasons(&|c| c.effect == Effect::Permit);
        if permits.is_empty() {
            return deny(vec![Reason {
                policy: "default-deny".into(),
                message: escape(&match call.profile {
                    Some(p) => format!(
                        "`{}` is not among the tools of task profile `{p}`",
                        call.tool
                    ),
                    None => format!("no policy permits `{}`", call.tool),
                }),
            }]);
        }
        let holds = reasons(&|c| c.hold);
        if !holds.is_empty() {
            return Outcome {
                verdict: Verdict::Hold,
                reasons: holds,
            };
        }
        Outcome {
            verdict: Verdict::Allow,
            reasons: permits,
        }
    }
}

/// The policies of a slice that were satisfied, in id order, and those whose evaluation failed.
#[derive(Debug, Default)]
pub struct Evaluation {
    satisfied: Vec<Arc<Compiled>>,
    /// (policy id, error)
    pub errors: Vec<(String, String)>,
}

impl Evaluation {
    /// Ids of the satisfied permits and forbids.
    pub fn satisfied(&self) -> (Vec<String>, Vec<String>) {
        let ids = |e: Effect| {
            self.satisfied
                .iter()
                .filter(|c| c.effect == e)
                .map(|c| c.id.clone())
                .collect()
        };
        (ids(Effect::Permit), ids(Effect::Forbid))
    }
}

/// The policy's condition as Cedar's authorizer builds it, from a copy of the policy that went
/// through Cedar's JSON form and so carries no source locations: Cedar's evaluator then does not
/// copy them onto every intermediate value, about a third of its time per policy.
fn located_free_condition(policy: &Policy) -> Result<ast::Expr, String> {
    let json = policy.to_json().map_err(|e| e.to_string())?;
    let plain = Policy::from_json(Some(policy.id().clone()), json).map_err(|e| e.to_string())?;
    Ok(AsRef::<ast::Policy>::as_ref(&plain).condition())
}

fn first_error(e: &cedar_policy::ParseErrors) -> String {
    e.iter()
        .next()
        .map_or_else(|| e.to_string(), ToString::to_string)
}
