//! The resolver actor: gives every record its category, path and endpoint names from the
//! current topology, and a dense flow id the aggregator indexes by.
//!
//! Why flow ids: a flow reports once per interval, so the same (local, remote, port) key is
//! looked up over and over, and at 100k active flows every hash probe is a cache miss. The
//! resolver assigns each flow key a small id the first time it sees it and sends the
//! resolution once; afterwards a record carries just its id, so the aggregator finds its row
//! by array index, not by hashing. An agent reports its flows in much the same order every
//! interval, so the resolver first checks the agent's previous order (a sequential read) and
//! hashes only on a mismatch.
//!
//! The tables are bounded: when full they are cleared (counted) and ids restart in a new
//! generation; a topology reload, which arrives as a message, does the same, so in-flight
//! batches finish with the old topology and nothing is lost.

use crate::metrics::Metrics;
use crate::model::ComponentId;
use crate::pipeline::ResolverMsg;
use crate::resolution::{
    DecodedBatch, FlowKey, OwnedEndpoint, PairLabel, Resolved, ResolvedBatch, ResolvedBatches,
};
use crate::topology::Topology;
use rustc_hash::FxHashMap as HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

pub struct Resolver {
    topology: Arc<Topology>,
    /// Pair labels, one id and one `Arc<str>` per distinct label (see
    /// `Resolved::new_interned`). Kept across generations and topology reloads; bounded in
    /// `reset`.
    labels: HashMap<String, PairLabel>,
    /// Endpoint names, one allocation per distinct set (issue 16 item 4); bounded like labels.
    endpoints: HashMap<OwnedEndpoint, Arc<OwnedEndpoint>>,
    /// Path components, one name per distinct component (a subnet's name is shared by every
    /// path through it; issue 16 item 4); bounded like labels.
    components: rustc_hash::FxHashSet<ComponentId>,
    /// The last label id given out (ids count up for the collector's lifetime).
    next_label: u64,
    /// Resolutions by address pair (flows of one pair share one), found by the pair each one
    /// holds: a table of the resolutions alone, not a map storing every pair a second time as
    /// its key (~50 bytes per flow at 100k flows; issue 16 item 4).
    cache: hashbrown::HashTable<Arc<Resolved>>,
    /// The key of each flow id of this generation (ids are indices).
    keys: Vec<FlowKey>,
    /// Flow ids of this generation, found by their key in `keys`: the table holds ids only,
    /// not each key a second time (issue 16 item 4).
    flows: hashbrown::HashTable<u32>,
    /// Each agent's last batch in record order (flow ids), keyed by (agent, first flow key): an
    /// agent that reports its flows in the same order as last time is resolved without
    /// hashing (a record whose key is its hint's `keys` entry takes that id).
    hints: HashMap<(u64, FlowKey), Vec<u32>>,
    /// Entries over all hints.
    hint_records: usize,
    generation: u32,
    max_cache: usize,
    next_id: u64,
    metrics: Arc<Metrics>,
}

/// The flow table's hash of a flow key.
fn key_hash(key: &FlowKey) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(key)
}

/// The resolution cache's hash of an address pair.
fn pair_hash(local: IpAddr, remote: IpAddr) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one((local, remote))
}

impl Resolver {
    /// `max_cache`: flows (and address pairs) kept; at 100k active flows, 1M is ample.
    pub fn new(topology: Arc<Topology>, max_cache: usize, metrics: Arc<Metrics>) -> Resolver {
        Resolver {
            topology,
            labels: HashMap::default(),
            endpoints: HashMap::default(),
            components: Default::default(),
            next_label: 0,
            cache: hashbrown::HashTable::new(),
            keys: Vec::new(),
            flows: hashbrown::HashTable::new(),
            hints: HashMap::default(),
            hint_records: 0,
            generation: 0,
            max_cache: max_cache.max(1),
            next_id: 1,
            metrics,
        }
    }

    pub fn resolve(&mut self, local: IpAddr, remote: IpAddr) -> Arc<Resolved> {
        let hash = pair_hash(local, remote);
        if let Some(r) = self
            .cache
            .find(hash, |r| r.local_ip == local && r.remote_ip == remote)
        {
            return r.clone();
        }
        let (labels, next_label, endpoints, components) = (
            &mut self.labels,
            &mut self.next_label,
            &mut self.endpoints,
            &mut self.components,
        );
        let r = Arc::new(Resolved::new_interned(
            self.next_id,
            &self.topology,
            local,
            remote,
            &mut |s| {
                labels
                    .entry(s)
                    .or_insert_with_key(|k| {
                        *next_label += 1;
                        PairLabel::new(*next_label, k)
                    })
                    .clone()
            },
            &mut |e| {
                endpoints
                    .entry(e)
                    .or_insert_with_key(|k| Arc::new(k.clone()))
                    .clone()
            },
            &mut |c| c.interned(components),
        ));
        self.next_id += 1;
        self.cache
            .insert_unique(hash, r.clone(), |r| pair_hash(r.local_ip, r.remote_ip));
        r
    }

    /// Voids every flow id: the next batch starts a new generation.
    fn reset(&mut self) {
        // Labels outlive generations and are only dropped all together, here, once they far
        // outnumber what one generation can use; ids keep counting up, so a label seen again
        // never takes an id that an open interval still groups by.
        if self.labels.len() > 2 * self.max_cache {
            self.labels.clear();
        }
        if self.endpoints.len() > 2 * self.max_cache {
            self.endpoints.clear();
        }
        if self.components.len() > 2 * self.max_cache {
            self.components.clear();
        }
        self.cache.clear();
        self.keys.clear();
        self.flows.clear();
        self.hints.clear();
        self.hint_records = 0;
        self.generation = self.generation.wrapping_add(1);
    }

    pub fn handle(&mut self, batches: Vec<DecodedBatch>) -> ResolvedBatches {
        // Make room first, so that every id of this message is of one generation.
        let incoming: usize = batches.iter().map(|b| b.records.len()).sum();
        if self.flows.len() + incoming > self.max_cache
            || self.cache.len() + incoming > self.max_cache
        {
            self.reset();
            self.metrics
                .resolver_cache_resets
                .fetch_add(1, Ordering::Relaxed);
        }
        let first_new = self.flows.len() as u32;
        let mut new = Vec::new();
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            let mut ids = Vec::with_capacity(b.records.len());
            let Some(first) = b.records.first().map(FlowKey::of) else {
                out.push(ResolvedBatch {
                    batch: b,
                    flows: ids,
                });
                continue;
            };
            let hint_key = (b.agent_id, first);
            // The previous order, rewritten in place: entry i is read before it is replaced.
            let mut hint = match self.hints.remove(&hint_key) {
                Some(h) => {
                    self.hint_records -= h.len();
                    h
                }
                None => Vec::new(),
            };
            for (i, r) in b.records.iter().enumerate() {
                let key = FlowKey::of(r);
                let hinted = hint
                    .get(i)
                    .copied()
                    .filter(|&id| self.keys.get(id as usize) == Some(&key));
                let id = match hinted {
                    Some(id) => id,
                    None => {
                        let h = key_hash(&key);
                        let keys = &self.keys;
                        match self.flows.find(h, |&id| keys[id as usize] == key) {
                            Some(&id) => id,
                            None => {
                                let id = self.keys.len() as u32;
                                self.keys.push(key);
                                let keys = &self.keys;
                                self.flows
                                    .insert_unique(h, id, |&id| key_hash(&keys[id as usize]));
                                new.push(self.resolve(r.local, r.remote));
                                id
                            }
                        }
                    }
                };
                ids.push(id);
                match hint.get_mut(i) {
                    Some(h) => *h = id,
                    None => hint.push(id),
                }
            }
            hint.truncate(b.records.len());
            // Hints of batches that stopped coming (an agent's first flow changed) are only
            // dropped wholesale: cap them at twice the live flows.
            if self.hint_records + hint.len() > 2 * self.flows.len() + 4096 {
                self.hints.clear();
                self.hint_records = 0;
            }
            self.hint_records += hint.len();
            self.hints.insert(hint_key, hint);
            out.push(ResolvedBatch {
                batch: b,
                flows: ids,
            });
        }
        ResolvedBatches {
            generation: self.generation,
            first_new,
            new,
            batches: out,
        }
    }

    pub fn set_topology(&mut self, t: Arc<Topology>) {
        self.topology = t;
        self.reset();
    }

    pub fn run(mut self, rx: Receiver<ResolverMsg>, out: SyncSender<crate::pipeline::AggMsg>) {
        use crate::metrics::Chan;
        use crate::pipeline::AggMsg;
        let mut trims = crate::alloc::IdleTrims::new(crate::alloc::Trimmer::Resolver);
        while let Ok(m) = rx.recv() {
            self.metrics.received(Chan::Resolver);
            let (worked, tick) = (
                matches!(m, ResolverMsg::Batches(_)),
                matches!(m, ResolverMsg::Tick(_)),
            );
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
            // Nothing queued is `pipeline_idle`'s to say (no records in flight).
            trims.after_group(false, worked, tick, true, &self.metrics);
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::model::Category;
    use nfm_wire::FlowRecord;
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
            n: 0,
            interval_start_ms: 0,
            interval_end_ms: 1000,
            simulated: false,
            records: vec![
                rec("10.0.1.10", "10.0.2.10"),
                rec("10.0.1.10", "198.18.0.1"),
            ],
        };
        tx.send(ResolverMsg::Batches(vec![batch.clone()])).unwrap();
        let crate::pipeline::AggMsg::Batches(out) = orx.recv().unwrap() else {
            panic!("expected batches")
        };
        assert_eq!(
            (out.first_new, out.batches[0].flows.clone()),
            (0, vec![0, 1])
        );
        assert_eq!(out.new[0].category, Category::InterAz);
        assert_eq!(&*out.new[0].remote_label, "subnet:subnet-app-b");
        assert_eq!(out.new[1].category, Category::Service);
        assert_eq!(&*out.new[1].remote_label, "service:object-store");
        let generation = out.generation;
        // The same flows again: the same ids, nothing new to resolve.
        tx.send(ResolverMsg::Batches(vec![batch.clone()])).unwrap();
        let crate::pipeline::AggMsg::Batches(out) = orx.recv().unwrap() else {
            panic!("expected batches")
        };
        assert_eq!(
            (out.generation, out.first_new, out.new.len()),
            (generation, 2, 0)
        );
        assert_eq!(out.batches[0].flows, vec![0, 1]);
        // Reload to an empty topology: the same records become unclassified.
        tx.send(ResolverMsg::Topology(Arc::new(Topology::empty())))
            .unwrap();
        tx.send(ResolverMsg::Batches(vec![batch])).unwrap();
        let crate::pipeline::AggMsg::Batches(out) = orx.recv().unwrap() else {
            panic!("expected batches")
        };
        assert_ne!(out.generation, generation, "a reload voids every id");
        assert_eq!(out.first_new, 0);
        assert_eq!(out.new[0].category, Category::Unclassified);
        tx.send(ResolverMsg::Shutdown).unwrap();
        h.join().unwrap();
    }

    fn one(agent: u64, records: Vec<FlowRecord>) -> Vec<DecodedBatch> {
        vec![DecodedBatch {
            agent_id: agent,
            n: 0,
            interval_start_ms: 0,
            interval_end_ms: 1000,
            simulated: false,
            records,
        }]
    }

    #[test]
    fn test_cache_is_bounded() {
        let t = Arc::new(Topology::parse(TOPO).unwrap());
        let m = Arc::new(Metrics::default());
        let mut res = Resolver::new(t, 2, m.clone());
        let mut generations = Vec::new();
        for i in 0..5 {
            let out = res.handle(one(1, vec![rec("10.0.1.1", &format!("10.0.2.{i}"))]));
            assert!(res.flows.len() <= 2 && res.cache.len() <= 2);
            // Every id the message uses is resolved in it or earlier in its generation.
            assert!((out.batches[0].flows[0] as usize) < out.first_new as usize + out.new.len());
            generations.push(out.generation);
        }
        assert_eq!(m.resolver_cache_resets.load(Ordering::Relaxed), 2);
        assert_eq!(generations, vec![0, 0, 1, 1, 2]);
    }

    /// Pair labels are grouped by id: equal labels share one, distinct labels never do, and a
    /// label dropped from a full interner comes back under a new id, never a reused one.
    #[test]
    fn test_pair_label_ids() {
        let t = Arc::new(Topology::parse(TOPO).unwrap());
        let mut res = Resolver::new(t, 1, Arc::new(Metrics::default()));
        let a = res.resolve("10.0.1.10".parse().unwrap(), "10.0.2.10".parse().unwrap());
        let b = res.resolve("10.0.1.11".parse().unwrap(), "10.0.2.11".parse().unwrap());
        let c = res.resolve("10.0.1.10".parse().unwrap(), "198.18.0.1".parse().unwrap());
        assert_eq!(&*a.remote_label, &*b.remote_label);
        assert_eq!(
            a.remote_label.id(),
            b.remote_label.id(),
            "equal labels, one id"
        );
        assert_ne!(
            a.remote_label.id(),
            c.remote_label.id(),
            "distinct labels, distinct ids"
        );
        let mut seen: Vec<u64> = [&a, &b, &c]
            .iter()
            .flat_map(|r| [r.local_label.id(), r.remote_label.id()])
            .collect();
        seen.sort_unstable();
        seen.dedup();
        // Overflow the interner (bound 2 × max_cache) and reset: old ids are never handed out.
        for i in 0..4u8 {
            res.resolve(
                "10.0.1.10".parse().unwrap(),
                format!("198.18.1.{i}").parse().unwrap(),
            );
        }
        res.reset();
        let again = res.resolve("10.0.1.10".parse().unwrap(), "10.0.2.10".parse().unwrap());
        assert_eq!(&*again.remote_label, &*a.remote_label);
        assert!(
            !seen.contains(&again.remote_label.id()),
            "a new id after the reset"
        );
    }

    /// Records in a different order than last time, new flows among old ones, and two agents
    /// with the same flows: every record still gets its own flow's id.
    #[test]
    fn test_ids_follow_keys_not_positions() {
        let t = Arc::new(Topology::parse(TOPO).unwrap());
        let mut res = Resolver::new(t, 100, Arc::new(Metrics::default()));
        let a = rec("10.0.1.10", "10.0.2.10");
        let b = rec("10.0.1.10", "10.0.2.11");
        let mut c = rec("10.0.1.10", "10.0.2.10");
        c.remote_port = 80;
        let first = res.handle(one(1, vec![a, b]));
        assert_eq!(first.batches[0].flows, vec![0, 1]);
        let again = res.handle(one(1, vec![a, c, b]));
        assert_eq!(again.batches[0].flows, vec![0, 2, 1]);
        assert_eq!((again.first_new, again.new.len()), (2, 1));
        let swapped = res.handle(one(1, vec![a, b, c]));
        assert_eq!(swapped.batches[0].flows, vec![0, 1, 2]);
        // Another agent reporting the same key is the same flow (the aggregator keys flows by
        // addresses and port, not by agent).
        let other = res.handle(one(2, vec![b]));
        assert_eq!(other.batches[0].flows, vec![1]);
        // Shorter than last time.
        let short = res.handle(one(1, vec![a]));
        assert_eq!(short.batches[0].flows, vec![0]);
    }
}
