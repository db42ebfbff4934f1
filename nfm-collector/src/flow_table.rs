//! The aggregator's flow table and the resolutions a closed interval carries: flow slots by
//! dense id, in chunks shared copy-on-write, so closing an interval snapshots its flows'
//! resolutions without a reference count per flow. Shared data: the aggregator writes it, the
//! health stage and the evaluator read [`Resolutions`].

use crate::model::Category;
use crate::resolution::Resolved;
use std::sync::Arc;

/// What the aggregator keeps per flow id.
#[derive(Clone)]
pub(crate) struct FlowSlot {
    pub(crate) resolved: Arc<Resolved>,
    /// Copied out of `resolved`, so that a record never has to touch the resolution itself.
    pub(crate) category: Category,
    /// The pair labels' ids: equal labels, equal keys.
    pub(crate) labels: (u64, u64),
    /// Monitor membership for the current monitor list: an id of the aggregator's
    /// `MonitorSets`, computed on first use ([`NO_SET`] until then).
    pub(crate) monitors: u32,
}

/// A [`FlowSlot::monitors`] not computed yet.
pub(crate) const NO_SET: u32 = u32::MAX;

impl FlowSlot {
    pub(crate) fn new(resolved: Arc<Resolved>) -> FlowSlot {
        FlowSlot {
            category: resolved.category,
            labels: label_key(&resolved),
            resolved,
            monitors: NO_SET,
        }
    }
}

/// A resolution's pair labels as one key: their ids (equal labels, equal keys).
pub(crate) fn label_key(r: &Resolved) -> (u64, u64) {
    (r.local_label.id(), r.remote_label.id())
}

/// Row `row`'s resolution: pinned for rows `0..pinned.len()`, else by its id in `table`.
pub(crate) fn row_resolution<'a>(
    pinned: &'a [Option<Arc<Resolved>>],
    ids: &[u32],
    table: &'a FlowTable,
    row: usize,
) -> Option<&'a Arc<Resolved>> {
    match pinned.get(row) {
        Some(r) => r.as_ref(),
        None => table.get(*ids.get(row)?).map(|slot| &slot.resolved),
    }
}

/// Flow slots by id, in chunks that are shared copy-on-write: a closed interval takes a
/// snapshot (one reference count per 4096 ids) instead of a reference to each of its flows'
/// resolutions, and appending to the live table never disturbs a snapshot.
#[derive(Clone, Default)]
pub(crate) struct FlowTable {
    pub(crate) chunks: Vec<Arc<Vec<FlowSlot>>>,
    len: usize,
}

pub(crate) const CHUNK: usize = 4096;

impl FlowTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn push(&mut self, slot: FlowSlot) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        Arc::make_mut(last).push(slot);
        self.len += 1;
    }
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }
    pub(crate) fn get(&self, id: u32) -> Option<&FlowSlot> {
        let id = id as usize;
        self.chunks.get(id / CHUNK).and_then(|c| c.get(id % CHUNK))
    }
    /// The slot for a mutation: copies its chunk first if a snapshot still shares it.
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut FlowSlot> {
        let id = id as usize;
        self.chunks
            .get_mut(id / CHUNK)
            .and_then(|c| Arc::make_mut(c).get_mut(id % CHUNK))
    }
}

/// The resolution of each row of a closed interval, without a reference count per row.
#[derive(Clone, Default)]
pub struct Resolutions {
    /// Resolutions of rows `0..pinned.len()`.
    pub(crate) pinned: Vec<Option<Arc<Resolved>>>,
    /// Resolutions of the other rows, by `ids[row]`.
    pub(crate) table: FlowTable,
    pub(crate) ids: Vec<u32>,
}

impl Resolutions {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    pub fn get(&self, row: usize) -> Option<&Arc<Resolved>> {
        row_resolution(&self.pinned, &self.ids, &self.table, row)
    }
}

impl From<Vec<Arc<Resolved>>> for Resolutions {
    fn from(pinned: Vec<Arc<Resolved>>) -> Resolutions {
        Resolutions {
            ids: vec![0; pinned.len()],
            pinned: pinned.into_iter().map(Some).collect(),
            table: FlowTable::default(),
        }
    }
}

impl std::fmt::Debug for Resolutions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resolutions({} rows)", self.len())
    }
}
