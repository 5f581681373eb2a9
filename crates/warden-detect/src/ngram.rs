//! The "sense of self" of an agent (after Forrest et al. on system-call sequences): a trigram
//! model of which tool follows which, with start and end symbols, smoothed by interpolated
//! Kneser–Ney so that a transition never seen gets a low but nonzero probability.

use serde::{Deserialize, Serialize};

use crate::hash::{mix, HashedMap};

/// Symbols for a session's start and end (tool hashes are FNV values, never these).
pub(crate) const START: u64 = 1;
pub(crate) const END: u64 = 2;

/// Kneser–Ney's absolute discount.
const DISCOUNT: f64 = 0.75;

/// Counts of a context: how often it occurred, and how many distinct symbols followed it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Context {
    count: u32,
    followers: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct NGram {
    /// Symbol → number of distinct symbols it followed (Kneser–Ney continuation count).
    continuation: HashedMap<u32>,
    /// Distinct bigram types; the continuation counts' total.
    bigram_types: u32,
    ctx1: HashedMap<Context>,
    bigrams: HashedMap<u32>,
    ctx2: HashedMap<Context>,
    trigrams: HashedMap<u32>,
}

impl NGram {
    /// Counts `next` after the context `(before, last)`.
    pub(crate) fn observe(&mut self, before: u64, last: u64, next: u64) {
        let bi = mix(last, next);
        let bi_count = self.bigrams.entry(bi).or_insert(0);
        *bi_count += 1;
        let new_bigram = *bi_count == 1;
        let c1 = self.ctx1.entry(last).or_default();
        c1.count += 1;
        if new_bigram {
            c1.followers += 1;
            self.bigram_types += 1;
            *self.continuation.entry(next).or_insert(0) += 1;
        }
        let tri = self
            .trigrams
            .entry(mix(mix(before, last), next))
            .or_insert(0);
        *tri += 1;
        let new_trigram = *tri == 1;
        let c2 = self.ctx2.entry(mix(before, last)).or_default();
        c2.count += 1;
        if new_trigram {
            c2.followers += 1;
        }
    }

    /// Number of symbols that can follow anything (tools seen and END), plus one for the
    /// unknown tool.
    fn vocabulary(&self) -> f64 {
        self.continuation.len() as f64 + 1.0
    }

    fn p_unigram(&self, next: u64) -> f64 {
        let c = self.continuation.get(&next).copied().unwrap_or(0);
        // Add-half on the continuation counts keeps an unknown tool above zero.
        (f64::from(c) + 0.5) / (f64::from(self.bigram_types) + 0.5 * self.vocabulary())
    }

    fn p_bigram(&self, last: u64, next: u64) -> f64 {
        let lower = self.p_unigram(next);
        match self.ctx1.get(&last) {
            Some(ctx) if ctx.count > 0 => {
                let c = f64::from(self.bigrams.get(&mix(last, next)).copied().unwrap_or(0));
                let n = f64::from(ctx.count);
                (c - DISCOUNT).max(0.0) / n + DISCOUNT * f64::from(ctx.followers) / n * lower
            }
            _ => lower,
        }
    }

    /// `P(next | before, last)`, in `(0, 1]`.
    pub(crate) fn p(&self, before: u64, last: u64, next: u64) -> f64 {
        let lower = self.p_bigram(last, next);
        let ctx_key = mix(before, last);
        match self.ctx2.get(&ctx_key) {
            Some(ctx) if ctx.count > 0 => {
                let c = f64::from(self.trigrams.get(&mix(ctx_key, next)).copied().unwrap_or(0));
                let n = f64::from(ctx.count);
                (c - DISCOUNT).max(0.0) / n + DISCOUNT * f64::from(ctx.followers) / n * lower
            }
            _ => lower,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::fnv;

    fn trained(sessions: &[&[&str]]) -> NGram {
        let mut m = NGram::default();
        for s in sessions {
            let (mut before, mut last) = (START, START);
            for sym in s.iter().map(|t| fnv(t.as_bytes())).chain([END]) {
                m.observe(before, last, sym);
                (before, last) = (last, sym);
            }
        }
        m
    }

    #[test]
    fn unseen_transition_is_unlikely_but_possible() {
        let m = trained(&[&["read", "reply"], &["read", "reply"], &["read", "archive"]]);
        let read = fnv(b"read");
        let seen = m.p(START, read, fnv(b"reply"));
        let unseen = m.p(START, read, fnv(b"delete"));
        assert!(unseen > 0.0);
        assert!(unseen < 0.1 * seen, "{unseen} vs {seen}");
    }

    #[test]
    fn known_tool_in_a_new_context_backs_off_to_its_unigram() {
        let m = trained(&[&["read", "reply"], &["list", "reply"]]);
        let in_new_context = m.p(fnv(b"x"), fnv(b"y"), fnv(b"reply"));
        let unknown = m.p(fnv(b"x"), fnv(b"y"), fnv(b"delete"));
        assert!(in_new_context > unknown);
    }

    #[test]
    fn probabilities_after_a_context_sum_to_at_most_one() {
        let m = trained(&[&["a", "b"], &["a", "c"], &["a", "b", "b"]]);
        let a = fnv(b"a");
        let total: f64 = ["a", "b", "c"]
            .iter()
            .map(|t| fnv(t.as_bytes()))
            .chain([END])
            .map(|sym| m.p(START, a, sym))
            .sum();
        assert!(total <= 1.0 + 1e-9 && total > 0.9, "{total}");
    }

    #[test]
    fn empty_model_is_uniform_and_positive() {
        let m = NGram::default();
        assert!((m.p(START, START, fnv(b"any")) - 1.0).abs() < 1e-9);
    }
}
