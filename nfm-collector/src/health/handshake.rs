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

/// History weight of the running mean and variance (about ten intervals).
const DECAY: f32 = 0.9;
/// Handshakes in an interval at which a flow counts fully as evidence.
const FULL_WEIGHT: f32 = 3.0;

/// One path's handshake baseline (kept in the path's baseline, `judge::PathBaseline`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline {
    mean: f32,
    var: f32,
    n: u16,
}

/// One flow's handshake judgement.
#[derive(Debug, Clone, Copy, Default)]
pub struct HsJudged {
    pub state: State,
    pub w: f32,
    /// The handshake time (µs) the path's baseline predicts at this RTT, when judged.
    pub base_us: f32,
}

/// `ln(handshake / RTT)` of an observation with both.
fn log_ratio(o: &Obs) -> Option<f32> {
    let rtt = o.rtt_us()?.max(1.0);
    let hs = (o.hs_sum_us / o.hs_count.max(1) as f64).max(1.0);
    (o.hs_count > 0).then(|| (hs / rtt).ln() as f32)
}

/// Judges one observation against its path's baseline (`None`: a new path); `rtt_degraded`:
/// its RTT is degraded (then its handshake says nothing of its own).
pub fn judge(b: Option<&Baseline>, o: &Obs, rtt_degraded: bool, cfg: &HealthConfig) -> HsJudged {
    let mut j = HsJudged::default();
    let Some(x) = log_ratio(o) else { return j };
    let Some(b) = b.filter(|b| b.n as usize >= cfg.rtt_min_history) else {
        return j;
    };
    let w = (o.hs_count as f32 / FULL_WEIGHT).min(1.0);
    let sd = b.var.max(0.0).sqrt().max(cfg.rtt_sigma_floor as f32);
    let margin = (cfg.rtt_z as f32 * sd).max((1.0 + cfg.rtt_min_rise as f32).ln());
    let rtt = o.rtt_us().unwrap_or(1.0) as f32;
    let hs = (o.hs_sum_us / o.hs_count as f64) as f32;
    j.base_us = b.mean.exp() * rtt;
    if w >= cfg.min_weight && !rtt_degraded {
        // Slower than predicted by more than a whole extra round trip: what a path's own
        // variability never adds to a handshake, and an endpoint's queue does.
        let rise = hs - j.base_us;
        if x > b.mean + margin && rise > rtt.max(cfg.rtt_min_rise_us as f32) {
            j.state = State::Degraded;
            j.w = 1.0;
        } else {
            j.state = State::Healthy;
            j.w = w;
        }
    }
    j
}

/// Learns an observation not judged slow into its path's baseline.
pub fn learn(b: &mut Baseline, o: &Obs, j: &HsJudged) {
    if j.state == State::Degraded {
        return;
    }
    let Some(x) = log_ratio(o) else { return };
    if b.n == 0 {
        b.mean = x;
        b.var = 0.0;
    } else {
        let d = x - b.mean;
        b.mean += (1.0 - DECAY) * d;
        b.var = DECAY * (b.var + (1.0 - DECAY) * d * d);
    }
    b.n = b.n.saturating_add(1);
}
