//! The collector's own counters and gauges, shared by the actors as relaxed atomics.
//!
//! Why atomics and not messages: these are monotonic counters and last-value gauges read only by
//! `/metrics`; an atomic add costs less than a message and needs no lock. Anything with structure
//! (per-agent tables, rejects by reason) is owned by its actor and sent as a snapshot.

mod render;
mod security;
pub use render::{render, MonitorTotals};
// Issue 15: notification, maintenance and alerting families.
mod alerting;
pub use alerting::{render_alerting, AlertingMetrics, AlertingView, OpenIncident, SilentAgent};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Takes `n` off a gauge that counts work handed over and not yet done, never below 0 (a
/// replayed or foreign hand-over may not have been counted on).
pub fn take_off(gauge: &AtomicU64, n: u64) {
    let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

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

/// Actors that hand their freed memory back to the kernel when the pipeline goes idle
/// (`alloc::trim_when_idle`): mimalloc frees a thread's empty pages only when that thread
/// collects, so each actor that allocates per batch or per interval trims for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trimmer {
    Ingest = 0,
    Resolver = 1,
    Aggregator = 2,
    Health = 3,
    Store = 4,
}

impl Trimmer {
    pub const ALL: [Trimmer; 5] = [
        Trimmer::Ingest,
        Trimmer::Resolver,
        Trimmer::Aggregator,
        Trimmer::Health,
        Trimmer::Store,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Trimmer::Ingest => "ingest",
            Trimmer::Resolver => "resolver",
            Trimmer::Aggregator => "aggregator",
            Trimmer::Health => "health",
            Trimmer::Store => "store",
        }
    }
}

/// Keeps the counters of different actors on different cache lines: a counter written per
/// frame by one thread must not share a line with one written per batch by another (false
/// sharing cost the ingest thread a cache miss per frame).
/// A zero-sized field aligned to a cache line: the field after it starts a new line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Pad;

/// Why ingest closed (or refused) an agent TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpClose {
    /// No valid frame within the handshake timeout.
    Handshake,
    /// An agent's connection silent for the idle timeout.
    Idle,
    /// A frame begun and not completed within the partial-frame timeout.
    Partial,
    /// The oldest partial frame, closed to keep all buffers within the budget.
    Budget,
    /// A connection without a valid frame, closed to make room at `max_connections`.
    Evicted,
    /// A new connection refused at `max_connections` (nothing to evict).
    Refused,
}

impl TcpClose {
    pub const ALL: [TcpClose; 6] = [
        TcpClose::Handshake,
        TcpClose::Idle,
        TcpClose::Partial,
        TcpClose::Budget,
        TcpClose::Evicted,
        TcpClose::Refused,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            TcpClose::Handshake => "handshake_timeout",
            TcpClose::Idle => "idle_timeout",
            TcpClose::Partial => "partial_frame_timeout",
            TcpClose::Budget => "buffer_budget",
            TcpClose::Evicted => "evicted",
            TcpClose::Refused => "refused",
        }
    }
}

#[derive(Debug, Default)]
#[repr(C)]
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
    /// Agent TCP connections closed by ingest's limits, by [`TcpClose`] reason.
    pub tcp_closed: [AtomicU64; TcpClose::ALL.len()],
    /// Bytes the TCP connections hold in partial frames (the buffer budget's use).
    pub ingest_buffered_bytes: AtomicU64,
    /// Agent sessions dropped from the agent table (expired or evicted for room).
    pub sessions_expired: AtomicU64,
    pub sessions_evicted: AtomicU64,
    _pad_ingest: Pad,
    // resolver
    pub resolver_cache_resets: AtomicU64,
    _pad_resolver: Pad,
    // aggregator
    pub aggregated_records: AtomicU64,
    /// Records for closed intervals, aggregated into late amendments.
    pub late_records: AtomicU64,
    /// Records older than `AggregatorConfig::max_late_ms` behind the closed intervals: dropped.
    pub too_late_records: AtomicU64,
    pub capped_records: AtomicU64,
    pub open_intervals: AtomicU64,
    pub closed_intervals: AtomicU64,
    _pad_aggregator: Pad,
    // health
    pub health_eval_us: AtomicU64,
    pub verdicts: AtomicU64,
    _pad_health: Pad,
    // store
    pub store_bytes: AtomicU64,
    pub store_segments: AtomicU64,
    pub store_batches: AtomicU64,
    /// Interval summaries made durable.
    pub store_summaries: AtomicU64,
    /// Frame bytes handed to the store, not yet durable (ingest's backlog budget).
    pub store_pending_bytes: AtomicU64,
    /// Resident memory at the last tick, and 1 while it is over the budget (ingest refuses
    /// batches as `overloaded`): `memory::Governor`.
    pub memory_resident_bytes: AtomicU64,
    pub memory_pressure: AtomicU64,
    /// Times freed memory was handed back to the kernel because the pipeline went idle
    /// (`alloc::trim_when_idle`), by actor ([`Trimmer`]).
    pub memory_trims: [AtomicU64; Trimmer::ALL.len()],
    /// Records handed to the resolver and not yet aggregated: while any are in flight the
    /// aggregator does not close an interval by the clock (a backlog is not lateness).
    pub records_in_flight: AtomicU64,
    pub store_stalled: AtomicU64,
    pub store_errors: AtomicU64,
    pub store_queue_depth: AtomicU64,
    _pad_store: Pad,
    // api
    /// Estimated bytes of interval summaries held in memory for queries.
    pub history_bytes: AtomicU64,
    pub history_intervals: AtomicU64,
    // topology
    pub topology_reloads: AtomicU64,
    pub topology_reload_errors: AtomicU64,
    /// issue 17: scheduled AWS imports by result.
    pub aws_imports_unchanged: AtomicU64,
    pub aws_imports_changed: AtomicU64,
    pub aws_import_errors: AtomicU64,
    _pad_topology: Pad,
    /// Messages sent minus received, per [`Chan`].
    pub depth: [AtomicI64; 4],
    _pad_depth: Pad,
    /// Issue 15: webhook notifications and maintenance windows (notifier, health stage, API).
    pub alerting: AlertingMetrics,
    // issue 15: the HTTP front's and TLS's counters (theirs; set once at start when in use).
    pub auth: std::sync::OnceLock<std::sync::Arc<crate::auth::AuthCounters>>,
    pub tls: std::sync::OnceLock<std::sync::Arc<crate::tls::TlsCounters>>,
    // ---- issue 16: rollups, history from disk, remote write
    /// Rollup records (1 min, 1 h) made durable by the store.
    pub store_rollups: AtomicU64,
    /// History records the API read from disk for queries.
    pub history_disk_records: AtomicU64,
    /// Remote write: samples acknowledged by the TSDB (2xx), requests sent, requests retried
    /// (5xx, 429 or connection errors), samples dropped on a 4xx, samples dropped because the
    /// buffer was full, and samples buffered now.
    pub remote_write_samples: AtomicU64,
    pub remote_write_requests: AtomicU64,
    pub remote_write_retries: AtomicU64,
    pub remote_write_dropped_rejected: AtomicU64,
    pub remote_write_dropped_full: AtomicU64,
    pub remote_write_pending: AtomicU64,
    /// Late amendments not sent (the TSDB holds the interval's samples already).
    pub remote_write_skipped_late: AtomicU64,
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

#[cfg(test)]
mod test {
    use super::*;
    use std::mem::{align_of, offset_of};

    /// Counters written by different actors sit on different cache lines.
    #[test]
    fn test_actor_groups_on_separate_lines() {
        assert_eq!(align_of::<Metrics>(), 64);
        let line = |off: usize| off / 64;
        let ingest = [
            offset_of!(Metrics, frames_udp),
            offset_of!(Metrics, ingest_lag_ms),
        ];
        let others = [
            offset_of!(Metrics, resolver_cache_resets),
            offset_of!(Metrics, aggregated_records),
            offset_of!(Metrics, closed_intervals),
            offset_of!(Metrics, health_eval_us),
            offset_of!(Metrics, store_batches),
            offset_of!(Metrics, history_bytes),
            offset_of!(Metrics, depth),
        ];
        for i in ingest {
            for o in others {
                assert_ne!(line(i), line(o), "offsets {i} and {o}");
            }
        }
        assert_ne!(
            line(offset_of!(Metrics, aggregated_records)),
            line(offset_of!(Metrics, store_batches))
        );
    }
}
