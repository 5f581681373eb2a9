//! `detect-eval <agentdojo dir> [--folds K] [--profile task|none] [--split session|task] [--train-on-injected]`:
//! K-fold cross-validation of the anomaly score on the AgentDojo dev traces. Trains on every
//! call not labelled `injected` of the training folds' sessions, scores every call of the held
//! out sessions, and prints ROC AUC and the detection rate at 1% false positives for `injected`
//! calls against all others — standalone and combined with a simple provenance signal.
//!
//! The labels only choose what is trained on and score the result; the detector sees the
//! traces: the agent is the suite, the task profile a hash of the user's first message (what a
//! deployment that opens a session per task would know), `untrusted_read` marks results of tools
//! whose name reads (their content comes from the open world).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use serde_json::Value;
use warden_detect::{score, Baseline, Config, Effect, SessionKey, Step, Trail};

const SUITES: [&str; 2] = ["workspace", "travel"];

#[derive(Clone, Copy, PartialEq)]
enum ProfileMode {
    /// The profile is the task: a hash of the user's first message.
    Task,
    /// No profile: everything is learned per agent.
    None,
}

#[derive(Clone, Copy, PartialEq)]
enum Split {
    Session,
    /// Whole user tasks are held out: every test session is a cold start for its profile.
    Task,
}

struct Options {
    dir: PathBuf,
    folds: u64,
    profile: ProfileMode,
    split: Split,
    /// Train on injected calls too, as a baseline learned from unlabelled history would.
    contaminated: bool,
}

struct Session {
    id: String,
    suite: &'static str,
    key: SessionKey,
    user_task: String,
    session_type: String,
    steps: Vec<Step>,
    /// Per step: its label (`injected`, `ambiguous`, `goal_like`, or `""`).
    labels: Vec<String>,
    /// Per step: some sink-looking argument value occurs in an earlier tool result and not in
    /// what the user or the system said.
    provenance: Vec<bool>,
}

struct Scored {
    suite: &'static str,
    injected: bool,
    label: String,
    session_type: String,
    anomaly: f64,
    provenance: bool,
}

fn main() -> Result<()> {
    let options = parse_args()?;
    let mut sessions = Vec::new();
    for suite in SUITES {
        sessions.extend(read_suite(&options, suite)?);
    }
    let calls: usize = sessions.iter().map(|s| s.steps.len()).sum();
    let injected: usize = sessions
        .iter()
        .flat_map(|s| &s.labels)
        .filter(|l| *l == "injected")
        .count();
    println!(
        "{} sessions, {calls} calls, {injected} injected; {} folds split by {}, profile = {}, training {} injected calls",
        sessions.len(),
        options.folds,
        if options.split == Split::Session { "session" } else { "user task" },
        if options.profile == ProfileMode::Task { "task (hash of the first user message)" } else { "none (per agent)" },
        if options.contaminated { "with" } else { "without" },
    );

    let started = Instant::now();
    let full = train(sessions.iter(), true);
    let train_all = started.elapsed();

    let mut scored = Vec::with_capacity(calls);
    let mut scoring = std::time::Duration::ZERO;
    for fold in 0..options.folds {
        let in_fold = |s: &Session| fold_of(s, &options) == fold;
        let baseline = train(
            sessions.iter().filter(|s| !in_fold(s)),
            options.contaminated,
        );
        let t = Instant::now();
        for s in sessions.iter().filter(|s| in_fold(s)) {
            let mut trail = Trail::default();
            for i in 0..s.steps.len() {
                let result = score(&baseline, &s.key, &trail, &s.steps[i]);
                trail.push(&s.steps[i]);
                scored.push(Scored {
                    suite: s.suite,
                    injected: s.labels[i] == "injected",
                    label: s.labels[i].clone(),
                    session_type: s.session_type.clone(),
                    anomaly: result.value,
                    provenance: s.provenance[i],
                });
            }
        }
        scoring += t.elapsed();
    }

    println!("\n| calls | positives | negatives | signal | ROC AUC | detected at 1% FPR |");
    println!("|---|---|---|---|---|---|");
    for suite in ["all", "workspace", "travel"] {
        let part: Vec<&Scored> = scored
            .iter()
            .filter(|c| suite == "all" || c.suite == suite)
            .collect();
        for (signal, f) in signals() {
            let (auc, tpr, pos, neg) = metrics(&part, f);
            println!(
                "| {suite} | {pos} | {neg} | {signal} | {auc:.4} | {:.1}% |",
                tpr * 100.0
            );
        }
    }

    let threshold = threshold_at(&scored.iter().collect::<Vec<_>>(), |c| c.anomaly, 0.01);
    println!("\nAt the 1% FPR threshold of the anomaly score ({threshold:.3}), negatives flagged by kind:");
    let mut by_kind: HashMap<String, (usize, usize)> = HashMap::new();
    for c in scored.iter().filter(|c| !c.injected) {
        let kind = if c.label.is_empty() {
            format!("unlabelled call in {} session", c.session_type)
        } else {
            format!("{} call", c.label)
        };
        let e = by_kind.entry(kind).or_default();
        e.1 += 1;
        if c.anomaly > threshold {
            e.0 += 1;
        }
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort();
    for (kind, (flagged, n)) in kinds {
        println!("  {kind}: {flagged} of {n}");
    }
    println!(
        "\nTraining on the whole dev set ({} sessions): {:.3} s; scoring: {:.2} µs per call on average (unoptimised builds are slower: use --release).",
        sessions.len(),
        train_all.as_secs_f64(),
        scoring.as_secs_f64() * 1e6 / scored.len().max(1) as f64,
    );
    drop(full);
    Ok(())
}

type Signal = fn(&Scored) -> f64;

fn signals() -> [(&'static str, Signal); 3] {
    [
        ("anomaly", |c| c.anomaly),
        ("provenance", |c| f64::from(u8::from(c.provenance))),
        // Fixed, untuned combination: a provenance hit removes half of the remaining doubt.
        ("anomaly + provenance", |c| {
            1.0 - (1.0 - c.anomaly) * if c.provenance { 0.5 } else { 1.0 }
        }),
    ]
}

fn parse_args() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        dir: PathBuf::new(),
        folds: 5,
        profile: ProfileMode::Task,
        split: Split::Session,
        contaminated: false,
    };
    let mut dir = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--folds" => {
                options.folds = value("--folds")?.parse().context("--folds takes a number ≥ 2")?;
                if options.folds < 2 {
                    bail!("--folds takes a number ≥ 2");
                }
            }
            "--profile" => {
                options.profile = match value("--profile")?.as_str() {
                    "task" => ProfileMode::Task,
                    "none" => ProfileMode::None,
                    other => bail!("--profile is `task` or `none`, not `{other}`"),
                }
            }
            "--split" => {
                options.split = match value("--split")?.as_str() {
                    "session" => Split::Session,
                    "task" => Split::Task,
                    other => bail!("--split is `session` or `task`, not `{other}`"),
                }
            }
            "--train-on-injected" => options.contaminated = true,
            _ if dir.is_none() && !arg.starts_with("--") => dir = Some(PathBuf::from(arg)),
            _ => bail!("usage: detect-eval <agentdojo dir> [--folds K] [--profile task|none] [--split session|task] [--train-on-injected]"),
        }
    }
    options.dir = dir.context("usage: detect-eval <agentdojo dir> [--folds K] [--profile task|none] [--split session|task] [--train-on-injected]")?;
    Ok(options)
}

/// Trains on every call of the sessions that is not labelled `injected` (on all of them with
/// `with_injected`).
fn train<'a>(sessions: impl Iterator<Item = &'a Session>, with_injected: bool) -> Baseline {
    let mut baseline = Baseline::new(Config::default());
    for s in sessions {
        let kept: Vec<Step> = s
            .steps
            .iter()
            .zip(&s.labels)
            .filter(|(_, l)| with_injected || *l != "injected")
            .map(|(step, _)| step.clone())
            .collect();
        baseline.observe_session(&s.key, &kept);
    }
    baseline
}

fn fold_of(s: &Session, options: &Options) -> u64 {
    let what = match options.split {
        Split::Session => s.id.as_str(),
        Split::Task => s.user_task.as_str(),
    };
    stable_hash(what.as_bytes()) % options.folds
}

fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in BufReader::new(GzDecoder::new(file)).lines().enumerate() {
        let line = line.with_context(|| format!("reading {} (is it gzip?)", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn read_suite(options: &Options, suite: &'static str) -> Result<Vec<Session>> {
    let traces = read_jsonl(&options.dir.join(format!("{suite}.traces.jsonl.gz")))?;
    let labels = read_jsonl(&options.dir.join(format!("{suite}.labels.jsonl.gz")))?;
    let mut session_info: HashMap<String, (String, String)> = HashMap::new();
    let mut call_labels: HashMap<(String, i64), String> = HashMap::new();
    for l in &labels {
        match str_of(l, "kind") {
            "session" => {
                session_info.insert(
                    str_of(l, "session").to_owned(),
                    (
                        str_of(l, "user_task").to_owned(),
                        str_of(l, "session_type").to_owned(),
                    ),
                );
            }
            "call" => {
                let seq = l.get("seq").and_then(Value::as_i64).unwrap_or(-1);
                call_labels.insert(
                    (str_of(l, "session").to_owned(), seq),
                    str_of(l, "label").to_owned(),
                );
            }
            _ => {}
        }
    }

    let mut sessions: Vec<Session> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    // Per session: what the user and system said, and the tool results so far.
    let mut trusted: Vec<String> = Vec::new();
    let mut results: Vec<String> = Vec::new();
    let mut first_prompt: Vec<Option<String>> = Vec::new();
    let mut call_ids: Vec<HashMap<String, usize>> = Vec::new();
    for e in &traces {
        let id = str_of(e, "session");
        let i = match index.get(id) {
            Some(&i) => i,
            None => {
                let (user_task, session_type) = session_info.get(id).cloned().unwrap_or_default();
                index.insert(id.to_owned(), sessions.len());
                sessions.push(Session {
                    id: id.to_owned(),
                    suite,
                    key: SessionKey::new(suite, ""),
                    user_task,
                    session_type,
                    steps: vec![],
                    labels: vec![],
                    provenance: vec![],
                });
                trusted.push(String::new());
                results.push(String::new());
                first_prompt.push(None);
                call_ids.push(HashMap::new());
                sessions.len() - 1
            }
        };
        match str_of(e, "kind") {
            "system_message" | "user_message" => {
                let text = str_of(e, "text");
                if str_of(e, "kind") == "user_message" && first_prompt[i].is_none() {
                    first_prompt[i] = Some(text.to_owned());
                }
                trusted[i].push_str(&text.to_lowercase());
                trusted[i].push('\n');
            }
            "tool_call" => {
                let tool = str_of(e, "tool");
                let args = e
                    .get("args")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let s = &mut sessions[i];
                let provenance = from_results_only(&args, &trusted[i], &results[i]);
                let seq = e.get("seq").and_then(Value::as_i64).unwrap_or(-1);
                s.labels.push(
                    call_labels
                        .get(&(id.to_owned(), seq))
                        .cloned()
                        .unwrap_or_default(),
                );
                s.provenance.push(provenance);
                s.steps.push(Step::call(tool, args));
                let call_id = str_of(e, "call_id");
                if !call_id.is_empty() {
                    call_ids[i].insert(call_id.to_owned(), s.steps.len() - 1);
                }
            }
            "tool_result" => {
                let s = &mut sessions[i];
                let call_id = str_of(e, "call_id");
                // The result answers its call, or else the last call of the same tool.
                let step = call_ids[i]
                    .get(call_id)
                    .copied()
                    .or_else(|| s.steps.iter().rposition(|st| st.tool == str_of(e, "tool")));
                let failed = e.get("error").is_some_and(|v| !v.is_null());
                if let Some(step) = step {
                    if !failed && s.steps[step].effect == Effect::Read {
                        s.steps[step].untrusted_read = true;
                    }
                }
                results[i].push_str(&str_of(e, "result_text").to_lowercase());
                results[i].push('\n');
            }
            _ => {}
        }
    }
    for (s, prompt) in sessions.iter_mut().zip(first_prompt) {
        if options.profile == ProfileMode::Task {
            let prompt = prompt.unwrap_or_default();
            s.key.profile = format!("task-{:016x}", stable_hash(prompt.trim().as_bytes()));
        }
    }
    let known: HashSet<&str> = session_info.keys().map(String::as_str).collect();
    sessions.retain(|s| known.contains(s.id.as_str()));
    Ok(sessions)
}

/// The provenance signal, kept deliberately simple: some argument value that looks like a
/// destination (an e-mail address, a URL, an account number) occurs in an earlier tool result
/// and nowhere in what the user or the system said.
fn from_results_only(args: &serde_json::Map<String, Value>, trusted: &str, results: &str) -> bool {
    let mut values = Vec::new();
    for v in args.values() {
        match v {
            Value::String(s) => values.push(s.as_str()),
            Value::Array(items) => values.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    values.into_iter().any(|v| {
        let v = v.trim().to_lowercase();
        sink_looking(&v) && results.contains(&v) && !trusted.contains(&v)
    })
}

fn sink_looking(v: &str) -> bool {
    if v.len() < 6 || v.len() > 200 || v.contains(char::is_whitespace) {
        return false;
    }
    let email = v
        .split_once('@')
        .is_some_and(|(a, d)| !a.is_empty() && d.contains('.'));
    let url = v.starts_with("http://") || v.starts_with("https://") || v.starts_with("www.");
    // An account number: two letters then mostly digits (IBAN-like), or 8+ digits.
    let b = v.as_bytes();
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let account =
        (b.len() >= 15 && b[..2].iter().all(u8::is_ascii_alphabetic) && digits * 10 >= b.len() * 7)
            || (digits >= 8 && digits == b.len());
    email || url || account
}

/// ROC AUC (ties count half) and the detection rate at `fpr` false positives.
fn metrics(calls: &[&Scored], f: Signal) -> (f64, f64, usize, usize) {
    let mut pairs: Vec<(f64, bool)> = calls.iter().map(|c| (f(c), c.injected)).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = pairs.iter().filter(|p| p.1).count();
    let neg = pairs.len() - pos;
    if pos == 0 || neg == 0 {
        return (f64::NAN, f64::NAN, pos, neg);
    }
    // Mann–Whitney U with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let auc = (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos as f64 * neg as f64);
    let threshold = threshold_at(calls, f, 0.01);
    let detected = pairs.iter().filter(|p| p.1 && p.0 > threshold).count();
    (auc, detected as f64 / pos as f64, pos, neg)
}

/// The lowest threshold such that at most `fpr` of the negatives score strictly above it.
fn threshold_at(calls: &[&Scored], f: impl Fn(&Scored) -> f64, fpr: f64) -> f64 {
    let mut neg: Vec<f64> = calls.iter().filter(|c| !c.injected).map(|c| f(c)).collect();
    neg.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * neg.len() as f64).floor() as usize;
    neg.get(allowed).copied().unwrap_or(f64::NEG_INFINITY)
}
