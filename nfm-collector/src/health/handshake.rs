//! The handshake-time family: a server slow to answer new connections (an accept queue backing
//! up, a starved listener) while round trips are unchanged is an endpoint's trouble, never the
//! network's (docs/health.md §3, "Handshake time").
//!
//! Per path, an exponentially weighted mean and variance of `ln(handshake / RTT)`: the
//! interval's mean handshake time (over connections whose handshake was not retried: a retried
//! SYN is loss and belongs to the loss family) over its mean RTT, so that a path whose round
//! trips slow down (congestion, a longer route) does not look like a slow endpoint. Learned
//! from intervals in which the path was not judged slow. A flow is slow when the ratio is above
//! the baseline by more than `max(rtt_z × sigma, ln(1 + rtt_min_rise))` in log terms and the
//! handshake is more than one round trip (and `rtt_min_rise_us`) longer than the baseline ratio
//! predicts, with its RTT not degraded (the latency family's business). The family names endpoints only (hosts,
//! services).

use super::judge::{Obs, State};
use super::HealthConfig;
use rustc_hash::FxHashMap;

/// History weight of the running mean and variance (about ten intervals).
const DECAY: f32 = 0.9;
/// Handshakes in an interval at which a flow counts fully as evidence.
const FULL_WEIGHT: f32 = 3.0;

#[derive(Debug, Clone, Copy, Default)]
struct Baseline {
    mean: f32,
    var: f32,
    n: u16,
    seq: u32,
}

/// One flow's handshake judgement.
#[derive(Debug, Clone, Copy, Default)]
pub struct HsJudged {
    pub state: State,
    pub w: f32,
    /// The baseline handshake time (µs), when judged.
    pub base_us: f32,
}

/// Per-path handshake baselines (only paths that open connections).
#[derive(Debug, Default)]
pub struct Handshakes {
    paths: FxHashMap<u64, Baseline>,
}

/// `ln(handshake / RTT)` of an observation with both.
fn log_ratio(o: &Obs) -> Option<f32> {
    let rtt = o.rtt_us()?.max(1.0);
    let hs = (o.hs_sum_us / o.hs_count.max(1) as f64).max(1.0);
    (o.hs_count > 0).then(|| (hs / rtt).ln() as f32)
}

impl Handshakes {
    /// Judges every observation; `rtt_degraded(i)`: observation `i`'s RTT is degraded (then its
    /// handshake says nothing of its own).
    pub fn judge(
        &self,
        obs: &[Obs],
        rtt_degraded: impl Fn(usize) -> bool,
        cfg: &HealthConfig,
        out: &mut Vec<HsJudged>,
    ) {
        out.clear();
        out.reserve(obs.len());
        for (i, o) in obs.iter().enumerate() {
            let mut j = HsJudged::default();
            let x = log_ratio(o);
            let base = x
                .and_then(|_| self.paths.get(&o.key))
                .filter(|b| b.n as usize >= cfg.rtt_min_history);
            if let (Some(b), Some(x)) = (base, x) {
                let w = (o.hs_count as f32 / FULL_WEIGHT).min(1.0);
                let sd = b.var.max(0.0).sqrt().max(cfg.rtt_sigma_floor as f32);
                let margin = (cfg.rtt_z as f32 * sd).max((1.0 + cfg.rtt_min_rise as f32).ln());
                let rtt = o.rtt_us().unwrap_or(1.0) as f32;
                let hs = (o.hs_sum_us / o.hs_count as f64) as f32;
                // The handshake this RTT predicts on this path.
                j.base_us = b.mean.exp() * rtt;
                if w >= cfg.min_weight && !rtt_degraded(i) {
                    // Slower than predicted by more than a whole extra round trip: what a path's
                    // own variability never adds to a handshake, and an endpoint's queue does.
                    let rise = hs - j.base_us;
                    if x > b.mean + margin && rise > rtt.max(cfg.rtt_min_rise_us as f32) {
                        j.state = State::Degraded;
                        j.w = 1.0;
                    } else {
                        j.state = State::Healthy;
                        j.w = w;
                    }
                }
            }
            out.push(j);
        }
    }

    /// Learns the handshake times of observations not judged slow and not `skip`ped; forgets
    /// paths idle for `path_idle_intervals` every 64 intervals, and learns no new path past
    /// `max_paths`.
    pub fn learn(
        &mut self,
        obs: &[Obs],
        judged: &[HsJudged],
        skip: &[bool],
        seq: u32,
        cfg: &HealthConfig,
    ) {
        for ((o, j), &s) in obs.iter().zip(judged).zip(skip) {
            let Some(x) = log_ratio(o) else { continue };
            if s || j.state == State::Degraded {
                continue;
            }
            if self.paths.len() >= cfg.max_paths && !self.paths.contains_key(&o.key) {
                continue;
            }
            let b = self.paths.entry(o.key).or_default();
            if b.n == 0 {
                b.mean = x;
                b.var = 0.0;
            } else {
                let d = x - b.mean;
                b.mean += (1.0 - DECAY) * d;
                b.var = DECAY * (b.var + (1.0 - DECAY) * d * d);
            }
            b.n = b.n.saturating_add(1);
            b.seq = seq;
        }
        if seq.is_multiple_of(64) {
            let idle = cfg.path_idle_intervals;
            self.paths.retain(|_, b| seq.saturating_sub(b.seq) <= idle);
        }
    }
}
