//! How likely a never-seen value is, by Good–Turing: the share of observations that were the
//! first of their value. A parameter that always takes a fresh value (a search query) makes a
//! new one unsurprising; one that has taken the same few values a hundred times (the recipient of
//! a task's report) makes a new one very surprising.

use serde::{Deserialize, Serialize};

use crate::hash::HashedMap;

/// Distinct values remembered per counter; past this, new values are still counted as seen once.
const MAX_DISTINCT: usize = 4096;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Novelty {
    total: u32,
    singletons: u32,
    values: HashedMap<u32>,
}

impl Novelty {
    pub(crate) fn observe(&mut self, value: u64) {
        self.total = self.total.saturating_add(1);
        match self.values.get_mut(&value) {
            Some(n) => {
                if *n == 1 {
                    self.singletons -= 1;
                }
                *n = n.saturating_add(1);
            }
            None => {
                self.singletons += 1;
                if self.values.len() < MAX_DISTINCT {
                    self.values.insert(value, 1);
                }
            }
        }
    }

    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    pub(crate) fn seen(&self, value: u64) -> bool {
        self.values.contains_key(&value)
    }

    /// Bits of surprise of `value`: 0 if seen, else `-log2 P(new value)`.
    pub(crate) fn surprise(&self, value: u64) -> f64 {
        if self.seen(value) {
            0.0
        } else {
            -self.p_new().log2()
        }
    }

    /// Good–Turing's estimate, smoothed so that it is never 0 nor above 1.
    pub(crate) fn p_new(&self) -> f64 {
        (f64::from(self.singletons) + 0.5) / (f64::from(self.total) + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_value_surprises_more_where_values_repeat() {
        let mut stable = Novelty::default();
        let mut varied = Novelty::default();
        for i in 0..50 {
            stable.observe(7);
            varied.observe(i);
        }
        assert!(stable.surprise(99) > 5.0);
        assert!(varied.surprise(99) < 0.1);
        assert_eq!(stable.surprise(7), 0.0);
    }

    #[test]
    fn singletons_stop_counting_once_repeated() {
        let mut n = Novelty::default();
        n.observe(1);
        n.observe(1);
        n.observe(2);
        assert_eq!(n.singletons, 1);
        assert_eq!(n.total(), 3);
    }
}
