//! Health evaluator: judges each closed interval's flows against learned per-path baselines and
//! attributes degradation to the smallest set of path components that explains it, naming an
//! endpoint (host, service) rather than the network when the trouble follows one endpoint.
//!
//! Guarantee: every verdict carries its evidence (flow counts through the component, the metric
//! changes against baseline, the first interval of its run), one noisy flow never produces a
//! verdict (a component needs several degraded flows and few healthy ones), and a fault does not
//! become the new normal (flows through blamed components are not learned). The method and its
//! reasoning are in docs/health.md; its measured accuracy in docs/accuracy.md.
//!
//! # Layout
//! - `stats`: median/MAD windows, decayed rates, the Poisson tail.
//! - `judge`: merging both ends' views, baselines, per-flow judgement.
//! - `attribute`: greedy tomography over path components.
//! - `intern`: component ids and digests, so per-sample work is integer work.
//! - `synth`: a deterministic synthetic fleet for tests and the benchmark.

mod attribute;
mod config;
mod evidence;
mod handshake;
mod indicator;
mod intern;
mod judge;
mod pooled;
pub mod stats;
pub mod synth;

use crate::flow_table::Resolutions;
use crate::model::{
    Blame, ClosedInterval, ComponentId, ComponentKind, HealthReport, MetricChange, Verdict,
};
use crate::resolution::Resolved;
use attribute::{greedy, Graph, GraphParts, Pick, Rules};
pub use config::HealthConfig;
use evidence::EvidenceAcc;
pub use indicator::{monitor_indicator, monitor_indicator_with};
use intern::Tables;
use judge::{Baselines, Judged, Obs, State};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Where the evaluator reads the path of each sample (`ClosedInterval::flows[i]`).
pub trait Paths {
    fn path(&self, i: usize) -> &[ComponentId];
    /// `Some((id, tag))` when sample `i`'s path is immutable and named by `id` for as long as
    /// it exists (`tag`, such as the address of its first element, tells a reused id apart):
    /// the evaluator then interns it once and reuses that across intervals.
    fn shared(&self, i: usize) -> Option<(u64, usize)>;
    /// Hint: sample `i`'s path will be wanted soon (if out of range, nothing).
    fn prefetch(&self, _i: usize) {}
}

/// Paths carried in the samples themselves.
pub struct SamplePaths<'a>(pub &'a ClosedInterval);

impl Paths for SamplePaths<'_> {
    fn path(&self, i: usize) -> &[ComponentId] {
        &self.0.flows[i].path
    }
    fn shared(&self, _: usize) -> Option<(u64, usize)> {
        None
    }
}

/// Resolutions by sample index: a slice of them, or the aggregator's [`Resolutions`] (which
/// hold one per row without a reference count per row).
pub trait ResolutionList {
    fn count(&self) -> usize;
    fn resolution(&self, i: usize) -> Option<&Resolved>;
}

impl ResolutionList for [Arc<Resolved>] {
    fn count(&self) -> usize {
        self.len()
    }
    fn resolution(&self, i: usize) -> Option<&Resolved> {
        self.get(i).map(|r| &**r)
    }
}

impl ResolutionList for Vec<Arc<Resolved>> {
    fn count(&self) -> usize {
        self.len()
    }
    fn resolution(&self, i: usize) -> Option<&Resolved> {
        self.get(i).map(|r| &**r)
    }
}

impl ResolutionList for Resolutions {
    fn count(&self) -> usize {
        self.len()
    }
    fn resolution(&self, i: usize) -> Option<&Resolved> {
        self.get(i).map(|r| &**r)
    }
}

/// The collector's case: each sample's path is its resolution's (same order as the samples),
/// shared by every sample of the same address pair and named by `Resolved::id`. The samples'
/// own `path` is not read (the collector leaves it empty); a row without a resolution has no
/// path.
pub struct ResolvedPaths<'a, R: ResolutionList + ?Sized> {
    resolved: &'a R,
}

impl<'a, R: ResolutionList + ?Sized> ResolvedPaths<'a, R> {
    /// `None` unless there is one resolution per sample.
    pub fn new(interval: &'a ClosedInterval, resolved: &'a R) -> Option<Self> {
        (resolved.count() == interval.flows.len()).then_some(ResolvedPaths { resolved })
    }

    /// Without the count check: rows past the resolutions have no path (the closed-interval
    /// contract, `crate::interval`, gives one resolution per row).
    pub fn of_rows(resolved: &'a R) -> Self {
        ResolvedPaths { resolved }
    }
}

impl<R: ResolutionList + ?Sized> Paths for ResolvedPaths<'_, R> {
    fn path(&self, i: usize) -> &[ComponentId] {
        self.resolved.resolution(i).map_or(&[], |r| &r.path[..])
    }
    fn prefetch(&self, i: usize) {
        // Only what `shared` reads.
        if let Some(r) = self.resolved.resolution(i) {
            judge::prefetch_line(&r.id);
            judge::prefetch_line(&r.path);
        }
    }
    fn shared(&self, i: usize) -> Option<(u64, usize)> {
        let r = self.resolved.resolution(i)?;
        Some((r.id, r.path.as_ptr() as usize))
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EvaluatorStats {
    pub intervals: u64,
    /// Paths with a learned baseline.
    pub paths: usize,
    /// Paths not learned because `max_paths` was reached.
    pub paths_refused: u64,
    pub last_observations: usize,
    pub last_degraded: usize,
    pub last_verdicts: usize,
}

/// Owns the baselines; fed one closed interval at a time, in time order.
#[derive(Debug)]
pub struct Evaluator {
    config: HealthConfig,
    baselines: Baselines,
    seq: u32,
    prev_start: Option<u64>,
    /// Open incidents: components named within the hold-down.
    active: HashMap<ComponentId, Incident>,
    /// Endpoints the per-flow latency stage picked in the previous interval: a host is blamed
    /// for slow round trips only when its pick is confirmed by the next interval (or goes on an
    /// open incident).
    slow_endpoints_prev: HashSet<ComponentId>,
    /// Component ids and shared paths.
    tables: Tables,
    /// Loss evidence accumulated per component over intervals.
    pooled: pooled::Pooled,
    pooled_connect: pooled::Pooled,
    pooled_handshake: pooled::Pooled,
    reuse: Reuse,
    stats: EvaluatorStats,
    /// Issue 15: false while a maintenance window covers the intervals being judged (they are
    /// judged, but not learned into baselines).
    learning: bool,
}

impl Default for Evaluator {
    fn default() -> Self {
        Evaluator::new(HealthConfig::default())
    }
}

/// An open incident of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Incident {
    first_seen_ms: u64,
    /// Start of the last interval that named it.
    last_named_ms: u64,
    /// Times it was named again after at least one interval without.
    flaps: u32,
}

/// The per-interval vectors, kept for their capacity.
#[derive(Debug, Default)]
struct Reuse {
    obs: Vec<Obs>,
    judged: Vec<Judged>,
    graph: GraphParts,
}

/// Tie-break between components that explain exactly the same flows (lower wins; the
/// component's digest settles what is left, so a tie is broken the same way every interval).
/// Network components narrowest scope first (subnet, AZ pair, gateway, region pair, AZ, VPC),
/// endpoints host, service, external. `endpoint_first`: the symptom points at an endpoint
/// (latency alone, a starved host's signature; or connections failing while established flows
/// through the same component are healthy, an endpoint refusing work), so endpoints rank before
/// the network; otherwise (loss) the network first.
fn rank(kind: ComponentKind, endpoint_first: bool) -> u8 {
    let order = match kind {
        ComponentKind::Subnet | ComponentKind::Host => 0,
        ComponentKind::AzPair | ComponentKind::Service => 1,
        ComponentKind::Gateway | ComponentKind::External => 2,
        ComponentKind::RegionPair => 3,
        ComponentKind::Az => 4,
        ComponentKind::Vpc => 5,
    };
    if kind.is_network() != endpoint_first {
        order
    } else {
        10 + order
    }
}

impl Evaluator {
    pub fn new(config: HealthConfig) -> Evaluator {
        Evaluator {
            config,
            baselines: Baselines::default(),
            seq: 0,
            prev_start: None,
            active: HashMap::new(),
            slow_endpoints_prev: HashSet::new(),
            tables: Tables::default(),
            pooled: pooled::Pooled::default(),
            pooled_connect: pooled::Pooled::new(pooled::Family::Connect),
            pooled_handshake: pooled::Pooled::new(pooled::Family::Handshake),
            reuse: Reuse::default(),
            stats: EvaluatorStats::default(),
            learning: true,
        }
    }

    /// Issue 15 (maintenance windows): while off, intervals are judged but nothing is learned.
    pub fn set_learning(&mut self, on: bool) {
        self.learning = on;
    }

    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Network components with an open incident (named within the hold-down): monitors whose
    /// flows cross one keep their HealthIndicator raised through a flap's good intervals.
    pub fn open_network_incidents(&self) -> Vec<ComponentId> {
        let mut v: Vec<ComponentId> = self
            .active
            .keys()
            .filter(|c| c.kind.is_network())
            .cloned()
            .collect();
        v.sort();
        v
    }

    pub fn stats(&self) -> EvaluatorStats {
        EvaluatorStats {
            paths: self.baselines.path_count(),
            paths_refused: self.baselines.paths_refused,
            ..self.stats
        }
    }

    /// Judges one closed interval. Returns the verdicts for that interval and which flows
    /// (indices into `interval.flows`) were degraded.
    pub fn evaluate(&mut self, interval: &ClosedInterval) -> HealthReport {
        self.evaluate_paths(interval, &SamplePaths(interval))
    }

    /// Frees the per-interval vectors kept for their capacity, for a collector gone idle (the
    /// next interval allocates them again; issue 16 item 4).
    pub fn release_scratch(&mut self) {
        self.reuse = Reuse::default();
    }

    /// [`Evaluator::evaluate`] with the paths read from `paths` (the collector's samples carry
    /// none: their resolutions do).
    pub fn evaluate_paths<P: Paths + ?Sized>(
        &mut self,
        interval: &ClosedInterval,
        paths: &P,
    ) -> HealthReport {
        self.seq = self.seq.saturating_add(1);
        let seq = self.seq;
        let cfg = &self.config;
        let t = &mut self.tables;
        t.seq = seq;
        t.generation = self.baselines.generation();
        t.interner.begin(seq);
        // Vectors of the previous interval, for their capacity (no fresh pages per interval).
        let mut obs = std::mem::take(&mut self.reuse.obs);
        let mut judged = std::mem::take(&mut self.reuse.judged);
        judge::observations_into(interval, paths, t, &mut obs);
        let graph = Graph::build(paths, &mut obs, t, std::mem::take(&mut self.reuse.graph));
        self.baselines.judge_all(&obs, seq, cfg, &mut judged);
        // Remember where each shared path's baseline was, unless its hint already says so (in
        // a steady state nearly all do, and the entries are not touched again).
        for (o, j) in obs.iter().zip(&judged) {
            if let (Some(c), Some(slot)) = (o.cached[0], j.path_slot) {
                if o.slot_hint != Some(slot) {
                    t.cache.memo(c).set_slot((o.key, slot, t.generation));
                }
            }
        }
        let interner = &t.interner;

        // Components named in the previous interval (looser rules: hysteresis), by local id.
        let mut was_active = vec![false; graph.comps.len()];
        for (c, inc) in &self.active {
            if Some(inc.last_named_ms) != self.prev_start {
                continue;
            }
            if let Some(l) = interner.local_of(c) {
                was_active[l as usize] = true;
            }
        }
        let rules = |c: u32| {
            if was_active[c as usize] {
                Rules {
                    min_flows: cfg.keep_min_flows,
                    min_weight: cfg.keep_min_weight,
                    min_purity: cfg.keep_min_purity,
                    min_llr: cfg.keep_min_llr,
                }
            } else {
                Rules {
                    min_flows: cfg.new_min_flows,
                    min_weight: cfg.new_min_weight,
                    min_purity: cfg.new_min_purity,
                    min_llr: cfg.new_min_llr,
                }
            }
        };
        let refusing = refusing_work(&graph, &obs, &judged);
        let tie = |c: u32, endpoint_first: bool| {
            let g = graph.comps[c as usize];
            (
                rank(interner.name(g).kind, endpoint_first),
                interner.digest_of(g),
            )
        };
        let loss_picks = greedy(
            &graph,
            |i| (judged[i].loss, judged[i].loss_w),
            rules,
            |c| tie(c, refusing[c as usize]),
            cfg.max_verdicts,
        );
        let lat_picks = greedy(
            &graph,
            |i| (judged[i].lat, judged[i].lat_w),
            rules,
            |c| tie(c, true),
            cfg.max_verdicts,
        );

        // Loss pooled over each component's flows and over intervals (`pooled`): names what no
        // flow shows alone, on flows the per-flow verdicts leave unexplained.
        let mut already = vec![false; graph.comps.len()];
        for p in loss_picks.iter().chain(&lat_picks) {
            already[p.comp as usize] = true;
        }
        let explained = crossing(&graph, &already);
        let run = |p: &mut pooled::Pooled| {
            p.evaluate(
                &graph,
                &obs,
                &judged,
                interner,
                &already,
                &explained,
                |c| tie(c, refusing[c as usize]),
                seq,
                cfg,
            )
        };
        let mut pooled = run(&mut self.pooled);
        // Failed connects pooled the same way (skipped while nothing fails and nothing is
        // accumulated); a component's level is the larger, on the loss statistic's scale.
        if !self.pooled_connect.idle(&obs, &judged) {
            let connect = run(&mut self.pooled_connect);
            let scale = cfg.pooled_threshold / cfg.pooled_connect_threshold;
            for (l, c) in pooled.level.iter_mut().zip(&connect.level) {
                *l = l.max(c * scale);
            }
            for (c, level, flows) in connect.named {
                if !pooled.named.iter().any(|m| m.0 == c) {
                    pooled.named.push((c, level * scale, flows));
                }
            }
        }
        // A per-flow loss verdict whose flows all cross a pooled one is that one's symptom.
        let mut by_pooled = vec![false; graph.comps.len()];
        for (c, _, _) in &pooled.named {
            by_pooled[*c as usize] = true;
        }
        let subsumed = |p: &Pick| {
            !pooled.named.is_empty()
                && p.covered
                    .iter()
                    .all(|&i| graph.of(i as usize).iter().any(|&c| by_pooled[c as usize]))
        };

        // One verdict per component, whichever families named it.
        let mut slot = vec![usize::MAX; graph.comps.len()];
        let mut named: Vec<(u32, f64, Vec<u32>)> = Vec::new();
        // Handshake time (`handshake`): slow handshakes with round trips unchanged, on flows no
        // verdict above explains, name endpoints only.
        let hs_picks = if judged.iter().any(|j| j.hs.state == State::Degraded) {
            let taken: Vec<bool> = already.iter().zip(&by_pooled).map(|(a, p)| a | p).collect();
            let explained = crossing(&graph, &taken);
            let endpoint_rules = |c: u32| {
                if interner.name(graph.comps[c as usize]).kind.is_network() {
                    Rules {
                        min_flows: u32::MAX,
                        min_weight: f32::INFINITY,
                        min_purity: f32::INFINITY,
                        min_llr: f32::INFINITY,
                    }
                } else {
                    rules(c)
                }
            };
            greedy(
                &graph,
                |i| {
                    if explained[i] {
                        (State::Inconclusive, 0.0)
                    } else {
                        (judged[i].hs.state, judged[i].hs.w)
                    }
                },
                endpoint_rules,
                |c| tie(c, true),
                cfg.max_verdicts,
            )
        } else {
            Vec::new()
        };
        let hs_deg = |i: usize| judged[i].hs.state == State::Degraded;

        let mut from_hs = vec![false; graph.comps.len()];
        for p in &hs_picks {
            from_hs[p.comp as usize] = true;
        }
        // Slow handshakes pooled over flows and intervals: a server with few new connections
        // per interval never has the three slow flows one interval needs. Endpoints only.
        let mut hs_pooled = Vec::new();
        if !self.pooled_handshake.idle(&obs, &judged) {
            let taken: Vec<bool> = already.iter().zip(&by_pooled).map(|(a, p)| a | p).collect();
            let explained = crossing(&graph, &taken);
            let out = self.pooled_handshake.evaluate(
                &graph,
                &obs,
                &judged,
                interner,
                &from_hs,
                &explained,
                |c| tie(c, true),
                seq,
                cfg,
            );
            for (c, level, flows) in out.named {
                from_hs[c as usize] = true;
                hs_pooled.push((c, level, flows));
            }
        }
        let loss_kept: Vec<&Pick> = loss_picks.iter().filter(|p| !subsumed(p)).collect();
        // Endpoints named for latency alone (no loss, handshake or pooled verdict on them).
        let mut slow_only = vec![false; graph.comps.len()];
        for p in &lat_picks {
            if !interner
                .name(graph.comps[p.comp as usize])
                .kind
                .is_network()
            {
                slow_only[p.comp as usize] = true;
            }
        }
        for p in loss_kept.iter().copied().chain(&hs_picks) {
            slow_only[p.comp as usize] = false;
        }
        for (c, _, _) in pooled.named.iter().chain(&hs_pooled) {
            slow_only[*c as usize] = false;
        }
        for p in loss_kept.into_iter().chain(&lat_picks).chain(&hs_picks) {
            let conf = family_confidence(p);
            let s = &mut slot[p.comp as usize];
            if *s == usize::MAX {
                *s = named.len();
                named.push((p.comp, conf, p.covered.clone()));
            } else {
                let n = &mut named[*s];
                n.1 = n.1.max(conf);
                n.2.extend_from_slice(&p.covered);
            }
        }

        for (c, level, flows) in hs_pooled {
            let conf = 1.0 - (-(level / cfg.pooled_connect_threshold)).exp();
            let s = &mut slot[c as usize];
            if *s == usize::MAX {
                *s = named.len();
                named.push((c, conf, flows));
            } else {
                let n = &mut named[*s];
                n.1 = n.1.max(conf);
                n.2.extend_from_slice(&flows);
            }
        }

        // Flows a pooled verdict counts as degraded: their retransmissions exceed expectation.
        let mut pooled_deg = vec![false; obs.len()];
        for (c, level, elevated) in &pooled.named {
            for &i in elevated {
                pooled_deg[i as usize] = true;
            }
            let s = &mut slot[*c as usize];
            let conf = 1.0 - (-(level / cfg.pooled_threshold)).exp();
            if *s == usize::MAX {
                *s = named.len();
                named.push((*c, conf, elevated.clone()));
            } else {
                let n = &mut named[*s];
                n.1 = n.1.max(conf);
                n.2.extend_from_slice(elevated);
            }
        }

        // Counts through each named component, and which flows are not to be learned from (those
        // through a named component or one under pooled suspicion).
        let mut deg = vec![0u64; named.len()];
        let mut ok = vec![0u64; named.len()];
        let mut skip = vec![false; obs.len()];
        let suspect: Vec<bool> = pooled
            .level
            .iter()
            .map(|&l| l >= cfg.pooled_suspicion * cfg.pooled_threshold)
            .collect();
        let any_suspect = suspect.iter().any(|&s| s);
        // Nothing named or suspected (most intervals): nothing to count, every flow learned from.
        for (i, j) in judged
            .iter()
            .enumerate()
            .filter(|_| !named.is_empty() || any_suspect)
        {
            for &c in graph.of(i) {
                skip[i] |= suspect[c as usize];
                let s = slot[c as usize];
                if s == usize::MAX {
                    continue;
                }
                skip[i] = true;
                if j.degraded() || pooled_deg[i] || hs_deg(i) {
                    deg[s] += 1;
                } else if j.healthy() {
                    ok[s] += 1;
                }
            }
        }

        let mut verdicts = Vec::with_capacity(named.len());
        let len = interval.end_ms.saturating_sub(interval.start_ms);
        let hold = self.config.incident_hold_down.ms_of(len);
        let mut slow_endpoints = HashSet::new();
        for (k, (c, conf, mut covered)) in named.into_iter().enumerate() {
            let mut seen_since = interval.start_ms;
            if slow_only[c as usize] {
                // One interval in which most of a host's few flows have slow round trips
                // happens on healthy days (measured: 3 in 10 days of 5 s intervals, each 3 of a
                // remote-region host's 4 flows); a slow host stays slow. Not named until the
                // next interval confirms it, unless its incident is open; its flows are still
                // not learned from.
                let id = interner.name(graph.comps[c as usize]);
                slow_endpoints.insert(id.clone());
                if !self.slow_endpoints_prev.contains(id) && !self.active.contains_key(id) {
                    continue;
                }
                // Confirmed: first seen in the interval before.
                seen_since = self.prev_start.unwrap_or(interval.start_ms);
            }
            covered.sort_unstable();
            covered.dedup();
            let mut ev = EvidenceAcc::default();
            for &i in &covered {
                let (o, j) = (&obs[i as usize], &judged[i as usize]);
                ev.add(o, j);
                if pooled_deg[i as usize] {
                    ev.add_pooled(o, j);
                }
                if from_hs[c as usize] {
                    ev.add_handshake(o, &j.hs);
                }
            }
            let mut confidence = conf;
            if ev.two_view > 0 {
                // Both ends' own views flagging the flow is independent confirmation.
                confidence += (1.0 - confidence) * 0.5 * ev.agree as f64 / ev.two_view as f64;
            }
            let component = interner.name(graph.comps[c as usize]).clone();
            // An open incident goes on: named again within the hold-down after its last
            // interval (a gap in between is one more flap); otherwise a new one starts.
            let inc = match self.active.get(&component) {
                Some(inc) if interval.start_ms <= inc.last_named_ms + len + hold => Incident {
                    first_seen_ms: inc.first_seen_ms,
                    last_named_ms: interval.start_ms.max(inc.last_named_ms),
                    flaps: inc.flaps
                        + u32::from(
                            interval.start_ms > inc.last_named_ms
                                && self.prev_start != Some(inc.last_named_ms),
                        ),
                },
                _ => Incident {
                    first_seen_ms: seen_since,
                    last_named_ms: interval.start_ms,
                    flaps: 0,
                },
            };
            self.active.insert(component.clone(), inc);
            let first_seen_ms = inc.first_seen_ms;
            let mut evidence = ev.changes();
            if inc.flaps > 0 {
                evidence.push(MetricChange {
                    metric: "flaps".into(),
                    baseline: 0.0,
                    observed: inc.flaps as f64,
                });
            }
            verdicts.push(Verdict {
                interval_start_ms: interval.start_ms,
                blame: if component.kind.is_network() {
                    Blame::Network
                } else {
                    Blame::Endpoint
                },
                component,
                confidence: confidence.clamp(0.0, 1.0),
                degraded_flows: deg[k],
                healthy_flows: ok[k],
                evidence,
                first_seen_ms,
            });
        }

        let mut degraded_flows = Vec::new();
        for (i, ((o, j), &p)) in obs.iter().zip(&judged).zip(&pooled_deg).enumerate() {
            if j.degraded() || p || hs_deg(i) {
                degraded_flows.push(o.samples[0] as usize);
                if o.views == 2 {
                    degraded_flows.push(o.samples[1] as usize);
                }
            }
        }
        degraded_flows.sort_unstable();

        if self.learning {
            self.baselines
                .learn(&obs, &judged, &skip, seq, &self.config);
        }
        if seq.is_multiple_of(64) {
            let t = &mut self.tables;
            t.cache.evict(seq);
            if t.interner.compact() {
                t.cache.clear();
            }
        }
        self.slow_endpoints_prev = slow_endpoints;
        // Incidents whose hold-down has run out are resolved.
        self.active
            .retain(|_, inc| interval.end_ms <= inc.last_named_ms + len + hold);
        self.prev_start = Some(interval.start_ms);
        let last_observations = obs.len();
        self.reuse = Reuse {
            obs,
            judged,
            graph: graph.into_parts(),
        };
        self.stats.intervals += 1;
        self.stats.last_observations = last_observations;
        self.stats.last_degraded = degraded_flows.len();
        self.stats.last_verdicts = verdicts.len();
        HealthReport {
            interval_start_ms: interval.start_ms,
            verdicts,
            degraded_flows,
        }
    }
}

/// Per component: does its loss look like an endpoint refusing work rather than the network
/// losing packets? Every degraded flow through it failed to connect and lost nothing outside
/// its handshakes (a connect that gives up has retransmitted its SYN and timed out: that is the
/// failure, not loss on the path), while flows through it that moved data are healthy: the path
/// carries established traffic fine, only new connections fail (a full listen queue).
fn refusing_work(graph: &Graph, obs: &[judge::Obs], judged: &[Judged]) -> Vec<bool> {
    let n = graph.comps.len();
    // 0: nothing seen; bit 1: a degraded flow that only failed to connect; bit 2: a degraded
    // flow with loss on established connections; bit 4: a healthy flow that moved data.
    let mut seen = vec![0u8; n];
    for (i, (o, j)) in obs.iter().zip(judged).enumerate() {
        let bit = match j.loss {
            State::Degraded
                if o.failed > 0 && o.retrans.saturating_add(o.rto) <= o.handshake_events =>
            {
                1
            }
            State::Degraded => 2,
            State::Healthy if o.segs > o.attempts.saturating_mul(judge::CONTROL_SEGMENTS) => 4,
            _ => continue,
        };
        for &c in graph.of(i) {
            seen[c as usize] |= bit;
        }
    }
    seen.into_iter().map(|b| b == (1 | 4)).collect()
}

/// Per observation: does its path cross a `marked` component? (All false, without a pass over
/// the observations, when nothing is marked: most intervals.)
fn crossing(graph: &Graph, marked: &[bool]) -> Vec<bool> {
    let n = graph.obs_count();
    if !marked.iter().any(|&m| m) {
        return vec![false; n];
    }
    (0..n)
        .map(|i| graph.of(i).iter().any(|&c| marked[c as usize]))
        .collect()
}

/// Confidence of one family's pick: its purity, discounted when it rests on few flows.
fn family_confidence(p: &Pick) -> f64 {
    let n = p.covered.len() as f64;
    p.purity as f64 * (1.0 - (-n / 3.0).exp())
}

#[cfg(test)]
mod test;
#[cfg(test)]
mod test_endpoints;
#[cfg(test)]
mod test_pooled;
#[cfg(test)]
mod test_trends;
