//! `/metrics`: renders the collector's counters (this module's [`Metrics`]), the per-monitor
//! totals and ingest's per-agent snapshot in the Prometheus text format. Next to the counters so
//! that a new counter and its exposition are written in one place.

use super::{Chan, Metrics};
use crate::pipeline::IngestSnapshot;
use crate::summary::Counters;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// Running totals per monitor for `/metrics` counters.
#[derive(Debug, Default, Clone)]
pub struct MonitorTotals {
    pub counters: Counters,
    pub last_rtt_us: Option<u64>,
    pub last_indicator: Option<u8>,
}

pub fn render(
    m: &Metrics,
    monitor_names: &[&String],
    totals: &HashMap<String, MonitorTotals>,
    ingest: &IngestSnapshot,
) -> String {
    let mut o = String::new();
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let family =
        |o: &mut String, name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                if labels.is_empty() {
                    let _ = writeln!(o, "{name} {v}");
                } else {
                    let _ = writeln!(o, "{name}{{{labels}}} {v}");
                }
            }
        };
    let names = monitor_names;
    let per_mon = |f: &dyn Fn(&MonitorTotals) -> Option<String>| -> Vec<(String, String)> {
        names
            .iter()
            .filter_map(|n| {
                let t = totals.get(*n).cloned().unwrap_or_default();
                f(&t).map(|v| (format!("monitor=\"{}\"", esc(n)), v))
            })
            .collect()
    };
    family(
        &mut o,
        "nfm_monitor_data_transferred_bytes_total",
        "counter",
        "Bytes sent and received by the monitor's flows, over closed intervals.",
        per_mon(&|t| Some(t.counters.bytes.to_string())),
    );
    family(
        &mut o,
        "nfm_monitor_retransmissions_total",
        "counter",
        "TCP retransmissions of the monitor's flows.",
        per_mon(&|t| Some(t.counters.retransmissions.to_string())),
    );
    family(
        &mut o,
        "nfm_monitor_timeouts_total",
        "counter",
        "TCP retransmission timeouts of the monitor's flows.",
        per_mon(&|t| Some(t.counters.timeouts.to_string())),
    );
    family(
        &mut o,
        "nfm_monitor_round_trip_time_seconds",
        "gauge",
        "Mean RTT of the monitor's flows in the latest closed interval with samples.",
        per_mon(&|t| t.last_rtt_us.map(|v| format!("{:.6}", v as f64 / 1e6))),
    );
    family(&mut o, "nfm_monitor_health_indicator", "gauge",
        "Network Health Indicator of the latest closed interval (1 = a network component is degraded), as the health evaluator reported it.",
        per_mon(&|t| t.last_indicator.map(|v| v.to_string())));
    let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
    family(
        &mut o,
        "nfm_frames_received_total",
        "counter",
        "Frames received, by transport.",
        vec![
            ("transport=\"udp\"".into(), c(&m.frames_udp)),
            ("transport=\"tcp\"".into(), c(&m.frames_tcp)),
        ],
    );
    family(
        &mut o,
        "nfm_frames_rejected_total",
        "counter",
        "Frames refused, by reason.",
        ingest
            .rejected
            .iter()
            .map(|(r, v)| (format!("reason=\"{}\"", esc(r)), v.to_string()))
            .collect(),
    );
    family(
        &mut o,
        "nfm_frames_duplicate_total",
        "counter",
        "Resent frames dropped by dedupe.",
        vec![(String::new(), c(&m.duplicates))],
    );
    family(
        &mut o,
        "nfm_frames_misaligned_total",
        "counter",
        "FlowBatch frames whose interval start is further than the skew tolerance from the interval grid, by agent (kept as sent).",
        ingest
            .agents
            .iter()
            .filter(|a| a.misaligned > 0)
            .map(|a| (format!("agent=\"{}\"", a.agent_id), a.misaligned.to_string()))
            .collect(),
    );
    family(
        &mut o,
        "nfm_frames_skew_aligned_total",
        "counter",
        "FlowBatch frames moved onto the interval grid (agent clock skew within tolerance).",
        vec![(
            String::new(),
            ingest
                .agents
                .iter()
                .map(|a| a.skew_aligned)
                .sum::<u64>()
                .to_string(),
        )],
    );
    family(
        &mut o,
        "nfm_frames_rebucketed_total",
        "counter",
        "FlowBatch frames of a shorter agent interval moved into the collector's interval, by agent.",
        ingest
            .agents
            .iter()
            .filter(|a| a.rebucketed > 0)
            .map(|a| (format!("agent=\"{}\"", a.agent_id), a.rebucketed.to_string()))
            .collect(),
    );
    family(
        &mut o,
        "nfm_frames_lost_total",
        "counter",
        "Sequence gaps: frames never received.",
        vec![(String::new(), c(&m.lost_frames))],
    );
    family(
        &mut o,
        "nfm_received_bytes_total",
        "counter",
        "Frame bytes received.",
        vec![(String::new(), c(&m.bytes_received))],
    );
    family(
        &mut o,
        "nfm_records_received_total",
        "counter",
        "Flow records accepted.",
        vec![(String::new(), c(&m.records_received))],
    );
    family(
        &mut o,
        "nfm_records_aggregated_total",
        "counter",
        "Flow records aggregated.",
        vec![(String::new(), c(&m.aggregated_records))],
    );
    family(
        &mut o,
        "nfm_records_late_total",
        "counter",
        "Records for already closed intervals, added to them as late amendments.",
        vec![(String::new(), c(&m.late_records))],
    );
    family(
        &mut o,
        "nfm_records_too_late_total",
        "counter",
        "Records too far behind the closed intervals to amend them, dropped.",
        vec![(String::new(), c(&m.too_late_records))],
    );
    family(
        &mut o,
        "nfm_records_capped_total",
        "counter",
        "Records folded into the other bucket by cardinality caps.",
        vec![(String::new(), c(&m.capped_records))],
    );
    family(
        &mut o,
        "nfm_backpressure_waits_total",
        "counter",
        "Times ingest waited on a full channel.",
        vec![(String::new(), c(&m.backpressure_waits))],
    );
    family(
        &mut o,
        "nfm_channel_depth",
        "gauge",
        "Messages queued between actors.",
        Chan::ALL
            .iter()
            .map(|ch| {
                (
                    format!("channel=\"{}\"", ch.as_str()),
                    m.depth(*ch).to_string(),
                )
            })
            .collect(),
    );
    family(
        &mut o,
        "nfm_ingest_lag_seconds",
        "gauge",
        "Wall clock minus the interval end of the latest batch.",
        vec![(
            String::new(),
            format!(
                "{:.3}",
                m.ingest_lag_ms.load(Ordering::Relaxed) as f64 / 1e3
            ),
        )],
    );
    family(
        &mut o,
        "nfm_tcp_connections",
        "gauge",
        "Open agent TCP connections.",
        vec![(String::new(), c(&m.tcp_connections))],
    );
    family(
        &mut o,
        "nfm_tcp_closed_total",
        "counter",
        "Agent TCP connections closed or refused by ingest's limits, by reason.",
        super::TcpClose::ALL
            .iter()
            .map(|r| {
                let v = m.tcp_closed[*r as usize].load(Ordering::Relaxed);
                (format!("reason=\"{}\"", r.as_str()), v.to_string())
            })
            .collect(),
    );
    family(
        &mut o,
        "nfm_ingest_buffered_bytes",
        "gauge",
        "Bytes agent TCP connections hold in partial frames (within the ingest buffer budget).",
        vec![(String::new(), c(&m.ingest_buffered_bytes))],
    );
    family(
        &mut o,
        "nfm_agent_sessions_dropped_total",
        "counter",
        "Agent sessions dropped from the agent table: expired after silence, or evicted for room.",
        vec![
            ("why=\"expired\"".into(), c(&m.sessions_expired)),
            ("why=\"evicted\"".into(), c(&m.sessions_evicted)),
        ],
    );
    family(
        &mut o,
        "nfm_agents",
        "gauge",
        "Agents with a session.",
        vec![(String::new(), ingest.agents.len().to_string())],
    );
    family(
        &mut o,
        "nfm_intervals_open",
        "gauge",
        "Intervals being aggregated.",
        vec![(String::new(), c(&m.open_intervals))],
    );
    family(
        &mut o,
        "nfm_intervals_closed_total",
        "counter",
        "Intervals closed.",
        vec![(String::new(), c(&m.closed_intervals))],
    );
    family(
        &mut o,
        "nfm_health_verdicts_total",
        "counter",
        "Verdicts returned by the health evaluator.",
        vec![(String::new(), c(&m.verdicts))],
    );
    family(
        &mut o,
        "nfm_health_evaluation_seconds_total",
        "counter",
        "Time spent in the health evaluator.",
        vec![(
            String::new(),
            format!(
                "{:.6}",
                m.health_eval_us.load(Ordering::Relaxed) as f64 / 1e6
            ),
        )],
    );
    family(
        &mut o,
        "nfm_history_memory_bytes",
        "gauge",
        "Estimated bytes of interval summaries held in memory for queries.",
        vec![(String::new(), c(&m.history_bytes))],
    );
    family(
        &mut o,
        "nfm_history_intervals",
        "gauge",
        "Interval summaries held in memory for queries.",
        vec![(String::new(), c(&m.history_intervals))],
    );
    family(
        &mut o,
        "nfm_store_bytes",
        "gauge",
        "Bytes in the store's segment files.",
        vec![(String::new(), c(&m.store_bytes))],
    );
    family(
        &mut o,
        "nfm_store_segments",
        "gauge",
        "Segment files in the store.",
        vec![(String::new(), c(&m.store_segments))],
    );
    family(
        &mut o,
        "nfm_store_batches_total",
        "counter",
        "Batches made durable.",
        vec![(String::new(), c(&m.store_batches))],
    );
    family(
        &mut o,
        "nfm_store_summaries_total",
        "counter",
        "Interval summaries made durable.",
        vec![(String::new(), c(&m.store_summaries))],
    );
    family(
        &mut o,
        "nfm_store_pending_bytes",
        "gauge",
        "Frame bytes handed to the store and not yet durable (ingest refuses batches as store_full beyond the backlog budget).",
        vec![(String::new(), c(&m.store_pending_bytes))],
    );
    family(
        &mut o,
        "nfm_memory_resident_bytes",
        "gauge",
        "Resident memory of the collector at the last tick.",
        vec![(String::new(), c(&m.memory_resident_bytes))],
    );
    family(
        &mut o,
        "nfm_memory_pressure",
        "gauge",
        "1 while resident memory is over the memory budget: new batches are refused as overloaded.",
        vec![(String::new(), c(&m.memory_pressure))],
    );
    family(
        &mut o,
        "nfm_memory_trims_total",
        "counter",
        "Times an actor handed its freed memory back to the kernel because the pipeline went idle.",
        super::Trimmer::ALL
            .iter()
            .map(|a| {
                let v = m.memory_trims[*a as usize].load(Ordering::Relaxed);
                (format!("actor=\"{}\"", a.as_str()), v.to_string())
            })
            .collect(),
    );
    family(
        &mut o,
        "nfm_store_errors_total",
        "counter",
        "Failed store writes or fsyncs.",
        vec![(String::new(), c(&m.store_errors))],
    );
    family(
        &mut o,
        "nfm_store_stalled",
        "gauge",
        "1 while the store cannot write (disk full): no acks.",
        vec![(String::new(), c(&m.store_stalled))],
    );
    family(
        &mut o,
        "nfm_topology_reloads_total",
        "counter",
        "Topology reloads, by result.",
        vec![
            ("result=\"ok\"".into(), c(&m.topology_reloads)),
            ("result=\"error\"".into(), c(&m.topology_reload_errors)),
        ],
    );
    super::security::render(m, &mut o); // issue 15
                                        // issue 17
    family(
        &mut o,
        "nfm_aws_imports_total",
        "counter",
        "Scheduled AWS topology imports ([aws_import]), by result.",
        vec![
            ("result=\"unchanged\"".into(), c(&m.aws_imports_unchanged)),
            ("result=\"changed\"".into(), c(&m.aws_imports_changed)),
            ("result=\"error\"".into(), c(&m.aws_import_errors)),
        ],
    );
    // ---- issue 16: rollups, history from disk, remote write
    family(
        &mut o,
        "nfm_store_rollups_total",
        "counter",
        "Rollup records (1 min, 1 h) made durable.",
        vec![(String::new(), c(&m.store_rollups))],
    );
    family(
        &mut o,
        "nfm_history_disk_records_total",
        "counter",
        "History records read from disk by queries.",
        vec![(String::new(), c(&m.history_disk_records))],
    );
    family(
        &mut o,
        "nfm_remote_write_samples_total",
        "counter",
        "Samples remote-written and acknowledged (2xx) by the TSDB.",
        vec![(String::new(), c(&m.remote_write_samples))],
    );
    family(
        &mut o,
        "nfm_remote_write_requests_total",
        "counter",
        "Remote-write requests sent, and retried after a 5xx, 429 or connection error.",
        vec![
            ("result=\"sent\"".into(), c(&m.remote_write_requests)),
            ("result=\"retried\"".into(), c(&m.remote_write_retries)),
        ],
    );
    family(
        &mut o,
        "nfm_remote_write_dropped_samples_total",
        "counter",
        "Samples dropped: rejected by the TSDB (4xx), or the buffer was full.",
        vec![
            (
                "reason=\"rejected\"".into(),
                c(&m.remote_write_dropped_rejected),
            ),
            (
                "reason=\"buffer_full\"".into(),
                c(&m.remote_write_dropped_full),
            ),
        ],
    );
    family(
        &mut o,
        "nfm_remote_write_skipped_late_intervals_total",
        "counter",
        "Late amendments not remote-written (the TSDB has the interval's samples).",
        vec![(String::new(), c(&m.remote_write_skipped_late))],
    );
    family(
        &mut o,
        "nfm_remote_write_pending_samples",
        "gauge",
        "Samples buffered for remote write, not yet acknowledged.",
        vec![(String::new(), c(&m.remote_write_pending))],
    );
    o
}
