//! The aggregator actor: folds resolved records into per-interval, per-flow aggregates and
//! closes each interval into a [`ClosedInterval`] for the health stage plus the makings of its
//! [`IntervalSummary`] (category totals, top contributors, per-monitor metrics and pairs).
//!
//! Intervals come from the frames' own timestamps, never the collector's clock, so simulated
//! time and replayed history aggregate exactly like live traffic. An interval closes when the
//! watermark (the latest interval end any agent reported) passes its end by `close_grace_ms`,
//! or when no record arrived for it for `idle_close` of wall time (taken from `Tick` messages,
//! so tests drive the clock). Cardinality is capped per agent and in total; records over a cap
//! go to a per-category "other" bucket and are counted, never silently dropped.
//!
//! Records for an interval that already closed (an agent's spool resent after an outage) are
//! not dropped: they gather in a late interval of their own, closed for idleness, which the
//! health stage passes through unjudged and the API folds into the interval's summary
//! (`IntervalSummary::absorb`). Only records older than `max_late_ms` are dropped, and counted.

use crate::flow_table::{label_key, row_resolution, FlowSlot, FlowTable, Resolutions, NO_SET};
use crate::interval::{ClosedWork, IntervalTotals, MonitorWork};
use crate::metrics::Metrics;
use crate::model::{Category, ClosedInterval, FlowSample};
use crate::monitor::Monitor;
use crate::monitor_index::{MonitorIndex, MonitorSets};
use crate::pipeline::AggMsg;
use crate::resolution::{FlowKey, Resolved, ResolvedBatches};
use crate::summary::top_union;
use crate::summary::{Counters, PairStat};
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// Contributors kept per (category, metric) and per monitor per metric.
    pub top_k: usize,
    pub max_flows_per_agent: usize,
    pub max_flows: usize,
    pub close_grace_ms: u64,
    /// An interval whose records arrive on time (its first record before its end plus this, by
    /// the collector's wall clock) closes this long after its end by that clock, whatever the
    /// other agents do: verdicts are on time. 0: off (watermark and idleness only).
    pub close_after_ms: u64,
    pub idle_close: Duration,
    /// Records this far (data time) behind the closed intervals are still amended in; older
    /// ones are dropped and counted. The collector sets it to the history retention.
    pub max_late_ms: u64,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            top_k: 20,
            max_flows_per_agent: 10_000,
            max_flows: 1_000_000,
            close_grace_ms: 5_000,
            close_after_ms: 2_000,
            idle_close: Duration::from_secs(10),
            max_late_ms: 24 * 3600 * 1000,
        }
    }
}

/// An interval being aggregated, stored as columns: the flow table maps a key to a row, and the
/// sample column is handed to the health stage as is when the interval closes (no copy).
struct OpenInterval {
    end_ms: u64,
    /// Row of each flow id of the current generation ([`NO_ROW`]: none yet).
    by_id: Vec<u32>,
    /// Rows by flow key, built only when the resolver started a new generation of ids while
    /// this interval was open, so that its flows still merge with their old rows.
    by_key: Option<HashMap<FlowKey, u32>>,
    samples: Vec<FlowSample>,
    /// Records merged into each row. A row's other counters are its sample's
    /// (`Counters::of_record` of the merged record equals the sum over the records: every
    /// counter adds saturating, and the RTT sum is clamped per record before it is merged), so
    /// an open interval keeps 4 bytes per row for them instead of a 48-byte `Counters` (issue 16
    /// item 4).
    merged: Vec<u32>,
    /// Monitor membership of each row (a `MonitorSets` id), computed when the flow first
    /// appears (its resolution is then hot in cache).
    masks: Vec<u32>,
    /// Each row's flow id.
    ids: Vec<u32>,
    /// Resolutions of the first rows, taken when the resolver voided the ids they were
    /// added under (see [`Resolutions`]).
    pinned: Vec<Option<Arc<Resolved>>>,
    per_agent: HashMap<u64, usize>,
    categories: [Counters; 6],
    records: u64,
    other_records: u64,
    last_touch: Instant,
    /// Wall-clock time (Unix ms) at which it closes: set when its records arrived on time
    /// (see [`AggregatorConfig::close_after_ms`]).
    deadline_ms: Option<u64>,
    simulated: bool,
    /// An amendment to an interval that already closed: closed for idleness only, not judged.
    late: bool,
}

const NO_ROW: u32 = u32::MAX;

/// Late intervals open at once (see `Aggregator::add`).
const MAX_LATE_OPEN: usize = 64;

/// `r` with its RTT sum clamped as [`Counters::of_record`] clamps it, so that a row's merged
/// record gives the same counters as its records one by one (a hostile record's RTT cannot steer
/// a merged row's mean either).
fn clamp_rtt(mut r: nfm_wire::FlowRecord) -> nfm_wire::FlowRecord {
    r.rtt.sum_us = crate::summary::clamped_rtt_sum(&r.rtt);
    r
}

fn cat_index(c: Category) -> usize {
    Category::ALL.iter().position(|x| *x == c).unwrap_or(5)
}

pub struct Aggregator {
    cfg: AggregatorConfig,
    open: BTreeMap<u64, OpenInterval>,
    /// Latest interval end reported by anyone.
    watermark_ms: u64,
    /// Intervals starting before this are closed; their late records are dropped and counted.
    closed_before_ms: u64,
    /// Highest batch number (`DecodedBatch::n`) aggregated so far: what a summary closed now
    /// holds of its interval (the store keeps it, so replay re-aggregates exactly the rest).
    last_n: u64,
    monitors: Arc<Vec<Monitor>>,
    /// Matches flows to `monitors` (see [`Membership`]).
    membership: Membership,
    /// Flows by the resolver's ids, of generation `generation`.
    table: FlowTable,
    generation: Option<u32>,
    now: Instant,
    /// The collector's wall clock, Unix ms (replaceable in tests).
    wall: fn() -> u64,
    total_flows: usize,
    /// Rows of open late intervals (their own budget, also `max_flows`).
    late_flows: usize,
    /// Emptied flow tables of closed intervals, reused so a new interval does not fault in
    /// fresh pages for a table of 100k flows (a third of the aggregator's time otherwise).
    spare_tables: Vec<Vec<u32>>,
    /// Flows of the last closed interval (initial column capacity).
    last_rows: usize,
    /// Emptied sample vectors the health stage hands back, for the same reason.
    recycle: Option<Receiver<Vec<FlowSample>>>,
    metrics: Arc<Metrics>,
}

impl Aggregator {
    pub fn new(
        cfg: AggregatorConfig,
        monitors: Arc<Vec<Monitor>>,
        closed_before_ms: u64,
        metrics: Arc<Metrics>,
    ) -> Aggregator {
        Aggregator {
            cfg,
            open: BTreeMap::new(),
            watermark_ms: 0,
            closed_before_ms,
            last_n: 0,
            membership: Membership::new(&monitors),
            monitors,
            table: FlowTable::default(),
            generation: None,
            now: Instant::now(),
            wall: crate::now_ms,
            total_flows: 0,
            late_flows: 0,
            spare_tables: Vec::new(),
            last_rows: 0,
            recycle: None,
            metrics,
        }
    }

    /// Reads the wall clock from `f` instead of the system's (tests).
    pub fn with_wall_clock(mut self, f: fn() -> u64) -> Aggregator {
        self.wall = f;
        self
    }

    /// Takes back emptied `ClosedInterval::flows` vectors from the health stage.
    pub fn with_recycling(mut self, rx: Receiver<Vec<FlowSample>>) -> Aggregator {
        self.recycle = Some(rx);
        self
    }

    pub fn set_monitors(&mut self, m: Arc<Vec<Monitor>>) {
        self.membership = Membership::new(&m);
        self.monitors = m;
        for c in &mut self.table.chunks {
            for s in Arc::make_mut(c) {
                s.monitors = NO_SET;
            }
        }
        // Rows already open were matched against the old list (ids: positions in it): match
        // them again, or a deleted or reordered monitor would get another's flows.
        let (membership, table) = (&mut self.membership, &self.table);
        for iv in self.open.values_mut() {
            for row in 0..iv.masks.len() {
                let r = row_resolution(&iv.pinned, &iv.ids, table, row);
                iv.masks[row] = r.map_or(0, |r| membership.of(r));
            }
        }
    }

    pub fn open_intervals(&self) -> usize {
        self.open.len()
    }

    /// Folds batches in; returns the intervals the watermark closed.
    pub fn add(&mut self, msg: ResolvedBatches) -> Vec<ClosedWork> {
        let mismatch =
            self.generation == Some(msg.generation) && msg.first_new as usize != self.table.len();
        if mismatch {
            // Never expected (ids are consecutive per generation): treat the known ids as void
            // like a new generation; ids this message uses without resolving them count as
            // unresolved below.
            log::error!(
                "aggregator: resolver ids start at {} but {} are known",
                msg.first_new,
                self.table.len()
            );
        }
        if self.generation != Some(msg.generation) || mismatch {
            // Every id so far is void. Intervals still open keep their rows, found by key, and
            // pin the resolutions of the rows added under the old ids.
            for iv in self.open.values_mut() {
                for row in iv.pinned.len()..iv.ids.len() {
                    let r = self.table.get(iv.ids[row]).map(|s| s.resolved.clone());
                    iv.pinned.push(r);
                }
                iv.by_id.clear();
                iv.by_key = Some(
                    iv.samples
                        .iter()
                        .enumerate()
                        .map(|(row, f)| (FlowKey::of(&f.record), row as u32))
                        .collect(),
                );
            }
            self.table.clear();
            self.generation = Some(msg.generation);
        }
        if self.table.len() < msg.first_new as usize {
            // After a mismatch: ids the resolver resolved in a message we never saw. Their
            // records still aggregate by key, as unclassified flows.
            let unknown = Arc::new(Resolved::new(
                0,
                &crate::topology::Topology::empty(),
                std::net::Ipv4Addr::UNSPECIFIED.into(),
                std::net::Ipv4Addr::UNSPECIFIED.into(),
            ));
            while self.table.len() < msg.first_new as usize {
                self.table.push(FlowSlot::new(unknown.clone()));
            }
        }
        for r in msg.new {
            self.table.push(FlowSlot::new(r));
        }
        let known = self.table.len();
        let arrived: u64 = msg
            .batches
            .iter()
            .map(|b| b.batch.records.len() as u64)
            .sum();
        let wall = (self.wall)();
        let close_after = self.cfg.close_after_ms;
        for rb in msg.batches {
            let b = rb.batch;
            let late = b.interval_start_ms < self.closed_before_ms;
            if late {
                let n = b.records.len() as u64;
                if b.interval_start_ms.saturating_add(self.cfg.max_late_ms) < self.closed_before_ms
                {
                    self.metrics
                        .too_late_records
                        .fetch_add(n, Ordering::Relaxed);
                    continue;
                }
                self.metrics.late_records.fetch_add(n, Ordering::Relaxed);
            }
            self.watermark_ms = self.watermark_ms.max(b.interval_end_ms);
            self.last_n = self.last_n.max(b.n);
            // Touched now, not at the last Tick: Ticks queue behind batches (and are dropped
            // when the channel is full), so a stale tick would make a busy interval look idle
            // and close it while its other agents' records are still on their way.
            let now = self.now.max(Instant::now());
            let spare = &mut self.spare_tables;
            let recycle = &self.recycle;
            // Columns start at the last interval's size: growing them by doubling faults in
            // fresh pages every interval.
            // A late interval is usually a handful of flows: it starts small, finds its rows by
            // key, and leaves the recycled tables and columns to the on-time intervals.
            let rows = if late { 0 } else { self.last_rows };
            let iv = self
                .open
                .entry(b.interval_start_ms)
                .or_insert_with(|| OpenInterval {
                    end_ms: b.interval_end_ms,
                    by_id: if late {
                        Vec::new()
                    } else {
                        spare.pop().unwrap_or_default()
                    },
                    by_key: late.then(HashMap::default),
                    samples: {
                        let mut v = if late {
                            Vec::new()
                        } else {
                            recycle
                                .as_ref()
                                .and_then(|r| r.try_recv().ok())
                                .unwrap_or_default()
                        };
                        v.reserve(rows);
                        v
                    },
                    merged: Vec::with_capacity(rows),
                    masks: Vec::with_capacity(rows),
                    ids: Vec::with_capacity(rows),
                    pinned: Vec::new(),
                    per_agent: HashMap::default(),
                    categories: Default::default(),
                    records: 0,
                    other_records: 0,
                    last_touch: now,
                    // Live data, arriving while its interval is current: close by the clock.
                    deadline_ms: (!late
                        && close_after > 0
                        && wall <= b.interval_end_ms.saturating_add(close_after))
                    .then(|| b.interval_end_ms.saturating_add(close_after)),
                    simulated: false,
                    late,
                });
            if !iv.late && iv.by_id.len() < known {
                iv.by_id.resize(known, NO_ROW);
            }
            iv.end_ms = iv.end_ms.max(b.interval_end_ms);
            iv.last_touch = now;
            iv.simulated |= b.simulated;
            iv.records += b.records.len() as u64;
            // A batch is one agent's: look its flow count up once.
            let per_agent = iv.per_agent.entry(b.agent_id).or_insert(0);
            for (r, &id) in b.records.iter().zip(&rb.flows) {
                let r = &clamp_rtt(*r);
                let c = Counters::of_record(r);
                let Some(slot) = self.table.get(id) else {
                    iv.categories[cat_index(Category::Unclassified)].add(&c);
                    iv.other_records += 1;
                    self.metrics.capped_records.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                iv.categories[cat_index(slot.category)].add(&c);
                let mut row = iv.by_id.get(id as usize).copied().unwrap_or(NO_ROW);
                if row == NO_ROW {
                    if let Some(&old) = iv.by_key.as_ref().and_then(|m| m.get(&FlowKey::of(r))) {
                        row = old;
                        if let Some(x) = iv.by_id.get_mut(id as usize) {
                            *x = old;
                        }
                    }
                }
                if row != NO_ROW {
                    let row = row as usize;
                    iv.samples[row].record.merge(r);
                    // Pinned at 2^32 - 1 (4 billion records of one flow in one interval): not
                    // reported by `Counters::overflowed`, and out of any agent's reach.
                    iv.merged[row] = iv.merged[row].saturating_add(1);
                    continue;
                }
                // Late intervals have a budget of their own: a resent spool must not push
                // on-time flows into the "other" bucket.
                let budget = if iv.late {
                    &mut self.late_flows
                } else {
                    &mut self.total_flows
                };
                if *per_agent >= self.cfg.max_flows_per_agent || *budget >= self.cfg.max_flows {
                    iv.other_records += 1;
                    self.metrics.capped_records.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                *per_agent += 1;
                *budget += 1;
                let category = slot.category;
                let mask = match slot.monitors {
                    NO_SET => {
                        let m = self.membership.of(&slot.resolved);
                        if let Some(s) = self.table.get_mut(id) {
                            s.monitors = m;
                        }
                        m
                    }
                    m => m,
                };
                let new_row = iv.samples.len() as u32;
                if let Some(x) = iv.by_id.get_mut(id as usize) {
                    *x = new_row;
                }
                if iv.late {
                    if let Some(m) = iv.by_key.as_mut() {
                        m.insert(FlowKey::of(r), new_row);
                    }
                }
                iv.samples.push(FlowSample {
                    agent_id: b.agent_id,
                    record: *r,
                    category,
                    // Filled by the health stage from `ClosedWork::resolved` (see there).
                    path: Vec::new(),
                });
                iv.merged.push(1);
                iv.masks.push(mask);
                iv.ids.push(id);
            }
            self.metrics
                .aggregated_records
                .fetch_add(b.records.len() as u64, Ordering::Relaxed);
        }
        // Off the in-flight count only now that the batches (allocated by ingest and the
        // resolver) are dropped: an actor that sees the pipeline idle and trims (`alloc`) then
        // finds their memory freed.
        crate::metrics::take_off(&self.metrics.records_in_flight, arrived);
        let limit = self.watermark_ms.saturating_sub(self.cfg.close_grace_ms);
        let mut due: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, iv)| iv.end_ms <= limit && !iv.late)
            .map(|(s, _)| *s)
            .collect();
        // At most MAX_LATE_OPEN late intervals stay open (a long outage's spool spans many
        // intervals): beyond that the least recently touched close now.
        let mut late: Vec<(Instant, u64)> = self
            .open
            .iter()
            .filter(|(_, iv)| iv.late)
            .map(|(s, iv)| (iv.last_touch, *s))
            .collect();
        if late.len() > MAX_LATE_OPEN {
            late.sort_unstable();
            due.extend(late[..late.len() - MAX_LATE_OPEN].iter().map(|(_, s)| *s));
        }
        self.close(due)
    }

    /// Advances the clock; returns intervals closed for idleness or because their wall-clock
    /// deadline passed.
    pub fn tick(&mut self, now: Instant) -> Vec<ClosedWork> {
        self.now = now;
        let idle = self.cfg.idle_close;
        let wall = (self.wall)();
        // Records still on their way through ingest and the resolver (a backlog under load)
        // may belong to an interval whose deadline passed: it waits for them, and closes by
        // the watermark or idleness instead, rather than making them late.
        let backlog = self.metrics.records_in_flight.load(Ordering::Relaxed) > 0;
        let due: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, iv)| {
                now.saturating_duration_since(iv.last_touch) >= idle
                    || (!backlog && iv.deadline_ms.is_some_and(|d| wall >= d))
            })
            .map(|(s, _)| *s)
            .collect();
        self.close(due)
    }

    pub fn flush(&mut self) -> Vec<ClosedWork> {
        let all: Vec<u64> = self.open.keys().copied().collect();
        self.close(all)
    }

    fn close(&mut self, starts: Vec<u64>) -> Vec<ClosedWork> {
        let mut out = Vec::new();
        for s in starts {
            let Some(iv) = self.open.remove(&s) else {
                continue;
            };
            if iv.late {
                // Behind the closed mark already: closing one moves nothing (its end may lie
                // past the mark when agents' intervals are not aligned).
                self.late_flows = self.late_flows.saturating_sub(iv.samples.len());
            } else {
                self.total_flows = self.total_flows.saturating_sub(iv.samples.len());
                // Everything before the oldest on-time interval still open (or this one's
                // end) is closed. Late intervals must not hold that mark back.
                let next_open = self.open.iter().find(|(_, iv)| !iv.late).map(|(s, _)| *s);
                self.closed_before_ms = self
                    .closed_before_ms
                    .max(next_open.map(|n| n.min(iv.end_ms)).unwrap_or(iv.end_ms));
            }
            out.push(self.build(s, iv));
        }
        self.metrics
            .open_intervals
            .store(self.open.len() as u64, Ordering::Relaxed);
        out
    }

    fn build(&mut self, start_ms: u64, mut iv: OpenInterval) -> ClosedWork {
        let k = self.cfg.top_k;
        let n = iv.samples.len();
        if !iv.late {
            self.last_rows = n;
        }
        let flows = std::mem::take(&mut iv.samples);
        let counters: Vec<Counters> = flows
            .iter()
            .zip(&iv.merged)
            .map(|(f, &n)| Counters {
                records: n.into(),
                ..Counters::of_record(&f.record)
            })
            .collect();
        let masks = std::mem::take(&mut iv.masks);
        // Pair labels are keyed by their ids and turned into strings only for
        // the pairs kept.
        let resolved = Resolutions {
            pinned: std::mem::take(&mut iv.pinned),
            table: self.table.clone(),
            ids: std::mem::take(&mut iv.ids),
        };
        let pair_key = |i: usize| match resolved.pinned.get(i) {
            Some(r) => r.as_deref().map_or((0, 0), label_key),
            None => resolved
                .table
                .get(resolved.ids[i])
                .map_or((0, 0), |s| s.labels),
        };
        // Top per (category, metric).
        let mut by_cat: [Vec<usize>; 6] = Default::default();
        for (i, f) in flows.iter().enumerate() {
            by_cat[cat_index(f.category)].push(i);
        }
        let mut top = Vec::new();
        for idx in by_cat.iter() {
            top.extend(top_union(idx, &counters, k));
        }
        top.sort_unstable();
        top.dedup();
        // Monitors.
        let nm = self.monitors.len();
        let mut mon_flows: Vec<Vec<usize>> = vec![Vec::new(); nm];
        for (i, &m) in masks.iter().enumerate() {
            for &b in self.membership.sets.get(m) {
                if let Some(f) = mon_flows.get_mut(b as usize) {
                    f.push(i);
                }
            }
        }
        // Totals and resource pairs per distinct monitor set first, then per monitor of each
        // set: one hash probe per flow, not one per flow and monitor it belongs to.
        let mut set_pairs: HashMap<(u32, (u64, u64)), (Counters, usize)> = HashMap::default();
        let mut set_totals: HashMap<u32, Counters> = HashMap::default();
        for (i, &m) in masks.iter().enumerate() {
            if m == 0 {
                continue;
            }
            set_totals.entry(m).or_default().add(&counters[i]);
            let e = set_pairs
                .entry((m, pair_key(i)))
                .or_insert((Counters::default(), i));
            e.0.add(&counters[i]);
        }
        let mut mon_totals = vec![Counters::default(); nm];
        for (set, c) in &set_totals {
            for &m in self.membership.sets.get(*set) {
                if let Some(t) = mon_totals.get_mut(m as usize) {
                    t.add(c);
                }
            }
        }
        // (label ids) -> (counters, a flow of that pair), per monitor.
        let mut mon_pairs: Vec<HashMap<(u64, u64), (Counters, usize)>> =
            (0..nm).map(|_| HashMap::default()).collect();
        for ((set, key), (c, i)) in set_pairs {
            for &m in self.membership.sets.get(set) {
                if let Some(p) = mon_pairs.get_mut(m as usize) {
                    p.entry(key).or_insert((Counters::default(), i)).0.add(&c);
                }
            }
        }
        let monitors = mon_flows
            .into_iter()
            .zip(mon_totals)
            .zip(mon_pairs)
            .enumerate()
            .map(|(mi, ((idx, total), pairs))| {
                let pairs: Vec<(Counters, usize)> = pairs.into_values().collect();
                let pair_counters: Vec<Counters> = pairs.iter().map(|p| p.0).collect();
                let pidx: Vec<usize> = (0..pairs.len()).collect();
                let keep = top_union(&pidx, &pair_counters, k);
                let pk: Vec<PairStat> = keep
                    .iter()
                    .map(|&p| {
                        let (c, i) = pairs[p];
                        PairStat {
                            local: resolved
                                .get(i)
                                .map_or_else(String::new, |r| r.local_label.to_string()),
                            remote: resolved
                                .get(i)
                                .map_or_else(String::new, |r| r.remote_label.to_string()),
                            counters: c,
                        }
                    })
                    .collect();
                let t = top_union(&idx, &counters, k);
                MonitorWork {
                    name: self.monitors[mi].name.clone(),
                    flows: idx,
                    top: t,
                    counters: total,
                    pairs: pk,
                }
            })
            .collect();
        if !iv.late && self.spare_tables.len() < 2 {
            let mut t = std::mem::take(&mut iv.by_id);
            t.clear();
            self.spare_tables.push(t);
        }
        let totals = IntervalTotals {
            start_ms,
            end_ms: iv.end_ms,
            flows: n as u64,
            records: iv.records,
            other_records: iv.other_records,
            categories: Category::ALL
                .iter()
                .zip(iv.categories.iter())
                .filter(|(_, c)| c.records > 0)
                .map(|(c, v)| (*c, *v))
                .collect(),
            simulated: iv.simulated,
        };
        self.metrics
            .closed_intervals
            .fetch_add(1, Ordering::Relaxed);
        ClosedWork {
            interval: ClosedInterval {
                start_ms,
                end_ms: iv.end_ms,
                flows,
            },
            totals,
            top,
            monitors,
            // The WAL may let go of batches before this: not past an amendment still open (its
            // batches are durable only in the WAL until its summary is).
            closed_before_ms: self
                .open
                .iter()
                .filter(|(_, o)| o.late)
                .map(|(s, _)| *s)
                .fold(self.closed_before_ms, u64::min),
            covers_n: self.last_n,
            late: iv.late,
            resolved,
        }
    }

    pub fn run(mut self, rx: Receiver<AggMsg>, out: SyncSender<crate::pipeline::HealthMsg>) {
        use crate::metrics::Chan;
        use crate::pipeline::HealthMsg;
        let mut trims = crate::alloc::IdleTrims::new(crate::alloc::Trimmer::Aggregator);
        while let Ok(m) = rx.recv() {
            self.metrics.received(Chan::Aggregator);
            let (batches, tick) = (
                matches!(m, AggMsg::Batches(_)),
                matches!(m, AggMsg::Tick(_)),
            );
            let closed = match m {
                AggMsg::Batches(b) => self.add(b),
                AggMsg::Monitors(m) => {
                    self.set_monitors(m);
                    Vec::new()
                }
                AggMsg::Tick(t) => self.tick(t),
                AggMsg::Flush => self.flush(),
                AggMsg::Shutdown => break,
            };
            let closed_any = !closed.is_empty();
            for w in closed {
                self.metrics.sent(Chan::Health);
                if out.send(HealthMsg::Closed(Box::new(w))).is_err() {
                    return;
                }
            }
            // Closing an interval frees its columns here too: the next quiet tick trims them.
            // Nothing queued is `pipeline_idle`'s to say (no records in flight).
            trims.after_group(false, batches || closed_any, tick, true, &self.metrics);
        }
    }
}

/// Monitor membership of resolutions against one monitor list: the index, the distinct
/// member sets (a flow keeps a set's id), and buffers reused between flows.
struct Membership {
    index: MonitorIndex,
    sets: MonitorSets,
    buf: (Vec<u32>, Vec<u32>),
}

impl Membership {
    fn new(monitors: &[Monitor]) -> Membership {
        Membership {
            index: MonitorIndex::new(monitors),
            sets: MonitorSets::default(),
            buf: Default::default(),
        }
    }

    /// The set id of the monitors (positions in the list) a resolution belongs to.
    fn of(&mut self, r: &Resolved) -> u32 {
        if self.index.is_empty() {
            return 0;
        }
        let (l, rm) = (r.local.view(r.local_ip), r.remote.view(r.remote_ip));
        let (out, scratch) = &mut self.buf;
        self.index.members(&l, &rm, out, scratch);
        self.sets.intern(out)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::flow_table::CHUNK;
    use crate::resolution::DecodedBatch;
    use crate::resolver::Resolver;
    use crate::summary::Metric;
    use crate::topology::Topology;
    use nfm_wire::FlowRecord;

    const TOPO: &str = include_str!("../examples/topology.toml");

    fn rec(l: &str, r: &str, bytes: u64, retrans: u64) -> FlowRecord {
        let mut x = FlowRecord {
            local: l.parse().unwrap(),
            remote: r.parse().unwrap(),
            remote_port: 443,
            bytes_sent: bytes,
            ..Default::default()
        };
        x.retrans.established = retrans;
        x
    }

    fn setup(cfg: AggregatorConfig, monitors: Vec<Monitor>) -> (Resolver, Aggregator) {
        let t = Arc::new(Topology::parse(TOPO).unwrap());
        let m = Arc::new(Metrics::default());
        (
            Resolver::new(t, 1000, m.clone()),
            Aggregator::new(cfg, Arc::new(monitors), 0, m),
        )
    }

    fn batch(agent: u64, start: u64, records: Vec<FlowRecord>) -> DecodedBatch {
        DecodedBatch {
            agent_id: agent,
            n: 0,
            interval_start_ms: start,
            interval_end_ms: start + 10_000,
            simulated: false,
            records,
        }
    }

    #[test]
    fn test_watermark_closes_and_merges_flows() {
        let mon = crate::monitor::parse_monitors(
            "[[monitor]]\nname=\"app-a\"\nlocal=[\"subnet:subnet-app-a\"]\n",
        )
        .unwrap();
        let (mut res, mut agg) = setup(AggregatorConfig::default(), mon);
        let b = batch(
            1,
            0,
            vec![
                rec("10.0.1.10", "10.0.2.10", 100, 1),
                rec("10.0.1.10", "10.0.2.10", 50, 2),
                rec("10.0.2.10", "198.18.0.1", 7, 0),
            ],
        );
        assert!(agg.add(res.handle(vec![b])).is_empty());
        // An interval ending 4 s after it: within the 5 s grace, still open.
        let mut early = batch(1, 10_000, vec![]);
        early.interval_end_ms = 14_000;
        assert!(agg.add(res.handle(vec![early])).is_empty());
        // Watermark 20 s passes 10 s + 5 s grace: interval 0 closes, 10 s does not.
        let closed = agg.add(res.handle(vec![batch(2, 10_000, vec![])]));
        assert_eq!(closed.len(), 1);
        assert_eq!(agg.open_intervals(), 1);
        let w = &closed[0];
        assert_eq!(w.interval.start_ms, 0);
        assert_eq!(w.interval.flows.len(), 2);
        assert_eq!(w.totals.records, 3);
        let merged = w
            .interval
            .flows
            .iter()
            .find(|f| f.record.remote.to_string() == "10.0.2.10")
            .unwrap();
        assert_eq!(merged.record.bytes_sent, 150);
        assert_eq!(merged.record.retrans.established, 3);
        assert_eq!(w.monitors.len(), 1);
        assert_eq!(w.monitors[0].counters.bytes, 150);
        assert_eq!(w.monitors[0].counters.retransmissions, 3);
        assert_eq!(w.monitors[0].pairs[0].remote, "subnet:subnet-app-b");
        assert_eq!(w.closed_before_ms, 10_000);
        assert!(!w.late);
        // A late record for the closed interval is counted and kept for a late amendment.
        assert!(agg
            .add(res.handle(vec![batch(1, 0, vec![rec("10.0.1.10", "10.0.2.10", 1, 0)])]))
            .is_empty());
        assert_eq!(agg.metrics.late_records.load(Ordering::Relaxed), 1);
        assert_eq!(agg.open_intervals(), 2);
    }

    /// A row keeps only its merged record and a record count: its counters must still be the
    /// sum of its records' counters one by one (a hostile RTT clamped per record, saturated
    /// bytes pinned), as the monitor totals and the category totals (summed per record) say.
    #[test]
    fn test_merged_row_counts_as_its_records() {
        let mon = crate::monitor::parse_monitors(
            "[[monitor]]\nname=\"app-a\"\nlocal=[\"subnet:subnet-app-a\"]\n",
        )
        .unwrap();
        let (mut res, mut agg) = setup(AggregatorConfig::default(), mon);
        let mut a = rec("10.0.1.10", "10.0.2.10", u64::MAX - 5, 1);
        a.rtt.count = 100;
        a.rtt.sum_us = 100 * 2_000;
        // One sample claiming an hour: clamped to MAX_RTT_US before it is merged.
        let mut b = rec("10.0.1.10", "10.0.2.10", 10, 2);
        b.rtt.count = 1;
        b.rtt.sum_us = 3_600_000_000;
        let mut c = rec("10.0.1.10", "10.0.2.10", 1, 0);
        c.bytes_received = 7;
        let one_by_one = [a, b, c].iter().fold(Counters::default(), |mut t, r| {
            t.add(&Counters::of_record(r));
            t
        });
        assert!(agg
            .add(res.handle(vec![batch(1, 0, vec![a, b, c])]))
            .is_empty());
        let closed = agg.flush();
        let w = &closed[0];
        assert_eq!(w.interval.flows.len(), 1);
        assert_eq!(w.monitors[0].counters, one_by_one);
        assert_eq!(w.monitors[0].counters.records, 3);
        assert_eq!(w.monitors[0].counters.bytes, u64::MAX);
        assert_eq!(
            w.monitors[0].counters.rtt_sum_us,
            100 * 2_000 + crate::summary::MAX_RTT_US
        );
        assert_eq!(w.totals.categories[0].1, one_by_one);
        assert_eq!(w.interval.flows[0].record.rtt.sum_us, one_by_one.rtt_sum_us);
    }

    /// Live data closes by the collector's clock `close_after_ms` after its interval's end,
    /// without waiting for the next interval's records; data that arrives long after its
    /// interval (a replay) is left to the watermark and idleness.
    #[test]
    fn test_on_time_interval_closes_by_the_wall_clock() {
        use std::sync::atomic::AtomicU64;
        static WALL: AtomicU64 = AtomicU64::new(0);
        fn wall() -> u64 {
            WALL.load(Ordering::Relaxed)
        }
        let (mut res, agg) = setup(AggregatorConfig::default(), vec![]);
        let mut agg = agg.with_wall_clock(wall);
        let t0 = Instant::now();
        // Interval [100 s, 110 s): its records arrive at 110.3 s, as an agent sends them.
        WALL.store(110_300, Ordering::Relaxed);
        agg.tick(t0);
        agg.add(res.handle(vec![batch(
            1,
            100_000,
            vec![rec("10.0.1.10", "10.0.2.10", 1, 0)],
        )]));
        // An agent whose clock runs 800 ms late reports the same interval at 110.8 s.
        WALL.store(110_800, Ordering::Relaxed);
        assert!(agg.tick(t0 + Duration::from_millis(500)).is_empty());
        agg.add(res.handle(vec![batch(
            2,
            100_000,
            vec![rec("10.0.2.10", "10.0.1.10", 1, 0)],
        )]));
        // 111.9 s: not yet. 112 s = end + 2 s: closed, both agents' records in it, no idle wait
        // and no record of the next interval needed.
        WALL.store(111_900, Ordering::Relaxed);
        assert!(agg.tick(t0 + Duration::from_millis(1_600)).is_empty());
        WALL.store(112_000, Ordering::Relaxed);
        // Records still in flight through ingest and the resolver (a backlog): it waits.
        agg.metrics.records_in_flight.store(3, Ordering::Relaxed);
        assert!(agg.tick(t0 + Duration::from_millis(1_650)).is_empty());
        agg.metrics.records_in_flight.store(0, Ordering::Relaxed);
        let closed = agg.tick(t0 + Duration::from_millis(1_700));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].interval.start_ms, 100_000);
        assert_eq!(closed[0].totals.records, 2);
        // Replayed history (records of an interval that ended long ago) has no deadline: it
        // waits for the watermark or idleness however late the wall clock is.
        WALL.store(500_000, Ordering::Relaxed);
        agg.add(res.handle(vec![batch(
            1,
            200_000,
            vec![rec("10.0.1.10", "10.0.2.10", 1, 0)],
        )]));
        assert!(agg.tick(t0 + Duration::from_millis(2_000)).is_empty());
        assert_eq!(agg.open_intervals(), 1);
        let closed = agg.add(res.handle(vec![batch(1, 220_000, vec![])]));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].interval.start_ms, 200_000);
    }

    /// Late records gather into an amendment that closes for idleness, is marked late, and
    /// never holds back the watermark; records beyond `max_late_ms` are dropped and counted.
    #[test]
    fn test_late_records_become_an_amendment() {
        let cfg = AggregatorConfig {
            max_late_ms: 40_000,
            ..AggregatorConfig::default()
        };
        let (mut res, mut agg) = setup(cfg, vec![]);
        let t0 = Instant::now();
        agg.tick(t0);
        agg.add(res.handle(vec![batch(1, 0, vec![rec("10.0.1.10", "10.0.2.10", 1, 0)])]));
        let closed = agg.add(res.handle(vec![batch(2, 20_000, vec![])]));
        assert_eq!(closed.len(), 1);
        // Two late batches of interval 0 (one agent's spool, resent) ...
        for bytes in [10, 20] {
            let late = batch(1, 0, vec![rec("10.0.1.10", "10.0.2.10", bytes, 1)]);
            assert!(agg.add(res.handle(vec![late])).is_empty());
        }
        // ... while time moves on: the watermark still closes on-time intervals.
        let closed = agg.add(res.handle(vec![batch(2, 40_000, vec![])]));
        assert_eq!(
            closed
                .iter()
                .map(|w| (w.interval.start_ms, w.late))
                .collect::<Vec<_>>(),
            vec![(20_000, false)]
        );
        // Intervals before 30 s are closed, but the WAL keeps interval 0's batches while its
        // amendment is open (they are durable nowhere else yet).
        assert_eq!(agg.closed_before_ms, 30_000);
        assert_eq!(closed[0].closed_before_ms, 0);
        // Once everything before 50 s is closed, interval 0 is more than 40 s behind: records
        // for it are dropped and counted.
        agg.add(res.handle(vec![batch(2, 100_000, vec![])]));
        let ancient = batch(3, 0, vec![rec("10.0.1.11", "10.0.2.10", 5, 0)]);
        agg.add(res.handle(vec![ancient]));
        assert_eq!(agg.metrics.too_late_records.load(Ordering::Relaxed), 1);
        assert_eq!(agg.metrics.late_records.load(Ordering::Relaxed), 2);
        // The amendment closes once idle, with both late batches in one flow.
        let closed = agg.tick(t0 + Duration::from_secs(11));
        let late: Vec<&ClosedWork> = closed.iter().filter(|w| w.late).collect();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].interval.start_ms, 0);
        let flows = &late[0].interval.flows;
        let f = flows
            .iter()
            .find(|f| f.record.local.to_string() == "10.0.1.10")
            .expect("the late flow");
        assert_eq!((f.record.bytes_sent, f.record.retrans.established), (30, 2));
        assert!(late[0].closed_before_ms >= 40_000);
    }

    #[test]
    fn test_idle_tick_closes() {
        let (mut res, mut agg) = setup(AggregatorConfig::default(), vec![]);
        let t0 = Instant::now();
        agg.tick(t0);
        agg.add(res.handle(vec![batch(1, 0, vec![rec("10.0.1.10", "10.0.2.10", 1, 0)])]));
        assert!(agg.tick(t0 + Duration::from_secs(9)).is_empty());
        // Records are touched at the time they are added (a little after t0), not at the last
        // tick: 10 s after that, with a second of margin.
        let c = agg.tick(t0 + Duration::from_secs(11));
        assert_eq!(c.len(), 1);
        assert_eq!(agg.open_intervals(), 0);
    }

    /// A tick that arrives late (queued behind batches, or the ticks between dropped while the
    /// channel was full) does not make an interval whose records just arrived look idle: its
    /// other agents' records may still be queued behind it.
    #[test]
    fn test_stale_tick_does_not_close_a_busy_interval() {
        let cfg = AggregatorConfig {
            idle_close: Duration::from_millis(100),
            ..AggregatorConfig::default()
        };
        let (mut res, mut agg) = setup(cfg, vec![]);
        let stale = Instant::now()
            .checked_sub(Duration::from_millis(500))
            .expect("monotonic clock past 500 ms");
        agg.tick(stale);
        agg.add(res.handle(vec![batch(1, 0, vec![rec("10.0.1.10", "10.0.2.10", 1, 0)])]));
        // 150 ms after the stale tick, but before the records arrived: not idle.
        assert!(agg.tick(stale + Duration::from_millis(150)).is_empty());
        assert_eq!(agg.open_intervals(), 1);
    }

    /// Boundary cases of the per-agent cap: capacity − 1, capacity, over capacity.
    #[test]
    fn test_cardinality_cap_other_bucket() {
        let cfg = AggregatorConfig {
            max_flows_per_agent: 3,
            ..Default::default()
        };
        let (mut res, mut agg) = setup(cfg, vec![]);
        let recs: Vec<FlowRecord> = (0..5)
            .map(|i| rec("10.0.1.10", &format!("10.0.2.{i}"), 10, 0))
            .collect();
        agg.add(res.handle(vec![batch(1, 0, recs)]));
        let c = agg.flush();
        assert_eq!(c[0].interval.flows.len(), 3);
        assert_eq!(c[0].totals.other_records, 2);
        assert_eq!(c[0].totals.records, 5);
        // The category totals still hold every record.
        assert_eq!(c[0].totals.categories[0].1.bytes, 50);
        assert_eq!(agg.metrics.capped_records.load(Ordering::Relaxed), 2);
    }

    /// The resolver voids its ids (tables full, or a topology reload) while an interval is
    /// open: a flow seen before and after still has one row, its deltas summed.
    #[test]
    fn test_new_id_generation_merges_into_open_rows() {
        let t = Arc::new(Topology::parse(TOPO).unwrap());
        let m = Arc::new(Metrics::default());
        let mut res = Resolver::new(t.clone(), 2, m.clone());
        let mut agg = Aggregator::new(AggregatorConfig::default(), Arc::new(vec![]), 0, m.clone());
        let a = rec("10.0.1.10", "10.0.2.10", 100, 1);
        let first = res.handle(vec![batch(1, 0, vec![a])]);
        agg.add(first);
        let more = res.handle(vec![batch(
            2,
            0,
            vec![
                rec("10.0.1.11", "10.0.2.10", 5, 0),
                rec("10.0.1.12", "10.0.2.10", 5, 0),
            ],
        )]);
        assert_eq!(m.resolver_cache_resets.load(Ordering::Relaxed), 1);
        agg.add(more);
        // A topology reload voids the ids again.
        res.set_topology(t);
        agg.add(res.handle(vec![batch(1, 0, vec![a])]));
        let c = agg.flush();
        assert_eq!(c.len(), 1);
        let flows = &c[0].interval.flows;
        assert_eq!(flows.len(), 3, "one row per flow: {flows:?}");
        let row = flows
            .iter()
            .find(|f| f.record.local == a.local)
            .expect("flow a");
        assert_eq!(row.record.bytes_sent, 200);
        assert_eq!(row.record.retrans.established, 2);
        assert_eq!(c[0].totals.records, 4);
        // Each row's resolution is its own flow's, across both generations.
        assert_eq!(c[0].resolved.len(), 3);
        for (i, f) in flows.iter().enumerate() {
            let r = c[0].resolved.get(i).expect("resolved");
            assert_eq!((r.local_ip, r.remote_ip), (f.record.local, f.record.remote));
        }
    }

    /// Monitors deleted or reordered while an interval is open: its rows are matched again,
    /// so no monitor gets another's flows (and a vanished bit never indexes past the list).
    #[test]
    fn test_monitor_change_while_interval_open() {
        let two = crate::monitor::parse_monitors(
            "[[monitor]]\nname=\"a\"\nlocal=[\"subnet:subnet-app-a\"]\n\
             [[monitor]]\nname=\"b\"\nlocal=[\"subnet:subnet-app-b\"]\n",
        )
        .unwrap();
        let (mut res, mut agg) = setup(AggregatorConfig::default(), two.clone());
        agg.add(res.handle(vec![batch(
            1,
            0,
            vec![
                rec("10.0.1.10", "10.0.2.10", 10, 0),
                rec("10.0.2.10", "10.0.1.10", 20, 0),
            ],
        )]));
        // Delete `a`: `b` is now monitor 0.
        agg.set_monitors(Arc::new(vec![two[1].clone()]));
        let c = agg.flush();
        assert_eq!(c[0].monitors.len(), 1);
        assert_eq!(c[0].monitors[0].name, "b");
        assert_eq!(c[0].monitors[0].counters.bytes, 20);
    }

    /// Issue 17 item 3: past 64 monitors (a 64-bit mask kept only the first 64), every monitor
    /// gets its flows, including one by region.
    #[test]
    fn test_more_than_64_monitors() {
        let mut text = String::new();
        for i in 0..200 {
            let local = match i % 3 {
                0 => "subnet:subnet-app-a",
                1 => "subnet:subnet-app-b",
                _ => "region:us-east-1",
            };
            text.push_str(&format!(
                "[[monitor]]\nname=\"m{i}\"\nlocal=[\"{local}\"]\n"
            ));
        }
        let ms = crate::monitor::parse_monitors(&text).unwrap();
        let (mut res, mut agg) = setup(AggregatorConfig::default(), ms);
        agg.add(res.handle(vec![batch(
            1,
            0,
            vec![
                rec("10.0.1.10", "10.0.2.10", 10, 0),
                rec("10.0.2.10", "10.0.1.10", 20, 0),
            ],
        )]));
        let c = agg.flush();
        assert_eq!(c[0].monitors.len(), 200);
        for (i, m) in c[0].monitors.iter().enumerate() {
            let want = [10, 20, 30][i % 3];
            assert_eq!(m.counters.bytes, want, "monitor {i}");
        }
    }

    /// At most MAX_LATE_OPEN late intervals stay open; closing one never moves the closed mark.
    #[test]
    fn test_late_intervals_are_capped_and_keep_the_mark() {
        let (mut res, mut agg) = setup(AggregatorConfig::default(), vec![]);
        let iv = 10_000;
        agg.add(res.handle(vec![batch(
            1,
            100 * iv,
            vec![rec("10.0.1.10", "10.0.2.10", 1, 0)],
        )]));
        let closed = agg.add(res.handle(vec![batch(2, 102 * iv, vec![])]));
        assert_eq!(closed.len(), 1);
        let mark = closed[0].closed_before_ms;
        assert_eq!(mark, 101 * iv);
        // A spool of 80 old intervals, one record each, in one message.
        let old: Vec<DecodedBatch> = (0..80)
            .map(|i| batch(3, i * iv, vec![rec("10.0.1.11", "10.0.2.10", 1, 0)]))
            .collect();
        let closed = agg.add(res.handle(old));
        assert_eq!(closed.len(), 80 - MAX_LATE_OPEN);
        // The mark stays; the WAL checkpoint each carries is held back by the amendments still
        // open.
        assert_eq!(agg.closed_before_ms, mark);
        assert!(closed
            .iter()
            .all(|w| w.late && w.closed_before_ms < 80 * iv));
        assert_eq!(agg.open_intervals(), MAX_LATE_OPEN + 1);
        // Closing the rest (late, with ends past nothing) leaves the mark where it was.
        let rest = agg.flush();
        assert!(rest
            .iter()
            .filter(|w| w.late)
            .all(|w| w.closed_before_ms <= 103 * iv));
        assert_eq!(agg.metrics.late_records.load(Ordering::Relaxed), 80);
    }

    /// A snapshot of the flow table keeps what it saw while the live table grows and changes.
    #[test]
    fn test_flow_table_snapshots_are_stable() {
        let t = Topology::parse(TOPO).unwrap();
        let res = |i: u32| {
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0100 + i));
            Arc::new(Resolved::new(i as u64, &t, ip, ip))
        };
        let mut live = FlowTable::default();
        for i in 0..(CHUNK as u32 + 10) {
            live.push(FlowSlot::new(res(i)));
        }
        let snap = live.clone();
        live.get_mut(3).unwrap().monitors = 7;
        live.push(FlowSlot::new(res(99_999)));
        assert_eq!((snap.len(), live.len()), (CHUNK + 10, CHUNK + 11));
        assert_eq!(snap.get(3).unwrap().monitors, crate::flow_table::NO_SET);
        assert_eq!(live.get(3).unwrap().monitors, 7);
        assert!(snap.get(CHUNK as u32 + 10).is_none());
    }

    #[test]
    fn test_top_union_picks_largest() {
        let c: Vec<Counters> = (0..10u64)
            .map(|i| Counters {
                bytes: i,
                retransmissions: 10 - i,
                ..Default::default()
            })
            .collect();
        let idx: Vec<usize> = (0..10).collect();
        let t = top_union(&idx, &c, 2);
        assert_eq!(t, vec![0, 1, 8, 9]);
    }

    /// The streaming top-k agrees with sorting everything, on pseudo-random counters with
    /// many ties and zeros, for a subset of indices in shuffled order.
    #[test]
    fn test_top_union_matches_full_sort() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let c: Vec<Counters> = (0..5_000)
            .map(|_| Counters {
                bytes: next() % 1_000,
                retransmissions: next() % 7,
                timeouts: (next() % 50 == 0) as u64,
                rtt_sum_us: next() % 100_000,
                rtt_count: next() % 4,
                records: 1,
            })
            .collect();
        let mut idx: Vec<usize> = (0..c.len()).filter(|i| i % 3 != 0).collect();
        idx.reverse();
        for k in [1, 5, 20, 10_000] {
            let got = top_union(&idx, &c, k);
            for m in Metric::ALL {
                let mut vals: Vec<u64> = idx
                    .iter()
                    .map(|&i| c[i].value(m))
                    .filter(|&v| v > 0)
                    .collect();
                vals.sort_unstable_by(|a, b| b.cmp(a));
                let want = k.min(vals.len());
                let Some(&kth) = vals.get(want.saturating_sub(1)) else {
                    continue;
                };
                // Every flow strictly above the k-th value is kept ...
                for &i in &idx {
                    if c[i].value(m) > kth {
                        assert!(got.binary_search(&i).is_ok(), "{m:?} k={k}: {i} missing");
                    }
                }
                // ... and at least k flows (or every positive one) at or above it.
                let kept = got.iter().filter(|&&i| c[i].value(m) >= kth).count();
                assert!(kept >= want, "{m:?} k={k}: {kept} kept, want {want}");
            }
            assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
            assert!(got.len() <= 4 * k, "at most k per metric");
            assert!(got.iter().all(|i| i % 3 != 0), "only from idx");
        }
    }
}
