//! The closed-interval contract: what the aggregator hands the health stage when an interval
//! closes ([`ClosedWork`]) and the one function, [`summarize`], that turns it and the
//! evaluator's report into the [`IntervalSummary`] that is stored and served.
//!
//! The contract, in full:
//! - rows: `interval.flows[i]` is one flow's merged deltas and category; indices into it (top
//!   contributors, monitor members, degraded flows) are row numbers;
//! - resolutions by dense id: `resolved` holds row `i`'s resolution (path, endpoints, pair
//!   labels with their ids); a row's path is its resolution's path, and samples carry none;
//! - totals: counted by the aggregator over every record, capped ones included
//!   ([`IntervalTotals`]); everything else in the summary is built by [`summarize`].

use crate::flow_table::Resolutions;
use crate::health::{monitor_indicator_with, Paths, ResolvedPaths};
use crate::model::{Category, ClosedInterval, ComponentId, FlowSample, HealthReport};
use crate::summary::{Counters, IntervalSummary, MonitorPoint, PairStat, TopFlow};

/// Counted by the aggregator over every record of an interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IntervalTotals {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Flows (distinct keys) and records aggregated, including the "other" bucket.
    pub flows: u64,
    pub records: u64,
    /// Records over a cardinality cap (in `categories` only).
    pub other_records: u64,
    /// Per-category totals of the categories that saw records.
    pub categories: Vec<(Category, Counters)>,
    /// Any record came from a simulator.
    pub simulated: bool,
}

/// One monitor's share of a closed interval, before health evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorWork {
    pub name: String,
    /// Indices into `ClosedInterval::flows`.
    pub flows: Vec<usize>,
    /// Top flows by each metric (union), indices into `ClosedInterval::flows`.
    pub top: Vec<usize>,
    pub counters: Counters,
    pub pairs: Vec<PairStat>,
}

/// A closed interval, ready for the health stage.
#[derive(Debug, Clone)]
pub struct ClosedWork {
    pub interval: ClosedInterval,
    /// Totals over every record of the interval (capped ones included).
    pub totals: IntervalTotals,
    /// Top flows per (category, metric), union, indices into `interval.flows`.
    pub top: Vec<usize>,
    pub monitors: Vec<MonitorWork>,
    /// Every interval starting before this is closed and summarized or about to be (WAL
    /// checkpoint; held back by late amendments still open).
    pub closed_before_ms: u64,
    /// The highest batch number aggregated when it closed (see `StoreMsg::Interval`).
    pub covers_n: u64,
    /// Records that arrived after their interval had closed: the health stage must not judge
    /// them (the evaluator has moved on), and the API adds them to the interval's summary.
    pub late: bool,
    /// One resolution per row of `interval.flows` (by dense flow id, snapshotted): a row's
    /// path, endpoints and pair labels. Samples carry no path of their own.
    pub resolved: Resolutions,
}

/// Degraded flows kept per monitor in its summary (beyond its top contributors).
const MAX_DEGRADED_PER_MONITOR: usize = 200;

fn top_flow<P: Paths + ?Sized>(
    iv: &ClosedInterval,
    paths: &P,
    i: usize,
    degraded: &[bool],
) -> Option<TopFlow> {
    let f = iv.flows.get(i)?;
    let server = f.record.role == nfm_wire::Role::Server;
    Some(TopFlow {
        agent_id: f.agent_id,
        local: f.record.local,
        remote: f.record.remote,
        port: f.record.service_port(),
        server,
        category: f.category,
        counters: Counters::of_record(&f.record),
        path: paths.path(i).to_vec(),
        degraded: degraded.get(i).copied().unwrap_or(false),
    })
}

/// Builds the whole summary of a closed interval from the aggregator's work and the
/// evaluator's report: totals, top contributors with their paths and degraded flags, each
/// monitor's metrics, pairs, top and degraded flows and HealthIndicator, and the verdicts.
/// `evaluated`: false when no evaluator judged the interval (late amendments, `--no-health`);
/// then no HealthIndicator is stored, never a made-up one. Also gives back the interval's sample
/// vector for reuse.
/// `open_incidents`: network components with an open incident (`Evaluator::
/// open_network_incidents`): a monitor whose flows cross one keeps HealthIndicator 1 through a
/// flap's good intervals.
pub fn summarize(
    w: ClosedWork,
    report: &HealthReport,
    evaluated: bool,
    open_incidents: &[ComponentId],
) -> (IntervalSummary, Vec<FlowSample>) {
    let ClosedWork {
        interval,
        totals,
        top,
        monitors,
        resolved,
        ..
    } = w;
    let paths = &ResolvedPaths::of_rows(&resolved);
    let mut degraded = vec![false; interval.flows.len()];
    for &i in &report.degraded_flows {
        if let Some(d) = degraded.get_mut(i) {
            *d = true;
        }
    }
    let is_degraded = |i: usize| degraded.get(i).copied().unwrap_or(false);
    let top = top
        .iter()
        .filter_map(|&i| top_flow(&interval, paths, i, &degraded))
        .collect();
    let monitors = monitors
        .into_iter()
        .map(|m| {
            let mut idx = m.top.clone();
            idx.extend(
                m.flows
                    .iter()
                    .copied()
                    .filter(|&i| is_degraded(i))
                    .take(MAX_DEGRADED_PER_MONITOR),
            );
            idx.sort_unstable();
            idx.dedup();
            MonitorPoint {
                health_indicator: evaluated.then(|| {
                    indicator(
                        &interval,
                        paths,
                        report,
                        &degraded,
                        &m.flows,
                        open_incidents,
                    )
                }),
                monitor: m.name,
                flows: m.flows.len() as u64,
                counters: m.counters,
                pairs: m.pairs,
                flows_top: idx
                    .iter()
                    .filter_map(|&i| top_flow(&interval, paths, i, &degraded))
                    .collect(),
            }
        })
        .collect();
    let summary = IntervalSummary {
        start_ms: totals.start_ms,
        end_ms: totals.end_ms,
        flows: totals.flows,
        records: totals.records,
        other_records: totals.other_records,
        categories: totals.categories,
        top,
        monitors,
        verdicts: report.verdicts.clone(),
        simulated: totals.simulated,
    };
    (summary, interval.flows)
}

/// `health::monitor_indicator`'s rule with paths from `paths` and the degraded flags as a mask.
fn indicator<P: Paths + ?Sized>(
    iv: &ClosedInterval,
    paths: &P,
    report: &HealthReport,
    degraded: &[bool],
    monitor_flows: &[usize],
    open_incidents: &[ComponentId],
) -> u8 {
    let named = report
        .verdicts
        .iter()
        .any(|v| v.blame == crate::model::Blame::Network)
        && monitor_indicator_with(report, monitor_flows, |i| {
            (i < iv.flows.len() && degraded[i]).then(|| paths.path(i))
        }) == 1;
    // A flap's good interval: an open network incident still on the path of its flows.
    let open = !open_incidents.is_empty()
        && monitor_flows.iter().any(|&i| {
            i < iv.flows.len() && paths.path(i).iter().any(|c| open_incidents.contains(c))
        });
    u8::from(named || open)
}
