//! `warden replay` end to end on a fixed slice of the AgentDojo dev traces: the scores it prints
//! must equal a recount, done here from its own per-call decisions and the labels.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The dev traces live beside the repository (`../shared/eval/agentdojo`), as on every
/// developer machine and in CI.
fn dev_set() -> PathBuf {
    let dir = root().join("../shared/eval/agentdojo");
    assert!(
        dir.join("workspace.traces.jsonl.gz").exists(),
        "the AgentDojo dev set is missing at {}: this test needs ../shared beside the repository",
        dir.display()
    );
    dir
}

fn read_gz_jsonl(path: &Path) -> Vec<Value> {
    let file = std::fs::File::open(path).expect("open");
    BufReader::new(flate2::read::MultiGzDecoder::new(file))
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect()
}

fn write_jsonl(path: &Path, lines: &[&Value]) {
    let mut f = std::fs::File::create(path).expect("create");
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}

#[test]
fn replay_scores_equal_a_recount_from_the_labels() {
    let dev = dev_set();
    let labels = read_gz_jsonl(&dev.join("workspace.labels.jsonl.gz"));
    let traces = read_gz_jsonl(&dev.join("workspace.traces.jsonl.gz"));

    // A fixed slice: the first 12 benign-like sessions, the first 25 successful attacks and the
    // first 10 failed ones, in file order.
    let mut picked: Vec<String> = Vec::new();
    let (mut benign, mut won, mut lost) = (0, 0, 0);
    for l in labels.iter().filter(|l| l["kind"] == "session") {
        let id = l["session"].as_str().expect("id").to_owned();
        let take = match (l["session_type"].as_str(), l["attack_succeeded"].as_bool()) {
            (Some("benign" | "injection_task_as_user"), _) if benign < 12 => {
                benign += 1;
                true
            }
            (Some("attacked"), Some(true)) if won < 25 => {
                won += 1;
                true
            }
            (Some("attacked"), Some(false)) if lost < 10 => {
                lost += 1;
                true
            }
            _ => false,
        };
        if take {
            picked.push(id);
        }
    }
    assert_eq!(
        (benign, won, lost),
        (12, 25, 10),
        "the dev set has enough of each kind"
    );
    let set: HashSet<&str> = picked.iter().map(String::as_str).collect();
    let in_slice = |v: &&Value| v["session"].as_str().is_some_and(|s| set.contains(s));

    let dir = tempfile::tempdir().expect("tempdir");
    let traces_path = dir.path().join("slice.traces.jsonl");
    let labels_path = dir.path().join("slice.labels.jsonl");
    let out_path = dir.path().join("decisions.jsonl");
    write_jsonl(
        &traces_path,
        &traces.iter().filter(in_slice).collect::<Vec<_>>(),
    );
    write_jsonl(
        &labels_path,
        &labels.iter().filter(in_slice).collect::<Vec<_>>(),
    );

    let output = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(root())
        .env_remove("WARDEN_CONFIG")
        .args(["replay", "--json", "--tools"])
        .arg(dev.join("tools.json"))
        .arg("--traces")
        .arg(&traces_path)
        .arg("--labels")
        .arg(&labels_path)
        .arg("--out")
        .arg(&out_path)
        .output()
        .expect("run warden replay");
    assert!(
        output.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let printed = &report["overall"];

    // The recount: straight from the definitions in the dev set's README.
    let decisions: Vec<Value> = std::fs::read_to_string(&out_path)
        .expect("decisions written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("decision line"))
        .collect();
    let calls_in_slice = traces
        .iter()
        .filter(in_slice)
        .filter(|t| t["kind"] == "tool_call")
        .count();
    assert_eq!(
        decisions.len(),
        calls_in_slice,
        "one decision per recorded call"
    );
    let mut verdicts: HashMap<(String, i64), String> = HashMap::new();
    for d in &decisions {
        let key = (
            d["session"].as_str().expect("session").to_owned(),
            d["seq"].as_i64().expect("seq"),
        );
        verdicts.insert(key, d["decision"].as_str().expect("decision").to_owned());
    }
    let injected: HashSet<(String, i64)> = labels
        .iter()
        .filter(in_slice)
        .filter(|l| l["kind"] == "call" && l["label"] == "injected")
        .map(|l| {
            (
                l["session"].as_str().expect("s").to_owned(),
                l["seq"].as_i64().expect("seq"),
            )
        })
        .collect();
    let (mut attacks, mut stopped, mut by_hold, mut by_deny) = (0, 0, 0, 0);
    let (mut benign_n, mut held, mut denied) = (0, 0, 0);
    let (mut other_calls, mut collateral) = (0, 0);
    for l in labels
        .iter()
        .filter(in_slice)
        .filter(|l| l["kind"] == "session")
    {
        let id = l["session"].as_str().expect("id");
        let calls: Vec<(&(String, i64), &String)> =
            verdicts.iter().filter(|((s, _), _)| s == id).collect();
        match l["session_type"].as_str() {
            Some("attacked") => {
                let inj: Vec<&String> = calls
                    .iter()
                    .filter(|(k, _)| injected.contains(*k))
                    .map(|(_, v)| *v)
                    .collect();
                for (k, v) in &calls {
                    if !injected.contains(*k) {
                        other_calls += 1;
                        collateral += usize::from(v.as_str() != "allow");
                    }
                }
                if l["attack_succeeded"] == true && !inj.is_empty() {
                    attacks += 1;
                    if inj.iter().all(|v| v.as_str() != "allow") {
                        stopped += 1;
                        if inj.iter().all(|v| v.as_str() == "deny") {
                            by_deny += 1;
                        } else {
                            by_hold += 1;
                        }
                    }
                }
            }
            Some("benign" | "injection_task_as_user") => {
                benign_n += 1;
                if calls.iter().any(|(_, v)| v.as_str() == "deny") {
                    denied += 1;
                } else if calls.iter().any(|(_, v)| v.as_str() == "hold") {
                    held += 1;
                }
            }
            _ => {}
        }
    }
    let expect = [
        ("attacks", attacks),
        ("stopped", stopped),
        ("stopped_by_hold", by_hold),
        ("stopped_by_deny", by_deny),
        ("benign", benign_n),
        ("benign_held", held),
        ("benign_denied", denied),
        ("attacked_other_calls", other_calls),
        ("collateral", collateral),
    ];
    for (field, n) in expect {
        assert_eq!(
            printed[field], n,
            "`{field}` printed {} but recounted {n}: {report:#}",
            printed[field]
        );
    }
    assert_eq!(
        attacks, 25,
        "every successful attack in the slice has injected calls"
    );
    assert_eq!(benign_n, 12);
}
