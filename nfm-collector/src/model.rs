//! The collector's shared vocabulary: path components, flow categories and a resolved flow.
//!
//! These types are the contract between resolver, aggregator, health evaluator, store, API and
//! the simulator's scorer. Component ids print as `kind:name` (for example `az-pair:use1-az1|use1-az2`)
//! and parse back, so ground truth written by nfm-sim and verdicts served by the API compare as strings.

use nfm_wire::FlowRecord;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Kinds of path component, in the order a flow's path visits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// The host running the agent (local) or the remote host, when known.
    Host,
    Subnet,
    Az,
    /// The network between two AZs (unordered pair, names sorted).
    AzPair,
    Vpc,
    /// A transit gateway or peering connection joining two VPCs.
    Gateway,
    /// The network between two regions (unordered pair, names sorted).
    RegionPair,
    /// A managed service endpoint (object storage, key-value database, ...).
    Service,
    /// A remote address the topology does not know.
    External,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 9] = [
        ComponentKind::Host,
        ComponentKind::Subnet,
        ComponentKind::Az,
        ComponentKind::AzPair,
        ComponentKind::Vpc,
        ComponentKind::Gateway,
        ComponentKind::RegionPair,
        ComponentKind::Service,
        ComponentKind::External,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Host => "host",
            ComponentKind::Subnet => "subnet",
            ComponentKind::Az => "az",
            ComponentKind::AzPair => "az-pair",
            ComponentKind::Vpc => "vpc",
            ComponentKind::Gateway => "gateway",
            ComponentKind::RegionPair => "region-pair",
            ComponentKind::Service => "service",
            ComponentKind::External => "external",
        }
    }

    /// Hosts and services are endpoints: their trouble is not the network's.
    pub fn is_network(self) -> bool {
        !matches!(
            self,
            ComponentKind::Host | ComponentKind::Service | ComponentKind::External
        )
    }
}

impl FromStr for ComponentKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ComponentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown component kind `{s}`"))
    }
}

/// One component of a path, e.g. `subnet:subnet-app-a`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub kind: ComponentKind,
    /// The topology's id or name; for pairs, the two names sorted and joined by `|`.
    pub name: std::sync::Arc<str>,
}

impl ComponentId {
    pub fn new(kind: ComponentKind, name: impl Into<std::sync::Arc<str>>) -> ComponentId {
        ComponentId {
            kind,
            name: name.into(),
        }
    }

    /// `self`, or the equal component already in `names` (added if new): equal components
    /// share one name.
    pub fn interned<S: std::hash::BuildHasher>(
        self,
        names: &mut std::collections::HashSet<ComponentId, S>,
    ) -> ComponentId {
        match names.get(&self) {
            Some(shared) => shared.clone(),
            None => {
                names.insert(self.clone());
                self
            }
        }
    }

    /// An unordered pair (AZ pair, region pair): the same id whichever end is local.
    pub fn pair(kind: ComponentKind, a: &str, b: &str) -> ComponentId {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        ComponentId::new(kind, format!("{x}|{y}"))
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

impl FromStr for ComponentId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s
            .split_once(':')
            .ok_or_else(|| format!("component `{s}` is not `kind:name`"))?;
        if n.is_empty() {
            return Err(format!("component `{s}` has an empty name"));
        }
        Ok(ComponentId::new(k.parse()?, n))
    }
}

impl Serialize for ComponentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComponentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Workload-insights category of a flow, from the local end's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    IntraAz,
    InterAz,
    InterVpc,
    InterRegion,
    Service,
    Unclassified,
}

impl Category {
    pub const ALL: [Category; 6] = [
        Category::IntraAz,
        Category::InterAz,
        Category::InterVpc,
        Category::InterRegion,
        Category::Service,
        Category::Unclassified,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Category::IntraAz => "intra-az",
            Category::InterAz => "inter-az",
            Category::InterVpc => "inter-vpc",
            Category::InterRegion => "inter-region",
            Category::Service => "service",
            Category::Unclassified => "unclassified",
        }
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category `{s}` (one of intra-az, inter-az, inter-vpc, inter-region, service, unclassified)"))
    }
}

/// One flow's deltas in one closed interval, resolved against the topology.
/// The aggregator hands every flow of an interval, from every agent, to the health evaluator.
///
/// `path` is filled by producers that resolve flows themselves (nfm-sim, tests); the collector's
/// aggregator leaves it empty and hands the evaluator each row's resolution instead
/// (`flow_table::Resolutions`, read through `health::ResolvedPaths`), so a path is never copied
/// per flow per interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowSample {
    pub agent_id: u64,
    /// The deltas as the agent reported them (ephemeral port elided).
    pub record: FlowRecord,
    pub category: Category,
    /// Components from the local host to the remote end, in path order (empty in the
    /// collector: see above):
    /// `host:L, subnet:Ls, az:La, [az-pair:..], vpc:Lv, [gateway:.., vpc:Rv], [region-pair:..], subnet:Rs, host:R`
    /// or ending in `service:NAME` / `external:IP` (see docs/topology.md).
    pub path: Vec<ComponentId>,
}

/// Every flow of one interval, once the aggregator has closed it (no more frames expected).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClosedInterval {
    pub start_ms: u64,
    pub end_ms: u64,
    pub flows: Vec<FlowSample>,
}

/// Whom a verdict blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blame {
    /// A network component (subnet, AZ, AZ pair, VPC, gateway, region pair): HealthIndicator 1.
    Network,
    /// An endpoint (a host or a service): not the network's fault, HealthIndicator stays 0.
    Endpoint,
}

/// One metric's departure from its baseline, as evidence for a verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricChange {
    /// `rtt_us`, `retrans_rate`, `timeout_rate`, `failed_connect_rate`.
    pub metric: String,
    pub baseline: f64,
    pub observed: f64,
}

/// The health evaluator's conclusion about one component in one interval, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub interval_start_ms: u64,
    pub component: ComponentId,
    pub blame: Blame,
    /// 0..=1.
    pub confidence: f64,
    pub degraded_flows: u64,
    pub healthy_flows: u64,
    pub evidence: Vec<MetricChange>,
    /// Start of the first interval of this component's incident: the run of intervals naming it
    /// with gaps no longer than the [`HoldDown`] (a flapping component is one incident;
    /// its flap count is in `evidence` as metric `flaps`).
    pub first_seen_ms: u64,
}

/// How many intervals an incident stays open after the last interval that named its component
/// at least: named again within the hold-down, it is the same incident (same `first_seen_ms`,
/// one more flap). Three bridge a link that flaps 2 intervals bad, 3 good.
pub const INCIDENT_HOLD_DOWN_INTERVALS: u64 = 3;

/// ... and at least this long (ms) by default: a link that flaps every few minutes is one
/// incident at 5 s intervals as at 60 s (three minutes is three 60 s intervals, thirty-six 5 s
/// ones). The collector's `incident_hold_down_s` setting changes it.
pub const INCIDENT_HOLD_DOWN_MIN_MS: u64 = 180_000;

/// How long an incident stays open after the last interval that named its component: at least
/// `intervals` intervals and at least `min_ms`. The evaluator, the notifier, `/api/incidents`
/// and `/metrics` use the same rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldDown {
    pub intervals: u64,
    pub min_ms: u64,
}

impl Default for HoldDown {
    fn default() -> Self {
        HoldDown {
            intervals: INCIDENT_HOLD_DOWN_INTERVALS,
            min_ms: INCIDENT_HOLD_DOWN_MIN_MS,
        }
    }
}

impl HoldDown {
    /// The hold-down in intervals of `interval_ms`.
    pub fn intervals_of(&self, interval_ms: u64) -> u64 {
        self.intervals.max(self.min_ms.div_ceil(interval_ms.max(1)))
    }

    /// The hold-down in ms after an interval of `interval_ms`.
    pub fn ms_of(&self, interval_ms: u64) -> u64 {
        self.intervals_of(interval_ms).saturating_mul(interval_ms)
    }
}

/// The default hold-down in intervals of `interval_ms` ([`HoldDown::default`]).
pub fn incident_hold_down_intervals(interval_ms: u64) -> u64 {
    HoldDown::default().intervals_of(interval_ms)
}

/// What the health evaluator returns for one closed interval.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HealthReport {
    pub interval_start_ms: u64,
    pub verdicts: Vec<Verdict>,
    /// Indices into `ClosedInterval::flows` of the flows judged degraded.
    pub degraded_flows: Vec<usize>,
}

/// issue 17: an address an agent announced as its own (Hello, wire 1.1), placed where the
/// agent said it runs. Used only where the topology file says nothing: file entries win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPlace {
    pub ip: std::net::IpAddr,
    /// The agent's host name.
    pub host: String,
    pub subnet: Option<String>,
    pub vpc: Option<String>,
    pub az: Option<String>,
    pub region: Option<String>,
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_component_id_round_trip() {
        for s in [
            "az-pair:use1-az1|use1-az2",
            "host:web-1",
            "service:object-store",
        ] {
            assert_eq!(s.parse::<ComponentId>().unwrap().to_string(), s);
        }
        assert_eq!(
            ComponentId::pair(ComponentKind::AzPair, "b", "a").to_string(),
            "az-pair:a|b"
        );
        assert!("nope".parse::<ComponentId>().is_err());
        assert!("planet:x".parse::<ComponentId>().is_err());
    }
}
