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

use nfm_agent_common::{stage, SockStats};

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

#[cfg(test)]
mod test {
    use super::*;

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
