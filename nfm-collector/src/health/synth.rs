//! Synthetic closed intervals for the health evaluator's tests and benchmark: a small cloud
//! (3 AZs, an app VPC and a data VPC joined by a transit gateway, two managed services) with
//! believable per-flow TCP numbers and faults injected on any component.
//!
//! Why it exists: the evaluator must be developed and measured without a running simulator and
//! collector. It is deterministic for a seed, so tests are reproducible; the end-to-end
//! accuracy against the real pipeline is measured with `nfm-sim score` (docs/accuracy.md).

use crate::model::{Category, ClosedInterval, ComponentId, ComponentKind, FlowSample};
use nfm_wire::{FlowRecord, PhaseCounts, Role, RttSummary, TimeSummary};
use std::net::{IpAddr, Ipv4Addr};

/// A fault on one component, as the simulator would inject it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Extra per-segment loss on every flow whose path crosses `component`.
    Loss { component: ComponentId, rate: f64 },
    /// Extra round-trip delay in microseconds.
    Delay {
        component: ComponentId,
        extra_us: f64,
    },
    /// Nothing gets through: connects fail, established flows time out.
    Blackhole { component: ComponentId },
    /// The host itself is slow (CPU starvation): longer RTT and handshakes on its flows, no loss.
    SlowHost { host: ComponentId, extra_us: f64 },
    /// The host answers new connections slowly (an accept queue backing up): longer handshakes
    /// on its flows, RTT and loss unchanged.
    SlowHandshake { host: ComponentId, extra_us: f64 },
}

impl Fault {
    pub fn component(&self) -> &ComponentId {
        match self {
            Fault::Loss { component, .. }
            | Fault::Delay { component, .. }
            | Fault::Blackhole { component } => component,
            Fault::SlowHost { host, .. } | Fault::SlowHandshake { host, .. } => host,
        }
    }
}

/// Shape of the synthetic fleet.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub seed: u64,
    pub hosts_per_subnet: usize,
    /// Client flows opened by each app host (each also yields the server's view when the
    /// server is a host).
    pub flows_per_host: usize,
    /// Healthy per-segment loss.
    pub base_loss: f64,
    /// Healthy RTT jitter (relative standard deviation of one interval's mean RTT).
    pub jitter: f64,
    /// Multiplies every flow's segments per interval (below 1: a fleet of short intervals or
    /// quiet flows, where no single flow shows low-grade loss).
    pub segs_scale: f64,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            seed: 1,
            hosts_per_subnet: 6,
            flows_per_host: 6,
            base_loss: 0.001,
            jitter: 0.08,
            segs_scale: 1.0,
        }
    }
}

/// One virtual host.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub ip: Ipv4Addr,
    pub subnet: String,
    pub az: String,
    pub vpc: String,
    pub agent_id: u64,
}

#[derive(Debug, Clone)]
enum Remote {
    Host(usize),
    Service(usize),
}

#[derive(Debug, Clone)]
struct Flow {
    client: usize,
    remote: Remote,
    port: u16,
    base_rtt_us: f64,
    segs: f64,
    conns: f64,
    category: Category,
    client_path: Vec<ComponentId>,
    server_path: Vec<ComponentId>,
}

const SERVICES: [(&str, [u8; 4]); 2] = [
    ("object-store", [198, 18, 0, 10]),
    ("kv-db", [198, 18, 1, 10]),
];
/// (subnet, az, vpc)
const SUBNETS: [(&str, &str, &str); 5] = [
    ("app-1", "az1", "vpc-app"),
    ("app-2", "az2", "vpc-app"),
    ("app-3", "az3", "vpc-app"),
    ("data-1", "az1", "vpc-data"),
    ("data-2", "az2", "vpc-data"),
];
pub const GATEWAY: &str = "tgw-1";

/// The synthetic fleet; [`Fleet::interval`] produces one closed interval.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub hosts: Vec<Host>,
    flows: Vec<Flow>,
    rng: Rng,
    spec: FleetSpec,
    /// Extra handshake time (µs) of the flow being built (`Fault::SlowHandshake`).
    hs_extra: f64,
}

impl Fleet {
    pub fn new(spec: FleetSpec) -> Fleet {
        let mut rng = Rng(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03);
        let mut hosts = Vec::new();
        for (si, (subnet, az, vpc)) in SUBNETS.iter().enumerate() {
            for i in 0..spec.hosts_per_subnet {
                let n = i + 1;
                hosts.push(Host {
                    name: format!("{subnet}-h{n}"),
                    ip: Ipv4Addr::new(10, si as u8, (n >> 8) as u8, (n & 0xff) as u8),
                    subnet: subnet.to_string(),
                    az: az.to_string(),
                    vpc: vpc.to_string(),
                    agent_id: hosts.len() as u64 + 1,
                });
            }
        }
        let app: Vec<usize> = (0..hosts.len())
            .filter(|&h| hosts[h].vpc == "vpc-app")
            .collect();
        let data: Vec<usize> = (0..hosts.len())
            .filter(|&h| hosts[h].vpc == "vpc-data")
            .collect();
        let per_az: Vec<(String, Vec<usize>)> = ["az1", "az2", "az3"]
            .iter()
            .map(|az| {
                let v = app
                    .iter()
                    .copied()
                    .filter(|&h| hosts[h].az == *az)
                    .collect();
                (az.to_string(), v)
            })
            .collect();
        let by_az = |az: &str| -> &[usize] {
            per_az
                .iter()
                .find(|(a, _)| a == az)
                .map_or(&[][..], |(_, v)| &v[..])
        };
        let mut flows = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for &c in &app {
            let mut made = 0;
            let mut tries = 0;
            while made < spec.flows_per_host && tries < spec.flows_per_host * 20 {
                tries += 1;
                let u = rng.f64();
                let (remote, port) = if u < 0.30 {
                    // intra-AZ app peer
                    // App hosts of one AZ are contiguous (one app subnet per AZ).
                    let same: &[usize] = by_az(&hosts[c].az);
                    let p = same[rng.below(same.len())];
                    if p == c {
                        continue;
                    }
                    (Remote::Host(p), 8080)
                } else if u < 0.55 {
                    let p = app[rng.below(app.len())];
                    if hosts[p].az == hosts[c].az {
                        continue;
                    }
                    (Remote::Host(p), 8080)
                } else if u < 0.85 {
                    (Remote::Host(data[rng.below(data.len())]), 5432)
                } else {
                    let s = rng.below(SERVICES.len());
                    (Remote::Service(s), 443)
                };
                let key = match remote {
                    Remote::Host(h) => (c, h, port),
                    Remote::Service(s) => (c, usize::MAX - s, port),
                };
                if !seen.insert(key) {
                    continue;
                }
                made += 1;
                flows.push(make_flow(&hosts, c, remote, port, &mut rng));
            }
        }
        // Equal components share one name, as the collector's resolver interns them.
        let mut names = std::collections::HashSet::new();
        for f in &mut flows {
            for c in f.client_path.iter_mut().chain(f.server_path.iter_mut()) {
                *c = c.clone().interned(&mut names);
            }
        }
        Fleet {
            hosts,
            flows,
            rng,
            spec,
            hs_extra: 0.0,
        }
    }

    /// Number of client flows (each yields one or two samples per interval).
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// `host:NAME` of host `i`.
    pub fn host_id(&self, i: usize) -> ComponentId {
        ComponentId::new(ComponentKind::Host, self.hosts[i].name.clone())
    }

    /// One closed interval `[index × 60 s, +60 s)` with `faults` active for all of it.
    pub fn interval(&mut self, index: u64, faults: &[Fault]) -> ClosedInterval {
        let mut out = Vec::with_capacity(self.flows.len() * 2);
        for fi in 0..self.flows.len() {
            let flow = &self.flows[fi];
            let mut loss = self.spec.base_loss;
            let mut delay = 0.0;
            let mut slow = 0.0;
            let mut blackhole = false;
            let mut hs_extra = 0.0;
            for f in faults {
                let c = f.component();
                if !flow.client_path.contains(c) && !flow.server_path.contains(c) {
                    continue;
                }
                match f {
                    Fault::Loss { rate, .. } => loss += rate,
                    Fault::Delay { extra_us, .. } => delay += extra_us,
                    Fault::Blackhole { .. } => blackhole = true,
                    Fault::SlowHost { extra_us, .. } => slow += extra_us,
                    Fault::SlowHandshake { extra_us, .. } => hs_extra += extra_us,
                }
            }
            let loss = loss.min(0.9);
            let rtt_mean = flow.base_rtt_us + delay + slow;
            let conns = self.rng.poisson(flow.conns).max(1);
            let segs = flow.segs * self.spec.segs_scale * (0.7 + 0.6 * self.rng.f64());
            let flow = self.flows[fi].clone();
            self.hs_extra = hs_extra;
            let client = self.view(
                &flow,
                Role::Client,
                segs * 0.3,
                conns,
                loss,
                rtt_mean,
                blackhole,
            );
            out.push(client);
            if let Remote::Host(_) = flow.remote {
                let server = self.view(
                    &flow,
                    Role::Server,
                    segs * 0.7,
                    conns,
                    loss,
                    rtt_mean,
                    blackhole,
                );
                out.push(server);
            }
        }
        ClosedInterval {
            start_ms: index * 60_000,
            end_ms: (index + 1) * 60_000,
            flows: out,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn view(
        &mut self,
        flow: &Flow,
        role: Role,
        segs: f64,
        conns: u64,
        loss: f64,
        rtt_mean: f64,
        blackhole: bool,
    ) -> FlowSample {
        let rng = &mut self.rng;
        let client = &self.hosts[flow.client];
        let (remote_ip, agent_host) = match (&flow.remote, role) {
            (Remote::Host(h), _) => (self.hosts[*h].ip, *h),
            (Remote::Service(s), _) => (Ipv4Addr::from(SERVICES[*s].1), flow.client),
        };
        let (local, remote, agent, path) = match role {
            Role::Client => (
                client.ip,
                remote_ip,
                client.agent_id,
                flow.client_path.clone(),
            ),
            Role::Server => (
                remote_ip,
                client.ip,
                self.hosts[agent_host].agent_id,
                flow.server_path.clone(),
            ),
        };
        let mut r = FlowRecord {
            local: IpAddr::V4(local),
            remote: IpAddr::V4(remote),
            role,
            ..FlowRecord::default()
        };
        match role {
            Role::Client => r.remote_port = flow.port,
            Role::Server => r.local_port = flow.port,
        }
        r.conn_attempts = conns;
        if blackhole {
            // Only retransmissions leave the host; handshakes never finish.
            let sent = (segs * 0.05).max(3.0) as u64;
            r.segs_out = sent;
            r.retrans = PhaseCounts {
                handshake: conns * 2,
                established: sent,
                closing: 0,
            };
            r.rto = PhaseCounts {
                handshake: conns,
                established: (sent / 3).max(1),
                closing: 0,
            };
            r.conn_failed = conns;
            r.conn_severed = 1;
        } else {
            let segs_out = segs.max(1.0) as u64;
            let lost = rng.poisson(segs_out as f64 * loss);
            r.segs_out = segs_out + lost;
            r.segs_in = (segs_out as f64 * 0.8) as u64;
            r.bytes_sent = segs_out * 1200;
            r.bytes_received = r.segs_in * 1200;
            r.retrans.established = lost;
            // A tail loss ends in a timeout rather than a fast retransmit.
            r.rto.established = rng.poisson(lost as f64 * 0.08);
            let p_fail = 0.002 + 3.0 * loss * loss;
            r.conn_failed = (0..conns).filter(|_| rng.f64() < p_fail).count() as u64;
            r.conn_completed = conns - r.conn_failed;
            let count = (segs_out / 2).clamp(1, 2000);
            let spike = if rng.f64() < 0.01 { 1.8 } else { 1.0 };
            let mean = (rtt_mean * (1.0 + self.spec.jitter * rng.normal()) * spike).max(20.0);
            r.rtt = RttSummary {
                count,
                sum_us: (mean * count as f64) as u64,
                min_us: (mean * 0.8) as u64,
                max_us: (mean * 1.5) as u64,
                last_srtt_us: mean as u64,
            };
            let hs = (mean * 1.1 + self.hs_extra) as u64;
            r.handshake = TimeSummary {
                count: conns,
                sum_us: hs * conns,
                min_us: hs,
                max_us: hs,
            };
        }
        FlowSample {
            agent_id: agent,
            record: r,
            category: flow.category,
            path,
        }
    }
}

fn make_flow(hosts: &[Host], c: usize, remote: Remote, port: u16, rng: &mut Rng) -> Flow {
    let h = &hosts[c];
    let id = |k, n: &str| ComponentId::new(k, n.to_string());
    let segs = 20f64 * (1000f64).powf(rng.f64()); // log-uniform 20 .. 20,000
    let conns = 0.5 + 8.0 * rng.f64();
    match remote {
        Remote::Service(s) => {
            let name = SERVICES[s].0;
            Flow {
                client: c,
                remote,
                port,
                base_rtt_us: 800.0 + 700.0 * rng.f64(),
                segs,
                conns,
                category: Category::Service,
                client_path: vec![
                    id(ComponentKind::Host, &h.name),
                    id(ComponentKind::Subnet, &h.subnet),
                    id(ComponentKind::Az, &h.az),
                    id(ComponentKind::Vpc, &h.vpc),
                    id(ComponentKind::Service, name),
                ],
                server_path: Vec::new(),
            }
        }
        Remote::Host(s) => {
            let r = &hosts[s];
            let category = if h.vpc != r.vpc {
                Category::InterVpc
            } else if h.az != r.az {
                Category::InterAz
            } else {
                Category::IntraAz
            };
            let mut base = 150.0 + 350.0 * rng.f64();
            if h.az != r.az {
                base = 1000.0 + 1000.0 * rng.f64();
            }
            if h.vpc != r.vpc {
                base += 300.0;
            }
            let path = |a: &Host, b: &Host| {
                let mut p = vec![
                    id(ComponentKind::Host, &a.name),
                    id(ComponentKind::Subnet, &a.subnet),
                    id(ComponentKind::Az, &a.az),
                ];
                if a.az != b.az {
                    p.push(ComponentId::pair(ComponentKind::AzPair, &a.az, &b.az));
                }
                p.push(id(ComponentKind::Vpc, &a.vpc));
                if a.vpc != b.vpc {
                    p.push(id(ComponentKind::Gateway, GATEWAY));
                    p.push(id(ComponentKind::Vpc, &b.vpc));
                }
                p.push(id(ComponentKind::Subnet, &b.subnet));
                p.push(id(ComponentKind::Host, &b.name));
                p
            };
            Flow {
                client: c,
                remote,
                port,
                base_rtt_us: base,
                segs,
                conns,
                category,
                client_path: path(h, r),
                server_path: path(r, h),
            }
        }
    }
}

/// splitmix64: tiny, fast and good enough for synthetic traffic (not for anything secret).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(1e-12);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let l = (-lambda).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.f64();
            if p <= l || k > 1000 {
                return k;
            }
            k += 1;
        }
    }
}

/// Turns intervals into the collector's shape: each sample's path moved out into a resolution
/// (`crate::resolution::Resolved`) shared by every sample of its (local, remote) address pair and
/// kept, with its id, across intervals, as the resolver does. Feed the result to
/// `Evaluator::evaluate_paths` with `ResolvedPaths`.
#[derive(Debug, Default)]
pub struct SharedPaths {
    map: std::collections::HashMap<(IpAddr, IpAddr), std::sync::Arc<crate::resolution::Resolved>>,
    next_id: u64,
}

impl SharedPaths {
    /// Empties the paths of `iv`'s samples; returns their resolutions, in sample order.
    pub fn share(
        &mut self,
        iv: &mut ClosedInterval,
    ) -> Vec<std::sync::Arc<crate::resolution::Resolved>> {
        let mut out = Vec::with_capacity(iv.flows.len());
        for s in &mut iv.flows {
            let path = std::mem::take(&mut s.path);
            let key = (s.record.local, s.record.remote);
            let r = match self.map.get(&key) {
                Some(r) if r.path == path => r.clone(),
                _ => {
                    self.next_id += 1;
                    let r = std::sync::Arc::new(crate::resolution::Resolved {
                        id: self.next_id,
                        local_ip: key.0,
                        remote_ip: key.1,
                        category: s.category,
                        path,
                        local: Default::default(),
                        remote: Default::default(),
                        local_label: "local".into(),
                        remote_label: "remote".into(),
                    });
                    self.map.insert(key, r.clone());
                    r
                }
            };
            out.push(r);
        }
        out
    }
}
