//! Incident open and resolve events for notifications (issue 15). The health evaluator names
//! components per interval and groups the namings of one component into an incident (same
//! `first_seen_ms` through flaps; resolved once `hold_down` intervals pass without a naming:
//! docs/health.md §5). [`Tracker`] follows the verdicts in interval order and says when an
//! incident opens and when it resolves, by the same rule as the evaluator, so that one POST
//! goes out for each.
//!
//! Maintenance: an incident that opens while a maintenance window covers the interval is not
//! announced; if it is still open at the first interval outside every window, it is announced
//! then. One never announced is not announced as resolved either. Each event kept back is
//! counted as suppressed.
//!
//! Restarts: the announced open incidents are saved (`DATA_DIR/incidents.json`, crash-safe)
//! whenever they change. After a restart the evaluator starts afresh and gives a component it
//! names again a new `first_seen_ms`; a restored incident named again within the hold-down of
//! its last naming goes on (no second `opened`), and one not named again is resolved (its
//! `resolved` is sent), so every `opened` gets its `resolved` across restarts.

use crate::model::{ComponentId, Verdict};
use crate::pipeline::{IncidentEvent, IncidentState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Open {
    first_seen_ms: u64,
    last_named_ms: u64,
    intervals_named: u64,
    verdict: Verdict,
    announced: bool,
    simulated: bool,
    /// Restored after a restart: the evaluator's `first_seen_ms` for it will differ.
    #[serde(default)]
    restored: bool,
}

/// Open incidents by component.
#[derive(Debug, Default)]
pub struct Tracker {
    open: BTreeMap<ComponentId, Open>,
    /// Events kept back by maintenance windows.
    pub suppressed: u64,
    /// Where the announced open incidents are saved (None: not saved).
    path: Option<PathBuf>,
    /// The last save failed (counted by the caller, retried at the next interval).
    pub save_failed: bool,
    /// An announced incident changed since the last save.
    dirty: bool,
}

impl Tracker {
    /// A tracker whose announced open incidents are saved in `path`, restored from it if it
    /// exists (an unreadable file is logged and ignored).
    pub fn persistent(path: PathBuf) -> Tracker {
        let mut t = Tracker {
            path: Some(path.clone()),
            ..Tracker::default()
        };
        match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice::<Vec<Open>>(&b) {
                Ok(list) => {
                    for mut o in list {
                        o.restored = true;
                        t.open.insert(o.verdict.component.clone(), o);
                    }
                }
                Err(e) => log::error!("incidents {}: {e}; ignored", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::error!("incidents {}: {e}; ignored", path.display()),
        }
        t
    }

    fn save(&mut self) {
        let Some(p) = &self.path else {
            return;
        };
        let list: Vec<&Open> = self.open.values().filter(|o| o.announced).collect();
        let r = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| crate::persist::write_atomic(p, &b));
        self.save_failed = r.is_err();
        if let Err(e) = r {
            log::error!("incidents: cannot save {}: {e}", p.display());
        }
    }

    /// Open incidents.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Follows one judged interval `[start_ms, end_ms)` with its verdicts; `hold_down`: the
    /// evaluator's `incident_hold_down`; `maintenance`: a window covers the interval.
    /// Returns the events to announce, in order (resolutions first).
    pub fn update(
        &mut self,
        start_ms: u64,
        end_ms: u64,
        verdicts: &[Verdict],
        hold_down: crate::model::HoldDown,
        maintenance: bool,
        simulated: bool,
    ) -> Vec<IncidentEvent> {
        let len = end_ms.saturating_sub(start_ms);
        let hold = hold_down.ms_of(len);
        let mut out = Vec::new();
        for v in verdicts {
            match self.open.get_mut(&v.component) {
                Some(o)
                    if o.first_seen_ms == v.first_seen_ms
                        || (o.restored && v.interval_start_ms <= o.last_named_ms + len + hold) =>
                {
                    self.dirty |= o.announced;
                    o.last_named_ms = o.last_named_ms.max(v.interval_start_ms);
                    o.intervals_named += 1;
                    o.verdict = v.clone();
                    o.verdict.first_seen_ms = o.first_seen_ms;
                    o.simulated |= simulated;
                }
                _ => {
                    // A new incident (an earlier one of this component, if the evaluator has
                    // already started another, is over).
                    if let Some(old) = self.open.remove(&v.component) {
                        self.close(old, end_ms, maintenance, &mut out);
                    }
                    self.open.insert(
                        v.component.clone(),
                        Open {
                            first_seen_ms: v.first_seen_ms,
                            last_named_ms: v.interval_start_ms,
                            intervals_named: 1,
                            verdict: v.clone(),
                            announced: false,
                            simulated,
                            restored: false,
                        },
                    );
                }
            }
        }
        // Resolved: the hold-down after the last naming has run out (the evaluator's rule).
        let over: Vec<ComponentId> = self
            .open
            .iter()
            .filter(|(_, o)| end_ms > o.last_named_ms + len + hold)
            .map(|(c, _)| c.clone())
            .collect();
        for c in over {
            if let Some(o) = self.open.remove(&c) {
                self.close(o, end_ms, maintenance, &mut out);
            }
        }
        // Opened (or still open and not yet announced because of a maintenance window).
        for o in self.open.values_mut().filter(|o| !o.announced) {
            if maintenance {
                if o.last_named_ms == start_ms && o.intervals_named == 1 {
                    self.suppressed += 1;
                }
                continue;
            }
            o.announced = true;
            out.push(event(IncidentState::Opened, o, end_ms));
        }
        if self.dirty || !out.is_empty() || self.save_failed {
            self.dirty = false;
            self.save();
        }
        out
    }

    fn close(&mut self, o: Open, at_ms: u64, maintenance: bool, out: &mut Vec<IncidentEvent>) {
        if !o.announced {
            return;
        }
        self.dirty = true;
        if maintenance {
            self.suppressed += 1;
            return;
        }
        out.push(event(IncidentState::Resolved, &o, at_ms));
    }
}

fn event(state: IncidentState, o: &Open, at_ms: u64) -> IncidentEvent {
    IncidentEvent {
        state,
        first_seen_ms: o.first_seen_ms,
        last_named_ms: o.last_named_ms,
        at_ms,
        intervals_named: o.intervals_named,
        verdict: o.verdict.clone(),
        simulated: o.simulated,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::{Blame, HoldDown};

    // 60 s: the hold-down is its three intervals (at 5 s the three-minute minimum rules).
    const IV: u64 = 60_000;
    const HD: HoldDown = HoldDown {
        intervals: 3,
        min_ms: crate::model::INCIDENT_HOLD_DOWN_MIN_MS,
    };

    fn v(k: u64, first: u64) -> Verdict {
        Verdict {
            interval_start_ms: k * IV,
            component: "az-pair:a|b".parse().unwrap(),
            blame: Blame::Network,
            confidence: 0.9,
            degraded_flows: 5,
            healthy_flows: 1,
            evidence: vec![],
            first_seen_ms: first * IV,
        }
    }

    /// At 5 s a link down 45 s of every 3 minutes is one incident: the hold-down is at least
    /// three minutes, however short the interval.
    #[test]
    fn test_hold_down_is_at_least_three_minutes() {
        assert_eq!(crate::model::incident_hold_down_intervals(60_000), 3);
        assert_eq!(crate::model::incident_hold_down_intervals(5_000), 36);
        let mut t = Tracker::default();
        let mut opened = 0;
        for k in 0..180u64 {
            // 9 bad intervals of every 36.
            let bad = k % 36 < 9 && k < 144;
            let verdicts: Vec<Verdict> = if bad {
                vec![Verdict {
                    interval_start_ms: k * 5_000,
                    first_seen_ms: 0,
                    ..v(0, 0)
                }]
            } else {
                vec![]
            };
            for e in t.update(k * 5_000, (k + 1) * 5_000, &verdicts, HD, false, false) {
                opened += usize::from(e.state == IncidentState::Opened);
            }
        }
        assert_eq!(opened, 1);
    }

    /// Named in intervals 2, 3 and 5 (a flap: one incident), then quiet: one open event at
    /// interval 2, one resolve once three intervals pass after interval 5.
    #[test]
    fn test_one_open_and_one_resolve_through_a_flap() {
        let mut t = Tracker::default();
        let mut events = Vec::new();
        for k in 0..12u64 {
            let verdicts: Vec<Verdict> = match k {
                2 | 3 | 5 => vec![v(k, 2)],
                _ => vec![],
            };
            for e in t.update(k * IV, (k + 1) * IV, &verdicts, HD, false, false) {
                events.push((k, e.state, e.intervals_named));
            }
        }
        assert_eq!(
            events,
            vec![
                (2, IncidentState::Opened, 1),
                (9, IncidentState::Resolved, 3)
            ]
        );
        assert_eq!(t.open_count(), 0);
        assert_eq!(t.suppressed, 0);
    }

    /// A restart: the announced open incident is restored; the fresh evaluator names the
    /// component again within the hold-down with a new `first_seen_ms`: no second `opened`;
    /// quiet after that: one `resolved`, with the original `first_seen_ms`. Restored and never
    /// named again: resolved at the first interval past the hold-down.
    #[test]
    fn test_restart_keeps_one_open_and_one_resolve() {
        let dir = std::env::temp_dir().join(format!("nfm-incidents-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("incidents.json");
        let _ = std::fs::remove_file(&p);
        let mut t = Tracker::persistent(p.clone());
        let e = t.update(2 * IV, 3 * IV, &[v(2, 2)], HD, false, false);
        assert_eq!(e.len(), 1);
        t.update(3 * IV, 4 * IV, &[v(3, 2)], HD, false, false);
        drop(t);

        let mut t = Tracker::persistent(p.clone());
        assert_eq!(t.open_count(), 1);
        let mut events = Vec::new();
        for k in 4..12u64 {
            let verdicts = if k == 5 { vec![v(k, 5)] } else { vec![] };
            for e in t.update(k * IV, (k + 1) * IV, &verdicts, HD, false, false) {
                events.push((k, e.state, e.first_seen_ms, e.intervals_named));
            }
        }
        assert_eq!(events, vec![(9, IncidentState::Resolved, 2 * IV, 3)]);
        assert!(!t.save_failed);
        drop(t);

        // Saved with nothing open: a restart restores nothing.
        assert_eq!(Tracker::persistent(p.clone()).open_count(), 0);
        let mut t = Tracker::persistent(p.clone());
        t.update(0, IV, &[v(0, 0)], HD, false, false);
        drop(t);
        let mut t = Tracker::persistent(p.clone());
        let e = t.update(20 * IV, 21 * IV, &[], HD, false, false);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].state, IncidentState::Resolved);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An incident opening in a maintenance window is announced at the first interval after it
    /// while still open; one that opens and resolves within a window is never announced.
    #[test]
    fn test_maintenance_holds_back_and_announces_after() {
        let mut t = Tracker::default();
        let maint = |k: u64| k < 4;
        let mut events = Vec::new();
        for k in 0..6u64 {
            let verdicts = if k >= 1 { vec![v(k, 1)] } else { vec![] };
            for e in t.update(k * IV, (k + 1) * IV, &verdicts, HD, maint(k), false) {
                events.push((k, e.state));
            }
        }
        assert_eq!(events, vec![(4, IncidentState::Opened)]);
        assert_eq!(t.suppressed, 1);

        let mut t = Tracker::default();
        let mut n = 0;
        for k in 0..10u64 {
            let verdicts = if k == 1 { vec![v(k, 1)] } else { vec![] };
            n += t
                .update(k * IV, (k + 1) * IV, &verdicts, HD, true, false)
                .len();
        }
        assert_eq!(n, 0);
        assert_eq!(t.suppressed, 1, "one incident kept back");
        assert_eq!(t.open_count(), 0);
    }
}
