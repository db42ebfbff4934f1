//! nfm-collector: turns flow deltas from many agents into answers.
//!
//! # Layout
//! - `model`: the vocabulary the actors and the simulator share.
//! - `health`: the health evaluator (baselines, degradation, attribution).
//! - `topology`: the topology file (docs/topology.md) and address resolution.

pub mod health;
pub mod model;
pub mod topology;
