//! `cargo bench -p warden-detect --bench score`: the cost of scoring one call against a baseline
//! of 200 agents × 20 profiles × 10 sessions, for a usual call and an anomalous one after an
//! 8-call prefix; beside it, in the same run, a trivial baseline (one `HashMap` lookup of the
//! tool's name in per-profile counts). Criterion's report, then a table of p50/p99 and the ratio.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use serde_json::{json, Map, Value};
use warden_detect::{score, Baseline, Config, SessionKey, Step, Trail};

fn step(tool: &str, args: Value) -> Step {
    let args: Map<String, Value> = match args {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Step::call(tool, args)
}

/// A session of a reporting task: look things up, then write to the profile's usual recipient.
fn session(agent: usize, profile: usize, s: usize) -> Vec<Step> {
    let mut steps = vec![step("get_current_day", json!({}))];
    for i in 0..6 {
        steps.push(step(
            if i % 2 == 0 {
                "search_emails"
            } else {
                "search_files"
            },
            json!({"query": format!("topic {} {}", profile, (s + i) % 7)}),
        ));
    }
    steps.push(step(
        "send_email",
        json!({
            "recipients": [format!("lead{profile}@corp{agent}.example")],
            "subject": format!("Report {s}"),
            "body": "Dear lead,\nhere is the report.\nRegards",
        }),
    ));
    steps
}

fn baseline() -> Baseline {
    let mut b = Baseline::new(Config::default());
    for agent in 0..200 {
        for profile in 0..20 {
            let key = SessionKey::new(format!("agent-{agent}"), format!("profile-{profile}"));
            for s in 0..10 {
                b.observe_session(&key, &session(agent, profile, s));
            }
        }
    }
    b
}

fn percentiles(mut f: impl FnMut(), iters: usize) -> (Duration, Duration) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    (samples[iters / 2], samples[iters * 99 / 100])
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let t = Instant::now();
    let b = baseline();
    eprintln!(
        "trained 40,000 sessions (320,000 calls) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let key = SessionKey::new("agent-7", "profile-3");
    let full = session(7, 3, 0);
    let prefix = &Trail::of(&full[..7]);
    let usual = full[7].clone();
    let anomalous = step(
        "send_email",
        json!({"recipients": ["someone@elsewhere.example"], "subject": "Fwd", "body": "see below"}),
    );
    eprintln!("usual: {:?}", score(&b, &key, prefix, &usual));
    eprintln!("anomalous: {:?}", score(&b, &key, prefix, &anomalous));

    // The trivial baseline: per (agent, profile) counts of tools, one lookup per call.
    let mut counts: HashMap<(String, String), HashMap<String, u32>> = HashMap::new();
    counts
        .entry((key.agent.clone(), key.profile.clone()))
        .or_default()
        .insert("send_email".into(), 10);
    let profile_counts = &counts[&(key.agent.clone(), key.profile.clone())];
    let trivial = |tool: &str| profile_counts.get(tool).copied().unwrap_or(0);

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("score");
        group.bench_function("usual", |bench| {
            bench.iter(|| score(black_box(&b), &key, black_box(prefix), black_box(&usual)))
        });
        group.bench_function("anomalous", |bench| {
            bench.iter(|| {
                score(
                    black_box(&b),
                    &key,
                    black_box(prefix),
                    black_box(&anomalous),
                )
            })
        });
        group.bench_function("trivial hashmap lookup", |bench| {
            bench.iter(|| trivial(black_box(usual.tool.as_str())))
        });
        group.finish();
    }
    criterion.final_summary();
    if std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        return;
    }

    let iters = 200_000;
    let (tp50, tp99) = percentiles(
        || {
            black_box(trivial(black_box(usual.tool.as_str())));
        },
        iters,
    );
    println!(
        "\ncall      | score p50 / p99        | trivial lookup p50 / p99 | score ÷ trivial (p50)"
    );
    println!(
        "----------|------------------------|--------------------------|----------------------"
    );
    for (name, call) in [("usual", &usual), ("anomalous", &anomalous)] {
        let (p50, p99) = percentiles(
            || {
                drop(black_box(score(
                    &b,
                    &key,
                    black_box(prefix),
                    black_box(call),
                )))
            },
            iters,
        );
        println!(
            "{name:<9} | {:>7.2} µs / {:>7.2} µs | {:>8.3} µs / {:>7.3} µs | {:.0}",
            us(p50),
            us(p99),
            us(tp50),
            us(tp99),
            p50.as_secs_f64() / tp50.as_secs_f64().max(1e-9)
        );
    }
    println!("(timer resolution bounds the trivial lookup's numbers from below: Criterion's report above has its mean)");
}
