//! Scoring: verdicts (from the collector's API, or from the health evaluator run in-process)
//! against a run's ground truth, per scenario and per fault kind.
//!
//! Definitions (also in docs/sim.md; they are what docs/accuracy.md reports):
//! - The run window is cut into intervals `i` of the run's interval; a fault is *active* in
//!   every interval its `[start_ms, end_ms)` overlaps (a flap for its whole window). The `grace`
//!   intervals after a fault's last active one belong to neither side: a verdict there naming
//!   the fault's component is not a false positive, and they are not fault-free.
//! - Verdict-intervals are distinct `(interval, component)` pairs from verdicts.
//! - **Detection**: a fault is detected when, in its active or grace intervals, some verdict
//!   names a component on the path of a flow the fault affects (its own component included).
//!   **Time to detect**: first such interval minus the fault's first active interval (0 = in the
//!   interval the fault began). Detection recall = detected / faults.
//! - **Attribution**: a verdict-interval is a true positive when its component is the component
//!   of a fault active in that interval, else a false positive (unless excused by grace).
//!   Attribution precision = TP / (TP + FP). Attribution recall = faults whose component some
//!   verdict names during the fault / faults; interval recall = fault-intervals in which the
//!   fault's component is named / fault-intervals.
//! - **False-positive intervals**: fault-free intervals with at least one verdict. **False
//!   flips**: fault-free intervals with a network-blame verdict whose previous interval had none
//!   (the HealthIndicator going 0 → 1 with nothing broken), also given per simulated day.
//! - **Network blame in slow-host time**: intervals where a slow-host fault is active, no network
//!   fault is active (or in grace), and some verdict blames the network. **In host-only time**
//!   (issue 14): the same for every fault of one host alone (slow host, slow handshakes, an
//!   elephant flow's retransmissions, a host refusing connections).
//! - Faults whose truth says `expect: no-network-verdict` (an elephant flow) count in neither
//!   detection nor attribution: only network blame during them is scored.
//! - Time to detect is held to the 2-interval bar only for *prompt* faults; low-grade loss and
//!   ramps have their own bars, and the per-fault measures of [`crate::score_fault`] (time to
//!   name, held to the end, ramp rise at first naming, HealthIndicator incidents per fault).

use crate::scenario::FaultKind;
use crate::score_fault::{self, Grid};
pub use crate::score_table::{format_markdown, format_table, table_rows};
use crate::truth::{FaultTruth, RunInfo, TruthLine};
use nfm_collector::model::{Blame, ComponentId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The part of a verdict the scorer reads; other fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VerdictLite {
    pub interval_start_ms: u64,
    pub component: ComponentId,
    pub blame: Blame,
    #[serde(default)]
    pub confidence: f64,
    /// Start of the verdict's incident (0 when the collector does not say).
    #[serde(default)]
    pub first_seen_ms: u64,
}

/// Reads a `GET /api/verdicts` answer: a JSON array of verdicts, or an object holding one under
/// `verdicts` (or `data`).
pub fn parse_verdicts(json: &str) -> Result<Vec<VerdictLite>, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("verdicts: not JSON: {e}"))?;
    let arr = match v {
        serde_json::Value::Array(_) => v,
        serde_json::Value::Object(mut m) => match m.remove("verdicts").or_else(|| m.remove("data"))
        {
            Some(a @ serde_json::Value::Array(_)) => a,
            _ => {
                return Err(
                    "verdicts: expected an array or an object with a `verdicts` array".into(),
                )
            }
        },
        _ => return Err("verdicts: expected an array".into()),
    };
    serde_json::from_value(arr).map_err(|e| format!("verdicts: {e}"))
}

/// Fetches `GET {api}/api/verdicts?from={from_ms}&to={to_ms}` (Unix ms).
pub fn fetch_verdicts(
    api: &str,
    from_ms: u64,
    to_ms: u64,
    token: Option<&str>,
) -> Result<Vec<VerdictLite>, String> {
    let url = format!(
        "{}/api/verdicts?from={from_ms}&to={to_ms}",
        api.trim_end_matches('/')
    );
    let mut req = ureq::get(&url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    parse_verdicts(&body)
}

/// Bars a scenario must meet (the defaults are issue 7's).
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    pub min_detection_recall: f64,
    pub min_attribution_precision: f64,
    pub min_attribution_recall: f64,
    /// Worst time to detect, in intervals.
    pub max_time_to_detect: u64,
    /// False flips allowed per started simulated day of fault-free time.
    pub max_false_flips_per_day: f64,
    pub max_network_blame_slow_host: u64,
    /// Issue 14: HealthIndicator incidents one flapping fault may raise.
    pub max_flap_incidents: u64,
    /// Issue 14: a ramp must be named by the time it has grown this much (percent) and held.
    pub max_ramp_rise_percent: f64,
    /// Issue 14: network blame while only a host is at fault (intervals).
    pub max_network_blame_host_only: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_detection_recall: 0.95,
            min_attribution_precision: 0.9,
            min_attribution_recall: 0.9,
            max_time_to_detect: 2,
            max_false_flips_per_day: 1.0,
            max_network_blame_slow_host: 0,
            max_flap_incidents: 1,
            max_ramp_rise_percent: 30.0,
            max_network_blame_host_only: 0,
        }
    }
}

/// Raw counts; rates are derived by [`Tally::metrics`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Tally {
    pub runs: u64,
    pub faults: u64,
    pub detected: u64,
    pub attributed: u64,
    pub time_to_detect_sum: u64,
    pub time_to_detect_max: Option<u64>,
    pub true_positives: u64,
    pub false_positives: u64,
    pub fault_intervals: u64,
    pub fault_intervals_named: u64,
    pub fault_free_intervals: u64,
    pub false_positive_intervals: u64,
    pub false_flips: u64,
    pub network_blame_slow_host: u64,
    /// Fault-free simulated time, ms (for flips per day).
    pub fault_free_ms: u64,
    /// Issue 14 (all `#[serde(default)]`): worst time to detect of prompt faults.
    #[serde(default)]
    pub prompt_time_to_detect_max: Option<u64>,
    /// Worst time to name (own component), in intervals, of faults that were named.
    #[serde(default)]
    pub time_to_name_max: Option<u64>,
    /// Faults named at some point, and of those, named and held to their end.
    #[serde(default)]
    pub named: u64,
    #[serde(default)]
    pub held: u64,
    #[serde(default)]
    pub low_grade_faults: u64,
    #[serde(default)]
    pub low_grade_late: u64,
    #[serde(default)]
    pub ramp_faults: u64,
    /// Ramps never named, and named but not held to their end.
    #[serde(default)]
    pub ramp_unnamed: u64,
    #[serde(default)]
    pub ramp_not_held: u64,
    /// Worst rise (percent) at first naming over named ramps.
    #[serde(default)]
    pub ramp_rise_max: Option<f64>,
    /// Most HealthIndicator incidents raised by one fault, and by one flapping fault.
    #[serde(default)]
    pub hi_incidents_max: u64,
    #[serde(default)]
    pub flap_incidents_max: u64,
    /// Faults expected to raise no network verdict (not in detection or attribution).
    #[serde(default)]
    pub no_verdict_faults: u64,
    #[serde(default)]
    pub network_blame_host_only: u64,
}

fn max_opt<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y > x { y } else { x }),
        (x, y) => x.or(y),
    }
}

/// Rates; `None` where the denominator is zero.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub detection_recall: Option<f64>,
    pub attribution_precision: Option<f64>,
    pub attribution_recall: Option<f64>,
    pub interval_recall: Option<f64>,
    pub mean_time_to_detect: Option<f64>,
    pub max_time_to_detect: Option<u64>,
    pub false_positive_intervals: u64,
    pub false_flips: u64,
    pub false_flips_per_day: Option<f64>,
    pub network_blame_slow_host: u64,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        self.runs += o.runs;
        self.faults += o.faults;
        self.detected += o.detected;
        self.attributed += o.attributed;
        self.time_to_detect_sum += o.time_to_detect_sum;
        self.time_to_detect_max = match (self.time_to_detect_max, o.time_to_detect_max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.true_positives += o.true_positives;
        self.false_positives += o.false_positives;
        self.fault_intervals += o.fault_intervals;
        self.fault_intervals_named += o.fault_intervals_named;
        self.fault_free_intervals += o.fault_free_intervals;
        self.false_positive_intervals += o.false_positive_intervals;
        self.false_flips += o.false_flips;
        self.network_blame_slow_host += o.network_blame_slow_host;
        self.fault_free_ms += o.fault_free_ms;
        self.prompt_time_to_detect_max =
            max_opt(self.prompt_time_to_detect_max, o.prompt_time_to_detect_max);
        self.time_to_name_max = max_opt(self.time_to_name_max, o.time_to_name_max);
        self.named += o.named;
        self.held += o.held;
        self.low_grade_faults += o.low_grade_faults;
        self.low_grade_late += o.low_grade_late;
        self.ramp_faults += o.ramp_faults;
        self.ramp_unnamed += o.ramp_unnamed;
        self.ramp_not_held += o.ramp_not_held;
        self.ramp_rise_max = max_opt(self.ramp_rise_max, o.ramp_rise_max);
        self.hi_incidents_max = self.hi_incidents_max.max(o.hi_incidents_max);
        self.flap_incidents_max = self.flap_incidents_max.max(o.flap_incidents_max);
        self.no_verdict_faults += o.no_verdict_faults;
        self.network_blame_host_only += o.network_blame_host_only;
    }

    pub fn metrics(&self) -> Metrics {
        Metrics {
            detection_recall: ratio(self.detected, self.faults),
            attribution_precision: ratio(
                self.true_positives,
                self.true_positives + self.false_positives,
            ),
            attribution_recall: ratio(self.attributed, self.faults),
            interval_recall: ratio(self.fault_intervals_named, self.fault_intervals),
            mean_time_to_detect: ratio(self.time_to_detect_sum, self.detected),
            max_time_to_detect: self.time_to_detect_max,
            false_positive_intervals: self.false_positive_intervals,
            false_flips: self.false_flips,
            false_flips_per_day: (self.fault_free_ms > 0)
                .then(|| self.false_flips as f64 * 86_400_000.0 / self.fault_free_ms as f64),
            network_blame_slow_host: self.network_blame_slow_host,
        }
    }

    /// Which bars this tally misses (empty = pass).
    pub fn failures(&self, t: &Thresholds) -> Vec<String> {
        let m = self.metrics();
        let mut f = Vec::new();
        let below = |name: &str, v: Option<f64>, min: f64, f: &mut Vec<String>| {
            if let Some(v) = v {
                if v < min {
                    f.push(format!("{name} {v:.3} < {min}"));
                }
            }
        };
        below(
            "detection recall",
            m.detection_recall,
            t.min_detection_recall,
            &mut f,
        );
        below(
            "attribution precision",
            m.attribution_precision,
            t.min_attribution_precision,
            &mut f,
        );
        below(
            "attribution recall",
            m.attribution_recall,
            t.min_attribution_recall,
            &mut f,
        );
        if let Some(x) = self.prompt_time_to_detect_max {
            if x > t.max_time_to_detect {
                f.push(format!(
                    "time to detect {x} > {} intervals",
                    t.max_time_to_detect
                ));
            }
        }
        if self.faults > self.detected && self.faults > 0 && m.max_time_to_detect.is_none() {
            f.push("no fault detected".into());
        }
        let days = (self.fault_free_ms as f64 / 86_400_000.0).ceil().max(1.0);
        if self.false_flips as f64 > t.max_false_flips_per_day * days {
            f.push(format!(
                "{} false flips in {} simulated day(s) (max {} per day)",
                self.false_flips, days, t.max_false_flips_per_day
            ));
        }
        if self.network_blame_slow_host > t.max_network_blame_slow_host {
            f.push(format!(
                "{} intervals blame the network while only a host is slow (max {})",
                self.network_blame_slow_host, t.max_network_blame_slow_host
            ));
        }
        if self.network_blame_host_only > t.max_network_blame_host_only {
            f.push(format!(
                "{} intervals blame the network while only a host is at fault (max {})",
                self.network_blame_host_only, t.max_network_blame_host_only
            ));
        }
        if self.flap_incidents_max > t.max_flap_incidents {
            f.push(format!(
                "{} HealthIndicator incidents in one flapping fault (max {})",
                self.flap_incidents_max, t.max_flap_incidents
            ));
        }
        if self.low_grade_late > 0 {
            f.push(format!(
                "{} of {} low-grade loss faults not named within {} s",
                self.low_grade_late,
                self.low_grade_faults,
                score_fault::LOW_GRADE_DEADLINE_MS / 1000
            ));
        }
        if self.ramp_unnamed + self.ramp_not_held > 0 {
            f.push(format!(
                "ramps: {} of {} never named, {} named but not held to their end",
                self.ramp_unnamed, self.ramp_faults, self.ramp_not_held
            ));
        }
        if let Some(r) = self.ramp_rise_max {
            if r > t.max_ramp_rise_percent {
                f.push(format!(
                    "a ramp first named at +{r:.0} % (max {} %)",
                    t.max_ramp_rise_percent
                ));
            }
        }
        f
    }
}

/// One run's score: overall and per fault kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunScore {
    pub overall: Tally,
    pub by_kind: BTreeMap<FaultKind, Tally>,
}

/// Scores one run. `related(fault)` gives the components on the paths of the flows the fault
/// affects (for detection); `grace` is in intervals.
pub fn score_run(
    truth: &[TruthLine],
    verdicts: &[VerdictLite],
    related: &dyn Fn(&FaultTruth) -> HashSet<ComponentId>,
    grace: u64,
) -> Result<RunScore, String> {
    let run: &RunInfo = truth
        .iter()
        .find_map(|l| {
            if let TruthLine::Run(r) = l {
                Some(r)
            } else {
                None
            }
        })
        .ok_or("ground truth has no `run` line")?;
    let end_ms = truth
        .iter()
        .find_map(|l| {
            if let TruthLine::End(e) = l {
                Some(e.end_ms)
            } else {
                None
            }
        })
        .unwrap_or(run.end_ms);
    let t = run.interval_ms.max(1);
    let n = end_ms.saturating_sub(run.start_ms).div_ceil(t);
    let faults: Vec<&FaultTruth> = truth
        .iter()
        .filter_map(|l| {
            if let TruthLine::Fault(f) = l {
                Some(f)
            } else {
                None
            }
        })
        .filter(|f| f.start_ms < end_ms)
        .collect();
    let idx = |ms: u64| -> Option<u64> {
        (ms >= run.start_ms && ms < run.start_ms + n * t).then(|| (ms - run.start_ms) / t)
    };
    // Active interval range [first, last] of each fault, clipped to the run.
    let span: Vec<(u64, u64)> = faults
        .iter()
        .map(|f| {
            let a = f.start_ms.max(run.start_ms);
            let b = f.end_ms.min(run.start_ms + n * t).max(a + 1);
            ((a - run.start_ms) / t, (b - 1 - run.start_ms) / t)
        })
        .collect();
    // Verdict-intervals.
    let mut by_iv: BTreeMap<u64, Vec<&VerdictLite>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for v in verdicts {
        let Some(i) = idx(v.interval_start_ms) else {
            continue;
        };
        if seen.insert((i, v.component.clone())) {
            by_iv.entry(i).or_default().push(v);
        }
    }
    let mut out = RunScore::default();
    out.overall.runs = 1;
    for f in &faults {
        out.by_kind.entry(f.kind).or_default().runs = 1;
    }
    let active = |fi: usize, i: u64| span[fi].0 <= i && i <= span[fi].1;
    let in_grace = |fi: usize, i: u64| i > span[fi].1 && i <= span[fi].1 + grace;
    let grid = Grid {
        n,
        start_ms: run.start_ms,
        interval_ms: t,
        grace,
    };
    // Per fault: detection, attribution, intervals.
    for (fi, f) in faults.iter().enumerate() {
        let rel = related(f);
        let d = score_fault::detail(f, span[fi], &grid, &by_iv, &rel);
        let mut tally = Tally {
            faults: 1,
            hi_incidents_max: d.hi_incidents,
            ..Tally::default()
        };
        if f.kind == FaultKind::Flap {
            tally.flap_incidents_max = d.hi_incidents;
        }
        if !f.expects_naming() {
            tally.faults = 0;
            tally.no_verdict_faults = 1;
            out.overall.add(&tally);
            let k = out.by_kind.entry(f.kind).or_default();
            let runs = k.runs;
            k.add(&tally);
            k.runs = runs;
            continue;
        }
        tally.time_to_name_max = d.time_to_name;
        tally.named = d.time_to_name.is_some() as u64;
        tally.held = d.held as u64;
        tally.low_grade_faults = d.low_grade as u64;
        tally.low_grade_late = d.low_grade_late as u64;
        if d.ramp {
            tally.ramp_faults = 1;
            tally.ramp_unnamed = d.time_to_name.is_none() as u64;
            tally.ramp_not_held = (d.time_to_name.is_some() && !d.held) as u64;
            tally.ramp_rise_max = d.ramp_rise_pct;
        }
        let (first, last) = span[fi];
        let mut ttd = None;
        for i in first..=(last + grace).min(n.saturating_sub(1)) {
            let vs = by_iv.get(&i).map(|v| v.as_slice()).unwrap_or(&[]);
            let named = vs.iter().any(|v| v.component == f.component);
            if ttd.is_none()
                && vs
                    .iter()
                    .any(|v| v.component == f.component || rel.contains(&v.component))
            {
                ttd = Some(i - first);
            }
            if i <= last {
                tally.fault_intervals += 1;
                if named {
                    tally.fault_intervals_named += 1;
                    tally.attributed = 1;
                }
            }
        }
        if let Some(x) = ttd {
            tally.detected = 1;
            tally.time_to_detect_sum = x;
            tally.time_to_detect_max = Some(x);
            if d.prompt {
                tally.prompt_time_to_detect_max = Some(x);
            }
        }
        out.overall.add(&tally);
        let k = out.by_kind.entry(f.kind).or_default();
        let runs = k.runs;
        k.add(&tally);
        k.runs = runs;
    }
    // Per interval: TP/FP, fault-free intervals, flips, slow-host blame.
    let mut prev_network = false;
    for i in 0..n {
        let act: Vec<usize> = (0..faults.len()).filter(|&fi| active(fi, i)).collect();
        let grace_here: Vec<usize> = (0..faults.len()).filter(|&fi| in_grace(fi, i)).collect();
        let vs = by_iv.get(&i).map(|v| v.as_slice()).unwrap_or(&[]);
        let network_now = vs.iter().any(|v| v.blame == Blame::Network);
        for v in vs {
            if let Some(&fi) = act.iter().find(|&&fi| faults[fi].component == v.component) {
                out.overall.true_positives += 1;
                out.by_kind
                    .entry(faults[fi].kind)
                    .or_default()
                    .true_positives += 1;
            } else if grace_here
                .iter()
                .any(|&fi| faults[fi].component == v.component)
            {
                // Excused: the fault's own component, just after it ended.
            } else {
                out.overall.false_positives += 1;
                let kinds: HashSet<FaultKind> = act.iter().map(|&fi| faults[fi].kind).collect();
                for k in kinds {
                    out.by_kind.entry(k).or_default().false_positives += 1;
                }
            }
        }
        if act.is_empty() && grace_here.is_empty() {
            out.overall.fault_free_intervals += 1;
            out.overall.fault_free_ms += t;
            if !vs.is_empty() {
                out.overall.false_positive_intervals += 1;
            }
            if network_now && !prev_network {
                out.overall.false_flips += 1;
            }
        }
        let slow = act.iter().any(|&fi| faults[fi].kind == FaultKind::SlowHost);
        let net_fault = act
            .iter()
            .chain(grace_here.iter())
            .any(|&fi| faults[fi].blame == Blame::Network);
        if slow && !net_fault && network_now {
            out.overall.network_blame_slow_host += 1;
            out.by_kind
                .entry(FaultKind::SlowHost)
                .or_default()
                .network_blame_slow_host += 1;
        }
        let host_only: HashSet<FaultKind> = act
            .iter()
            .filter(|&&fi| faults[fi].host_only())
            .map(|&fi| faults[fi].kind)
            .collect();
        if !host_only.is_empty() && !net_fault && network_now {
            out.overall.network_blame_host_only += 1;
            for k in host_only {
                out.by_kind.entry(k).or_default().network_blame_host_only += 1;
            }
        }
        prev_network = network_now;
    }
    Ok(out)
}

/// One scenario's result over all its runs (seeds, placements).
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioScore {
    pub scenario: String,
    pub runs: Vec<RunMeta>,
    pub overall: Tally,
    pub metrics: Metrics,
    pub by_kind: BTreeMap<FaultKind, KindScore>,
    pub failures: Vec<String>,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindScore {
    pub tally: Tally,
    pub metrics: Metrics,
}

/// Where and how a run happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub seed: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub interval_ms: u64,
    /// `kind:name` of each fault as placed.
    pub placed: Vec<String>,
    pub verdicts: u64,
    pub records: u64,
}

/// Folds run scores into a scenario score and judges it.
pub fn scenario_score(name: &str, runs: Vec<(RunMeta, RunScore)>, t: &Thresholds) -> ScenarioScore {
    let mut overall = Tally::default();
    let mut kinds: BTreeMap<FaultKind, Tally> = BTreeMap::new();
    let mut metas = Vec::new();
    for (m, s) in runs {
        overall.add(&s.overall);
        for (k, v) in s.by_kind {
            kinds.entry(k).or_default().add(&v);
        }
        metas.push(m);
    }
    let failures = overall.failures(t);
    ScenarioScore {
        scenario: name.to_string(),
        runs: metas,
        metrics: overall.metrics(),
        by_kind: kinds
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    KindScore {
                        metrics: v.metrics(),
                        tally: v,
                    },
                )
            })
            .collect(),
        pass: failures.is_empty(),
        failures,
        overall,
    }
}

/// Indexes verdicts by interval for callers that score many windows from one fetch.
pub fn split_by_window(verdicts: &[VerdictLite], windows: &[(u64, u64)]) -> Vec<Vec<VerdictLite>> {
    let mut out = vec![Vec::new(); windows.len()];
    for v in verdicts {
        for (i, (a, b)) in windows.iter().enumerate() {
            if v.interval_start_ms >= *a && v.interval_start_ms < *b {
                out[i].push(v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::truth::{EndInfo, RunInfo};
    const T: u64 = 60_000;
    const S: u64 = 1_000_000_000;

    fn fault(component: &str, kind: FaultKind, from: u64, to: u64) -> TruthLine {
        let component: ComponentId = component.parse().unwrap();
        let blame = if kind == FaultKind::SlowHost || !component.kind.is_network() {
            Blame::Endpoint
        } else {
            Blame::Network
        };
        TruthLine::Fault(FaultTruth {
            scenario: "t".into(),
            fault: 0,
            cycle: 0,
            component,
            kind,
            blame,
            start_ms: S + from * T,
            end_ms: S + to * T,
            loss: 0.0,
            delay_ms: 0.0,
            period_ms: 0,
            down_ms: 0,
            extra_rtt_ms: 0.0,
            extra_handshake_ms: 0.0,
            affected_flows: 1,
            equivalent: Vec::new(),
            direction: Default::default(),
            percent_per_interval: 0.0,
            max_percent: 0.0,
            expect: String::new(),
        })
    }

    fn truth(n: u64, faults: Vec<TruthLine>) -> Vec<TruthLine> {
        let mut v = vec![TruthLine::Run(RunInfo {
            version: 1,
            scenario: "t".into(),
            fleet: "f".into(),
            seed: 1,
            mode: "virtual".into(),
            start_ms: S,
            end_ms: S + n * T,
            interval_ms: T,
            agents: 1,
            flows: 1,
        })];
        v.extend(faults);
        v.push(TruthLine::End(EndInfo {
            end_ms: S + n * T,
            intervals: n,
            records: 0,
        }));
        v
    }

    fn v(i: u64, c: &str, blame: Blame) -> VerdictLite {
        VerdictLite {
            interval_start_ms: S + i * T,
            component: c.parse().unwrap(),
            blame,
            confidence: 1.0,
            first_seen_ms: 0,
        }
    }

    fn none(_: &FaultTruth) -> HashSet<ComponentId> {
        HashSet::new()
    }

    #[test]
    fn test_perfect_verdicts_score_one() {
        let t = truth(20, vec![fault("az:a", FaultKind::Loss, 5, 10)]);
        let vs: Vec<_> = (6..10).map(|i| v(i, "az:a", Blame::Network)).collect();
        let s = score_run(&t, &vs, &none, 1).unwrap();
        let m = s.overall.metrics();
        assert_eq!(m.detection_recall, Some(1.0));
        assert_eq!(m.attribution_precision, Some(1.0));
        assert_eq!(m.attribution_recall, Some(1.0));
        assert_eq!(
            m.max_time_to_detect,
            Some(1),
            "first verdict one interval after the start"
        );
        assert_eq!(m.interval_recall, Some(0.8));
        assert_eq!(
            s.overall.fault_free_intervals, 14,
            "20 − 5 active − 1 grace"
        );
        assert!(s.overall.failures(&Thresholds::default()).is_empty());
        assert_eq!(s.by_kind[&FaultKind::Loss].true_positives, 4);
    }

    #[test]
    fn test_wrong_component_is_detection_but_not_attribution() {
        let t = truth(20, vec![fault("az:a", FaultKind::Loss, 5, 10)]);
        let vs = vec![v(5, "subnet:s", Blame::Network)];
        let rel = |_: &FaultTruth| -> HashSet<ComponentId> { ["subnet:s".parse().unwrap()].into() };
        let s = score_run(&t, &vs, &rel, 1).unwrap();
        let m = s.overall.metrics();
        assert_eq!(
            m.detection_recall,
            Some(1.0),
            "a component on the affected flows' path"
        );
        assert_eq!(m.attribution_precision, Some(0.0));
        assert_eq!(m.attribution_recall, Some(0.0));
        // Unrelated component: not even detected.
        let s = score_run(&t, &vs, &none, 1).unwrap();
        assert_eq!(s.overall.metrics().detection_recall, Some(0.0));
        assert!(!s.overall.failures(&Thresholds::default()).is_empty());
    }

    #[test]
    fn test_false_flips_and_grace() {
        let t = truth(30, vec![fault("az:a", FaultKind::Loss, 5, 10)]);
        let vs = vec![
            v(10, "az:a", Blame::Network),    // grace: excused
            v(20, "az:b", Blame::Network),    // flip 1
            v(21, "az:b", Blame::Network),    // same run, no new flip
            v(25, "host:h", Blame::Endpoint), // FP interval, no flip (endpoint)
            v(27, "az:b", Blame::Network),    // flip 2
        ];
        let s = score_run(&t, &vs, &none, 1).unwrap();
        assert_eq!(s.overall.false_flips, 2);
        assert_eq!(s.overall.false_positive_intervals, 4);
        assert_eq!(s.overall.false_positives, 4);
        assert_eq!(s.overall.true_positives, 0);
    }

    #[test]
    fn test_network_blame_during_slow_host() {
        let t = truth(20, vec![fault("host:h", FaultKind::SlowHost, 5, 10)]);
        let vs = vec![
            v(5, "host:h", Blame::Endpoint),
            v(6, "subnet:s", Blame::Network),
            v(7, "host:h", Blame::Endpoint),
        ];
        let s = score_run(&t, &vs, &none, 1).unwrap();
        assert_eq!(s.overall.network_blame_slow_host, 1);
        assert_eq!(s.overall.metrics().max_time_to_detect, Some(0));
        let f = s.overall.failures(&Thresholds::default());
        assert!(f.iter().any(|x| x.contains("slow")), "{f:?}");
    }

    #[test]
    fn test_verdicts_outside_the_run_are_ignored_and_duplicates_count_once() {
        let t = truth(10, vec![]);
        let vs = vec![
            v(50, "az:a", Blame::Network),
            v(3, "az:a", Blame::Network),
            v(3, "az:a", Blame::Network),
        ];
        let s = score_run(&t, &vs, &none, 1).unwrap();
        assert_eq!(s.overall.false_positives, 1);
        assert_eq!(s.overall.false_flips, 1);
    }

    #[test]
    fn test_parse_verdicts_shapes() {
        let one = r#"{"interval_start_ms":5,"component":"az:a","blame":"network","confidence":0.5,"extra":1}"#;
        assert_eq!(parse_verdicts(&format!("[{one}]")).unwrap().len(), 1);
        assert_eq!(
            parse_verdicts(&format!("{{\"verdicts\":[{one}]}}"))
                .unwrap()
                .len(),
            1
        );
        assert!(parse_verdicts("{\"nope\":1}").is_err());
        assert!(parse_verdicts("not json").is_err());
        assert!(parse_verdicts(
            r#"[{"interval_start_ms":5,"component":"planet:x","blame":"network"}]"#
        )
        .is_err());
    }

    #[test]
    fn test_fetch_verdicts_over_http() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            let body = r#"[{"interval_start_ms":60000,"component":"gateway:g","blame":"network"}]"#;
            write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
            String::from_utf8(req).unwrap()
        });
        let vs = fetch_verdicts(&format!("http://{addr}/"), 60_000, 120_000, Some("tok")).unwrap();
        let req = server.join().unwrap();
        assert!(
            req.starts_with("GET /api/verdicts?from=60000&to=120000 HTTP/1.1"),
            "{req}"
        );
        assert!(req
            .to_ascii_lowercase()
            .contains("authorization: bearer tok"));
        assert_eq!(
            vs,
            vec![v(0, "gateway:g", Blame::Network)]
                .into_iter()
                .map(|mut x| {
                    x.interval_start_ms = 60_000;
                    x.confidence = 0.0;
                    x
                })
                .collect::<Vec<_>>()
        );
    }
}
