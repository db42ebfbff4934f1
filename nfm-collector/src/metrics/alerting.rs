//! Metrics for alerting (issue 15): the counters of webhook notifications and maintenance
//! windows, and the `/metrics` families that alert rules (`deploy/prometheus/nfm-alerts.yml`)
//! read: open incidents by component, silent agents, maintenance in force.

use super::Metrics;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Notification and maintenance counters (relaxed atomics, like the rest of [`Metrics`]).
#[derive(Debug, Default)]
pub struct AlertingMetrics {
    /// Webhook POSTs answered with a 2xx.
    pub notify_sent: AtomicU64,
    /// Webhook attempts that failed (unreachable, timeout, non-2xx).
    pub notify_failed: AtomicU64,
    /// Failed notifications scheduled for another attempt (with back-off).
    pub notify_retried: AtomicU64,
    /// Notifications dropped: the oldest of a full webhook queue, or an event the health stage
    /// could not hand to a notifier that is behind.
    pub notify_dropped_queue: AtomicU64,
    pub notify_dropped_channel: AtomicU64,
    /// Incident events not announced because a maintenance window covered their interval.
    pub notify_suppressed: AtomicU64,
    /// Notifications waiting to be delivered, all webhooks.
    pub notify_queued: AtomicU64,
    /// Closed intervals judged in a maintenance window (not learned into baselines).
    pub maintenance_intervals: AtomicU64,
    /// Failed saves of the agent registry or the maintenance windows.
    pub state_save_errors: AtomicU64,
}

/// An open incident as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenIncident {
    pub component: String,
    pub kind: String,
    pub blame: String,
    pub first_seen_ms: u64,
}

/// A silent agent: no frame for more than three of its intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentAgent {
    pub agent_id: u64,
    pub host_name: String,
    pub last_seen_ms: u64,
}

/// What the API holds for the alerting families.
#[derive(Debug, Default)]
pub struct AlertingView<'a> {
    pub incidents: &'a [OpenIncident],
    pub silent: &'a [SilentAgent],
    /// Agents known (with a session or in the registry).
    pub agents_known: usize,
    pub maintenance_active: bool,
}

/// Per-agent silent series shown at most (the count is exact).
pub const MAX_SILENT_SERIES: usize = 1000;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The alerting families in the Prometheus text format (appended to [`super::render`]).
pub fn render_alerting(m: &Metrics, v: &AlertingView) -> String {
    let a = &m.alerting;
    let mut o = String::new();
    let head = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
    };
    let c = |x: &AtomicU64| x.load(Ordering::Relaxed);
    head(&mut o, "nfm_incident_open", "gauge",
        "1 for each open incident: a component named by the health evaluator, within the hold-down after its last naming.");
    for i in v.incidents {
        let _ = writeln!(
            o,
            "nfm_incident_open{{component=\"{}\",kind=\"{}\",blame=\"{}\",first_seen_ms=\"{}\"}} 1",
            esc(&i.component),
            esc(&i.kind),
            esc(&i.blame),
            i.first_seen_ms
        );
    }
    head(
        &mut o,
        "nfm_agents_silent",
        "gauge",
        "Known agents silent for more than three of their intervals.",
    );
    let _ = writeln!(o, "nfm_agents_silent {}", v.silent.len());
    head(
        &mut o,
        "nfm_agents_known",
        "gauge",
        "Agents known: with a session, or remembered in the agent registry.",
    );
    let _ = writeln!(o, "nfm_agents_known {}", v.agents_known);
    head(
        &mut o,
        "nfm_agent_silent",
        "gauge",
        "1 for each silent agent (at most 1000 series), with its last frame's time.",
    );
    for s in v.silent.iter().take(MAX_SILENT_SERIES) {
        let _ = writeln!(
            o,
            "nfm_agent_silent{{agent_id=\"{}\",host=\"{}\"}} 1",
            s.agent_id,
            esc(&s.host_name)
        );
    }
    head(
        &mut o,
        "nfm_agent_last_seen_timestamp_seconds",
        "gauge",
        "Last frame of each silent agent (at most 1000 series), Unix seconds.",
    );
    for s in v.silent.iter().take(MAX_SILENT_SERIES) {
        let _ = writeln!(
            o,
            "nfm_agent_last_seen_timestamp_seconds{{agent_id=\"{}\",host=\"{}\"}} {:.3}",
            s.agent_id,
            esc(&s.host_name),
            s.last_seen_ms as f64 / 1e3
        );
    }
    head(
        &mut o,
        "nfm_maintenance_active",
        "gauge",
        "1 while a maintenance window is in force.",
    );
    let _ = writeln!(
        o,
        "nfm_maintenance_active {}",
        u8::from(v.maintenance_active)
    );
    head(
        &mut o,
        "nfm_maintenance_intervals_total",
        "counter",
        "Closed intervals judged inside a maintenance window (not learned into baselines).",
    );
    let _ = writeln!(
        o,
        "nfm_maintenance_intervals_total {}",
        c(&a.maintenance_intervals)
    );
    head(
        &mut o,
        "nfm_notifications_sent_total",
        "counter",
        "Webhook notifications delivered (2xx).",
    );
    let _ = writeln!(o, "nfm_notifications_sent_total {}", c(&a.notify_sent));
    head(
        &mut o,
        "nfm_notifications_failed_total",
        "counter",
        "Webhook attempts that failed (unreachable, timeout, non-2xx).",
    );
    let _ = writeln!(o, "nfm_notifications_failed_total {}", c(&a.notify_failed));
    head(
        &mut o,
        "nfm_notifications_retried_total",
        "counter",
        "Failed webhook notifications scheduled for another attempt.",
    );
    let _ = writeln!(
        o,
        "nfm_notifications_retried_total {}",
        c(&a.notify_retried)
    );
    head(&mut o, "nfm_notifications_dropped_total", "counter",
        "Notifications dropped: the oldest of a full webhook queue (queue_full), or an event the notifier was too far behind to take (channel_full).");
    let _ = writeln!(
        o,
        "nfm_notifications_dropped_total{{reason=\"queue_full\"}} {}",
        c(&a.notify_dropped_queue)
    );
    let _ = writeln!(
        o,
        "nfm_notifications_dropped_total{{reason=\"channel_full\"}} {}",
        c(&a.notify_dropped_channel)
    );
    head(
        &mut o,
        "nfm_notifications_suppressed_total",
        "counter",
        "Incident notifications not sent because a maintenance window was in force.",
    );
    let _ = writeln!(
        o,
        "nfm_notifications_suppressed_total {}",
        c(&a.notify_suppressed)
    );
    head(
        &mut o,
        "nfm_notifications_queued",
        "gauge",
        "Webhook notifications waiting to be delivered.",
    );
    let _ = writeln!(o, "nfm_notifications_queued {}", c(&a.notify_queued));
    head(
        &mut o,
        "nfm_state_save_errors_total",
        "counter",
        "Failed saves of the agent registry or the maintenance windows.",
    );
    let _ = writeln!(o, "nfm_state_save_errors_total {}", c(&a.state_save_errors));
    o
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_families_render_with_labels() {
        let m = Metrics::default();
        m.alerting.notify_sent.fetch_add(2, Ordering::Relaxed);
        let inc = [OpenIncident {
            component: "az-pair:a|b".into(),
            kind: "az-pair".into(),
            blame: "network".into(),
            first_seen_ms: 5,
        }];
        let silent = [SilentAgent {
            agent_id: 7,
            host_name: "web-\"1".into(),
            last_seen_ms: 1500,
        }];
        let text = render_alerting(
            &m,
            &AlertingView {
                incidents: &inc,
                silent: &silent,
                agents_known: 3,
                maintenance_active: true,
            },
        );
        assert!(text.contains(
            "nfm_incident_open{component=\"az-pair:a|b\",kind=\"az-pair\",blame=\"network\",first_seen_ms=\"5\"} 1"
        ));
        assert!(text.contains("nfm_agent_silent{agent_id=\"7\",host=\"web-\\\"1\"} 1"));
        assert!(text.contains(
            "nfm_agent_last_seen_timestamp_seconds{agent_id=\"7\",host=\"web-\\\"1\"} 1.500"
        ));
        assert!(text.contains("nfm_agents_silent 1\n"));
        assert!(text.contains("nfm_maintenance_active 1\n"));
        assert!(text.contains("nfm_notifications_sent_total 2\n"));
    }
}
