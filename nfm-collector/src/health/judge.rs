//! Per-flow judgement: merges the two ends' views of a flow into one observation, learns
//! per-path and per-class baselines, and marks each observation healthy, degraded or
//! inconclusive for two symptom families (loss: retransmissions, timeouts, failed connects;
//! latency: RTT).
//!
//! Why two families and an "inconclusive" state: a flow of 10 segments can neither show nor
//! rule out 1 % loss, but its RTT is still informative. Counting it as healthy evidence for
//! loss would let tiny flows contradict a real fault; counting a bulk flow's tiny excess as
//! degraded would let it dominate. Each family has its own weight per flow (docs/health.md).

use super::intern::Tables;
use super::stats::{
    median_mad, poisson_tail_below, DecayedRate, DigestMap, RobustWindow, MAD_TO_SIGMA,
};
use super::{HealthConfig, Paths};
use crate::model::{Category, ClosedInterval, FlowSample};
use nfm_wire::Role;
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// Bits of [`Judged::metrics`]: which tests flagged the observation.
pub mod metric {
    pub const RTT: u8 = 1;
    pub const RETRANS: u8 = 2;
    pub const TIMEOUT: u8 = 4;
    pub const FAILED: u8 = 8;
}

/// One flow in one interval as seen by one or both of its ends.
#[derive(Debug, Clone, Default)]
pub struct Obs {
    /// Indices into `ClosedInterval::flows`; `samples[1]` is valid when `views == 2`.
    pub samples: [u32; 2],
    /// Per view: its shared path's slot in the path cache, if shared.
    pub cached: [Option<u32>; 2],
    pub views: u8,
    /// The first sample's service port and category (kept here so that later passes need not
    /// read the sample again).
    pub port: u16,
    /// Always set (by the first view's `add`).
    pub category: Option<Category>,
    /// Path identity (local end, remote end, service port) for the baseline; set with the
    /// component graph (`attribute::Graph::build`).
    pub key: u64,
    /// Class identity (category and the component that spans the path); set likewise.
    pub class: u64,
    /// Where the path baseline was last interval, when still valid (saves a lookup).
    pub slot_hint: Option<u32>,
    pub segs: u64,
    pub retrans: u64,
    pub rto: u64,
    pub attempts: u64,
    pub failed: u64,
    /// Retransmissions and timeouts while connecting (SYN, SYN-ACK): with failed connects and
    /// nothing else, the symptom of an endpoint refusing work, not of loss on the path.
    pub handshake_events: u64,
    pub rtt_sum_us: f64,
    pub rtt_count: u64,
    /// Handshake times of connections whose handshake was not retried (a retried SYN is loss,
    /// not a slow endpoint), both views pooled.
    pub hs_sum_us: f64,
    pub hs_count: u64,
    /// Per view (retransmissions + timeouts, segments sent), for the two-view agreement.
    pub view_loss: [(u64, u64); 2],
}

impl Obs {
    pub fn rtt_us(&self) -> Option<f64> {
        (self.rtt_count > 0).then(|| self.rtt_sum_us / self.rtt_count as f64)
    }

    /// Adds one end's record. Saturating: counters from an agent are untrusted.
    fn add(&mut self, s: &FlowSample, view: usize) {
        let r = &s.record;
        if view == 0 {
            self.port = match r.role {
                Role::Client => r.remote_port,
                Role::Server => r.local_port,
            };
            self.category = Some(s.category);
        }
        let retrans = r
            .retrans
            .handshake
            .saturating_add(r.retrans.established)
            .saturating_add(r.retrans.closing);
        let rto = r
            .rto
            .handshake
            .saturating_add(r.rto.established)
            .saturating_add(r.rto.closing);
        let segs = exposure(r.segs_out, r.bytes_sent, r.conn_attempts, retrans, rto);
        self.segs = self.segs.saturating_add(segs);
        self.retrans = self.retrans.saturating_add(retrans);
        self.rto = self.rto.saturating_add(rto);
        // A failed connect is an attempt, whatever the agent counted as attempts.
        self.attempts = self
            .attempts
            .saturating_add(r.conn_attempts.max(r.conn_failed));
        self.failed = self.failed.saturating_add(r.conn_failed);
        self.handshake_events = self
            .handshake_events
            .saturating_add(r.retrans.handshake.saturating_add(r.rto.handshake));
        if r.handshake.count > 0 && r.retrans.handshake == 0 && r.rto.handshake == 0 {
            self.hs_sum_us += r.handshake.sum_us as f64;
            self.hs_count = self.hs_count.saturating_add(r.handshake.count);
        }
        if r.rtt.count > 0 {
            self.rtt_sum_us += r.rtt.sum_us as f64;
            self.rtt_count = self.rtt_count.saturating_add(r.rtt.count);
        }
        self.view_loss[view] = (
            retrans.saturating_add(rto),
            r.segs_out.max(retrans).max(rto),
        );
    }
}

/// MSS assumed to turn payload bytes into data segments (1500-byte MTU with TCP timestamps).
/// A larger real MSS only makes the estimate, and so the rate, more conservative.
const ASSUMED_MSS: u64 = 1448;

/// Control segments per connection attempt, per end, that are retransmitted when lost: the SYN
/// (on the server, the SYN-ACK) and the FIN. The handshake's last ACK, like every pure ACK, is
/// never retransmitted: its loss shows on no counter.
pub const CONTROL_SEGMENTS: u64 = 2;

/// Segments that could have been retransmitted, i.e. on which a loss would have shown as a
/// retransmission: the data segments the payload needed plus [`CONTROL_SEGMENTS`] per
/// connection plus the retransmissions themselves, capped by what the agent counted as sent.
/// Why not `segs_out` alone: it counts pure ACKs, so on a download the client's few
/// retransmitted requests drown in thousands of ACKs. Why not three per connection (the
/// handshake's ACK as well): a short connection's exposure was then half again what a loss could
/// show on, so its expected retransmissions under loss were overstated and the pooled statistic
/// of a tier reached only by short connections fell where it should have risen. Never below
/// the retransmissions or timeouts: a socket stalled behind a blackhole reports RTO backoffs
/// and no segments at all.
pub fn exposure(segs_out: u64, bytes_sent: u64, attempts: u64, retrans: u64, rto: u64) -> u64 {
    let data = bytes_sent
        .div_ceil(ASSUMED_MSS)
        .saturating_add(attempts.saturating_mul(CONTROL_SEGMENTS))
        .saturating_add(retrans);
    segs_out.min(data).max(retrans).max(rto)
}

/// A healthy flow's weight as loss evidence: the probability that loss at `reference` on the
/// segments a loss would show on ([`exposure`]) would have given the two retransmissions a
/// degraded verdict needs at least, `1 − e^(−λ)(1 + λ)` with `λ = segments × reference`. A short
/// connection's few segments (its SYN and FIN among them, never its pure ACKs) rarely show 1 %
/// loss, so it barely contradicts a lossy component; a bulk flow always would.
pub fn loss_power(segs: u64, reference: f64) -> f32 {
    let lambda = segs as f64 * reference;
    (1.0 - (-lambda).exp() * (1.0 + lambda)) as f32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Inconclusive,
    Healthy,
    Degraded,
}

/// One observation's verdict per family, with the baselines it was judged against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Judged {
    pub loss: State,
    /// Weight of the observation as loss evidence (1 when degraded).
    pub loss_w: f32,
    pub lat: State,
    pub lat_w: f32,
    pub metrics: u8,
    /// Both ends ran agents and each end's own view flagged the same family.
    pub views_agree: bool,
    pub rtt_base: f32,
    /// Where the observation's path baseline was when judged (for learning).
    pub path_slot: Option<u32>,
    /// The observation's class, numbered within the interval (for learning).
    pub class_index: u32,
    pub p_retrans: f32,
    pub p_timeout: f32,
    pub p_failed: f32,
    /// The handshake-time family (`handshake`).
    pub hs: super::handshake::HsJudged,
}

impl Judged {
    pub fn degraded(&self) -> bool {
        self.loss == State::Degraded || self.lat == State::Degraded
    }
    pub fn healthy(&self) -> bool {
        !self.degraded() && (self.loss == State::Healthy || self.lat == State::Healthy)
    }
}

/// Pools a flow's samples by their two ends: a client's record (local C, remote S, remote port P)
/// and a server's record (local S, remote C, local port P) are one flow seen from both ends.
/// Samples without a path are left out. Shared paths are looked up in the path cache here, in
/// the one pass that reads their resolutions (`Obs::cached`).
#[cfg(test)]
pub fn observations<P: Paths + ?Sized>(
    interval: &ClosedInterval,
    paths: &P,
    t: &mut Tables,
) -> Vec<Obs> {
    let mut obs = Vec::new();
    observations_into(interval, paths, t, &mut obs);
    obs
}

/// [`observations`] into `obs` (cleared first; its capacity is reused across intervals).
pub fn observations_into<P: Paths + ?Sized>(
    interval: &ClosedInterval,
    paths: &P,
    t: &mut Tables,
    obs: &mut Vec<Obs>,
) {
    obs.clear();
    obs.reserve(interval.flows.len());
    let mut servers = Vec::new();
    // Client flow keys for the pairing, taken while the sample is at hand once a server's view
    // has been seen (before that, the clients seen so far are read again, once): without
    // servers' views, as from agents on clients only, nothing is kept.
    let mut keys: Vec<(IpAddr, IpAddr, u16)> = Vec::new();
    let key = |s: &FlowSample| (s.record.local, s.record.remote, s.record.remote_port);
    for (i, s) in interval.flows.iter().enumerate() {
        paths.prefetch(i + PREFETCH_AHEAD);
        let cached = match paths.shared(i) {
            Some(key) => {
                let c = t.cache.get(key, paths.path(i), &mut t.interner, t.seq);
                if t.cache.entry(c).ids.ids().is_empty() {
                    continue;
                }
                Some(c)
            }
            None if paths.path(i).is_empty() => continue,
            None => None,
        };
        match s.record.role {
            Role::Client => {
                let mut o = Obs {
                    samples: [i as u32, 0],
                    cached: [cached, None],
                    views: 1,
                    ..Obs::default()
                };
                o.add(s, 0);
                obs.push(o);
                if !servers.is_empty() {
                    keys.push(key(s));
                }
            }
            Role::Server => {
                if servers.is_empty() {
                    keys.reserve(interval.flows.len());
                    keys.extend(
                        obs.iter()
                            .map(|o| key(&interval.flows[o.samples[0] as usize])),
                    );
                }
                servers.push((i, cached));
            }
        }
    }
    if servers.is_empty() {
        return;
    }
    // Each client's flow key, the first client holding a key keeps it. FxHash: the map is
    // probed once per sample. Its keys are agent-reported addresses, as are the aggregator's
    // flow keys, which use the same hasher under per-agent caps; a crafted collision costs
    // probes, never a wrong pairing.
    let mut clients: FxHashMap<(IpAddr, IpAddr, u16), u32> =
        FxHashMap::with_capacity_and_hasher(obs.len(), Default::default());
    for (oi, key) in keys.into_iter().enumerate() {
        clients.entry(key).or_insert(oi as u32);
    }
    for (i, cached) in servers {
        let s = &interval.flows[i];
        let r = &s.record;
        if let Some(&oi) = clients.get(&(r.remote, r.local, r.local_port)) {
            let o = &mut obs[oi as usize];
            if o.views == 1 {
                o.samples[1] = i as u32;
                o.cached[1] = cached;
                o.views = 2;
                o.add(s, 1);
                continue;
            }
        }
        let mut o = Obs {
            samples: [i as u32, 0],
            cached: [cached, None],
            views: 1,
            ..Obs::default()
        };
        o.add(s, 0);
        obs.push(o);
    }
}

/// (median, MAD × 1.4826, 90th percentile) of a class's RTTs in one interval.
fn cross_section(v: &mut [f32]) -> (f32, f32, f32) {
    let q = (v.len() * 9 / 10).min(v.len().saturating_sub(1));
    let upper = if v.is_empty() {
        0.0
    } else {
        *v.select_nth_unstable_by(q, f32::total_cmp).1
    };
    let (m, mad) = median_mad(v);
    (m, mad * MAD_TO_SIGMA, upper)
}

/// Decayed rate sums for the three count metrics.
#[derive(Debug, Clone, Copy, Default)]
struct Rates {
    retrans: DecayedRate,
    timeout: DecayedRate,
    failed: DecayedRate,
    seq: u32,
}

impl Rates {
    fn bring_to(&mut self, seq: u32, decay: f32) {
        if seq > self.seq {
            let f = decay.powi((seq - self.seq).min(1000) as i32);
            self.retrans.decay(f);
            self.timeout.decay(f);
            self.failed.decay(f);
            self.seq = seq;
        }
    }
    fn add(&mut self, o: &Obs) {
        self.retrans.add(o.retrans as f64, o.segs as f64);
        self.timeout.add(o.rto as f64, o.segs as f64);
        self.failed.add(o.failed as f64, o.attempts as f64);
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct PathBaseline {
    rtt: RobustWindow,
    rates: Rates,
    hs: super::handshake::Baseline,
}

#[derive(Debug, Clone, Copy, Default)]
struct ClassBaseline {
    /// Per interval: median RTT across the class's healthy flows, and their spread.
    rtt_median: RobustWindow,
    rtt_sigma: RobustWindow,
    /// Per interval: the 90th percentile RTT across the class's healthy flows. Paths of one
    /// class differ (inter-AZ RTTs span 1-2 ms), so a new path is degraded only above it.
    rtt_upper: RobustWindow,
    rates: Rates,
}

/// Observations ahead whose path baseline is fetched into cache while judging or learning the
/// current one: the baselines of 100k paths do not fit in cache, and waiting for each in turn
/// was the largest cost of judging and learning.
pub const PREFETCH_AHEAD: usize = 8;

/// Hints the CPU to start loading the cache line holding `p` (no effect on results; nothing on
/// other architectures).
#[inline(always)]
pub fn prefetch_line<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults and reads nothing into the program.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            (p as *const T).cast::<i8>(),
            std::arch::x86_64::_MM_HINT_T0,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Hints the CPU to start loading all of `*p` (no effect on results; nothing on other
/// architectures).
#[inline(always)]
pub fn prefetch<T>(p: Option<&T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(p) = p {
        // Every cache line of `*p`.
        let start = p as *const T as usize;
        let end = start + std::mem::size_of::<T>().max(1);
        let mut line = start & !63;
        while line < end {
            // SAFETY: a prefetch is only a hint; it never faults (the lines are those of a live
            // reference anyway) and reads nothing into the program.
            unsafe {
                std::arch::x86_64::_mm_prefetch(line as *const i8, std::arch::x86_64::_MM_HINT_T0)
            };
            line += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Expected rates for one observation.
#[derive(Debug, Clone, Copy)]
struct Expect {
    retrans: f64,
    timeout: f64,
    failed: f64,
}

/// One class's part of every judgement in an interval.
#[derive(Debug, Clone, Copy)]
struct ClassMemo {
    /// The class's expected rates (its own, shrunk towards the global ones).
    exp: Expect,
    /// (median, sigma, p90) RTT of the class: learned, else this interval's cross-section.
    rtt: Option<(f32, f32, f32)>,
}

/// All learned baselines.
#[derive(Debug, Default)]
pub struct Baselines {
    /// Path key → index into `path_slots`: judging finds a path once and learning reuses the
    /// index (each lookup into a table this size is a cache miss).
    paths: DigestMap<u32>,
    path_slots: Vec<PathBaseline>,
    /// Bumped whenever slots move (eviction): slot hints of older generations are void.
    generation: u32,
    classes: DigestMap<ClassBaseline>,
    global: Rates,
    /// Paths not learned because `max_paths` was reached.
    pub paths_refused: u64,
}

impl Baselines {
    pub fn path_count(&self) -> usize {
        self.paths.len()
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Judges every observation of the interval numbered `seq`.
    /// Into `out` (cleared first; its capacity is reused).
    pub fn judge_all(&mut self, obs: &[Obs], seq: u32, cfg: &HealthConfig, out: &mut Vec<Judged>) {
        self.global.bring_to(seq, cfg.rate_decay);
        // The interval's classes, numbered: each observation looks its class up once here,
        // and everything per class below is computed once per class, not once per flow.
        let mut index: DigestMap<u32> = DigestMap::default();
        let mut keys: Vec<u64> = Vec::new();
        let class_of: Vec<u32> = obs
            .iter()
            .map(|o| {
                *index.entry(o.class).or_insert_with(|| {
                    keys.push(o.class);
                    (keys.len() - 1) as u32
                })
            })
            .collect();
        let cold = self.cold_start(obs, &class_of, keys.len(), cfg);
        let cross = self.cross_sections(obs, &class_of, &keys, cfg);
        let global = if self.global.retrans.exposure > 0.0 {
            Expect {
                retrans: self
                    .global
                    .retrans
                    .shrunk(cold.retrans, cfg.class_prior_segments),
                timeout: self
                    .global
                    .timeout
                    .shrunk(cold.timeout, cfg.class_prior_segments),
                failed: self
                    .global
                    .failed
                    .shrunk(cold.failed, cfg.class_prior_attempts),
            }
        } else {
            cold
        };
        let memos: Vec<ClassMemo> = keys
            .iter()
            .zip(&cross)
            .map(|(k, cross)| self.class_memo(*k, seq, &global, *cross, cfg))
            .collect();
        out.clear();
        out.reserve(obs.len());
        for (k, (o, &c)) in obs.iter().zip(&class_of).enumerate() {
            if let Some(slot) = obs.get(k + PREFETCH_AHEAD).and_then(|o| o.slot_hint) {
                prefetch(self.path_slots.get(slot as usize));
            }
            let mut j = self.judge(o, seq, &memos[c as usize], cfg);
            j.class_index = c;
            out.push(j);
        }
    }

    /// What judging needs of class `key` in interval `seq`: its expected rates and its RTT
    /// baseline (learned, else this interval's cross-section).
    fn class_memo(
        &self,
        key: u64,
        seq: u32,
        global: &Expect,
        cross: Option<(f32, f32, f32)>,
        cfg: &HealthConfig,
    ) -> ClassMemo {
        let class = self.classes.get(&key);
        let cr = class.map(|c| {
            let mut r = c.rates;
            r.bring_to(seq, cfg.rate_decay);
            r
        });
        let shrink = |f: fn(&Rates) -> DecayedRate, prior: f64, w: f64| {
            cr.map_or(prior, |r| f(&r).shrunk(prior, w))
        };
        ClassMemo {
            exp: Expect {
                retrans: shrink(|r| r.retrans, global.retrans, cfg.class_prior_segments),
                timeout: shrink(|r| r.timeout, global.timeout, cfg.class_prior_segments),
                failed: shrink(|r| r.failed, global.failed, cfg.class_prior_attempts),
            },
            rtt: match class {
                Some(c) if !c.rtt_median.is_empty() => Some((
                    c.rtt_median.median(),
                    c.rtt_sigma.median(),
                    c.rtt_upper.median(),
                )),
                _ => cross,
            },
        }
    }

    /// Rates to fall back on when nothing has been learned yet: the lower quartile over classes
    /// of this interval's pooled rates (a fault in most classes does not move it), never below
    /// the configured defaults.
    fn cold_start(
        &self,
        obs: &[Obs],
        class_of: &[u32],
        classes: usize,
        cfg: &HealthConfig,
    ) -> Expect {
        let defaults = Expect {
            retrans: cfg.default_retrans_rate,
            timeout: cfg.default_timeout_rate,
            failed: cfg.default_failed_rate,
        };
        if self.global.retrans.exposure > 0.0 {
            return defaults;
        }
        let mut per_class: Vec<Rates> = vec![Rates::default(); classes];
        for (o, &c) in obs.iter().zip(class_of) {
            per_class[c as usize].add(o);
        }
        let pick = |f: &dyn Fn(&Rates) -> &DecayedRate, floor: f64| {
            let mut v: Vec<f32> = per_class
                .iter()
                .map(f)
                .filter(|r| r.exposure > 0.0)
                .map(|r| r.events / r.exposure)
                .collect();
            // Lower quartile: a fault may touch most classes, rarely all of them.
            if v.is_empty() {
                return floor;
            }
            let q = v.len() / 4;
            let (_, x, _) = v.select_nth_unstable_by(q, f32::total_cmp);
            (*x as f64).max(floor)
        };
        Expect {
            retrans: pick(&|r| &r.retrans, defaults.retrans),
            timeout: pick(&|r| &r.timeout, defaults.timeout),
            failed: pick(&|r| &r.failed, defaults.failed),
        }
    }

    /// For classes with no RTT history: (median, sigma, p90) of this interval's RTTs in the class
    /// (by class number; `None` for the others and for classes with too few flows).
    fn cross_sections(
        &self,
        obs: &[Obs],
        class_of: &[u32],
        keys: &[u64],
        cfg: &HealthConfig,
    ) -> Vec<Option<(f32, f32, f32)>> {
        let learned: Vec<bool> = keys
            .iter()
            .map(|k| {
                self.classes
                    .get(k)
                    .is_some_and(|c| !c.rtt_median.is_empty())
            })
            .collect();
        let mut vals: Vec<Vec<f32>> = vec![Vec::new(); keys.len()];
        for (o, &c) in obs.iter().zip(class_of) {
            let Some(rtt) = o.rtt_us() else { continue };
            if learned[c as usize] {
                continue;
            }
            vals[c as usize].push(rtt as f32);
        }
        vals.into_iter()
            .map(|mut v| {
                (v.len() >= cfg.cross_section_min_flows && !v.is_empty())
                    .then(|| cross_section(&mut v))
            })
            .collect()
    }

    fn judge(&self, o: &Obs, seq: u32, class: &ClassMemo, cfg: &HealthConfig) -> Judged {
        let slot = o.slot_hint.or_else(|| self.paths.get(&o.key).copied());
        let path = slot.map(|i| &self.path_slots[i as usize]);
        let decayed = |r: Option<&Rates>| {
            r.map(|r| {
                let mut r = *r;
                r.bring_to(seq, cfg.rate_decay);
                r
            })
        };
        let pr = decayed(path.map(|p| &p.rates));
        let shrink = |r: Option<Rates>, f: fn(&Rates) -> DecayedRate, prior: f64, w: f64| {
            r.map_or(prior, |r| f(&r).shrunk(prior, w))
        };
        let c_exp = class.exp;
        let exp = Expect {
            retrans: shrink(pr, |r| r.retrans, c_exp.retrans, cfg.path_prior_segments)
                .max(cfg.min_retrans_rate),
            timeout: shrink(pr, |r| r.timeout, c_exp.timeout, cfg.path_prior_segments)
                .max(cfg.min_timeout_rate),
            failed: shrink(pr, |r| r.failed, c_exp.failed, cfg.path_prior_attempts)
                .max(cfg.min_failed_rate),
        };

        let mut j = Judged {
            path_slot: slot,
            p_retrans: exp.retrans as f32,
            p_timeout: exp.timeout as f32,
            p_failed: exp.failed as f32,
            ..Judged::default()
        };

        // Loss family.
        let count_test = |k: u64, n: u64, p: f64, excess: f64| -> bool {
            // One event alone never makes a flow degraded, however small the flow.
            if n == 0 || k < 2 {
                return false;
            }
            let rate = k as f64 / n as f64;
            rate >= p + ((cfg.min_rate_ratio - 1.0) * p).max(excess)
                && poisson_tail_below(k, n as f64 * p, cfg.flow_p_value)
        };
        let mut flagged = 0u8;
        if count_test(o.retrans, o.segs, exp.retrans, cfg.min_excess_retrans) {
            flagged |= metric::RETRANS;
        }
        if count_test(o.rto, o.segs, exp.timeout, cfg.min_excess_timeout) {
            flagged |= metric::TIMEOUT;
        }
        if count_test(o.failed, o.attempts, exp.failed, cfg.min_excess_failed) {
            flagged |= metric::FAILED;
        }
        let power = loss_power(o.segs, cfg.loss_reference_rate);
        if flagged != 0 {
            j.loss = State::Degraded;
            j.loss_w = 1.0;
            if o.views == 2 {
                let v = |(k, n): (u64, u64)| {
                    count_test(k, n, exp.retrans + exp.timeout, cfg.min_excess_retrans)
                };
                j.views_agree = v(o.view_loss[0]) && v(o.view_loss[1]);
            }
        } else if power >= cfg.min_weight {
            j.loss = State::Healthy;
            j.loss_w = power;
        }

        // Latency family.
        if let Some(rtt) = o.rtt_us() {
            let (base, window) = match path {
                Some(p) if p.rtt.len() >= cfg.rtt_min_history => {
                    (Some((p.rtt.median(), p.rtt.sigma(), 0.0)), Some(&p.rtt))
                }
                _ => (class.rtt, None),
            };
            if let Some((median, sigma, upper)) = base {
                let median = median.max(1.0) as f64;
                let floor = cfg.rtt_min_rise * median;
                let margin_of = |sigma: f64| {
                    (cfg.rtt_z * sigma.max(cfg.rtt_sigma_floor * median))
                        .max(floor)
                        .max(cfg.rtt_min_rise_us)
                };
                let mut threshold =
                    (median + margin_of(sigma as f64)).max(upper as f64 * (1.0 + cfg.rtt_min_rise));
                // A drift widens the window's own spread as it grows: above the floor, the
                // band is the jitter net of the trend (computed only here, where it matters).
                if let Some(win) = window.filter(|_| rtt > threshold.min(median + floor)) {
                    let trend_free = win.trend_free_sigma() as f64;
                    threshold = threshold.min(median + margin_of(trend_free));
                }
                j.rtt_base = median as f32;
                let w = (o.rtt_count as f32 / cfg.full_weight_rtt_samples).min(1.0);
                if rtt > threshold && w >= cfg.min_weight {
                    flagged |= metric::RTT;
                    j.lat = State::Degraded;
                    j.lat_w = 1.0;
                } else if w >= cfg.min_weight {
                    j.lat = State::Healthy;
                    j.lat_w = w;
                }
            }
        }
        j.metrics = flagged;
        j.hs = super::handshake::judge(path.map(|p| &p.hs), o, j.lat == State::Degraded, cfg);
        j
    }

    /// Learns from the observations not touched by this interval's verdicts: a family judged
    /// degraded is not learned, so a fault does not become the new normal.
    pub fn learn(
        &mut self,
        obs: &[Obs],
        judged: &[Judged],
        skip: &[bool],
        seq: u32,
        cfg: &HealthConfig,
    ) {
        // Per class (by the interval's numbering): its rates, brought to `seq` and summed here in
        // flow order, then written back once; the RTTs it learns from.
        struct ClassAcc {
            key: u64,
            rates: Rates,
            rtts: Vec<f32>,
        }
        let mut acc: Vec<Option<ClassAcc>> = Vec::new();
        for (k, ((o, j), &skip)) in obs.iter().zip(judged).zip(skip).enumerate() {
            if let Some(slot) = judged.get(k + PREFETCH_AHEAD).and_then(|j| j.path_slot) {
                prefetch(self.path_slots.get(slot as usize));
            }
            if skip {
                continue;
            }
            let learn_rates = j.loss != State::Degraded;
            let rtt = if j.lat != State::Degraded {
                o.rtt_us()
            } else {
                None
            };
            if learn_rates {
                self.global.add(o);
            }
            let full = self.paths.len() >= cfg.max_paths;
            // The slot found when judging, else (a path new in this interval, perhaps learned
            // a moment ago from another flow on it) a lookup.
            let slot = j.path_slot.or_else(|| self.paths.get(&o.key).copied());
            let path = match slot {
                Some(s) => Some(&mut self.path_slots[s as usize]),
                None if full => {
                    self.paths_refused += 1;
                    None
                }
                None => {
                    self.paths.insert(o.key, self.path_slots.len() as u32);
                    self.path_slots.push(PathBaseline::default());
                    self.path_slots.last_mut()
                }
            };
            if let Some(p) = path {
                p.rates.bring_to(seq, cfg.rate_decay);
                if learn_rates {
                    p.rates.add(o);
                }
                if let Some(r) = rtt {
                    p.rtt.push(r as f32);
                }
                super::handshake::learn(&mut p.hs, o, &j.hs);
                // Touch even when nothing was learned, so eviction sees the path as alive.
                p.rates.seq = seq;
            }
            let ci = j.class_index as usize;
            if acc.len() <= ci {
                acc.resize_with(ci + 1, || None);
            }
            let c = acc[ci].get_or_insert_with(|| {
                let mut rates = self
                    .classes
                    .get(&o.class)
                    .map_or(Rates::default(), |c| c.rates);
                rates.bring_to(seq, cfg.rate_decay);
                ClassAcc {
                    key: o.class,
                    rates,
                    rtts: Vec::new(),
                }
            });
            if learn_rates {
                c.rates.add(o);
            }
            if let Some(r) = rtt {
                c.rtts.push(r as f32);
            }
        }
        for a in acc.into_iter().flatten() {
            let ClassAcc {
                key,
                rates,
                mut rtts,
            } = a;
            let c = self.classes.entry(key).or_default();
            c.rates = rates;
            if rtts.len() < cfg.cross_section_min_flows || rtts.is_empty() {
                continue;
            }
            let (m, sigma, upper) = cross_section(&mut rtts);
            c.rtt_median.push(m);
            c.rtt_sigma.push(sigma);
            c.rtt_upper.push(upper);
        }
        if seq.is_multiple_of(64) {
            let ttl = cfg.path_idle_intervals;
            let slots = std::mem::take(&mut self.path_slots);
            let mut kept = Vec::with_capacity(slots.len());
            self.paths.retain(|_, i| {
                let p = &slots[*i as usize];
                let live = seq.saturating_sub(p.rates.seq) <= ttl;
                if live {
                    *i = kept.len() as u32;
                    kept.push(*p);
                }
                live
            });
            self.path_slots = kept;
            self.generation = self.generation.wrapping_add(1);
            self.classes
                .retain(|_, c| seq.saturating_sub(c.rates.seq) <= ttl);
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_exposure_ignores_pure_acks() {
        // A download: 10 requests of 1 segment each, 5,000 ACKs.
        assert_eq!(exposure(5_010, 10 * 1_000, 0, 0, 0), 7);
        assert_eq!(exposure(5_010, 10 * 1_000, 2, 3, 0), 7 + 4 + 3);
    }

    /// A flow weighs as loss evidence by the segments a loss would have shown on: a short
    /// connection's SYN, data and FIN, not its pure ACKs, however many the agent counted.
    #[test]
    fn test_loss_weight_counts_only_segments_a_loss_shows_on() {
        // Five short connections per interval with 1,400 bytes of requests in all: the client
        // sent 25 segments (SYN, ACK, FIN, the ACKs of the answers and the requests), but only
        // its SYNs, FINs and one segment of data could have been retransmitted.
        let client = exposure(25, 1_400, 5, 0, 0);
        assert_eq!(client, 1 + 5 * CONTROL_SEGMENTS);
        let w = loss_power(client, 0.01);
        // λ = 0.11: P(≥ 2) = 1 − e^(−0.11)·1.11.
        assert!(
            (w as f64 - (1.0 - (-0.11f64).exp() * 1.11)).abs() < 1e-6,
            "{w}"
        );
        assert!(w < 0.01, "{w}");
        // Counted with every segment the agent sent, it would have weighed 4.7 times more.
        assert!(loss_power(25, 0.01) > 4.0 * w);
        // A bulk flow is full evidence; nothing is none.
        assert!(loss_power(2_000, 0.01) > 0.99);
        assert_eq!(loss_power(0, 0.01), 0.0);
        // More segments a loss could show on, more weight.
        assert!(loss_power(300, 0.01) > loss_power(100, 0.01));
    }

    #[test]
    fn test_exposure_capped_by_segments_sent() {
        assert_eq!(exposure(100, 1_000_000, 0, 5, 0), 100);
    }

    #[test]
    fn test_exposure_stalled_socket_and_zero() {
        assert_eq!(exposure(0, 0, 0, 0, 9), 9);
        assert_eq!(exposure(0, 0, 0, 4, 1), 4);
        assert_eq!(exposure(0, 0, 0, 0, 0), 0);
        assert_eq!(
            exposure(u64::MAX, u64::MAX, u64::MAX, u64::MAX, 0),
            u64::MAX
        );
    }
}
