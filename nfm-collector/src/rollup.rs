//! Rollups: the store folds every durable interval summary into an open 1-minute rollup, and
//! every closed 1-minute rollup into an open 1-hour rollup, and writes closed rollups to their own
//! logs (`rollup-1m/`, `rollup-1h/`), so that a query over days reads a few hundred records
//! instead of a hundred thousand summaries (docs/collector.md, "History and rollups").
//!
//! How a rollup merges its intervals:
//! - bytes, retransmissions, timeouts, records: sums; RTT: the sums and counts of samples add, so
//!   the mean RTT of a rollup is the mean over every sample of its intervals (not a mean of means);
//! - `flows` (of the summary and of each monitor): the peak over its intervals (distinct flows
//!   across intervals are not known from summaries);
//! - top contributors: flows (and monitor pairs) of the same key add up across intervals, then the
//!   top `k` by each metric (per category) are kept again, plus up to [`MAX_DEGRADED`] flows judged
//!   degraded;
//! - HealthIndicator: the maximum over the intervals (1 when any interval was degraded), and in
//!   [`RollupRecord::health`] per monitor how many intervals were evaluated and how many were
//!   degraded (so the fraction is known);
//! - verdicts: the last verdict of each incident (component, `first_seen_ms`).
//!
//! A summary for an interval whose rollup has already closed (a late amendment) becomes a rollup
//! record of its own for that bucket; readers add records of the same bucket together, as they do
//! with raw amendments.

use crate::model::{Category, ComponentId, Verdict};
use crate::record::{HistoryError, KIND_ROLLUP};
use crate::summary::{top_union, Counters, IntervalSummary, MonitorPoint, PairStat, TopFlow};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// A resolution of the history: raw interval summaries, 1-minute or 1-hour rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Raw,
    Minute,
    Hour,
}

impl Level {
    pub const ALL: [Level; 3] = [Level::Raw, Level::Minute, Level::Hour];
    /// The bucket length; 0 for raw (the collector's interval).
    pub fn resolution_ms(self) -> u64 {
        match self {
            Level::Raw => 0,
            Level::Minute => 60_000,
            Level::Hour => 3_600_000,
        }
    }
    /// The log's directory under the data directory.
    pub fn dir(self) -> &'static str {
        match self {
            Level::Raw => "history",
            Level::Minute => "rollup-1m",
            Level::Hour => "rollup-1h",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Level::Raw => "raw",
            Level::Minute => "1m",
            Level::Hour => "1h",
        }
    }
    pub fn parse(s: &str) -> Result<Level, String> {
        match s {
            "raw" => Ok(Level::Raw),
            "1m" | "60000" => Ok(Level::Minute),
            "1h" | "3600000" => Ok(Level::Hour),
            _ => Err(format!("unknown resolution `{s}` (one of raw, 1m, 1h)")),
        }
    }
    /// The next finer level (what fills a coarse level's gaps).
    pub fn finer(self) -> Option<Level> {
        match self {
            Level::Raw => None,
            Level::Minute => Some(Level::Raw),
            Level::Hour => Some(Level::Minute),
        }
    }
    /// The level a query over `span_ms` reads: raw up to 6 h (≤ 4,320 summaries at 5 s, the
    /// newest of them in memory), 1-minute rollups up to 36 h (≤ 2,160), 1-hour rollups beyond
    /// (168 for 7 days).
    pub fn for_span(span_ms: u64) -> Level {
        if span_ms <= 6 * 3_600_000 {
            Level::Raw
        } else if span_ms <= 36 * 3_600_000 {
            Level::Minute
        } else {
            Level::Hour
        }
    }
}

/// Flows judged degraded kept in a rollup beyond its top contributors (per list).
pub const MAX_DEGRADED: usize = 200;

/// One monitor's health over a rollup's intervals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MonitorHealth {
    pub monitor: String,
    /// Intervals with a HealthIndicator (evaluated by the health stage).
    pub evaluated: u64,
    /// Intervals whose HealthIndicator was 1.
    pub degraded: u64,
}

/// A closed rollup, as written to a rollup log (record kind [`KIND_ROLLUP`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RollupRecord {
    /// First so that an index reads them from the first bytes of the payload.
    pub start_ms: u64,
    pub end_ms: u64,
    pub resolution_ms: u64,
    /// Raw intervals folded in.
    pub intervals: u64,
    pub health: Vec<MonitorHealth>,
    /// The merged summary (`start_ms`: the bucket's start; `end_ms`: its last interval's end).
    pub summary: IntervalSummary,
}

/// The rollup layout version this build writes.
pub const ROLLUP_VERSION: u16 = 1;

/// A rollup record's payload: the version, then the record (bincode, standard config).
pub fn encode_rollup(r: &RollupRecord) -> Vec<u8> {
    let mut out = ROLLUP_VERSION.to_le_bytes().to_vec();
    bincode::serde::encode_into_std_write(r, &mut out, bincode::config::standard())
        .expect("rollup encodes");
    out
}

/// Reads a rollup record of any version this build knows.
pub fn decode_rollup(kind: u8, p: &[u8]) -> Result<RollupRecord, HistoryError> {
    if kind != KIND_ROLLUP {
        return Err(HistoryError::Kind(kind));
    }
    let (v, rest) = p.split_at_checked(2).ok_or(HistoryError::Corrupt)?;
    match u16::from_le_bytes([v[0], v[1]]) {
        1 => {
            bincode::serde::decode_from_slice::<RollupRecord, _>(rest, bincode::config::standard())
                .map(|(r, _)| r)
                .map_err(|_| HistoryError::Corrupt)
        }
        other => Err(HistoryError::Version(other)),
    }
}

type FlowKey = (IpAddr, IpAddr, u16, bool);

fn key(f: &TopFlow) -> FlowKey {
    (f.local, f.remote, f.port, f.server)
}

fn merge_flow(map: &mut HashMap<FlowKey, TopFlow>, f: &TopFlow) {
    match map.get_mut(&key(f)) {
        Some(x) => {
            x.counters.add(&f.counters);
            x.degraded |= f.degraded;
        }
        None => {
            map.insert(key(f), f.clone());
        }
    }
}

/// The top `k` by each metric (per category when `per_category`), plus up to [`MAX_DEGRADED`]
/// degraded flows, in a stable order.
fn cut_flows(map: HashMap<FlowKey, TopFlow>, k: usize, per_category: bool) -> Vec<TopFlow> {
    let mut all: Vec<TopFlow> = map.into_values().collect();
    all.sort_by_key(key);
    let counters: Vec<Counters> = all.iter().map(|f| f.counters).collect();
    let mut keep: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].degraded)
        .take(MAX_DEGRADED)
        .collect();
    if per_category {
        for cat in Category::ALL {
            let idx: Vec<usize> = (0..all.len()).filter(|&i| all[i].category == cat).collect();
            keep.extend(top_union(&idx, &counters, k));
        }
    } else {
        let idx: Vec<usize> = (0..all.len()).collect();
        keep.extend(top_union(&idx, &counters, k));
    }
    keep.sort_unstable();
    keep.dedup();
    let mut all: Vec<Option<TopFlow>> = all.into_iter().map(Some).collect();
    keep.into_iter().filter_map(|i| all[i].take()).collect()
}

#[derive(Debug, Default)]
struct MonitorAcc {
    flows: u64,
    counters: Counters,
    indicator: Option<u8>,
    evaluated: u64,
    degraded: u64,
    pairs: HashMap<(String, String), Counters>,
    top: HashMap<FlowKey, TopFlow>,
}

/// An open rollup: what has been folded into one bucket so far.
#[derive(Debug)]
struct Acc {
    resolution_ms: u64,
    start_ms: u64,
    end_ms: u64,
    intervals: u64,
    flows: u64,
    records: u64,
    other_records: u64,
    simulated: bool,
    categories: BTreeMap<Category, Counters>,
    top: HashMap<FlowKey, TopFlow>,
    monitors: BTreeMap<String, MonitorAcc>,
    verdicts: BTreeMap<(ComponentId, u64), Verdict>,
}

impl Acc {
    fn new(resolution_ms: u64, start_ms: u64) -> Acc {
        Acc {
            resolution_ms,
            start_ms,
            end_ms: start_ms,
            intervals: 0,
            flows: 0,
            records: 0,
            other_records: 0,
            simulated: false,
            categories: BTreeMap::new(),
            top: HashMap::new(),
            monitors: BTreeMap::new(),
            verdicts: BTreeMap::new(),
        }
    }

    /// Folds a summary standing for `intervals` raw intervals; `health`: its per-monitor health
    /// when it is a rollup itself (a raw summary's comes from its indicators).
    fn fold(&mut self, s: &IntervalSummary, intervals: u64, health: Option<&[MonitorHealth]>) {
        self.end_ms = self.end_ms.max(s.end_ms);
        self.intervals += intervals;
        self.flows = self.flows.max(s.flows);
        self.records = self.records.saturating_add(s.records);
        self.other_records = self.other_records.saturating_add(s.other_records);
        self.simulated |= s.simulated;
        for (c, v) in &s.categories {
            self.categories.entry(*c).or_default().add(v);
        }
        for f in &s.top {
            merge_flow(&mut self.top, f);
        }
        for m in &s.monitors {
            let a = self.monitors.entry(m.monitor.clone()).or_default();
            a.flows = a.flows.max(m.flows);
            a.counters.add(&m.counters);
            a.indicator = a.indicator.max(m.health_indicator);
            match health.and_then(|h| h.iter().find(|h| h.monitor == m.monitor)) {
                Some(h) => {
                    a.evaluated += h.evaluated;
                    a.degraded += h.degraded;
                }
                None if health.is_none() => {
                    a.evaluated += m.health_indicator.is_some() as u64;
                    a.degraded += m.health_indicator.is_some_and(|i| i > 0) as u64;
                }
                None => {}
            }
            for p in &m.pairs {
                a.pairs
                    .entry((p.local.clone(), p.remote.clone()))
                    .or_default()
                    .add(&p.counters);
            }
            for f in &m.flows_top {
                merge_flow(&mut a.top, f);
            }
        }
        for v in &s.verdicts {
            let k = (v.component.clone(), v.first_seen_ms);
            match self.verdicts.get(&k) {
                Some(old) if old.interval_start_ms > v.interval_start_ms => {}
                _ => {
                    self.verdicts.insert(k, v.clone());
                }
            }
        }
    }

    fn close(self, k: usize) -> RollupRecord {
        let mut health = Vec::new();
        let monitors = self
            .monitors
            .into_iter()
            .map(|(name, a)| {
                health.push(MonitorHealth {
                    monitor: name.clone(),
                    evaluated: a.evaluated,
                    degraded: a.degraded,
                });
                let mut pairs: Vec<PairStat> = a
                    .pairs
                    .into_iter()
                    .map(|((local, remote), counters)| PairStat {
                        local,
                        remote,
                        counters,
                    })
                    .collect();
                pairs.sort_by(|x, y| (&x.local, &x.remote).cmp(&(&y.local, &y.remote)));
                let counters: Vec<Counters> = pairs.iter().map(|p| p.counters).collect();
                let idx: Vec<usize> = (0..pairs.len()).collect();
                let keep = top_union(&idx, &counters, k);
                let mut pairs: Vec<Option<PairStat>> = pairs.into_iter().map(Some).collect();
                MonitorPoint {
                    monitor: name,
                    flows: a.flows,
                    counters: a.counters,
                    health_indicator: a.indicator,
                    pairs: keep.into_iter().filter_map(|i| pairs[i].take()).collect(),
                    flows_top: cut_flows(a.top, k, false),
                }
            })
            .collect();
        RollupRecord {
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            resolution_ms: self.resolution_ms,
            intervals: self.intervals,
            health,
            summary: IntervalSummary {
                start_ms: self.start_ms,
                end_ms: self.end_ms,
                flows: self.flows,
                records: self.records,
                other_records: self.other_records,
                categories: self.categories.into_iter().collect(),
                top: cut_flows(self.top, k, true),
                monitors,
                verdicts: self.verdicts.into_values().collect(),
                simulated: self.simulated,
            },
        }
    }
}

/// The open rollups of both levels. The store folds each durable summary in ([`Rollups::fold`])
/// and writes the rollups that closed.
#[derive(Debug)]
pub struct Rollups {
    k: usize,
    minute: Option<Acc>,
    hour: Option<Acc>,
}

fn bucket(ms: u64, res: u64) -> u64 {
    ms / res * res
}

impl Rollups {
    /// `k`: top contributors kept per metric (the aggregator's `top_k`).
    pub fn new(k: usize) -> Rollups {
        Rollups {
            k,
            minute: None,
            hour: None,
        }
    }

    /// Folds a durable raw summary into the open minute; returns the rollups that closed (a minute
    /// closes when a summary of a later minute arrives; an hour when a later hour's minute closes).
    pub fn fold(&mut self, s: &IntervalSummary) -> Vec<RollupRecord> {
        let mut out = Vec::new();
        if let Some(r) = Self::fold_into(&mut self.minute, Level::Minute, s, 1, None, self.k) {
            self.fold_minute(&r, &mut out);
            out.push(r);
        }
        out
    }

    /// Folds a closed minute rollup into the open hour (replay at start uses it alone for the
    /// minutes after the last closed hour); pushes a closed hour onto `out`.
    pub fn fold_minute(&mut self, r: &RollupRecord, out: &mut Vec<RollupRecord>) {
        let h = Some(r.health.as_slice());
        if let Some(h) = Self::fold_into(
            &mut self.hour,
            Level::Hour,
            &r.summary,
            r.intervals,
            h,
            self.k,
        ) {
            out.push(h);
        }
    }

    /// Folds into `open`; returns a closed record: the previous bucket when `s` starts a later
    /// one, or a record of `s` alone when its bucket closed before (a late amendment).
    fn fold_into(
        open: &mut Option<Acc>,
        level: Level,
        s: &IntervalSummary,
        intervals: u64,
        health: Option<&[MonitorHealth]>,
        k: usize,
    ) -> Option<RollupRecord> {
        let res = level.resolution_ms();
        let b = bucket(s.start_ms, res);
        match open {
            Some(a) if a.start_ms == b => {
                a.fold(s, intervals, health);
                None
            }
            Some(a) if b < a.start_ms => {
                let mut alone = Acc::new(res, b);
                alone.fold(s, intervals, health);
                Some(alone.close(k))
            }
            _ => {
                let mut a = Acc::new(res, b);
                a.fold(s, intervals, health);
                open.replace(a).map(|old| old.close(k))
            }
        }
    }

    /// Start of the open minute, if any (tests and replay).
    pub fn open_minute(&self) -> Option<u64> {
        self.minute.as_ref().map(|a| a.start_ms)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn s(start: u64, bytes: u64, indicator: Option<u8>) -> IntervalSummary {
        let c = Counters {
            bytes,
            rtt_sum_us: bytes * 10,
            rtt_count: bytes,
            records: 1,
            ..Default::default()
        };
        IntervalSummary {
            start_ms: start,
            end_ms: start + 5_000,
            flows: bytes,
            categories: vec![(Category::Service, c)],
            monitors: vec![MonitorPoint {
                monitor: "m".into(),
                flows: bytes,
                counters: c,
                health_indicator: indicator,
                pairs: vec![],
                flows_top: vec![],
            }],
            ..Default::default()
        }
    }

    /// Minutes close when a later minute starts, hours when a later hour's minute closes; a late
    /// amendment of a closed minute becomes a record of its own; the record round-trips.
    #[test]
    fn test_minutes_hours_and_late_amendments() {
        let mut r = Rollups::new(5);
        let mut out = Vec::new();
        for i in 0..12 {
            out.extend(r.fold(&s(i * 5_000, 1 + i % 2, Some(u8::from(i == 3)))));
        }
        assert!(out.is_empty(), "the first minute is still open");
        out.extend(r.fold(&s(60_000, 4, None)));
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!((m.start_ms, m.end_ms, m.intervals), (0, 60_000, 12));
        assert_eq!(m.summary.monitors[0].counters.bytes, 18);
        assert_eq!(m.summary.monitors[0].flows, 2, "peak, not sum");
        assert_eq!(m.summary.monitors[0].health_indicator, Some(1));
        assert_eq!(
            m.health,
            vec![MonitorHealth {
                monitor: "m".into(),
                evaluated: 12,
                degraded: 1
            }]
        );
        // A late amendment of minute 0: a record of its own.
        let late = r.fold(&s(10_000, 7, None));
        assert_eq!(late.len(), 1);
        assert_eq!((late[0].start_ms, late[0].intervals), (0, 1));
        assert_eq!(
            late[0].health[0].evaluated, 0,
            "late records are not judged"
        );
        assert_eq!(r.open_minute(), Some(60_000));
        // The next hour: minute 60_000 closes, and with the first minute of hour 1 the hour 0.
        let out = r.fold(&s(3_600_000, 1, Some(0)));
        assert_eq!(out.len(), 1, "minute 1 closed; hour 0 still open");
        let out = r.fold(&s(3_660_000, 1, Some(0)));
        let hour = out.iter().find(|x| x.resolution_ms == 3_600_000).unwrap();
        assert_eq!(
            hour.intervals,
            12 + 1 + 1,
            "minute 0, its late amendment, minute 1"
        );
        assert_eq!(hour.summary.monitors[0].counters.bytes, 18 + 7 + 4);
        assert_eq!(hour.health[0].degraded, 1);
        let p = encode_rollup(hour);
        assert_eq!(
            crate::record::record_span(KIND_ROLLUP, &p),
            Some((0, 65_000)),
            "the end of its last interval"
        );
        assert_eq!(decode_rollup(KIND_ROLLUP, &p).as_ref(), Ok(hour));
        assert_eq!(
            decode_rollup(KIND_ROLLUP, &[9, 0, 1]),
            Err(HistoryError::Version(9))
        );
    }
}
