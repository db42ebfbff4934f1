//! Loss evidence pooled over a component's flows and accumulated over intervals (a CUSUM per
//! component), so that low-grade loss that no single flow shows in one interval is still named,
//! and stays named for as long as it lasts instead of being learned into the baselines.
//!
//! Why: at 5 s intervals a flow of 50 segments crossing a link with 1 % loss retransmits about
//! once every two intervals, never the two retransmissions beyond its baseline a per-flow verdict
//! needs; twenty such flows together retransmit ten times where their baselines expect one.
//!
//! Method (docs/health.md §4, "Low-grade loss"). Per interval and component, each flow crossing
//! it adds the log-likelihood ratio of "loss adds `δ` to its rate" against "it keeps its
//! baseline `p_i`": `R_i·ln(1 + δ/p_i) − δ·S_i` (Poisson; `S_i` segments, `R_i`
//! retransmissions). The statistic is `C ← clamp(C + Σ, 0, cap)` and the component is named
//! while `C ≥ h`. Guards:
//! - flows through a per-flow verdict that are degraded on their own are its evidence and do
//!   not count; every other flow does, degraded or not (two lossy flows are fewer than a
//!   per-flow verdict needs: left out here too, their evidence was weighed by neither stage);
//!   each counts at most `E_i + 2 + 3δ·S_i` retransmissions and no more than the runner-up flow;
//! - a component crossed by fewer than `pooled_min_flows` flows gains nothing in the interval,
//!   and a component whose evidence lies in such a part of it (its other flows gain nothing) is
//!   not named for it (an AZ is not blamed for the two lossy flows of one of its AZ pairs);
//! - the cap bounds how long a component stays named after its loss ends: `C` falls by `D`, the
//!   sum's value when every flow is at its baseline, per healthy interval, and is capped at `h`
//!   plus `pooled_linger` times `D` (and at `pooled_cap·h`);
//! - an interval's evidence that one flow alone carried is remembered for a few intervals, and
//!   another flow's event in that time counts the two as each other's runner-up (a quiet subnet
//!   whose connects fail one at a time); for loss only on components with a level above 0;
//! - nested components: the one with the largest recent gains claims the flows through it; a
//!   component whose flows another claimed must gain half the threshold on the rest in the
//!   interval to be named too; a per-flow loss verdict all of whose flows cross a pooled one is
//!   dropped (a VPC behind a lossy region pair is not named as well).

use super::attribute::Graph;
use super::intern::Interner;
use super::judge::{Judged, Obs, State};
use super::HealthConfig;
use crate::model::ComponentId;
use rustc_hash::FxHashMap;

/// One component's accumulated evidence.
#[derive(Debug, Clone)]
struct Cusum {
    id: ComponentId,
    c: f64,
    /// Recent increments, uncapped and decaying by [`RECENT_DECAY`] per interval: which of
    /// nested components over the threshold carries the loss.
    recent: f64,
    /// Evaluator interval in which it last changed (states idle for long are dropped).
    seq: u32,
}

/// Decay of [`Cusum::recent`] per interval (a memory of about five intervals): long enough
/// that one noisy interval does not decide between a component and its parent, short enough to
/// follow a fault that moves.
const RECENT_DECAY: f64 = 0.8;

/// The counts a pooled statistic weighs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Family {
    /// Retransmissions over segments (low-grade loss).
    #[default]
    Loss,
    /// Failed connects over connection attempts: SYNs dropped into a quiet subnet, where no
    /// interval has the three failing flows a per-flow verdict needs (docs/health.md §4).
    Connect,
    /// Flows whose handshakes the handshake family judged slow, over flows it judged: a server
    /// with few new connections per interval. Names endpoints only.
    Handshake,
}

/// Share of judged flows whose handshake is slow on a healthy server (the baseline the
/// handshake statistic tests against; per-flow judgements flag about this many by chance).
const HANDSHAKE_BASE_SLOW: f64 = 0.01;

/// The per-component statistics, kept across intervals (only for components with `C > 0`).
#[derive(Debug, Default)]
pub struct Pooled {
    states: FxHashMap<u64, Cusum>,
    family: Family,
    /// Per component (digest), the evidence of the last interval in which one flow alone had
    /// an event, withheld by the runner-up rule: (flow's path key,
    /// its term, interval). Another flow's event within [`PENDING_INTERVALS`] makes the two
    /// each other's runner-up.
    pending: FxHashMap<u64, (u64, f64, u32)>,
}

/// Withheld evidence is kept this many intervals (the memory of [`RECENT_DECAY`], about five):
/// within it, another flow's event releases it whole.
const PENDING_INTERVALS: u32 = 5;

/// One component's evidence in one interval: per flow `i` with `S_i` segments, `R_i`
/// retransmissions and expected rate `p_i`, the log-likelihood ratio `R_i·ln(1 + δ/p_i) − δS_i`
/// of "`δ` more loss on this flow" against "its baseline", summed.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    inc: f64,
    /// What the sum would be were every flow at its baseline (`R_i = p_i·S_i`): the fall of the
    /// statistic in a healthy interval, as a positive number.
    drop: f64,
    flows: u32,
    /// The two largest positive per-flow terms: no flow counts for more than the runner-up.
    top: [f64; 2],
    /// The path key of the flow with the largest.
    top_key: u64,
}

impl Sums {
    fn add(&mut self, (inc, drop): (f64, f64)) {
        self.inc += inc;
        self.drop += drop;
        self.flows += 1;
        if inc > self.top[0] {
            self.top = [inc, self.top[0]];
        } else if inc > self.top[1] {
            self.top[1] = inc;
        }
    }

    /// The interval's increment when another flow's withheld term `pend` (from an earlier
    /// interval) counts with its flows: the runner-up rule over both, so that only the largest
    /// flow's excess over the runner-up is withheld.
    fn increment_with(&self, pend: f64, min_flows: u32) -> f64 {
        let [t0, t1] = self.top;
        let excess = if t0 >= pend {
            t0 - t1.max(pend)
        } else {
            pend - t0
        };
        let inc = self.inc + pend - excess;
        if self.flows + 1 < min_flows {
            inc.min(0.0)
        } else {
            inc
        }
    }

    /// The fall of the statistic in an interval in which the flows keep their baselines.
    fn healthy_drop(&self) -> f64 {
        self.drop
    }

    /// The interval's increment of the statistic.
    fn increment(&self, min_flows: u32) -> f64 {
        let inc = self.inc - (self.top[0] - self.top[1]);
        if self.flows < min_flows {
            inc.min(0.0)
        } else {
            inc
        }
    }
}

/// A flow's terms for `family` (increment, healthy drop), or `None` when it does not count.
fn contribution(family: Family, o: &Obs, j: &Judged, cfg: &HealthConfig) -> Option<(f64, f64)> {
    match family {
        Family::Loss => loss_contribution(o, j, cfg.pooled_loss_rate),
        Family::Connect => connect_contribution(o, j, cfg.pooled_connect_rate),
        Family::Handshake => match j.hs.state {
            State::Inconclusive => None,
            slow => Some(binomial(
                1.0,
                f64::from(u8::from(slow == State::Degraded)),
                HANDSHAKE_BASE_SLOW,
                cfg.pooled_handshake_share,
            )),
        },
    }
}

/// Whether a flow's counts exceed its expectation (one of a named component's degraded flows).
fn elevated(family: Family, o: &Obs, j: &Judged) -> bool {
    match family {
        Family::Loss => o.retrans as f64 > o.segs as f64 * j.p_retrans as f64,
        Family::Connect => o.failed as f64 > o.attempts as f64 * j.p_failed as f64,
        Family::Handshake => j.hs.state == State::Degraded,
    }
}

/// Binomial log-likelihood ratio of "`delta` more of its connection attempts fail" against its
/// baseline failure rate `q`: `F·ln(1 + δ/q) + (A − F)·ln(1 − δ/(1 − q))`, and its expectation
/// at the baseline, negated (the healthy drop). `None`: no attempts. Flows the per-flow stage
/// found degraded count too: failing connects are rare per flow, and a quiet subnet never has
/// the three failing flows in one interval that a per-flow verdict needs (flows through a
/// component it did name are left out: they are that verdict's evidence).
fn connect_contribution(o: &Obs, j: &Judged, delta: f64) -> Option<(f64, f64)> {
    if o.attempts == 0 {
        return None;
    }
    let a = o.attempts as f64;
    Some(binomial(
        a,
        (o.failed as f64).min(a),
        j.p_failed as f64,
        delta,
    ))
}

/// `f` events in `a` trials, baseline rate `q`, tested against `q + delta`: the log-likelihood
/// ratio and its expectation at the baseline, negated (terms as in [`contribution`]).
fn binomial(a: f64, f: f64, q: f64, delta: f64) -> (f64, f64) {
    let q = q.clamp(1e-6, 0.5);
    let delta = delta.min(0.9 * (1.0 - q));
    let up = (1.0 + delta / q).ln();
    let down = (1.0 - delta / (1.0 - q)).ln();
    (f * up + (a - f) * down, -a * (q * up + (1.0 - q) * down))
}

/// A flow's loss terms (increment, healthy drop), or `None` when it does not count: no
/// segments. A flow degraded on its own counts like any other (capped as every flow is): only
/// a per-flow verdict that explains it takes it out (in [`Pooled::evaluate`]).
fn loss_contribution(o: &Obs, j: &Judged, delta: f64) -> Option<(f64, f64)> {
    if o.segs == 0 {
        return None;
    }
    let s = o.segs as f64;
    let p = (j.p_retrans as f64).max(1e-9);
    let e = s * p;
    let r = (o.retrans as f64).min(e + 2.0 + 3.0 * delta * s);
    let gain = (1.0 + delta / p).ln();
    Some((r * gain - delta * s, delta * s - e * gain))
}

/// What the pooled stage says about one interval.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Per local component: its statistic after this interval (empty: all 0).
    pub level: Vec<f64>,
    /// Components named by pooled evidence (local ids), strongest first, each with its level and
    /// the observations through it whose retransmissions exceed their expectation.
    pub named: Vec<(u32, f64, Vec<u32>)>,
}

impl Pooled {
    /// A statistic of `family`'s counts.
    pub fn new(family: Family) -> Pooled {
        Pooled {
            states: FxHashMap::default(),
            family,
            pending: FxHashMap::default(),
        }
    }

    /// Nothing to update: no state above zero and no flow with an event of this family.
    pub fn idle(&self, obs: &[Obs], judged: &[Judged]) -> bool {
        self.states.is_empty()
            && match self.family {
                Family::Loss => false,
                Family::Connect => obs.iter().all(|o| o.failed == 0),
                Family::Handshake => judged.iter().all(|j| j.hs.state != State::Degraded),
            }
    }

    /// For the rare-event families (connects, handshakes): the components that can move, those
    /// with a state or crossed by two flows with an event (a failed connect, a slow handshake).
    /// Every other one gains nothing in the interval (the runner-up rule takes the one event's
    /// excess, and flows without one only lower the statistic) and has nothing to lose, so
    /// only flows through these are weighed (the logarithms of 100k flows were most of the
    /// stage's cost). `None` for loss: retransmissions are everywhere.
    #[allow(clippy::too_many_arguments)]
    fn live(
        &mut self,
        graph: &Graph,
        obs: &[Obs],
        judged: &[Judged],
        interner: &Interner,
        explained: &[bool],
        seq: u32,
        cfg: &HealthConfig,
    ) -> Option<Vec<bool>> {
        if self.family == Family::Loss {
            return None;
        }
        let n = graph.comps.len();
        let mut events = vec![0u8; n];
        let mut single = vec![0u32; n];
        for (i, (o, j)) in obs.iter().zip(judged).enumerate() {
            let event = match self.family {
                Family::Connect => o.failed > 0,
                _ => j.hs.state == State::Degraded,
            };
            if event {
                for &c in graph.of(i) {
                    events[c as usize] = events[c as usize].saturating_add(1);
                    single[c as usize] = i as u32;
                }
            }
        }
        let mut live: Vec<bool> = events.iter().map(|&e| e >= 2).collect();
        for st in self.states.values() {
            if let Some(l) = interner.local_of(&st.id) {
                live[l as usize] = true;
            }
        }
        // One flow alone with an event: its evidence is withheld (the runner-up rule), and
        // remembered; a component with another flow's withheld evidence is live.
        for l in 0..n {
            if events[l] != 1 || live[l] {
                continue;
            }
            let i = single[l] as usize;
            if explained[i] {
                continue;
            }
            let Some((t, _)) = contribution(self.family, &obs[i], &judged[i], cfg) else {
                continue;
            };
            if t <= 0.0 {
                continue;
            }
            let d = interner.digest_of(graph.comps[l]);
            let key = obs[i].key;
            match self.pending.get(&d).copied() {
                Some((k, _, s0)) if k != key && s0 < seq => live[l] = true,
                Some((k, v, s0)) if k == key && s0 < seq => {
                    self.pending.insert(d, (key, v + t, seq));
                }
                _ => {
                    self.pending.insert(d, (key, t, seq));
                }
            }
        }
        Some(live)
    }

    /// Updates every component's statistic with interval `seq` and names the components whose
    /// statistic is over the threshold and not explained by another's, except those in
    /// `already` (named by the per-flow stage; `explained` are the flows through them).
    /// `rank(c)` breaks exact ties (lower wins), as in the per-flow stage.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        &mut self,
        graph: &Graph,
        obs: &[Obs],
        judged: &[Judged],
        interner: &Interner,
        already: &[bool],
        explained: &[bool],
        rank: impl Fn(u32) -> (u8, u64),
        seq: u32,
        cfg: &HealthConfig,
    ) -> Outcome {
        let (h, min_flows) = match self.family {
            Family::Loss => (cfg.pooled_threshold, cfg.pooled_min_flows),
            Family::Connect => (cfg.pooled_connect_threshold, cfg.pooled_connect_min_flows),
            Family::Handshake => (cfg.pooled_connect_threshold, cfg.pooled_connect_min_flows),
        };
        let n = graph.comps.len();
        let mut sums = vec![Sums::default(); n];
        // Withheld evidence older than `PENDING_INTERVALS` is forgotten.
        self.pending
            .retain(|_, p| seq.saturating_sub(p.2) <= PENDING_INTERVALS);
        let live = self.live(graph, obs, judged, interner, explained, seq, cfg);
        if self.states.is_empty() && live.as_ref().is_some_and(|l| !l.contains(&true)) {
            // Nothing accumulated and nowhere two events: every level stays 0 (most intervals).
            return Outcome::default();
        }
        // Each flow's terms, once: the naming below goes over them again per candidate.
        let terms: Vec<Option<(f64, f64)>> = obs
            .iter()
            .zip(judged)
            .zip(explained)
            .enumerate()
            .map(|(i, ((o, j), &explained))| {
                // A flow through a per-flow verdict is that verdict's evidence. The loss family
                // leaves out only such flows' degraded ones: a flow degraded on its own that no
                // verdict explains (two lossy flows, fewer than a verdict needs) is evidence
                // here, or neither stage would weigh it.
                let verdict_evidence = match self.family {
                    Family::Loss => j.loss == State::Degraded,
                    _ => true,
                };
                if explained && verdict_evidence {
                    return None;
                }
                if let Some(live) = &live {
                    if !graph.of(i).iter().any(|&c| live[c as usize]) {
                        return None;
                    }
                }
                contribution(self.family, o, j, cfg)
            })
            .collect();
        for (i, t) in terms.iter().enumerate() {
            let Some(t) = *t else { continue };
            for &c in graph.of(i) {
                if live.as_ref().is_none_or(|live| live[c as usize]) {
                    let s = &mut sums[c as usize];
                    if t.0 > s.top[0] {
                        s.top_key = obs[i].key;
                    }
                    s.add(t);
                }
            }
        }
        let mut inc: Vec<f64> = sums.iter().map(|x| x.increment(min_flows)).collect();
        self.release_pending(graph, interner, &sums, &mut inc, min_flows, seq);

        // Previous levels of the components seen now; states of components not seen in this
        // interval keep their level.
        let mut prev = vec![0f64; n];
        let mut recent = vec![0f64; n];
        let mut known = vec![false; n];
        self.states.retain(|_, st| {
            if let Some(l) = interner.local_of(&st.id) {
                prev[l as usize] = st.c;
                recent[l as usize] = st.recent * RECENT_DECAY;
                known[l as usize] = true;
            }
            // Idle for a day of 60 s intervals: forget.
            seq.saturating_sub(st.seq) < 1440
        });
        let mut level = vec![0f64; n];
        for l in 0..n {
            // Capped so that healthy intervals bring it under the threshold within
            // `pooled_linger` of them, however few segments the component carries.
            let cap = (h + cfg.pooled_linger * sums[l].healthy_drop()).min(cfg.pooled_cap * h);
            let c = (prev[l] + inc[l]).clamp(0.0, cap);
            recent[l] += inc[l];
            level[l] = c;
            if c <= 0.0 && !known[l] {
                continue;
            }
            let g = graph.comps[l];
            let d = interner.digest_of(g);
            if c <= 0.0 {
                self.states.remove(&d);
                continue;
            }
            let st = self.states.entry(d).or_insert_with(|| Cusum {
                id: interner.name(g).clone(),
                c: 0.0,
                recent: 0.0,
                seq,
            });
            st.c = c;
            st.recent = recent[l];
            st.seq = seq;
        }

        // Naming. Components under suspicion, strongest recent gains first, claim the flows
        // through them: the component whose flows carry the loss gains most; its parents gain
        // less, diluted by their healthy flows. One whose flows an earlier one claimed must
        // still gain on the rest, by half the threshold in this interval (a parent's level may
        // come from its child's flows alone, and the child may be just under the threshold).
        // Flows through a per-flow verdict are claimed by it, more loosely: a component with
        // some of them must gain on the rest and stay over the threshold. Claimants over the
        // threshold are named.
        let mut cand: Vec<(f64, (u8, u64), u32)> = (0..n)
            .filter(|&l| level[l] >= cfg.pooled_suspicion * h && !already[l])
            .filter(|&l| {
                // Slow handshakes are an endpoint's trouble, never the network's.
                self.family != Family::Handshake || !interner.name(graph.comps[l]).kind.is_network()
            })
            .map(|l| (recent[l], rank(l as u32), l as u32))
            .collect();
        let mut named = Vec::new();
        if !cand.iter().any(|&(_, _, l)| level[l as usize] >= h) {
            return Outcome { level, named };
        }
        cand.sort_by(|a, b| {
            let tie = (a.0 - b.0).abs() <= 1e-9 * a.0.abs().max(b.0.abs());
            if tie {
                a.1.cmp(&b.1)
            } else {
                b.0.total_cmp(&a.0)
            }
        });
        // 0: free; 1: through a per-flow verdict; 2: claimed by a component here.
        let mut claimed: Vec<u8> = explained.iter().map(|&e| u8::from(e)).collect();
        // Flows through each component (which components lie inside which, and which are too
        // small to be named on their own).
        let mut count = vec![0u32; n];
        for i in 0..obs.len() {
            for &c in graph.of(i) {
                count[c as usize] += 1;
            }
        }
        let mut all = Vec::new();
        for &(_, _, l) in &cand {
            if named.len() >= cfg.max_verdicts {
                break;
            }
            let mut rest = Sums::default();
            let mut flagged = Vec::new();
            let mut through = Vec::new();
            let mut touched = 0u8;
            all.clear();
            for (i, (o, j)) in obs.iter().zip(judged).enumerate() {
                if !graph.of(i).contains(&l) {
                    continue;
                }
                all.push(i);
                if claimed[i] > 0 {
                    touched = touched.max(claimed[i]);
                    continue;
                }
                through.push(i);
                let Some(t) = terms[i] else { continue };
                rest.add(t);
                if elevated(self.family, o, j) {
                    flagged.push(i as u32);
                }
            }
            let gain = rest.increment(min_flows);
            let explained_away = match touched {
                0 => false,
                1 => gain <= 0.0 || prev[l as usize] + gain < h,
                _ => gain < 0.5 * h,
            };
            let small_part = self.family == Family::Loss
                && in_small_part(graph, &terms, l, &all, &through, &count, min_flows);
            if explained_away || small_part {
                continue;
            }
            for i in through {
                claimed[i] = 2;
            }
            if level[l as usize] >= h && !flagged.is_empty() {
                named.push((l, level[l as usize], flagged));
            }
        }
        Outcome { level, named }
    }
}

impl Pooled {
    /// The runner-up rule over this interval and the withheld evidence of an earlier one (for
    /// loss only on components with a level above 0). A component whose last interval with one
    /// flow alone having an event (its evidence withheld) is followed, within
    /// [`PENDING_INTERVALS`], by an interval with
    /// another flow's event counts both flows as each other's runner-up: the withheld term is
    /// added and only the larger's excess over the smaller is withheld. Two failing connects
    /// into a quiet subnet in successive intervals are the evidence two in one interval would
    /// be; one flow failing every interval still gains nothing (its terms add up in its own
    /// pending entry, released only by another flow and only up to that one's). A component
    /// whose evidence in this interval comes from one flow alone remembers it instead.
    fn release_pending(
        &mut self,
        graph: &Graph,
        interner: &Interner,
        sums: &[Sums],
        inc: &mut [f64],
        min_flows: u32,
        seq: u32,
    ) {
        // Loss: only components with evidence accumulated (retransmissions are everywhere).
        let with_state: Option<Vec<u32>> = (self.family == Family::Loss).then(|| {
            self.states
                .values()
                .filter_map(|st| interner.local_of(&st.id))
                .collect()
        });
        let all: Vec<u32>;
        let comps: &[u32] = match &with_state {
            Some(v) => v,
            None => {
                all = (0..sums.len() as u32).collect();
                &all
            }
        };
        for &l in comps {
            let (l, x) = (l as usize, &sums[l as usize]);
            if x.flows == 0 || x.top[0] <= 0.0 {
                continue;
            }
            let d = interner.digest_of(graph.comps[l]);
            let pending = self.pending.get(&d).copied();
            match pending {
                Some((k, pend, s0)) if k != x.top_key && s0 < seq => {
                    inc[l] = x.increment_with(pend, min_flows);
                    self.pending.remove(&d);
                }
                _ if x.top[1] <= 0.0 && s0_ok(pending, seq) => {
                    let carried = match pending {
                        Some((k, v, _)) if k == x.top_key => v,
                        _ => 0.0,
                    };
                    self.pending.insert(d, (x.top_key, carried + x.top[0], seq));
                }
                _ => {}
            }
        }
    }
}

/// Whether `pending` was not recorded in interval `seq` itself (by [`Pooled::live`]).
fn s0_ok(pending: Option<(u64, f64, u32)>, seq: u32) -> bool {
    pending.is_none_or(|p| p.2 < seq)
}

/// Whether the evidence through component `l` lies in a part of it too small to be named: a
/// component inside `l` (every flow through it crosses `l`) crossed by fewer than `min_flows`
/// flows, on the path of the flow with the largest term, such that `l`'s other flows (of
/// `through`, those not yet claimed) gain nothing. `all`: every flow through `l`; `count`:
/// flows per component.
///
/// Why: a flow that shows loss adds its evidence to every component on its path, so an AZ, a
/// gateway or a VPC gathers the evidence of the two flows of an AZ pair that lose. That pair
/// is not named on two flows' pooled evidence; naming what contains it would blame the
/// container's healthy rest instead.
fn in_small_part(
    graph: &Graph,
    terms: &[Option<(f64, f64)>],
    l: u32,
    all: &[usize],
    through: &[usize],
    count: &[u32],
    min_flows: u32,
) -> bool {
    let strongest = through
        .iter()
        .filter_map(|&i| terms[i].map(|t| (t.0, i)))
        .filter(|&(t, _)| t > 0.0)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((_, top)) = strongest else {
        return false;
    };
    graph.of(top).iter().any(|&m| {
        let small = m != l && count[m as usize] < min_flows.min(count[l as usize]);
        if !small
            || all.iter().filter(|&&i| graph.of(i).contains(&m)).count()
                != count[m as usize] as usize
        {
            return false;
        }
        let mut rest = Sums::default();
        for &i in through {
            if let Some(t) = terms[i] {
                if !graph.of(i).contains(&m) {
                    rest.add(t);
                }
            }
        }
        rest.increment(0) <= 0.0
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_increment_rewards_spread_excess_and_ignores_one_flow() {
        let delta: f64 = 0.004;
        let p: f64 = 0.0005;
        let flow = |segs: f64, r: f64| {
            let gain = (1.0 + delta / p).ln();
            (r * gain - delta * segs, delta * segs - segs * p * gain)
        };
        // Twenty flows of 50 segments at 1 % loss against a 0.05 % baseline.
        let mut spread = Sums::default();
        for k in 0..20 {
            spread.add(flow(50.0, if k % 2 == 0 { 1.0 } else { 0.0 }));
        }
        assert!(spread.increment(5) > 5.0);
        // The same excess in one flow counts no more than the runner-up.
        let mut one = Sums::default();
        one.add(flow(1000.0, 10.0));
        for _ in 0..19 {
            one.add(flow(50.0, 0.0));
        }
        assert!(one.increment(5) < 0.0);
        // Healthy flows at their baseline: the statistic falls by the healthy drop.
        let mut healthy = Sums::default();
        for _ in 0..20 {
            healthy.add(flow(1000.0, 0.5));
        }
        assert!(healthy.increment(5) < 0.0);
        assert!((healthy.increment(5) + healthy.healthy_drop()).abs() < 1e-9);
        // Too few flows gain nothing.
        let mut few = Sums::default();
        for _ in 0..3 {
            few.add(flow(1000.0, 10.0));
        }
        assert!(few.increment(0) > 0.0);
        assert_eq!(few.increment(5), 0.0);
    }

    /// Failed connects: two flows whose one attempt each fails (SYNs dropped into a quiet
    /// subnet) reach the connect threshold within two intervals; a busy component failing at
    /// its baseline rate, or one flow failing alone, gains nothing.
    #[test]
    fn test_connect_increment_names_a_quiet_subnet_not_noise() {
        let cfg = HealthConfig::default();
        let obs = |attempts: u64, failed: u64| Obs {
            attempts,
            failed,
            ..Obs::default()
        };
        let judged = Judged {
            p_failed: 0.005,
            ..Judged::default()
        };
        let term = |o: &Obs| connect_contribution(o, &judged, cfg.pooled_connect_rate).unwrap();
        let mut quiet = Sums::default();
        quiet.add(term(&obs(1, 1)));
        quiet.add(term(&obs(1, 1)));
        let inc = quiet.increment(cfg.pooled_connect_min_flows);
        assert!(2.0 * inc >= cfg.pooled_connect_threshold, "{inc}");
        let mut alone = Sums::default();
        alone.add(term(&obs(1, 1)));
        alone.add(term(&obs(1, 0)));
        assert!(alone.increment(cfg.pooled_connect_min_flows) <= 0.0);
        // One failing flow per interval, a different one each time (a quiet subnet whose
        // connects fail one at a time): the first interval's evidence is withheld, the second
        // releases it, and together they are worth two failing flows in one interval.
        let pend = alone.top[0];
        assert!(pend > 0.0);
        let mut next = Sums::default();
        next.add(term(&obs(1, 1)));
        next.add(term(&obs(1, 0)));
        let released = next.increment_with(pend, cfg.pooled_connect_min_flows);
        assert!(
            (released - (inc + term(&obs(1, 0)).0)).abs() < 1e-9,
            "{released} {inc}"
        );
        // A smaller withheld term lets the larger flow count only up to it.
        let half = next.increment_with(pend / 2.0, cfg.pooled_connect_min_flows);
        assert!((half - (released - pend)).abs() < 1e-9, "{half}");
        let mut busy = Sums::default();
        for k in 0..100 {
            busy.add(term(&obs(10, u64::from(k % 20 == 0))));
        }
        assert!(busy.increment(cfg.pooled_connect_min_flows) < 0.0);
        assert!(connect_contribution(&obs(0, 0), &judged, 0.2).is_none());
    }
}
