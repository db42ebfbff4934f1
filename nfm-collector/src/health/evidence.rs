//! The evidence a verdict carries: the pooled baseline against the pooled observed value of each
//! metric over the flows the verdict explains (docs/health.md §5).

use super::judge::{metric, Judged, Obs, State};
use crate::model::MetricChange;

/// Evidence sums over the degraded flows a verdict explains.
#[derive(Debug, Default, Clone, Copy)]
pub struct EvidenceAcc {
    rtt_n: f64,
    rtt_base: f64,
    rtt_obs: f64,
    segs_r: f64,
    exp_r: f64,
    obs_r: f64,
    segs_t: f64,
    exp_t: f64,
    obs_t: f64,
    att: f64,
    exp_f: f64,
    obs_f: f64,
    hs_n: f64,
    hs_base: f64,
    hs_obs: f64,
    pub two_view: u32,
    pub agree: u32,
}

impl EvidenceAcc {
    pub fn add(&mut self, o: &Obs, j: &Judged) {
        if j.metrics & metric::RTT != 0 {
            self.rtt_n += 1.0;
            self.rtt_base += j.rtt_base as f64;
            self.rtt_obs += o.rtt_us().unwrap_or(0.0);
        }
        if j.metrics & metric::RETRANS != 0 {
            self.segs_r += o.segs as f64;
            self.exp_r += o.segs as f64 * j.p_retrans as f64;
            self.obs_r += o.retrans as f64;
        }
        if j.metrics & metric::TIMEOUT != 0 {
            self.segs_t += o.segs as f64;
            self.exp_t += o.segs as f64 * j.p_timeout as f64;
            self.obs_t += o.rto as f64;
        }
        if j.metrics & metric::FAILED != 0 {
            self.att += o.attempts as f64;
            self.exp_f += o.attempts as f64 * j.p_failed as f64;
            self.obs_f += o.failed as f64;
        }
        if o.views == 2 && j.loss == State::Degraded {
            self.two_view += 1;
            self.agree += j.views_agree as u32;
        }
    }

    /// A flow whose handshakes were slow: its handshake time against its path's baseline.
    pub fn add_handshake(&mut self, o: &Obs, hs: &super::handshake::HsJudged) {
        if hs.state == State::Degraded && o.hs_count > 0 {
            self.hs_n += 1.0;
            self.hs_base += hs.base_us as f64;
            self.hs_obs += o.hs_sum_us / o.hs_count as f64;
        }
    }

    /// A flow counted for a pooled verdict: its retransmissions against its expectation.
    pub fn add_pooled(&mut self, o: &Obs, j: &Judged) {
        if j.metrics & metric::RETRANS == 0 {
            self.segs_r += o.segs as f64;
            self.exp_r += o.segs as f64 * j.p_retrans as f64;
            self.obs_r += o.retrans as f64;
        }
    }

    pub fn changes(&self) -> Vec<MetricChange> {
        let mut v = Vec::new();
        let mut push = |metric: &str, n: f64, base: f64, obs: f64| {
            if n > 0.0 {
                v.push(MetricChange {
                    metric: metric.to_string(),
                    baseline: base / n,
                    observed: obs / n,
                });
            }
        };
        push("rtt_us", self.rtt_n, self.rtt_base, self.rtt_obs);
        push("handshake_us", self.hs_n, self.hs_base, self.hs_obs);
        push("retrans_rate", self.segs_r, self.exp_r, self.obs_r);
        push("timeout_rate", self.segs_t, self.exp_t, self.obs_t);
        push("failed_connect_rate", self.att, self.exp_f, self.obs_f);
        v
    }
}
