//! How the agents of a real fleet disagree about time, so that every run tests what a real
//! fleet sends rather than the lock-step intervals a simulator finds easiest. Each host's clock is
//! off by a fixed offset and drifts (skew); each interval's stamps jitter by a few milliseconds;
//! agents come up at different times, and some restart mid-run (an outage of whole intervals, then
//! a new session). On by default; `ClockModel::aligned()` is the old lock-step fleet.
//!
//! Everything is drawn from the run's seed and the agent's index only, so a run stays
//! reproducible and the offline scorer sees the same agents up and down as a live run.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// The fleet-wide parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockModel {
    /// Each host's clock offset is drawn uniformly from ±this.
    pub max_offset_ms: u64,
    /// Each host's clock rate error is drawn uniformly from ±this (parts per million).
    pub max_skew_ppm: f64,
    /// Each interval's start and end stamps move by up to ±this (a late or early tick).
    pub jitter_ms: u64,
    /// Agents start within the first this many intervals (0: all present from interval 0).
    pub join_within: u64,
    /// Share of agents that restart once mid-run.
    pub restart_share: f64,
    /// A restart keeps the agent away for 1 to this many intervals.
    pub max_outage: u64,
}

impl Default for ClockModel {
    /// A fleet without tight time sync: offsets up to ±600 ms and ±4 ppm of drift (0.35 s a
    /// day), so that a day's run stays inside the collector's ±1 s skew tolerance while still
    /// exercising it; a few ms of tick jitter; agents joining over the first 3 intervals and one
    /// in ten restarting once for up to 2 intervals.
    fn default() -> Self {
        ClockModel {
            max_offset_ms: 600,
            max_skew_ppm: 4.0,
            jitter_ms: 5,
            join_within: 3,
            restart_share: 0.1,
            max_outage: 2,
        }
    }
}

impl ClockModel {
    /// Lock-step agents: no offset, drift, jitter, late joins or restarts.
    pub fn aligned() -> ClockModel {
        ClockModel {
            max_offset_ms: 0,
            max_skew_ppm: 0.0,
            jitter_ms: 0,
            join_within: 0,
            restart_share: 0.0,
            max_outage: 0,
        }
    }

    pub fn is_aligned(&self) -> bool {
        *self == ClockModel::aligned()
    }

    /// Every agent's clock and schedule for a run of `intervals` intervals (`None`: open-ended,
    /// then nobody restarts).
    pub fn agents(&self, n: usize, seed: u64, intervals: Option<u64>) -> Vec<AgentClock> {
        (0..n)
            .map(|a| {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                    seed ^ (a as u64).wrapping_mul(0xa076_1d64_78bd_642f) ^ 0xc10c,
                );
                let off = self.max_offset_ms as i64;
                let offset_ms = if off > 0 {
                    rng.random_range(-off..=off)
                } else {
                    0
                };
                let skew_ppm = if self.max_skew_ppm > 0.0 {
                    rng.random_range(-self.max_skew_ppm..=self.max_skew_ppm)
                } else {
                    0.0
                };
                let join = if self.join_within > 0 {
                    rng.random_range(0..self.join_within)
                } else {
                    0
                };
                let mut outage = None;
                if let Some(total) = intervals {
                    let restarts = self.restart_share > 0.0 && rng.random_bool(self.restart_share);
                    // Room for the outage and a few intervals either side of it.
                    if restarts && self.max_outage > 0 && total > join + self.max_outage + 6 {
                        let len = rng.random_range(1..=self.max_outage);
                        let at = rng.random_range(join + 3..total - len - 2);
                        outage = Some((at, at + len));
                    }
                }
                AgentClock {
                    offset_ms,
                    skew_ppm,
                    jitter_ms: self.jitter_ms,
                    join,
                    outage,
                    seed: seed ^ ((a as u64) << 17),
                }
            })
            .collect()
    }
}

/// One agent's clock and when it is up.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentClock {
    pub offset_ms: i64,
    pub skew_ppm: f64,
    pub jitter_ms: u64,
    /// First interval the agent reports.
    pub join: u64,
    /// `[from, to)`: intervals the agent misses while it restarts (it reports again from `to`,
    /// as a new session).
    pub outage: Option<(u64, u64)>,
    seed: u64,
}

impl AgentClock {
    /// Whether the agent reports interval `k`.
    pub fn up(&self, k: u64) -> bool {
        k >= self.join && !self.outage.is_some_and(|(a, b)| (a..b).contains(&k))
    }

    /// Whether interval `k` is the first of a new session (a join or the end of an outage).
    pub fn starts_session(&self, k: u64) -> bool {
        k == self.join || self.outage.is_some_and(|(_, b)| b == k)
    }

    /// Whether the agent went away after interval `k - 1` (it says Goodbye, as a stopped agent
    /// does).
    pub fn leaves_before(&self, k: u64) -> bool {
        self.outage.is_some_and(|(a, _)| a == k)
    }

    /// This host's reading of true time `t_ms`, `run_start_ms` being when its drift began.
    pub fn local(&self, t_ms: u64, run_start_ms: u64) -> u64 {
        let drift = (t_ms.saturating_sub(run_start_ms)) as f64 * self.skew_ppm / 1e6;
        (t_ms as i64 + self.offset_ms + drift.round() as i64).max(0) as u64
    }

    /// The stamps the agent puts on true interval `k` = `[s, e)`: its own clock's reading of
    /// the bounds, each moved by the tick's jitter (the end of interval k and the start of
    /// k + 1 are the same tick).
    pub fn stamp(&self, k: u64, (s, e): (u64, u64), run_start_ms: u64) -> (u64, u64) {
        let j = |tick: u64| -> i64 {
            if self.jitter_ms == 0 {
                return 0;
            }
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                self.seed ^ tick.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x71c,
            );
            let m = self.jitter_ms as i64;
            rng.random_range(-m..=m)
        };
        let a = (self.local(s, run_start_ms) as i64 + j(k)).max(0) as u64;
        let b = (self.local(e, run_start_ms) as i64 + j(k + 1)).max(0) as u64;
        (a, b.max(a + 1))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_aligned_model_is_lock_step() {
        let c = ClockModel::aligned().agents(5, 7, Some(100));
        for a in &c {
            assert_eq!(a.stamp(3, (15_000, 20_000), 0), (15_000, 20_000));
            assert!((0..100).all(|k| a.up(k)));
            assert!(a.starts_session(0));
        }
    }

    #[test]
    fn test_default_model_spreads_clocks_within_tolerance() {
        let m = ClockModel::default();
        let c = m.agents(200, 1, Some(1440));
        let start = 1_800_000_000_000u64;
        let offsets: Vec<i64> = c.iter().map(|a| a.offset_ms).collect();
        assert!(offsets.iter().any(|&o| o > 300) && offsets.iter().any(|&o| o < -300));
        // A day later every stamp is still within 1 s of true time.
        for a in &c {
            let (s, e) = (start + 86_340_000, start + 86_400_000);
            let (ls, le) = a.stamp(1439, (s, e), start);
            assert!(ls.abs_diff(s) < 1_000 && le.abs_diff(e) < 1_000, "{a:?}");
            // Jitter moves lengths by a few ms, never more.
            assert!((le - ls).abs_diff(e - s) <= 2 * m.jitter_ms + 1);
        }
        // Joins spread over the first intervals; about one in ten restarts once.
        assert!(c.iter().any(|a| a.join > 0));
        let restarts = c.iter().filter(|a| a.outage.is_some()).count();
        assert!((5..=40).contains(&restarts), "{restarts}");
        for a in c.iter().filter(|a| a.outage.is_some()) {
            let (x, y) = a.outage.unwrap();
            assert!(a.up(x - 1) && !a.up(x) && a.up(y) && a.starts_session(y));
            assert!(a.leaves_before(x));
        }
        // Same seed, same fleet.
        assert_eq!(c, m.agents(200, 1, Some(1440)));
    }

    #[test]
    fn test_consecutive_stamps_share_the_tick() {
        let c = ClockModel::default().agents(3, 9, None);
        for a in &c {
            let (_, e0) = a.stamp(4, (20_000, 25_000), 0);
            let (s1, _) = a.stamp(5, (25_000, 30_000), 0);
            assert_eq!(e0, s1);
        }
    }
}
