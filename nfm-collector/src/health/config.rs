//! The health evaluator's configuration: every threshold, prior and warm-up rule in one
//! place, each documented in docs/health.md, so that a config file (`--health-config`) may set
//! any subset.

use serde::Deserialize;

/// Thresholds and warm-up rules (each documented in docs/health.md). `#[serde(default)]`: a
/// config file may set any subset.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Per-interval decay of the pooled count baselines (0.95: a half-life of ~14 intervals).
    pub rate_decay: f32,
    /// Pseudo-segments of the class rate mixed into a path's rate (Bayesian shrinkage).
    pub path_prior_segments: f64,
    pub path_prior_attempts: f64,
    /// Pseudo-segments of the global rate mixed into a class's rate.
    pub class_prior_segments: f64,
    pub class_prior_attempts: f64,
    /// Rates assumed before anything is learned (also floors for the cold-start estimate).
    pub default_retrans_rate: f64,
    pub default_timeout_rate: f64,
    pub default_failed_rate: f64,
    /// Floors under any expected rate, so a spotless path still tolerates a stray event.
    pub min_retrans_rate: f64,
    pub min_timeout_rate: f64,
    pub min_failed_rate: f64,
    /// A count is degraded when P(X ≥ k | baseline) is below this ...
    pub flow_p_value: f64,
    /// ... and the observed rate is at least `baseline + max((ratio − 1) × baseline, excess)`.
    pub min_rate_ratio: f64,
    pub min_excess_retrans: f64,
    pub min_excess_timeout: f64,
    pub min_excess_failed: f64,
    /// The loss rate a healthy flow is weighed against: it counts as loss evidence with the
    /// probability that loss at this rate would have shown on its segments (SYNs included) as
    /// the two retransmissions a degraded verdict needs at least.
    pub loss_reference_rate: f64,
    /// RTT samples at which a flow counts fully as latency evidence.
    pub full_weight_rtt_samples: f32,
    /// Below this weight a flow is inconclusive.
    pub min_weight: f32,
    /// Intervals of a path's own RTT history before it is judged against itself, not its class.
    pub rtt_min_history: usize,
    /// RTT is degraded above `median + max(z × sigma, rise × median, rise_us)`.
    pub rtt_z: f64,
    pub rtt_min_rise: f64,
    pub rtt_min_rise_us: f64,
    /// Floor of sigma relative to the median (a perfectly steady path still has jitter).
    pub rtt_sigma_floor: f64,
    /// Flows needed in a class to learn (or, cold, use) its cross-section.
    pub cross_section_min_flows: usize,
    /// A component newly named needs this many degraded flows, this weight, this purity.
    pub new_min_flows: u32,
    pub new_min_weight: f32,
    pub new_min_purity: f32,
    /// ... and this log-likelihood ratio against the background (docs/health.md §4).
    pub new_min_llr: f32,
    /// A component named in the previous interval stays named with these (hysteresis).
    pub keep_min_flows: u32,
    pub keep_min_weight: f32,
    pub keep_min_purity: f32,
    pub keep_min_llr: f32,
    /// At most this many components named per interval and symptom family.
    pub max_verdicts: usize,
    /// A named component's incident stays open this long after the last interval that named it
    /// (docs/health.md §5): named again within it, the incident goes on (same `first_seen_ms`,
    /// one more flap), and monitors whose flows cross an open network incident keep their
    /// HealthIndicator raised through the good intervals of a flap.
    pub incident_hold_down: crate::model::HoldDown,
    /// Pooled loss evidence (docs/health.md §4, "Low-grade loss"): the extra loss rate the per-component CUSUM
    /// tests for, the level at which it names a component, the cap on the level (× threshold,
    /// and at most this many healthy intervals above the threshold), the flows a component
    /// needs in an interval to gain evidence, and the share of the threshold above which its
    /// flows are not learned from (under suspicion).
    pub pooled_loss_rate: f64,
    pub pooled_threshold: f64,
    pub pooled_cap: f64,
    pub pooled_linger: f64,
    pub pooled_min_flows: u32,
    pub pooled_suspicion: f64,
    /// Failed connects pooled the same way (`pooled::Family::Connect`): the extra share of
    /// connection attempts failing that the statistic tests for, its threshold, and the flows
    /// with attempts a component needs in an interval (the runner-up rule still wants two
    /// failing flows).
    pub pooled_connect_rate: f64,
    pub pooled_connect_threshold: f64,
    pub pooled_connect_min_flows: u32,
    /// Slow handshakes pooled too (`pooled::Family::Handshake`, endpoints only, with the
    /// connect statistic's threshold and flows): the share of a component's judged flows with
    /// slow handshakes that the statistic tests for, against 1 % by chance.
    pub pooled_handshake_share: f64,
    /// Paths unseen this many intervals are forgotten; at most `max_paths` are learned.
    pub path_idle_intervals: u32,
    pub max_paths: usize,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            rate_decay: 0.95,
            path_prior_segments: 2_000.0,
            path_prior_attempts: 20.0,
            class_prior_segments: 20_000.0,
            class_prior_attempts: 200.0,
            default_retrans_rate: 0.001,
            default_timeout_rate: 0.000_1,
            default_failed_rate: 0.005,
            min_retrans_rate: 0.000_5,
            min_timeout_rate: 0.000_05,
            min_failed_rate: 0.002,
            flow_p_value: 1e-3,
            min_rate_ratio: 2.0,
            min_excess_retrans: 0.002,
            min_excess_timeout: 0.000_5,
            min_excess_failed: 0.1,
            loss_reference_rate: 0.01,
            full_weight_rtt_samples: 3.0,
            min_weight: 0.05,
            rtt_min_history: 4,
            rtt_z: 2.75,
            rtt_min_rise: 0.13,
            rtt_min_rise_us: 150.0,
            rtt_sigma_floor: 0.05,
            cross_section_min_flows: 5,
            new_min_flows: 3,
            new_min_weight: 2.0,
            new_min_purity: 0.3,
            new_min_llr: 8.0,
            keep_min_flows: 2,
            keep_min_weight: 1.5,
            keep_min_purity: 0.2,
            keep_min_llr: 4.0,
            max_verdicts: 16,
            incident_hold_down: crate::model::HoldDown::default(),
            pooled_loss_rate: 0.004,
            pooled_threshold: 14.0,
            pooled_cap: 1.5,
            pooled_linger: 1.5,
            pooled_min_flows: 5,
            pooled_suspicion: 0.5,
            pooled_connect_rate: 0.2,
            pooled_connect_threshold: 8.0,
            pooled_connect_min_flows: 2,
            pooled_handshake_share: 0.5,
            path_idle_intervals: 1440,
            max_paths: 2_000_000,
        }
    }
}
