//! The pipeline's messages: every message an actor receives and every payload that crosses from
//! one actor to the next, in the order data flows (ingest → resolver → aggregator → health →
//! store → api). Actors depend on this module and on shared data modules, never on each other;
//! `collector.rs` alone wires them together.
//!
//! ```text
//! ingest ─ DecodedBatch ─▶ resolver ─ ResolvedBatches ─▶ aggregator ─ ClosedWork ─▶ health
//!   │  ▲                                                                            │
//!   │  └──────── StoreReply ◀── store ◀──────────── StoreMsg::Interval ◀────────────┘
//!   └── WalBatch ─────────────▶ store ── ApiMsg::Interval ─▶ api ◀─ ApiMsg::Ingest ─ ingest
//! ```

use crate::interval::ClosedWork;
use crate::monitor::Monitor;
use crate::resolution::{DecodedBatch, ResolvedBatches};
use crate::summary::IntervalSummary;
use crate::topology::Topology;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

// ---- queue depths (issue 16 item 4)
//
// Every queued message is memory held on top of the flows themselves: a batch message is up to
// 16k decoded records (~4 MB), a closed interval is one sample per flow (100k flows ≈ 27 MB).
// The collector bench (`scripts/bench.sh collector`, health on) used the same CPU per record with
// these depths as with the earlier 8 / 8 / 2 / 2, and ~1,100 fewer bytes per active flow.

/// Batch messages queued from ingest to the resolver.
pub const RESOLVER_QUEUE: usize = 2;
/// Resolved batch messages queued from the resolver to the aggregator.
pub const AGG_QUEUE: usize = 2;
/// Closed intervals queued from the aggregator to the health stage: none, a hand-over (the
/// aggregator waits for the health stage to take it). Measured with the collector bench (20 s
/// runs, health on): 1 queued interval held ~300 bytes per active flow more for the same
/// throughput. The API's maintenance windows (`try_send`) still get through: a change that
/// finds the stage busy is sent again on the API's next tick.
pub const HEALTH_QUEUE: usize = 0;
/// Emptied sample vectors the health stage hands back to the aggregator for reuse: none (a
/// hand-over neither side waits on, so none gets through; issue 16 item 4). A vector parked here
/// was ~27 MB resident at 100k flows even while idle; freed instead, mimalloc reuses its memory
/// for the next interval's (purge delay 10 s, `alloc`) and gives it back when the pipeline goes
/// idle (`alloc::trim`). Collector bench, 20 s runs, health on, alternating: 3,376 / 3,492 bytes
/// per active flow with 1, 3,171 / 3,218 with 0, the same CPU per record within the noise.
pub const RECYCLE_QUEUE: usize = 0;

// ---- into the resolver

/// Messages into the resolver actor.
pub enum ResolverMsg {
    Batches(Vec<DecodedBatch>),
    Topology(Arc<Topology>),
    Tick(Instant),
    Shutdown,
}

// ---- into the aggregator, and what it closes

pub enum AggMsg {
    Batches(ResolvedBatches),
    Monitors(Arc<Vec<Monitor>>),
    Tick(Instant),
    /// Close every open interval now (tests, shutdown of a replay).
    Flush,
    Shutdown,
}

// ---- into the health stage

/// Messages into the health stage.
pub enum HealthMsg {
    Closed(Box<ClosedWork>),
    /// The maintenance windows now in force (issue 15; from the API): intervals overlapping one
    /// are not learned into baselines and their incidents are not announced.
    Maintenance(Arc<crate::maintenance::Windows>),
    Shutdown,
}

// ---- into the store, and its replies

/// One accepted FlowBatch frame on its way to the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalBatch {
    pub agent_id: u64,
    pub epoch: u32,
    pub seq: u64,
    pub interval_start_ms: u64,
    /// Ingest's order number of the batch (the aggregator sees batches in this order; 0 for a
    /// batch written before numbers existed). A summary records the highest number aggregated
    /// when it closed, so replay knows exactly which WAL batches it holds.
    pub n: u64,
    /// The frame exactly as received (CRC and tag included).
    pub frame: Vec<u8>,
}

impl WalBatch {
    /// Payload layout (WAL record kind 4): agent u64, epoch u32, seq u64, interval_start u64,
    /// n u64, frame bytes. Kind 1 (before numbers) lacks `n`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.agent_id.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.interval_start_ms.to_le_bytes());
        out.extend_from_slice(&self.n.to_le_bytes());
        out.extend_from_slice(&self.frame);
    }
    /// Decodes a WAL record of kind 4 (`numbered`) or 1.
    pub fn decode(p: &[u8], numbered: bool) -> Option<WalBatch> {
        let agent_id = u64::from_le_bytes(p.get(0..8)?.try_into().ok()?);
        let epoch = u32::from_le_bytes(p.get(8..12)?.try_into().ok()?);
        let seq = u64::from_le_bytes(p.get(12..20)?.try_into().ok()?);
        let interval_start_ms = u64::from_le_bytes(p.get(20..28)?.try_into().ok()?);
        let (n, frame) = if numbered {
            (u64::from_le_bytes(p.get(28..36)?.try_into().ok()?), 36)
        } else {
            (0, 28)
        };
        Some(WalBatch {
            agent_id,
            epoch,
            seq,
            interval_start_ms,
            n,
            frame: p.get(frame..)?.to_vec(),
        })
    }
    /// The interval start of an encoded batch (the WAL's replay key).
    pub(crate) fn key(p: &[u8]) -> u64 {
        p.get(20..28)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    }
}

/// Messages into the store actor.
#[derive(Debug)]
pub enum StoreMsg {
    /// Frames to make durable; the ids come back as [`Durable`] once fsynced.
    Batches(Vec<WalBatch>),
    /// A closed interval's summary (from the health stage). `closed_before_ms`: every interval
    /// starting before it is summarized, so WAL segments holding only such batches can go.
    /// `covers_n`: the highest batch number aggregated when it closed (its WAL batches are
    /// those of its interval numbered up to this).
    Interval {
        summary: Box<IntervalSummary>,
        closed_before_ms: u64,
        covers_n: u64,
    },
    /// Retry after an error; apply retention.
    Tick(Instant),
    Shutdown,
}

/// Reply to ingest about batches it handed over, by (agent, epoch, seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    /// Fsynced: ack them. (The store never drops a batch: ingest bounds its backlog.)
    Durable(Vec<(u64, u32, u64)>),
}

// ---- into the API

/// One agent as `/api/agents` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    pub agent_id: u64,
    pub host_name: String,
    pub agent_version: String,
    pub epoch: u32,
    pub transport: String,
    pub simulated: bool,
    pub capabilities: u64,
    pub interval_ms: u32,
    pub last_seen_ms: u64,
    pub frames: u64,
    pub records: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Batches moved onto the interval grid (clock skew within tolerance), and batches too far
    /// off it to place (counted, kept as sent).
    pub skew_aligned: u64,
    pub misaligned: u64,
    /// Batches shorter than the collector's interval moved into the one holding their midpoint
    /// (a longer one is refused: `rejected["interval_mismatch"]`).
    pub rebucketed: u64,
    pub rejected: BTreeMap<String, u64>,
    pub stats: Option<Box<nfm_wire::AgentStats>>,
    pub goodbye: Option<String>,
    /// issue 17: where the agent runs, from its Hello (wire 1.1); None when it said nothing.
    pub placement: Option<Box<AgentPlacement>>,
}

/// issue 17: an agent's placement from the instance metadata service (Hello, wire 1.1).
/// Empty strings are unknown; at most [`AgentPlacement::MAX_ADDRESSES`] addresses are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentPlacement {
    pub instance_id: String,
    pub region: String,
    pub az: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub addresses: Vec<std::net::IpAddr>,
}

impl AgentPlacement {
    pub const MAX_ADDRESSES: usize = 64;

    /// The placement a Hello announces, None when it announces none.
    pub fn of(h: &nfm_wire::Hello) -> Option<AgentPlacement> {
        let p = AgentPlacement {
            instance_id: h.instance_id.clone(),
            region: h.region.clone(),
            az: h.az.clone(),
            subnet_id: h.subnet_id.clone(),
            vpc_id: h.vpc_id.clone(),
            addresses: h
                .addresses
                .iter()
                .take(Self::MAX_ADDRESSES)
                .copied()
                .collect(),
        };
        (p != AgentPlacement::default()).then_some(p)
    }
}

/// Ingest's periodic snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestSnapshot {
    pub agents: Vec<AgentView>,
    /// Refused frames by reason, all agents.
    pub rejected: BTreeMap<String, u64>,
}

pub enum ApiMsg {
    /// A durable interval summary (live or replayed at start).
    Interval(Arc<IntervalSummary>),
    Ingest(Box<IngestSnapshot>),
    Http(crate::http::Request),
    /// Reload the topology file (SIGHUP).
    ReloadTopology,
    Shutdown,
}

// ---- into the notifier (issue 15: webhook notifications, maintenance windows)

/// What happened to an incident (a component named by the health evaluator, through its
/// flaps, until the hold-down after its last naming runs out: docs/health.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    Opened,
    Resolved,
}

/// One incident opening or resolving, with the evidence of its latest verdict. Sent by the
/// health stage to the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentEvent {
    pub state: IncidentState,
    /// The incident's identity: its component and the start of its first interval.
    pub first_seen_ms: u64,
    /// Start of the last interval that named it.
    pub last_named_ms: u64,
    /// End of the interval at which it opened (was announced) or resolved.
    pub at_ms: u64,
    /// Intervals that named it so far.
    pub intervals_named: u64,
    /// The latest verdict naming it: component, blame, confidence, degraded and healthy flows,
    /// baseline against observed.
    pub verdict: crate::model::Verdict,
    /// Any of its intervals held simulated flows (nfm-sim).
    pub simulated: bool,
}

/// Messages into the notifier actor (`notify`).
pub enum NotifyMsg {
    Incident(Box<IncidentEvent>),
    Shutdown,
}

// ---- into the remote writer (issue 16)

/// Messages into the remote-write actor (`remote_write`), from the store.
pub enum RemoteWriteMsg {
    /// A durable interval summary.
    Interval(Arc<IntervalSummary>),
    Shutdown,
}
