//! Decision cases: a session, what happened in it, a call, and (for tests) the expected decision.
//! `warden decide` runs one; `warden policy test DIR` runs every case in a directory, like
//! `opa test`. Cases go through the same runtime as live traffic, with an in-memory store.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_json::Value;
use warden_gateway::runtime::{DecisionRecord, OpenRequest};
use warden_gateway::{Config, Runtime};
use warden_model::{Call, Params, Verdict};
use warden_policy::Step;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub name: String,
    pub session: CaseSession,
    /// What happened before the call, in order.
    #[serde(default)]
    pub steps: Vec<CaseStep>,
    pub call: Call,
    /// The expected verdict (tests only).
    pub expect: Option<Verdict>,
    /// A policy id that must be among the reasons (tests only).
    pub policy: Option<String>,
    /// Text that must appear in some reason's message (tests only).
    pub reason_contains: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSession {
    #[serde(default = "default_principal")]
    pub principal: String,
    #[serde(default = "default_agent")]
    pub agent: String,
    pub profile: Option<String>,
    #[serde(default)]
    pub task: Params,
    #[serde(default)]
    pub instruction: String,
    #[serde(default = "default_channel")]
    pub channel: String,
}

fn default_principal() -> String {
    "user".into()
}
fn default_agent() -> String {
    "agent".into()
}
fn default_channel() -> String {
    "test".into()
}

/// One earlier step of a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum CaseStep {
    /// A tool returned this result (labelled from the tool's traits).
    Observe {
        tool: String,
        #[serde(default)]
        call_id: String,
        result: Value,
    },
    /// A call the agent made earlier (decided and counted in the history).
    Call(Call),
    UserMessage(String),
    /// The deployment's system prompt (trusted: it may name whom the agent serves).
    SystemMessage(String),
    AgentReasoning(String),
}

/// Run a case on a fresh runtime with an in-memory store.
pub fn run(config: &Config, case: &Case) -> Result<DecisionRecord> {
    let rt = Runtime::in_memory(config.clone())?;
    let s = &case.session;
    let (session, _) = rt.open_session(OpenRequest {
        principal: s.principal.clone(),
        agent: s.agent.clone(),
        profile: s.profile.clone(),
        task: s.task.clone(),
        instruction: s.instruction.clone(),
        channel: s.channel.clone(),
    })?;
    for step in &case.steps {
        match step {
            CaseStep::Observe {
                tool,
                call_id,
                result,
            } => {
                rt.observe(&session.id, call_id, Some(tool), None, result.clone())?;
            }
            CaseStep::Call(call) => {
                rt.decide(&session.id, call.clone())?;
            }
            CaseStep::UserMessage(text) => {
                rt.event(&session.id, Step::UserMessage { text: text.clone() })?;
            }
            CaseStep::SystemMessage(text) => {
                rt.event(&session.id, Step::SystemMessage { text: text.clone() })?;
            }
            CaseStep::AgentReasoning(text) => {
                rt.event(&session.id, Step::AgentReasoning { text: text.clone() })?;
            }
        }
    }
    Ok(rt.decide(&session.id, case.call.clone())?)
}

/// Check a decision against a case's expectations; `Err` lists what differs.
pub fn check(case: &Case, record: &DecisionRecord) -> std::result::Result<(), String> {
    let d = &record.decision;
    let mut problems = Vec::new();
    if let Some(expect) = case.expect {
        if d.verdict != expect {
            problems.push(format!("expected {expect}, got {}", d.verdict));
        }
    }
    if let Some(p) = &case.policy {
        if !d.reasons.iter().any(|r| &r.policy == p) {
            problems.push(format!("expected policy `{p}` among the reasons"));
        }
    }
    if let Some(text) = &case.reason_contains {
        if !d.reasons.iter().any(|r| r.message.contains(text.as_str())) {
            problems.push(format!("expected a reason containing {text:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let reasons: Vec<String> = d
            .reasons
            .iter()
            .map(|r| format!("[{}] {}", r.policy, r.message))
            .collect();
        Err(format!(
            "{}\n      reasons: {}",
            problems.join("; "),
            reasons.join(" | ")
        ))
    }
}

/// Read a case file: JSON (`.json`) or TOML with `[[case]]` tables (`.toml`).
pub fn read_cases(path: &Path) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        let case: Case = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid case", path.display()))?;
        return Ok(vec![case]);
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        case: Vec<Case>,
    }
    let file: File = toml::from_str(&text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((1, 1), |s| warden_policy::line_col(&text, s.start));
        anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message())
    })?;
    if file.case.is_empty() {
        bail!("{}: no [[case]] tables", path.display());
    }
    Ok(file.case)
}
