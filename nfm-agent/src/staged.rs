//! Dedupes staged open and close events, which user space can read twice: once from a CPU's
//! stage (read at every interval, so events on a quiet CPU are not held back) and again from the
//! batch that CPU later sends through the ring buffer (see `nfm_agent_common::stage`).
//!
//! Guarantee: every staged record is handed on exactly once, in its lane's order (a lane is one
//! CPU's opens, or its closes). Each lane's records carry consecutive numbers; this module keeps,
//! per lane, the highest number handed on (the watermark) and takes records read from the stages
//! only while they follow on without a gap (a gap means the missing records were already
//! overwritten in the stage and are waiting in the ring buffer, which delivers each lane's
//! batches in order).

use nfm_agent_common::{event, sflag, stage, SockStats};
use std::collections::HashMap;

/// Lanes tracked (the sequence number holds 17 bits of lane).
const MAX_LANES: usize = 1 << stage::LANE_BITS;

#[derive(Debug, Default)]
pub struct Seen {
    /// Per lane: records 1..=watermark have been handed on.
    watermark: Vec<u64>,
    /// Staged records dropped because they had been handed on already.
    pub duplicates: u64,
}

impl Seen {
    pub fn new() -> Seen {
        Seen::default()
    }

    fn slot(&mut self, lane: usize) -> &mut u64 {
        let lane = lane.min(MAX_LANES - 1);
        if self.watermark.len() <= lane {
            self.watermark.resize(lane + 1, 0);
        }
        &mut self.watermark[lane]
    }

    /// A record read from the ring buffer: true when it is to be handled. Records that were
    /// never staged (whole records, `seq` 0) always are.
    pub fn ring(&mut self, s: &SockStats) -> bool {
        if s.seq == 0 {
            return true;
        }
        let n = stage::n_of(s.seq);
        let w = self.slot(stage::lane_of(s.seq));
        if n <= *w {
            self.duplicates += 1;
            return false;
        }
        *w = n;
        true
    }

    /// Records read from the CPUs' stages (any order, torn and stale ones included): returns
    /// those to be handled, each lane's in order.
    pub fn staged(&mut self, mut recs: Vec<SockStats>) -> Vec<SockStats> {
        recs.retain(stage::complete);
        recs.sort_by_key(|r| (stage::lane_of(r.seq), stage::n_of(r.seq)));
        let mut out = Vec::new();
        for r in recs {
            let n = stage::n_of(r.seq);
            let w = self.slot(stage::lane_of(r.seq));
            if n == *w + 1 {
                *w = n;
                out.push(r);
            } else if n <= *w {
                self.duplicates += 1;
            }
            // n > w + 1: a gap; this and the lane's later records come with the ring batch.
        }
        out
    }
}

/// Closes that arrived before their socket's open event.
///
/// Opens and closes are staged per CPU and per kind, so the close of a short connection can
/// reach user space first (its open is staged on another CPU, or in a batch not yet sent). Such
/// a close waits here until the open arrives, or at the latest until the stages are next read:
/// an open event is staged before its socket's close, so once a snapshot of the stages taken
/// after the close arrived has been read (and the ring buffer drained), its open has been seen,
/// unless it was lost (then the close is handled on its own and counted as unattributed if it
/// carries no addresses).
#[derive(Debug, Default)]
pub struct Held {
    waiting: HashMap<u64, SockStats>,
}

impl Held {
    /// A close of an established socket user space does not know yet must wait.
    pub fn must_wait(s: &SockStats, known: bool) -> bool {
        s.event != event::OPEN && s.flags & sflag::ESTABLISHED != 0 && !known
    }

    pub fn hold(&mut self, s: SockStats) {
        self.waiting.insert(s.cookie, s);
    }

    /// The close waiting for this socket's open event, now that it arrived.
    pub fn release(&mut self, cookie: u64) -> Option<SockStats> {
        self.waiting.remove(&cookie)
    }

    /// Every close still waiting (after a full read of the stages).
    pub fn take_all(&mut self) -> Vec<SockStats> {
        self.waiting.drain().map(|(_, s)| s).collect()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::flows::Tracker;
    use nfm_agent_common::{role, tcp_state, CloseEvent, OpenEvent, AF_INET};
    use std::time::Instant;

    /// The close of a socket arrives before its open event: it waits, and the socket is
    /// counted once with its handshake and bytes. A close whose open never comes is handled
    /// after the stage read and counted as unattributed.
    #[test]
    fn test_close_before_open_waits_for_it() {
        let now = Instant::now();
        let mut t = Tracker::new();
        let mut held = Held::default();
        let open = OpenEvent {
            cookie: 9,
            local_addr: [u32::from_ne_bytes([127, 0, 0, 1]), 0, 0, 0],
            remote_addr: [u32::from_ne_bytes([127, 0, 0, 1]), 0, 0, 0],
            local_port: 7790,
            remote_port: 50000,
            family: AF_INET,
            role: role::SERVER,
            flags: sflag::ESTABLISHED,
            event: event::OPEN,
            handshake_us: 40,
            srtt_us: 40,
            ..OpenEvent::default()
        }
        .to_stats();
        let close = |cookie| {
            CloseEvent {
                cookie,
                bytes_received: 8 + 1,
                data_segs_in: 1,
                role: role::SERVER,
                last_state: tcp_state::LAST_ACK as u8,
                fin_acked: 1,
                ..CloseEvent::default()
            }
            .to_stats()
        };
        for c in [close(9), close(10)] {
            assert!(Held::must_wait(&c, t.knows(c.cookie)));
            held.hold(c);
        }
        assert!(!Held::must_wait(&open, false), "opens never wait");
        t.observe_open(&open, now);
        let c = held.release(9).expect("held");
        t.observe_close(&c, now);
        assert_eq!(held.len(), 1);
        for c in held.take_all() {
            t.observe_close(&c, now);
        }
        assert!(held.is_empty());
        assert_eq!(t.stats.closes_unattributed, 1);
        let recs = t.finish_interval(now);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!((r.conn_attempts, r.conn_completed), (1, 1));
        assert_eq!((r.bytes_received, r.segs_in), (8, 1));
        assert_eq!((r.handshake.count, r.handshake.sum_us), (1, 40));
        // A failed connect (never established) has no open event and never waits.
        let mut failed = close(11);
        failed.flags = sflag::UNTRACKED | sflag::CLOSED;
        assert!(!Held::must_wait(&failed, false));
    }

    fn rec(cpu: u32, n: u64) -> SockStats {
        let seq = stage::seq(n, cpu, stage::CLOSES);
        SockStats {
            seq,
            seq_end: seq as u32,
            cookie: n * 100 + cpu as u64,
            ..SockStats::default()
        }
    }

    /// Read from the stage first, then the same records arrive in the ring batch: once each.
    #[test]
    fn test_stage_then_ring_handed_on_once() {
        let mut seen = Seen::new();
        let got = seen.staged(vec![rec(1, 2), rec(1, 1), rec(0, 1)]);
        let order: Vec<u64> = got.iter().map(|r| r.cookie).collect();
        assert_eq!(order, [100, 101, 201]);
        for n in 1..=8 {
            assert_eq!(seen.ring(&rec(1, n)), n > 2, "record {n}");
        }
        assert_eq!(seen.duplicates, 2);
    }

    /// Boundary: the stage already holds the next batch's first records while the previous
    /// batch (overwritten in the stage) is still in the ring buffer: nothing is taken past the
    /// gap, and the ring then delivers everything in order.
    #[test]
    fn test_gap_waits_for_the_ring() {
        let mut seen = Seen::new();
        // Stage after a flush nobody has read yet: slots hold 9, 10 and stale 3..=8.
        let stage: Vec<SockStats> = [9, 10, 3, 4, 5, 6, 7, 8]
            .iter()
            .map(|&n| rec(0, n))
            .collect();
        assert!(seen.staged(stage).is_empty(), "1 and 2 are missing");
        for n in 1..=8 {
            assert!(seen.ring(&rec(0, n)));
        }
        let got = seen.staged(vec![rec(0, 9), rec(0, 10)]);
        assert_eq!(got.len(), 2);
        assert!(!seen.ring(&rec(0, 9)));
    }

    /// Torn records and records never staged are not taken from a stage; whole records from
    /// the ring always are.
    #[test]
    fn test_torn_and_empty_slots_skipped() {
        let mut seen = Seen::new();
        let mut torn = rec(0, 1);
        torn.seq_end ^= 1;
        assert!(seen.staged(vec![torn, SockStats::default()]).is_empty());
        assert_eq!(seen.staged(vec![rec(0, 1)]).len(), 1);
        assert!(seen.ring(&SockStats::default()));
        assert!(seen.ring(&SockStats::default()));
    }

    /// A CPU's opens and closes are numbered apart: open 1 does not hide close 1.
    #[test]
    fn test_opens_and_closes_are_separate_lanes() {
        let mut seen = Seen::new();
        let close = rec(2, 1);
        let mut open = close;
        open.seq = stage::seq(1, 2, stage::OPENS);
        open.seq_end = open.seq as u32;
        assert!(seen.ring(&open));
        assert!(seen.ring(&close));
        assert!(!seen.ring(&open));
    }
}
