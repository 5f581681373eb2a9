//! Warden's decision core: tool traits, task profiles compiled to Cedar, the indexed Cedar engine
//! and the policy context. `decide(&engine, &state, &tool, &call) -> Decision` is a pure function.

pub mod context;
pub mod engine;
pub mod profile;
pub mod schema;
pub mod session;
pub mod tools;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use warden_model::{Anomaly, ArgProvenance, Call, Decision, Reason, Tool, Verdict};

pub use engine::{PolicyEngine, PolicySource};
pub use profile::{Confirm, TaskProfile};
pub use session::{History, SessionState, Step};
pub use tools::{ToolConfig, ToolSpec};

/// The built-in baseline policy, safe with zero configuration.
pub const BASELINE: &str = include_str!("../policies/baseline.cedar");

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}:{col}: {message}")]
    Parse {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{file}: policy `{policy}`: {message}")]
    Invalid {
        file: String,
        policy: String,
        message: String,
    },
    /// The policy parses but does not fit Warden's schema, annotations or reason placeholders.
    #[error("{file}:{line}:{col}: policy `{policy}`: {message}")]
    Validation {
        file: String,
        line: usize,
        col: usize,
        policy: String,
        message: String,
    },
    #[error("task profile `{profile}`: {message}")]
    Profile { profile: String, message: String },
}

/// The 1-based line and column (in characters) of a byte offset: where errors in policy,
/// profile and config files point.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    // An offset from a parser may fall inside a multibyte character: count from its start.
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Identifier arguments the agent read only from the very resource this write targets (a form's
/// field ids on the page at the `url` it submits to): they name a part of that target, not a
/// new one, so they are judged by the target's provenance. Applies only when the target itself
/// is trusted (the user named it, or a trusted system gave it) and every untrusted source of the
/// argument is a recent read of that target.
fn parts_of_target(
    state: &SessionState,
    tool: &Tool,
    call: &Call,
    provenance: &BTreeMap<String, ArgProvenance>,
) -> Vec<String> {
    use warden_model::{Integrity, Origin, SinkKind};
    let targets: Vec<std::collections::HashSet<u64>> = call
        .args
        .iter()
        .filter(|(arg, _)| {
            tool.sink(arg).is_some_and(|s| {
                matches!(
                    s.kind,
                    SinkKind::Url | SinkKind::Path | SinkKind::Identifier
                )
            }) && provenance.get(*arg).is_some_and(|p| p.all_trusted)
        })
        .map(|(_, v)| warden_provenance::ProvenanceIndex::keys_of(v).targets)
        .filter(|keys| !keys.is_empty())
        .collect();
    if targets.is_empty() {
        return Vec::new();
    }
    let read_from_target = |seq: u64| {
        let Some(source) = state.index.source(seq) else {
            return false;
        };
        if source.label.integrity == Integrity::Trusted {
            return true;
        }
        let Origin::ToolResult { call_id, .. } = &source.label.origin else {
            return false;
        };
        state
            .read_from(call_id)
            .is_some_and(|read| targets.iter().any(|t| !t.is_disjoint(read)))
    };
    provenance
        .iter()
        .filter(|(arg, p)| {
            tool.sink(arg)
                .is_some_and(|s| s.kind == SinkKind::Identifier)
                && p.untrusted_only
                && !p.values.is_empty()
                && p.values
                    .iter()
                    .all(|m| m.sources.iter().all(|&seq| read_from_target(seq)))
        })
        .map(|(arg, _)| arg.clone())
        .collect()
}

/// URL arguments of an open-world tool (read or write) whose address only untrusted prose named
/// (`flow.steered_args`: not the user, not a trusted system, not a record's field, not a record
/// the user designated) and whose site no trusted content names: where the agent goes was an
/// outsider's choice. A page visit can be the attack itself (a tracking or phishing link, a
/// download, a link that acts); following a link within a site the user or a trusted system
/// gave, or a link a listing holds as a field (a search result), stays allowed.
fn steered_navigation(
    state: &SessionState,
    tool: &Tool,
    call: &Call,
    flow: &context::Flow,
) -> Vec<String> {
    if !tool.open_world.value || delegates_links(state) {
        return Vec::new();
    }
    flow.steered_args
        .iter()
        .filter(|arg| {
            tool.sink(arg)
                .is_some_and(|s| s.kind == warden_model::SinkKind::Url)
        })
        .filter(|arg| {
            call.args
                .get(arg.as_str())
                .and_then(|v| v.as_str())
                .is_none_or(|url| !state.index.site_trusted(url))
        })
        .cloned()
        .collect()
}

/// Text arguments of a write (a message's body, a post, a comment) that pass on a link only
/// untrusted prose named, on a site no trusted content names: the reader is sent where an
/// outsider chose — a phishing or tracking link is an injection's payload as surely as a
/// recipient is. Sink arguments are judged as sinks already; a user who asked the agent to pass
/// on links it reads delegated the choice.
fn steered_links(
    state: &SessionState,
    tool: &Tool,
    provenance: &BTreeMap<String, ArgProvenance>,
    flow: &context::Flow,
) -> Vec<String> {
    if !(tool.write.value || tool.destructive.value) || delegates_links(state) {
        return Vec::new();
    }
    provenance
        .iter()
        .filter(|(arg, _)| tool.sink(arg).is_none() && !flow.steered_args.contains(arg))
        .filter(|(_, p)| {
            p.values
                .iter()
                .any(|m| m.kind == "url" && state.index.link_chosen_in_prose(&m.value))
        })
        .map(|(arg, _)| arg.clone())
        .collect()
}

/// Words with which the user asks the agent to follow links.
const LINK_WORDS: &[&str] = &[
    "link", "links", "url", "urls", "website", "websites", "webpage", "webpages", "site", "sites",
];

/// Whether the user asked the agent to follow links the user did not give ("open the tracking
/// link in the courier's e-mail", "summarise the websites posted in the channel"): then which
/// link the agent follows is the task the user delegated. A user who gave the addresses
/// delegated nothing.
fn delegates_links(state: &SessionState) -> bool {
    let index = &state.index;
    !index.user_gave_link() && LINK_WORDS.iter().any(|w| index.user_said_word(w))
}

/// URL arguments of an open-world tool that send data the agent filled in: no content the
/// session read holds the link as written (the agent composed or completed it), the link carries
/// something beyond its site (a query value, a path, a host name label the agent put before the
/// site), and no trusted content names the address (the link without its query) or its site.
/// Following a link as written is navigation; filling data into one is egress, in a path or a
/// host name as surely as in a query string.
fn composed_egress(
    state: &SessionState,
    tool: &Tool,
    call: &Call,
    provenance: &BTreeMap<String, ArgProvenance>,
) -> Vec<String> {
    if !tool.open_world.value {
        return Vec::new();
    }
    call.args
        .iter()
        .filter(|(arg, _)| {
            tool.sink(arg)
                .is_some_and(|s| s.kind == warden_model::SinkKind::Url)
        })
        .filter_map(|(arg, value)| {
            let url = value.as_str()?.trim();
            let p = provenance.get(arg)?;
            if p.all_trusted || p.values.iter().any(|m| m.kind == "url") {
                return None;
            }
            let (address, query) = url.split_once('?').unwrap_or((url, ""));
            let query = query.split('#').next().unwrap_or_default();
            let in_query = query
                .split('&')
                .any(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()));
            if !in_query && !beyond_site(address) {
                return None;
            }
            // The site first: when the user or a trusted system gave it, its address needs no
            // look-up of its own.
            let trusted = state.index.site_trusted(url)
                || state
                    .index
                    .provenance(&serde_json::Value::String(address.to_owned()))
                    .all_trusted;
            (!trusted).then(|| arg.clone())
        })
        .collect()
}

/// Whether a link without its query names more than a site: a path, or a host name with labels
/// before its site's own name (`data.site.example`; `www.` is the site itself).
fn beyond_site(address: &str) -> bool {
    let rest = address
        .split_once("://")
        .map_or(address, |(_, r)| r)
        .split('#')
        .next()
        .unwrap_or_default();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.rsplit('@').next().unwrap_or(host);
    let host = host.split(':').next().unwrap_or(host);
    let host = host.strip_prefix("www.").unwrap_or(host);
    !path.trim_matches('/').is_empty() || host.split('.').filter(|l| !l.is_empty()).count() > 2
}

/// Hex SHA-256 of a text: identifies the policy set in force.
pub fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The policy sources Warden runs with: the baseline (unless disabled), the compiled task
/// profiles, then the operator's own policy files.
pub fn policy_sources(
    baseline: bool,
    profiles: &BTreeMap<String, TaskProfile>,
    files: Vec<PolicySource>,
) -> Result<Vec<PolicySource>, PolicyError> {
    let mut sources = Vec::new();
    if baseline {
        sources.push(PolicySource {
            name: "<baseline>".into(),
            text: BASELINE.into(),
        });
    }
    if !profiles.is_empty() {
        sources.push(PolicySource {
            name: "<profiles>".into(),
            text: profile::compile(profiles)?,
        });
    }
    sources.extend(files);
    Ok(sources)
}

/// Decide one call: provenance of each argument, the Cedar context, the indexed policy slice,
/// the verdict and reasons a person can read. Fails closed: a context that cannot be built denies.
pub fn decide(engine: &PolicyEngine, state: &SessionState, tool: &Tool, call: &Call) -> Decision {
    decide_scored(engine, state, tool, call, &Anomaly::default())
}

/// `decide`, with the behavioural anomaly score of the call in the context (`context.anomaly`).
pub fn decide_scored(
    engine: &PolicyEngine,
    state: &SessionState,
    tool: &Tool,
    call: &Call,
    anomaly: &Anomaly,
) -> Decision {
    let mut provenance: BTreeMap<String, ArgProvenance> = call
        .args
        .iter()
        .map(|(k, v)| (k.clone(), state.index.provenance(v)))
        .collect();
    // Sinks inside objects are judged as parameters of their own (`message.to`).
    let nested = tools::nested_sinks(&call.args);
    // What a call carries decides what it does: a statement that changes state makes the call
    // act (and delete, when it does), whatever the tool's verb says, and its argument a command.
    let statements = tools::state_changing_statements(&call.args);
    let as_called;
    let tool = if nested.is_empty() && statements.is_empty() {
        tool
    } else {
        let mut t = tool.clone();
        let mut sinks: Vec<warden_model::Sink> = tool.sinks.iter().cloned().collect();
        for (path, value, kind) in nested {
            provenance.insert(path.clone(), state.index.provenance(&value));
            sinks.push(warden_model::Sink {
                why: format!("key `{path}` denotes a {}", kind.as_str()),
                param: path,
                kind,
                evidence: warden_model::Evidence::Inferred,
            });
        }
        for s in &statements {
            let why = format!("its `{}` argument is a `{}` statement", s.param, s.verb);
            let raise = |to: &mut warden_model::TraitValue| {
                if !to.value {
                    *to = warden_model::TraitValue {
                        value: true,
                        evidence: warden_model::Evidence::Inferred,
                        why: why.clone(),
                    };
                }
            };
            raise(&mut t.write);
            if s.destructive {
                raise(&mut t.destructive);
            }
            if tool.sink(&s.param).is_none() {
                sinks.push(warden_model::Sink {
                    param: s.param.clone(),
                    kind: warden_model::SinkKind::Command,
                    evidence: warden_model::Evidence::Inferred,
                    why,
                });
            }
        }
        t.sinks = warden_model::Sinks::from(sinks);
        as_called = t;
        &as_called
    };
    let mut flow = context::Flow::of(tool, call, &provenance);
    flow.set_aside(&parts_of_target(state, tool, call, &provenance));
    flow.egress_args = composed_egress(state, tool, call, &provenance);
    flow.navigation_args = steered_navigation(state, tool, call, &flow);
    flow.link_args = steered_links(state, tool, &provenance, &flow);
    let outcome = match context::build(
        &engine.types,
        &engine.read,
        state,
        tool,
        call,
        &provenance,
        &flow,
        anomaly,
    ) {
        Ok((request, entities)) => engine.decide(&engine::CedarCall {
            request: &request,
            entities: &entities,
            profile: state.session.profile.as_deref(),
            tool: &call.tool,
        }),
        Err(e) => engine::Outcome {
            verdict: Verdict::Deny,
            reasons: vec![Reason {
                policy: "warden.context".into(),
                message: context::escape(&format!(
                    "the policy context could not be built, so the call is refused: {e}"
                )),
            }],
        },
    };
    let reasons = outcome
        .reasons
        .into_iter()
        .map(|r| Reason {
            message: context::render(&r.message, state, tool, &provenance, &flow),
            policy: r.policy,
        })
        .collect();
    Decision {
        verdict: outcome.verdict,
        reasons,
        provenance,
        provenance_evicted: state.index.evicted(),
        anomaly: anomaly.clone(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn line_col_of_an_offset_inside_a_multibyte_character_is_that_character() {
        assert_eq!(super::line_col("a\nȼq", 3), (2, 1));
        assert_eq!(super::line_col("a\nȼq", 4), (2, 2));
        assert_eq!(super::line_col("é", 99), (1, 2));
    }
}
