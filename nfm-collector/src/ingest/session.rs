//! Agent sessions and the agent table: each agent's epoch and sequence window (dedupe, loss),
//! the rule that tells a restarted agent from a replay, the table's budget and expiry, and the
//! replay marks that outlive a session and a collector restart.
//!
//! - **Restart or replay**: agents draw their epoch from time and pid, so epochs have no order.
//!   A frame of another epoch than the session's starts a new session only when the time it
//!   carries (Hello `started_at_ms`, FlowBatch interval end) is newer than anything the agent
//!   stamped before ([`Session::newest_ms`]): a restarted agent's frames always are, a captured
//!   frame of an earlier session never is. Frames of another epoch that carry no time
//!   (AgentStats, Goodbye) are refused as replays until the new session's Hello or first batch.
//! - **Budget**: at most `max_agents` sessions. A session only a Hello made (`proven` false) is
//!   evicted first, oldest first, and at most `max_unproven` of them exist, so a flood of Hellos
//!   with random agent ids cannot keep an agent with data out: its first FlowBatch takes the
//!   place of the oldest Hello-only session.
//! - **Expiry**: a Hello-only session silent for `unproven_ttl`, any session silent for
//!   `session_ttl` (none with batches still on their way to the store) is dropped; a proven
//!   one leaves its [`Mark`] (epoch, newest time, the range of its durable sequence numbers).
//! - **Marks survive restarts**: [`Sessions::marks_text`] is written to `DATA_DIR/sessions` by
//!   the ingest loop (every 2 s when changed, and at shutdown) and read at start together with
//!   the WAL's ids, so after a restart captured frames are still refused and resends of durable
//!   frames are still duplicates, also for batches whose WAL segments were checkpointed.

use super::core::Transport;
pub(super) use super::seq_window::{SeqCheck, SeqWindow};
use crate::metrics::Metrics;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;

#[derive(Debug)]
pub(super) struct Session {
    pub(super) epoch: u32,
    /// Dedupe of sequence numbers: no heap in the steady state (issue 16 item 4).
    pub(super) window: SeqWindow,
    pub(super) host_name: String,
    /// issue 17: from the Hello (wire 1.1).
    pub(super) placement: Option<Box<crate::pipeline::AgentPlacement>>,
    pub(super) agent_version: String,
    pub(super) capabilities: u64,
    pub(super) interval_ms: u32,
    pub(super) transport: Transport,
    pub(super) last_seen_ms: u64,
    pub(super) frames: u64,
    pub(super) records: u64,
    pub(super) lost: u64,
    pub(super) duplicates: u64,
    /// FlowBatch frames whose interval start was off the interval grid (clock skew): within
    /// [`SKEW_TOLERANCE_MS`] moved onto it, beyond it kept where the agent put it.
    pub(super) skew_aligned: u64,
    pub(super) misaligned: u64,
    /// FlowBatch frames of a shorter agent interval moved into the collector's interval.
    pub(super) rebucketed: u64,
    pub(super) rejected: BTreeMap<&'static str, u64>,
    /// Boxed, as is `placement`: held per agent in the table and in every snapshot, and
    /// absent for many agents (issue 16 item 4).
    pub(super) stats: Option<Box<nfm_wire::AgentStats>>,
    pub(super) goodbye: Option<String>,
    /// Batches handed to the store and not yet durable.
    pub(super) in_store: HashSet<u64>,
    /// The newest time this agent stamped on anything (Hello `started_at_ms`, FlowBatch
    /// interval end), across its sessions: a frame of another epoch starts a new session only
    /// when its own time is newer (a restart), else it is a replay.
    pub(super) newest_ms: u64,
    /// Sent a valid FlowBatch: a session only a Hello made is evicted first for room.
    pub(super) proven: bool,
    /// The lowest and highest sequence numbers of batches the store made durable: what a
    /// replay mark covers. Never a frame merely received: a restart must not take a batch that
    /// was not durable (and so not acked) for a duplicate when the agent resends it.
    pub(super) durable: Option<(u64, u64)>,
}

impl Session {
    pub(super) fn new(epoch: u32, transport: Transport) -> Session {
        Session {
            epoch,
            window: SeqWindow::new(),
            host_name: String::new(),
            placement: None,
            agent_version: String::new(),
            capabilities: 0,
            interval_ms: 0,
            transport,
            last_seen_ms: 0,
            frames: 0,
            records: 0,
            lost: 0,
            duplicates: 0,
            skew_aligned: 0,
            rebucketed: 0,
            misaligned: 0,
            rejected: BTreeMap::new(),
            stats: None,
            goodbye: None,
            in_store: HashSet::default(),
            newest_ms: 0,
            proven: false,
            durable: None,
        }
    }
}

/// What a frame of another epoch than its session's is.
pub(super) fn is_restart(newest_ms: u64, frame_time_ms: Option<u64>) -> bool {
    matches!(frame_time_ms, Some(t) if t > newest_ms)
}

/// What outlives a session: enough to refuse replays of it (its epoch, the newest time it
/// stamped, the lowest and highest sequence numbers of its durable batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) epoch: u32,
    pub(super) newest_ms: u64,
    pub(super) durable: Option<(u64, u64)>,
}

impl Mark {
    fn of(s: &Session) -> Mark {
        Mark {
            epoch: s.epoch,
            newest_ms: s.newest_ms,
            durable: s.durable,
        }
    }
}

/// Widens a `(low, high)` range of sequence numbers to cover `seq`.
pub(super) fn widen(range: Option<(u64, u64)>, seq: u64) -> Option<(u64, u64)> {
    Some(range.map_or((seq, seq), |(l, h)| (l.min(seq), h.max(seq))))
}

/// Table limits (from `IngestConfig`).
#[derive(Debug, Clone, Copy)]
pub(super) struct TableLimits {
    pub(super) max_agents: usize,
    pub(super) max_unproven: usize,
    pub(super) unproven_ttl_ms: u64,
    pub(super) session_ttl_ms: u64,
}

/// The agent table.
pub(super) struct Sessions {
    map: HashMap<u64, Session>,
    /// Agents whose session was created without data, oldest first (may hold stale entries).
    unproven: VecDeque<u64>,
    unproven_count: usize,
    /// Marks of agents without a session in `map` (expired, or known from before a restart).
    marks: HashMap<u64, Mark>,
    limits: TableLimits,
    /// Something a mark is made of changed since the last [`Sessions::marks_text`].
    pub(super) dirty: bool,
}

impl Sessions {
    pub(super) fn new(limits: TableLimits) -> Sessions {
        Sessions {
            map: HashMap::default(),
            unproven: VecDeque::new(),
            unproven_count: 0,
            marks: HashMap::default(),
            limits,
            dirty: false,
        }
    }
    pub(super) fn get(&self, agent: &u64) -> Option<&Session> {
        self.map.get(agent)
    }
    pub(super) fn get_mut(&mut self, agent: &u64) -> Option<&mut Session> {
        self.map.get_mut(agent)
    }
    pub(super) fn contains_key(&self, agent: &u64) -> bool {
        self.map.contains_key(agent)
    }
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &Session)> {
        self.map.iter()
    }

    /// The agent's session, created if there is room. `with_data`: the frame is a FlowBatch
    /// (a new session for it may evict a Hello-only one even when the table is full). A new
    /// session starts from the agent's mark, if any (its epoch and newest time, every sequence
    /// number up to its highest seen), so the caller's epoch rule applies as before.
    pub(super) fn admit(
        &mut self,
        agent: u64,
        epoch: u32,
        transport: Transport,
        with_data: bool,
        metrics: &Metrics,
    ) -> Result<&mut Session, String> {
        if !self.map.contains_key(&agent) {
            let full = self.map.len() >= self.limits.max_agents;
            let hellos_full = !with_data && self.unproven_count >= self.limits.max_unproven;
            if (full || hellos_full) && !self.evict_unproven(metrics) {
                return Err(format!(
                    "already tracking {} agents with data",
                    self.limits.max_agents
                ));
            }
            let mut s = Session::new(epoch, transport);
            if let Some(m) = self.marks.remove(&agent) {
                // An agent that sent data before: never evicted as a Hello-only session (its
                // mark would be lost with it).
                s.epoch = m.epoch;
                s.newest_ms = m.newest_ms;
                s.proven = true;
                if let Some((low, high)) = m.durable {
                    s.window = SeqWindow::seen_range(low, high);
                    s.durable = m.durable;
                }
            } else {
                self.unproven.push_back(agent);
                self.unproven_count += 1;
            }
            self.map.insert(agent, s);
            if self.unproven.len() > 2 * self.limits.max_unproven + 1024 {
                let map = &self.map;
                let mut seen = HashSet::default();
                self.unproven
                    .retain(|a| map.get(a).is_some_and(|s| !s.proven) && seen.insert(*a));
            }
        }
        Ok(self.map.get_mut(&agent).expect("just inserted"))
    }

    /// The session sent data: it is no longer first in line for eviction.
    pub(super) fn prove(&mut self, agent: u64) {
        if let Some(s) = self.map.get_mut(&agent) {
            if !s.proven {
                s.proven = true;
                self.unproven_count -= 1;
            }
            self.dirty = true;
        }
    }

    /// Evicts the oldest Hello-only session; false if there is none.
    fn evict_unproven(&mut self, metrics: &Metrics) -> bool {
        while let Some(a) = self.unproven.pop_front() {
            if self
                .map
                .get(&a)
                .is_some_and(|s| !s.proven && s.in_store.is_empty())
            {
                self.remove(a);
                metrics.sessions_evicted.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    fn remove(&mut self, agent: u64) {
        if let Some(s) = self.map.remove(&agent) {
            if s.proven {
                self.marks.insert(agent, Mark::of(&s));
                self.trim_marks();
            } else {
                self.unproven_count -= 1;
            }
        }
    }

    /// Marks are 24 bytes each; at most twice `max_agents` are kept, the oldest go first.
    fn trim_marks(&mut self) {
        let cap = 2 * self.limits.max_agents.max(1);
        if self.marks.len() <= cap + cap / 8 {
            return;
        }
        let mut by_age: Vec<(u64, u64)> =
            self.marks.iter().map(|(a, m)| (m.newest_ms, *a)).collect();
        by_age.sort_unstable();
        for (_, a) in &by_age[..self.marks.len() - cap] {
            self.marks.remove(a);
        }
    }

    /// Drops sessions silent past their time to live (none with batches awaiting the store).
    pub(super) fn expire(&mut self, now_ms: u64, metrics: &Metrics) -> usize {
        let l = self.limits;
        let due: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, s)| s.in_store.is_empty())
            .filter(|(_, s)| {
                let silent = now_ms.saturating_sub(s.last_seen_ms);
                silent >= l.session_ttl_ms || (!s.proven && silent >= l.unproven_ttl_ms)
            })
            .map(|(a, _)| *a)
            .collect();
        for &a in &due {
            self.remove(a);
        }
        metrics
            .sessions_expired
            .fetch_add(due.len() as u64, Ordering::Relaxed);
        due.len()
    }

    /// Every agent's mark, one `agent epoch newest_ms low-high` line each (`-`: none).
    pub(super) fn marks_text(&mut self) -> String {
        self.dirty = false;
        let mut out =
            String::from("# nfm-collector replay marks: agent epoch newest_ms durable_seqs\n");
        let live = self.map.iter().filter(|(_, s)| s.proven);
        let all = live
            .map(|(a, s)| (*a, Mark::of(s)))
            .chain(self.marks.iter().map(|(a, m)| (*a, *m)));
        for (a, m) in all {
            let h = m
                .durable
                .map_or("-".to_string(), |(l, h)| format!("{l}-{h}"));
            out.push_str(&format!("{a} {} {} {h}\n", m.epoch, m.newest_ms));
        }
        out
    }

    /// Restores marks written by [`Sessions::marks_text`] and the WAL's ids of durable
    /// batches (in the order they arrived). Per agent, the epoch of its last WAL batch is its
    /// current one (a later session's batches follow an earlier one's); returns lines skipped.
    pub(super) fn restore(&mut self, marks_text: &str, seen: &[(u64, u32, u64)]) -> usize {
        let mut bad = 0;
        for line in marks_text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let parsed = (|| {
                let durable = match *f.get(3)? {
                    "-" => None,
                    r => {
                        let (l, h) = r.split_once('-')?;
                        Some((l.parse().ok()?, h.parse().ok()?))
                    }
                };
                Some((
                    f.first()?.parse::<u64>().ok()?,
                    Mark {
                        epoch: f.get(1)?.parse().ok()?,
                        newest_ms: f.get(2)?.parse().ok()?,
                        durable,
                    },
                ))
            })();
            match parsed {
                Some((a, m)) if f.len() == 4 => {
                    self.marks.insert(a, m);
                }
                _ => bad += 1,
            }
        }
        let mut last: HashMap<u64, (u32, Option<(u64, u64)>)> = HashMap::default();
        for &(a, e, s) in seen {
            let cur = last.entry(a).or_insert((e, None));
            if cur.0 != e {
                *cur = (e, None);
            }
            cur.1 = widen(cur.1, s);
        }
        for (a, (e, range)) in last {
            let m = self.marks.entry(a).or_insert(Mark {
                epoch: e,
                newest_ms: 0,
                durable: None,
            });
            if m.epoch != e {
                m.epoch = e;
                m.durable = None;
            }
            if let Some((l, h)) = range {
                m.durable = widen(widen(m.durable, l), h);
            }
        }
        self.trim_marks();
        bad
    }
}

#[cfg(test)]
mod test {
    use super::super::core::{IngestCore, Outcome, Transport, DEDUPE_WINDOW};
    use super::super::IngestConfig;
    use super::*;
    use crate::pipeline::{ResolverMsg, StoreMsg, StoreReply};
    use nfm_wire::{encode_to_vec, FlowBatch, FlowRecord, Header, Hello, Message};
    use std::sync::mpsc::{sync_channel, Receiver};
    use std::sync::Arc;

    struct Core {
        c: IngestCore,
        _r: Receiver<ResolverMsg>,
        _s: Receiver<StoreMsg>,
    }

    fn core(cfg: IngestConfig) -> Core {
        let (rtx, _r) = sync_channel(1 << 16);
        let (stx, _s) = sync_channel(1 << 16);
        Core {
            c: IngestCore::new(cfg, rtx, stx, Arc::new(Metrics::default())),
            _r,
            _s,
        }
    }

    fn hello(agent: u64, epoch: u32, seq: u64, started_at_ms: u64) -> Vec<u8> {
        let h = Header {
            agent_id: agent,
            epoch,
            seq,
        };
        let m = Message::Hello(Hello {
            host_name: format!("host-{agent}"),
            started_at_ms,
            ..Default::default()
        });
        encode_to_vec(&h, &m, None)
    }

    fn batch(agent: u64, epoch: u32, seq: u64, end_ms: u64) -> Vec<u8> {
        let h = Header {
            agent_id: agent,
            epoch,
            seq,
        };
        let m = Message::FlowBatch(FlowBatch {
            interval_start_ms: end_ms - 5_000,
            interval_end_ms: end_ms,
            records: vec![FlowRecord::default()],
        });
        encode_to_vec(&h, &m, None)
    }

    /// Hands pending batches to the store channel and makes those with `seq <= upto` durable.
    fn durable_upto(k: &mut Core, upto: u64) {
        k.c.flush();
        let mut ids = Vec::new();
        while let Ok(StoreMsg::Batches(b)) = k._s.try_recv() {
            ids.extend(
                b.iter()
                    .filter(|b| b.seq <= upto)
                    .map(|b| (b.agent_id, b.epoch, b.seq)),
            );
        }
        k.c.on_store_reply(StoreReply::Durable(ids));
    }

    fn accepted(o: &Outcome) -> bool {
        matches!(o, Outcome::Accepted { .. })
    }

    fn reason(o: &Outcome) -> &'static str {
        match o {
            Outcome::Rejected { reason, .. } => reason,
            _ => "",
        }
    }

    const T: u64 = 1_764_000_000_000;

    #[test]
    fn test_seq_window_boundaries() {
        let mut w = SeqWindow::new();
        assert_eq!(
            w.check(5),
            SeqCheck::New {
                gap: 0,
                filled: false
            }
        );
        w.mark(5);
        assert_eq!(w.check(5), SeqCheck::Duplicate);
        assert_eq!(
            w.check(8),
            SeqCheck::New {
                gap: 2,
                filled: false
            }
        );
        w.mark(8);
        assert_eq!(
            w.check(6),
            SeqCheck::New {
                gap: 0,
                filled: true
            }
        );
        // Window − 1 behind: still remembered; window behind: too old.
        w.mark(5 + DEDUPE_WINDOW - 1);
        assert_eq!(w.check(5), SeqCheck::Duplicate);
        w.mark(5 + DEDUPE_WINDOW);
        assert_eq!(w.check(5), SeqCheck::TooOld);
        // Still inside the window: 8 was seen, 6 never was.
        assert_eq!(w.check(8), SeqCheck::Duplicate);
        assert_eq!(
            w.check(6),
            SeqCheck::New {
                gap: 0,
                filled: true
            }
        );
        // The slide left seq 5's place unseen for its new owner, 5 + window.
        assert_eq!(w.check(5 + DEDUPE_WINDOW), SeqCheck::Duplicate);
    }

    /// Regression (issue 19 item 3): agents draw their epoch from time and pid, but any lower
    /// epoch was a replay, so a restarted agent whose new epoch happened to be lower had every
    /// frame refused until the collector restarted. Now its frames, stamped after everything
    /// the agent sent before, start its new session; the old session's frames are replays.
    #[test]
    fn test_restart_with_a_lower_epoch_is_not_locked_out() {
        let mut k = core(IngestConfig::default());
        let c = &mut k.c;
        assert!(accepted(&c.on_frame(
            &hello(1, 90_000, 0, T),
            Transport::Tcp,
            None
        )));
        for seq in 1..4 {
            let o = c.on_frame(
                &batch(1, 90_000, seq, T + seq * 5_000),
                Transport::Tcp,
                Some(1),
            );
            assert!(accepted(&o), "{o:?}");
        }
        // Restart: a lower epoch, started later.
        let o = c.on_frame(&hello(1, 12, 0, T + 21_000), Transport::Tcp, None);
        assert!(accepted(&o), "{o:?}");
        let o = c.on_frame(&batch(1, 12, 1, T + 25_000), Transport::Tcp, Some(1));
        assert!(accepted(&o), "{o:?}");
        // Captured frames of the earlier session, even with new sequence numbers: replays.
        for f in [
            batch(1, 90_000, 3, T + 15_000),
            batch(1, 90_000, 9, T + 20_000),
        ] {
            assert_eq!(reason(&c.on_frame(&f, Transport::Udp, None)), "replayed");
        }
        // A frame without a time cannot switch sessions.
        let stats = encode_to_vec(
            &Header {
                agent_id: 1,
                epoch: 77,
                seq: 0,
            },
            &Message::Goodbye(nfm_wire::Goodbye::default()),
            None,
        );
        assert_eq!(
            reason(&c.on_frame(&stats, Transport::Udp, None)),
            "replayed"
        );
        let snap = c.snapshot();
        assert_eq!((snap.agents[0].epoch, snap.agents[0].records), (12, 1));
    }

    /// Regression (issue 19 item 3): dedupe covered only WAL segments still on disk, so after
    /// a restart captured signed frames were accepted again. Now replay marks are written to
    /// the data directory and restored: with an empty WAL (checkpointed), a captured frame of
    /// the current session is a duplicate and one of an earlier session a replay.
    #[test]
    fn test_replay_marks_survive_a_restart_without_the_wal() {
        let dir = std::env::temp_dir().join(format!("nfm-marks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = IngestConfig {
            state_path: Some(dir.join("sessions")),
            ..Default::default()
        };
        let old = batch(4, 5, 1, T);
        let captured = batch(4, 6, 2, T + 10_000);
        {
            let mut k = core(cfg.clone());
            assert!(accepted(&k.c.on_frame(&old, Transport::Udp, None)));
            for seq in 1..=4 {
                let f = batch(4, 6, seq, T + 5_000 * (seq + 1));
                assert!(accepted(&k.c.on_frame(&f, Transport::Udp, None)));
            }
            // 1 to 3 durable; 4 was received but never made durable (so never acked).
            durable_upto(&mut k, 3);
            k.c.housekeeping(true);
        }
        let mut k = core(cfg);
        k.c.restore_seen(&[]);
        let o = k.c.on_frame(&captured, Transport::Udp, None);
        assert!(matches!(o, Outcome::Duplicate { seq: 2, .. }), "{o:?}");
        assert_eq!(
            reason(&k.c.on_frame(&old, Transport::Udp, None)),
            "replayed"
        );
        // The agent resends what was not durable, and goes on.
        let o =
            k.c.on_frame(&batch(4, 6, 4, T + 25_000), Transport::Udp, None);
        assert!(matches!(o, Outcome::Accepted { seq: 4, .. }), "{o:?}");
        let o =
            k.c.on_frame(&batch(4, 6, 5, T + 30_000), Transport::Udp, None);
        assert!(matches!(o, Outcome::Accepted { seq: 5, .. }), "{o:?}");
        assert_eq!(k.c.snapshot().agents[0].lost, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The WAL's ids restore the current session too: its last epoch wins, whatever the
    /// numbers, and a broken marks line is skipped.
    #[test]
    fn test_restore_takes_the_wals_last_epoch() {
        let mut s = Sessions::new(TableLimits {
            max_agents: 10,
            max_unproven: 10,
            unproven_ttl_ms: 1,
            session_ttl_ms: 1,
        });
        let bad = s.restore(
            "# header\n3 9 100 2-4\nnot a line\n3 x 1 -\n",
            &[(3, 9, 5), (3, 2, 0), (3, 2, 1), (8, 1, 7)],
        );
        assert_eq!(bad, 2);
        assert_eq!(
            s.marks[&3],
            Mark {
                epoch: 2,
                newest_ms: 100,
                durable: Some((0, 1))
            }
        );
        assert_eq!(s.marks[&8].durable, Some((7, 7)));
    }

    /// Regression (issue 19 item 6): 220,000 Hellos with random agent ids filled the agent
    /// table for good and a new agent was refused (`too_many_agents`). Now Hello-only sessions
    /// are bounded and evicted oldest first: after a flood 100 times the table, a new agent's
    /// Hello and data are accepted and the table stays within its budget.
    #[test]
    fn test_hello_flood_cannot_lock_out_an_agent() {
        let mut k = core(IngestConfig {
            max_agents: 16,
            max_unproven: 8,
            ..Default::default()
        });
        let c = &mut k.c;
        // Eight agents with data hold half the table.
        for a in 0..8u64 {
            assert!(accepted(&c.on_frame(
                &batch(a, 1, 0, T),
                Transport::Udp,
                None
            )));
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1_600 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let o = c.on_frame(&hello(x | 1 << 63, 1, 0, T), Transport::Udp, None);
            assert!(accepted(&o), "{o:?}");
        }
        let o = c.on_frame(&hello(42, 1, 0, T), Transport::Tcp, None);
        assert!(accepted(&o), "{o:?}");
        let o = c.on_frame(&batch(42, 1, 1, T), Transport::Tcp, Some(42));
        assert!(accepted(&o), "{o:?}");
        let snap = c.snapshot();
        assert!(snap.agents.len() <= 16, "{}", snap.agents.len());
        assert!(snap
            .agents
            .iter()
            .any(|a| a.agent_id == 42 && a.records == 1));
        // The agents with data kept their sessions.
        assert_eq!(
            snap.agents.iter().filter(|a| a.records > 0).count(),
            9,
            "{:?}",
            snap.agents.iter().map(|a| a.agent_id).collect::<Vec<_>>()
        );
        assert!(c.metrics().sessions_evicted.load(Ordering::Relaxed) >= 1_590);
        // A table full of agents with data refuses a newcomer rather than evicting one.
        for a in 100..107u64 {
            assert!(accepted(&c.on_frame(
                &batch(a, 1, 0, T),
                Transport::Udp,
                None
            )));
        }
        assert_eq!(
            reason(&c.on_frame(&batch(200, 1, 0, T), Transport::Udp, None)),
            "too_many_agents"
        );
    }

    /// Regression (issue 19 item 6): sessions never expired. Now a silent Hello-only session
    /// goes after `unproven_ttl`, any session after `session_ttl`, leaving its replay mark.
    #[test]
    fn test_silent_sessions_expire_and_leave_a_mark() {
        let mut s = Sessions::new(TableLimits {
            max_agents: 10,
            max_unproven: 10,
            unproven_ttl_ms: 1_000,
            session_ttl_ms: 60_000,
        });
        let m = Metrics::default();
        s.admit(1, 3, Transport::Udp, false, &m)
            .unwrap()
            .last_seen_ms = T;
        let d = s.admit(2, 5, Transport::Udp, true, &m).unwrap();
        d.last_seen_ms = T;
        d.newest_ms = T;
        d.window.mark(9);
        d.durable = Some((9, 9));
        s.prove(2);
        assert_eq!(s.expire(T + 999, &m), 0);
        assert_eq!(s.expire(T + 1_000, &m), 1);
        assert!(!s.contains_key(&1) && s.contains_key(&2));
        assert_eq!(s.expire(T + 60_000, &m), 1);
        assert_eq!(m.sessions_expired.load(Ordering::Relaxed), 2);
        assert_eq!(
            s.marks[&2],
            Mark {
                epoch: 5,
                newest_ms: T,
                durable: Some((9, 9))
            }
        );
        // It comes back where it was: seq 9 seen, 10 new.
        let back = s.admit(2, 5, Transport::Udp, true, &m).unwrap();
        assert_eq!(back.window.check(9), SeqCheck::Duplicate);
        assert!(matches!(
            back.window.check(10),
            SeqCheck::New { gap: 0, .. }
        ));
    }
}
