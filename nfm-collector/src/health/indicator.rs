//! A monitor's HealthIndicator from an interval's report: 1 when the network is blamed for one
//! of the monitor's degraded flows (docs/health.md §5).

use crate::model::{Blame, ClosedInterval, ComponentId, HealthReport};

/// HealthIndicator of one monitor for one interval: 1 when a verdict blaming a network
/// component names a component on the path of one of the monitor's degraded flows, else 0.
/// `monitor_flows` are indices into `interval.flows` of the flows the monitor covers.
pub fn monitor_indicator(
    interval: &ClosedInterval,
    report: &HealthReport,
    monitor_flows: &[usize],
) -> u8 {
    let degraded: std::collections::HashSet<usize> =
        report.degraded_flows.iter().copied().collect();
    monitor_indicator_with(report, monitor_flows, |i| {
        if !degraded.contains(&i) {
            return None;
        }
        interval.flows.get(i).map(|f| f.path.as_slice())
    })
}

/// [`monitor_indicator`] with `degraded_path(i)`: flow `i`'s path when it is a degraded flow
/// of the interval, else `None`.
pub fn monitor_indicator_with<'p>(
    report: &HealthReport,
    monitor_flows: &[usize],
    degraded_path: impl Fn(usize) -> Option<&'p [ComponentId]>,
) -> u8 {
    for &i in monitor_flows {
        let Some(path) = degraded_path(i) else {
            continue;
        };
        if report
            .verdicts
            .iter()
            .any(|v| v.blame == Blame::Network && path.contains(&v.component))
        {
            return 1;
        }
    }
    0
}
