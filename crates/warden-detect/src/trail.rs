//! What the detector remembers of a session's calls so far: counts over the whole session and the
//! last [`WINDOW`] calls without their arguments. Scoring and learning read only this, so their
//! cost and the memory a live session holds do not grow with the session's length.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::baseline::tool_hash;
use crate::ngram::START;
use crate::step::{Effect, Step};

/// Calls remembered one by one: enough for the probing window, bursts and the per-minute rate
/// (a rate above this many calls a minute is counted as this many).
pub const WINDOW: usize = 256;
/// Distinct tools counted per session; a session calling more is unusual already, and the
/// counts of the tools past this one are not kept.
const MAX_TOOLS: usize = 4096;

/// One remembered call: what the rules need of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Mark {
    pub(crate) tool: String,
    pub(crate) denied: bool,
    pub(crate) untrusted_read: bool,
    pub(crate) effect: Effect,
    pub(crate) time_ms: Option<u64>,
}

/// A session's calls as the detector remembers them ([`Trail::push`] each call once decided).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trail {
    calls: usize,
    /// Tool hash → calls of it in this session.
    per_tool: HashMap<u64, usize>,
    recent: VecDeque<Mark>,
}

impl Trail {
    /// The trail of a whole list of calls.
    pub fn of(steps: &[Step]) -> Trail {
        let mut trail = Trail::default();
        for s in steps {
            trail.push(s);
        }
        trail
    }

    /// Remember one more call.
    pub fn push(&mut self, step: &Step) {
        self.calls += 1;
        let hash = tool_hash(&step.tool);
        if let Some(n) = self.per_tool.get_mut(&hash) {
            *n += 1;
        } else if self.per_tool.len() < MAX_TOOLS {
            self.per_tool.insert(hash, 1);
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(Mark {
            tool: step.tool.clone(),
            denied: step.denied(),
            untrusted_read: step.untrusted_read,
            effect: step.effect,
            time_ms: step.time_ms,
        });
    }

    /// Calls in the session so far.
    pub fn len(&self) -> usize {
        self.calls
    }

    pub fn is_empty(&self) -> bool {
        self.calls == 0
    }

    /// Calls of the tool with this hash so far.
    pub(crate) fn calls_of(&self, tool: u64) -> usize {
        self.per_tool.get(&tool).copied().unwrap_or(0)
    }

    /// Tool hash and calls of each tool the session called.
    pub(crate) fn tool_counts(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.per_tool.iter().map(|(&t, &n)| (t, n))
    }

    pub(crate) fn last(&self) -> Option<&Mark> {
        self.recent.back()
    }

    /// The last `n` calls remembered (fewer when the session or the window is shorter).
    pub(crate) fn last_n(&self, n: usize) -> impl Iterator<Item = &Mark> {
        self.recent.iter().skip(self.recent.len().saturating_sub(n))
    }

    /// The transition context before the next call: the last two tools (START when fewer).
    pub(crate) fn context(&self) -> (u64, u64) {
        let mut it = self.recent.iter().rev().map(|m| tool_hash(&m.tool));
        let Some(last) = it.next() else {
            return (START, START);
        };
        (it.next().unwrap_or(START), last)
    }

    /// Remembered calls made within `window_ms` before `t` (scanning back from the last).
    pub(crate) fn calls_within(&self, t: u64, window_ms: u64) -> usize {
        self.recent
            .iter()
            .rev()
            .map_while(|m| m.time_ms.filter(|&ts| t.saturating_sub(ts) < window_ms))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn at(tool: &str, time_ms: u64) -> Step {
        Step {
            time_ms: Some(time_ms),
            ..Step::call(tool, Map::new())
        }
    }

    #[test]
    fn a_long_session_keeps_its_counts_and_only_a_window_of_calls() {
        let mut trail = Trail::default();
        for i in 0..10 * WINDOW as u64 {
            trail.push(&at(if i % 2 == 0 { "a" } else { "b" }, i));
        }
        assert_eq!(trail.len(), 10 * WINDOW);
        assert_eq!(trail.calls_of(tool_hash("a")), 5 * WINDOW);
        assert_eq!(trail.recent.len(), WINDOW);
        assert_eq!(trail.context(), (tool_hash("a"), tool_hash("b")));
        // Every remembered call is within a minute of the last one; older ones are forgotten.
        assert_eq!(trail.calls_within(10 * WINDOW as u64, 60_000), WINDOW);
    }

    #[test]
    fn an_empty_or_one_call_trail_has_start_context() {
        let mut trail = Trail::default();
        assert_eq!(trail.context(), (START, START));
        trail.push(&at("a", 0));
        assert_eq!(trail.context(), (START, tool_hash("a")));
    }
}
