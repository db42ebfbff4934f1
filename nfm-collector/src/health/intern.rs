//! Component interning for the evaluator: each distinct path component gets a small integer id
//! and a 64-bit digest once, so the per-sample work of an interval is integer work: one table
//! probe per path component, no string hashing for path or class identities, no per-sample
//! allocation.
//!
//! Guarantee: ids are only used within one interval (each interval renumbers the components it
//! sees in order of first appearance, exactly as if the table were built afresh), digests are
//! SipHash of the component as before, and the table is bounded: components unseen for
//! [`IDLE_INTERVALS`] are dropped whenever they outnumber the live ones.

use crate::model::ComponentId;
use rustc_hash::FxHashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Components unseen this many intervals may be forgotten (they are re-interned, with the same
/// digest, if they come back).
pub const IDLE_INTERVALS: u32 = 64;

/// SipHash (fixed keys) of anything hashable: the identity digests of components, paths, classes.
pub fn digest(h: impl Hash) -> u64 {
    let mut s = DefaultHasher::new();
    h.hash(&mut s);
    s.finish()
}

/// Persistent component table plus the current interval's numbering.
#[derive(Debug, Default)]
pub struct Interner {
    /// Why FxHash and not SipHash: the keys come from the topology resolution (names and, for
    /// unknown remotes, `external:IP`), lookups are the hottest operation of the evaluator, and a
    /// colliding key costs a probe, not a wrong answer.
    ids: FxHashMap<ComponentId, u32>,
    digests: Vec<u64>,
    /// Interval number in which each component was last seen.
    seen: Vec<u32>,
    /// Per component: (interval number, local id in that interval).
    local: Vec<(u32, u32)>,
    /// Number of the interval being numbered (0: none yet).
    current: u32,
    next_local: u32,
}

impl Interner {
    /// Starts numbering interval `seq` (must be > 0 and increase).
    pub fn begin(&mut self, seq: u32) {
        self.current = seq;
        self.next_local = 0;
    }

    /// Global id and digest of `c`, interning it if new.
    #[inline]
    pub fn global(&mut self, c: &ComponentId) -> u32 {
        if let Some(&g) = self.ids.get(c) {
            return g;
        }
        let g = self.digests.len() as u32;
        self.ids.insert(c.clone(), g);
        self.digests.push(digest(c));
        self.seen.push(0);
        self.local.push((0, 0));
        g
    }

    pub fn digest_of(&self, g: u32) -> u64 {
        self.digests[g as usize]
    }

    /// Local id of global `g` in the current interval, numbering it (and marking it seen) on
    /// first use; the bool says whether it was new in this interval.
    #[inline]
    pub fn local(&mut self, g: u32) -> (u32, bool) {
        let slot = &mut self.local[g as usize];
        if slot.0 == self.current {
            return (slot.1, false);
        }
        let l = self.next_local;
        *slot = (self.current, l);
        self.next_local += 1;
        self.seen[g as usize] = self.current;
        (l, true)
    }

    /// Local id of `c` in the current interval, if it appeared in it.
    pub fn local_of(&self, c: &ComponentId) -> Option<u32> {
        let &g = self.ids.get(c)?;
        let (at, l) = self.local[g as usize];
        (at == self.current && self.current != 0).then_some(l)
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Drops components unseen for [`IDLE_INTERVALS`] when they are the majority (so the cost is
    /// amortised over at least as many insertions). Ids change; call between intervals only.
    pub fn compact(&mut self) {
        let now = self.current;
        let live = |s: u32| now.saturating_sub(s) <= IDLE_INTERVALS;
        let alive = self.seen.iter().filter(|&&s| live(s)).count();
        if alive * 2 >= self.len() {
            return;
        }
        let mut remap = vec![u32::MAX; self.len()];
        let (mut digests, mut seen, mut local) = (Vec::new(), Vec::new(), Vec::new());
        for (g, r) in remap.iter_mut().enumerate() {
            if live(self.seen[g]) {
                *r = digests.len() as u32;
                digests.push(self.digests[g]);
                seen.push(self.seen[g]);
                local.push(self.local[g]);
            }
        }
        self.ids.retain(|_, g| {
            let n = remap[*g as usize];
            *g = n;
            n != u32::MAX
        });
        self.ids.shrink_to_fit();
        self.digests = digests;
        self.seen = seen;
        self.local = local;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn id(s: &str) -> ComponentId {
        s.parse().unwrap()
    }

    #[test]
    fn test_local_ids_in_order_of_first_appearance_per_interval() {
        let mut t = Interner::default();
        t.begin(1);
        let (a, b) = (t.global(&id("host:a")), t.global(&id("subnet:s")));
        assert_eq!(t.local(b), (0, true));
        assert_eq!(t.local(a), (1, true));
        assert_eq!(t.local(b), (0, false));
        t.begin(2);
        assert_eq!(t.local_of(&id("host:a")), None);
        assert_eq!(t.local(a), (0, true));
        assert_eq!(t.local_of(&id("host:a")), Some(0));
        assert_eq!(t.global(&id("host:a")), a);
        assert_eq!(t.digest_of(a), digest(id("host:a")));
    }

    #[test]
    fn test_compact_drops_idle_components_only_when_they_dominate() {
        let mut t = Interner::default();
        t.begin(1);
        for i in 0..10 {
            let g = t.global(&id(&format!("external:{i}")));
            t.local(g);
        }
        let seq = 1 + IDLE_INTERVALS + 1;
        t.begin(seq);
        let keep = t.global(&id("host:keep"));
        t.local(keep);
        t.compact();
        assert_eq!(t.len(), 1);
        let g = t.global(&id("host:keep"));
        assert_eq!(t.local(g), (0, false));
        assert_eq!(t.digest_of(g), digest(id("host:keep")));
        // Live majority: nothing dropped.
        let g = t.global(&id("external:0"));
        t.local(g);
        t.compact();
        assert_eq!(t.len(), 2);
    }
}
