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

/// The largest RTT one sample can stand for: TCP's retransmission timer tops out at 120 s, so a
/// record whose samples average more is not a measurement, and is clamped so that one record
/// cannot steer a monitor's mean RTT.
pub const MAX_RTT_US: u64 = 120_000_000;

/// An RTT summary's sum with each sample capped at [`MAX_RTT_US`]: the one clamp for counters
/// and for the aggregator's merged records.
pub fn clamped_rtt_sum(rtt: &nfm_wire::RttSummary) -> u64 {
    rtt.sum_us.min(rtt.count.saturating_mul(MAX_RTT_US))
}

impl Counters {
    /// Adds `o`, saturating: values come from untrusted records, and a wrapped total (a record
    /// with 2^64 − 1 bytes made data transferred read 1) is worse than a pinned one. A
    /// saturated counter reads [`Counters::overflowed`].
    pub fn add(&mut self, o: &Counters) {
        let s = |x: &mut u64, y: u64| *x = x.saturating_add(y);
        s(&mut self.bytes, o.bytes);
        s(&mut self.retransmissions, o.retransmissions);
        s(&mut self.timeouts, o.timeouts);
        s(&mut self.rtt_sum_us, o.rtt_sum_us);
        s(&mut self.rtt_count, o.rtt_count);
        s(&mut self.records, o.records);
    }
    /// True when a counter has saturated (pinned at 2^64 − 1): its value is a floor, not a sum.
    pub fn overflowed(&self) -> bool {
        [
            self.bytes,
            self.retransmissions,
            self.timeouts,
            self.rtt_sum_us,
            self.rtt_count,
            self.records,
        ]
        .contains(&u64::MAX)
    }
    pub fn of_record(r: &nfm_wire::FlowRecord) -> Counters {
        Counters {
            bytes: r.bytes_sent.saturating_add(r.bytes_received),
            retransmissions: r.retrans.total(),
            timeouts: r.rto.total(),
            rtt_sum_us: clamped_rtt_sum(&r.rtt),
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

impl IntervalSummary {
    /// Folds in a late amendment: records of this interval that reached the collector after it
    /// had closed (an agent's spool resent after an outage). Totals and counters add; flows
    /// and pairs seen in both merge; the top lists keep the top `k` by each metric again. The
    /// evaluator's verdicts and health indicators stay as they were: late records are counted,
    /// not judged. `flows` adds the amendment's distinct flows, so a flow reported both on time
    /// and late is counted twice there (and only there).
    pub fn absorb(&mut self, late: &IntervalSummary, k: usize) {
        self.end_ms = self.end_ms.max(late.end_ms);
        self.flows = self.flows.saturating_add(late.flows);
        self.records = self.records.saturating_add(late.records);
        self.other_records = self.other_records.saturating_add(late.other_records);
        for (cat, c) in &late.categories {
            match self.categories.iter_mut().find(|(x, _)| x == cat) {
                Some((_, t)) => t.add(c),
                None => self.categories.push((*cat, *c)),
            }
        }
        self.top = merge_flows(std::mem::take(&mut self.top), &late.top, k);
        for lm in &late.monitors {
            match self.monitors.iter_mut().find(|m| m.monitor == lm.monitor) {
                Some(m) => {
                    m.flows = m.flows.saturating_add(lm.flows);
                    m.counters.add(&lm.counters);
                    m.pairs = merge_pairs(std::mem::take(&mut m.pairs), &lm.pairs, k);
                    m.flows_top = merge_flows(std::mem::take(&mut m.flows_top), &lm.flows_top, k);
                }
                None => self.monitors.push(MonitorPoint {
                    health_indicator: None,
                    ..lm.clone()
                }),
            }
        }
        self.simulated |= late.simulated;
    }
}

/// `a` and `b` with flows of the same key merged, cut back to the union of the top `k` by each
/// metric per category, plus every degraded flow.
fn merge_flows(mut a: Vec<TopFlow>, b: &[TopFlow], k: usize) -> Vec<TopFlow> {
    // A flow's key, as the aggregator's (any agent may report it; the first one is named).
    let key = |f: &TopFlow| (f.local, f.remote, f.port, f.server);
    for f in b {
        match a.iter_mut().find(|x| key(x) == key(f)) {
            Some(x) => {
                x.counters.add(&f.counters);
                x.degraded |= f.degraded;
            }
            None => a.push(f.clone()),
        }
    }
    let counters: Vec<Counters> = a.iter().map(|f| f.counters).collect();
    let mut keep: Vec<usize> = (0..a.len()).filter(|&i| a[i].degraded).collect();
    for cat in Category::ALL {
        let idx: Vec<usize> = (0..a.len()).filter(|&i| a[i].category == cat).collect();
        keep.extend(top_union(&idx, &counters, k));
    }
    keep.sort_unstable();
    keep.dedup();
    keep.into_iter().map(|i| a[i].clone()).collect()
}

/// `a` and `b` with equal pairs merged, cut back to the union of the top `k` by each metric.
fn merge_pairs(mut a: Vec<PairStat>, b: &[PairStat], k: usize) -> Vec<PairStat> {
    for p in b {
        match a
            .iter_mut()
            .find(|x| x.local == p.local && x.remote == p.remote)
        {
            Some(x) => x.counters.add(&p.counters),
            None => a.push(p.clone()),
        }
    }
    let counters: Vec<Counters> = a.iter().map(|p| p.counters).collect();
    let idx: Vec<usize> = (0..a.len()).collect();
    top_union(&idx, &counters, k)
        .into_iter()
        .map(|i| a[i].clone())
        .collect()
}

/// Indices (from `idx`) of the top `k` by each metric (values above zero), union, sorted.
///
/// One pass over `idx` keeps four bounded lists, one per metric, each sorted by value
/// descending; an element only costs a comparison against the list's smallest kept value, so
/// this is O(n) with a small constant even for 100k flows (a `select_nth` per metric walked
/// the counters four times through random indices). Ties keep the element seen first.
pub(crate) fn top_union(idx: &[usize], counters: &[Counters], k: usize) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    let mut kept: [Vec<(u64, usize)>; 4] = Default::default();
    for &i in idx {
        let c = &counters[i];
        for (list, m) in kept.iter_mut().zip(Metric::ALL) {
            let v = c.value(m);
            if v == 0 || (list.len() == k && v <= list[k - 1].0) {
                continue;
            }
            // First position whose value is below v: equal values stay ahead (seen first).
            let at = list.partition_point(|&(x, _)| x >= v);
            if list.len() == k {
                list.pop();
            }
            list.insert(at, (v, i));
        }
    }
    let mut out: Vec<usize> = kept.iter().flatten().map(|&(_, i)| i).collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod test {
    use super::*;

    /// Regression (issue 19 item 8): totals wrapped (a record with u64::MAX bytes made data
    /// transferred read 1) and one record could steer the mean RTT.
    #[test]
    fn test_counters_saturate_and_rtt_is_clamped() {
        let mut r = nfm_wire::FlowRecord {
            bytes_sent: u64::MAX,
            ..Default::default()
        };
        let mut total = Counters::of_record(&r);
        assert!(total.overflowed());
        r.bytes_sent = 2;
        total.add(&Counters::of_record(&r));
        assert_eq!(total.bytes, u64::MAX, "pinned, not wrapped");
        assert!(total.overflowed());
        let mut ok = Counters::of_record(&r);
        assert!(!ok.overflowed());
        r.rtt = nfm_wire::RttSummary {
            count: 1,
            sum_us: u64::MAX / 2,
            min_us: 1,
            max_us: 1,
            last_srtt_us: 1,
        };
        let steer = Counters::of_record(&r);
        assert_eq!(steer.rtt_us(), MAX_RTT_US);
        ok.rtt_sum_us = 9 * 1_000;
        ok.rtt_count = 9;
        ok.add(&steer);
        assert!(ok.rtt_us() <= MAX_RTT_US / 10 + 1_000, "{}", ok.rtt_us());
    }

    fn flow(remote: u8, bytes: u64, degraded: bool) -> TopFlow {
        TopFlow {
            agent_id: 1,
            local: "10.0.0.1".parse().unwrap(),
            remote: IpAddr::from([10, 0, 1, remote]),
            port: 443,
            server: false,
            category: Category::InterAz,
            counters: Counters {
                bytes,
                records: 1,
                ..Default::default()
            },
            path: Vec::new(),
            degraded,
        }
    }

    fn pair(remote: &str, bytes: u64) -> PairStat {
        PairStat {
            local: "subnet:a".into(),
            remote: remote.into(),
            counters: Counters {
                bytes,
                records: 1,
                ..Default::default()
            },
        }
    }

    #[test]
    fn test_absorb_adds_totals_merges_flows_keeps_verdicts() {
        let c = |bytes| Counters {
            bytes,
            records: 1,
            ..Default::default()
        };
        let mut on_time = IntervalSummary {
            start_ms: 0,
            end_ms: 10_000,
            flows: 3,
            records: 3,
            categories: vec![(Category::InterAz, c(600))],
            top: vec![flow(1, 100, false), flow(2, 200, true), flow(3, 300, false)],
            monitors: vec![MonitorPoint {
                monitor: "m".into(),
                flows: 3,
                counters: c(600),
                health_indicator: Some(1),
                pairs: vec![pair("subnet:b", 600)],
                flows_top: vec![flow(1, 100, false), flow(2, 200, true)],
            }],
            ..Default::default()
        };
        let late = IntervalSummary {
            start_ms: 0,
            end_ms: 10_000,
            flows: 2,
            records: 2,
            categories: vec![(Category::InterAz, c(1_000)), (Category::Service, c(5))],
            top: vec![flow(1, 1_000, false), flow(9, 5, false)],
            monitors: vec![
                MonitorPoint {
                    monitor: "m".into(),
                    flows: 1,
                    counters: c(1_000),
                    health_indicator: None,
                    pairs: vec![pair("subnet:b", 900), pair("subnet:c", 100)],
                    flows_top: vec![flow(1, 1_000, false)],
                },
                MonitorPoint {
                    monitor: "new".into(),
                    flows: 1,
                    counters: c(5),
                    health_indicator: None,
                    pairs: vec![],
                    flows_top: vec![],
                },
            ],
            ..Default::default()
        };
        on_time.absorb(&late, 2);
        assert_eq!((on_time.flows, on_time.records), (5, 5));
        assert_eq!(
            on_time.categories,
            vec![
                (
                    Category::InterAz,
                    Counters {
                        records: 2,
                        ..c(1_600)
                    }
                ),
                (Category::Service, c(5))
            ]
        );
        // Flow 1 merged (1,100 bytes) and now leads; top 2 by bytes plus the degraded flow 2.
        let bytes: Vec<(u8, u64)> = on_time
            .top
            .iter()
            .map(|f| {
                (
                    f.remote
                        .to_string()
                        .rsplit('.')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap(),
                    f.counters.bytes,
                )
            })
            .collect();
        assert_eq!(bytes, vec![(1, 1_100), (2, 200), (3, 300)]);
        let m = &on_time.monitors[0];
        assert_eq!(
            (m.flows, m.counters.bytes, m.health_indicator),
            (4, 1_600, Some(1))
        );
        assert_eq!(m.pairs.len(), 2);
        assert_eq!(m.pairs[0].counters.bytes, 1_500);
        assert_eq!(m.flows_top[0].counters.bytes, 1_100);
        // A monitor first seen late has no indicator: late records are not judged.
        assert_eq!(on_time.monitors[1].health_indicator, None);
    }
}
