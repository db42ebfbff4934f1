//! Per-fault measures of issue 14, beside the per-interval ones of [`crate::score`]: when a
//! fault's own component is first named and whether it stays named to the fault's end, how far
//! a ramp has grown when it is first named, whether low-grade loss is named in time, and how
//! many HealthIndicator incidents one fault raises (thrash inside its window).
//!
//! Definitions (docs/sim.md, "Scoring"):
//! - **Time to name**: first interval, counted from the fault's first active one (0 = the
//!   interval it began), whose verdicts name the fault's own component.
//! - **Held**: from that interval to the fault's last active one, no run of more than the
//!   incident hold-down ([`hold_down`] intervals) without a naming: the incident stays open to
//!   the end (verdicts may pause inside the hold-down; the HealthIndicator does not).
//! - **Ramp rise at first naming**: the rise (percent over the flows' own RTT) of a
//!   `delay-ramp` at the end of the interval in which it is first named; never named = no value.
//! - **Low-grade loss**: a `loss` fault of at most [`LOW_GRADE_MAX_LOSS`]; it is *late* when not
//!   named within [`LOW_GRADE_DEADLINE_MS`] of its start (interval k counts k × interval), or
//!   within 2 intervals when that is longer (at 60 s intervals: the usual 2-interval bar).
//! - **HealthIndicator incidents**: the fleet's HealthIndicator as far as this fault goes is
//!   raised in interval i when a network verdict named a component on the affected flows' paths
//!   in one of intervals i − hold_down ..= i (an open incident keeps it raised, as in the
//!   collector); incidents = runs of raised intervals that overlap the fault's active and grace
//!   intervals. A flapping fault should be one.

use crate::scenario::FaultKind;
use crate::score::VerdictLite;
use crate::truth::FaultTruth;
use nfm_collector::model::{Blame, ComponentId};
use std::collections::{BTreeMap, HashSet};

/// Intervals of `interval_ms` an incident stays open after its last naming (the collector's).
pub fn hold_down(interval_ms: u64) -> u64 {
    nfm_collector::model::incident_hold_down_intervals(interval_ms)
}
/// Loss faults up to this are *low-grade* (issue 14: 0.5–1 %).
pub const LOW_GRADE_MAX_LOSS: f64 = 0.01;
/// Low-grade loss must be named within this long (issue 14's bar).
pub const LOW_GRADE_DEADLINE_MS: u64 = 60_000;

/// What one fault's verdicts say, beyond detection and attribution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultDetail {
    /// Intervals from the fault's first active one to the first naming of its component.
    pub time_to_name: Option<u64>,
    /// Named and held to the end (see the module's definitions).
    pub held: bool,
    /// A `delay-ramp`: its rise in percent when first named.
    pub ramp_rise_pct: Option<f64>,
    pub ramp: bool,
    pub low_grade: bool,
    /// Low-grade and not named in time (or never).
    pub low_grade_late: bool,
    /// Subject to the 2-interval time-to-detect bar (neither low-grade nor a ramp, and
    /// expected to be named).
    pub prompt: bool,
    pub hi_incidents: u64,
}

/// The run's shape as the scorer cut it.
pub struct Grid {
    /// Intervals in the run.
    pub n: u64,
    pub start_ms: u64,
    pub interval_ms: u64,
    pub grace: u64,
}

/// The measures of one fault active in intervals `span` (inclusive) of `grid`.
pub fn detail(
    f: &FaultTruth,
    span: (u64, u64),
    grid: &Grid,
    by_iv: &BTreeMap<u64, Vec<&VerdictLite>>,
    related: &HashSet<ComponentId>,
) -> FaultDetail {
    let (first, last) = span;
    let t = grid.interval_ms.max(1);
    let names = |i: u64| {
        by_iv
            .get(&i)
            .is_some_and(|vs| vs.iter().any(|v| v.component == f.component))
    };
    let mut d = FaultDetail {
        ramp: f.kind == FaultKind::DelayRamp,
        low_grade: f.kind == FaultKind::Loss && f.loss > 0.0 && f.loss <= LOW_GRADE_MAX_LOSS,
        ..FaultDetail::default()
    };
    d.prompt = f.expects_naming() && !d.ramp && !d.low_grade;
    d.time_to_name = (first..=last).find(|&i| names(i)).map(|i| i - first);
    if let Some(k) = d.time_to_name {
        let mut last_named = first + k;
        d.held = true;
        for i in first + k..=last {
            if names(i) {
                last_named = i;
            } else if i - last_named > hold_down(t) {
                d.held = false;
                break;
            }
        }
        if d.ramp {
            let iv_end = grid.start_ms + (first + k + 1) * t;
            let elapsed = iv_end.min(f.end_ms).saturating_sub(f.start_ms) as f64 / t as f64;
            let pct = f.percent_per_interval * elapsed;
            d.ramp_rise_pct = Some(if f.max_percent > 0.0 {
                pct.min(f.max_percent)
            } else {
                pct
            });
        }
    }
    if d.low_grade {
        let deadline = (LOW_GRADE_DEADLINE_MS / t).max(2);
        d.low_grade_late = d.time_to_name.is_none_or(|k| k > deadline);
    }
    // HealthIndicator runs over the fault's window.
    let blamed = |i: u64| {
        by_iv.get(&i).is_some_and(|vs| {
            vs.iter().any(|v| {
                v.blame == Blame::Network
                    && (v.component == f.component || related.contains(&v.component))
            })
        })
    };
    let raised = |i: u64| (i.saturating_sub(hold_down(t))..=i).any(blamed);
    let end = (last + grid.grace).min(grid.n.saturating_sub(1));
    let mut prev = false;
    for i in first..=end.max(first) {
        let r = raised(i);
        if r && !prev {
            d.hi_incidents += 1;
        }
        prev = r;
    }
    d
}
