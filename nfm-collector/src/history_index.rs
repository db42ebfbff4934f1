//! The API's read path to the history on disk (issue 16): queries over ranges older than the
//! summaries held in memory read the store's logs (`history/`, `rollup-1m/`, `rollup-1h/`)
//! read-only, through an index of each segment's time range, so a query opens only the segments
//! that overlap its range and memory stays bounded (one index entry per segment file; records
//! are decoded one at a time and handed to a visitor, never collected).
//!
//! The reader never calls the store actor: the files are append-only with a CRC per record, so a
//! record being appended (or a segment deleted by retention) while a query reads is simply not
//! seen (a short or CRC-failing tail ends the read; a missing file is skipped).

use crate::record::{
    decode_history, read_segment, record_span, segment_paths, KIND_ROLLUP, MAX_RECORD,
    RECORD_HEADER,
};
use crate::rollup::{decode_rollup, Level, MonitorHealth};
use crate::summary::IntervalSummary;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// One record handed to a query: a raw summary (`intervals` 1, no `health`) or a rollup.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub summary: &'a IntervalSummary,
    pub level: Level,
    pub intervals: u64,
    pub health: &'a [MonitorHealth],
}

impl Item<'_> {
    /// A monitor's (evaluated, degraded) intervals in this record.
    pub fn health_of(&self, monitor: &str) -> (u64, u64) {
        if self.level == Level::Raw {
            let i = self
                .summary
                .monitors
                .iter()
                .find(|m| m.monitor == monitor)
                .and_then(|m| m.health_indicator);
            return (i.is_some() as u64, i.is_some_and(|i| i > 0) as u64);
        }
        self.health
            .iter()
            .find(|h| h.monitor == monitor)
            .map_or((0, 0), |h| (h.evaluated, h.degraded))
    }
}

/// A segment's time range, indexed up to `scanned` bytes.
#[derive(Debug, Clone)]
struct Seg {
    path: PathBuf,
    scanned: u64,
    min_start: u64,
    max_end: u64,
}

/// What one read found: records handed over and the span they covered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub records: u64,
    pub min_start: u64,
    pub max_end: u64,
}

/// Reads the history logs under a data directory.
#[derive(Debug)]
pub struct HistoryReader {
    root: PathBuf,
    index: [BTreeMap<u64, Seg>; 3],
}

/// Reads record headers and the first bytes of each payload from `offset` on (no CRC check: the
/// index only narrows which segments a query opens). Returns the offset reached.
fn skim(seg: &mut Seg) -> io::Result<()> {
    let mut f = BufReader::with_capacity(64 << 10, File::open(&seg.path)?);
    let len = f.get_ref().metadata()?.len();
    f.seek(SeekFrom::Start(seg.scanned))?;
    let mut at = seg.scanned;
    let mut head = [0u8; RECORD_HEADER];
    let mut prefix = [0u8; 22];
    while at + RECORD_HEADER as u64 <= len {
        f.read_exact(&mut head)?;
        let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if n > MAX_RECORD || at + (RECORD_HEADER + n) as u64 > len {
            break;
        }
        let take = n.min(prefix.len());
        f.read_exact(&mut prefix[..take])?;
        f.seek_relative((n - take) as i64)?;
        if let Some((s, e)) = record_span(head[8], &prefix[..take]) {
            seg.min_start = seg.min_start.min(s);
            seg.max_end = seg.max_end.max(e);
        }
        at += (RECORD_HEADER + n) as u64;
    }
    seg.scanned = at;
    Ok(())
}

fn idx(level: Level) -> usize {
    match level {
        Level::Raw => 0,
        Level::Minute => 1,
        Level::Hour => 2,
    }
}

impl HistoryReader {
    /// `root`: the collector's data directory.
    pub fn new(root: impl Into<PathBuf>) -> HistoryReader {
        HistoryReader {
            root: root.into(),
            index: Default::default(),
        }
    }

    /// Brings the index of `level` up to date: new segments and new bytes of growing ones are
    /// skimmed, deleted segments dropped.
    fn refresh(&mut self, level: Level) -> io::Result<()> {
        let dir = self.root.join(level.dir());
        let index = &mut self.index[idx(level)];
        let paths = match segment_paths(&dir) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        index.retain(|n, _| paths.iter().any(|(m, _)| m == n));
        for (n, path) in paths {
            let seg = index.entry(n).or_insert(Seg {
                path,
                scanned: 0,
                min_start: u64::MAX,
                max_end: 0,
            });
            match skim(seg) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    index.remove(&n);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The start of the oldest and the end of the newest record of `level` on disk.
    pub fn bounds(&mut self, level: Level) -> io::Result<Option<(u64, u64)>> {
        self.refresh(level)?;
        let segs = self.index[idx(level)].values().filter(|s| s.max_end > 0);
        let (mut lo, mut hi) = (u64::MAX, 0);
        for s in segs {
            lo = lo.min(s.min_start);
            hi = hi.max(s.max_end);
        }
        Ok((hi > 0).then_some((lo, hi)))
    }

    /// Hands every record of `level` whose interval starts in `[from, to)` to `visit`, oldest
    /// segment first; returns how many and the span they covered (`None` when there were none).
    pub fn read(
        &mut self,
        level: Level,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(Item),
    ) -> io::Result<Option<Span>> {
        self.refresh(level)?;
        let segs: Vec<PathBuf> = self.index[idx(level)]
            .values()
            .filter(|s| s.max_end > from && s.min_start < to)
            .map(|s| s.path.clone())
            .collect();
        let mut span = Span {
            records: 0,
            min_start: u64::MAX,
            max_end: 0,
        };
        let mut ignored = 0;
        for path in segs {
            let r = read_segment(
                &path,
                &mut |k, p| {
                    let Some((s, _)) = record_span(k, p) else {
                        return;
                    };
                    if s < from || s >= to {
                        return;
                    }
                    let (summary, intervals, health) = if k == KIND_ROLLUP {
                        match decode_rollup(k, p) {
                            Ok(r) => (r.summary, r.intervals, r.health),
                            Err(_) => return,
                        }
                    } else {
                        match decode_history(k, p) {
                            Ok(s) => (s, 1, Vec::new()),
                            Err(_) => return,
                        }
                    };
                    span.records += 1;
                    span.min_start = span.min_start.min(summary.start_ms);
                    span.max_end = span.max_end.max(summary.end_ms);
                    visit(Item {
                        summary: &summary,
                        level,
                        intervals,
                        health: &health,
                    });
                },
                &mut ignored,
            );
            match r {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok((span.records > 0).then_some(span))
    }

    /// Index entries held (one per segment file; what bounds the reader's memory).
    pub fn indexed_segments(&self) -> usize {
        self.index.iter().map(|i| i.len()).sum()
    }
}
