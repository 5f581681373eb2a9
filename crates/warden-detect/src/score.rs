//! Scoring one call against the baseline: each feature's surprise in bits, the rules' bits, the
//! sum squashed into `[0, 1]`, and a reason per feature that counted.

use crate::baseline::{arg_set, tool_hash, Baseline, Level};
use crate::hash::{fnv, mix};
use crate::novelty::Novelty;
use crate::rules;
use crate::shape::{facets, shape, Facet};
use crate::step::{SessionKey, Step};
use crate::trail::Trail;

/// How anomalous a call is.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// In `[0, 1]`: 0 is what this agent always does here, 0.5 is `half_bits` of surprise.
    pub value: f64,
    /// Why, one entry per feature that counted, most important first; the shares add up to
    /// `value`.
    pub contributions: Vec<(String, f64)>,
}

/// Scores `call`, the next call of a session under `key` whose earlier calls are `trail`.
pub fn score(baseline: &Baseline, key: &SessionKey, trail: &Trail, call: &Step) -> Score {
    let config = &baseline.config;
    let levels = baseline.levels(key);
    let levels = levels.as_slice();
    let mut found: Vec<(String, f64)> = Vec::new();
    let mut add = |bits: f64, reason: &dyn Fn() -> String| {
        let bits = bits.min(config.max_bits_per_feature);
        if bits >= config.min_bits {
            found.push((reason(), bits));
        }
    };
    let tool = tool_hash(&call.tool);

    if let Some((name, model)) = with_sessions(levels, config.min_sessions) {
        let (before, last) = trail.context();
        let p = model.transitions.p(before, last, tool);
        add(-p.log2(), &|| {
            let from = trail.last().map_or("the start", |m| m.tool.as_str());
            format!("transition {from} → {} has p={p:.2e} for {name}", call.tool)
        });
        let calls = trail.len() + 1;
        if calls >= 2 {
            add(
                model.session_calls.surprise_reaching(calls, model.sessions),
                &|| format!("{calls} calls in one session is unusual for {name}"),
            );
        }
        let this_tool = trail.calls_of(tool) + 1;
        if this_tool >= 2 {
            if let Some(stats) = model.tools.get(&tool) {
                add(
                    stats
                        .per_session
                        .surprise_reaching(this_tool, model.sessions),
                    &|| {
                        format!(
                            "{} called {this_tool} times in one session is unusual for {name}",
                            call.tool
                        )
                    },
                );
            }
        }
    }

    if let Some((name, n)) = counter(levels, config.min_observations, |m| m.arg_sets.get(&tool)) {
        add(n.surprise(arg_set(&call.args)), &|| {
            let names: Vec<&str> = call
                .args
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.as_str())
                .collect();
            format!(
                "{} never called with arguments ({}) for {name}",
                call.tool,
                names.join(", ")
            )
        });
    }

    for (param_name, value) in &call.args {
        let param = mix(tool, fnv(param_name.as_bytes()));
        if let Some((name, n)) = counter(levels, config.min_observations, |m| m.shapes.get(&param))
        {
            add(n.surprise(shape(value)), &|| {
                format!(
                    "{}.{param_name} has a shape never seen for {name}",
                    call.tool
                )
            });
        }
        // The most surprising element of each facet (a list of recipients is as new as its
        // newest recipient).
        let mut worst = [0.0f64; 4];
        let mut chosen: [Option<Option<Level<'_>>>; 4] = [None; 4];
        facets(value, &mut |facet, h| {
            let i = facet.tag() as usize - 1;
            let level = *chosen[i].get_or_insert_with(|| {
                levels.iter().copied().find(|(_, m)| {
                    facet_counter(m, param, facet)
                        .is_some_and(|n| n.total() >= config.min_observations)
                })
            });
            if let Some((_, m)) = level {
                if let Some(n) = facet_counter(m, param, facet) {
                    worst[i] = worst[i].max(n.surprise(h));
                }
            }
        });
        for facet in [Facet::Value, Facet::Domain, Facet::Host, Facet::Dir] {
            let i = facet.tag() as usize - 1;
            if let Some(Some((name, _))) = chosen[i] {
                add(worst[i], &|| {
                    format!(
                        "{}.{param_name}: {} never seen for {name}",
                        call.tool,
                        facet.describe()
                    )
                });
            }
        }
    }

    let findings = [
        rules::probing(config, trail),
        rules::untrusted_then_write(config, trail, call),
        rules::burst(config, trail, call),
        rules::first_destructive(config, levels, call),
        rules::unusual_rate(config, levels, trail, call),
        rules::unusual_hour(config, levels, call),
    ];
    for f in findings.into_iter().flatten() {
        add(f.bits, &|| f.reason.clone());
    }

    let total: f64 = found.iter().map(|(_, b)| b).sum();
    if total <= 0.0 {
        return Score {
            value: 0.0,
            contributions: found,
        };
    }
    let value = 1.0 - (-total / config.half_bits.max(f64::MIN_POSITIVE)).exp2();
    let mut contributions: Vec<(String, f64)> = found
        .into_iter()
        .map(|(reason, bits)| (reason, value * bits / total))
        .collect();
    contributions.sort_by(|a, b| b.1.total_cmp(&a.1));
    Score {
        value,
        contributions,
    }
}

fn with_sessions<'a>(levels: &[Level<'a>], min: u32) -> Option<Level<'a>> {
    levels.iter().copied().find(|(_, m)| m.sessions >= min)
}

/// The most specific level whose counter has at least `min` observations.
fn counter<'a>(
    levels: &[Level<'a>],
    min: u32,
    get: impl Fn(&'a crate::baseline::Model) -> Option<&'a Novelty>,
) -> Option<(&'static str, &'a Novelty)> {
    levels
        .iter()
        .find_map(|&(name, m)| get(m).filter(|n| n.total() >= min).map(|n| (name, n)))
}

fn facet_counter(m: &crate::baseline::Model, param: u64, facet: Facet) -> Option<&Novelty> {
    m.values.get(&mix(param, facet.tag()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::Config;
    use serde_json::{json, Map, Value};

    fn args(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn send(to: &str) -> Step {
        Step::call(
            "send_email",
            args(json!({"recipients": [to], "subject": "Weekly report"})),
        )
    }

    fn read() -> Step {
        Step::call("search_emails", args(json!({"query": "report"})))
    }

    /// Twenty sessions of a reporting task: read, then mail the team lead.
    fn reporting() -> (Baseline, SessionKey) {
        let key = SessionKey::new("assistant", "weekly-report");
        let session = [read(), send("lead@corp.example")];
        let sessions: Vec<(&SessionKey, &[Step])> = (0..20).map(|_| (&key, &session[..])).collect();
        (Baseline::train(Config::default(), sessions), key)
    }

    #[test]
    fn the_usual_call_scores_low() {
        let (b, key) = reporting();
        let s = score(&b, &key, &Trail::of(&[read()]), &send("lead@corp.example"));
        assert!(s.value < 0.1, "{s:?}");
    }

    #[test]
    fn a_new_recipient_domain_scores_high_and_says_why() {
        let (b, key) = reporting();
        let s = score(
            &b,
            &key,
            &Trail::of(&[read()]),
            &send("someone@elsewhere.example"),
        );
        assert!(s.value > 0.5, "{s:?}");
        assert!(
            s.contributions
                .iter()
                .any(|(r, _)| r
                    == "send_email.recipients: e-mail domain never seen for agent+profile"),
            "{s:?}"
        );
    }

    #[test]
    fn a_new_colleague_scores_lower_than_a_new_domain() {
        let (b, key) = reporting();
        let colleague = score(&b, &key, &Trail::of(&[read()]), &send("peer@corp.example"));
        let stranger = score(
            &b,
            &key,
            &Trail::of(&[read()]),
            &send("peer@elsewhere.example"),
        );
        assert!(colleague.value < stranger.value);
    }

    #[test]
    fn an_unseen_tool_scores_higher_than_the_usual_one() {
        let (b, key) = reporting();
        let usual = score(&b, &key, &Trail::of(&[read()]), &send("lead@corp.example"));
        let delete = score(
            &b,
            &key,
            &Trail::of(&[read()]),
            &Step::call("delete_file", args(json!({"file_id": "42"}))),
        );
        assert!(delete.value > usual.value + 0.3, "{delete:?}");
    }

    #[test]
    fn a_second_send_is_more_surprising_than_the_first() {
        let (b, key) = reporting();
        let first = score(&b, &key, &Trail::of(&[read()]), &send("lead@corp.example"));
        let second = score(
            &b,
            &key,
            &Trail::of(&[read(), send("lead@corp.example")]),
            &send("lead@corp.example"),
        );
        assert!(second.value > first.value, "{second:?}");
    }

    #[test]
    fn cold_profile_falls_back_to_the_agent() {
        let (b, _) = reporting();
        let new_task = SessionKey::new("assistant", "never-seen");
        let s = score(
            &b,
            &new_task,
            &Trail::of(&[read()]),
            &send("stranger@elsewhere.example"),
        );
        assert!(
            s.contributions
                .iter()
                .any(|(r, _)| r.ends_with("for agent")),
            "{s:?}"
        );
        assert!(s.value > 0.3, "{s:?}");
    }

    #[test]
    fn empty_baseline_scores_in_range() {
        let b = Baseline::new(Config::default());
        let s = score(
            &b,
            &SessionKey::new("a", "p"),
            &Trail::default(),
            &send("x@y.example"),
        );
        assert!((0.0..=1.0).contains(&s.value), "{s:?}");
    }

    #[test]
    fn scores_stay_in_range_and_shares_add_up() {
        let (b, key) = reporting();
        let denied = Step {
            verdict: Some("deny".into()),
            ..send("a@b.example")
        };
        let prefix = vec![denied; 12];
        let s = score(
            &b,
            &key,
            &Trail::of(&prefix),
            &Step::call(
                "delete_everything",
                args(json!({"path": "/", "force": true})),
            ),
        );
        assert!((0.0..=1.0).contains(&s.value), "{s:?}");
        let sum: f64 = s.contributions.iter().map(|(_, c)| c).sum();
        assert!((sum - s.value).abs() < 1e-9);
    }

    #[test]
    fn scoring_is_deterministic() {
        let (b, key) = reporting();
        let again = b.clone();
        let call = send("x@elsewhere.example");
        assert_eq!(
            score(&b, &key, &Trail::of(&[read()]), &call),
            score(&again, &key, &Trail::of(&[read()]), &call)
        );
    }
}
