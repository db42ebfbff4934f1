//! What the collector keeps of each closed interval: totals, top contributor flows, per-monitor
//! metrics and resource pairs, and the health evaluator's verdicts.
//!
//! Why summaries and not every flow: 100k active flows per interval for 7 days would not fit in
//! memory or be fast to query; top contributors per category and metric (K of each, see
//! `AggregatorConfig::top_k`) answer workload insights, and per-monitor totals are exact. These
//! structs are written to the history log (bincode) and served by the API (JSON; docs/api.md).

use crate::model::{Category, ComponentId, Verdict};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Metrics by which contributors are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Bytes sent plus received.
    DataTransferred,
    Retransmissions,
    /// Retransmission timeouts.
    Timeouts,
    /// Mean round-trip time (µs).
    RoundTripTime,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::DataTransferred,
        Metric::Retransmissions,
        Metric::Timeouts,
        Metric::RoundTripTime,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::DataTransferred => "data-transferred",
            Metric::Retransmissions => "retransmissions",
            Metric::Timeouts => "timeouts",
            Metric::RoundTripTime => "round-trip-time",
        }
    }
    pub fn parse(s: &str) -> Result<Metric, String> {
        match s {
            "data-transferred" | "DataTransferred" | "bytes" => Ok(Metric::DataTransferred),
            "retransmissions" | "Retransmissions" | "retrans" => Ok(Metric::Retransmissions),
            "timeouts" | "Timeouts" => Ok(Metric::Timeouts),
            "round-trip-time" | "RoundTripTime" | "rtt" => Ok(Metric::RoundTripTime),
            _ => Err(format!(
                "unknown metric `{s}` (one of data-transferred, retransmissions, timeouts, round-trip-time)"
            )),
        }
    }
}

/// Additive counters of a flow, a pair or a monitor over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counters {
    pub bytes: u64,
    pub retransmissions: u64,
    pub timeouts: u64,
    pub rtt_sum_us: u64,
    pub rtt_count: u64,
    pub records: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.bytes += o.bytes;
        self.retransmissions += o.retransmissions;
        self.timeouts += o.timeouts;
        self.rtt_sum_us += o.rtt_sum_us;
        self.rtt_count += o.rtt_count;
        self.records += o.records;
    }
    pub fn of_record(r: &nfm_wire::FlowRecord) -> Counters {
        Counters {
            bytes: r.bytes_sent.saturating_add(r.bytes_received),
            retransmissions: r.retrans.total(),
            timeouts: r.rto.total(),
            rtt_sum_us: r.rtt.sum_us,
            rtt_count: r.rtt.count,
            records: 1,
        }
    }
    /// Mean RTT in µs, 0 without samples.
    pub fn rtt_us(&self) -> u64 {
        self.rtt_sum_us.checked_div(self.rtt_count).unwrap_or(0)
    }
    pub fn value(&self, m: Metric) -> u64 {
        match m {
            Metric::DataTransferred => self.bytes,
            Metric::Retransmissions => self.retransmissions,
            Metric::Timeouts => self.timeouts,
            Metric::RoundTripTime => self.rtt_us(),
        }
    }
}

/// One flow among an interval's top contributors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopFlow {
    pub agent_id: u64,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// The service port (the remote port of a client flow, the local port of a server flow).
    pub port: u16,
    pub server: bool,
    pub category: Category,
    pub counters: Counters,
    pub path: Vec<ComponentId>,
    /// The health evaluator judged this flow degraded in this interval.
    pub degraded: bool,
}

/// A local resource and a remote resource, with what flowed between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStat {
    /// `subnet:..`, or `host:IP` when the local end has no subnet.
    pub local: String,
    /// `subnet:..`, `vpc:..`, `service:..` or `external:IP`.
    pub remote: String,
    pub counters: Counters,
}

/// One monitor's metrics for one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorPoint {
    pub monitor: String,
    pub flows: u64,
    pub counters: Counters,
    /// From the health evaluator (`health::monitor_indicator`); `None` when no evaluation ran.
    pub health_indicator: Option<u8>,
    /// Top resource pairs by each metric (union).
    pub pairs: Vec<PairStat>,
    /// Top flows by each metric (union) plus degraded flows, with their paths.
    pub flows_top: Vec<TopFlow>,
}

/// Everything kept of one closed interval.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IntervalSummary {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Flows (distinct keys) and records aggregated, including the "other" bucket.
    pub flows: u64,
    pub records: u64,
    /// Records folded into the "other" bucket because a cardinality cap was reached (their
    /// counters are in `categories`, not in any flow, monitor or top list).
    pub other_records: u64,
    /// Per category totals (every flow, capped ones included).
    pub categories: Vec<(Category, Counters)>,
    /// Union of the top K flows per (category, metric).
    pub top: Vec<TopFlow>,
    pub monitors: Vec<MonitorPoint>,
    pub verdicts: Vec<Verdict>,
    /// True when any flow came from a simulator (never presented as real).
    pub simulated: bool,
}
