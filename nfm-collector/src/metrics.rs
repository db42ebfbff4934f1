//! The collector's own counters and gauges, shared by the actors as relaxed atomics.
//!
//! Why atomics and not messages: these are monotonic counters and last-value gauges read only by
//! `/metrics`; an atomic add costs less than a message and needs no lock. Anything with structure
//! (per-agent tables, rejects by reason) is owned by its actor and sent as a snapshot.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Data-path channels whose depth `/metrics` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chan {
    Resolver = 0,
    Aggregator = 1,
    Health = 2,
    Store = 3,
}

impl Chan {
    pub const ALL: [Chan; 4] = [Chan::Resolver, Chan::Aggregator, Chan::Health, Chan::Store];
    pub fn as_str(self) -> &'static str {
        match self {
            Chan::Resolver => "resolver",
            Chan::Aggregator => "aggregator",
            Chan::Health => "health",
            Chan::Store => "store",
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    // ingest
    pub frames_udp: AtomicU64,
    pub frames_tcp: AtomicU64,
    pub bytes_received: AtomicU64,
    pub records_received: AtomicU64,
    pub duplicates: AtomicU64,
    pub lost_frames: AtomicU64,
    pub tcp_connections: AtomicU64,
    pub backpressure_waits: AtomicU64,
    /// Wall clock minus the interval end of the latest batch, ms (meaningless for replayed time).
    pub ingest_lag_ms: AtomicI64,
    // resolver
    pub resolver_cache_resets: AtomicU64,
    // aggregator
    pub aggregated_records: AtomicU64,
    pub late_records: AtomicU64,
    pub capped_records: AtomicU64,
    pub open_intervals: AtomicU64,
    pub closed_intervals: AtomicU64,
    // health
    pub health_eval_us: AtomicU64,
    pub verdicts: AtomicU64,
    // store
    pub store_bytes: AtomicU64,
    pub store_segments: AtomicU64,
    pub store_batches: AtomicU64,
    /// Interval summaries made durable.
    pub store_summaries: AtomicU64,
    pub store_dropped_batches: AtomicU64,
    pub store_stalled: AtomicU64,
    pub store_errors: AtomicU64,
    pub store_queue_depth: AtomicU64,
    // api
    /// Estimated bytes of interval summaries held in memory for queries.
    pub history_bytes: AtomicU64,
    pub history_intervals: AtomicU64,
    // topology
    pub topology_reloads: AtomicU64,
    pub topology_reload_errors: AtomicU64,
    /// Messages sent minus received, per [`Chan`].
    pub depth: [AtomicI64; 4],
}

impl Metrics {
    pub fn sent(&self, c: Chan) {
        self.depth[c as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub fn received(&self, c: Chan) {
        self.depth[c as usize].fetch_sub(1, Ordering::Relaxed);
    }
    pub fn depth(&self, c: Chan) -> i64 {
        self.depth[c as usize].load(Ordering::Relaxed).max(0)
    }
}
