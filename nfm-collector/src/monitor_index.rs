//! Which monitors a flow belongs to, for any number of monitors: an inverted index from each
//! resource (kind and name) to the monitors that list it, so finding a flow's monitors costs a
//! few hash lookups and the monitors it belongs to, not a comparison with every monitor (the
//! aggregator did that for at most 64 monitors, with a 64-bit mask per flow). Flows share
//! few distinct monitor sets, so each set is interned once and a flow keeps a 4-byte set id.

use crate::monitor::{endpoint_names, Monitor, Resource};
use crate::topology::Endpoint;
use rustc_hash::FxHashMap as HashMap;

/// Resource → monitors, built from a monitor list (ids are positions in that list).
#[derive(Debug, Default)]
pub struct MonitorIndex {
    local: [HashMap<Box<str>, Vec<u32>>; Resource::KINDS],
    remote: [HashMap<Box<str>, Vec<u32>>; Resource::KINDS],
    /// Monitors whose remote side is Everywhere.
    everywhere: Vec<bool>,
}

impl MonitorIndex {
    pub fn new(monitors: &[Monitor]) -> MonitorIndex {
        let mut ix = MonitorIndex {
            everywhere: monitors.iter().map(|m| m.remote.is_empty()).collect(),
            ..Default::default()
        };
        for (i, m) in monitors.iter().enumerate() {
            let i = i as u32;
            for (side, list) in [(&mut ix.local, &m.local), (&mut ix.remote, &m.remote)] {
                for r in list {
                    let (k, n) = r.kind_name();
                    let ids = side[k].entry(n.into()).or_default();
                    if ids.last() != Some(&i) {
                        ids.push(i);
                    }
                }
            }
        }
        ix
    }

    pub fn len(&self) -> usize {
        self.everywhere.len()
    }

    pub fn is_empty(&self) -> bool {
        self.everywhere.is_empty()
    }

    /// The monitors a flow between `local` and `remote` belongs to, ascending, into `out`
    /// (`scratch` is reused for the remote side).
    pub fn members(
        &self,
        local: &Endpoint<'_>,
        remote: &Endpoint<'_>,
        out: &mut Vec<u32>,
        scratch: &mut Vec<u32>,
    ) {
        out.clear();
        gather(&self.local, local, out);
        if out.is_empty() {
            return;
        }
        scratch.clear();
        gather(&self.remote, remote, scratch);
        out.retain(|m| self.everywhere[*m as usize] || scratch.binary_search(m).is_ok());
    }
}

/// Every monitor listing one of `e`'s resources, ascending and without repeats.
fn gather(
    side: &[HashMap<Box<str>, Vec<u32>>; Resource::KINDS],
    e: &Endpoint<'_>,
    out: &mut Vec<u32>,
) {
    for (k, name) in endpoint_names(e).into_iter().enumerate() {
        if let Some(ids) = name.and_then(|n| side[k].get(n)) {
            out.extend_from_slice(ids);
        }
    }
    out.sort_unstable();
    out.dedup();
}

/// Distinct monitor sets, each stored once; set 0 is the empty set.
#[derive(Debug)]
pub struct MonitorSets {
    ids: HashMap<Box<[u32]>, u32>,
    sets: Vec<Box<[u32]>>,
}

impl Default for MonitorSets {
    fn default() -> MonitorSets {
        let empty: Box<[u32]> = Box::new([]);
        MonitorSets {
            ids: [(empty.clone(), 0)].into_iter().collect(),
            sets: vec![empty],
        }
    }
}

impl MonitorSets {
    /// The id of `set` (ascending monitor ids), adding it if new.
    pub fn intern(&mut self, set: &[u32]) -> u32 {
        if let Some(&id) = self.ids.get(set) {
            return id;
        }
        let id = self.sets.len() as u32;
        let b: Box<[u32]> = set.into();
        self.sets.push(b.clone());
        self.ids.insert(b, id);
        id
    }

    /// The monitors of set `id` (empty for an unknown id).
    pub fn get(&self, id: u32) -> &[u32] {
        self.sets.get(id as usize).map_or(&[], |s| s)
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::monitor::parse_monitors;
    use crate::topology::Topology;

    const TOPO: &str = include_str!("../examples/topology.toml");

    /// The index gives exactly what matching every monitor one by one gives, for every pair of
    /// a spread of addresses, with regions, Everywhere and repeated resources.
    #[test]
    fn test_index_agrees_with_linear_matching() {
        let t = Topology::parse(TOPO).unwrap();
        let region = t.regions()[0].name.clone();
        let ms = parse_monitors(&format!(
            "[[monitor]]\nname=\"a\"\nlocal=[\"subnet:subnet-app-a\"]\n\
             [[monitor]]\nname=\"b\"\nlocal=[\"vpc:vpc-app\"]\nremote=[\"service:object-store\"]\n\
             [[monitor]]\nname=\"c\"\nlocal=[\"region:{region}\"]\nremote=[\"region:{region}\", \"az:use1-az1\"]\n\
             [[monitor]]\nname=\"d\"\nlocal=[\"az:use1-az1\", \"az:use1-az2\"]\nremote=[\"vpc:vpc-data\"]\n\
             [[monitor]]\nname=\"e\"\nlocal=[\"region:{region}\"]\n"
        ))
        .unwrap();
        for m in &ms {
            m.validate(&t).unwrap();
        }
        let ix = MonitorIndex::new(&ms);
        let ips = [
            "10.0.1.10",
            "10.0.2.10",
            "10.0.3.7",
            "10.1.1.1",
            "10.1.2.2",
            "198.18.0.1",
            "8.8.8.8",
        ];
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let mut hits = 0;
        for a in ips {
            for b in ips {
                let (l, r) = (t.resolve(a.parse().unwrap()), t.resolve(b.parse().unwrap()));
                ix.members(&l, &r, &mut out, &mut scratch);
                let linear: Vec<u32> = (0..ms.len() as u32)
                    .filter(|&i| ms[i as usize].matches(&l, &r))
                    .collect();
                assert_eq!(out, linear, "{a} -> {b}");
                hits += out.len();
            }
        }
        assert!(hits > 20, "the spread exercises matches ({hits})");
    }

    /// More than 64 monitors: the 1000th matches like the first (a 64-bit mask dropped them).
    #[test]
    fn test_thousand_monitors() {
        let t = Topology::parse(TOPO).unwrap();
        let mut text = String::new();
        for i in 0..1000 {
            let side = if i % 2 == 0 {
                "subnet:subnet-app-a"
            } else {
                "vpc:vpc-data"
            };
            text.push_str(&format!("[[monitor]]\nname=\"m{i}\"\nlocal=[\"{side}\"]\n"));
        }
        let ms = parse_monitors(&text).unwrap();
        let ix = MonitorIndex::new(&ms);
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let r = t.resolve("8.8.8.8".parse().unwrap());
        ix.members(
            &t.resolve("10.0.1.10".parse().unwrap()),
            &r,
            &mut out,
            &mut scratch,
        );
        assert_eq!(out.len(), 500);
        assert_eq!(out.last(), Some(&998));
        let mut sets = MonitorSets::default();
        let id = sets.intern(&out);
        assert_eq!(sets.intern(&out), id);
        assert_eq!(sets.get(id), &out[..]);
        assert_eq!(sets.intern(&[]), 0);
        assert_eq!(sets.get(0), &[] as &[u32]);
    }
}
