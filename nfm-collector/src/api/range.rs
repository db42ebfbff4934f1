//! Which records answer a query's range (issue 16): the resolution picked from the range's
//! length (`rollup::Level::for_span`, or `resolution=raw|1m|1h`), clipping to the retention,
//! and the walk that reads coarse rollups from disk and fills their gaps (the open rollup at the
//! end, a partial bucket at the start) from the next finer level, down to the summaries held in
//! memory.

use super::{Api, ApiError};
use crate::history_index::Item;
use crate::rollup::Level;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// A query's range after clipping, and the level it reads.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub from: u64,
    pub to: u64,
    pub level: Level,
    /// The `from` asked for, when it was before the retention and was clipped.
    pub clipped_from: Option<u64>,
}

impl Plan {
    /// Adds `resolution`, `resolution_ms` (the interval length for raw, when one was seen),
    /// `clipped_from` and a `note` when clipped.
    pub fn describe(&self, o: &mut Map<String, Value>, raw_interval_ms: Option<u64>) {
        o.insert("resolution".into(), self.level.name().into());
        let ms = match self.level {
            Level::Raw => json!(raw_interval_ms),
            l => json!(l.resolution_ms()),
        };
        o.insert("resolution_ms".into(), ms);
        o.insert("clipped_from".into(), json!(self.clipped_from));
        if let Some(c) = self.clipped_from {
            o.insert(
                "note".into(),
                format!(
                    "`from` ({c}) is before the retention: clipped to {} (the oldest data kept)",
                    self.from
                )
                .into(),
            );
        }
    }
}

impl Api {
    /// The range of a query (`from`, `to`; default the last hour), clipped to the retention
    /// behind the newest interval, and the level that answers it.
    pub(super) fn plan(&self, p: &HashMap<String, String>) -> Result<Plan, ApiError> {
        let (mut from, to) = self.window(p)?;
        let newest = self.history.values().next_back().map(|s| s.end_ms);
        let mut clipped_from = None;
        if let Some(newest) = newest {
            let oldest = newest.saturating_sub(self.cfg.retention_ms);
            if from < oldest {
                clipped_from = Some(from);
                from = oldest.min(to);
            }
        }
        let level = match p.get("resolution").filter(|r| !r.is_empty()) {
            Some(r) => Level::parse(r)?,
            None => Level::for_span(to - from),
        };
        let level = if self.disk.is_some() {
            level
        } else {
            Level::Raw
        };
        Ok(Plan {
            from,
            to,
            level,
            clipped_from,
        })
    }

    /// Hands every record answering `[from, to)` at `level` to `f`: rollups of `level` read from
    /// disk, the parts they do not cover from the next finer level, raw summaries from memory
    /// where held and from disk before that.
    pub(super) fn visit_range(
        &self,
        level: Level,
        from: u64,
        to: u64,
        f: &mut dyn FnMut(Item),
    ) -> Result<(), ApiError> {
        if from >= to {
            return Ok(());
        }
        let io = |e: std::io::Error| ApiError::Unavailable(format!("reading the history: {e}"));
        let held = self.history.keys().next().copied().unwrap_or(u64::MAX);
        let disk = match (&self.disk, level.finer()) {
            (Some(d), _) if level == Level::Raw => {
                if from < held {
                    let span = d.borrow_mut().read(Level::Raw, from, to.min(held), f);
                    self.count_disk(span.map_err(io)?);
                }
                None
            }
            (Some(d), Some(finer)) => Some((d, finer)),
            _ => None,
        };
        let Some((d, finer)) = disk else {
            if from.max(held) < to {
                for s in self.history.range(from.max(held)..to).map(|(_, s)| s) {
                    f(Item {
                        summary: s,
                        level: Level::Raw,
                        intervals: 1,
                        health: &[],
                    });
                }
            }
            return Ok(());
        };
        let span = d.borrow_mut().read(level, from, to, f).map_err(io)?;
        self.count_disk(span);
        match span {
            None => self.visit_range(finer, from, to, f),
            Some(s) => {
                self.visit_range(finer, from, s.min_start.min(to), f)?;
                self.visit_range(finer, s.max_end.max(from), to, f)
            }
        }
    }

    fn count_disk(&self, span: Option<crate::history_index::Span>) {
        if let Some(s) = span {
            self.metrics
                .history_disk_records
                .fetch_add(s.records, Ordering::Relaxed);
        }
    }
}
