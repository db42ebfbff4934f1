//! The health stage: the actor that owns the health evaluator (`crate::health`), feeds it each
//! closed interval in time order, and completes the interval's summary with what it returned:
//! verdicts, degraded flags on top flows, and each monitor's HealthIndicator.
//!
//! Guarantee: every HealthIndicator the collector stores or serves was computed by
//! `health::monitor_indicator` from the evaluator's report for that interval; this stage never
//! invents one.

use crate::health::{monitor_indicator_with, Evaluator, Paths, ResolvedPaths, SamplePaths};
use crate::metrics::Metrics;
use crate::model::{ClosedInterval, HealthReport};
use crate::pipeline::ClosedWork;
use crate::pipeline::HealthMsg;
use crate::pipeline::StoreMsg;
use crate::summary::{Counters, IntervalSummary, MonitorPoint, TopFlow};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

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

/// Completes a closed interval's summary with the evaluator's report.
/// `evaluated`: false when the stage runs without an evaluator; then no indicator is stored.
pub fn complete(w: ClosedWork, report: &HealthReport, evaluated: bool) -> IntervalSummary {
    complete_and_return(w, report, evaluated).0
}

/// [`complete`], also giving back the interval's sample vector for reuse. Paths come from the
/// samples or, where a sample has none, from its resolution (`ClosedWork::resolved`).
pub fn complete_and_return(
    w: ClosedWork,
    report: &HealthReport,
    evaluated: bool,
) -> (IntervalSummary, Vec<crate::model::FlowSample>) {
    let ClosedWork {
        interval,
        mut summary,
        top,
        monitors,
        resolved,
        ..
    } = w;
    let samples = SamplePaths(&interval);
    let resolutions = ResolvedPaths::new(&interval, &resolved);
    let paths: &dyn Paths = match &resolutions {
        Some(p) => p,
        None => &samples,
    };
    let mut degraded = vec![false; interval.flows.len()];
    for &i in &report.degraded_flows {
        if let Some(d) = degraded.get_mut(i) {
            *d = true;
        }
    }
    let is_degraded = |i: usize| degraded.get(i).copied().unwrap_or(false);
    summary.top = top
        .iter()
        .filter_map(|&i| top_flow(&interval, paths, i, &degraded))
        .collect();
    summary.monitors = monitors
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
                health_indicator: evaluated
                    .then(|| indicator(&interval, paths, report, &degraded, &m.flows)),
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
    summary.verdicts = report.verdicts.clone();
    (summary, interval.flows)
}

/// `health::monitor_indicator`'s rule with paths from `paths` and the degraded flags as a mask.
fn indicator<P: Paths + ?Sized>(
    iv: &ClosedInterval,
    paths: &P,
    report: &HealthReport,
    degraded: &[bool],
    monitor_flows: &[usize],
) -> u8 {
    if report
        .verdicts
        .iter()
        .all(|v| v.blame != crate::model::Blame::Network)
    {
        return 0;
    }
    monitor_indicator_with(report, monitor_flows, |i| {
        (i < iv.flows.len() && degraded[i]).then(|| paths.path(i))
    })
}

pub struct HealthStage {
    /// Emptied sample vectors go back to the aggregator for reuse (try_send: never blocks).
    recycle: Option<SyncSender<Vec<crate::model::FlowSample>>>,
    /// `None`: the stage passes intervals through unjudged (benchmark baseline, `--no-health`);
    /// HealthIndicator is then absent, never made up.
    evaluator: Option<Evaluator>,
    metrics: Arc<Metrics>,
}

impl HealthStage {
    pub fn new(evaluator: Option<Evaluator>, metrics: Arc<Metrics>) -> HealthStage {
        HealthStage {
            recycle: None,
            evaluator,
            metrics,
        }
    }

    pub fn with_recycling(mut self, tx: SyncSender<Vec<crate::model::FlowSample>>) -> HealthStage {
        self.recycle = Some(tx);
        self
    }

    pub fn handle(&mut self, w: ClosedWork) -> StoreMsg {
        let closed_before_ms = w.closed_before_ms;
        let t = std::time::Instant::now();
        // Late records are summarized but not judged: the evaluator's baselines and hysteresis
        // have moved past their interval.
        let judge = self.evaluator.as_mut().filter(|_| !w.late);
        let evaluated = judge.is_some();
        let report = match judge {
            // The samples carry no paths: the evaluator reads them from their resolutions.
            Some(e) => match ResolvedPaths::new(&w.interval, &w.resolved) {
                Some(paths) => e.evaluate_paths(&w.interval, &paths),
                None => e.evaluate(&w.interval),
            },
            None => HealthReport {
                interval_start_ms: w.interval.start_ms,
                ..Default::default()
            },
        };
        self.metrics
            .health_eval_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.metrics
            .verdicts
            .fetch_add(report.verdicts.len() as u64, Ordering::Relaxed);
        let (summary, mut flows) = complete_and_return(w, &report, evaluated);
        if let Some(tx) = &self.recycle {
            flows.clear();
            let _ = tx.try_send(flows);
        }
        StoreMsg::Interval {
            summary: Box::new(summary),
            closed_before_ms,
        }
    }

    pub fn run(mut self, rx: Receiver<HealthMsg>, out: SyncSender<StoreMsg>) {
        use crate::metrics::Chan;
        while let Ok(m) = rx.recv() {
            self.metrics.received(Chan::Health);
            match m {
                HealthMsg::Closed(w) => {
                    let msg = self.handle(*w);
                    self.metrics.sent(Chan::Store);
                    if out.send(msg).is_err() {
                        break;
                    }
                }
                HealthMsg::Shutdown => break,
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::{Blame, Category, ComponentId, FlowSample, Verdict};
    use crate::pipeline::MonitorWork;
    fn work() -> ClosedWork {
        let flow = |bytes| FlowSample {
            agent_id: 1,
            record: nfm_wire::FlowRecord {
                bytes_sent: bytes,
                ..Default::default()
            },
            category: Category::IntraAz,
            path: vec!["host:a".parse().unwrap(), "az:x".parse().unwrap()],
        };
        ClosedWork {
            interval: ClosedInterval {
                start_ms: 0,
                end_ms: 10,
                flows: vec![flow(1), flow(2)],
            },
            summary: IntervalSummary::default(),
            top: vec![1],
            monitors: vec![MonitorWork {
                name: "m".into(),
                flows: vec![0, 1],
                top: vec![1],
                counters: Counters::default(),
                pairs: vec![],
            }],
            closed_before_ms: 10,
            resolved: Default::default(),
            late: false,
        }
    }

    /// The current evaluator: indicator 0 from `monitor_indicator`, no verdicts, nothing invented.
    #[test]
    fn test_interval_in_summary_out() {
        let mut h = HealthStage::new(Some(Evaluator::default()), Arc::new(Metrics::default()));
        let StoreMsg::Interval {
            summary,
            closed_before_ms,
        } = h.handle(work())
        else {
            panic!("expected an interval")
        };
        assert_eq!(closed_before_ms, 10);
        assert_eq!(summary.top.len(), 1);
        assert_eq!(summary.top[0].counters.bytes, 2);
        assert_eq!(summary.monitors[0].health_indicator, Some(0));
        assert!(summary.verdicts.is_empty());
    }

    /// Late records (an amendment to a closed interval) are summarized but never judged.
    #[test]
    fn test_late_work_is_not_judged() {
        let mut h = HealthStage::new(Some(Evaluator::default()), Arc::new(Metrics::default()));
        let mut w = work();
        w.late = true;
        let StoreMsg::Interval { summary, .. } = h.handle(w) else {
            panic!("expected an interval")
        };
        assert_eq!(summary.top[0].counters.bytes, 2);
        assert_eq!(summary.monitors[0].health_indicator, None);
        assert!(summary.verdicts.is_empty());
    }

    /// A report blaming a network component on a degraded flow's path sets the indicator and the
    /// degraded flag, and the degraded flow joins the monitor's flows.
    #[test]
    fn test_report_is_carried_into_the_summary() {
        let report = HealthReport {
            interval_start_ms: 0,
            verdicts: vec![Verdict {
                interval_start_ms: 0,
                component: ComponentId::new(crate::model::ComponentKind::Az, "x"),
                blame: Blame::Network,
                confidence: 0.9,
                degraded_flows: 1,
                healthy_flows: 1,
                evidence: vec![],
                first_seen_ms: 0,
            }],
            degraded_flows: vec![0],
        };
        let s = complete(work(), &report, true);
        assert_eq!(s.monitors[0].health_indicator, Some(1));
        assert_eq!(s.monitors[0].flows_top.len(), 2);
        assert!(s.monitors[0].flows_top.iter().any(|f| f.degraded));
        assert_eq!(s.verdicts.len(), 1);
    }

    /// Samples arrive without paths; the stage fills them from the resolutions before judging.
    #[test]
    fn test_paths_filled_from_resolutions() {
        let t =
            crate::topology::Topology::parse(include_str!("../examples/topology.toml")).unwrap();
        let mut w = work();
        for f in &mut w.interval.flows {
            f.path.clear();
        }
        let r = Arc::new(crate::resolution::Resolved::new(
            1,
            &t,
            "10.0.1.10".parse().unwrap(),
            "10.0.2.10".parse().unwrap(),
        ));
        w.resolved = vec![r.clone(), r.clone()].into();
        let mut h = HealthStage::new(Some(Evaluator::default()), Arc::new(Metrics::default()));
        let StoreMsg::Interval { summary, .. } = h.handle(w) else {
            panic!("expected an interval")
        };
        assert_eq!(summary.top[0].path, r.path);
        assert_eq!(summary.top[0].path[0].to_string(), "host:web-1");
    }
}
