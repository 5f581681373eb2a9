//! The learned baseline: one [`Model`] per (agent, profile), per agent and overall, updated online
//! by [`Baseline::observe`] / [`Baseline::end_session`] and persisted as JSON.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hash::{fnv, mix, HashedMap};
use crate::ngram::{NGram, END};
use crate::novelty::Novelty;
use crate::shape::{facets, shape};
use crate::step::{SessionKey, Step};
use crate::trail::Trail;

/// The version of the saved file's layout; [`Baseline::load`] refuses others.
const FORMAT: u32 = 1;
/// Per-session counts above this are counted here.
const MAX_COUNT: usize = 64;
const MINUTE_MS: u64 = 60_000;

/// How the detector weighs what it sees. Bits are `-log2` of a probability: 1 bit is a coin
/// flip, 10 bits a one-in-a-thousand event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Sessions a level needs before its transitions and volumes are trusted; below, the next
    /// more general level answers (agent + profile → agent → all agents).
    pub min_sessions: u32,
    /// Observations of a tool's parameter a level needs before its shapes and values are trusted.
    pub min_observations: u32,
    /// No single feature counts for more than this.
    pub max_bits_per_feature: f64,
    /// Features below this are noise: not counted, not reported.
    pub min_bits: f64,
    /// The score is `1 - 2^(-bits / half_bits)`: this many bits make 0.5.
    pub half_bits: f64,
    /// Probing: this many denials among the last `probe_window` calls.
    pub probe_window: usize,
    pub probe_denials: usize,
    pub probe_bits: f64,
    /// A write or destructive call right after a call whose result was untrusted.
    pub untrusted_then_write_bits: f64,
    /// A burst: `burst_calls` calls (this one included) within `burst_window_ms`.
    pub burst_window_ms: u64,
    pub burst_calls: usize,
    pub burst_bits: f64,
    /// A destructive tool this agent has never called under this profile.
    pub first_destructive_bits: f64,
    /// More calls in the last minute than ever seen at the level, which has at least
    /// `rate_min_calls` timed calls.
    pub rate_min_calls: u32,
    pub rate_bits: f64,
    /// A call at an hour of the day (UTC) never seen at a level with at least `hours_min_calls`
    /// timed calls.
    pub hours_min_calls: u32,
    pub hours_bits: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            min_sessions: 3,
            min_observations: 3,
            max_bits_per_feature: 12.0,
            min_bits: 0.5,
            half_bits: 8.0,
            probe_window: 10,
            probe_denials: 3,
            probe_bits: 8.0,
            untrusted_then_write_bits: 2.0,
            burst_window_ms: 10_000,
            burst_calls: 10,
            burst_bits: 6.0,
            first_destructive_bits: 4.0,
            rate_min_calls: 50,
            rate_bits: 4.0,
            hours_min_calls: 100,
            hours_bits: 3.0,
        }
    }
}

/// Sessions by how often something happened in them: `at[k]` sessions had it exactly `k` times
/// (`k ≥ 1`; the last bucket holds everything above).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Histogram {
    at: Vec<u32>,
}

impl Histogram {
    fn add(&mut self, count: usize) {
        let k = count.min(MAX_COUNT);
        if self.at.len() <= k {
            self.at.resize(k + 1, 0);
        }
        self.at[k] += 1;
    }

    fn at_least(&self, k: usize, sessions: u32) -> u32 {
        if k == 0 {
            return sessions;
        }
        self.at.iter().skip(k.min(MAX_COUNT)).sum()
    }

    /// Bits of surprise that a session reaches `count` given that it reached `count - 1`.
    pub(crate) fn surprise_reaching(&self, count: usize, sessions: u32) -> f64 {
        if count == 0 || count > MAX_COUNT {
            return 0.0;
        }
        let reached = f64::from(self.at_least(count, sessions));
        let before = f64::from(self.at_least(count - 1, sessions));
        -((reached + 0.5) / (before + 1.0)).log2()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ToolStats {
    pub(crate) calls: u64,
    pub(crate) per_session: Histogram,
}

/// What is normal at one level (an agent under a profile, an agent, everyone).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Model {
    pub(crate) sessions: u32,
    pub(crate) calls: u64,
    pub(crate) transitions: NGram,
    pub(crate) tools: HashedMap<ToolStats>,
    /// (tool, parameter, facet) → novelty of its values.
    pub(crate) values: HashedMap<Novelty>,
    /// (tool, parameter) → novelty of its shapes.
    pub(crate) shapes: HashedMap<Novelty>,
    /// tool → novelty of the set of parameters it is called with.
    pub(crate) arg_sets: HashedMap<Novelty>,
    pub(crate) session_calls: Histogram,
    pub(crate) hours: [u32; 24],
    pub(crate) timed_calls: u32,
    pub(crate) max_per_minute: u32,
}

impl Model {
    fn observe(&mut self, context: (u64, u64), tool: u64, call: &Step, per_minute: Option<u32>) {
        self.calls += 1;
        self.transitions.observe(context.0, context.1, tool);
        self.tools.entry(tool).or_default().calls += 1;
        self.arg_sets
            .entry(tool)
            .or_default()
            .observe(arg_set(&call.args));
        for (name, value) in &call.args {
            let param = mix(tool, fnv(name.as_bytes()));
            self.shapes.entry(param).or_default().observe(shape(value));
            facets(value, &mut |facet, h| {
                self.values
                    .entry(mix(param, facet.tag()))
                    .or_default()
                    .observe(h);
            });
        }
        if let (Some(t), Some(n)) = (call.time_ms, per_minute) {
            self.timed_calls += 1;
            self.hours[hour_of(t)] += 1;
            self.max_per_minute = self.max_per_minute.max(n);
        }
    }

    fn end_session(&mut self, last: (u64, u64), tool_counts: &[(u64, usize)], calls: usize) {
        self.sessions += 1;
        self.transitions.observe(last.0, last.1, END);
        self.session_calls.add(calls);
        for &(tool, n) in tool_counts {
            self.tools.entry(tool).or_default().per_session.add(n);
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AgentModels {
    model: Model,
    profiles: HashMap<String, Model>,
}

/// What normal looks like, per (agent, task profile), per agent and overall.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Baseline {
    format: u32,
    pub config: Config,
    global: Model,
    agents: HashMap<String, AgentModels>,
}

/// A model and the name of its level, for reasons.
pub(crate) type Level<'a> = (&'static str, &'a Model);

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cannot {action} baseline file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("baseline file {path} is not a valid baseline ({source}); retrain it")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "baseline file {path} has format {found}, this build reads format {FORMAT}; retrain it"
    )]
    Format { path: PathBuf, found: u32 },
}

impl Baseline {
    pub fn new(config: Config) -> Baseline {
        Baseline {
            format: FORMAT,
            config,
            ..Baseline::default()
        }
    }

    /// Learns from whole sessions.
    pub fn train<'a>(
        config: Config,
        sessions: impl IntoIterator<Item = (&'a SessionKey, &'a [Step])>,
    ) -> Baseline {
        let mut baseline = Baseline::new(config);
        for (key, steps) in sessions {
            baseline.observe_session(key, steps);
        }
        baseline
    }

    /// Learns one whole session: every call, then its end.
    pub fn observe_session(&mut self, key: &SessionKey, steps: &[Step]) {
        let mut trail = Trail::default();
        for step in steps {
            self.observe(key, &trail, step);
            trail.push(step);
        }
        self.end_session(key, &trail);
    }

    /// Learns one call, made after the session's earlier calls (`trail`), as normal.
    pub fn observe(&mut self, key: &SessionKey, trail: &Trail, call: &Step) {
        let context = trail.context();
        let tool = tool_hash(&call.tool);
        let per_minute = call
            .time_ms
            .map(|t| trail.calls_within(t, MINUTE_MS) as u32 + 1);
        let (agent, profile) = self.models_mut(key);
        for model in [&mut *agent, &mut *profile] {
            model.observe(context, tool, call, per_minute);
        }
        self.global.observe(context, tool, call, per_minute);
    }

    /// Closes a session whose calls were all observed: counts its end, its length and how often
    /// it called each tool.
    pub fn end_session(&mut self, key: &SessionKey, trail: &Trail) {
        let last = trail.context();
        let counts: Vec<(u64, usize)> = trail.tool_counts().collect();
        let (agent, profile) = self.models_mut(key);
        for model in [&mut *agent, &mut *profile] {
            model.end_session(last, &counts, trail.len());
        }
        self.global.end_session(last, &counts, trail.len());
    }

    /// Sessions learned under `key` exactly.
    pub fn sessions(&self, key: &SessionKey) -> u32 {
        self.profile_model(key).map_or(0, |m| m.sessions)
    }

    pub fn save(&self, path: &Path) -> Result<(), DetectError> {
        let io = |source| DetectError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_vec(self).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(path, text).map_err(io)
    }

    pub fn load(path: &Path) -> Result<Baseline, DetectError> {
        let text = std::fs::read(path).map_err(|source| DetectError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        #[derive(Deserialize)]
        struct Header {
            format: u32,
        }
        let parse = |source| DetectError::Parse {
            path: path.to_owned(),
            source,
        };
        let header: Header = serde_json::from_slice(&text).map_err(parse)?;
        if header.format != FORMAT {
            return Err(DetectError::Format {
                path: path.to_owned(),
                found: header.format,
            });
        }
        serde_json::from_slice(&text).map_err(parse)
    }

    fn models_mut(&mut self, key: &SessionKey) -> (&mut Model, &mut Model) {
        let AgentModels { model, profiles } = self.agents.entry(key.agent.clone()).or_default();
        let profile = profiles.entry(key.profile.clone()).or_default();
        (model, profile)
    }

    fn profile_model(&self, key: &SessionKey) -> Option<&Model> {
        self.agents.get(&key.agent)?.profiles.get(&key.profile)
    }

    /// The levels that know something about `key`, most specific first.
    pub(crate) fn levels(&self, key: &SessionKey) -> Levels<'_> {
        let global = ("all agents", &self.global);
        let mut items = [global; 3];
        let mut len = 0;
        if let Some(agent) = self.agents.get(&key.agent) {
            if let Some(profile) = agent.profiles.get(&key.profile) {
                items[len] = ("agent+profile", profile);
                len += 1;
            }
            items[len] = ("agent", &agent.model);
            len += 1;
        }
        items[len] = global;
        Levels {
            items,
            len: len + 1,
        }
    }
}

/// Up to three levels, most specific first, without allocating.
pub(crate) struct Levels<'a> {
    items: [Level<'a>; 3],
    len: usize,
}

impl<'a> Levels<'a> {
    pub(crate) fn as_slice(&self) -> &[Level<'a>] {
        &self.items[..self.len]
    }
}

pub(crate) fn tool_hash(tool: &str) -> u64 {
    // Keep clear of the START/END symbols.
    fnv(tool.as_bytes()) | 4
}

/// Order-insensitive hash of the names of the non-null arguments.
pub(crate) fn arg_set(args: &serde_json::Map<String, serde_json::Value>) -> u64 {
    let mut h = 0u64;
    let mut n = 0u64;
    for (name, value) in args {
        if !value.is_null() {
            h ^= mix(fnv(name.as_bytes()), 0);
            n += 1;
        }
    }
    mix(h, n)
}

pub(crate) fn hour_of(time_ms: u64) -> usize {
    ((time_ms / 3_600_000) % 24) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::score;
    use serde_json::{json, Map, Value};

    fn step(tool: &str, args: Value) -> Step {
        let Value::Object(args) = args else {
            return Step::call(tool, Map::new());
        };
        Step::call(tool, args)
    }

    fn trained() -> (Baseline, SessionKey) {
        let key = SessionKey::new("assistant", "triage");
        let session = [
            step("get_unread_emails", json!({})),
            step(
                "send_email",
                json!({"recipients": ["lead@corp.example"], "subject": "Triage"}),
            ),
        ];
        let mut b = Baseline::new(Config::default());
        for _ in 0..5 {
            b.observe_session(&key, &session);
        }
        (b, key)
    }

    #[test]
    fn save_then_load_gives_the_same_scores() {
        let (b, key) = trained();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("baseline.json");
        b.save(&path).expect("save");
        let loaded = Baseline::load(&path).expect("load");
        let prefix = [step("get_unread_emails", json!({}))];
        for call in [
            step("send_email", json!({"recipients": ["lead@corp.example"]})),
            step("send_email", json!({"recipients": ["x@elsewhere.example"]})),
            step("delete_email", json!({"email_id": "3"})),
        ] {
            assert_eq!(
                score(&b, &key, &Trail::of(&prefix), &call),
                score(&loaded, &key, &Trail::of(&prefix), &call)
            );
        }
        assert_eq!(loaded.sessions(&key), 5);
    }

    #[test]
    fn load_names_the_file_when_it_is_not_a_baseline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("baseline.json");
        std::fs::write(&path, "{\"format\": 1, \"agents\": 3}").expect("write");
        let err = Baseline::load(&path).expect_err("invalid");
        assert!(matches!(err, DetectError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("baseline.json"), "{err}");
    }

    #[test]
    fn load_refuses_another_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("baseline.json");
        std::fs::write(&path, "{\"format\": 99}").expect("write");
        let err = Baseline::load(&path).expect_err("other format");
        assert!(
            matches!(err, DetectError::Format { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn observing_online_equals_training_in_one_go() {
        let (b, key) = trained();
        let mut online = Baseline::new(Config::default());
        let session = [
            step("get_unread_emails", json!({})),
            step(
                "send_email",
                json!({"recipients": ["lead@corp.example"], "subject": "Triage"}),
            ),
        ];
        for _ in 0..5 {
            online.observe(&key, &Trail::default(), &session[0]);
            online.observe(&key, &Trail::of(&session[..1]), &session[1]);
            online.end_session(&key, &Trail::of(&session));
        }
        let call = step("send_email", json!({"recipients": ["x@elsewhere.example"]}));
        assert_eq!(
            score(&b, &key, &Trail::of(&session[..1]), &call),
            score(&online, &key, &Trail::of(&session[..1]), &call)
        );
    }

    #[test]
    fn a_profile_is_learned_under_its_agent_and_globally() {
        let (b, key) = trained();
        let levels = b.levels(&key);
        let names: Vec<&str> = levels
            .as_slice()
            .iter()
            .map(|(n, m)| {
                assert_eq!(m.sessions, 5);
                *n
            })
            .collect();
        assert_eq!(names, ["agent+profile", "agent", "all agents"]);
        let other = b.levels(&SessionKey::new("other", "triage"));
        assert_eq!(other.as_slice().len(), 1);
    }

    #[test]
    fn histogram_surprise_grows_past_the_usual_count() {
        let mut h = Histogram::default();
        for _ in 0..10 {
            h.add(1);
        }
        assert!(h.surprise_reaching(1, 10) < 0.2);
        assert!(h.surprise_reaching(2, 10) > 4.0);
    }
}
