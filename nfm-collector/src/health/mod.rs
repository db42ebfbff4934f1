//! Health evaluator: judges each closed interval's flows against learned per-path baselines and
//! attributes degradation to the smallest set of path components that explains it.
//!
//! IN PROGRESS (issue 7): the API below is the contract the collector's health actor calls;
//! the evaluation itself is being written and returns no verdicts yet.

use crate::model::{ClosedInterval, HealthReport};

/// Thresholds and warm-up rules (documented in docs/health.md).
#[derive(Debug, Clone, Default)]
pub struct HealthConfig {}

/// Owns the baselines; fed one closed interval at a time, in time order.
#[derive(Debug, Default)]
pub struct Evaluator {
    #[allow(dead_code)]
    config: HealthConfig,
}

impl Evaluator {
    pub fn new(config: HealthConfig) -> Evaluator {
        Evaluator { config }
    }

    /// Judges one closed interval. Returns the verdicts for that interval and which flows
    /// (indices into `interval.flows`) were degraded.
    pub fn evaluate(&mut self, interval: &ClosedInterval) -> HealthReport {
        HealthReport {
            interval_start_ms: interval.start_ms,
            verdicts: Vec::new(),
            degraded_flows: Vec::new(),
        }
    }
}

/// HealthIndicator of one monitor for one interval: 1 when a verdict blaming a network
/// component names a component on the path of one of the monitor's degraded flows, else 0.
/// `monitor_flows` are indices into `interval.flows` of the flows the monitor covers.
pub fn monitor_indicator(
    interval: &ClosedInterval,
    report: &HealthReport,
    monitor_flows: &[usize],
) -> u8 {
    use crate::model::Blame;
    let degraded: std::collections::HashSet<usize> =
        report.degraded_flows.iter().copied().collect();
    for &i in monitor_flows {
        if !degraded.contains(&i) {
            continue;
        }
        let Some(flow) = interval.flows.get(i) else {
            continue;
        };
        if report
            .verdicts
            .iter()
            .any(|v| v.blame == Blame::Network && flow.path.contains(&v.component))
        {
            return 1;
        }
    }
    0
}
