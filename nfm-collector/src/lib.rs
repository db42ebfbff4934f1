//! nfm-collector: turns flow deltas from many agents into answers.
//!
//! # Layout
//! - `model`: the vocabulary the actors and the simulator share.
//! - `topology`: the topology file (docs/topology.md) and address resolution.
//! - `monitor`: monitor definitions and matching.
//! - `summary`: what is kept of each closed interval.
//! - `interval`: the closed-interval contract and the one builder of an interval's summary.
//! - `pipeline`: every actor message and cross-actor payload; `resolution` and `flow_table`:
//!   the data the resolver and aggregator hand downstream. Actors depend only on these shared
//!   modules (checked by `tests/module_graph.rs`); `collector` alone wires actors together.
//! - Actors, in pipeline order: `ingest` → `resolver` → `aggregator` → `health_stage` (owns the
//!   `health` evaluator) → `store` → `api` (HTTP, `/metrics`; `ui` is the dashboard hook).
//! - `collector`: settings and wiring; `metrics`: shared counters; `http`: the API's HTTP front;
//!   `alloc`: allocator tuning for the binaries; `memory`: the memory budget (back-pressure when
//!   resident memory is over it).

pub mod aggregator;
pub mod alloc;
pub mod api;
pub mod collector;
// issue 17: topology import from the EC2 API
pub mod discovery;
pub mod flow_table;
pub mod health;
pub mod health_stage;
// issue 16: history from disk with rollups, and Prometheus remote write
pub mod history_index;
pub mod http;
pub mod ingest;
pub mod interval;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod monitor;
// issue 17 item 3: monitors past 64, matched through an inverted index.
pub mod monitor_index;
pub mod pipeline;
pub mod record;
pub mod remote_series;
pub mod remote_write;
pub mod resolution;
pub mod resolver;
pub mod rollup;
pub mod store;
pub mod summary;
pub mod topology;
pub mod ui;
// Issue 15: alerts, notifications, agent registry, maintenance windows.
pub mod agent_registry;
pub mod incidents;
pub mod maintenance;
pub mod notify;
pub mod persist;

/// The wall clock, Unix ms (0 before 1970): what ingest checks stamps against, the aggregator
/// closes live intervals by and the API reports its start with.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
// issue 15 (auth, roles, TLS)
pub mod auth;
pub mod tls;
