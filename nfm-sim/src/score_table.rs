//! The score tables: one row per scenario and per fault kind, as fixed-width text (the CLI) or
//! Markdown (docs/accuracy.md). Split from [`crate::score`] so that each stays readable.

use crate::score::{Metrics, ScenarioScore, Tally};

fn f3(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}
fn f1(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// Header and rows of the summary table (one row per scenario, then per fault kind).
pub fn table_rows(scores: &[ScenarioScore]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "scenario",
        "kind",
        "runs",
        "faults",
        "det.recall",
        "attr.prec",
        "attr.recall",
        "iv.recall",
        "ttd.mean",
        "ttd.max",
        "fp.intervals",
        "false.flips",
        "flips/day",
        "net.blame.slow",
        "ttn.max",
        "held",
        "lowgrade.late",
        "ramp.rise.max",
        "hi.inc.max",
        "net.blame.host",
        "pass",
    ];
    let mut rows = Vec::new();
    let row = |name: &str, kind: &str, tally: &Tally, m: &Metrics, pass: &str| -> Vec<String> {
        vec![
            name.to_string(),
            kind.to_string(),
            tally.runs.to_string(),
            tally.faults.to_string(),
            f3(m.detection_recall),
            f3(m.attribution_precision),
            f3(m.attribution_recall),
            f3(m.interval_recall),
            f1(m.mean_time_to_detect),
            m.max_time_to_detect
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            m.false_positive_intervals.to_string(),
            m.false_flips.to_string(),
            f1(m.false_flips_per_day),
            m.network_blame_slow_host.to_string(),
            tally
                .time_to_name_max
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            if tally.named > 0 {
                format!("{}/{}", tally.held, tally.named)
            } else {
                "-".into()
            },
            if tally.low_grade_faults > 0 {
                format!("{}/{}", tally.low_grade_late, tally.low_grade_faults)
            } else {
                "-".into()
            },
            match (tally.ramp_faults, tally.ramp_rise_max) {
                (0, _) => "-".into(),
                (_, Some(r)) if tally.ramp_unnamed == 0 => format!("{r:.0}%"),
                (_, r) => format!(
                    "{} ({} unnamed)",
                    r.map(|r| format!("{r:.0}%")).unwrap_or_else(|| "-".into()),
                    tally.ramp_unnamed
                ),
            },
            tally.hi_incidents_max.to_string(),
            tally.network_blame_host_only.to_string(),
            pass.to_string(),
        ]
    };
    for s in scores {
        rows.push(row(
            &s.scenario,
            "all",
            &s.overall,
            &s.metrics,
            if s.pass { "yes" } else { "NO" },
        ));
        for (k, v) in &s.by_kind {
            rows.push(row("", k.as_str(), &v.tally, &v.metrics, ""));
        }
    }
    (header, rows)
}

/// A fixed-width text table.
pub fn format_table(scores: &[ScenarioScore]) -> String {
    let (h, rows) = table_rows(scores);
    let mut w: Vec<usize> = h.iter().map(|c| c.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out.push_str(s.join("  ").trim_end());
        out.push('\n');
    };
    line(h.iter().map(|s| s.to_string()).collect(), &mut out);
    for r in rows {
        line(r, &mut out);
    }
    for s in scores {
        for f in &s.failures {
            out.push_str(&format!("FAIL {}: {f}\n", s.scenario));
        }
    }
    out
}

/// A Markdown table (for docs/accuracy.md).
pub fn format_markdown(scores: &[ScenarioScore]) -> String {
    let (h, rows) = table_rows(scores);
    let mut out = format!("| {} |\n|{}\n", h.join(" | "), "---|".repeat(h.len()));
    for r in rows {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    out
}
