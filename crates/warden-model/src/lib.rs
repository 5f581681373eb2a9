//! Warden's domain types, in the vocabulary of DESIGN.md: sessions, tools and their traits,
//! calls, labels and decisions. Types only: no I/O, no clocks, no policy logic.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Task parameters and call arguments: a JSON object, kept in key order so that
/// everything derived from them (Cedar context, hashes, explanations) is deterministic.
pub type Params = BTreeMap<String, Value>;

/// One run of one agent on one task. It accumulates context (provenance, history)
/// elsewhere; this is what it was opened with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    /// The human or service on whose behalf the agent acts.
    pub principal: String,
    /// The autonomous program, e.g. `support-bot`.
    pub agent: String,
    /// The task profile (`support.answer_query`); `None` means no profile: every tool is in
    /// scope, subject to the baseline guards.
    pub profile: Option<String>,
    #[serde(default)]
    pub task: Params,
    /// The instruction text the agent was given; trusted.
    #[serde(default)]
    pub instruction: String,
    /// Where the instruction came from (`chat`, `email`, `api`…).
    #[serde(default = "default_channel")]
    pub channel: String,
    /// Milliseconds since the Unix epoch, set by the edge that opened the session.
    #[serde(default)]
    pub opened_at_ms: u64,
}

fn default_channel() -> String {
    "api".to_owned()
}

/// What a tool does, as far as policy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Trait {
    /// Reads state without changing it.
    Read,
    /// Changes state (sends, creates, updates).
    Write,
    /// Changes state in a way that is hard to undo (deletes, cancels, pays).
    Destructive,
    /// Reaches outside the trust boundary: a read returns content others wrote; a write acts on
    /// the outside world.
    OpenWorld,
}

impl Trait {
    pub const ALL: [Trait; 4] = [
        Trait::Read,
        Trait::Write,
        Trait::Destructive,
        Trait::OpenWorld,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trait::Read => "read",
            Trait::Write => "write",
            Trait::Destructive => "destructive",
            Trait::OpenWorld => "open_world",
        }
    }
}

/// Where a piece of knowledge about a tool came from, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Written by the operator in Warden's config.
    Config,
    /// An MCP tool annotation (`readOnlyHint`…): a hint from the server, weak.
    Annotation,
    /// Inferred from the tool's name, description or parameter schema.
    Inferred,
    /// Nothing said anything; the safe default applies.
    Default,
}

/// One trait's value and why Warden believes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraitValue {
    pub value: bool,
    pub evidence: Evidence,
    /// A sentence a person can read: "name starts with `send_`".
    pub why: String,
}

/// What kind of sensitive sink a parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Recipient,
    Url,
    Path,
    Amount,
    Account,
    Command,
    Identifier,
}

impl SinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::Recipient => "recipient",
            SinkKind::Url => "url",
            SinkKind::Path => "path",
            SinkKind::Amount => "amount",
            SinkKind::Account => "account",
            SinkKind::Command => "command",
            SinkKind::Identifier => "identifier",
        }
    }
}

/// A parameter that is a sensitive sink, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sink {
    pub param: String,
    pub kind: SinkKind,
    pub evidence: Evidence,
    pub why: String,
}

/// A tool's sink parameters, kept ordered by name (one entry per parameter) so that finding one
/// costs O(log n): a call may name 100k arguments, each looked up on the decision path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Sink>", into = "Vec<Sink>")]
pub struct Sinks(Vec<Sink>);

impl Sinks {
    /// The sink of a parameter, if it is one.
    pub fn get(&self, param: &str) -> Option<&Sink> {
        self.0
            .binary_search_by(|s| s.param.as_str().cmp(param))
            .ok()
            .map(|i| &self.0[i])
    }
}

impl From<Vec<Sink>> for Sinks {
    /// Ordered by parameter; of two entries for one parameter, the first is kept.
    fn from(mut sinks: Vec<Sink>) -> Sinks {
        sinks.sort_by(|a, b| a.param.cmp(&b.param));
        sinks.dedup_by(|later, first| later.param == first.param);
        Sinks(sinks)
    }
}

impl From<Sinks> for Vec<Sink> {
    fn from(sinks: Sinks) -> Vec<Sink> {
        sinks.0
    }
}

impl std::ops::Deref for Sinks {
    type Target = [Sink];
    fn deref(&self) -> &[Sink] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Sinks {
    type Item = &'a Sink;
    type IntoIter = std::slice::Iter<'a, Sink>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// How confidential content is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Confidentiality {
    #[default]
    Public,
    Internal,
    Secret,
}

impl Confidentiality {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidentiality::Public => "public",
            Confidentiality::Internal => "internal",
            Confidentiality::Secret => "secret",
        }
    }
}

/// Whether content can be trusted to carry only what the principal or a trusted system meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Integrity {
    Trusted,
    Untrusted,
}

/// A tool with its traits, each with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    /// The upstream that serves it (an MCP server's name, `guard` for tools an agent framework
    /// runs itself).
    pub upstream: String,
    pub read: TraitValue,
    pub write: TraitValue,
    pub destructive: TraitValue,
    pub open_world: TraitValue,
    /// How confidential its results are.
    pub returns: Confidentiality,
    pub returns_why: String,
    pub sinks: Sinks,
    /// What changed in the tool's definition since Warden pinned it (its description, input
    /// schema or annotations), until an operator accepts the new one: a changed tool is never
    /// called unreviewed. `None` for a tool whose definition is the pinned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<String>,
}

impl Tool {
    pub fn has(&self, t: Trait) -> bool {
        self.trait_value(t).value
    }

    pub fn trait_value(&self, t: Trait) -> &TraitValue {
        match t {
            Trait::Read => &self.read,
            Trait::Write => &self.write,
            Trait::Destructive => &self.destructive,
            Trait::OpenWorld => &self.open_world,
        }
    }

    pub fn sink(&self, param: &str) -> Option<&Sink> {
        self.sinks.get(param)
    }

    /// The label of content this tool returns: open-world tools return untrusted content.
    pub fn result_label(&self) -> (Integrity, Confidentiality) {
        let integrity = if self.open_world.value {
            Integrity::Untrusted
        } else {
            Integrity::Trusted
        };
        (integrity, self.returns)
    }
}

/// Where a piece of content in a session came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// The instruction the session was opened with.
    Instruction,
    /// A task parameter given when the session was opened.
    TaskParam { name: String },
    /// A further message from the user, during the session.
    UserMessage,
    /// The operator's system prompt for the agent.
    SystemMessage,
    /// The agent's own reasoning text (an assistant message).
    AgentReasoning,
    /// A tool's result.
    ToolResult { tool: String, call_id: String },
}

/// What Warden knows about a piece of content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub origin: Origin,
    pub integrity: Integrity,
    pub confidentiality: Confidentiality,
}

/// One piece of content in a session: the instruction, a message, a tool result.
/// `seq` orders it among the session's steps and is how reasons name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub seq: u64,
    pub label: Label,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label.origin {
            Origin::Instruction => write!(f, "the session's instruction"),
            Origin::TaskParam { name } => write!(f, "task parameter `{name}`"),
            Origin::UserMessage => write!(f, "user message #{}", self.seq),
            Origin::SystemMessage => write!(f, "system message #{}", self.seq),
            Origin::AgentReasoning => write!(f, "agent reasoning #{}", self.seq),
            Origin::ToolResult { tool, call_id } if call_id.is_empty() => {
                write!(f, "result of `{tool}` (step #{})", self.seq)
            }
            Origin::ToolResult { tool, call_id } => {
                write!(f, "result of `{tool}` call {call_id} (step #{})", self.seq)
            }
        }
    }
}

/// One attempt by an agent to use a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub tool: String,
    #[serde(default)]
    pub args: Params,
    /// The agent's or protocol's id for this call, if it has one.
    #[serde(default)]
    pub call_id: String,
    /// The MCP server the call goes to, when Warden fronts servers: a tool is known by its
    /// server and its name, since two servers may name different tools alike. `None` for calls
    /// through the guard API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    /// Needs a person's approval.
    Hold,
    Deny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Hold => "hold",
            Verdict::Deny => "deny",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision went the way it did: the policy that decided it and a message a person can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub policy: String,
    pub message: String,
}

/// A value an agent wrote somewhere (a note, a file, a contact, an event) while it was known
/// only from untrusted content. Its label survives storage: whoever reads it back, in any
/// later session, reads it as untrusted, whatever the tool that returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedLabel {
    /// The kind of salient value (`email`, `url`, `iban`, `path`, `identifier`, `text`…).
    pub kind: String,
    pub value: String,
    /// Named in untrusted prose where the writing session read it, not only as a field.
    pub prose: bool,
    /// The session and step of the write that carried it, and its tool.
    pub session: String,
    pub seq: u64,
    pub tool: String,
}

impl CarriedLabel {
    /// Where the label came from, without the value (the audit log and the dashboard show
    /// this): its kind and the session, step and tool of the write that carried it.
    pub fn origin(&self) -> Value {
        serde_json::json!({"kind": self.kind, "session": self.session, "seq": self.seq, "tool": self.tool})
    }
}

/// Where one argument's values came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ArgProvenance {
    /// The sources (by `seq`) any of its salient values occur in.
    pub sources: Vec<u64>,
    /// Some value occurs in trusted content.
    pub trusted: bool,
    /// Some value occurs in untrusted content.
    pub untrusted: bool,
    /// Some salient value occurs only in untrusted content.
    pub untrusted_only: bool,
    /// Some salient value occurs only in untrusted content, and untrusted prose (an e-mail
    /// body, a page, a review) names it at least once, even if it is also a record's field: an
    /// outsider's text chose it. The signature of an injected instruction's own values. (A value
    /// seen only in short fields of untrusted records is the agent's pick among them.)
    pub untrusted_prose_only: bool,
    /// Some salient value is trusted only because a record the user designated holds it (a
    /// message from a sender the user named): the user's choice for most sinks, but not for a
    /// recipient or a payee.
    #[serde(default)]
    pub designated_only: bool,
    /// Some salient value occurs nowhere in the session.
    pub unknown: bool,
    /// Every salient value occurs in trusted content (the user named it, or a trusted system
    /// returned it); for an argument without specific values, its whole text does.
    pub all_trusted: bool,
    /// It has specific values (an address, a link, an account, a phone, a path, an id) and the
    /// user's own words (the instruction, a task parameter, a later message) give every one of
    /// them while no untrusted content holds any: whom it names is the user's choice alone.
    #[serde(default)]
    pub user_named: bool,
    /// The highest confidentiality among its sources.
    pub confidentiality: Confidentiality,
    /// The values that matched, with their sources, for explanations.
    pub values: Vec<ValueMatch>,
}

/// One salient value of an argument and the sources it occurs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMatch {
    /// The value as normalised for matching.
    pub value: String,
    /// Its kind (`email`, `url`, `iban`, `number`, `shingle`…).
    pub kind: String,
    pub sources: Vec<u64>,
}

/// How unusual a call is for this agent and task, from the behavioural baseline.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Anomaly {
    /// In [0, 1]; 0 when no baseline applies.
    pub score: f64,
    /// What made it unusual, each with its share of the score, most first.
    pub reasons: Vec<(String, f64)>,
}

/// A decision with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    /// Per argument, where its values came from.
    pub provenance: BTreeMap<String, ArgProvenance>,
    /// How many values the session's provenance index has evicted to stay within its cap;
    /// non-zero means unknown values may have been seen before.
    pub provenance_evicted: u64,
    /// How unusual the call was (what `context.anomaly` saw).
    #[serde(default)]
    pub anomaly: Anomaly,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(param: &str, kind: SinkKind) -> Sink {
        Sink {
            param: param.into(),
            kind,
            evidence: Evidence::Inferred,
            why: String::new(),
        }
    }

    #[test]
    fn sinks_given_in_any_order_are_found_by_parameter_and_the_first_of_two_is_kept() {
        let sinks = Sinks::from(vec![
            sink("to", SinkKind::Recipient),
            sink("amount", SinkKind::Amount),
            sink("path", SinkKind::Path),
            sink("to", SinkKind::Identifier),
        ]);
        assert_eq!(sinks.get("to").map(|s| s.kind), Some(SinkKind::Recipient));
        assert_eq!(sinks.get("amount").map(|s| s.kind), Some(SinkKind::Amount));
        assert_eq!(sinks.get("path").map(|s| s.kind), Some(SinkKind::Path));
        assert!(sinks.get("body").is_none());
        assert_eq!(sinks.len(), 3);
        let json = serde_json::to_value(&sinks).expect("serialises");
        let back: Sinks = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, sinks);
    }
}
