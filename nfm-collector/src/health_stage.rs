//! The health stage: the actor that owns the health evaluator (`crate::health`), feeds it each
//! closed interval in time order, and completes the interval's summary with what it returned:
//! verdicts, degraded flags on top flows, and each monitor's HealthIndicator.
//!
//! Guarantee: every HealthIndicator the collector stores or serves was computed by
//! `health::monitor_indicator` from the evaluator's report for that interval; this stage never
//! invents one.

use crate::health::{Evaluator, ResolvedPaths};
use crate::incidents::Tracker;
use crate::interval::{summarize, ClosedWork};
use crate::maintenance::Windows;
use crate::metrics::Metrics;
use crate::model::HealthReport;
use crate::pipeline::HealthMsg;
use crate::pipeline::NotifyMsg;
use crate::pipeline::StoreMsg;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

/// An idle stage frees its evaluation scratch after this long without an interval: longer than
/// the gap between intervals under load, shorter than the product's 5 s interval.
pub const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

pub struct HealthStage {
    /// Emptied sample vectors go back to the aggregator for reuse (try_send: never blocks).
    recycle: Option<SyncSender<Vec<crate::model::FlowSample>>>,
    /// `None`: the stage passes intervals through unjudged (benchmark baseline, `--no-health`);
    /// HealthIndicator is then absent, never made up.
    evaluator: Option<Evaluator>,
    metrics: Arc<Metrics>,
    /// Issue 15: incident open/resolve events to the notifier (try_send: never blocks), the
    /// tracker that finds them, and the maintenance windows in force.
    notify: Option<SyncSender<NotifyMsg>>,
    incidents: Tracker,
    maintenance: Arc<Windows>,
}

impl HealthStage {
    pub fn new(evaluator: Option<Evaluator>, metrics: Arc<Metrics>) -> HealthStage {
        HealthStage {
            recycle: None,
            evaluator,
            metrics,
            notify: None,
            incidents: Tracker::default(),
            maintenance: Arc::default(),
        }
    }

    /// Issue 15: sends incident open/resolve events to the notifier; the announced open
    /// incidents are kept in `state` (`DATA_DIR/incidents.json`) across restarts.
    pub fn with_notify(
        mut self,
        tx: SyncSender<NotifyMsg>,
        state: Option<std::path::PathBuf>,
    ) -> HealthStage {
        self.notify = Some(tx);
        if let Some(p) = state {
            self.incidents = Tracker::persistent(p);
        }
        self
    }

    /// Issue 15: the maintenance windows in force (later changes come as messages).
    pub fn with_maintenance(mut self, w: Arc<Windows>) -> HealthStage {
        self.maintenance = w;
        self
    }

    pub fn with_recycling(mut self, tx: SyncSender<Vec<crate::model::FlowSample>>) -> HealthStage {
        self.recycle = Some(tx);
        self
    }

    pub fn handle(&mut self, w: ClosedWork) -> StoreMsg {
        let (closed_before_ms, covers_n) = (w.closed_before_ms, w.covers_n);
        let t = std::time::Instant::now();
        // Late records are summarized but not judged: the evaluator's baselines and hysteresis
        // have moved past their interval.
        let mut judge = self.evaluator.as_mut().filter(|_| !w.late);
        let evaluated = judge.is_some();
        // Issue 15: intervals in a maintenance window are judged but not learned from.
        let (start_ms, end_ms) = (w.interval.start_ms, w.interval.end_ms);
        let in_maintenance = self.maintenance.covers(start_ms, end_ms);
        if let Some(e) = judge.as_mut() {
            e.set_learning(!in_maintenance);
            if in_maintenance {
                let a = &self.metrics.alerting;
                a.maintenance_intervals.fetch_add(1, Ordering::Relaxed);
            }
        }
        let hold_down = judge
            .as_ref()
            .map_or_else(Default::default, |e| e.config().incident_hold_down);
        let (report, open) = match judge {
            // Paths are the rows' resolutions (the closed-interval contract).
            Some(e) => (
                e.evaluate_paths(&w.interval, &ResolvedPaths::of_rows(&w.resolved)),
                e.open_network_incidents(),
            ),
            None => (
                HealthReport {
                    interval_start_ms: w.interval.start_ms,
                    ..Default::default()
                },
                Vec::new(),
            ),
        };
        self.metrics
            .health_eval_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.metrics
            .verdicts
            .fetch_add(report.verdicts.len() as u64, Ordering::Relaxed);
        if evaluated {
            self.announce(&report, start_ms, end_ms, hold_down, in_maintenance, &w);
        }
        let (summary, mut flows) = summarize(w, &report, evaluated, &open);
        if let Some(tx) = &self.recycle {
            flows.clear();
            let _ = tx.try_send(flows);
        }
        StoreMsg::Interval {
            summary: Box::new(summary),
            closed_before_ms,
            covers_n,
        }
    }

    /// Issue 15: incident events of a judged interval to the notifier, if there is one.
    fn announce(
        &mut self,
        report: &HealthReport,
        start_ms: u64,
        end_ms: u64,
        hold_down: crate::model::HoldDown,
        in_maintenance: bool,
        w: &ClosedWork,
    ) {
        let Some(tx) = &self.notify else {
            return;
        };
        let a = &self.metrics.alerting;
        let before = self.incidents.suppressed;
        let events = self.incidents.update(
            start_ms,
            end_ms,
            &report.verdicts,
            hold_down,
            in_maintenance,
            w.totals.simulated,
        );
        a.notify_suppressed
            .fetch_add(self.incidents.suppressed - before, Ordering::Relaxed);
        if self.incidents.save_failed {
            a.state_save_errors.fetch_add(1, Ordering::Relaxed);
        }
        for e in events {
            if tx.try_send(NotifyMsg::Incident(Box::new(e))).is_err() {
                a.notify_dropped_channel.fetch_add(1, Ordering::Relaxed);
                log::warn!("notify: the notifier is behind; an incident event was dropped");
            }
        }
    }

    /// Runs until shutdown. An interval's vectors are kept for the next one (under load they
    /// are reused at once) and freed once no interval has come for [`IDLE_RELEASE`] and the
    /// pipeline has caught up (issue 16 item 4: an idle collector holds no evaluation scratch).
    pub fn run(mut self, rx: Receiver<HealthMsg>, out: SyncSender<StoreMsg>) {
        use crate::metrics::Chan;
        use std::sync::mpsc::RecvTimeoutError;
        // An interval's scratch is held until the stage has been idle for `IDLE_RELEASE`.
        let mut held = false;
        loop {
            let m = match rx.recv_timeout(IDLE_RELEASE) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    // Idle: what the intervals needed goes back to the kernel (this thread's
                    // free pages are trimmed only from here).
                    if held && crate::alloc::pipeline_idle(&self.metrics) {
                        if let Some(e) = self.evaluator.as_mut() {
                            e.release_scratch();
                        }
                        held = !crate::alloc::trim_when_idle(
                            true,
                            crate::alloc::Trimmer::Health,
                            &self.metrics,
                        );
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.metrics.received(Chan::Health);
            match m {
                HealthMsg::Closed(w) => {
                    let msg = self.handle(*w);
                    held = true;
                    self.metrics.sent(Chan::Store);
                    if out.send(msg).is_err() {
                        break;
                    }
                }
                HealthMsg::Maintenance(w) => self.maintenance = w,
                HealthMsg::Shutdown => break,
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::interval::MonitorWork;
    use crate::model::ClosedInterval;
    use crate::model::{Blame, Category, ComponentId, FlowSample, Verdict};
    use crate::summary::Counters;
    fn work() -> ClosedWork {
        let flow = |bytes| FlowSample {
            agent_id: 1,
            record: nfm_wire::FlowRecord {
                bytes_sent: bytes,
                ..Default::default()
            },
            category: Category::IntraAz,
            path: vec![],
        };
        // Both rows resolve to one address pair whose path is host:a, az:x.
        let t =
            crate::topology::Topology::parse(include_str!("../examples/topology.toml")).unwrap();
        let mut r = crate::resolution::Resolved::new(
            1,
            &t,
            "10.0.1.10".parse().unwrap(),
            "10.0.2.10".parse().unwrap(),
        );
        r.path = vec!["host:a".parse().unwrap(), "az:x".parse().unwrap()];
        let r = Arc::new(r);
        ClosedWork {
            interval: ClosedInterval {
                start_ms: 0,
                end_ms: 10,
                flows: vec![flow(1), flow(2)],
            },
            totals: crate::interval::IntervalTotals::default(),
            top: vec![1],
            monitors: vec![MonitorWork {
                name: "m".into(),
                flows: vec![0, 1],
                top: vec![1],
                counters: Counters::default(),
                pairs: vec![],
            }],
            closed_before_ms: 10,
            covers_n: 7,
            resolved: vec![r.clone(), r].into(),
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
            covers_n,
        } = h.handle(work())
        else {
            panic!("expected an interval")
        };
        assert_eq!((closed_before_ms, covers_n), (10, 7));
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
        let s = summarize(work(), &report, true, &[]).0;
        assert_eq!(s.monitors[0].health_indicator, Some(1));
        assert_eq!(s.monitors[0].flows_top.len(), 2);
        assert!(s.monitors[0].flows_top.iter().any(|f| f.degraded));
        assert_eq!(s.verdicts.len(), 1);
    }

    /// A flap's good interval: no verdict and nothing degraded, but an open network incident
    /// on the path of the monitor's flows keeps its HealthIndicator raised; an incident
    /// elsewhere, or none, does not.
    #[test]
    fn test_open_incident_keeps_the_indicator_through_a_flap() {
        let quiet = HealthReport::default();
        let az = ComponentId::new(crate::model::ComponentKind::Az, "x");
        let other = ComponentId::new(crate::model::ComponentKind::Az, "y");
        let hi = |open: &[ComponentId]| {
            summarize(work(), &quiet, true, open).0.monitors[0].health_indicator
        };
        assert_eq!(hi(&[az]), Some(1));
        assert_eq!(hi(&[other]), Some(0));
        assert_eq!(hi(&[]), Some(0));
        // Not evaluated: no indicator at all.
        assert_eq!(
            summarize(work(), &quiet, false, &[]).0.monitors[0].health_indicator,
            None
        );
    }

    /// Issue 15: an interval in a maintenance window is judged but not learned into baselines
    /// (and counted); after the window, intervals are learned again.
    #[test]
    fn test_maintenance_intervals_are_not_learned() {
        let m = Arc::new(Metrics::default());
        let mut windows = crate::maintenance::Windows::default();
        let new = crate::maintenance::NewWindow {
            start_ms: Some(0),
            end_ms: Some(10),
            ..Default::default()
        };
        windows.add(new, 0).unwrap();
        let mut h = HealthStage::new(Some(Evaluator::default()), m.clone())
            .with_maintenance(Arc::new(windows));
        let paths = |h: &HealthStage| h.evaluator.as_ref().unwrap().stats().paths;
        let StoreMsg::Interval { summary, .. } = h.handle(work()) else {
            panic!("expected an interval")
        };
        assert_eq!(
            summary.monitors[0].health_indicator,
            Some(0),
            "still judged"
        );
        assert_eq!(paths(&h), 0, "nothing learned in the window");
        assert_eq!(m.alerting.maintenance_intervals.load(Ordering::Relaxed), 1);
        let mut later = work();
        later.interval.start_ms = 10;
        later.interval.end_ms = 20;
        h.handle(later);
        assert!(paths(&h) > 0, "learned after the window");
        assert_eq!(m.alerting.maintenance_intervals.load(Ordering::Relaxed), 1);
    }

    /// Samples carry no paths; each row's path is its resolution's, in the evaluator's input and
    /// in the summary.
    #[test]
    fn test_paths_come_from_resolutions() {
        let t =
            crate::topology::Topology::parse(include_str!("../examples/topology.toml")).unwrap();
        let mut w = work();
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
