//! The topology file (docs/topology.md): parsing, validation with line-numbered errors, and
//! resolution of addresses to subnets, VPCs, AZs, regions, services and hosts.
//!
//! Guarantee: a `Topology` that exists has passed every check (references resolve, ids are
//! unique, subnets lie inside their VPC and do not overlap), so resolution never fails; it
//! only answers "unknown". Longest-prefix match uses `ip_network_table` (a tree-bitmap per
//! address family), never a hand-written trie. The collector's resolver and nfm-sim both build on
//! this one parser so that they can never disagree about what a file means.

pub use crate::model::AgentPlace; // issue 17
use crate::model::{Category, ComponentId, ComponentKind};
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// Why a topology file was refused. `line` is 1-based; 0 when the problem has no location
/// (the file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "topology: {}", self.message)
        } else {
            write!(f, "topology line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for TopologyError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Az {
    pub name: String,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub region: String,
    pub cidrs: Vec<IpNetwork>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub vpc: String,
    pub az: String,
    pub cidr: IpNetwork,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub id: String,
    /// `transit-gateway`, `peering`, `internet` or `nat`.
    pub kind: String,
    pub vpcs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// `object-storage`, `key-value-db` or free text.
    pub kind: String,
    pub region: String,
    pub prefixes: Vec<IpNetwork>,
    /// Empty: any port.
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub ip: IpAddr,
    pub instance_id: Option<String>,
}

/// What one address resolves to. Fields borrow from the [`Topology`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'t> {
    pub ip: IpAddr,
    /// A `[[host]]` name, when the address is a known host.
    pub host: Option<&'t str>,
    pub subnet: Option<&'t str>,
    pub vpc: Option<&'t str>,
    pub az: Option<&'t str>,
    pub region: Option<&'t str>,
    /// A service whose prefix list holds the address.
    pub service: Option<&'t str>,
}

impl Endpoint<'_> {
    /// The topology knows where this address is (a VPC or a service).
    pub fn is_known(&self) -> bool {
        self.vpc.is_some() || self.service.is_some()
    }

    /// `host:NAME` for known hosts, else `host:IP`.
    pub fn host_component(&self) -> ComponentId {
        match self.host {
            Some(h) => ComponentId::new(ComponentKind::Host, h),
            None => ComponentId::new(ComponentKind::Host, self.ip.to_string()),
        }
    }
}

/// What a prefix in the lookup table stands for (indices into the topology's lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Subnet(usize),
    Vpc(usize),
    Service(usize),
}

/// A validated topology.
pub struct Topology {
    regions: Vec<Region>,
    azs: Vec<Az>,
    vpcs: Vec<Vpc>,
    subnets: Vec<Subnet>,
    gateways: Vec<Gateway>,
    services: Vec<Service>,
    hosts: Vec<Host>,
    table: IpNetworkTable<Prefix>,
    host_by_ip: HashMap<IpAddr, usize>,
    az_index: HashMap<String, usize>,
    vpc_index: HashMap<String, usize>,
    /// Gateway joining each unordered VPC pair (first one declared wins).
    gateway_by_pair: HashMap<(usize, usize), usize>,
    /// Top-level tables the collector does not interpret (e.g. nfm-sim's `[traffic]`).
    extra: toml::Table,
    /// issue 17: the file's text and agents' own addresses (`discovery::agents::place`).
    pub(crate) source: String,
    pub(crate) agent_places: HashMap<IpAddr, AgentPlace>,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("regions", &self.regions.len())
            .field("azs", &self.azs.len())
            .field("vpcs", &self.vpcs.len())
            .field("subnets", &self.subnets.len())
            .field("gateways", &self.gateways.len())
            .field("services", &self.services.len())
            .field("hosts", &self.hosts.len())
            .finish()
    }
}

// ---- the file's shape (serde) ----

#[derive(Deserialize)]
struct FileDef {
    #[serde(default)]
    region: Vec<Spanned<RegionDef>>,
    #[serde(default)]
    az: Vec<Spanned<AzDef>>,
    #[serde(default)]
    vpc: Vec<Spanned<VpcDef>>,
    #[serde(default)]
    subnet: Vec<Spanned<SubnetDef>>,
    #[serde(default)]
    gateway: Vec<Spanned<GatewayDef>>,
    #[serde(default)]
    service: Vec<Spanned<ServiceDef>>,
    #[serde(default)]
    host: Vec<Spanned<HostDef>>,
    #[serde(flatten)]
    extra: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionDef {
    name: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AzDef {
    name: Spanned<String>,
    region: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VpcDef {
    id: Spanned<String>,
    region: Spanned<String>,
    cidrs: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubnetDef {
    id: Spanned<String>,
    vpc: Spanned<String>,
    az: Spanned<String>,
    cidr: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayDef {
    id: Spanned<String>,
    kind: Spanned<String>,
    vpcs: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceDef {
    name: Spanned<String>,
    kind: Spanned<String>,
    region: Spanned<String>,
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostDef {
    name: Spanned<String>,
    ip: Spanned<String>,
    #[serde(default)]
    instance_id: Option<String>,
}

const GATEWAY_KINDS: [&str; 4] = ["transit-gateway", "peering", "internet", "nat"];

/// Maps byte offsets to 1-based line numbers.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }
    fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> TopologyError {
        TopologyError {
            line: self.line(span.start),
            message: message.into(),
        }
    }
}

fn parse_net(lines: &Lines, s: &Spanned<String>) -> Result<IpNetwork, TopologyError> {
    s.get_ref().parse::<IpNetwork>().map_err(|e| {
        lines.err(
            s.span(),
            format!(
                "`{}` is not a CIDR prefix with zero host bits ({e})",
                s.get_ref()
            ),
        )
    })
}

fn overlaps(a: &IpNetwork, b: &IpNetwork) -> bool {
    a.contains(b.network_address()) || b.contains(a.network_address())
}

/// Does `outer` contain all of `inner`?
fn covers(outer: &IpNetwork, inner: &IpNetwork) -> bool {
    outer.netmask() <= inner.netmask() && outer.contains(inner.network_address())
}

impl Topology {
    /// An empty topology: every address is unknown and every flow unclassified.
    pub fn empty() -> Topology {
        Topology::parse("").expect("the empty topology is valid")
    }

    /// Reads and parses a topology file.
    pub fn load(path: impl AsRef<Path>) -> Result<Topology, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            line: 0,
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Topology::parse(&text)
    }

    /// Parses and validates a topology file's text.
    pub fn parse(text: &str) -> Result<Topology, TopologyError> {
        let lines = Lines::new(text);
        let def: FileDef = toml::from_str(text).map_err(|e| TopologyError {
            line: e.span().map(|s| lines.line(s.start)).unwrap_or(0),
            message: e.message().to_string(),
        })?;

        let mut t = Topology {
            regions: Vec::new(),
            azs: Vec::new(),
            vpcs: Vec::new(),
            subnets: Vec::new(),
            gateways: Vec::new(),
            services: Vec::new(),
            hosts: Vec::new(),
            table: IpNetworkTable::new(),
            host_by_ip: HashMap::new(),
            az_index: HashMap::new(),
            vpc_index: HashMap::new(),
            gateway_by_pair: HashMap::new(),
            extra: def.extra,
            source: text.to_string(),
            agent_places: HashMap::new(),
        };

        let mut region_index: HashMap<String, usize> = HashMap::new();
        for r in &def.region {
            let r = r.get_ref();
            let name = r.name.get_ref().clone();
            if name.is_empty() {
                return Err(lines.err(r.name.span(), "region name is empty"));
            }
            if region_index.insert(name.clone(), t.regions.len()).is_some() {
                return Err(lines.err(r.name.span(), format!("duplicate region `{name}`")));
            }
            t.regions.push(Region { name });
        }
        let need_region = |s: &Spanned<String>| -> Result<String, TopologyError> {
            if region_index.contains_key(s.get_ref()) {
                Ok(s.get_ref().clone())
            } else {
                Err(lines.err(s.span(), format!("unknown region `{}`", s.get_ref())))
            }
        };

        for a in &def.az {
            let a = a.get_ref();
            let name = a.name.get_ref().clone();
            if name.is_empty() {
                return Err(lines.err(a.name.span(), "az name is empty"));
            }
            let region = need_region(&a.region)?;
            if t.az_index.insert(name.clone(), t.azs.len()).is_some() {
                return Err(lines.err(a.name.span(), format!("duplicate az `{name}`")));
            }
            t.azs.push(Az { name, region });
        }

        // Every prefix inserted so far, with the line that declared it, for overlap checks.
        let mut vpc_nets: Vec<(IpNetwork, usize)> = Vec::new();
        for v in &def.vpc {
            let v = v.get_ref();
            let id = v.id.get_ref().clone();
            if id.is_empty() {
                return Err(lines.err(v.id.span(), "vpc id is empty"));
            }
            let region = need_region(&v.region)?;
            if t.vpc_index.contains_key(&id) {
                return Err(lines.err(v.id.span(), format!("duplicate vpc `{id}`")));
            }
            if v.cidrs.is_empty() {
                return Err(lines.err(v.id.span(), format!("vpc `{id}` has no cidrs")));
            }
            let mut cidrs = Vec::new();
            for c in &v.cidrs {
                let net = parse_net(&lines, c)?;
                if let Some((_, other)) = vpc_nets.iter().find(|(n, _)| overlaps(n, &net)) {
                    return Err(lines.err(
                        c.span(),
                        format!(
                            "vpc `{id}` cidr {net} overlaps a cidr of vpc `{}`",
                            t.vpcs
                                .get(*other)
                                .map(|v| v.id.as_str())
                                .unwrap_or(id.as_str())
                        ),
                    ));
                }
                vpc_nets.push((net, t.vpcs.len()));
                cidrs.push(net);
            }
            let idx = t.vpcs.len();
            for net in &cidrs {
                t.table.insert(*net, Prefix::Vpc(idx));
            }
            t.vpc_index.insert(id.clone(), idx);
            t.vpcs.push(Vpc { id, region, cidrs });
        }

        let mut subnet_ids: HashMap<String, usize> = HashMap::new();
        for s in &def.subnet {
            let s = s.get_ref();
            let id = s.id.get_ref().clone();
            if id.is_empty() {
                return Err(lines.err(s.id.span(), "subnet id is empty"));
            }
            if subnet_ids.contains_key(&id) {
                return Err(lines.err(s.id.span(), format!("duplicate subnet `{id}`")));
            }
            let Some(&vi) = t.vpc_index.get(s.vpc.get_ref()) else {
                return Err(lines.err(s.vpc.span(), format!("unknown vpc `{}`", s.vpc.get_ref())));
            };
            let Some(&ai) = t.az_index.get(s.az.get_ref()) else {
                return Err(lines.err(s.az.span(), format!("unknown az `{}`", s.az.get_ref())));
            };
            let vpc = &t.vpcs[vi];
            let az = &t.azs[ai];
            if az.region != vpc.region {
                return Err(lines.err(
                    s.az.span(),
                    format!(
                        "subnet `{id}`: az `{}` is in region `{}` but vpc `{}` is in `{}`",
                        az.name, az.region, vpc.id, vpc.region
                    ),
                ));
            }
            let cidr = parse_net(&lines, &s.cidr)?;
            if !vpc.cidrs.iter().any(|c| covers(c, &cidr)) {
                return Err(lines.err(
                    s.cidr.span(),
                    format!("subnet `{id}` cidr {cidr} lies outside vpc `{}`", vpc.id),
                ));
            }
            if let Some(other) = t.subnets.iter().find(|o| overlaps(&o.cidr, &cidr)) {
                return Err(lines.err(
                    s.cidr.span(),
                    format!(
                        "subnet `{id}` cidr {cidr} overlaps subnet `{}` ({})",
                        other.id, other.cidr
                    ),
                ));
            }
            subnet_ids.insert(id.clone(), t.subnets.len());
            // A subnet equal to its VPC's whole CIDR replaces the VPC entry: the subnet is the
            // more specific answer and still knows its VPC.
            t.table.insert(cidr, Prefix::Subnet(t.subnets.len()));
            t.subnets.push(Subnet {
                id,
                vpc: vpc.id.clone(),
                az: az.name.clone(),
                cidr,
            });
        }

        let mut gateway_ids: HashMap<String, usize> = HashMap::new();
        for g in &def.gateway {
            let g = g.get_ref();
            let id = g.id.get_ref().clone();
            if id.is_empty() {
                return Err(lines.err(g.id.span(), "gateway id is empty"));
            }
            if gateway_ids.contains_key(&id) {
                return Err(lines.err(g.id.span(), format!("duplicate gateway `{id}`")));
            }
            if !GATEWAY_KINDS.contains(&g.kind.get_ref().as_str()) {
                return Err(lines.err(
                    g.kind.span(),
                    format!(
                        "unknown gateway kind `{}` (one of {})",
                        g.kind.get_ref(),
                        GATEWAY_KINDS.join(", ")
                    ),
                ));
            }
            let mut vpcs = Vec::new();
            let mut idxs = Vec::new();
            for v in &g.vpcs {
                let Some(&vi) = t.vpc_index.get(v.get_ref()) else {
                    return Err(lines.err(v.span(), format!("unknown vpc `{}`", v.get_ref())));
                };
                if idxs.contains(&vi) {
                    return Err(lines.err(
                        v.span(),
                        format!("gateway `{id}` lists vpc `{}` twice", v.get_ref()),
                    ));
                }
                idxs.push(vi);
                vpcs.push(v.get_ref().clone());
            }
            let joins = matches!(g.kind.get_ref().as_str(), "transit-gateway" | "peering");
            if joins && vpcs.len() < 2 {
                return Err(lines.err(
                    g.id.span(),
                    format!("gateway `{id}` joins fewer than two vpcs"),
                ));
            }
            let gi = t.gateways.len();
            if joins {
                for (i, &a) in idxs.iter().enumerate() {
                    for &b in &idxs[i + 1..] {
                        t.gateway_by_pair.entry((a.min(b), a.max(b))).or_insert(gi);
                    }
                }
            }
            gateway_ids.insert(id.clone(), gi);
            t.gateways.push(Gateway {
                id,
                kind: g.kind.get_ref().clone(),
                vpcs,
            });
        }

        let mut service_names: HashMap<String, usize> = HashMap::new();
        for s in &def.service {
            let s = s.get_ref();
            let name = s.name.get_ref().clone();
            if name.is_empty() {
                return Err(lines.err(s.name.span(), "service name is empty"));
            }
            if service_names.contains_key(&name) {
                return Err(lines.err(s.name.span(), format!("duplicate service `{name}`")));
            }
            if s.kind.get_ref().is_empty() {
                return Err(lines.err(s.kind.span(), "service kind is empty"));
            }
            let region = need_region(&s.region)?;
            if s.prefixes.is_empty() {
                return Err(lines.err(s.name.span(), format!("service `{name}` has no prefixes")));
            }
            let si = t.services.len();
            let mut prefixes = Vec::new();
            for p in &s.prefixes {
                let net = parse_net(&lines, p)?;
                if let Some((_, vi)) = vpc_nets.iter().find(|(n, _)| overlaps(n, &net)) {
                    return Err(lines.err(
                        p.span(),
                        format!(
                            "service `{name}` prefix {net} overlaps vpc `{}`",
                            t.vpcs[*vi].id
                        ),
                    ));
                }
                if let Some(Prefix::Service(o)) = t.table.exact_match(net) {
                    return Err(lines.err(
                        p.span(),
                        format!(
                            "service `{name}` prefix {net} is also a prefix of service `{}`",
                            t.services[*o].name
                        ),
                    ));
                }
                t.table.insert(net, Prefix::Service(si));
                prefixes.push(net);
            }
            service_names.insert(name.clone(), si);
            t.services.push(Service {
                name,
                kind: s.kind.get_ref().clone(),
                region,
                prefixes,
                ports: s.ports.clone(),
            });
        }

        let mut host_names: HashMap<String, usize> = HashMap::new();
        for h in &def.host {
            let h = h.get_ref();
            let name = h.name.get_ref().clone();
            if name.is_empty() {
                return Err(lines.err(h.name.span(), "host name is empty"));
            }
            if host_names.contains_key(&name) {
                return Err(lines.err(h.name.span(), format!("duplicate host `{name}`")));
            }
            let ip: IpAddr = h.ip.get_ref().parse().map_err(|_| {
                lines.err(
                    h.ip.span(),
                    format!("`{}` is not an IP address", h.ip.get_ref()),
                )
            })?;
            if let Some(&o) = t.host_by_ip.get(&ip) {
                return Err(lines.err(
                    h.ip.span(),
                    format!(
                        "host `{name}` has the address of host `{}`",
                        t.hosts[o].name
                    ),
                ));
            }
            host_names.insert(name.clone(), t.hosts.len());
            t.host_by_ip.insert(ip, t.hosts.len());
            t.hosts.push(Host {
                name,
                ip,
                instance_id: h.instance_id.clone(),
            });
        }
        Ok(t)
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
    pub fn azs(&self) -> &[Az] {
        &self.azs
    }
    pub fn vpcs(&self) -> &[Vpc] {
        &self.vpcs
    }
    pub fn subnets(&self) -> &[Subnet] {
        &self.subnets
    }
    pub fn gateways(&self) -> &[Gateway] {
        &self.gateways
    }
    pub fn services(&self) -> &[Service] {
        &self.services
    }
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }
    /// Top-level tables the collector ignores, e.g. nfm-sim's `[traffic]`.
    pub fn extra(&self) -> &toml::Table {
        &self.extra
    }

    pub fn az(&self, name: &str) -> Option<&Az> {
        self.az_index.get(name).map(|&i| &self.azs[i])
    }
    pub fn vpc(&self, id: &str) -> Option<&Vpc> {
        self.vpc_index.get(id).map(|&i| &self.vpcs[i])
    }
    pub fn subnet(&self, id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.id == id)
    }
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
    pub fn host_by_ip(&self, ip: IpAddr) -> Option<&Host> {
        self.host_by_ip.get(&ip).map(|&i| &self.hosts[i])
    }

    /// The gateway joining two VPCs, if one is declared.
    pub fn gateway_between(&self, a: &str, b: &str) -> Option<&Gateway> {
        let (&x, &y) = (self.vpc_index.get(a)?, self.vpc_index.get(b)?);
        self.gateway_by_pair
            .get(&(x.min(y), x.max(y)))
            .map(|&g| &self.gateways[g])
    }

    /// Longest-prefix match of one address.
    pub fn resolve(&self, ip: IpAddr) -> Endpoint<'_> {
        let mut e = Endpoint {
            ip,
            host: self
                .host_by_ip
                .get(&ip)
                .map(|&i| self.hosts[i].name.as_str()),
            subnet: None,
            vpc: None,
            az: None,
            region: None,
            service: None,
        };
        match self.table.longest_match(ip).map(|(_, p)| *p) {
            Some(Prefix::Subnet(i)) => {
                let s = &self.subnets[i];
                e.subnet = Some(&s.id);
                e.vpc = Some(&s.vpc);
                e.az = Some(&s.az);
                e.region = self.vpc(&s.vpc).map(|v| v.region.as_str());
            }
            Some(Prefix::Vpc(i)) => {
                let v = &self.vpcs[i];
                e.vpc = Some(&v.id);
                e.region = Some(&v.region);
            }
            Some(Prefix::Service(i)) => {
                let s = &self.services[i];
                e.service = Some(&s.name);
                e.region = Some(&s.region);
            }
            None => {}
        }
        // issue 17: an agent's own address the file does not place (or name).
        if let Some(p) = self.agent_places.get(&ip) {
            if !e.is_known() {
                (e.subnet, e.vpc) = (p.subnet.as_deref(), p.vpc.as_deref());
                (e.az, e.region) = (p.az.as_deref(), p.region.as_deref());
            }
            e.host = e.host.or((!p.host.is_empty()).then_some(p.host.as_str()));
        }
        e
    }

    /// Category of a flow from the local end's point of view (docs/topology.md).
    pub fn classify(&self, local: IpAddr, remote: IpAddr) -> Category {
        classify_endpoints(&self.resolve(local), &self.resolve(remote))
    }

    /// Components a flow crosses, local host first (docs/topology.md).
    pub fn path(&self, local: IpAddr, remote: IpAddr) -> Vec<ComponentId> {
        self.path_of(&self.resolve(local), &self.resolve(remote))
    }

    /// Category and path of a flow in one resolution.
    pub fn flow(&self, local: IpAddr, remote: IpAddr) -> (Category, Vec<ComponentId>) {
        let (l, r) = (self.resolve(local), self.resolve(remote));
        (classify_endpoints(&l, &r), self.path_of(&l, &r))
    }

    /// Path between two resolved endpoints.
    pub fn path_of(&self, l: &Endpoint<'_>, r: &Endpoint<'_>) -> Vec<ComponentId> {
        use ComponentKind as K;
        let mut p = Vec::with_capacity(10);
        p.push(l.host_component());
        if let Some(s) = l.subnet {
            p.push(ComponentId::new(K::Subnet, s));
        }
        if let Some(a) = l.az {
            p.push(ComponentId::new(K::Az, a));
        }
        let same_region = l.region.is_some() && l.region == r.region;
        if let (Some(la), Some(ra), true) = (l.az, r.az, same_region) {
            if la != ra {
                p.push(ComponentId::pair(K::AzPair, la, ra));
            }
        }
        if let Some(v) = l.vpc {
            p.push(ComponentId::new(K::Vpc, v));
        }
        if let Some(sname) = r.service {
            if let (Some(lr), Some(rr)) = (l.region, r.region) {
                if lr != rr {
                    p.push(ComponentId::pair(K::RegionPair, lr, rr));
                }
            }
            p.push(ComponentId::new(K::Service, sname));
            return p;
        }
        let Some(rv) = r.vpc else {
            p.push(ComponentId::new(K::External, r.ip.to_string()));
            return p;
        };
        if let Some(lv) = l.vpc {
            if lv != rv {
                if let Some(g) = self.gateway_between(lv, rv) {
                    p.push(ComponentId::new(K::Gateway, g.id.as_str()));
                }
                p.push(ComponentId::new(K::Vpc, rv));
            }
        } else {
            p.push(ComponentId::new(K::Vpc, rv));
        }
        if let (Some(lr), Some(rr)) = (l.region, r.region) {
            if lr != rr {
                p.push(ComponentId::pair(K::RegionPair, lr, rr));
            }
        }
        if let Some(s) = r.subnet {
            p.push(ComponentId::new(K::Subnet, s));
        }
        p.push(r.host_component());
        p
    }
}

/// Category of a flow between two resolved endpoints.
pub fn classify_endpoints(l: &Endpoint<'_>, r: &Endpoint<'_>) -> Category {
    if r.service.is_some() {
        return Category::Service;
    }
    let (Some(lv), Some(rv)) = (l.vpc, r.vpc) else {
        return Category::Unclassified;
    };
    if l.region != r.region {
        return Category::InterRegion;
    }
    if lv != rv {
        return Category::InterVpc;
    }
    match (l.az, r.az) {
        (Some(a), Some(b)) if a == b => Category::IntraAz,
        (Some(_), Some(_)) => Category::InterAz,
        // In the VPC but in no declared subnet: the AZ is unknown.
        _ => Category::Unclassified,
    }
}

#[cfg(test)]
mod test {
    use super::*;

    pub const EXAMPLE: &str = r#"
[[region]]
name = "us-east-1"
[[region]]
name = "eu-west-1"

[[az]]
name = "use1-az1"
region = "us-east-1"
[[az]]
name = "use1-az2"
region = "us-east-1"
[[az]]
name = "euw1-az1"
region = "eu-west-1"

[[vpc]]
id = "vpc-app"
region = "us-east-1"
cidrs = ["10.0.0.0/16"]
[[vpc]]
id = "vpc-data"
region = "us-east-1"
cidrs = ["10.1.0.0/16", "fd00:1::/48"]
[[vpc]]
id = "vpc-eu"
region = "eu-west-1"
cidrs = ["10.2.0.0/16"]

[[subnet]]
id = "subnet-app-a"
vpc = "vpc-app"
az = "use1-az1"
cidr = "10.0.1.0/24"
[[subnet]]
id = "subnet-app-b"
vpc = "vpc-app"
az = "use1-az2"
cidr = "10.0.2.0/24"
[[subnet]]
id = "subnet-data-a"
vpc = "vpc-data"
az = "use1-az1"
cidr = "10.1.1.0/24"
[[subnet]]
id = "subnet-data-v6"
vpc = "vpc-data"
az = "use1-az2"
cidr = "fd00:1:0:1::/64"
[[subnet]]
id = "subnet-eu-a"
vpc = "vpc-eu"
az = "euw1-az1"
cidr = "10.2.1.0/24"

[[gateway]]
id = "tgw-main"
kind = "transit-gateway"
vpcs = ["vpc-app", "vpc-data", "vpc-eu"]

[[service]]
name = "object-store"
kind = "object-storage"
region = "us-east-1"
prefixes = ["198.18.0.0/20"]
ports = [443]

[[host]]
name = "web-1"
ip = "10.0.1.10"
instance_id = "i-0web1"

[traffic]
flows = 10
"#;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn topo() -> Topology {
        Topology::parse(EXAMPLE).unwrap()
    }

    fn path_str(t: &Topology, l: &str, r: &str) -> Vec<String> {
        t.path(ip(l), ip(r)).iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn test_parse_example_lists_everything() {
        let t = topo();
        assert_eq!(t.regions().len(), 2);
        assert_eq!(t.azs().len(), 3);
        assert_eq!(t.vpcs().len(), 3);
        assert_eq!(t.subnets().len(), 5);
        assert_eq!(t.gateways().len(), 1);
        assert_eq!(t.services()[0].ports, vec![443]);
        assert_eq!(t.hosts()[0].instance_id.as_deref(), Some("i-0web1"));
        assert!(t.extra().contains_key("traffic"));
    }

    #[test]
    fn test_resolve_longest_prefix() {
        let t = topo();
        let e = t.resolve(ip("10.0.1.10"));
        assert_eq!(e.host, Some("web-1"));
        assert_eq!(e.subnet, Some("subnet-app-a"));
        assert_eq!(e.vpc, Some("vpc-app"));
        assert_eq!(e.az, Some("use1-az1"));
        assert_eq!(e.region, Some("us-east-1"));
        // In the VPC, in no subnet.
        let e = t.resolve(ip("10.0.200.1"));
        assert_eq!((e.subnet, e.vpc, e.az), (None, Some("vpc-app"), None));
        let e = t.resolve(ip("198.18.3.4"));
        assert_eq!(e.service, Some("object-store"));
        let e = t.resolve(ip("fd00:1:0:1::5"));
        assert_eq!(e.subnet, Some("subnet-data-v6"));
        let e = t.resolve(ip("8.8.8.8"));
        assert!(!e.is_known());
    }

    #[test]
    fn test_classify_every_category() {
        let t = topo();
        let c = |l: &str, r: &str| t.classify(ip(l), ip(r));
        assert_eq!(c("10.0.1.10", "10.0.1.11"), Category::IntraAz);
        assert_eq!(c("10.0.1.10", "10.0.2.11"), Category::InterAz);
        assert_eq!(c("10.0.1.10", "10.1.1.11"), Category::InterVpc);
        assert_eq!(c("10.0.1.10", "10.2.1.11"), Category::InterRegion);
        assert_eq!(c("10.0.1.10", "198.18.0.9"), Category::Service);
        assert_eq!(c("10.0.1.10", "8.8.8.8"), Category::Unclassified);
        assert_eq!(c("8.8.8.8", "10.0.1.10"), Category::Unclassified);
        assert_eq!(c("10.0.1.10", "10.0.99.1"), Category::Unclassified);
    }

    #[test]
    fn test_paths_follow_the_doc() {
        let t = topo();
        assert_eq!(
            path_str(&t, "10.0.1.10", "10.0.1.11"),
            [
                "host:web-1",
                "subnet:subnet-app-a",
                "az:use1-az1",
                "vpc:vpc-app",
                "subnet:subnet-app-a",
                "host:10.0.1.11"
            ]
        );
        assert_eq!(
            path_str(&t, "10.0.2.5", "10.0.1.10"),
            [
                "host:10.0.2.5",
                "subnet:subnet-app-b",
                "az:use1-az2",
                "az-pair:use1-az1|use1-az2",
                "vpc:vpc-app",
                "subnet:subnet-app-a",
                "host:web-1"
            ]
        );
        assert_eq!(
            path_str(&t, "10.0.1.10", "10.1.1.7"),
            [
                "host:web-1",
                "subnet:subnet-app-a",
                "az:use1-az1",
                "vpc:vpc-app",
                "gateway:tgw-main",
                "vpc:vpc-data",
                "subnet:subnet-data-a",
                "host:10.1.1.7"
            ]
        );
        assert_eq!(
            path_str(&t, "10.0.1.10", "10.2.1.7"),
            [
                "host:web-1",
                "subnet:subnet-app-a",
                "az:use1-az1",
                "vpc:vpc-app",
                "gateway:tgw-main",
                "vpc:vpc-eu",
                "region-pair:eu-west-1|us-east-1",
                "subnet:subnet-eu-a",
                "host:10.2.1.7"
            ]
        );
        assert_eq!(
            path_str(&t, "10.0.1.10", "198.18.0.1"),
            [
                "host:web-1",
                "subnet:subnet-app-a",
                "az:use1-az1",
                "vpc:vpc-app",
                "service:object-store"
            ]
        );
        assert_eq!(
            path_str(&t, "10.0.1.10", "8.8.4.4"),
            [
                "host:web-1",
                "subnet:subnet-app-a",
                "az:use1-az1",
                "vpc:vpc-app",
                "external:8.8.4.4"
            ]
        );
        // Every component id round-trips through its string form.
        for c in t.path(ip("10.0.1.10"), ip("10.2.1.7")) {
            assert_eq!(c.to_string().parse::<ComponentId>().unwrap(), c);
        }
    }

    fn err(text: &str) -> TopologyError {
        Topology::parse(text).unwrap_err()
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn test_errors_name_the_line() {
        // (replace, with, the line that must be named, what the message says)
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "use1-az1\"\nregion = \"us-east-1\"",
                "use1-az1\"\nregion = \"nowhere\"",
                "nowhere",
                "unknown region",
            ),
            (
                "az = \"use1-az2\"\ncidr = \"10.0.2.0/24\"",
                "az = \"use1-az9\"\ncidr = \"10.0.2.0/24\"",
                "use1-az9",
                "unknown az",
            ),
            (
                "cidr = \"10.0.2.0/24\"",
                "cidr = \"10.0.1.128/25\"",
                "10.0.1.128/25",
                "overlaps subnet",
            ),
            (
                "cidr = \"10.1.1.0/24\"",
                "cidr = \"10.9.1.0/24\"",
                "10.9.1.0/24",
                "outside vpc",
            ),
            (
                "id = \"subnet-app-b\"",
                "id = \"subnet-app-a\"",
                "",
                "duplicate subnet",
            ),
            (
                "cidr = \"10.2.1.0/24\"",
                "cidr = \"10.2.1.0/33\"",
                "/33",
                "not a CIDR",
            ),
            (
                "cidr = \"10.2.1.0/24\"",
                "cidr = \"10.2.1.1/24\"",
                "10.2.1.1/24",
                "host bits",
            ),
            (
                "kind = \"transit-gateway\"",
                "kind = \"wormhole\"",
                "wormhole",
                "unknown gateway kind",
            ),
            (
                "ip = \"10.0.1.10\"",
                "ip = \"10.0.1\"",
                "10.0.1\"",
                "not an IP",
            ),
            (
                "cidrs = [\"10.2.0.0/16\"]",
                "cidrs = [\"10.0.128.0/17\"]",
                "10.0.128.0/17",
                "overlaps",
            ),
            (
                "prefixes = [\"198.18.0.0/20\"]",
                "prefixes = [\"10.0.0.0/8\"]",
                "10.0.0.0/8",
                "overlaps vpc",
            ),
            (
                "instance_id = \"i-0web1\"",
                "instance = \"i-0web1\"",
                "instance =",
                "unknown field",
            ),
        ];
        for (from, to, needle, what) in cases {
            assert!(EXAMPLE.contains(from), "{from}");
            let text = EXAMPLE.replacen(from, to, 1);
            let e = err(&text);
            assert!(e.message.contains(what), "{what}: got `{e}`");
            let expected = if needle.is_empty() {
                // The second declaration of the duplicate id.
                text.lines()
                    .enumerate()
                    .filter(|(_, l)| l.contains("id = \"subnet-app-a\""))
                    .nth(1)
                    .unwrap()
                    .0
                    + 1
            } else {
                line_of(&text, needle)
            };
            assert_eq!(e.line, expected, "{what}: `{e}`");
            assert!(e.to_string().starts_with("topology line "), "{e}");
        }
    }

    #[test]
    fn test_toml_syntax_error_has_a_line() {
        let e = err("[[region]]\nname = \"a\"\n\n[[az]\nname = 1\n");
        assert_eq!(e.line, 4, "{e}");
        let e = err("[[region]]\nname = 5\n");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn test_empty_topology_is_unclassified() {
        let t = Topology::empty();
        assert_eq!(
            t.classify(ip("10.0.0.1"), ip("10.0.0.2")),
            Category::Unclassified
        );
        assert_eq!(
            path_str(&t, "10.0.0.1", "10.0.0.2"),
            ["host:10.0.0.1", "external:10.0.0.2"]
        );
    }

    #[test]
    fn test_load_missing_file_is_an_error() {
        let e = Topology::load("/nonexistent/topology.toml").unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.message.contains("cannot read"));
    }
}
