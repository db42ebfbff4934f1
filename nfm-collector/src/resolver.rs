//! The resolver actor: gives every record its category, path and endpoint names from the
//! current topology.
//!
//! Why a cache: a flow reports once per interval, so the same (local, remote) pair is resolved
//! over and over; caching the resolution per address pair turns two longest-prefix matches and a
//! path build into one hash lookup. The cache is bounded (cleared when full, counted) and dropped
//! on a topology reload, which arrives as a message, so in-flight batches finish with the old
//! topology and nothing is lost.

use crate::metrics::Metrics;
use crate::model::{Category, ComponentId, ComponentKind};
use crate::topology::{classify_endpoints, Endpoint, Topology};
use nfm_wire::FlowRecord;
use rustc_hash::FxHashMap as HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

/// One decoded FlowBatch frame's records (or several frames of one agent and interval).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedBatch {
    pub agent_id: u64,
    pub interval_start_ms: u64,
    pub interval_end_ms: u64,
    /// The agent announced itself as a simulator.
    pub simulated: bool,
    pub records: Vec<FlowRecord>,
}

/// An endpoint's names, owned (an [`Endpoint`] borrows from a topology that may be replaced).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedEndpoint {
    pub host: Option<String>,
    pub subnet: Option<String>,
    pub vpc: Option<String>,
    pub az: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
}

impl OwnedEndpoint {
    fn of(e: &Endpoint<'_>) -> OwnedEndpoint {
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

/// The resolution of one (local, remote) address pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Unique for the collector's lifetime (the aggregator caches monitor membership by it).
    pub id: u64,
    pub local_ip: IpAddr,
    pub remote_ip: IpAddr,
    pub category: Category,
    pub path: Vec<ComponentId>,
    pub local: OwnedEndpoint,
    pub remote: OwnedEndpoint,
    /// Resource-pair labels for the historical explorer: `subnet:..` or `host:IP` locally;
    /// `subnet:..`, `vpc:..`, `service:..` or `external:IP` remotely.
    pub local_label: Arc<str>,
    pub remote_label: Arc<str>,
}

impl Resolved {
    pub fn new(id: u64, t: &Topology, local: IpAddr, remote: IpAddr) -> Resolved {
        Resolved::new_interned(id, t, local, remote, &mut |s| s.into())
    }

    /// Like [`Resolved::new`], with labels drawn from `intern` (equal labels, one allocation,
    /// so the aggregator can group pairs by pointer).
    pub fn new_interned(
        id: u64,
        t: &Topology,
        local: IpAddr,
        remote: IpAddr,
        intern: &mut dyn FnMut(String) -> Arc<str>,
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
        Resolved {
            id,
            local_ip: local,
            remote_ip: remote,
            category: classify_endpoints(&l, &r),
            path: t.path_of(&l, &r),
            local: OwnedEndpoint::of(&l),
            remote: OwnedEndpoint::of(&r),
            local_label,
            remote_label,
        }
    }
}

/// A batch with each record's resolution (same order).
#[derive(Debug, Clone)]
pub struct ResolvedBatch {
    pub batch: DecodedBatch,
    pub resolved: Vec<Arc<Resolved>>,
}

pub enum ResolverMsg {
    Batches(Vec<DecodedBatch>),
    Topology(Arc<Topology>),
    Tick(Instant),
    Shutdown,
}

pub struct Resolver {
    topology: Arc<Topology>,
    /// Pair labels, one `Arc<str>` per distinct label (see `Resolved::new_interned`). Kept
    /// across topology reloads so equal labels stay one pointer; bounded like the cache.
    labels: HashMap<String, Arc<str>>,
    cache: HashMap<(IpAddr, IpAddr), Arc<Resolved>>,
    max_cache: usize,
    next_id: u64,
    metrics: Arc<Metrics>,
}

impl Resolver {
    /// `max_cache`: address pairs kept; at 100k active flows, 1M entries is ample.
    pub fn new(topology: Arc<Topology>, max_cache: usize, metrics: Arc<Metrics>) -> Resolver {
        Resolver {
            topology,
            labels: HashMap::default(),
            cache: HashMap::default(),
            max_cache,
            next_id: 1,
            metrics,
        }
    }

    pub fn resolve(&mut self, local: IpAddr, remote: IpAddr) -> Arc<Resolved> {
        if let Some(r) = self.cache.get(&(local, remote)) {
            return r.clone();
        }
        if self.cache.len() >= self.max_cache {
            self.cache.clear();
            self.metrics
                .resolver_cache_resets
                .fetch_add(1, Ordering::Relaxed);
        }
        if self.labels.len() >= self.max_cache {
            self.labels.clear();
        }
        let labels = &mut self.labels;
        let r = Arc::new(Resolved::new_interned(
            self.next_id,
            &self.topology,
            local,
            remote,
            &mut |s| {
                labels
                    .entry(s)
                    .or_insert_with_key(|k| k.as_str().into())
                    .clone()
            },
        ));
        self.next_id += 1;
        self.cache.insert((local, remote), r.clone());
        r
    }

    pub fn handle(&mut self, batches: Vec<DecodedBatch>) -> Vec<ResolvedBatch> {
        batches
            .into_iter()
            .map(|b| {
                let resolved = b
                    .records
                    .iter()
                    .map(|r| self.resolve(r.local, r.remote))
                    .collect();
                ResolvedBatch { batch: b, resolved }
            })
            .collect()
    }

    pub fn set_topology(&mut self, t: Arc<Topology>) {
        self.topology = t;
        self.cache.clear();
    }

    pub fn run(mut self, rx: Receiver<ResolverMsg>, out: SyncSender<crate::aggregator::AggMsg>) {
        use crate::aggregator::AggMsg;
        use crate::metrics::Chan;
        while let Ok(m) = rx.recv() {
            self.metrics.received(Chan::Resolver);
            match m {
                ResolverMsg::Batches(b) => {
                    let r = self.handle(b);
                    self.metrics.sent(Chan::Aggregator);
                    if out.send(AggMsg::Batches(r)).is_err() {
                        break;
                    }
                }
                ResolverMsg::Topology(t) => {
                    log::info!("resolver: topology replaced ({t:?})");
                    self.set_topology(t);
                }
                ResolverMsg::Tick(t) => {
                    self.metrics.sent(Chan::Aggregator);
                    if out.send(AggMsg::Tick(t)).is_err() {
                        break;
                    }
                }
                ResolverMsg::Shutdown => break,
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::sync::mpsc::sync_channel;

    const TOPO: &str = include_str!("../examples/topology.toml");

    fn rec(l: &str, r: &str) -> FlowRecord {
        FlowRecord {
            local: l.parse().unwrap(),
            remote: r.parse().unwrap(),
            remote_port: 443,
            bytes_sent: 10,
            ..Default::default()
        }
    }

    #[test]
    fn test_batches_in_resolved_batches_out_and_reload() {
        let t = Arc::new(Topology::parse(TOPO).unwrap());
        let res = Resolver::new(t, 100, Arc::new(Metrics::default()));
        let (tx, rx) = sync_channel(4);
        let (otx, orx) = sync_channel(4);
        let h = std::thread::spawn(move || res.run(rx, otx));
        let batch = DecodedBatch {
            agent_id: 1,
            interval_start_ms: 0,
            interval_end_ms: 1000,
            simulated: false,
            records: vec![
                rec("10.0.1.10", "10.0.2.10"),
                rec("10.0.1.10", "198.18.0.1"),
            ],
        };
        tx.send(ResolverMsg::Batches(vec![batch.clone()])).unwrap();
        let crate::aggregator::AggMsg::Batches(out) = orx.recv().unwrap() else {
            panic!("expected batches")
        };
        assert_eq!(out[0].resolved[0].category, Category::InterAz);
        assert_eq!(&*out[0].resolved[0].remote_label, "subnet:subnet-app-b");
        assert_eq!(out[0].resolved[1].category, Category::Service);
        assert_eq!(&*out[0].resolved[1].remote_label, "service:object-store");
        // Reload to an empty topology: the same records become unclassified.
        tx.send(ResolverMsg::Topology(Arc::new(Topology::empty())))
            .unwrap();
        tx.send(ResolverMsg::Batches(vec![batch])).unwrap();
        let crate::aggregator::AggMsg::Batches(out) = orx.recv().unwrap() else {
            panic!("expected batches")
        };
        assert_eq!(out[0].resolved[0].category, Category::Unclassified);
        tx.send(ResolverMsg::Shutdown).unwrap();
        h.join().unwrap();
    }

    #[test]
    fn test_cache_is_bounded() {
        let t = Arc::new(Topology::parse(TOPO).unwrap());
        let m = Arc::new(Metrics::default());
        let mut res = Resolver::new(t, 2, m.clone());
        for i in 0..5 {
            res.resolve(
                "10.0.1.1".parse().unwrap(),
                format!("10.0.2.{i}").parse().unwrap(),
            );
        }
        assert!(res.cache.len() <= 2);
        assert_eq!(m.resolver_cache_resets.load(Ordering::Relaxed), 2);
    }
}
