//! `warden detect train|score`: learn the behavioural baseline from recorded traces or from
//! Warden's own recorded sessions, and score calls against it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use serde_json::{json, Value};
use warden_detect::{Baseline, SessionKey, Step};
use warden_gateway::runtime::detect_step;
use warden_gateway::Config;
use warden_model::{Call, Tool};
use warden_policy::{tools, ToolSpec};

use crate::replay::{read_tool_specs, trace_sessions, TraceEvent};

#[derive(Subcommand)]
pub enum DetectCommand {
    /// Learn a baseline and save it (by default where `warden serve` loads it: the data dir's
    /// detect.json).
    Train {
        /// Trace files (AgentDojo event format, gzip or plain JSONL); repeat for several.
        #[arg(long)]
        traces: Vec<PathBuf>,
        /// Learn from Warden's own recorded sessions in this data dir instead (or as well).
        #[arg(long)]
        from_store: Option<PathBuf>,
        /// Tool specs (tools.json), for the tools' traits.
        #[arg(long)]
        tools: Option<PathBuf>,
        /// The agent and task profile the traces' sessions belong to.
        #[arg(long, default_value = "agent")]
        agent: String,
        #[arg(long, default_value = "")]
        profile: String,
        /// Where to write the model (default: the config's data dir, detect.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Score every call of some traces against a saved baseline; one JSON line per call.
    Score {
        #[arg(long, required = true)]
        traces: Vec<PathBuf>,
        #[arg(long)]
        tools: Option<PathBuf>,
        /// The model (default: the config's data dir, detect.json).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = "agent")]
        agent: String,
        #[arg(long, default_value = "")]
        profile: String,
        /// Write the scores here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Tools by name, their traits resolved from the specs and the config.
struct Traits {
    specs: HashMap<String, ToolSpec>,
    config: Config,
    cache: HashMap<String, Tool>,
}

impl Traits {
    fn new(config: &Config, tools_file: Option<&Path>) -> Result<Traits> {
        let mut specs = HashMap::new();
        if let Some(p) = tools_file {
            for list in read_tool_specs(p)?.into_values() {
                for s in list {
                    specs.insert(s.name.clone(), s);
                }
            }
        }
        Ok(Traits {
            specs,
            config: config.clone(),
            cache: HashMap::new(),
        })
    }

    fn step(&mut self, tool: &str, args: serde_json::Map<String, Value>) -> Step {
        let t = self.cache.entry(tool.to_owned()).or_insert_with(|| {
            let entry = self.config.tools.get(tool);
            let spec = self
                .specs
                .get(tool)
                .cloned()
                .or_else(|| entry.map(|e| e.spec(tool)))
                .unwrap_or_else(|| ToolSpec {
                    name: tool.to_owned(),
                    ..ToolSpec::default()
                });
            tools::resolve(&spec, "traces", entry.map(|e| &e.traits))
        });
        let call = Call {
            tool: tool.to_owned(),
            args: args.into_iter().collect(),
            call_id: String::new(),
            upstream: None,
        };
        detect_step(t, &call, None, None)
    }
}

/// The calls of one traced session as detector steps, with their trace seqs.
fn session_steps(traits: &mut Traits, events: &[TraceEvent]) -> Vec<(i64, Step)> {
    events
        .iter()
        .filter(|e| e.kind == "tool_call")
        .map(|e| {
            let args = match &e.args {
                Some(Value::Object(m)) => m.clone(),
                _ => serde_json::Map::new(),
            };
            (
                e.seq,
                traits.step(e.tool.as_deref().unwrap_or_default(), args),
            )
        })
        .collect()
}

pub fn run(config: &Config, cmd: DetectCommand) -> Result<ExitCode> {
    match cmd {
        DetectCommand::Train {
            traces,
            from_store,
            tools: tools_file,
            agent,
            profile,
            out,
        } => {
            if traces.is_empty() && from_store.is_none() {
                bail!("nothing to learn from: give --traces FILE or --from-store DATA_DIR");
            }
            let started = std::time::Instant::now();
            let mut traits = Traits::new(config, tools_file.as_deref())?;
            let mut sessions: Vec<(SessionKey, Vec<Step>)> = Vec::new();
            for t in &traces {
                for events in trace_sessions(t)? {
                    let steps = session_steps(&mut traits, &events)
                        .into_iter()
                        .map(|(_, s)| s)
                        .collect();
                    sessions.push((SessionKey::new(agent.clone(), profile.clone()), steps));
                }
            }
            if let Some(dir) = &from_store {
                sessions.extend(recorded_sessions(&mut traits, dir)?);
            }
            let calls: usize = sessions.iter().map(|(_, s)| s.len()).sum();
            let model = Baseline::train(
                config.detect.tuning.clone(),
                sessions.iter().map(|(k, s)| (k, s.as_slice())),
            );
            let path = out.unwrap_or_else(|| warden_gateway::detector_path(config));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            model
                .save(&path)
                .with_context(|| format!("saving {}", path.display()))?;
            eprintln!(
                "learned from {} sessions, {calls} calls in {:.2} s; saved {}",
                sessions.len(),
                started.elapsed().as_secs_f64(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DetectCommand::Score {
            traces,
            tools: tools_file,
            model,
            agent,
            profile,
            out,
        } => {
            let path = model.unwrap_or_else(|| warden_gateway::detector_path(config));
            let baseline = Baseline::load(&path).with_context(|| {
                format!(
                    "loading {} (train one with `warden detect train`)",
                    path.display()
                )
            })?;
            let mut traits = Traits::new(config, tools_file.as_deref())?;
            let key = SessionKey::new(agent, profile);
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut n = 0usize;
            for t in &traces {
                for events in trace_sessions(t)? {
                    let session = events
                        .first()
                        .map(|e| e.session.clone())
                        .unwrap_or_default();
                    let steps = session_steps(&mut traits, &events);
                    let mut trail = warden_detect::Trail::default();
                    for (seq, step) in &steps {
                        let s = warden_detect::score(&baseline, &key, &trail, step);
                        trail.push(step);
                        let line = json!({
                            "session": session, "seq": seq, "tool": step.tool,
                            "score": s.value, "reasons": s.contributions,
                        });
                        writeln!(sink, "{line}")?;
                        n += 1;
                    }
                }
            }
            sink.flush()?;
            eprintln!("scored {n} calls against {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Warden's own recorded sessions (the session store under a data dir) as detector sessions.
fn recorded_sessions(traits: &mut Traits, dir: &Path) -> Result<Vec<(SessionKey, Vec<Step>)>> {
    use warden_store::SessionStore as _;
    let db = dir.join("warden.db");
    if !db.exists() {
        bail!("no recorded sessions: {} does not exist", db.display());
    }
    let store = warden_store::SqliteStore::open(&db)?;
    let mut out = Vec::new();
    for s in store.list_sessions(usize::MAX)? {
        let Some(stored) = store.load_session(&s.id)? else {
            continue;
        };
        let mut steps = Vec::new();
        for st in &stored.steps {
            if let Ok(warden_policy::Step::Call { call, verdict }) = serde_json::from_str(&st.body)
            {
                let args = call
                    .args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut step = traits.step(&call.tool, args);
                step.verdict = Some(verdict.as_str().to_owned());
                steps.push(step);
            }
        }
        out.push((
            SessionKey::new(s.agent.clone(), s.profile.clone().unwrap_or_default()),
            steps,
        ));
    }
    Ok(out)
}
