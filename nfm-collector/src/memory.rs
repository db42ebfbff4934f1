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

/// Reads resident memory and sets `Metrics::memory_pressure`.
#[derive(Debug, Clone, Copy)]
pub struct Governor {
    budget: u64,
}

impl Governor {
    /// `budget_bytes` 0: no budget (the gauge is still published).
    pub fn new(budget_bytes: u64) -> Governor {
        Governor {
            budget: budget_bytes,
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
    pub fn update(&self, m: &Metrics) -> bool {
        let Some(rss) = self.resident() else {
            return false;
        };
        m.memory_resident_bytes.store(rss, Ordering::Relaxed);
        self.judge(rss, m)
    }

    fn judge(&self, rss: u64, m: &Metrics) -> bool {
        if self.budget == 0 {
            m.memory_pressure.store(0, Ordering::Relaxed);
            return false;
        }
        let was = m.memory_pressure.load(Ordering::Relaxed) == 1;
        let now = if was {
            rss as f64 > LOW * self.budget as f64
        } else {
            rss as f64 > HIGH * self.budget as f64
        };
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
        let g = Governor::new(1000 << 20);
        assert!(!g.judge(850 << 20, &m));
        assert!(g.judge(910 << 20, &m));
        // Still refusing until well below the budget.
        assert!(g.judge(800 << 20, &m));
        assert!(!g.judge(700 << 20, &m));
        assert_eq!(m.memory_pressure.load(Ordering::Relaxed), 0);
        // No budget: never.
        assert!(!Governor::new(0).judge(u64::MAX, &m));
        // This process has resident memory.
        assert!(g.resident().is_some_and(|r| r > 0));
    }
}
