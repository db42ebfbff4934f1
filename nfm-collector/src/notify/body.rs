//! Notification bodies: the generic JSON document (docs/collector.md, "Notifications") and a
//! Slack incoming-webhook message, both carrying the incident's evidence: component and kind,
//! first seen, degraded against healthy flows, baseline against observed, a dashboard link.

use crate::model::Blame;
use crate::pipeline::{IncidentEvent, IncidentState};
use serde_json::json;

/// RFC 3339 UTC time of Unix ms.
fn rfc3339(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// The dashboard view of the incident's time (from 5 minutes before it was first seen to 5
/// minutes after the event).
fn link(base: Option<&str>, e: &IncidentEvent) -> Option<String> {
    let base = base?.trim_end_matches('/');
    let from = e.first_seen_ms.saturating_sub(300_000);
    let to = e.at_ms.saturating_add(300_000);
    Some(format!("{base}/#/?from={from}&to={to}"))
}

fn state(e: &IncidentEvent) -> &'static str {
    match e.state {
        IncidentState::Opened => "opened",
        IncidentState::Resolved => "resolved",
    }
}

/// The generic JSON body.
pub fn json_body(e: &IncidentEvent, dashboard: Option<&str>) -> Vec<u8> {
    let v = &e.verdict;
    let resolved = e.state == IncidentState::Resolved;
    let body = json!({
        "source": "nfm-collector",
        "event": format!("incident.{}", state(e)),
        "state": state(e),
        "incident": {
            "component": v.component.to_string(),
            "kind": v.component.kind,
            "blame": v.blame,
            "first_seen_ms": e.first_seen_ms,
            "first_seen": rfc3339(e.first_seen_ms),
            "last_named_ms": e.last_named_ms,
            "resolved_ms": resolved.then_some(e.at_ms),
            "resolved": resolved.then(|| rfc3339(e.at_ms)),
            "intervals_named": e.intervals_named,
            "confidence": v.confidence,
            "degraded_flows": v.degraded_flows,
            "healthy_flows": v.healthy_flows,
            "evidence": v.evidence,
            "simulated": e.simulated,
        },
        "dashboard_url": link(dashboard, e),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// One evidence line for people: `retrans_rate: baseline 0.10 % → observed 3.05 %`.
fn evidence_line(metric: &str, baseline: f64, observed: f64) -> String {
    match metric {
        "rtt_us" => format!(
            "RTT: baseline {:.2} ms → observed {:.2} ms",
            baseline / 1e3,
            observed / 1e3
        ),
        "flaps" => format!("flaps: {observed:.0}"),
        m if m.ends_with("_rate") => format!(
            "{m}: baseline {:.2} % → observed {:.2} %",
            baseline * 100.0,
            observed * 100.0
        ),
        m => format!("{m}: baseline {baseline} → observed {observed}"),
    }
}

/// A Slack incoming-webhook message (`text` for notifications, `blocks` for the channel).
pub fn slack_body(e: &IncidentEvent, dashboard: Option<&str>) -> Vec<u8> {
    let v = &e.verdict;
    let who = match v.blame {
        Blame::Network => "network component",
        Blame::Endpoint => "endpoint",
    };
    let head = match e.state {
        IncidentState::Opened => format!(
            ":red_circle: *nfm incident opened*: {who} `{}` is degraded",
            v.component
        ),
        IncidentState::Resolved => format!(
            ":large_green_circle: *nfm incident resolved*: {who} `{}` (resolved {})",
            v.component,
            rfc3339(e.at_ms)
        ),
    };
    let mut text = format!(
        "{head}\nFirst seen {} · named in {} interval(s) · {} degraded vs {} healthy flows · confidence {:.0} %",
        rfc3339(e.first_seen_ms),
        e.intervals_named,
        v.degraded_flows,
        v.healthy_flows,
        v.confidence * 100.0
    );
    for c in &v.evidence {
        text.push('\n');
        text.push_str(&evidence_line(&c.metric, c.baseline, c.observed));
    }
    if e.simulated {
        text.push_str("\n(simulated traffic)");
    }
    if let Some(l) = link(dashboard, e) {
        text.push_str(&format!("\n<{l}|Open in the nfm dashboard>"));
    }
    let body = json!({
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::{MetricChange, Verdict};

    fn event(state: IncidentState) -> IncidentEvent {
        IncidentEvent {
            state,
            first_seen_ms: 1_764_000_000_000,
            last_named_ms: 1_764_000_010_000,
            at_ms: 1_764_000_030_000,
            intervals_named: 3,
            verdict: Verdict {
                interval_start_ms: 1_764_000_010_000,
                component: "az-pair:use1-az1|use1-az2".parse().unwrap(),
                blame: Blame::Network,
                confidence: 0.93,
                degraded_flows: 12,
                healthy_flows: 2,
                evidence: vec![MetricChange {
                    metric: "retrans_rate".into(),
                    baseline: 0.001,
                    observed: 0.0305,
                }],
                first_seen_ms: 1_764_000_000_000,
            },
            simulated: false,
        }
    }

    #[test]
    fn test_json_body_carries_the_evidence() {
        let b = json_body(&event(IncidentState::Opened), Some("http://nfm:8080/"));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["event"], "incident.opened");
        let i = &v["incident"];
        assert_eq!(i["component"], "az-pair:use1-az1|use1-az2");
        assert_eq!(i["kind"], "az-pair");
        assert_eq!(i["blame"], "network");
        assert_eq!(i["first_seen"], "2025-11-24T16:00:00Z");
        assert_eq!(i["degraded_flows"], 12);
        assert_eq!(i["healthy_flows"], 2);
        assert_eq!(i["evidence"][0]["metric"], "retrans_rate");
        assert_eq!(i["evidence"][0]["observed"], 0.0305);
        assert!(i["resolved_ms"].is_null());
        assert_eq!(
            v["dashboard_url"],
            "http://nfm:8080/#/?from=1763999700000&to=1764000330000"
        );
        let b = json_body(&event(IncidentState::Resolved), None);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["incident"]["resolved_ms"], 1_764_000_030_000u64);
        assert!(v["dashboard_url"].is_null());
    }

    #[test]
    fn test_slack_body() {
        let b = slack_body(&event(IncidentState::Opened), Some("http://nfm:8080"));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let t = v["text"].as_str().unwrap();
        assert!(t.contains("*nfm incident opened*"), "{t}");
        assert!(t.contains("`az-pair:use1-az1|use1-az2`"), "{t}");
        assert!(t.contains("12 degraded vs 2 healthy flows"), "{t}");
        assert!(
            t.contains("retrans_rate: baseline 0.10 % → observed 3.05 %"),
            "{t}"
        );
        assert!(t.contains("First seen 2025-11-24T16:00:00Z"), "{t}");
        assert!(t.contains("<http://nfm:8080/#/?from="), "{t}");
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
        assert_eq!(v["blocks"][0]["text"]["text"], t);
    }
}
