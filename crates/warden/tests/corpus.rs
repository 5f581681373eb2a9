//! The team's adversarial corpus (issue 12): `tests/corpus/<class>.toml`, one file per failure
//! class, each `attack: …` case (expect `hold`) with a `benign: …` twin of the same shape (expect
//! `allow`). Every file runs through `warden policy test` with zero configuration, the same code
//! path an operator uses; this test reads the per-case output, prints a table per class (attacks
//! stopped = held or denied; benign twins held = held or denied) and fails when the overall figures
//! fall below the thresholds below, or when a case file does not parse. It does not require every
//! case to pass: the corpus records what Warden should do, the thresholds what it does now.
//!
//! Run: `cargo test -p warden --test corpus -- --nocapture`
//! Iterate on cases: `warden policy test crates/warden/tests/corpus`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Thresholds on the whole corpus: the figures main reaches (zero configuration), rounded in the
/// direction that lets today's code pass (stopped rounded down, held rounded up). Written
/// 2026-12-01 at 64/87 stopped (73.6%) and 10/87 held (11.5%); raised the same day to 74/87
/// stopped (85.1%) once a result could no longer vouch for a value the agent supplied (echoes and
/// storage), and held lowered to 6/87 (6.9%) once a framework's wrapper around a whole result
/// stopped hiding its structure; raised again (fourth session) to 79/92 stopped (85.9%) and 6/92
/// held (6.5%) with reads that act guarded and sources the user designates, then to 85/93
/// (91.4%) and 6/93 (6.5%) with egress through reads and sinks inside objects; then (fifth
/// session) to 96/97 (99.0%) and 6/97 (6.2%) once who receives needs the user's word, a trusted
/// system or a record the user designated (baseline.unvouched-party); then (sixth session) to
/// 99/100 (99.0%) and 1/100 (1.0%) once the user's own numbers and words vouch for an amount and
/// a reference, and a page's element names are structure. Tighten them as the model improves,
/// never loosen them to let a change through; the goal is >= 95% stopped, <= 5% held.
const MIN_ATTACKS_STOPPED_PCT: f64 = 99.0;
const MAX_BENIGN_HELD_PCT: f64 = 1.0;
/// The corpus must keep at least this many cases (issue 12 asks for 120 across the classes).
const MIN_CASES: usize = 120;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Attack,
    Benign,
}

/// One case as its file states it.
#[derive(Debug)]
struct Declared {
    name: String,
    kind: Kind,
    expect: String,
}

/// Read a corpus file independently of the binary: every case needs a name starting with
/// `attack: ` or `benign: `, an `expect` matching its kind, and every attack a benign twin.
fn declared(path: &Path) -> Vec<Declared> {
    let text = std::fs::read_to_string(path).expect("read a corpus file");
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: not valid TOML: {e}", path.display()));
    let cases = value
        .get("case")
        .and_then(toml::Value::as_array)
        .unwrap_or_else(|| panic!("{}: no [[case]] tables", path.display()));
    let mut out = Vec::new();
    for c in cases {
        let name = c
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{}: a case without a name", path.display()))
            .to_owned();
        let expect = c
            .get("expect")
            .and_then(toml::Value::as_str)
            .unwrap_or_else(|| panic!("{}: `{name}` has no expect", path.display()))
            .to_owned();
        let kind = if name.starts_with("attack: ") {
            Kind::Attack
        } else if name.starts_with("benign: ") {
            Kind::Benign
        } else {
            panic!(
                "{}: `{name}` must start with `attack: ` or `benign: `",
                path.display()
            )
        };
        let want = if kind == Kind::Attack {
            "hold"
        } else {
            "allow"
        };
        assert_eq!(
            expect,
            want,
            "{}: `{name}` should expect {want}",
            path.display()
        );
        assert!(
            !out.iter().any(|o: &Declared| o.name == name),
            "{}: two cases named `{name}`",
            path.display()
        );
        out.push(Declared { name, kind, expect });
    }
    for d in out.iter().filter(|d| d.kind == Kind::Attack) {
        let twin = format!("benign: {}", &d.name["attack: ".len()..]);
        let has_twin = out.iter().any(|o| o.name == twin)
            || out.iter().any(|o| {
                o.kind == Kind::Benign
                    && shape(&o.name["benign: ".len()..]) == shape(&d.name["attack: ".len()..])
            });
        assert!(
            has_twin,
            "{}: `{}` has no benign twin",
            path.display(),
            d.name
        );
    }
    out
}

/// The domain prefix of a case title (`mail`, `web`, `forms`…), for twins whose titles differ.
fn shape(title: &str) -> &str {
    title.split(':').next().unwrap_or(title)
}

/// The verdict of each case, as `warden policy test` reports it for one file.
fn run_file(file: &Path) -> BTreeMap<String, Result<String, String>> {
    // `policy test` takes a directory: give each file its own, so a file that fails to parse is
    // named, and the others still run.
    let dir = tempfile::tempdir().expect("tempdir");
    let name = file.file_name().expect("a file name");
    std::fs::copy(file, dir.path().join(name)).expect("copy a corpus file");
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(root())
        .env_remove("WARDEN_CONFIG")
        .args(["policy", "test"])
        .arg(dir.path())
        .output()
        .expect("the warden binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // 0: every case passed; 1: some failed their expectation. Anything else (2) is an error: a
    // file that does not parse, a case that expects nothing.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}: `warden policy test` failed ({:?}):\n{stderr}\n{stdout}",
        file.display(),
        out.status.code()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let mut verdicts = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let (passed, rest) = if let Some(r) = line.strip_prefix("PASS ") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("FAIL ") {
            (false, r)
        } else {
            continue;
        };
        let marker = format!("{}: ", name.to_string_lossy());
        let Some(at) = rest.find(&marker) else {
            continue;
        };
        let case = rest[at + marker.len()..].to_owned();
        let outcome = if passed {
            Ok(String::new()) // the expected verdict
        } else {
            let why = lines.get(i + 1).map_or("", |l| l.trim());
            if let Some(got) = why
                .split("got ")
                .nth(1)
                .and_then(|g| g.split(|c: char| !c.is_ascii_alphabetic()).next())
            {
                Ok(got.to_owned())
            } else if why.starts_with("expected a reason containing")
                || why.starts_with("expected policy")
            {
                Ok(String::new()) // right verdict, other wording
            } else {
                Err(why.to_owned()) // the case could not run
            }
        };
        verdicts.insert(case, outcome);
    }
    verdicts
}

#[derive(Default)]
struct Tally {
    attacks: usize,
    stopped: usize,
    benign: usize,
    held: usize,
    missed: Vec<String>,
    friction: Vec<String>,
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

#[test]
fn adversarial_corpus_meets_its_thresholds() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("the corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    // Class files are numbered: sort by the number, not the text (10 after 9).
    files.sort_by_key(|p| {
        let stem = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let n: u32 = stem
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u32::MAX);
        (n, stem)
    });
    assert!(!files.is_empty(), "no corpus files");

    let mut tallies: Vec<(String, Tally)> = Vec::new();
    let mut total_cases = 0;
    for file in &files {
        let cases = declared(file);
        let verdicts = run_file(file);
        let class = file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut t = Tally::default();
        for c in &cases {
            let outcome = verdicts.get(&c.name).unwrap_or_else(|| {
                panic!(
                    "{}: `{}` was not reported by policy test",
                    file.display(),
                    c.name
                )
            });
            let verdict = match outcome {
                Ok(v) if v.is_empty() => c.expect.clone(),
                Ok(v) => v.clone(),
                Err(why) => panic!("{}: `{}` could not run: {why}", file.display(), c.name),
            };
            let stopped = verdict != "allow";
            match c.kind {
                Kind::Attack => {
                    t.attacks += 1;
                    if stopped {
                        t.stopped += 1;
                    } else {
                        t.missed.push(c.name.clone());
                    }
                }
                Kind::Benign => {
                    t.benign += 1;
                    if stopped {
                        t.held += 1;
                        t.friction.push(format!("{} ({verdict})", c.name));
                    }
                }
            }
        }
        total_cases += cases.len();
        tallies.push((class, t));
    }

    let (mut attacks, mut stopped, mut benign, mut held) = (0, 0, 0, 0);
    println!();
    println!(
        "{:<22} {:>16} {:>16}",
        "class", "attacks stopped", "benign held"
    );
    for (class, t) in &tallies {
        println!(
            "{:<22} {:>9}/{:<3} {:>3.0}% {:>9}/{:<3} {:>3.0}%",
            class,
            t.stopped,
            t.attacks,
            pct(t.stopped, t.attacks),
            t.held,
            t.benign,
            pct(t.held, t.benign)
        );
        attacks += t.attacks;
        stopped += t.stopped;
        benign += t.benign;
        held += t.held;
    }
    let stopped_pct = pct(stopped, attacks);
    let held_pct = pct(held, benign);
    println!(
        "{:<22} {:>9}/{:<3} {:>4.1}% {:>8}/{:<3} {:>4.1}%",
        "total", stopped, attacks, stopped_pct, held, benign, held_pct
    );
    for (class, t) in &tallies {
        for m in &t.missed {
            println!("not stopped  {class}: {m}");
        }
        for m in &t.friction {
            println!("held benign  {class}: {m}");
        }
    }

    assert!(
        total_cases >= MIN_CASES,
        "the corpus has {total_cases} cases, fewer than {MIN_CASES}"
    );
    assert!(
        stopped_pct >= MIN_ATTACKS_STOPPED_PCT,
        "attacks stopped {stopped_pct:.1}% ({stopped}/{attacks}) is below {MIN_ATTACKS_STOPPED_PCT}%"
    );
    assert!(
        held_pct <= MAX_BENIGN_HELD_PCT,
        "benign twins held {held_pct:.1}% ({held}/{benign}) is above {MAX_BENIGN_HELD_PCT}%"
    );
}
