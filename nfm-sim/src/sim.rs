//! The interval engine: for one interval of one run, the flow records every virtual agent
//! reports, given the scenario's faults at that time.
//!
//! Reproducibility: interval `k` draws from an RNG seeded by `(seed, k)` only, so the same
//! fleet, scenario, seed and start give byte-identical records whatever the transport or speed,
//! and intervals could be generated in any order.

use crate::clock::AgentClock;
use crate::fleet::{Fleet, Remote};
use crate::model::{simulate, Conditions};
use crate::scenario::{Direction, Fault, FaultKind, Scenario};
use crate::truth::FaultTruth;
use nfm_wire::FlowRecord;
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;

const DAY_MS: u64 = 86_400_000;

/// Generates intervals of one run.
pub struct Engine<'f> {
    pub fleet: &'f Fleet,
    pub scenario: Scenario,
    pub seed: u64,
    /// Absolute start (Unix ms) of scenario time zero = start of interval 0.
    pub start_ms: u64,
    pub interval_ms: u64,
    conds: Vec<Conditions>,
    touched: Vec<u32>,
    /// Records of the last generated interval, per agent (index into `Fleet::agents`).
    pub records: Vec<Vec<FlowRecord>>,
    /// Each agent's clock and schedule; an agent that is not up reports nothing (empty: all up).
    pub clocks: Vec<AgentClock>,
}

impl<'f> Engine<'f> {
    pub fn new(
        fleet: &'f Fleet,
        scenario: Scenario,
        seed: u64,
        start_ms: u64,
        interval_ms: u64,
    ) -> Engine<'f> {
        Engine {
            fleet,
            scenario,
            seed,
            start_ms,
            interval_ms: interval_ms.max(1),
            conds: vec![Conditions::default(); fleet.flows.len()],
            touched: Vec::new(),
            records: vec![Vec::new(); fleet.agents.len()],
            clocks: Vec::new(),
        }
    }

    /// Agents come and go as `clocks` says (one per agent, see [`crate::clock`]).
    pub fn with_clocks(mut self, clocks: Vec<AgentClock>) -> Engine<'f> {
        self.clocks = clocks;
        self
    }

    /// Whether agent `a` reports interval `k`.
    pub fn agent_up(&self, a: usize, k: u64) -> bool {
        self.clocks.get(a).is_none_or(|c| c.up(k))
    }

    /// `[start, end)` of interval `k`, Unix ms.
    pub fn bounds(&self, k: u64) -> (u64, u64) {
        let s = self.start_ms + k * self.interval_ms;
        (s, s + self.interval_ms)
    }

    /// Ground truth of the faults of cycle `cycle` (always 0 unless the scenario repeats).
    pub fn fault_truth(&self, cycle: u64) -> Vec<FaultTruth> {
        let base = self.start_ms + cycle * self.scenario.duration_ms;
        self.scenario
            .faults
            .iter()
            .map(|f| {
                let affected = affected_flows(self.fleet, f);
                let mut t =
                    FaultTruth::new(&self.scenario.name, f, cycle, base + f.at_ms, affected);
                t.equivalent = self.fleet.equivalents(&f.component);
                t
            })
            .collect()
    }

    /// Sets the conditions of every flow for interval `k`; returns the flows a fault touches.
    pub fn apply_faults(&mut self, k: u64) -> &[u32] {
        for &i in &self.touched {
            self.conds[i as usize] = Conditions::default();
        }
        self.touched.clear();
        let (s, e) = self.bounds(k);
        let (mut a, mut b) = (s - self.start_ms, e - self.start_ms);
        let dur = self.scenario.duration_ms.max(1);
        if self.scenario.repeat {
            let c = a / dur;
            a -= c * dur;
            b -= c * dur;
        }
        for f in &self.scenario.faults {
            let Some(c) = f.conditions(a, b) else {
                continue;
            };
            let Some(ci) = self.fleet.component_index(&f.component) else {
                continue;
            };
            let fleet = self.fleet;
            for &fi in &fleet.flows_by_component[ci as usize] {
                let Some(c) = shape(fleet, f, fi as usize, &c) else {
                    continue;
                };
                if self.conds[fi as usize].is_healthy() {
                    self.touched.push(fi);
                }
                self.conds[fi as usize].compose(&c);
            }
        }
        self.touched.sort_unstable();
        self.touched.dedup();
        &self.touched
    }

    /// The one flow an `elephant-retrans` fault at `host` touches: the host's largest flow by
    /// bytes (both directions), lowest index on ties.
    pub fn elephant(&self, host: &nfm_collector::model::ComponentId) -> Option<usize> {
        elephant(self.fleet, host)
    }

    /// Conditions of flow `i` in the interval last applied.
    pub fn conditions(&self, i: usize) -> &Conditions {
        &self.conds[i]
    }

    /// Day/night swing of traffic at absolute time `t_ms` (lowest at midnight UTC).
    fn load(&self, t_ms: u64) -> f64 {
        let d = self.scenario.diurnal.unwrap_or(self.fleet.traffic.diurnal);
        let phase = (t_ms % DAY_MS) as f64 / DAY_MS as f64;
        1.0 - d * (2.0 * std::f64::consts::PI * phase).cos()
    }

    /// Generates interval `k` into `self.records`; returns the number of records.
    pub fn interval(&mut self, k: u64) -> usize {
        self.apply_faults(k);
        let (s, _) = self.bounds(k);
        let secs = self.interval_ms as f64 / 1000.0;
        let load = self.load(s + self.interval_ms / 2);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(
            self.seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x51,
        );
        for r in &mut self.records {
            r.clear();
        }
        let fleet = self.fleet;
        let mss = fleet.traffic.mss;
        let up: Vec<bool> = (0..fleet.agents.len())
            .map(|a| self.agent_up(a, k))
            .collect();
        let mut n = 0;
        for (i, f) in fleet.flows.iter().enumerate() {
            let client = &fleet.hosts[f.client];
            let sip = fleet.server_ip(f);
            let (c, srv) = simulate(f, client.ip, sip, &self.conds[i], secs, load, mss, &mut rng);
            // The RNG is drawn for every flow whoever is up, so an agent's absence changes
            // nothing else in the interval.
            if let Some(a) = client.agent.filter(|&a| up[a]) {
                self.records[a].push(c);
                n += 1;
            }
            if let Remote::Host(h) = f.server {
                if let Some(a) = fleet.hosts[h].agent.filter(|&a| up[a]) {
                    self.records[a].push(srv);
                    n += 1;
                }
            }
        }
        n
    }
}

/// Simulated flows fault `f` touches (all flows through its component, but for a slow
/// handshake those to the host and for an elephant its one flow).
pub fn affected_flows(fleet: &Fleet, f: &Fault) -> u64 {
    let Some(ci) = fleet.component_index(&f.component) else {
        return 0;
    };
    let probe = Conditions {
        loss: 0.01,
        ..Conditions::default()
    };
    fleet.flows_by_component[ci as usize]
        .iter()
        .filter(|&&fi| shape(fleet, f, fi as usize, &probe).is_some())
        .count() as u64
}

/// Flows fault `f` touches that would show it to some agent: a loss on segments whose sender
/// runs an agent (the sender's retransmissions are what agents report), a delay or drift to
/// either end's agent, a blackhole to the client's agent (or the server's on long-lived
/// sockets, whose timeouts it sees), dropped SYNs to the client's agent on flows that open
/// connections, slow handshakes on flows that open connections. A fault at a subnet of
/// agent-less clients, or on one direction sent only by hosts without agents, shows to no
/// agent at all: random placement avoids such components (no evaluator could see it).
pub fn observable_flows(fleet: &Fleet, f: &Fault) -> u64 {
    let Some(ci) = fleet.component_index(&f.component) else {
        return 0;
    };
    let Some(full) = f.conditions(f.at_ms, f.at_ms + f.duration_ms) else {
        return 0;
    };
    fleet.flows_by_component[ci as usize]
        .iter()
        .filter(|&&fi| {
            let flow = &fleet.flows[fi as usize];
            let Some(c) = shape(fleet, f, fi as usize, &full) else {
                return false;
            };
            let client = fleet.hosts[flow.client].agent.is_some();
            let server = matches!(flow.server, Remote::Host(h) if fleet.hosts[h].agent.is_some());
            let conns = flow.connections_per_s > 0.0;
            (c.loss > 0.0 && (client || server))
                || (c.loss_up > 0.0 && client)
                || (c.loss_down > 0.0 && server)
                || ((c.delay_us > 0.0 || c.rtt_factor > 0.0 || c.slow_rtt_us > 0.0)
                    && (client || server))
                || (c.down > 0.0 && (client || (server && flow.long_lived > 0)))
                || (c.syn_drop > 0.0 && client && conns)
                || (c.slow_handshake_us > 0.0 && conns && (client || server))
        })
        .count() as u64
}

/// The one flow an `elephant-retrans` fault at `host` touches (see [`Engine::elephant`]).
pub fn elephant(fleet: &Fleet, host: &nfm_collector::model::ComponentId) -> Option<usize> {
    let ci = fleet.component_index(host)?;
    let vol = |i: u32| {
        let f = &fleet.flows[i as usize];
        f.bytes_per_s * (1.0 + f.response)
    };
    fleet.flows_by_component[ci as usize]
        .iter()
        .copied()
        .fold(None, |best: Option<u32>, i| match best {
            Some(b) if vol(b) >= vol(i) => Some(b),
            _ => Some(i),
        })
        .map(|i| i as usize)
}

/// What fault `f`'s component-wide effect `c` does to flow `fi` in particular (issue 14): `None`
/// when this flow is spared. A one-direction fault moves its loss to the client→server or
/// server→client segments by which side of the pair the client is on; a slow handshake touches
/// only connections *to* the host; an elephant's retransmissions hit its one flow, in the
/// direction that carries the bulk.
fn shape(fleet: &Fleet, f: &Fault, fi: usize, c: &Conditions) -> Option<Conditions> {
    let flow = &fleet.flows[fi];
    match f.kind {
        FaultKind::SlowHandshake => {
            let Remote::Host(h) = flow.server else {
                return None;
            };
            (*fleet.hosts[h].name == *f.component.name).then_some(*c)
        }
        FaultKind::ElephantRetrans => {
            if elephant(fleet, &f.component) != Some(fi) {
                return None;
            }
            let mut o = *c;
            if flow.response >= 1.0 {
                o.loss_down = o.loss;
            } else {
                o.loss_up = o.loss;
            }
            o.loss = 0.0;
            Some(o)
        }
        _ if !f.direction.is_both() && c.loss > 0.0 => {
            let (a, _) = f.component.name.split_once('|')?;
            let client = &fleet.hosts[flow.client];
            let side = match f.component.kind {
                nfm_collector::model::ComponentKind::RegionPair => fleet
                    .topology
                    .resolve(client.ip)
                    .region
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                _ => client.az.clone(),
            };
            let client_on_a = side == a;
            let up = client_on_a == (f.direction == Direction::AToB);
            let mut o = *c;
            if up {
                o.loss_up = o.loss;
            } else {
                o.loss_down = o.loss;
            }
            o.loss = 0.0;
            Some(o)
        }
        _ => Some(*c),
    }
}
