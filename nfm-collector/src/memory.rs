//! The collector's memory budget: resident memory is read on every tick, and above the budget
//! ingest refuses new FlowBatch frames (`overloaded`, before they are aggregated or marked
//! seen, so the agent resends them later and nothing is lost or counted twice) until it is
//! back well under it. Overload is met with back-pressure instead of growth; every other cap
//! (flows, ingest buffers, store backlog, history) keeps its share below the budget.

use crate::metrics::Metrics;
use std::sync::atomic::Ordering;

/// Refusing starts above this share of the budget ...
const HIGH: f64 = 0.90;
/// ... and stops below this one (hysteresis: freed memory reaches the kernel only after the
/// allocator's purge delay, `alloc::PURGE_DELAY_MS`).
const LOW: f64 = 0.75;

/// Refusing that frees nothing is not back-pressure: after this long over the budget with
/// nothing in flight (memory held by what the collector keeps, such as a flood's flows and
/// caches, not by work in progress), it stops refusing and takes the present level as its floor
/// (logged as an error: the budget is too small for what this collector holds).
const STUCK: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads resident memory and sets `Metrics::memory_pressure`.
#[derive(Debug, Clone, Copy)]
pub struct Governor {
    budget: u64,
    /// Resident memory the collector holds at rest, once refusing did not bring it down.
    floor: u64,
    since: Option<std::time::Instant>,
}

impl Governor {
    /// `budget_bytes` 0: no budget (the gauge is still published).
    pub fn new(budget_bytes: u64) -> Governor {
        Governor {
            budget: budget_bytes,
            floor: 0,
            since: None,
        }
    }

    /// Resident bytes of this process (`VmRSS` in `/proc/self/status`), if readable.
    pub fn resident(&self) -> Option<u64> {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib << 10)
    }

    /// One reading: publishes it and moves the pressure flag. Returns whether ingest refuses.
    pub fn update(&mut self, m: &Metrics) -> bool {
        let Some(rss) = self.resident() else {
            return false;
        };
        m.memory_resident_bytes.store(rss, Ordering::Relaxed);
        self.judge(rss, m, std::time::Instant::now())
    }

    fn judge(&mut self, rss: u64, m: &Metrics, at: std::time::Instant) -> bool {
        if self.budget == 0 {
            m.memory_pressure.store(0, Ordering::Relaxed);
            return false;
        }
        let was = m.memory_pressure.load(Ordering::Relaxed) == 1;
        // The floor (what it holds at rest) moves the thresholds up by as much.
        let (high, low) = (
            HIGH * self.budget as f64 + self.floor as f64,
            LOW * self.budget as f64 + self.floor as f64,
        );
        let mut now = if was {
            rss as f64 > low
        } else {
            rss as f64 > high
        };
        if now {
            let since = *self.since.get_or_insert(at);
            let idle = m.records_in_flight.load(Ordering::Relaxed) == 0
                && m.store_pending_bytes.load(Ordering::Relaxed) == 0;
            if idle && at.saturating_duration_since(since) >= STUCK {
                self.floor = rss.saturating_sub((LOW * self.budget as f64) as u64);
                log::error!(
                    "memory: {} MiB resident after {}s of refusing with nothing in flight: what the collector holds does not fit the {} MiB budget; accepting again above that",
                    rss >> 20,
                    STUCK.as_secs(),
                    self.budget >> 20
                );
                now = false;
            }
        } else {
            self.since = None;
        }
        if now != was {
            if now {
                log::warn!(
                    "memory: {} MiB resident, over {:.0} % of the {} MiB budget: refusing new batches until it drops",
                    rss >> 20,
                    HIGH * 100.0,
                    self.budget >> 20
                );
            } else {
                log::info!(
                    "memory: {} MiB resident, accepting batches again",
                    rss >> 20
                );
            }
        }
        m.memory_pressure.store(now as u64, Ordering::Relaxed);
        now
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_pressure_has_hysteresis() {
        let m = Metrics::default();
        let mut g = Governor::new(1000 << 20);
        let t = std::time::Instant::now();
        // Work in flight: refusing is back-pressure, however long it takes.
        m.records_in_flight.store(10, Ordering::Relaxed);
        assert!(!g.judge(850 << 20, &m, t));
        assert!(g.judge(910 << 20, &m, t));
        // Still refusing until well below the budget.
        assert!(g.judge(800 << 20, &m, t + STUCK * 2));
        assert!(!g.judge(700 << 20, &m, t + STUCK * 2));
        assert_eq!(m.memory_pressure.load(Ordering::Relaxed), 0);
        // No budget: never.
        assert!(!Governor::new(0).judge(u64::MAX, &m, t));
        // This process has resident memory.
        assert!(g.resident().is_some_and(|r| r > 0));
    }

    /// Over the budget with nothing in flight (held, not in progress): refusing stops after
    /// `STUCK` and the level held becomes the floor, so a flood's leftovers cannot lock agents
    /// out; growth above it is refused again.
    #[test]
    fn test_refusing_that_frees_nothing_stops() {
        let m = Metrics::default();
        let mut g = Governor::new(1000 << 20);
        let t = std::time::Instant::now();
        assert!(g.judge(950 << 20, &m, t));
        assert!(g.judge(950 << 20, &m, t + STUCK / 2));
        assert!(!g.judge(950 << 20, &m, t + STUCK));
        assert!(!g.judge(1_000 << 20, &m, t + STUCK * 2));
        // 200 MiB more than it held: refused again.
        assert!(g.judge(1_150 << 20, &m, t + STUCK * 3));
    }
}
