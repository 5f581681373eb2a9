//! Rules for the known shapes of misbehaviour — probing, a write right after an untrusted read,
//! bursts, a first-ever destructive call, a rate or an hour outside the usual — each worth a
//! fixed number of bits (see [`Config`]) added to the learned surprise.

use crate::baseline::{hour_of, tool_hash, Config, Level};
use crate::step::{Effect, Step};
use crate::trail::Trail;

const MINUTE_MS: u64 = 60_000;

/// A rule that fired: why, and how many bits it adds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    pub(crate) reason: String,
    pub(crate) bits: f64,
}

/// Several recent calls of the session were denied: the agent may be trying its way around
/// the policies.
pub(crate) fn probing(config: &Config, trail: &Trail) -> Option<Finding> {
    let (mut seen, mut denied) = (0, 0);
    for m in trail.last_n(config.probe_window) {
        seen += 1;
        denied += usize::from(m.denied);
    }
    (denied >= config.probe_denials && config.probe_denials > 0).then(|| Finding {
        reason: format!("probing: {denied} of the last {seen} calls were denied"),
        bits: config.probe_bits + (denied - config.probe_denials) as f64,
    })
}

/// A write or destructive call right after a call whose result nobody vouches for: the shape
/// of an injected instruction being followed.
pub(crate) fn untrusted_then_write(config: &Config, trail: &Trail, call: &Step) -> Option<Finding> {
    let last = trail.last()?;
    (last.untrusted_read && call.effect.writes()).then(|| Finding {
        reason: format!(
            "{} right after the untrusted result of {}",
            call.tool, last.tool
        ),
        bits: config.untrusted_then_write_bits,
    })
}

/// Many calls in a short time.
pub(crate) fn burst(config: &Config, trail: &Trail, call: &Step) -> Option<Finding> {
    let t = call.time_ms?;
    let n = trail.calls_within(t, config.burst_window_ms) + 1;
    (n >= config.burst_calls).then(|| Finding {
        reason: format!("burst: {n} calls within {} ms", config.burst_window_ms),
        bits: config.burst_bits,
    })
}

/// A destructive tool this agent has never called under this profile (`levels[0]` is the
/// agent + profile level when it exists).
pub(crate) fn first_destructive(
    config: &Config,
    levels: &[Level<'_>],
    call: &Step,
) -> Option<Finding> {
    if call.effect != Effect::Destructive {
        return None;
    }
    let seen = match levels.first() {
        Some(("agent+profile", model)) => model
            .tools
            .get(&tool_hash(&call.tool))
            .is_some_and(|t| t.calls > 0),
        _ => false,
    };
    (!seen).then(|| Finding {
        reason: format!(
            "first-ever {} (destructive) for this agent and profile",
            call.tool
        ),
        bits: config.first_destructive_bits,
    })
}

/// More calls in the last minute than ever seen, at the most specific level with enough timed
/// calls.
pub(crate) fn unusual_rate(
    config: &Config,
    levels: &[Level<'_>],
    trail: &Trail,
    call: &Step,
) -> Option<Finding> {
    let t = call.time_ms?;
    let (name, model) = levels
        .iter()
        .find(|(_, m)| m.timed_calls >= config.rate_min_calls)?;
    let n = trail.calls_within(t, MINUTE_MS) + 1;
    let usual = model.max_per_minute.max(1) as usize;
    (n > usual).then(|| Finding {
        reason: format!("{n} calls in a minute; at most {usual} seen for {name}"),
        bits: config.rate_bits + (n as f64 / usual as f64).log2(),
    })
}

/// A call at an hour of the day (UTC) never seen, at the most specific level with enough timed
/// calls.
pub(crate) fn unusual_hour(config: &Config, levels: &[Level<'_>], call: &Step) -> Option<Finding> {
    let t = call.time_ms?;
    let (name, model) = levels
        .iter()
        .find(|(_, m)| m.timed_calls >= config.hours_min_calls)?;
    let hour = hour_of(t);
    (model.hours[hour] == 0).then(|| Finding {
        reason: format!("a call at {hour:02}:00 UTC, an hour never seen for {name}"),
        bits: config.hours_bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::Baseline;
    use crate::step::SessionKey;
    use serde_json::Map;

    fn call(tool: &str) -> Step {
        Step::call(tool, Map::new())
    }

    fn verdict(tool: &str, verdict: &str) -> Step {
        Step {
            verdict: Some(verdict.into()),
            ..call(tool)
        }
    }

    fn at(tool: &str, time_ms: u64) -> Step {
        Step {
            time_ms: Some(time_ms),
            ..call(tool)
        }
    }

    #[test]
    fn probing_fires_on_three_denials() {
        let c = Config::default();
        let prefix = [
            verdict("read_file", "deny"),
            verdict("read_file", "deny"),
            verdict("read_file", "deny"),
        ];
        let f = probing(&c, &Trail::of(&prefix)).expect("fires");
        assert!(f.reason.contains("3 of the last 3"), "{}", f.reason);
    }

    #[test]
    fn probing_ignores_two_denials_among_allows() {
        let c = Config::default();
        let prefix = [
            verdict("a", "deny"),
            verdict("a", "allow"),
            verdict("a", "deny"),
        ];
        assert_eq!(probing(&c, &Trail::of(&prefix)), None);
    }

    #[test]
    fn probing_forgets_denials_outside_the_window() {
        let c = Config {
            probe_window: 2,
            ..Config::default()
        };
        let prefix = [
            verdict("a", "deny"),
            verdict("a", "deny"),
            verdict("a", "deny"),
            verdict("a", "allow"),
            verdict("a", "allow"),
        ];
        assert_eq!(probing(&c, &Trail::of(&prefix)), None);
    }

    #[test]
    fn write_after_untrusted_read_fires() {
        let read = Step {
            untrusted_read: true,
            ..call("get_webpage")
        };
        let f = untrusted_then_write(&Config::default(), &Trail::of(&[read]), &call("send_email"))
            .expect("fires");
        assert_eq!(
            f.reason,
            "send_email right after the untrusted result of get_webpage"
        );
    }

    #[test]
    fn write_after_trusted_read_or_read_after_untrusted_does_not_fire() {
        let c = Config::default();
        let untrusted = Step {
            untrusted_read: true,
            ..call("get_webpage")
        };
        assert_eq!(
            untrusted_then_write(&c, &Trail::of(&[call("get_contacts")]), &call("send_email")),
            None
        );
        assert_eq!(
            untrusted_then_write(&c, &Trail::of(&[untrusted]), &call("search_files")),
            None
        );
    }

    #[test]
    fn burst_fires_on_ten_calls_in_ten_seconds() {
        let c = Config::default();
        let prefix: Vec<Step> = (0..9).map(|i| at("get_file", 1_000 + i * 500)).collect();
        assert!(burst(&c, &Trail::of(&prefix), &at("get_file", 6_000)).is_some());
    }

    #[test]
    fn burst_ignores_spread_out_or_untimed_calls() {
        let c = Config::default();
        let prefix: Vec<Step> = (0..9).map(|i| at("get_file", i * 5_000)).collect();
        assert_eq!(
            burst(&c, &Trail::of(&prefix), &at("get_file", 45_000)),
            None
        );
        assert_eq!(burst(&c, &Trail::of(&prefix), &call("get_file")), None);
    }

    #[test]
    fn first_destructive_fires_until_the_profile_has_seen_the_tool() {
        let key = SessionKey::new("bot", "cleanup");
        let mut b = Baseline::new(Config::default());
        let levels = b.levels(&key);
        let levels = levels.as_slice();
        assert!(first_destructive(&b.config, levels, &call("delete_file")).is_some());
        b.observe_session(&key, &[call("delete_file")]);
        let levels = b.levels(&key);
        let levels = levels.as_slice();
        assert_eq!(
            first_destructive(&b.config, levels, &call("delete_file")),
            None
        );
    }

    #[test]
    fn first_destructive_is_per_profile() {
        let mut b = Baseline::new(Config::default());
        b.observe_session(&SessionKey::new("bot", "cleanup"), &[call("delete_file")]);
        let key = SessionKey::new("bot", "report");
        b.observe_session(&key, &[call("get_file")]);
        let levels = b.levels(&key);
        let levels = levels.as_slice();
        assert!(first_destructive(&b.config, levels, &call("delete_file")).is_some());
        assert_eq!(
            first_destructive(&b.config, levels, &call("get_file")),
            None
        );
    }

    fn timed_baseline(key: &SessionKey, hour: u64) -> Baseline {
        let mut b = Baseline::new(Config {
            rate_min_calls: 4,
            hours_min_calls: 4,
            ..Config::default()
        });
        // Two calls a minute apart, in a few sessions at the same hour.
        for s in 0..3 {
            let t0 = hour * 3_600_000 + s * 600_000;
            b.observe_session(key, &[at("a", t0), at("b", t0 + 61_000)]);
        }
        b
    }

    #[test]
    fn rate_above_the_usual_fires_and_the_usual_does_not() {
        let key = SessionKey::new("bot", "p");
        let b = timed_baseline(&key, 9);
        let levels = b.levels(&key);
        let levels = levels.as_slice();
        let t = 9 * 3_600_000;
        assert_eq!(
            unusual_rate(
                &b.config,
                levels,
                &Trail::of(&[at("a", t)]),
                &at("b", t + 61_000)
            ),
            None
        );
        let fast = [at("a", t), at("a", t + 1_000), at("a", t + 2_000)];
        let f =
            unusual_rate(&b.config, levels, &Trail::of(&fast), &at("b", t + 3_000)).expect("fires");
        assert!(
            f.reason.starts_with("4 calls in a minute; at most 1 seen"),
            "{}",
            f.reason
        );
    }

    #[test]
    fn hour_never_seen_fires() {
        let key = SessionKey::new("bot", "p");
        let b = timed_baseline(&key, 9);
        let levels = b.levels(&key);
        let levels = levels.as_slice();
        assert_eq!(
            unusual_hour(&b.config, levels, &at("a", 9 * 3_600_000 + 5)),
            None
        );
        let f = unusual_hour(&b.config, levels, &at("a", 3 * 3_600_000)).expect("fires");
        assert!(f.reason.contains("03:00"), "{}", f.reason);
    }
}
