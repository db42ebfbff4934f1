//! The embedded store: append-only segmented logs under `--data-dir`, with a CRC per
//! record, group fsync, replay on start and retention by whole segments.
//!
//! - `wal/`: every accepted FlowBatch frame, as received. A TCP batch is acked only after the
//!   fsync that covers it returned, so an ack means the batch survives SIGKILL and power loss.
//!   A WAL segment is deleted once every interval its batches belong to has a durable summary.
//! - `history/`: one [`IntervalSummary`] per closed interval, kept for the retention period
//!   (default 7 days of data time), then deleted a whole segment at a time.
//! - `rollup-1m/`, `rollup-1h/` (issue 16): every durable summary is folded into the open
//!   1-minute rollup, every closed minute into the open hour (`crate::rollup`); closed rollups
//!   are written with the next group commit and age out like the history. Replay rebuilds the
//!   open minute and hour, and hands back only the newest summaries (`replay_keep`, decoded last).
//!
//! Record layout (all little-endian), written by [`Log::append`]:
//!
//! ```text
//! 0..4   len    u32, bytes of payload
//! 4..8   crc    u32, CRC-32 of kind byte + payload
//! 8      kind   u8 (1 = batch before numbers, 2 = interval summary before versions,
//!                   3 = versioned summary, 4 = numbered batch, 5 = a summary's cover,
//!                   6 = a rollup, in `rollup-1m/` and `rollup-1h/`: `crate::rollup`)
//! 9..    payload
//! ```
//!
//! **What a summary holds** (so that nothing acknowledged is lost or counted twice across a
//! crash, late records included): ingest numbers every batch in the order the aggregator sees
//! it (kind 4 carries the number), and each summary — on-time or a late amendment — is preceded
//! in the history by a cover record (kind 5: interval start, end, the highest number aggregated
//! when it closed). Replay re-aggregates a WAL batch unless a durable summary of its interval
//! covers its number: a late batch whose amendment was not yet durable is replayed (as a late
//! amendment again), one already in a summary is not. Numbers continue after a restart above
//! every number in the WAL and the covers. Kind 1 batches (before numbers) keep the old rule:
//! skipped when their interval has a summary.
//!
//! A versioned summary's payload is `version u16 LE` and the summary in that version's layout
//! (bincode, standard config). [`decode_history`] reads every version this build has ever
//! written, so a newer collector reads older history: a change to [`IntervalSummary`] adds a
//! version (keeping the previous layout's type to decode it) instead of changing the bytes of
//! an existing one. Kind 2 records (written before versions) hold the version-1 layout.
//!
//! Replay stops at the first record whose length runs past the end of its file or whose CRC does
//! not match, and truncates the file there: a torn tail left by a crash is never surfaced.
//! A write or fsync error (a full disk) truncates back to the last synced length, keeps the
//! unsynced work in memory, stops acking, and retries on every tick until space returns.

use crate::alloc::{IdleTrims, Trimmer};
use crate::pipeline::{StoreMsg, StoreReply, WalBatch};
// The record layout and codecs live in `record` (shared with the API's disk reader).
use crate::record::{decode_cover, encode_cover, read_segment, segment_paths};
pub use crate::record::{
    decode_history, encode_summary, HistoryError, KIND_BATCH, KIND_BATCH_N, KIND_COVER,
    KIND_ROLLUP, KIND_SUMMARY, KIND_SUMMARY_UNVERSIONED, SUMMARY_VERSION,
};
use crate::rollup::{decode_rollup, encode_rollup, Level, RollupRecord, Rollups};
use crate::summary::IntervalSummary;
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::Metrics;

/// One segmented log in one directory.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    /// Closed segments, oldest first: (path, first record number, max key of its records).
    closed: VecDeque<(PathBuf, u64)>,
    /// Per closed segment, the largest key (interval start/end) of its records.
    closed_keys: VecDeque<u64>,
    active: File,
    active_path: PathBuf,
    active_len: u64,
    synced_len: u64,
    active_key: u64,
    next_segment: u64,
}

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub records: u64,
    pub segments: u64,
    /// Bytes cut off torn or corrupt tails.
    pub truncated_bytes: u64,
}

impl Log {
    /// Opens (creating) the log in `dir`, replaying every record in order into `f` with its kind
    /// and payload. `key_of` extracts the retention key of a record (for segment deletion).
    /// Torn tails are truncated. Appends go to a fresh segment.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        f: &mut dyn FnMut(u8, &[u8]),
        key_of: &dyn Fn(u8, &[u8]) -> u64,
    ) -> io::Result<(Log, ReplayStats)> {
        fs::create_dir_all(dir)?;
        let mut stats = ReplayStats::default();
        let mut closed = VecDeque::new();
        let mut closed_keys = VecDeque::new();
        let mut next_segment = 0;
        for (n, path) in segment_paths(dir)? {
            let mut max_key = 0u64;
            let (good, len) = read_segment(
                &path,
                &mut |k, p| {
                    max_key = max_key.max(key_of(k, p));
                    f(k, p)
                },
                &mut stats.records,
            )?;
            if good < len {
                log::warn!(
                    "store: {}: truncating {} bytes of torn or corrupt tail",
                    path.display(),
                    len - good
                );
                OpenOptions::new().write(true).open(&path)?.set_len(good)?;
                stats.truncated_bytes += len - good;
            }
            stats.segments += 1;
            next_segment = n + 1;
            if good == 0 {
                fs::remove_file(&path)?;
                continue;
            }
            closed.push_back((path, n));
            closed_keys.push_back(max_key);
        }
        let active_path = dir.join(format!("{next_segment:020}.seg"));
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active_path)?;
        sync_dir(dir)?;
        Ok((
            Log {
                dir: dir.to_path_buf(),
                segment_bytes,
                closed,
                closed_keys,
                active,
                active_path,
                active_len: 0,
                synced_len: 0,
                active_key: 0,
                next_segment: next_segment + 1,
            },
            stats,
        ))
    }

    /// Appends one record (not yet durable: call [`Log::sync`]).
    pub fn append(
        &mut self,
        kind: u8,
        payload: &[u8],
        key: u64,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        scratch.clear();
        let mut h = crc32fast::Hasher::new();
        h.update(&[kind]);
        h.update(payload);
        scratch.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        scratch.extend_from_slice(&h.finalize().to_le_bytes());
        scratch.push(kind);
        scratch.extend_from_slice(payload);
        self.active.write_all(scratch)?;
        self.active_len += scratch.len() as u64;
        self.active_key = self.active_key.max(key);
        Ok(())
    }

    /// Makes every appended record durable; rolls the segment when it is full.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.synced_len == self.active_len {
            return Ok(());
        }
        self.active.sync_data()?;
        self.synced_len = self.active_len;
        if self.active_len >= self.segment_bytes {
            self.roll()?;
        }
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        let path = self.dir.join(format!("{:020}.seg", self.next_segment));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        let old = std::mem::replace(&mut self.active_path, path);
        self.active = file;
        self.closed.push_back((old, self.next_segment - 1));
        self.closed_keys.push_back(self.active_key);
        self.next_segment += 1;
        self.active_len = 0;
        self.synced_len = 0;
        self.active_key = 0;
        Ok(())
    }

    /// After a failed write or fsync: drop everything not yet synced.
    pub fn rollback(&mut self) -> io::Result<()> {
        self.active.set_len(self.synced_len)?;
        self.active_len = self.synced_len;
        Ok(())
    }

    /// Deletes closed segments, oldest first, while their largest key is below `key`; says how many.
    pub fn delete_before(&mut self, key: u64) -> io::Result<usize> {
        let mut n = 0;
        while let (Some((path, _)), Some(&k)) = (self.closed.front(), self.closed_keys.front()) {
            if k >= key {
                break;
            }
            fs::remove_file(path)?;
            self.closed.pop_front();
            self.closed_keys.pop_front();
            n += 1;
        }
        Ok(n)
    }

    /// Bytes on disk, all segments.
    pub fn bytes(&self) -> u64 {
        let closed: u64 = self
            .closed
            .iter()
            .filter_map(|(p, _)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        closed + self.active_len
    }

    pub fn segments(&self) -> usize {
        self.closed.len() + 1
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Where the store sends its results.
pub struct StoreOutputs {
    /// Durable batch ids, to ingest. Ingest's mio loop is woken with `waker`.
    pub durable: Sender<StoreReply>,
    pub waker: Option<Arc<mio::Waker>>,
    /// Durable summaries, to the API.
    pub summaries: SyncSender<crate::pipeline::ApiMsg>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    /// History older than this (data time, behind the newest summary) is deleted.
    pub retention_ms: u64,
    /// Summaries handed back by replay (the newest ones; issue 16): older ones are read from
    /// disk by the API when a query needs them, so a start does not hold 7 days in memory.
    pub replay_keep: usize,
    /// And at most about this many bytes of them in memory (4 × their encoded size).
    pub replay_keep_bytes: usize,
    /// Top contributors kept per metric in rollups (the aggregator's `top_k`).
    pub top_k: usize,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            retention_ms: 7 * 24 * 3600 * 1000,
            replay_keep: usize::MAX,
            replay_keep_bytes: usize::MAX,
            top_k: 20,
        }
    }
}

/// What a restarted collector recovers.
#[derive(Debug, Default)]
pub struct Recovered {
    /// WAL batches whose intervals have no summary yet: re-aggregate them.
    pub batches: Vec<WalBatch>,
    /// Ids of every WAL batch still on disk: dedupe state.
    pub seen: Vec<(u64, u32, u64)>,
    pub summaries: Vec<IntervalSummary>,
    /// The highest batch number in the WAL or any cover: ingest numbers on from above it.
    pub max_n: u64,
    pub wal: ReplayStats,
    pub history: ReplayStats,
}

/// Appends rollups to their logs (`logs`: minute, hour) and syncs both.
fn append_rollups(
    logs: &mut [Log; 2],
    recs: &[RollupRecord],
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    for r in recs {
        let log = &mut logs[usize::from(r.resolution_ms > 60_000)];
        log.append(KIND_ROLLUP, &encode_rollup(r), r.end_ms, scratch)?;
    }
    logs[0].sync()?;
    logs[1].sync()
}

/// Opens a rollup log, handing each record to `f`; returns it and the end of its newest record.
fn open_rollup_log(
    cfg: &StoreConfig,
    level: Level,
    f: &mut dyn FnMut(&RollupRecord),
) -> io::Result<(Log, u64)> {
    let mut end = 0;
    let (log, _) = Log::open(
        &cfg.dir.join(level.dir()),
        cfg.segment_bytes,
        &mut |k, p| match decode_rollup(k, p) {
            Ok(r) => {
                end = end.max(r.end_ms);
                f(&r)
            }
            Err(e) => log::warn!("store: {} record skipped: {e}", level.dir()),
        },
        &|k, p| crate::record::record_span(k, p).map_or(u64::MAX, |(_, end)| end),
    )?;
    Ok((log, end))
}

/// The store actor: owns the logs.
pub struct Store {
    cfg: StoreConfig,
    wal: Log,
    history: Log,
    metrics: Arc<Metrics>,
    /// Work accepted but not yet synced (or not writable while stalled).
    backlog: VecDeque<StoreMsg>,
    backlog_bytes: usize,
    stalled: Option<String>,
    newest_ms: u64,
    scratch: Vec<u8>,
    payload: Vec<u8>,
    /// Rollup logs (1 min, 1 h), the open rollups and closed ones not yet durable (issue 16).
    rollup_logs: [Log; 2],
    rollups: Rollups,
    pending_rollups: Vec<RollupRecord>,
    /// issue 16: durable summaries also go to the remote writer (never blocking on it).
    remote_write: Vec<std::sync::mpsc::SyncSender<crate::pipeline::RemoteWriteMsg>>,
}

impl Store {
    /// Opens both logs and replays them.
    pub fn open(cfg: StoreConfig, metrics: Arc<Metrics>) -> io::Result<(Store, Recovered)> {
        let mut rec = Recovered::default();
        // Rollups first: the open hour is rebuilt from the minutes after the last closed hour,
        // the open minute from the summaries after the last closed minute.
        let mut rollups = Rollups::new(cfg.top_k);
        let mut pending = Vec::new();
        let (hour_log, hour_end) = open_rollup_log(&cfg, Level::Hour, &mut |_| {})?;
        let (minute_log, minute_end) = open_rollup_log(&cfg, Level::Minute, &mut |r| {
            if r.start_ms >= hour_end {
                rollups.fold_minute(r, &mut pending);
            }
        })?;
        let mut rollup_logs = [minute_log, hour_log];
        // A history written before rollups is rolled up here, once: written as it goes, so
        // days of rollups are never held at once.
        let mut backfill: io::Result<()> = Ok(());
        let mut scratch = Vec::new();
        let mut kept = VecDeque::new();
        let mut kept_bytes = 0usize;
        let mut summarized = std::collections::HashSet::new();
        let mut newest_ms = 0;
        // Interval start -> the highest batch number its durable summaries hold.
        let mut covers: std::collections::HashMap<u64, u64> = Default::default();
        let (history, hstats) = Log::open(
            &cfg.dir.join("history"),
            cfg.segment_bytes,
            &mut |k, p| {
                if k == KIND_COVER {
                    if let Some((start, _, n)) = decode_cover(p) {
                        let c = covers.entry(start).or_default();
                        *c = (*c).max(n);
                    }
                    return;
                }
                // Decoded only when needed (the open rollups, and the newest kept): a start
                // replays days of history by its spans, not by decoding all of it.
                let Some((start, end)) = crate::record::record_span(k, p) else {
                    if let Err(e) = decode_history(k, p) {
                        log::warn!("store: history record skipped: {e}");
                    }
                    return;
                };
                summarized.insert(start);
                newest_ms = newest_ms.max(end);
                if start >= minute_end {
                    match decode_history(k, p) {
                        Ok(s) => pending.extend(rollups.fold(&s)),
                        Err(e) => log::warn!("store: history record skipped: {e}"),
                    }
                    if pending.len() >= 256 && backfill.is_ok() {
                        backfill = append_rollups(&mut rollup_logs, &pending, &mut scratch);
                        pending.clear();
                    }
                }
                kept.push_back((k, p.to_vec()));
                kept_bytes += p.len() * 4;
                while kept.len() > cfg.replay_keep
                    || (kept_bytes > cfg.replay_keep_bytes && kept.len() > 1)
                {
                    let (_, b) = kept.pop_front().expect("not empty");
                    kept_bytes -= b.len() * 4;
                }
            },
            // A record this build cannot read is kept (never aged out by a key it cannot know).
            &|k, p| {
                if k == KIND_COVER {
                    return decode_cover(p).map_or(u64::MAX, |(_, end, _)| end);
                }
                crate::record::record_span(k, p).map_or(u64::MAX, |(_, end)| end)
            },
        )?;
        backfill?;
        rec.history = hstats;
        rec.summaries = kept
            .into_iter()
            .filter_map(|(k, p)| {
                decode_history(k, &p)
                    .map_err(|e| log::warn!("store: history record skipped: {e}"))
                    .ok()
            })
            .collect();
        // A cover counts only with its summary (a crash between the two leaves a cover alone).
        let mut max_n = covers.values().copied().max().unwrap_or(0);
        covers.retain(|start, _| summarized.contains(start));
        let mut batches = Vec::new();
        let mut seen = Vec::new();
        let (wal, wstats) = Log::open(
            &cfg.dir.join("wal"),
            cfg.segment_bytes,
            &mut |k, p| {
                if k != KIND_BATCH && k != KIND_BATCH_N {
                    return;
                }
                let Some(b) = WalBatch::decode(p, k == KIND_BATCH_N) else {
                    return;
                };
                seen.push((b.agent_id, b.epoch, b.seq));
                max_n = max_n.max(b.n);
                let held = if k == KIND_BATCH_N {
                    covers.get(&b.interval_start_ms).is_some_and(|&c| b.n <= c)
                } else {
                    summarized.contains(&b.interval_start_ms)
                };
                if !held {
                    batches.push(b);
                }
            },
            &|_, p| WalBatch::key(p),
        )?;
        rec.max_n = max_n;
        rec.batches = batches;
        rec.seen = seen;
        rec.wal = wstats;
        let mut store = Store {
            cfg,
            wal,
            history,
            metrics,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            stalled: None,
            newest_ms,
            scratch: Vec::new(),
            payload: Vec::new(),
            rollup_logs,
            rollups,
            pending_rollups: pending,
            remote_write: Vec::new(),
        };
        // Rollups that closed during replay (their writes did not survive a crash).
        store.write_rollups()?;
        store.publish_sizes();
        Ok((store, rec))
    }

    fn publish_sizes(&self) {
        let logs = [
            &self.wal,
            &self.history,
            &self.rollup_logs[0],
            &self.rollup_logs[1],
        ];
        self.metrics
            .store_bytes
            .store(logs.iter().map(|l| l.bytes()).sum(), Ordering::Relaxed);
        self.metrics.store_segments.store(
            logs.iter().map(|l| l.segments() as u64).sum(),
            Ordering::Relaxed,
        );
    }

    /// Durable summaries also go to `tx`, the remote writer's bounded channel (issue 16).
    pub fn with_remote_write(
        mut self,
        tx: std::sync::mpsc::SyncSender<crate::pipeline::RemoteWriteMsg>,
    ) -> Store {
        self.remote_write.push(tx);
        self
    }

    /// Hands a durable summary to the remote writer; when its channel is full the interval is
    /// dropped there and counted (the store never waits for a TSDB).
    fn to_remote_write(
        txs: &[std::sync::mpsc::SyncSender<crate::pipeline::RemoteWriteMsg>],
        metrics: &Metrics,
        s: &Arc<IntervalSummary>,
    ) {
        for tx in txs {
            if let Err(std::sync::mpsc::TrySendError::Full(_)) =
                tx.try_send(crate::pipeline::RemoteWriteMsg::Interval(s.clone()))
            {
                let n = crate::remote_series::points_of(s, &Default::default()).len();
                metrics
                    .remote_write_dropped_full
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }

    /// Writes and syncs the closed rollups not yet durable; on an error they stay pending (and
    /// are retried with the next flush or tick) and the rollup logs roll back.
    fn write_rollups(&mut self) -> io::Result<()> {
        if self.pending_rollups.is_empty() {
            return Ok(());
        }
        let r = append_rollups(
            &mut self.rollup_logs,
            &self.pending_rollups,
            &mut self.scratch,
        );
        match r {
            Ok(()) => {
                self.metrics
                    .store_rollups
                    .fetch_add(self.pending_rollups.len() as u64, Ordering::Relaxed);
                self.pending_rollups.clear();
                Ok(())
            }
            Err(e) => {
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                for l in &mut self.rollup_logs {
                    let _ = l.rollback();
                }
                Err(e)
            }
        }
    }

    fn msg_bytes(m: &StoreMsg) -> usize {
        match m {
            StoreMsg::Batches(v) => v.iter().map(|b| b.frame.len() + 28).sum(),
            StoreMsg::Interval { .. } => 4096,
            _ => 0,
        }
    }

    fn accept(&mut self, m: StoreMsg) {
        self.backlog_bytes += Store::msg_bytes(&m);
        self.backlog.push_back(m);
    }

    /// Writes and fsyncs the backlog: all of it in one group commit while the disk takes writes;
    /// while stalled (and when the group commit fails) one message at a time, so that space for
    /// part of the backlog makes that part durable and acked. What fails stays in the backlog,
    /// rolled back, and is retried on the next tick.
    fn flush(&mut self, out: &StoreOutputs) {
        if self.backlog.is_empty() {
            return;
        }
        if self.stalled.is_none() {
            match self.try_write(self.backlog.len()) {
                Ok(()) => return self.complete(self.backlog.len(), out),
                Err(e) => self.stall(e),
            }
        }
        while !self.backlog.is_empty() {
            match self.try_write(1) {
                Ok(()) => self.complete(1, out),
                Err(e) => return self.stall(e),
            }
        }
    }

    /// Rolls back a failed write and stays stalled.
    fn stall(&mut self, e: io::Error) {
        let msg = format!("{e}");
        if self.stalled.is_none() {
            log::error!(
                "store: cannot write to {}: {msg}; not acking until space returns (retrying every tick)",
                self.cfg.dir.display()
            );
        }
        self.metrics.store_stalled.store(1, Ordering::Relaxed);
        self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        self.stalled = Some(msg);
        if let Err(e) = self.wal.rollback().and_then(|_| self.history.rollback()) {
            log::error!("store: rollback failed: {e}");
        }
    }

    /// The first `n` backlog messages are durable: reply, forward, checkpoint.
    fn complete(&mut self, n: usize, out: &StoreOutputs) {
        if self.backlog.len() == n {
            if let Some(e) = self.stalled.take() {
                log::info!("store: writes succeed again after: {e}");
                self.metrics.store_stalled.store(0, Ordering::Relaxed);
            }
        }
        let mut durable = Vec::new();
        let mut closed_before = None;
        let mut freed = 0u64;
        for m in self.backlog.drain(..n) {
            self.backlog_bytes = self.backlog_bytes.saturating_sub(Store::msg_bytes(&m));
            match m {
                StoreMsg::Batches(v) => {
                    freed += v.iter().map(|b| b.frame.len() as u64).sum::<u64>();
                    durable.extend(v.iter().map(|b| (b.agent_id, b.epoch, b.seq)))
                }
                StoreMsg::Interval {
                    summary,
                    closed_before_ms,
                    ..
                } => {
                    self.newest_ms = self.newest_ms.max(summary.end_ms);
                    self.metrics.store_summaries.fetch_add(1, Ordering::Relaxed);
                    // Durable: folded into the rollups exactly once (written after this loop).
                    let closed = self.rollups.fold(&summary);
                    self.pending_rollups.extend(closed);
                    closed_before = Some(closed_before_ms);
                    let summary = Arc::new(*summary);
                    Self::to_remote_write(&self.remote_write, &self.metrics, &summary);
                    // Blocking send: the API must see every durable summary.
                    let _ = out
                        .summaries
                        .send(crate::pipeline::ApiMsg::Interval(summary));
                }
                _ => {}
            }
        }
        crate::metrics::take_off(&self.metrics.store_pending_bytes, freed);
        self.metrics
            .store_batches
            .fetch_add(durable.len() as u64, Ordering::Relaxed);
        if !durable.is_empty() {
            let _ = out.durable.send(StoreReply::Durable(durable));
            if let Some(w) = &out.waker {
                let _ = w.wake();
            }
        }
        if let Err(e) = self.write_rollups() {
            log::warn!("store: rollups not written yet ({e}); retrying on the next tick");
        }
        if let Some(cb) = closed_before {
            match self.wal.delete_before(cb) {
                Ok(0) => {}
                Ok(n) => log::debug!("store: {n} WAL segments checkpointed"),
                Err(e) => log::warn!("store: WAL checkpoint: {e}"),
            }
        }
    }

    fn append_summary_record(
        history: &mut Log,
        s: &IntervalSummary,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        let p = encode_summary(s);
        history.append(KIND_SUMMARY, &p, s.end_ms, scratch)
    }

    /// Writes one summary to the history and syncs it, outside the actor loop (tools and
    /// tests that write history directly).
    pub fn append_summary(&mut self, s: &IntervalSummary) -> io::Result<()> {
        Self::append_summary_record(&mut self.history, s, &mut self.scratch)?;
        self.history.sync()
    }

    /// Writes the first `n` backlog messages and fsyncs them.
    fn try_write(&mut self, n: usize) -> io::Result<()> {
        let (mut wal_dirty, mut hist_dirty) = (false, false);
        for m in self.backlog.iter().take(n) {
            match m {
                StoreMsg::Batches(v) => {
                    for b in v {
                        b.encode(&mut self.payload);
                        self.wal.append(
                            KIND_BATCH_N,
                            &self.payload,
                            b.interval_start_ms,
                            &mut self.scratch,
                        )?;
                        wal_dirty = true;
                    }
                }
                StoreMsg::Interval {
                    summary, covers_n, ..
                } => {
                    // The cover first: a summary is never durable without it.
                    let c = encode_cover(summary.start_ms, summary.end_ms, *covers_n);
                    self.history
                        .append(KIND_COVER, &c, summary.end_ms, &mut self.scratch)?;
                    Self::append_summary_record(&mut self.history, summary, &mut self.scratch)?;
                    hist_dirty = true;
                }
                _ => {}
            }
        }
        // WAL first: a summary is never durable before the batches it was built from.
        if wal_dirty {
            self.wal.sync()?;
        }
        if hist_dirty {
            self.history.sync()?;
        }
        Ok(())
    }

    fn retention(&mut self) {
        let cutoff = self.newest_ms.saturating_sub(self.cfg.retention_ms);
        let [m, h] = &mut self.rollup_logs;
        for log in [&mut self.history, m, h] {
            match log.delete_before(cutoff) {
                Ok(0) => {}
                Ok(n) => log::info!(
                    "store: retention deleted {n} segments of {}",
                    log.dir.display()
                ),
                Err(e) => log::warn!("store: retention: {e}"),
            }
        }
    }

    /// Group commit: take one message, then everything already queued, write it all, fsync once.
    pub fn run(mut self, rx: Receiver<StoreMsg>, out: StoreOutputs) {
        log::info!("store: running in {}", self.cfg.dir.display());
        let (mut last_sizes, mut trims) = (Instant::now(), IdleTrims::new(Trimmer::Store));
        while let Ok(first) = rx.recv() {
            let [mut shutdown, mut tick, mut drained, mut summary, mut worked] = [false; 5];
            let mut next = Some(first);
            while let Some(m) = next.take() {
                self.metrics.received(crate::metrics::Chan::Store);
                summary |= matches!(m, StoreMsg::Interval { .. });
                worked |= !matches!(m, StoreMsg::Tick(_) | StoreMsg::Shutdown);
                match m {
                    StoreMsg::Shutdown => shutdown = true,
                    StoreMsg::Tick(_) => tick = true,
                    other => self.accept(other),
                }
                if shutdown || self.backlog_bytes > 32 << 20 {
                    break;
                }
                next = rx.try_recv().ok();
                drained = next.is_none();
            }
            self.metrics
                .store_queue_depth
                .store(self.backlog.len() as u64, Ordering::Relaxed);
            if self.stalled.is_none() || tick || shutdown {
                self.flush(&out);
            }
            if tick {
                self.retention();
                if self.stalled.is_none() {
                    let _ = self.write_rollups();
                }
            }
            if last_sizes.elapsed().as_millis() >= 500 {
                self.publish_sizes();
                last_sizes = Instant::now();
            }
            trims.after_group(summary, worked, tick, drained, &self.metrics);
            if shutdown {
                break;
            }
        }
        self.publish_sizes();
        log::info!("store: stopped");
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_history_versions() {
        let s = IntervalSummary {
            start_ms: 5,
            end_ms: 10,
            flows: 2,
            ..IntervalSummary::default()
        };
        let p = encode_summary(&s);
        assert_eq!(p[..2], SUMMARY_VERSION.to_le_bytes());
        assert_eq!(decode_history(KIND_SUMMARY, &p), Ok(s.clone()));
        // The unversioned form holds the version-1 layout.
        assert_eq!(decode_history(KIND_SUMMARY_UNVERSIONED, &p[2..]), Ok(s));
        let mut newer = p.clone();
        newer[..2].copy_from_slice(&(SUMMARY_VERSION + 1).to_le_bytes());
        assert_eq!(
            decode_history(KIND_SUMMARY, &newer),
            Err(HistoryError::Version(SUMMARY_VERSION + 1))
        );
        assert_eq!(
            decode_history(KIND_BATCH, &p),
            Err(HistoryError::Kind(KIND_BATCH))
        );
        assert_eq!(
            decode_history(KIND_SUMMARY, &p[..1]),
            Err(HistoryError::Corrupt)
        );
    }
    use std::sync::mpsc::{channel, sync_channel};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "nfm-store-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn open_log(dir: &Path) -> (Log, Vec<(u8, Vec<u8>)>, ReplayStats) {
        let mut got = Vec::new();
        let (log, st) = Log::open(
            dir,
            1 << 20,
            &mut |k, p| got.push((k, p.to_vec())),
            &|_, p| p.first().copied().unwrap_or(0) as u64,
        )
        .unwrap();
        (log, got, st)
    }

    /// Model test: random appends, syncs and reboots (drop without sync) against a Vec model
    /// of what was synced.
    #[test]
    fn test_log_model_with_reboots() {
        let dir = tmp("model");
        let mut model: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut pending: Vec<(u8, Vec<u8>)> = Vec::new();
        let (mut log, got, _) = open_log(&dir);
        assert!(got.is_empty());
        let mut scratch = Vec::new();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for step in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 10 {
                0..=5 => {
                    let len = (x >> 8) as usize % 3000;
                    let p: Vec<u8> = (0..len).map(|i| (i as u64 ^ x) as u8).collect();
                    log.append(KIND_BATCH, &p, 0, &mut scratch).unwrap();
                    pending.push((KIND_BATCH, p));
                }
                6..=8 => {
                    log.sync().unwrap();
                    model.append(&mut pending);
                }
                _ => {
                    // Reboot: unsynced appends may or may not survive; here the OS keeps them
                    // (no power loss), so they are in the file too.
                    drop(log);
                    model.append(&mut pending);
                    let (l, got, _) = open_log(&dir);
                    assert_eq!(got, model, "step {step}");
                    log = l;
                }
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_torn_tail_is_truncated_never_surfaced() {
        let dir = tmp("torn");
        let (mut log, _, _) = open_log(&dir);
        let mut s = Vec::new();
        log.append(KIND_BATCH, b"one", 0, &mut s).unwrap();
        log.append(KIND_BATCH, b"two", 0, &mut s).unwrap();
        log.sync().unwrap();
        let path = log.active_path.clone();
        drop(log);
        // Torn: a header promising 100 bytes, then only 5.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&100u32.to_le_bytes()).unwrap();
        f.write_all(&[1, 2, 3, 4, 1, 9, 9, 9, 9]).unwrap();
        drop(f);
        let (_, got, st) = open_log(&dir);
        assert_eq!(got.len(), 2);
        assert_eq!(st.truncated_bytes, 13);
        // Corrupt: flip a payload byte of the second record.
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (_, got, st) = open_log(&dir);
        assert_eq!(got, vec![(KIND_BATCH, b"one".to_vec())]);
        assert_eq!(st.truncated_bytes, 12);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_delete_before_removes_whole_old_segments() {
        let dir = tmp("retention");
        let mut got = Vec::new();
        let (mut log, _) = Log::open(&dir, 10, &mut |k, p| got.push((k, p.to_vec())), &|_, p| {
            p[0] as u64
        })
        .unwrap();
        let mut s = Vec::new();
        for k in 1..=5u8 {
            log.append(KIND_BATCH, &[k; 20], k as u64, &mut s).unwrap();
            log.sync().unwrap(); // every record fills a segment
        }
        assert_eq!(log.segments(), 6);
        assert_eq!(log.delete_before(3).unwrap(), 2);
        drop(log);
        let (_, got, _) = open_log(&dir);
        let keys: Vec<u8> = got.iter().map(|(_, p)| p[0]).collect();
        assert_eq!(keys, vec![3, 4, 5]);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn summary(start: u64) -> IntervalSummary {
        IntervalSummary {
            start_ms: start,
            end_ms: start + 1000,
            flows: 1,
            ..Default::default()
        }
    }

    /// Messages in, messages out: batches come back durable, summaries go to the API, and a
    /// restart recovers unsummarized batches only.
    #[test]
    fn test_store_actor_acks_after_sync_and_recovers() {
        let dir = tmp("actor");
        let metrics = Arc::new(Metrics::default());
        let (store, rec) = Store::open(StoreConfig::new(&dir), metrics.clone()).unwrap();
        assert!(rec.batches.is_empty());
        let (tx, rx) = sync_channel(16);
        let (dtx, drx) = channel();
        let (atx, arx) = sync_channel(16);
        let out = StoreOutputs {
            durable: dtx,
            waker: None,
            summaries: atx,
        };
        let h = std::thread::spawn(move || store.run(rx, out));
        let b = |seq, start| WalBatch {
            n: seq,
            agent_id: 7,
            epoch: 1,
            seq,
            interval_start_ms: start,
            frame: vec![seq as u8; 50],
        };
        tx.send(StoreMsg::Batches(vec![b(1, 1000), b(2, 2000)]))
            .unwrap();
        let d = drx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        assert_eq!(d, StoreReply::Durable(vec![(7, 1, 1), (7, 1, 2)]));
        tx.send(StoreMsg::Interval {
            summary: Box::new(summary(1000)),
            closed_before_ms: 2000,
            covers_n: 1,
        })
        .unwrap();
        match arx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap()
        {
            crate::pipeline::ApiMsg::Interval(s) => assert_eq!(s.start_ms, 1000),
            _ => panic!("expected an interval"),
        }
        tx.send(StoreMsg::Shutdown).unwrap();
        h.join().unwrap();
        let (_, rec) = Store::open(StoreConfig::new(&dir), metrics).unwrap();
        assert_eq!(rec.summaries.len(), 1);
        assert_eq!(rec.seen.len(), 2);
        // Interval 1000 is summarized: only the batch of interval 2000 is re-aggregated.
        assert_eq!(rec.batches.len(), 1);
        assert_eq!(rec.batches[0].seq, 2);
        assert_eq!(rec.batches[0].frame, vec![2u8; 50]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
