//! Behavioural anomaly detection: a [`Baseline`] of what each agent and task profile normally
//! does, learned from past sessions, and [`score`], which says how surprising the next call is.
//!
//! The baseline keeps, at three levels (agent + profile, agent, global — the general levels
//! answer on cold start), a smoothed trigram model of tool-to-tool transitions, the *shapes* and
//! the novelty of argument values (hashed, never stored in clear), and per-session volumes and
//! rates. [`score`] turns each surprise into bits (`-log2` of the baseline's probability of what
//! happened), adds the bits of the rules for known attack shapes ([`rules`]), and squashes the
//! sum into `[0, 1]` with one human-readable contribution per feature.
//!
//! No I/O except [`Baseline::save`] / [`Baseline::load`]; no clocks (times come with the steps);
//! no randomness. Same baseline and inputs, same score.

mod baseline;
mod hash;
mod ngram;
mod novelty;
mod rules;
mod score;
mod shape;
mod step;
mod trail;

pub use baseline::{Baseline, Config, DetectError};
pub use score::{score, Score};
pub use step::{Effect, SessionKey, Step};
pub use trail::{Trail, WINDOW};
