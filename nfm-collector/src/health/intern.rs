//! Component interning for the evaluator: each distinct path component gets a small integer id
//! and a 64-bit digest once, so the per-sample work of an interval is integer work: one table
//! probe per path component, no string hashing for path or class identities, no per-sample
//! allocation.
//!
//! Paths that the caller names by a stable id (the resolver's `Resolved::id`: one address
//! pair's resolution) are turned into ids once and reused across intervals, so a sample then
//! costs one integer probe instead of one string probe per component.
//!
//! Guarantee: ids are only used within one interval (each interval renumbers the components it
//! sees in order of first appearance, exactly as if the table were built afresh), digests are
//! SipHash of the component as before, and the tables are bounded: components unseen for
//! [`IDLE_INTERVALS`] are dropped whenever they outnumber the live ones, shared paths unseen
//! for as long are forgotten.

use crate::model::{ComponentId, ComponentKind};
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
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
    /// Per component: itself (for verdicts and ranks), its digest.
    names: Vec<ComponentId>,
    digests: Vec<u64>,
    /// Per component: (interval in which it was last numbered, i.e. last seen; its local id
    /// there).
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

    /// Global id of `c`, interning it if new.
    #[inline]
    pub fn global(&mut self, c: &ComponentId) -> u32 {
        if let Some(&g) = self.ids.get(c) {
            return g;
        }
        let g = self.digests.len() as u32;
        self.ids.insert(c.clone(), g);
        self.names.push(c.clone());
        self.digests.push(digest(c));
        self.local.push((0, 0));
        g
    }

    pub fn digest_of(&self, g: u32) -> u64 {
        self.digests[g as usize]
    }

    pub fn name(&self, g: u32) -> &ComponentId {
        &self.names[g as usize]
    }

    /// Local id of global `g` in the current interval, numbering it (and so marking it seen)
    /// on first use; the bool says whether it was new in this interval.
    #[inline]
    pub fn local(&mut self, g: u32) -> (u32, bool) {
        let slot = &mut self.local[g as usize];
        if slot.0 == self.current {
            return (slot.1, false);
        }
        let l = self.next_local;
        *slot = (self.current, l);
        self.next_local += 1;
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
    /// amortised over at least as many insertions). Ids change (returns true then); call between
    /// intervals only.
    pub fn compact(&mut self) -> bool {
        let now = self.current;
        let live = |s: u32| now.saturating_sub(s) <= IDLE_INTERVALS;
        let alive = self.local.iter().filter(|l| live(l.0)).count();
        if alive * 2 >= self.len() {
            return false;
        }
        let mut remap = vec![u32::MAX; self.len()];
        let (mut digests, mut local, mut names) = (Vec::new(), Vec::new(), Vec::new());
        for (g, (r, name)) in remap
            .iter_mut()
            .zip(std::mem::take(&mut self.names))
            .enumerate()
        {
            if live(self.local[g].0) {
                *r = digests.len() as u32;
                digests.push(self.digests[g]);
                local.push(self.local[g]);
                names.push(name);
            }
        }
        self.names = names;
        self.ids.retain(|_, g| {
            let n = remap[*g as usize];
            *g = n;
            n != u32::MAX
        });
        self.ids.shrink_to_fit();
        self.digests = digests;
        self.local = local;
        true
    }
}

/// Everything the evaluator keeps about components and shared paths, and the interval being
/// evaluated.
#[derive(Debug, Default)]
pub struct Tables {
    pub interner: Interner,
    pub cache: PathCache,
    /// The interval being evaluated.
    pub seq: u32,
    /// The baselines' generation (for slot hints).
    pub generation: u32,
}

/// Paths up to this long keep their ids inline (the longest path the resolver builds has 10
/// components); longer ones spill to the heap.
const INLINE: usize = 10;
/// No such position in the path.
const NO_POS: u8 = u8::MAX;

/// One path as global component ids, with the positions of the ids its class identity is made
/// of. 56 bytes: one is cached per shared path (100k at 100k flows), so first and last are
/// read from the ids and the span and AZ kept as positions (issue 16 item 4; was 96). A span or
/// AZ beyond position 254 of a (spilled) path is not kept: the resolver's paths have at most 10.
#[derive(Debug, Clone, PartialEq)]
pub struct PathIds {
    inline: [u32; INLINE],
    /// Every id of a path longer than [`INLINE`] (a thin pointer: none of the resolver's paths
    /// spill). Boxed on purpose: 8 bytes here where a `Vec` or a boxed slice takes 16+.
    #[allow(clippy::box_collection)]
    spill: Option<Box<Vec<u32>>>,
    len: u8,
    span: u8,
    az: u8,
}

impl Default for PathIds {
    fn default() -> Self {
        PathIds {
            inline: [0; INLINE],
            spill: None,
            len: 0,
            span: NO_POS,
            az: NO_POS,
        }
    }
}

impl PathIds {
    pub fn fill(&mut self, path: &[ComponentId], interner: &mut Interner) {
        let mut spill = (path.len() > INLINE).then(|| Vec::with_capacity(path.len()));
        (self.len, self.span, self.az) = (0, NO_POS, NO_POS);
        for (k, c) in path.iter().enumerate() {
            let g = interner.global(c);
            match spill.as_mut() {
                Some(v) => v.push(g),
                None => self.inline[k] = g,
            }
            let pos = u8::try_from(k).unwrap_or(NO_POS);
            match c.kind {
                ComponentKind::AzPair
                | ComponentKind::Gateway
                | ComponentKind::RegionPair
                | ComponentKind::Service
                    if self.span == NO_POS =>
                {
                    self.span = pos;
                }
                ComponentKind::Az if self.az == NO_POS => self.az = pos,
                _ => {}
            }
        }
        if spill.is_none() {
            self.len = path.len() as u8;
        }
        self.spill = spill.map(Box::new);
    }

    /// The path's components, in path order.
    #[inline]
    pub fn ids(&self) -> &[u32] {
        match &self.spill {
            Some(v) => v,
            None => &self.inline[..self.len as usize],
        }
    }

    pub fn first(&self) -> Option<u32> {
        self.ids().first().copied()
    }
    pub fn last(&self) -> Option<u32> {
        self.ids().last().copied()
    }
    /// The first component that spans the path: AZ pair, gateway, region pair or service.
    pub fn span(&self) -> Option<u32> {
        self.at(self.span)
    }
    /// The first AZ (the local one).
    pub fn az(&self) -> Option<u32> {
        self.at(self.az)
    }
    fn at(&self, pos: u8) -> Option<u32> {
        (pos != NO_POS).then(|| self.ids()[pos as usize])
    }
}

/// Hasher for the caller's path ids (the resolver numbers address pairs 1, 2, 3, ... in the
/// order it first sees them, and samples arrive in about that order): the low bits stay the id,
/// so consecutive ids land in consecutive buckets and a pass over an interval walks the table
/// nearly in order instead of missing the cache once per sample; the top 7 bits (hashbrown's
/// tag) are mixed. Only for ids the collector assigns, never for agent-controlled keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let tag = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57;
        (self.0 & ((1 << 57) - 1)) | (tag << 57)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// What was last computed for one observation whose first view has this path: its path and
/// class identity (for the port and category they were computed for) and where its baseline
/// was (valid while the baselines' generation is unchanged).
///
/// Packed (40 bytes, where three `Option`s of tuples took 64): one per shared path, so ~2.4 MB
/// at 100k flows (issue 16 item 4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memo {
    key: u64,
    class: u64,
    slot_key: u64,
    slot: u32,
    slot_generation: u32,
    port: u16,
    category: crate::model::Category,
    /// Which of key, class and slot are set (bits 0, 1, 2).
    set: u8,
}

impl Default for Memo {
    fn default() -> Memo {
        Memo {
            key: 0,
            class: 0,
            slot_key: 0,
            slot: 0,
            slot_generation: 0,
            port: 0,
            // Not read until `set` says so.
            category: crate::model::Category::Unclassified,
            set: 0,
        }
    }
}

impl Memo {
    const KEY: u8 = 1;
    const CLASS: u8 = 2;
    const SLOT: u8 = 4;

    /// (service port, path key)
    pub fn key(&self) -> Option<(u16, u64)> {
        (self.set & Self::KEY != 0).then_some((self.port, self.key))
    }
    pub fn set_key(&mut self, (port, key): (u16, u64)) {
        (self.port, self.key, self.set) = (port, key, self.set | Self::KEY);
    }
    /// (category, class key)
    pub fn class(&self) -> Option<(crate::model::Category, u64)> {
        (self.set & Self::CLASS != 0).then_some((self.category, self.class))
    }
    pub fn set_class(&mut self, (category, class): (crate::model::Category, u64)) {
        (self.category, self.class, self.set) = (category, class, self.set | Self::CLASS);
    }
    /// (path key, baseline slot, baselines generation)
    pub fn slot(&self) -> Option<(u64, u32, u32)> {
        (self.set & Self::SLOT != 0).then_some((self.slot_key, self.slot, self.slot_generation))
    }
    pub fn set_slot(&mut self, (key, slot, generation): (u64, u32, u32)) {
        (self.slot_key, self.slot, self.slot_generation) = (key, slot, generation);
        self.set |= Self::SLOT;
    }
}

#[derive(Debug)]
pub struct Shared {
    /// Address of the path's first element: with the id, tells a reused id apart.
    tag: usize,
    seen: u32,
    pub ids: PathIds,
    pub memo: Memo,
}

/// [`PathIds`] (and a [`Memo`]) of shared paths, by the caller's id, in a slab in order of first
/// appearance. Holds global ids: cleared whenever the interner compacts.
#[derive(Debug, Default)]
pub struct PathCache {
    index: std::collections::HashMap<u64, u32, std::hash::BuildHasherDefault<IdHasher>>,
    entries: Vec<Shared>,
}

impl PathCache {
    /// Slot of `path`, named `(id, tag)` by the caller; its ids computed on first use (or when
    /// the tag differs: another path under a reused id, which also forgets the memo).
    pub fn get(
        &mut self,
        (id, tag): (u64, usize),
        path: &[ComponentId],
        interner: &mut Interner,
        seq: u32,
    ) -> u32 {
        let i = match self.index.entry(id) {
            Entry::Occupied(o) => {
                let i = *o.get();
                let e = &mut self.entries[i as usize];
                if e.tag != tag {
                    e.tag = tag;
                    e.ids.fill(path, interner);
                    e.memo = Memo::default();
                }
                i
            }
            Entry::Vacant(v) => {
                let mut ids = PathIds::default();
                ids.fill(path, interner);
                let i = self.entries.len() as u32;
                self.entries.push(Shared {
                    tag,
                    seen: 0,
                    ids,
                    memo: Memo::default(),
                });
                *v.insert(i)
            }
        };
        self.entries[i as usize].seen = seq;
        i
    }

    pub fn entry(&self, i: u32) -> &Shared {
        &self.entries[i as usize]
    }

    pub fn memo(&mut self, i: u32) -> &mut Memo {
        &mut self.entries[i as usize].memo
    }

    /// Forgets paths unseen for [`IDLE_INTERVALS`] (slots change; between intervals only).
    pub fn evict(&mut self, seq: u32) {
        let live = |e: &Shared| seq.saturating_sub(e.seen) <= IDLE_INTERVALS;
        if self.entries.iter().all(live) {
            return;
        }
        let old = std::mem::take(&mut self.entries);
        let mut remap: Vec<u32> = Vec::with_capacity(old.len());
        for e in old {
            if live(&e) {
                remap.push(self.entries.len() as u32);
                self.entries.push(e);
            } else {
                remap.push(u32::MAX);
            }
        }
        self.index.retain(|_, i| {
            *i = remap[*i as usize];
            *i != u32::MAX
        });
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
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
        assert!(t.compact());
        assert_eq!(t.len(), 1);
        let g = t.global(&id("host:keep"));
        assert_eq!(t.local(g), (0, false));
        assert_eq!(t.digest_of(g), digest(id("host:keep")));
        assert_eq!(t.name(g), &id("host:keep"));
        // Live majority: nothing dropped.
        let g = t.global(&id("external:0"));
        t.local(g);
        assert!(!t.compact());
        assert_eq!(t.len(), 2);
    }

    /// Boundary: a path longer than the inline capacity spills, one at capacity does not.
    #[test]
    fn test_path_ids_inline_capacity_and_spill() {
        let mut t = Interner::default();
        t.begin(1);
        assert!(std::mem::size_of::<PathIds>() <= 56);
        for n in [0, 1, INLINE, INLINE + 1, 3 * INLINE] {
            let path: Vec<ComponentId> = (0..n)
                .map(|i| match i {
                    1 => id("az:x"),
                    2 => id("az-pair:x|y"),
                    _ => id(&format!("host:h{i}")),
                })
                .collect();
            let mut p = PathIds::default();
            p.fill(&path, &mut t);
            let want: Vec<u32> = path.iter().map(|c| t.global(c)).collect();
            assert_eq!(p.ids(), &want[..], "{n}");
            assert_eq!(p.first(), want.first().copied());
            assert_eq!(p.last(), want.last().copied());
            assert_eq!(p.az(), want.get(1).copied(), "{n}");
            assert_eq!(p.span(), want.get(2).copied(), "{n}");
            // Refilled shorter: no leftovers of the longer path.
            p.fill(&path[..n.min(2)], &mut t);
            assert_eq!(p.ids(), &want[..n.min(2)]);
        }
    }

    #[test]
    fn test_path_cache_reuses_and_tells_reused_ids_apart() {
        let mut t = Interner::default();
        let mut c = PathCache::default();
        t.begin(1);
        let p1 = vec![id("host:a"), id("az:x"), id("az-pair:x|y"), id("host:b")];
        let p2 = vec![id("host:c"), id("az:y"), id("host:d")];
        let mut fresh = PathIds::default();
        fresh.fill(&p1, &mut t);
        let i = c.get((7, 1), &p1, &mut t, 1);
        assert_eq!(c.entry(i).ids, fresh);
        assert_eq!(fresh.span(), Some(t.global(&id("az-pair:x|y"))));
        assert_eq!(fresh.az(), Some(t.global(&id("az:x"))));
        assert_eq!(fresh.first(), Some(t.global(&id("host:a"))));
        assert_eq!(fresh.last(), Some(t.global(&id("host:b"))));
        assert_eq!(fresh.ids().len(), 4);
        c.memo(i).set_key((443, 99));
        // Same id and tag: the cached ids and memo, whatever path is passed.
        assert_eq!(c.get((7, 1), &p2, &mut t, 2), i);
        assert_eq!(c.entry(i).ids, fresh);
        assert_eq!(c.entry(i).memo.key(), Some((443, 99)));
        // Same id, other tag: recomputed, memo forgotten.
        fresh.fill(&p2, &mut t);
        assert_eq!(c.get((7, 2), &p2, &mut t, 3), i);
        assert_eq!(c.entry(i).ids, fresh);
        assert_eq!(c.entry(i).memo, Memo::default());
        assert_eq!(fresh.span(), None);
        // Another id seen later; eviction keeps the live one and renumbers it.
        let j = c.get((8, 5), &p1, &mut t, 3 + IDLE_INTERVALS);
        assert_eq!(j, 1);
        c.evict(3 + IDLE_INTERVALS);
        assert_eq!(c.len(), 2);
        c.evict(4 + IDLE_INTERVALS);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get((8, 5), &p2, &mut t, 5 + IDLE_INTERVALS), 0);
        assert_eq!(c.entry(0).ids.first(), Some(t.global(&id("host:a"))));
    }

    /// Consecutive ids get consecutive low bits (buckets) and differing tags.
    #[test]
    fn test_id_hasher_keeps_order_mixes_tag() {
        use std::hash::BuildHasher;
        let b = std::hash::BuildHasherDefault::<IdHasher>::default();
        let tags: std::collections::HashSet<u64> =
            (1..200u64).map(|i| b.hash_one(i) >> 57).collect();
        assert!(tags.len() > 64, "{}", tags.len());
        for i in 1..200u64 {
            assert_eq!(b.hash_one(i) & 0xffff, i);
        }
    }
}
