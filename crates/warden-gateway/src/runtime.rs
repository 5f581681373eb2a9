//! The runtime every enforcement point drives: opens sessions, decides calls, observes results
//! and the agent's own steps, and makes each step durable before answering. Sessions are cached
//! in memory and rebuilt from the store (replaying their steps) after a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use warden_model::{Call, Decision, Label, Params, Reason, Session, Source, Tool, Verdict};
use warden_policy::{tools, PolicyEngine, SessionState, Step, ToolSpec};
use warden_provenance::IndexConfig;
use warden_store::{SessionStore, StoreError, StoredStep};

use crate::config::Config;

/// Why the runtime could not do what was asked. Each maps to an HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{message}")]
    BadRequest { field: String, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
}

/// A decision as the runtime returns it: the decision, its id, and the policy set it was made under.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// `<session>/<seq>`: names this decision in logs and approvals.
    pub decision_id: String,
    pub session: String,
    pub seq: u64,
    pub call_id: String,
    pub tool: String,
    #[serde(flatten)]
    pub decision: Decision,
    pub policy_digest: String,
}

/// What opening a session asks for.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub principal: String,
    pub agent: String,
    pub profile: Option<String>,
    pub task: Params,
    pub instruction: String,
    pub channel: String,
}

/// A live session: its state behind a lock that also orders its steps in the store.
struct Live {
    state: Mutex<LiveState>,
    token_hash: String,
}

struct LiveState {
    state: SessionState,
    /// call id → tool, so a result can be labelled from the call it answers.
    calls: HashMap<String, String>,
}

pub struct Runtime {
    config: Config,
    engine: Arc<PolicyEngine>,
    store: Arc<dyn SessionStore>,
    sessions: RwLock<HashMap<String, Arc<Live>>>,
    tools: RwLock<BTreeMap<String, Arc<Tool>>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random hex string of `bytes` bytes from the OS.
pub fn random_hex(bytes: usize) -> Result<String, RuntimeError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| RuntimeError::Unavailable(format!("the OS random source failed: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn step_kind(step: &Step) -> &'static str {
    match step {
        Step::UserMessage { .. } => "user_message",
        Step::SystemMessage { .. } => "system_message",
        Step::AgentReasoning { .. } => "agent_reasoning",
        Step::Call { .. } => "call",
        Step::Result { .. } => "result",
    }
}

impl Runtime {
    pub fn new(config: Config, engine: PolicyEngine, store: Arc<dyn SessionStore>) -> Runtime {
        Runtime {
            config,
            engine: Arc::new(engine),
            store,
            sessions: RwLock::new(HashMap::new()),
            tools: RwLock::new(BTreeMap::new()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    fn index_config(&self) -> IndexConfig {
        IndexConfig {
            max_values: self.config.provenance.max_values,
            ..IndexConfig::default()
        }
    }

    /// The tool by name, with traits resolved from the config, then what is known of its spec,
    /// then its name; for a tool nobody described, the call's argument names stand in for a schema.
    pub fn tool(&self, name: &str, args: &Params) -> Arc<Tool> {
        if let Some(t) = self.tools.read().ok().and_then(|m| m.get(name).cloned()) {
            return t;
        }
        let entry = self.config.tools.get(name);
        let spec = match entry {
            Some(e) if !e.params.is_empty() => e.spec(name),
            _ => {
                let mut spec = entry.map(|e| e.spec(name)).unwrap_or_else(|| ToolSpec {
                    name: name.to_owned(),
                    ..ToolSpec::default()
                });
                let properties: serde_json::Map<String, Value> = args
                    .keys()
                    .map(|k| (k.clone(), serde_json::json!({})))
                    .collect();
                spec.input_schema = serde_json::json!({"type": "object", "properties": properties});
                spec
            }
        };
        let upstream = entry
            .and_then(|e| e.upstream.clone())
            .unwrap_or_else(|| "guard".to_owned());
        let tool = Arc::new(tools::resolve(&spec, &upstream, entry.map(|e| &e.traits)));
        // Tools inferred from one call's argument names are not cached: another call may name more.
        if entry.is_some_and(|e| !e.params.is_empty()) {
            if let Ok(mut m) = self.tools.write() {
                m.insert(name.to_owned(), tool.clone());
            }
        }
        tool
    }

    /// Register tools an upstream described (MCP `tools/list`): their annotations and schemas
    /// become evidence for their traits. The operator's config still wins.
    pub fn register_tools(&self, upstream: &str, specs: &[ToolSpec]) {
        let resolved: Vec<(String, Arc<Tool>)> = specs
            .iter()
            .map(|s| {
                let cfg = self.config.tools.get(&s.name).map(|e| &e.traits);
                (s.name.clone(), Arc::new(tools::resolve(s, upstream, cfg)))
            })
            .collect();
        if let Ok(mut m) = self.tools.write() {
            m.extend(resolved);
        }
    }

    /// Open a session; returns it and its token (shown once, stored only as a hash).
    pub fn open_session(&self, req: OpenRequest) -> Result<(Session, String), RuntimeError> {
        if let Some(p) = &req.profile {
            let Some(profile) = self.config.profiles.get(p) else {
                return Err(RuntimeError::BadRequest {
                    field: "profile".into(),
                    message: format!(
                        "unknown task profile `{p}`; known: {}",
                        self.config
                            .profiles
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            };
            if let Some(missing) = profile.params.iter().find(|k| !req.task.contains_key(*k)) {
                return Err(RuntimeError::BadRequest {
                    field: format!("task.{missing}"),
                    message: format!("task profile `{p}` needs task parameter `{missing}`"),
                });
            }
        }
        let session = Session {
            id: format!("s_{}", random_hex(12)?),
            principal: req.principal,
            agent: req.agent,
            profile: req.profile,
            task: req.task,
            instruction: req.instruction,
            channel: req.channel,
            opened_at_ms: now_ms(),
        };
        let token = format!("wst_{}", random_hex(24)?);
        let token_hash = sha256_hex(&token);
        self.store.create_session(&session, &token_hash)?;
        let live = Arc::new(Live {
            state: Mutex::new(LiveState {
                state: SessionState::open(session.clone(), self.index_config()),
                calls: HashMap::new(),
            }),
            token_hash,
        });
        self.cache(&session.id, live);
        Ok((session, token))
    }

    /// The live session, loading and replaying it from the store if this process has not seen it.
    fn live(&self, id: &str) -> Result<Arc<Live>, RuntimeError> {
        if let Some(l) = self.sessions.read().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(l);
        }
        let Some(stored) = self.store.load_session(id)? else {
            return Err(RuntimeError::NotFound(format!("no session `{id}`")));
        };
        let mut state = SessionState::open(stored.session, self.index_config());
        let mut calls = HashMap::new();
        for s in &stored.steps {
            let step: Step = serde_json::from_str(&s.body).map_err(StoreError::from)?;
            if let Step::Call { call, .. } = &step {
                calls.insert(call.call_id.clone(), call.tool.clone());
            }
            state.apply(&step);
        }
        let live = Arc::new(Live {
            state: Mutex::new(LiveState { state, calls }),
            token_hash: stored.token_hash,
        });
        Ok(self.cache(id, live))
    }

    /// Keep a live session in memory, first dropping idle ones past the cap: they are durable
    /// and are replayed from the store when next used. A session some request still holds is
    /// never dropped, so one session never has two live copies.
    fn cache(&self, id: &str, live: Arc<Live>) -> Arc<Live> {
        let Ok(mut m) = self.sessions.write() else {
            return live;
        };
        let cap = self.config.server.max_live_sessions.max(1);
        if m.len() >= cap {
            let idle: Vec<String> = m
                .iter()
                .filter(|(_, l)| Arc::strong_count(l) == 1)
                .map(|(k, _)| k.clone())
                .take(m.len() + 1 - cap)
                .collect();
            for k in idle {
                m.remove(&k);
            }
        }
        m.entry(id.to_owned()).or_insert(live).clone()
    }

    /// Check a session token against the session it claims.
    pub fn authenticate(&self, id: &str, token: &str) -> Result<(), RuntimeError> {
        let live = self.live(id)?;
        if sha256_hex(token) == live.token_hash {
            Ok(())
        } else {
            Err(RuntimeError::Unauthorized(format!(
                "the bearer token is not the token of session `{id}`"
            )))
        }
    }

    /// Append a step to the store, then to the state: nothing counts until it is durable.
    fn commit(
        &self,
        live: &mut LiveState,
        session_id: &str,
        step: &Step,
    ) -> Result<(u64, Option<Source>), RuntimeError> {
        let seq = live.state.next_seq();
        let stored = StoredStep {
            seq,
            kind: step_kind(step).to_owned(),
            body: serde_json::to_string(step).map_err(StoreError::from)?,
        };
        self.store.append_step(session_id, &stored)?;
        Ok((seq, live.state.apply(step)))
    }

    /// Decide a call. The decision is durable in the store before it is returned; if it cannot be
    /// recorded, the call is denied and the reason says so.
    pub fn decide(&self, session_id: &str, mut call: Call) -> Result<DecisionRecord, RuntimeError> {
        let live = self.live(session_id)?;
        let tool = self.tool(&call.tool, &call.args);
        let mut guard = live
            .state
            .lock()
            .map_err(|_| RuntimeError::Store(StoreError::Poisoned))?;
        let seq = guard.state.next_seq();
        if call.call_id.is_empty() {
            call.call_id = format!("{session_id}/{seq}");
        }
        let mut decision = warden_policy::decide(&self.engine, &guard.state, &tool, &call);
        let step = Step::Call {
            call: call.clone(),
            verdict: decision.verdict,
        };
        if let Err(e) = self.commit(&mut guard, session_id, &step) {
            decision.verdict = Verdict::Deny;
            decision.reasons = vec![Reason {
                policy: "warden.record".into(),
                message: format!("the decision could not be recorded, so the call is refused: {e}"),
            }];
        } else {
            guard.calls.insert(call.call_id.clone(), call.tool.clone());
        }
        Ok(DecisionRecord {
            decision_id: format!("{session_id}/{seq}"),
            session: session_id.to_owned(),
            seq,
            call_id: call.call_id,
            tool: call.tool,
            decision,
            policy_digest: self.engine.digest.clone(),
        })
    }

    /// Observe a tool's result: label it from the tool's traits and index its values.
    pub fn observe(
        &self,
        session_id: &str,
        call_id: &str,
        tool: Option<&str>,
        result: Value,
    ) -> Result<(u64, Label), RuntimeError> {
        let live = self.live(session_id)?;
        let mut guard = live
            .state
            .lock()
            .map_err(|_| RuntimeError::Store(StoreError::Poisoned))?;
        let tool_name = match (tool, guard.calls.get(call_id)) {
            (Some(t), _) => t.to_owned(),
            (None, Some(t)) => t.clone(),
            (None, None) => {
                return Err(RuntimeError::BadRequest {
                    field: "call_id".into(),
                    message: format!(
                        "no call `{call_id}` was decided in session `{session_id}`; pass `tool` to observe a result of a call Warden did not decide"
                    ),
                })
            }
        };
        let tool = self.tool(&tool_name, &Params::new());
        let step = SessionState::result_step(&tool, call_id, result);
        let (seq, source) = self.commit(&mut guard, session_id, &step)?;
        let label = source
            .map(|s| s.label)
            .ok_or_else(|| RuntimeError::BadRequest {
                field: "result".into(),
                message: "result was not indexed".into(),
            })?;
        Ok((seq, label))
    }

    /// Record one of the agent's own steps: a further user message or the operator's system
    /// prompt (trusted instruction), or its reasoning (kept for explanations, never trusted).
    pub fn event(&self, session_id: &str, step: Step) -> Result<u64, RuntimeError> {
        if matches!(step, Step::Call { .. } | Step::Result { .. }) {
            return Err(RuntimeError::BadRequest {
                field: "kind".into(),
                message: "events are `user_message`, `system_message` or `agent_reasoning`".into(),
            });
        }
        let live = self.live(session_id)?;
        let mut guard = live
            .state
            .lock()
            .map_err(|_| RuntimeError::Store(StoreError::Poisoned))?;
        Ok(self.commit(&mut guard, session_id, &step)?.0)
    }

    /// A session's view: how it was opened, its history counts and its steps (read from the store).
    pub fn session_view(&self, session_id: &str) -> Result<Value, RuntimeError> {
        let live = self.live(session_id)?;
        let guard = live
            .state
            .lock()
            .map_err(|_| RuntimeError::Store(StoreError::Poisoned))?;
        let stored = self
            .store
            .load_session(session_id)?
            .ok_or_else(|| RuntimeError::NotFound(format!("no session `{session_id}`")))?;
        let steps: Vec<Value> = stored
            .steps
            .iter()
            .map(|s| {
                let body: Value = serde_json::from_str(&s.body).unwrap_or(Value::Null);
                serde_json::json!({"seq": s.seq, "kind": s.kind, "body": body})
            })
            .collect();
        Ok(serde_json::json!({
            "session": guard.state.session,
            "history": guard.state.history,
            "untrusted_seen": guard.state.untrusted_seen,
            "secret_seen": guard.state.secret_seen,
            "provenance": {"values": guard.state.index.len(), "evicted": guard.state.index.evicted()},
            "steps": steps,
        }))
    }
}
