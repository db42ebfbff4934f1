//! The ingest protocol core: sessions per agent (epoch and sequence window), dedupe and loss
//! accounting, decoding and rejecting frames by reason, batching records downstream and acking
//! TCP frames in order once the store made them durable. No sockets: the socket loop and the
//! tests feed it frames.

use super::grid::{place, Alignment, SKEW_TOLERANCE_MS};
use super::session::{is_restart, widen, SeqCheck, Session, Sessions, TableLimits};
use super::stamp::check_interval;
use super::IngestConfig;
use crate::metrics::{Chan, Metrics};
use crate::now_ms;
use crate::pipeline::ResolverMsg;
use crate::pipeline::{AgentView, IngestSnapshot};
use crate::pipeline::{StoreMsg, StoreReply, WalBatch};
use crate::resolution::DecodedBatch;
use nfm_wire::{cap, decode, DecodeOptions, Message};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

/// Sequence numbers remembered per session for dedupe (`SeqWindow`: the unseen ones as a few
/// runs, a bitmap of this many bits only with more than 7 holes in the window).
pub const DEDUPE_WINDOW: u64 = 8192;
/// Records accumulated before the pending batches are handed downstream; at ~40 B per record
/// this is about one fsync group of a few hundred KiB.
const FLUSH_RECORDS: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What became of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted. `awaiting_store`: a batch on its way to the store (ack once durable).
    Accepted {
        agent_id: u64,
        epoch: u32,
        seq: u64,
        awaiting_store: bool,
    },
    /// Seen before (a resend). Ack like the original.
    Duplicate { agent_id: u64, epoch: u32, seq: u64 },
    /// Refused. On TCP most reasons are fatal: send an Error frame and close. A replay (an old
    /// epoch, or a sequence older than the dedupe window, such as the session's Hello rewritten
    /// on every reconnect) and a batch whose interval is refused (`future_interval`,
    /// `bad_interval`) are dropped and counted but leave the stream usable
    /// ([`Outcome::is_fatal`]).
    Rejected {
        agent_id: Option<u64>,
        reason: &'static str,
        message: String,
    },
}

impl Outcome {
    /// On TCP, is this refusal fatal (Error frame, then close)? Replays and batches whose
    /// interval is refused leave the stream usable: later frames are acked past them, so the
    /// agent drops them from its spool instead of resending them forever.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Outcome::Rejected { reason, .. }
            if !NON_FATAL.contains(reason))
    }
}

/// Refusal reasons that do not close a TCP connection (see [`Outcome::is_fatal`]).
const NON_FATAL: [&str; 4] = [
    "replayed",
    "future_interval",
    "bad_interval",
    "interval_mismatch",
];

/// Records a new sequence number in the session's window, with loss accounting: a gap counts
/// its skipped numbers as lost, filling one un-counts it.
fn note_seq(session: &mut Session, seq: u64, metrics: &Metrics) {
    if let SeqCheck::New { gap, filled } = session.window.check(seq) {
        // Only a gap that was counted is un-counted (a restored window's numbers below its
        // marked range were never counted as lost).
        if filled && session.lost > 0 {
            session.lost -= 1;
            metrics.lost_frames.fetch_sub(1, Ordering::Relaxed);
        }
        if gap > 0 {
            session.lost += gap;
            metrics.lost_frames.fetch_add(gap, Ordering::Relaxed);
        }
        session.window.mark(seq);
    }
}

/// Writes `bytes` to `path` through a temporary file, fsynced, then renamed over it.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Sessions, dedupe and decoding, without sockets.
pub struct IngestCore {
    pub(super) cfg: IngestConfig,
    sessions: Sessions,
    last_expiry: std::time::Instant,
    last_persist: std::time::Instant,
    /// Refusals by reason, all agents (including frames whose agent is unknown).
    rejected: BTreeMap<&'static str, u64>,
    to_resolver: SyncSender<ResolverMsg>,
    to_store: SyncSender<StoreMsg>,
    pending_resolve: Vec<DecodedBatch>,
    pending_store: Vec<WalBatch>,
    pending_records: usize,
    /// The next batch's number (`WalBatch::n`): batches reach the aggregator in this order.
    next_n: u64,
    metrics: Arc<Metrics>,
}

impl IngestCore {
    pub fn new(
        cfg: IngestConfig,
        to_resolver: SyncSender<ResolverMsg>,
        to_store: SyncSender<StoreMsg>,
        metrics: Arc<Metrics>,
    ) -> IngestCore {
        let limits = TableLimits {
            max_agents: cfg.max_agents,
            max_unproven: cfg.max_unproven,
            unproven_ttl_ms: cfg.unproven_ttl.as_millis() as u64,
            session_ttl_ms: cfg.session_ttl.as_millis() as u64,
        };
        IngestCore {
            cfg,
            sessions: Sessions::new(limits),
            last_expiry: std::time::Instant::now(),
            last_persist: std::time::Instant::now(),
            rejected: BTreeMap::new(),
            to_resolver,
            to_store,
            pending_resolve: Vec::new(),
            pending_store: Vec::new(),
            pending_records: 0,
            next_n: 1,
            metrics,
        }
    }

    /// Numbers batches on from above `max_n` (the highest a previous run used).
    pub fn number_from(&mut self, max_n: u64) {
        self.next_n = self.next_n.max(max_n + 1);
    }

    /// Restores replay marks: the state file (`IngestConfig::state_path`), then the WAL's ids
    /// of durable batches (in arrival order).
    pub fn restore_seen(&mut self, seen: &[(u64, u32, u64)]) {
        let text = match &self.cfg.state_path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => {
                    log::warn!("ingest: reading {}: {e}", p.display());
                    String::new()
                }
            },
            None => String::new(),
        };
        let bad = self.sessions.restore(&text, seen);
        if bad > 0 {
            log::warn!("ingest: {bad} unreadable lines in the replay marks file skipped");
        }
    }

    /// Periodic upkeep from the socket loop: expires silent sessions (every 5 s) and writes
    /// the replay marks when they changed (every 2 s), or now with `force` (shutdown).
    pub fn housekeeping(&mut self, force: bool) {
        let now = std::time::Instant::now();
        if force || now.duration_since(self.last_expiry) >= std::time::Duration::from_secs(5) {
            self.last_expiry = now;
            let n = self.sessions.expire(now_ms(), &self.metrics);
            if n > 0 {
                log::debug!("ingest: {n} silent agent sessions expired");
                self.sessions.dirty = true;
            }
        }
        let due = now.duration_since(self.last_persist) >= std::time::Duration::from_secs(2);
        if (force || due) && self.sessions.dirty {
            self.last_persist = now;
            if let Some(p) = self.cfg.state_path.clone() {
                let text = self.sessions.marks_text();
                if let Err(e) = write_atomically(&p, text.as_bytes()) {
                    log::warn!("ingest: writing {}: {e}", p.display());
                    self.sessions.dirty = true;
                }
            }
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The key that signs collector-to-agent frames (Ack, Error): the newest, when keys are set.
    pub(super) fn signing_key(&self) -> Option<nfm_wire::Key> {
        self.cfg.keys.as_ref().and_then(|k| k.newest()).cloned()
    }

    pub(super) fn reject(
        &mut self,
        agent: Option<u64>,
        reason: &'static str,
        message: String,
    ) -> Outcome {
        *self.rejected.entry(reason).or_insert(0) += 1;
        if let Some(s) = agent.and_then(|a| self.sessions.get_mut(&a)) {
            *s.rejected.entry(reason).or_insert(0) += 1;
        }
        log::debug!("ingest: rejected ({reason}): {message}");
        Outcome::Rejected {
            agent_id: agent,
            reason,
            message,
        }
    }

    /// Handles one frame's bytes. `tcp_agent`: the agent a TCP connection already belongs to.
    pub fn on_frame(
        &mut self,
        bytes: &[u8],
        transport: Transport,
        tcp_agent: Option<u64>,
    ) -> Outcome {
        match transport {
            Transport::Udp => self.metrics.frames_udp.fetch_add(1, Ordering::Relaxed),
            Transport::Tcp => self.metrics.frames_tcp.fetch_add(1, Ordering::Relaxed),
        };
        self.metrics
            .bytes_received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let opts = DecodeOptions {
            max_frame_len: self.cfg.max_frame_len,
            keys: self.cfg.keys.as_ref(),
        };
        let packet = match decode(bytes, &opts) {
            Ok(p) => p,
            Err(e) => {
                // The claimed agent, for per-agent reject counters (untrusted: counted only
                // against a session that already exists).
                let claimed = bytes
                    .get(12..20)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
                    .filter(|a| self.sessions.contains_key(a));
                return self.reject(claimed, e.reason(), e.to_string());
            }
        };
        let h = packet.header;
        // Collector-to-agent messages coming from an agent are a protocol violation: refused
        // before the frame can touch a session (its epoch or sequence window).
        if matches!(packet.message, Message::Ack(_) | Message::Error(_)) {
            let known = self.known(h.agent_id);
            return self.reject(
                known,
                "unexpected_message",
                "agents do not send Ack or Error frames".into(),
            );
        }
        if let Some(a) = tcp_agent {
            if a != h.agent_id {
                return self.reject(
                    Some(a),
                    "agent_mismatch",
                    format!("frame of agent {} on agent {a}'s connection", h.agent_id),
                );
            }
        }
        // Interval bounds against the collector's clock, before the frame can create or move
        // a session (a batch stamped ahead would close every open interval downstream), and
        // where the batch's interval lands on the grid.
        let mut placed = None;
        if let Message::FlowBatch(b) = &packet.message {
            let now = now_ms();
            let checked = check_interval(b.interval_start_ms, b.interval_end_ms, now)
                .and_then(|()| place(b.interval_start_ms, b.interval_end_ms, self.cfg.interval_ms));
            placed = checked.as_ref().ok().copied();
            if let Err((reason, message)) = checked {
                let known = match self.sessions.get_mut(&h.agent_id) {
                    Some(s) => {
                        // Received and refused, not lost: a resend is a duplicate (acked, so
                        // the agent drops it) and no gap is counted.
                        if s.epoch == h.epoch {
                            note_seq(s, h.seq, &self.metrics);
                        }
                        s.last_seen_ms = now;
                        Some(h.agent_id)
                    }
                    None => None,
                };
                return self.reject(known, reason, message);
            }
        }
        if matches!(packet.message, Message::FlowBatch(_)) {
            if let Some((reason, message)) = self.load_refusal(bytes.len()) {
                let known = self.known(h.agent_id);
                return self.reject(known, reason, message);
            }
        }
        let now = now_ms();
        // The time this frame carries, to tell a restarted agent from a replay (session.rs).
        let frame_time = match &packet.message {
            // A Hello's start time counts at most up to the collector's clock.
            Message::Hello(hello) => Some(hello.started_at_ms.min(now + SKEW_TOLERANCE_MS)),
            Message::FlowBatch(b) => Some(b.interval_end_ms),
            _ => None,
        };
        let with_data = matches!(packet.message, Message::FlowBatch(_));
        let mut restarted = false;
        let session =
            match self
                .sessions
                .admit(h.agent_id, h.epoch, transport, with_data, &self.metrics)
            {
                Ok(s) => s,
                Err(message) => return self.reject(None, "too_many_agents", message),
            };
        if h.epoch != session.epoch {
            if !is_restart(session.newest_ms, frame_time) {
                let (cur, newest) = (session.epoch, session.newest_ms);
                return self.reject(
                    Some(h.agent_id),
                    "replayed",
                    match frame_time {
                        Some(t) => format!(
                            "epoch {} (time {t}) is not newer than the agent's session {cur} (time {newest})",
                            h.epoch
                        ),
                        None => format!(
                            "a frame of epoch {} without a time cannot start a session (session {cur}); a Hello or FlowBatch can",
                            h.epoch
                        ),
                    },
                );
            }
            log::info!(
                "ingest: agent {} started epoch {} (was {})",
                h.agent_id,
                h.epoch,
                session.epoch
            );
            let mut fresh = Session::new(h.epoch, transport);
            fresh.rejected = std::mem::take(&mut session.rejected);
            fresh.host_name = std::mem::take(&mut session.host_name);
            fresh.placement = session.placement.take();
            fresh.newest_ms = session.newest_ms;
            if session.proven {
                fresh.proven = true;
            }
            *session = fresh;
            restarted = true;
        }
        session.transport = transport;
        session.last_seen_ms = now;
        match session.window.check(h.seq) {
            SeqCheck::Duplicate => {
                session.duplicates += 1;
                self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                return Outcome::Duplicate {
                    agent_id: h.agent_id,
                    epoch: h.epoch,
                    seq: h.seq,
                };
            }
            SeqCheck::TooOld => {
                return self.reject(
                    Some(h.agent_id),
                    "replayed",
                    format!("sequence {} is older than the dedupe window", h.seq),
                );
            }
            SeqCheck::New { .. } => {
                note_seq(session, h.seq, &self.metrics);
            }
        }
        session.frames += 1;
        if let Some(t) = frame_time {
            session.newest_ms = session.newest_ms.max(t);
        }
        let proves = with_data && !session.proven;
        let mut awaiting_store = false;
        match packet.message {
            Message::Hello(hello) => {
                session.placement = crate::pipeline::AgentPlacement::of(&hello).map(Box::new);
                session.host_name = hello.host_name;
                session.agent_version = hello.agent_version;
                session.capabilities = hello.capabilities;
                session.interval_ms = hello.interval_ms;
            }
            Message::FlowBatch(mut b) => {
                let (start, end, how) =
                    placed.unwrap_or((b.interval_start_ms, b.interval_end_ms, Alignment::OnGrid));
                match how {
                    Alignment::OnGrid => {}
                    Alignment::Aligned => session.skew_aligned += 1,
                    Alignment::Misaligned => session.misaligned += 1,
                    Alignment::Rebucketed => session.rebucketed += 1,
                }
                (b.interval_start_ms, b.interval_end_ms) = (start, end);
                let n = b.records.len();
                session.records += n as u64;
                session.in_store.insert(h.seq);
                awaiting_store = true;
                self.metrics
                    .records_received
                    .fetch_add(n as u64, Ordering::Relaxed);
                self.metrics
                    .ingest_lag_ms
                    .store(now as i64 - b.interval_end_ms as i64, Ordering::Relaxed);
                self.metrics
                    .store_pending_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let order = self.next_n;
                self.next_n += 1;
                self.pending_store.push(WalBatch {
                    n: order,
                    agent_id: h.agent_id,
                    epoch: h.epoch,
                    seq: h.seq,
                    interval_start_ms: b.interval_start_ms,
                    frame: bytes.to_vec(),
                });
                self.pending_resolve.push(DecodedBatch {
                    n: order,
                    agent_id: h.agent_id,
                    interval_start_ms: b.interval_start_ms,
                    interval_end_ms: b.interval_end_ms,
                    simulated: session.capabilities & cap::SIMULATED != 0,
                    records: b.records,
                });
                self.pending_records += n;
                if self.pending_records >= FLUSH_RECORDS {
                    self.flush();
                }
            }
            Message::AgentStats(s) => session.stats = Some(Box::new(s)),
            Message::Goodbye(g) => session.goodbye = Some(g.reason),
            // Refused above, before the session was touched.
            Message::Ack(_) | Message::Error(_) => {}
        }
        if proves {
            self.sessions.prove(h.agent_id);
        }
        self.sessions.dirty |= restarted;
        Outcome::Accepted {
            agent_id: h.agent_id,
            epoch: h.epoch,
            seq: h.seq,
            awaiting_store,
        }
    }

    /// Hands pending batches downstream: the store first (durability), then the resolver.
    /// Blocks when a channel is full (back-pressure, counted): nothing is dropped here.
    pub fn flush(&mut self) {
        if self.pending_store.is_empty() {
            return;
        }
        let store = std::mem::take(&mut self.pending_store);
        let resolve = std::mem::take(&mut self.pending_resolve);
        self.metrics
            .records_in_flight
            .fetch_add(self.pending_records as u64, Ordering::Relaxed);
        self.pending_records = 0;
        self.metrics.sent(Chan::Store);
        self.send(&self.to_store.clone(), StoreMsg::Batches(store));
        self.metrics.sent(Chan::Resolver);
        self.send(&self.to_resolver.clone(), ResolverMsg::Batches(resolve));
    }

    fn send<T>(&self, tx: &SyncSender<T>, m: T) {
        match tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(m)) => {
                self.metrics
                    .backpressure_waits
                    .fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(m);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// `agent` when it has a session (a refusal is counted against it), else `None`.
    fn known(&self, agent: u64) -> Option<u64> {
        self.sessions.contains_key(&agent).then_some(agent)
    }

    /// Why a FlowBatch of `len` bytes must wait, if it must: over the memory budget
    /// (`memory::Governor`: overload meets back-pressure, not growth) or the store's backlog
    /// budget (a stalled disk). Checked before the frame can touch a session: a batch refused
    /// here is neither aggregated nor marked seen, so the agent's resend counts exactly once.
    fn load_refusal(&self, len: usize) -> Option<(&'static str, String)> {
        if self.metrics.memory_pressure.load(Ordering::Relaxed) == 1 {
            return Some((
                "overloaded",
                "the collector is over its memory budget: resend later".into(),
            ));
        }
        let pending = self.metrics.store_pending_bytes.load(Ordering::Relaxed);
        (pending + len as u64 > self.cfg.max_store_backlog as u64).then(|| {
            (
                "store_full",
                format!(
                    "{pending} bytes wait for the store (budget {}): resend later",
                    self.cfg.max_store_backlog
                ),
            )
        })
    }

    /// A durability reply: returns the agents whose connections may now ack further.
    pub fn on_store_reply(&mut self, r: StoreReply) -> Vec<u64> {
        let mut advanced = Vec::new();
        let StoreReply::Durable(ids) = r;
        for (a, e, s) in ids {
            if let Some(sess) = self.sessions.get_mut(&a) {
                if sess.epoch == e && sess.in_store.remove(&s) {
                    advanced.push(a);
                    sess.durable = widen(sess.durable, s);
                    self.sessions.dirty = true;
                }
            }
        }
        advanced.sort_unstable();
        advanced.dedup();
        advanced
    }

    /// Is this batch still waiting for the store?
    pub fn in_store(&self, agent: u64, epoch: u32, seq: u64) -> bool {
        self.sessions
            .get(&agent)
            .is_some_and(|s| s.epoch == epoch && s.in_store.contains(&seq))
    }

    pub fn snapshot(&self) -> IngestSnapshot {
        IngestSnapshot {
            agents: self
                .sessions
                .iter()
                .map(|(&id, s)| AgentView {
                    agent_id: id,
                    host_name: s.host_name.clone(),
                    agent_version: s.agent_version.clone(),
                    epoch: s.epoch,
                    transport: match s.transport {
                        Transport::Udp => "udp",
                        Transport::Tcp => "tcp",
                    }
                    .into(),
                    simulated: s.capabilities & cap::SIMULATED != 0,
                    capabilities: s.capabilities,
                    interval_ms: s.interval_ms,
                    last_seen_ms: s.last_seen_ms,
                    frames: s.frames,
                    records: s.records,
                    lost: s.lost,
                    duplicates: s.duplicates,
                    skew_aligned: s.skew_aligned,
                    misaligned: s.misaligned,
                    rebucketed: s.rebucketed,
                    rejected: s
                        .rejected
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                    stats: s.stats.clone(),
                    goodbye: s.goodbye.clone(),
                    placement: s.placement.clone(),
                })
                .collect(),
            rejected: self
                .rejected
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use nfm_wire::{encode_to_vec, FlowBatch, FlowRecord, Hello, Key};
    use nfm_wire::{Header, Keyring};
    use std::sync::mpsc::sync_channel;
    use std::sync::mpsc::Receiver;

    fn core(keys: Option<Keyring>) -> (IngestCore, Receiver<ResolverMsg>, Receiver<StoreMsg>) {
        let (rtx, rrx) = sync_channel(64);
        let (stx, srx) = sync_channel(64);
        let cfg = IngestConfig {
            keys,
            ..Default::default()
        };
        (
            IngestCore::new(cfg, rtx, stx, Arc::new(Metrics::default())),
            rrx,
            srx,
        )
    }

    fn batch_frame(agent: u64, epoch: u32, seq: u64, key: Option<&Key>) -> Vec<u8> {
        let b = FlowBatch {
            interval_start_ms: 0,
            interval_end_ms: 10_000,
            records: vec![FlowRecord {
                local: "10.0.1.10".parse().unwrap(),
                remote: "10.0.2.10".parse().unwrap(),
                bytes_sent: seq * 10,
                ..Default::default()
            }],
        };
        encode_to_vec(
            &Header {
                agent_id: agent,
                epoch,
                seq,
            },
            &Message::FlowBatch(b),
            key,
        )
    }

    /// Regression (issue 19 item 9): an Ack or Error frame from an agent, refused as a protocol
    /// violation, moved the agent's sequence window first: its next real frames were refused as
    /// replayed and `lost` jumped by the gap.
    #[test]
    fn test_refused_ack_does_not_move_the_window() {
        let (mut c, _r, _s) = core(None);
        for seq in 0..2 {
            let o = c.on_frame(&batch_frame(7, 1, seq, None), Transport::Udp, None);
            assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
        }
        for msg in [
            Message::Ack(nfm_wire::Ack { epoch: 1, seq: 5 }),
            Message::Error(nfm_wire::ErrorMsg::default()),
        ] {
            let h = Header {
                agent_id: 7,
                epoch: 1,
                seq: 200_000,
            };
            let o = c.on_frame(&encode_to_vec(&h, &msg, None), Transport::Udp, None);
            assert!(matches!(o, Outcome::Rejected { .. }), "{o:?}");
        }
        // A newer epoch in a refused frame does not restart the session either.
        let h = Header {
            agent_id: 7,
            epoch: 9,
            seq: 0,
        };
        let ack = Message::Ack(nfm_wire::Ack { epoch: 9, seq: 0 });
        c.on_frame(&encode_to_vec(&h, &ack, None), Transport::Udp, None);
        let o = c.on_frame(&batch_frame(7, 1, 2, None), Transport::Udp, None);
        assert!(matches!(o, Outcome::Accepted { .. }), "{o:?}");
        let snap = c.snapshot();
        let a = snap.agents.iter().find(|a| a.agent_id == 7).unwrap();
        assert_eq!((a.epoch, a.lost, a.frames), (1, 0, 3));
        assert_eq!(a.rejected.get("unexpected_message"), Some(&3));
    }

    /// Regression (issue 19 item 1): a batch stamped an hour or ten years ahead of the
    /// collector's clock was accepted and sent downstream, where it moved the watermark past
    /// every open interval. Now it is refused (not fatal on TCP), counted per agent and by
    /// reason, and nothing of it reaches the store or the aggregator.
    #[test]
    fn test_future_batches_are_refused_and_never_sent_downstream() {
        let (mut c, r, s) = core(None);
        let now = now_ms();
        let frame = |seq: u64, start: u64, end: u64| {
            let b = FlowBatch {
                interval_start_ms: start,
                interval_end_ms: end,
                records: vec![FlowRecord::default()],
            };
            let h = Header {
                agent_id: 5,
                epoch: 1,
                seq,
            };
            encode_to_vec(&h, &Message::FlowBatch(b), None)
        };
        let aligned = now / 5_000 * 5_000;
        let ok = c.on_frame(&frame(0, aligned - 5_000, aligned), Transport::Tcp, None);
        assert!(matches!(ok, Outcome::Accepted { .. }), "{ok:?}");
        let hour = 3_600_000;
        let decade = 10 * 365 * 86_400_000;
        for (seq, ahead) in [(1, hour), (2, decade)] {
            let o = c.on_frame(
                &frame(seq, aligned + ahead, aligned + ahead + 5_000),
                Transport::Tcp,
                Some(5),
            );
            assert!(
                matches!(
                    o,
                    Outcome::Rejected {
                        reason: "future_interval",
                        agent_id: Some(5),
                        ..
                    }
                ),
                "{o:?}"
            );
            assert!(!o.is_fatal());
        }
        let o = c.on_frame(&frame(3, aligned, aligned - 1), Transport::Tcp, Some(5));
        assert!(
            matches!(
                o,
                Outcome::Rejected {
                    reason: "bad_interval",
                    ..
                }
            ),
            "{o:?}"
        );
        // The stream goes on: the next good batch is accepted, and no frame counted as lost.
        let o = c.on_frame(&frame(4, aligned, aligned + 5_000), Transport::Tcp, Some(5));
        assert!(matches!(o, Outcome::Accepted { seq: 4, .. }), "{o:?}");
        c.flush();
        let mut ends = Vec::new();
        while let Ok(ResolverMsg::Batches(bs)) = r.try_recv() {
            ends.extend(bs.iter().map(|b| b.interval_end_ms));
        }
        assert_eq!(ends, vec![aligned, aligned + 5_000]);
        let StoreMsg::Batches(stored) = s.try_recv().unwrap() else {
            panic!()
        };
        assert_eq!(stored.iter().map(|b| b.seq).collect::<Vec<_>>(), vec![0, 4]);
        let snap = c.snapshot();
        let a = &snap.agents[0];
        assert_eq!(a.rejected.get("future_interval"), Some(&2));
        assert_eq!(a.rejected.get("bad_interval"), Some(&1));
        assert_eq!((a.lost, a.records), (0, 2));
        assert_eq!(snap.rejected.get("future_interval"), Some(&2));
        // An agent never seen is refused too, without a session being created for it.
        let h = Header {
            agent_id: 6,
            epoch: 1,
            seq: 0,
        };
        let b = FlowBatch {
            interval_start_ms: aligned + hour,
            interval_end_ms: aligned + hour + 5_000,
            records: vec![],
        };
        let o = c.on_frame(
            &encode_to_vec(&h, &Message::FlowBatch(b), None),
            Transport::Udp,
            None,
        );
        assert!(
            matches!(o, Outcome::Rejected { agent_id: None, .. }),
            "{o:?}"
        );
        assert_eq!(c.snapshot().agents.len(), 1);
    }

    #[test]
    fn test_skewed_agents_share_an_interval() {
        let (mut c, r, _s) = core(None);
        let t = 1_764_000_000_000u64;
        for (agent, skew) in [(1u64, 0i64), (2, -700), (3, 900), (4, 2_400)] {
            let b = FlowBatch {
                interval_start_ms: (t as i64 + skew) as u64,
                interval_end_ms: (t as i64 + 5_000 + skew) as u64,
                records: vec![FlowRecord::default()],
            };
            let h = Header {
                agent_id: agent,
                epoch: 1,
                seq: 0,
            };
            let f = encode_to_vec(&h, &Message::FlowBatch(b), None);
            assert!(matches!(
                c.on_frame(&f, Transport::Udp, None),
                Outcome::Accepted { .. }
            ));
        }
        c.flush();
        let mut starts = std::collections::BTreeMap::new();
        while let Ok(ResolverMsg::Batches(bs)) = r.try_recv() {
            for b in bs {
                starts.insert(b.agent_id, b.interval_start_ms);
            }
        }
        assert_eq!(starts[&1], t);
        assert_eq!(starts[&2], t);
        assert_eq!(starts[&3], t);
        assert_eq!(starts[&4], t + 2_400);
        let snap = c.snapshot();
        let view = |a: u64| snap.agents.iter().find(|v| v.agent_id == a).unwrap();
        assert_eq!((view(2).skew_aligned, view(2).misaligned), (1, 0));
        assert_eq!((view(4).skew_aligned, view(4).misaligned), (0, 1));
    }

    #[test]
    fn test_frames_in_batches_out_dedupe_and_gaps() {
        let (mut c, rrx, srx) = core(None);
        let hello = encode_to_vec(
            &Header {
                agent_id: 9,
                epoch: 1,
                seq: 0,
            },
            &Message::Hello(Hello {
                host_name: "web-1".into(),
                ..Default::default()
            }),
            None,
        );
        assert!(matches!(
            c.on_frame(&hello, Transport::Udp, None),
            Outcome::Accepted {
                awaiting_store: false,
                ..
            }
        ));
        assert!(matches!(
            c.on_frame(&batch_frame(9, 1, 1, None), Transport::Udp, None),
            Outcome::Accepted {
                awaiting_store: true,
                ..
            }
        ));
        assert!(matches!(
            c.on_frame(&batch_frame(9, 1, 1, None), Transport::Udp, None),
            Outcome::Duplicate { .. }
        ));
        c.on_frame(&batch_frame(9, 1, 4, None), Transport::Udp, None);
        c.flush();
        let StoreMsg::Batches(b) = srx.try_recv().unwrap() else {
            panic!()
        };
        assert_eq!(b.iter().map(|b| b.seq).collect::<Vec<_>>(), vec![1, 4]);
        let ResolverMsg::Batches(r) = rrx.try_recv().unwrap() else {
            panic!()
        };
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].records[0].bytes_sent, 10);
        let snap = c.snapshot();
        let a = &snap.agents[0];
        assert_eq!((a.frames, a.lost, a.duplicates), (3, 2, 1));
        assert_eq!(a.host_name, "web-1");
        // Durable reply clears the in-store state.
        assert!(c.in_store(9, 1, 1));
        let adv = c.on_store_reply(StoreReply::Durable(vec![(9, 1, 1)]));
        assert_eq!(adv, vec![9]);
        assert!(!c.in_store(9, 1, 1));
        // A restart (a frame of another epoch, stamped later) starts a new session; a frame
        // of the earlier session is then a replay, whatever the epochs' numbers.
        let later = |agent: u64, epoch: u32, seq: u64, end: u64| {
            let b = FlowBatch {
                interval_start_ms: end - 10_000,
                interval_end_ms: end,
                records: vec![FlowRecord::default()],
            };
            let h = Header {
                agent_id: agent,
                epoch,
                seq,
            };
            encode_to_vec(&h, &Message::FlowBatch(b), None)
        };
        let o = c.on_frame(&later(9, 0, 0, 20_000), Transport::Udp, None);
        assert!(matches!(o, Outcome::Accepted { epoch: 0, .. }), "{o:?}");
        let o = c.on_frame(&batch_frame(9, 1, 7, None), Transport::Udp, None);
        assert!(matches!(
            o,
            Outcome::Rejected {
                reason: "replayed",
                ..
            }
        ));
    }

    #[test]
    fn test_bad_frames_rejected_by_reason() {
        let key = Key::new(1, vec![7u8; 32]);
        let mut ring = Keyring::new();
        ring.insert(key.clone());
        let (mut c, _r, _s) = core(Some(ring));
        let good = batch_frame(3, 1, 1, Some(&key));
        assert!(matches!(
            c.on_frame(&good, Transport::Udp, None),
            Outcome::Accepted { .. }
        ));
        let mut corrupt = batch_frame(3, 1, 2, Some(&key));
        let n = corrupt.len();
        corrupt[n / 2] ^= 0x55;
        let forged = batch_frame(3, 1, 3, Some(&Key::new(1, vec![8u8; 32])));
        let unsigned = batch_frame(3, 1, 4, None);
        let truncated = &good[..good.len() - 3];
        let cases: [(&[u8], &str); 5] = [
            (&corrupt, "bad_crc"),
            (&forged, "bad_auth_tag"),
            (&unsigned, "unsigned"),
            (truncated, "truncated"),
            (b"garbage!", "bad_magic"),
        ];
        for (bytes, reason) in cases {
            match c.on_frame(bytes, Transport::Udp, None) {
                Outcome::Rejected { reason: r, .. } => assert_eq!(r, reason),
                o => panic!("{reason}: {o:?}"),
            }
        }
        let snap = c.snapshot();
        assert_eq!(snap.rejected.values().sum::<u64>(), 5);
        // Per agent: the claimed agent 3 is known, so frames with a readable header count there.
        assert_eq!(snap.agents[0].rejected.values().sum::<u64>(), 4);
        // Good traffic still flows.
        assert!(matches!(
            c.on_frame(&batch_frame(3, 1, 5, Some(&key)), Transport::Udp, None),
            Outcome::Accepted { .. }
        ));
    }

    /// Over the store's backlog budget (a stalled disk) a batch is refused before it is
    /// aggregated or marked seen: the agent's resend once space returns counts exactly once
    /// (issue 19 item 4: dropped backlog batches had already been aggregated and counted twice).
    #[test]
    fn test_store_backlog_budget_refuses_before_aggregating() {
        let (mut c, r, s) = core(None);
        let f = batch_frame(5, 1, 1, None);
        c.metrics
            .store_pending_bytes
            .store(c.cfg.max_store_backlog as u64, Ordering::Relaxed);
        match c.on_frame(&f, Transport::Tcp, None) {
            Outcome::Rejected { reason, .. } => assert_eq!(reason, "store_full"),
            o => panic!("{o:?}"),
        }
        c.flush();
        assert!(r.try_recv().is_err(), "nothing aggregated");
        assert!(s.try_recv().is_err(), "nothing stored");
        // Space returns: the resend is new, not a duplicate, and counted once.
        c.metrics.store_pending_bytes.store(0, Ordering::Relaxed);
        assert!(matches!(
            c.on_frame(&f, Transport::Tcp, None),
            Outcome::Accepted {
                awaiting_store: true,
                ..
            }
        ));
        assert_eq!(
            c.metrics.store_pending_bytes.load(Ordering::Relaxed),
            f.len() as u64
        );
        c.flush();
        let Ok(ResolverMsg::Batches(b)) = r.try_recv() else {
            panic!("the resend is aggregated");
        };
        assert_eq!(b.len(), 1);
        assert!(matches!(
            c.on_frame(&f, Transport::Tcp, None),
            Outcome::Duplicate { .. }
        ));
    }

    /// Over the memory budget (`memory::Governor`) a batch is refused before it is aggregated
    /// or marked seen, and accepted again once memory is back under it (issue 19 item 12).
    #[test]
    fn test_memory_pressure_refuses_before_aggregating() {
        let (mut c, r, _s) = core(None);
        let f = batch_frame(6, 1, 1, None);
        c.metrics.memory_pressure.store(1, Ordering::Relaxed);
        match c.on_frame(&f, Transport::Tcp, None) {
            Outcome::Rejected { reason, .. } => assert_eq!(reason, "overloaded"),
            o => panic!("{o:?}"),
        }
        c.flush();
        assert!(r.try_recv().is_err(), "nothing aggregated");
        c.metrics.memory_pressure.store(0, Ordering::Relaxed);
        assert!(matches!(
            c.on_frame(&f, Transport::Tcp, None),
            Outcome::Accepted { .. }
        ));
    }

    /// Under a 5 s collector interval: a 1 s agent's batch is added into the 5 s interval that
    /// holds it (counted), a 60 s agent's is refused with the reason, without closing its
    /// connection (issue 12 item 1).
    #[test]
    fn test_agent_intervals_rebucketed_or_refused() {
        let (rtx, r) = sync_channel(64);
        let (stx, _s) = sync_channel(64);
        let cfg = IngestConfig {
            interval_ms: Some(5_000),
            ..Default::default()
        };
        let mut c = IngestCore::new(cfg, rtx, stx, Arc::new(Metrics::default()));
        let t = (now_ms() / 5_000 - 10) * 5_000;
        let frame = |seq: u64, s: u64, e: u64| {
            encode_to_vec(
                &Header {
                    agent_id: 8,
                    epoch: 1,
                    seq,
                },
                &Message::FlowBatch(FlowBatch {
                    interval_start_ms: s,
                    interval_end_ms: e,
                    records: vec![FlowRecord::default()],
                }),
                None,
            )
        };
        assert!(matches!(
            c.on_frame(&frame(1, t + 2_000, t + 3_000), Transport::Tcp, None),
            Outcome::Accepted { .. }
        ));
        let refused = c.on_frame(&frame(2, t - 60_000, t), Transport::Tcp, None);
        match &refused {
            Outcome::Rejected {
                reason, message, ..
            } => {
                assert_eq!(*reason, "interval_mismatch");
                assert!(message.contains("60000 ms"), "{message}");
            }
            o => panic!("{o:?}"),
        }
        assert!(!refused.is_fatal());
        c.flush();
        let Ok(ResolverMsg::Batches(b)) = r.try_recv() else {
            panic!("the 1 s batch is aggregated");
        };
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].interval_start_ms, b[0].interval_end_ms),
            (t, t + 5_000)
        );
        let snap = c.snapshot();
        assert_eq!(snap.agents[0].rebucketed, 1);
        assert_eq!(snap.agents[0].rejected.get("interval_mismatch"), Some(&1));
    }
}
