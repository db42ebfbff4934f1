//! Resolutions: what the resolver learns about a flow (category, path, endpoint names) and the
//! batches it hands the aggregator. Shared data, not an actor: the resolver writes these, the
//! aggregator, the health stage and the evaluator read them, and none of them depends on another.

use crate::model::{Category, ComponentId, ComponentKind};
use crate::topology::{classify_endpoints, Endpoint, Topology};
use nfm_wire::FlowRecord;
use std::net::IpAddr;
use std::sync::Arc;

/// One decoded FlowBatch frame's records (or several frames of one agent and interval).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedBatch {
    pub agent_id: u64,
    /// Ingest's order number ([`crate::pipeline::WalBatch::n`]; 0: not numbered).
    pub n: u64,
    pub interval_start_ms: u64,
    pub interval_end_ms: u64,
    /// The agent announced itself as a simulator.
    pub simulated: bool,
    pub records: Vec<FlowRecord>,
}

/// An endpoint's names, owned (an [`Endpoint`] borrows from a topology that may be replaced).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OwnedEndpoint {
    pub host: Option<String>,
    pub subnet: Option<String>,
    pub vpc: Option<String>,
    pub az: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
}

impl OwnedEndpoint {
    pub fn of(e: &Endpoint<'_>) -> OwnedEndpoint {
        let o = |s: Option<&str>| s.map(str::to_string);
        OwnedEndpoint {
            host: o(e.host),
            subnet: o(e.subnet),
            vpc: o(e.vpc),
            az: o(e.az),
            region: o(e.region),
            service: o(e.service),
        }
    }
    pub fn view(&self, ip: IpAddr) -> Endpoint<'_> {
        Endpoint {
            ip,
            host: self.host.as_deref(),
            subnet: self.subnet.as_deref(),
            vpc: self.vpc.as_deref(),
            az: self.az.as_deref(),
            region: self.region.as_deref(),
            service: self.service.as_deref(),
        }
    }
}

/// A resource-pair label (`subnet:..`, `host:IP`, `vpc:..`, `service:..`, `external:IP`) with
/// an id: equal labels have equal ids, so the aggregator groups resource pairs by two integers
/// and turns only the pairs it keeps into strings.
///
/// Ids come from the resolver's interner, which numbers labels from a counter that never goes
/// back (a label dropped from a full interner and seen again gets a new id, never an old one
/// that an open interval may still use). Labels made without an interner ([`From<&str>`],
/// tests and tools) take a 64-bit hash of the text as id.
///
/// One pointer (id and text behind it, shared by every resolution with that label): a
/// resolution holds two per flow (issue 16 item 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairLabel(Arc<(u64, Box<str>)>);

impl PairLabel {
    pub fn new(id: u64, name: &str) -> PairLabel {
        PairLabel(Arc::new((id, name.into())))
    }

    /// The label's id: equal labels, equal ids.
    pub fn id(&self) -> u64 {
        self.0 .0
    }

    /// The id of a label made without an interner: a 64-bit hash of its text, with the top bit
    /// set so it never equals an interner's counter id.
    pub fn hashed(name: &str) -> PairLabel {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        name.hash(&mut h);
        PairLabel::new(h.finish() | 1 << 63, name)
    }
}

impl From<&str> for PairLabel {
    fn from(name: &str) -> PairLabel {
        PairLabel::hashed(name)
    }
}

impl std::ops::Deref for PairLabel {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0 .1
    }
}

/// The resolution of one (local, remote) address pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Unique for the collector's lifetime (the aggregator caches monitor membership by it).
    pub id: u64,
    pub local_ip: IpAddr,
    pub remote_ip: IpAddr,
    pub category: Category,
    pub path: Vec<ComponentId>,
    /// Shared by every flow with the same names (the resolver interns them: most flows differ
    /// only in their addresses, and a copy of the names per flow was ~0.5 KB of each flow's
    /// memory; issue 16 item 4).
    pub local: Arc<OwnedEndpoint>,
    pub remote: Arc<OwnedEndpoint>,
    /// Resource-pair labels for the historical explorer: `subnet:..` or `host:IP` locally;
    /// `subnet:..`, `vpc:..`, `service:..` or `external:IP` remotely.
    pub local_label: PairLabel,
    pub remote_label: PairLabel,
}

impl Resolved {
    pub fn new(id: u64, t: &Topology, local: IpAddr, remote: IpAddr) -> Resolved {
        Resolved::new_interned(
            id,
            t,
            local,
            remote,
            &mut |s| PairLabel::hashed(&s),
            &mut Arc::new,
            &mut |c| c,
        )
    }

    /// Like [`Resolved::new`], with labels drawn from `intern` (equal labels, one id and one
    /// allocation), endpoint names from `endpoint` (equal names, one allocation) and path
    /// components from `component` (equal components, one name).
    pub fn new_interned(
        id: u64,
        t: &Topology,
        local: IpAddr,
        remote: IpAddr,
        intern: &mut dyn FnMut(String) -> PairLabel,
        endpoint: &mut dyn FnMut(OwnedEndpoint) -> Arc<OwnedEndpoint>,
        component: &mut dyn FnMut(ComponentId) -> ComponentId,
    ) -> Resolved {
        let (l, r) = (t.resolve(local), t.resolve(remote));
        let local_label = intern(match l.subnet {
            Some(s) => format!("subnet:{s}"),
            None => format!("host:{local}"),
        });
        let remote_label = intern(match (r.subnet, r.service, r.vpc) {
            (Some(s), _, _) => format!("subnet:{s}"),
            (_, Some(s), _) => format!("service:{s}"),
            (_, _, Some(v)) => format!("vpc:{v}"),
            _ => ComponentId::new(ComponentKind::External, remote.to_string()).to_string(),
        });
        // Kept for the flow's lifetime: no spare capacity, names shared (issue 16 item 4).
        let mut path: Vec<ComponentId> = t.path_of(&l, &r).into_iter().map(component).collect();
        // (collected in place: the capacity `path_of` reserved is still there)
        path.shrink_to_fit();
        Resolved {
            id,
            local_ip: local,
            remote_ip: remote,
            category: classify_endpoints(&l, &r),
            path,
            local: endpoint(OwnedEndpoint::of(&l)),
            remote: endpoint(OwnedEndpoint::of(&r)),
            local_label,
            remote_label,
        }
    }
}

/// A flow: local address, remote address, service port (and which end this host is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub local: IpAddr,
    pub remote: IpAddr,
    pub port: u16,
    pub server: bool,
}

impl FlowKey {
    pub fn of(r: &FlowRecord) -> FlowKey {
        let server = r.role == nfm_wire::Role::Server;
        FlowKey {
            local: r.local,
            remote: r.remote,
            port: r.service_port(),
            server,
        }
    }
}

/// A batch with each record's flow id (same order).
#[derive(Debug, Clone)]
pub struct ResolvedBatch {
    pub batch: DecodedBatch,
    pub flows: Vec<u32>,
}

/// What the resolver sends the aggregator: batches plus the resolutions of the flows they
/// introduce.
#[derive(Debug, Clone, Default)]
pub struct ResolvedBatches {
    /// Ids are only comparable within one generation: a new generation means every earlier
    /// id is void (the resolver's tables were cleared, or the topology changed).
    pub generation: u32,
    /// Resolutions of ids `first_new .. first_new + new.len()`, in id order. Ids of a
    /// generation are assigned consecutively from 0, so the receiver can keep them in a `Vec`.
    pub first_new: u32,
    pub new: Vec<Arc<Resolved>>,
    pub batches: Vec<ResolvedBatch>,
}
