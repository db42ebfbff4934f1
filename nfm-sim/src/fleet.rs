//! A fleet: the topology (parsed by the collector's own `Topology`, so both sides agree on what
//! every address means) plus its `[traffic]` section, expanded into hosts, virtual agents and
//! flows. Every random choice comes from the seed, so one seed always gives the same fleet.
//!
//! Each flow also carries the set of components it crosses: the union of the topology's
//! `path(client, server)` and `path(server, client)` (the two views differ in which AZ they name).
//! A fault at component X affects exactly the flows whose set holds X; `flows_by_component` is
//! that index, computed once.

use crate::traffic::{FlowRule, Traffic};
use nfm_collector::model::{Category, ComponentId};
use nfm_collector::topology::Topology;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// Why a fleet could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetError(pub String);

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for FleetError {}

/// One simulated host.
#[derive(Debug, Clone)]
pub struct SimHost {
    /// The `[[host]]` name, or the address for generated hosts (as the collector names them).
    pub name: String,
    pub ip: IpAddr,
    pub tier: usize,
    /// Index into `Fleet::agents` when this host runs an agent.
    pub agent: Option<usize>,
    pub vpc: String,
    pub az: String,
}

/// The far end of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    Host(usize),
    Service { name: String, ip: IpAddr },
}

/// One service-level flow: client host → server (host or service) on one port.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    pub client: usize,
    pub server: Remote,
    pub port: u16,
    /// From the client's point of view.
    pub category: Category,
    /// Components (indices into `Fleet::components`), union of both directions' paths, sorted.
    pub comps: Vec<u32>,
    /// Healthy round-trip time of this path, microseconds.
    pub base_rtt_us: f64,
    /// Residual loss on this path when nothing is wrong.
    pub baseline_loss: f64,
    pub bytes_per_s: f64,
    pub response: f64,
    pub connections_per_s: f64,
    pub long_lived: u32,
}

/// A fleet ready to simulate.
pub struct Fleet {
    pub topology: Topology,
    pub traffic: Traffic,
    pub hosts: Vec<SimHost>,
    /// Host index of each agent.
    pub agents: Vec<usize>,
    pub flows: Vec<FlowSpec>,
    /// Every component some flow crosses.
    pub components: Vec<ComponentId>,
    comp_index: HashMap<ComponentId, u32>,
    /// Flow indices per component (same order as `components`), ascending.
    pub flows_by_component: Vec<Vec<u32>>,
    /// Components grouped by identical flow sets (filled once the flows are built).
    equivalence: HashMap<Vec<u32>, Vec<u32>>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("hosts", &self.hosts.len())
            .field("agents", &self.agents.len())
            .field("flows", &self.flows.len())
            .field("components", &self.components.len())
            .finish()
    }
}

/// FNV-1a, 64 bit: stable agent ids from host names across runs and machines.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn offset_ip(base: IpAddr, k: u128) -> Option<IpAddr> {
    match base {
        IpAddr::V4(a) => {
            let v = u32::from(a) as u128 + k;
            u32::try_from(v).ok().map(|v| IpAddr::V4(Ipv4Addr::from(v)))
        }
        IpAddr::V6(a) => u128::from(a)
            .checked_add(k)
            .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    }
}

impl Fleet {
    /// Reads and builds a fleet file.
    pub fn load(path: impl AsRef<Path>, seed: u64) -> Result<Fleet, FleetError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| FleetError(format!("{}: {e}", path.display())))?;
        Fleet::parse(&text, seed).map_err(|e| FleetError(format!("{}: {}", path.display(), e.0)))
    }

    /// Builds a fleet from the text of a fleet file.
    pub fn parse(text: &str, seed: u64) -> Result<Fleet, FleetError> {
        let topology = Topology::parse(text).map_err(|e| FleetError(e.to_string()))?;
        let traffic = Traffic::from_extra(topology.extra()).map_err(FleetError)?;
        Fleet::build(topology, traffic, seed)
    }

    pub fn build(topology: Topology, traffic: Traffic, seed: u64) -> Result<Fleet, FleetError> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x0f1e_e7f1_ee70_0001);
        let hosts = build_hosts(&topology, &traffic)?;
        let mut agents = Vec::new();
        let mut hosts = hosts;
        for (i, h) in hosts.iter_mut().enumerate() {
            if traffic.tiers[h.tier].agent {
                h.agent = Some(agents.len());
                agents.push(i);
            }
        }
        let mut fleet = Fleet {
            topology,
            traffic,
            hosts,
            agents,
            flows: Vec::new(),
            components: Vec::new(),
            comp_index: HashMap::new(),
            flows_by_component: Vec::new(),
            equivalence: HashMap::new(),
        };
        let rules = fleet.traffic.flows.clone();
        let mut seen = HashSet::new();
        for rule in &rules {
            fleet.add_rule_flows(rule, &mut rng, &mut seen)?;
        }
        if fleet.flows.is_empty() {
            return Err(FleetError(
                "the fleet's [[traffic.flow]] rules produce no flows".into(),
            ));
        }
        for (i, flows) in fleet.flows_by_component.iter().enumerate() {
            fleet
                .equivalence
                .entry(flows.clone())
                .or_default()
                .push(i as u32);
        }
        Ok(fleet)
    }

    /// The index of a component, if some flow crosses it.
    pub fn component_index(&self, c: &ComponentId) -> Option<u32> {
        self.comp_index.get(c).copied()
    }

    /// Other components crossed by exactly the same flows as `c`: no observer of these flows
    /// can tell a fault at `c` from a fault at one of them.
    pub fn equivalents(&self, c: &ComponentId) -> Vec<ComponentId> {
        let Some(i) = self.component_index(c) else {
            return Vec::new();
        };
        self.equivalence
            .get(&self.flows_by_component[i as usize])
            .map(|v| {
                v.iter()
                    .filter(|&&j| j != i)
                    .map(|&j| self.components[j as usize].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn intern(&mut self, c: ComponentId) -> u32 {
        if let Some(&i) = self.comp_index.get(&c) {
            return i;
        }
        let i = self.components.len() as u32;
        self.components.push(c.clone());
        self.comp_index.insert(c, i);
        self.flows_by_component.push(Vec::new());
        i
    }

    /// The server's address of a flow.
    pub fn server_ip(&self, f: &FlowSpec) -> IpAddr {
        match &f.server {
            Remote::Host(h) => self.hosts[*h].ip,
            Remote::Service { ip, .. } => *ip,
        }
    }

    /// Tier index by name.
    pub fn tier(&self, name: &str) -> Option<usize> {
        self.traffic.tiers.iter().position(|t| t.name == name)
    }

    fn add_flow(
        &mut self,
        client: usize,
        server: Remote,
        port: u16,
        rule: &FlowRule,
        rng: &mut Xoshiro256PlusPlus,
    ) {
        let cip = self.hosts[client].ip;
        let sip = match &server {
            Remote::Host(h) => self.hosts[*h].ip,
            Remote::Service { ip, .. } => *ip,
        };
        let (category, mut path) = self.topology.flow(cip, sip);
        if let Remote::Host(_) = server {
            path.extend(self.topology.path(sip, cip));
        }
        path.sort();
        path.dedup();
        let comps: Vec<u32> = path.into_iter().map(|c| self.intern(c)).collect();
        let base_rtt_us = self.base_rtt_us(category, cip, sip, rng);
        let idx = self.flows.len() as u32;
        for &c in &comps {
            self.flows_by_component[c as usize].push(idx);
        }
        let bl = self.traffic.baseline_loss;
        self.flows.push(FlowSpec {
            client,
            server,
            port,
            category,
            comps,
            base_rtt_us,
            baseline_loss: rng.random_range(0.0..=2.0 * bl),
            bytes_per_s: rule.bytes_per_s * rng.random_range(0.5..1.5),
            response: rule.response,
            connections_per_s: rule.connections_per_s * rng.random_range(0.5..1.5),
            long_lived: rule.long_lived,
        });
    }

    /// Healthy RTT by path class: intra-AZ 0.1–0.5 ms, inter-AZ 1–2 ms, a gateway adds
    /// 0.1–0.3 ms, services 0.5–2 ms, inter-region 20–80 ms, unknown 5–50 ms.
    fn base_rtt_us(
        &self,
        cat: Category,
        cip: IpAddr,
        sip: IpAddr,
        rng: &mut Xoshiro256PlusPlus,
    ) -> f64 {
        let (l, r) = (self.topology.resolve(cip), self.topology.resolve(sip));
        let same_az = l.az.is_some() && l.az == r.az;
        match cat {
            Category::IntraAz => rng.random_range(100.0..500.0),
            Category::InterAz => rng.random_range(1_000.0..2_000.0),
            Category::InterVpc => {
                let az = if same_az {
                    rng.random_range(150.0..500.0)
                } else {
                    rng.random_range(1_000.0..2_000.0)
                };
                az + rng.random_range(100.0..300.0)
            }
            Category::InterRegion => rng.random_range(20_000.0..80_000.0),
            Category::Service => {
                if l.region.is_some() && l.region == r.region {
                    rng.random_range(500.0..2_000.0)
                } else {
                    rng.random_range(20_000.0..80_000.0)
                }
            }
            Category::Unclassified => rng.random_range(5_000.0..50_000.0),
        }
    }

    fn add_rule_flows(
        &mut self,
        rule: &FlowRule,
        rng: &mut Xoshiro256PlusPlus,
        seen: &mut HashSet<(usize, IpAddr, u16)>,
    ) -> Result<(), FleetError> {
        let from = self.tier(&rule.from).expect("validated");
        let sources: Vec<usize> = (0..self.hosts.len())
            .filter(|&h| self.hosts[h].tier == from)
            .collect();
        if let Some(sname) = rule.to.strip_prefix("service:") {
            let svc = self
                .topology
                .service(sname)
                .ok_or_else(|| {
                    FleetError(format!("[[traffic.flow]] to unknown service `{sname}`"))
                })?
                .clone();
            let Some(prefix) = svc.prefixes.first() else {
                return Err(FleetError(format!("service `{sname}` has no prefix")));
            };
            let port = rule.port.or(svc.ports.first().copied()).unwrap_or(443);
            let base = prefix.network_address();
            let span = if prefix.is_ipv4() { 32 } else { 128 } - prefix.netmask() as u32;
            let endpoints = if span >= 3 { 4 } else { 1 };
            for c in sources {
                let k = 1 + rng.random_range(0..endpoints as u128);
                let Some(ip) = offset_ip(base, k) else {
                    continue;
                };
                if !seen.insert((c, ip, port)) {
                    continue;
                }
                let server = Remote::Service {
                    name: sname.to_string(),
                    ip,
                };
                self.add_flow(c, server, port, rule, rng);
            }
            return Ok(());
        }
        let to = self.tier(&rule.to).expect("validated");
        let port = rule.port.unwrap_or(self.traffic.tiers[to].port);
        // Target hosts grouped by (vpc, az), in a stable order.
        let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if h.tier == to {
                groups
                    .entry((h.vpc.clone(), h.az.clone()))
                    .or_default()
                    .push(i);
            }
        }
        let keys: Vec<(String, String)> = groups.keys().cloned().collect();
        for c in sources {
            let (cv, ca) = (self.hosts[c].vpc.clone(), self.hosts[c].az.clone());
            let same: Vec<usize> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.0 == cv && k.1 == ca)
                .map(|(i, _)| i)
                .collect();
            let other_az: Vec<usize> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.0 == cv && k.1 != ca)
                .map(|(i, _)| i)
                .collect();
            let other_vpc: Vec<usize> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.0 != cv)
                .map(|(i, _)| i)
                .collect();
            let all: Vec<usize> = (0..keys.len()).collect();
            let mut chosen = HashSet::new();
            for _ in 0..rule.fan_out {
                let class = if rng.random_bool(rule.cross_vpc) && !other_vpc.is_empty() {
                    &other_vpc
                } else if rng.random_bool(rule.cross_az) && !other_az.is_empty() {
                    &other_az
                } else if !same.is_empty() {
                    &same
                } else {
                    &all
                };
                // Bounded retries to find a peer not yet chosen and not the source itself.
                for attempt in 0..16 {
                    let pool = if attempt < 8 { class } else { &all };
                    if pool.is_empty() {
                        break;
                    }
                    let g = &groups[&keys[pool[rng.random_range(0..pool.len())]]];
                    let s = g[rng.random_range(0..g.len())];
                    if s != c && chosen.insert(s) {
                        if seen.insert((c, self.hosts[s].ip, port)) {
                            self.add_flow(c, Remote::Host(s), port, rule, rng);
                        }
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

fn build_hosts(topology: &Topology, traffic: &Traffic) -> Result<Vec<SimHost>, FleetError> {
    let by_name: HashMap<&str, IpAddr> = topology
        .hosts()
        .iter()
        .map(|h| (h.name.as_str(), h.ip))
        .collect();
    let listed: HashSet<IpAddr> = topology.hosts().iter().map(|h| h.ip).collect();
    let mut hosts = Vec::new();
    let mut taken: HashSet<IpAddr> = HashSet::new();
    let mut push = |hosts: &mut Vec<SimHost>,
                    name: String,
                    ip: IpAddr,
                    tier: usize|
     -> Result<(), FleetError> {
        if !taken.insert(ip) {
            return Err(FleetError(format!(
                "host {name} ({ip}) is in more than one tier"
            )));
        }
        let e = topology.resolve(ip);
        let (Some(vpc), Some(az)) = (e.vpc, e.az) else {
            return Err(FleetError(format!(
                "host {name} ({ip}) is in no subnet of the topology"
            )));
        };
        hosts.push(SimHost {
            name,
            ip,
            tier,
            agent: None,
            vpc: vpc.to_string(),
            az: az.to_string(),
        });
        Ok(())
    };
    for (ti, tier) in traffic.tiers.iter().enumerate() {
        for n in &tier.hosts {
            let ip = *by_name.get(n.as_str()).ok_or_else(|| {
                FleetError(format!("tier `{}` lists unknown host `{n}`", tier.name))
            })?;
            push(&mut hosts, n.clone(), ip, ti)?;
        }
        for sid in &tier.subnets {
            let s = topology.subnet(sid).ok_or_else(|| {
                FleetError(format!("tier `{}` names unknown subnet `{sid}`", tier.name))
            })?;
            let bits = if s.cidr.is_ipv4() { 32 } else { 128 } - s.cidr.netmask() as u32;
            let size: u128 = if bits >= 127 {
                u128::MAX
            } else {
                1u128 << bits
            };
            let base = s.cidr.network_address();
            let mut made = 0u32;
            let mut k: u128 = 10;
            while made < tier.per_subnet {
                // Leave the broadcast address (and the 10 lowest) unused.
                if k + 1 >= size {
                    return Err(FleetError(format!(
                        "subnet `{sid}` ({}) has no room for {} hosts of tier `{}`",
                        s.cidr, tier.per_subnet, tier.name
                    )));
                }
                let ip = offset_ip(base, k).expect("inside the subnet");
                k += 1;
                if listed.contains(&ip) {
                    continue;
                }
                push(&mut hosts, ip.to_string(), ip, ti)?;
                made += 1;
            }
        }
    }
    if hosts.is_empty() {
        return Err(FleetError("the fleet's tiers hold no hosts".into()));
    }
    Ok(hosts)
}
