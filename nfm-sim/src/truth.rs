//! Ground truth: what a run broke, where and when, as JSON lines — the contract between the
//! simulator and whatever scores verdicts (nfm-sim's scorer, the health evaluator's tests,
//! docs/accuracy.md). `docs/sim.md` specifies every field; fields are only ever added.
//!
//! A file holds, in order: one `run` line, one `fault` line per fault occurrence (a repeating
//! scenario writes each cycle's faults as that cycle starts), and one `end` line when the run
//! finished cleanly. Times are Unix milliseconds in the frames' clock (simulated time in virtual
//! runs), so they compare directly with verdicts' `interval_start_ms`.

use crate::scenario::{Direction, Fault, FaultKind};
use nfm_collector::model::{Blame, ComponentId};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// Version of this format; bumped only if a field changes meaning.
pub const TRUTH_VERSION: u32 = 1;

/// The `run` line: what was simulated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub version: u32,
    pub scenario: String,
    pub fleet: String,
    pub seed: u64,
    /// `virtual` or `real-time`.
    pub mode: String,
    /// Start of the first interval, Unix ms.
    pub start_ms: u64,
    /// Planned end (exclusive), Unix ms; `end` has the real one.
    pub end_ms: u64,
    pub interval_ms: u64,
    pub agents: u64,
    pub flows: u64,
}

/// One fault occurrence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultTruth {
    pub scenario: String,
    /// The fault's position in the scenario file (0-based).
    pub fault: u32,
    /// Repetition of a repeating scenario (0 otherwise).
    pub cycle: u64,
    /// `kind:name`, exactly as verdicts name components.
    pub component: ComponentId,
    pub kind: FaultKind,
    /// `network` for faults at network components, `endpoint` for hosts, services and slow hosts.
    pub blame: Blame,
    /// Unix ms, start inclusive, end exclusive.
    pub start_ms: u64,
    pub end_ms: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub loss: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: f64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub period_ms: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub down_ms: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extra_rtt_ms: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extra_handshake_ms: f64,
    /// Simulated flows whose path crosses the component.
    pub affected_flows: u64,
    /// Components crossed by exactly the same flows (indistinguishable from this one by any
    /// observer of the flows); empty for well-placed faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equivalent: Vec<ComponentId>,
    /// Loss on one direction of a pair only (`a_to_b`, `b_to_a`); omitted for both.
    #[serde(default, skip_serializing_if = "Direction::is_both")]
    pub direction: Direction,
    /// Delay ramp: relative RTT rise per interval (percent) and its cap (0 = none). The rise
    /// in interval k of the fault (from 0) is `min((k + 1) × percent_per_interval, max_percent)`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub percent_per_interval: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_percent: f64,
    /// What a correct evaluator does: omitted = names `component` (with `blame`);
    /// `no-network-verdict` = names no network component (one flow's host-local trouble, which
    /// no attribution from one flow can place; naming nothing is right).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expect: String,
}

/// `FaultTruth::expect` of a fault that must raise no network verdict and need not be named.
pub const EXPECT_NO_NETWORK_VERDICT: &str = "no-network-verdict";

impl FaultTruth {
    /// Whether detection and attribution apply (the fault is expected to be named).
    pub fn expects_naming(&self) -> bool {
        self.expect != EXPECT_NO_NETWORK_VERDICT
    }

    /// A fault of one host alone (slow host, slow handshakes, an elephant's retransmissions, a
    /// host refusing connections): any network verdict during it is wrong.
    pub fn host_only(&self) -> bool {
        self.kind.host_only()
            || (self.kind == FaultKind::ConnectFail
                && self.component.kind == nfm_collector::model::ComponentKind::Host)
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// The `end` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndInfo {
    /// End of the last interval sent (exclusive), Unix ms.
    pub end_ms: u64,
    pub intervals: u64,
    pub records: u64,
}

/// One line of a ground-truth file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TruthLine {
    Run(RunInfo),
    Fault(FaultTruth),
    End(EndInfo),
}

impl FaultTruth {
    pub fn new(
        scenario: &str,
        f: &Fault,
        cycle: u64,
        start_ms: u64,
        affected_flows: u64,
    ) -> FaultTruth {
        FaultTruth {
            scenario: scenario.to_string(),
            fault: f.id,
            cycle,
            component: f.component.clone(),
            kind: f.kind,
            blame: f.blame(),
            start_ms,
            end_ms: start_ms + f.duration_ms,
            loss: f.loss,
            delay_ms: f.delay_ms,
            period_ms: f.period_ms,
            down_ms: f.down_ms,
            extra_rtt_ms: f.extra_rtt_ms,
            extra_handshake_ms: f.extra_handshake_ms,
            affected_flows,
            equivalent: Vec::new(),
            direction: f.direction,
            percent_per_interval: f.percent_per_interval,
            max_percent: f.max_percent,
            expect: if f.kind == FaultKind::ElephantRetrans {
                EXPECT_NO_NETWORK_VERDICT.to_string()
            } else {
                String::new()
            },
        }
    }
}

/// Writes truth lines, flushing each one so a reader (or a crash) never sees half a line.
pub struct TruthWriter {
    out: Option<BufWriter<File>>,
    /// Everything written, also kept in memory for the scorer.
    pub lines: Vec<TruthLine>,
}

impl TruthWriter {
    /// `None` keeps the lines in memory only.
    pub fn create(path: Option<&Path>) -> io::Result<TruthWriter> {
        let out = match path {
            Some(p) => Some(BufWriter::new(File::create(p)?)),
            None => None,
        };
        Ok(TruthWriter {
            out,
            lines: Vec::new(),
        })
    }

    pub fn write(&mut self, line: TruthLine) -> io::Result<()> {
        if let Some(out) = &mut self.out {
            serde_json::to_writer(&mut *out, &line).map_err(io::Error::other)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        self.lines.push(line);
        Ok(())
    }
}

/// Reads a ground-truth file. Unknown fields are ignored (the format only grows); a malformed
/// line is an error naming its line number.
pub fn read(path: &Path) -> Result<Vec<TruthLine>, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: TruthLine = serde_json::from_str(&line)
            .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?;
        out.push(l);
    }
    Ok(out)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_line_format_is_stable() {
        let l = TruthLine::Fault(FaultTruth {
            scenario: "s".into(),
            fault: 1,
            cycle: 0,
            component: "az-pair:a|b".parse().unwrap(),
            kind: FaultKind::Loss,
            blame: Blame::Network,
            start_ms: 1000,
            end_ms: 2000,
            loss: 0.05,
            delay_ms: 0.0,
            period_ms: 0,
            down_ms: 0,
            extra_rtt_ms: 0.0,
            extra_handshake_ms: 0.0,
            affected_flows: 7,
            equivalent: Vec::new(),
            direction: Direction::Both,
            percent_per_interval: 0.0,
            max_percent: 0.0,
            expect: String::new(),
        });
        let s = serde_json::to_string(&l).unwrap();
        assert_eq!(
            s,
            r#"{"type":"fault","scenario":"s","fault":1,"cycle":0,"component":"az-pair:a|b","kind":"loss","blame":"network","start_ms":1000,"end_ms":2000,"loss":0.05,"affected_flows":7}"#
        );
        assert_eq!(serde_json::from_str::<TruthLine>(&s).unwrap(), l);
    }
}
