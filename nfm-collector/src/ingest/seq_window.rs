//! The per-session sliding-window dedupe of batch sequence numbers ([`SeqWindow`]), kept small:
//! every agent session holds one, and in the steady state (numbers in order, none missing) a
//! bitmap of the whole window is 1 KiB of ones per agent session, ~10 MB of ingest's memory at
//! 10k agents (issue 16 item 4). This keeps the numbers of the window that were *not* seen, as a
//! few inline runs, and falls back to the bitmap only with more than 7 holes open in the window (a
//! hostile agent, or one whose lost frames are never resent).

use super::core::DEDUPE_WINDOW;

const W: u64 = DEDUPE_WINDOW;
const WORDS: usize = (W / 64) as usize;
/// Runs of unseen numbers kept inline: 28 bytes, so the window stays 40 bytes, as it was with
/// the bitmap's `Vec` (issue 16 item 4). One more and the window is a bitmap again.
const MAX_RUNS: usize = 7;
/// How far the window slides between attempts to leave the bitmap for runs again: a scan of
/// the bitmap at most every quarter window.
const RECHECK: u64 = W / 4;

// Offsets back from the window's highest number (0 ..= W - 1) fit in a u16, and the bitmap's
// index wraps at a word boundary.
const _: () = assert!(W >= 64 && W.is_multiple_of(64) && W <= 1 << 16);

/// Sliding-window dedupe of one session's sequence numbers: which of the [`DEDUPE_WINDOW`]
/// numbers up to the highest one marked were marked (received and not refused as a duplicate).
///
/// The window slides forward with the highest number marked; numbers it slides over start
/// unmarked, as do the window's numbers below a session's first. Kept as the *unmarked* numbers
/// of the window, up to [`MAX_RUNS`] runs of them inline: in order and without loss there are
/// none (or one: the numbers below the session's first, until the window has slid past them),
/// so a session's window is 40 bytes with no heap, where the bitmap it replaces was 40 bytes
/// and 1 KiB of heap per agent session (issue 16 item 4). With more runs (a hostile agent, or
/// more than 7 lost frames never resent within the window) the window is that bitmap (boxed)
/// until the runs fit again: never more than 40 + 1,024 bytes.
#[derive(Debug, Clone)]
pub(super) struct SeqWindow {
    /// The window's newest number (meaningless while `unmarked` is [`Unmarked::Fresh`]).
    highest: u64,
    unmarked: Unmarked,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum SeqCheck {
    /// New; `gap` sequence numbers were skipped (lost so far), `filled` a gap was filled.
    New {
        gap: u64,
        filled: bool,
    },
    Duplicate,
    TooOld,
}

/// The window's unmarked numbers.
#[derive(Debug, Clone)]
enum Unmarked {
    /// Nothing marked yet: every number is new.
    Fresh,
    Runs(Runs),
    /// Bit `seq % DEDUPE_WINDOW` set: `seq` is marked. Back to runs when they fit, tried when
    /// the highest number reaches `recheck_at`.
    Bitmap {
        bits: Box<[u64; WORDS]>,
        recheck_at: u64,
    },
}

/// Unmarked numbers `highest - far ..= highest - near`, as offsets back from the window's
/// highest number (each below [`DEDUPE_WINDOW`], so 2 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    near: u16,
    far: u16,
}

impl Run {
    fn new(near: u64, far: u64) -> Run {
        debug_assert!(near <= far && far < W, "{near}..={far}");
        // In range: offsets are below W, at most 2^16 (asserted above).
        Run {
            near: near as u16,
            far: far as u16,
        }
    }
    fn holds(self, offset: u64) -> bool {
        u64::from(self.near) <= offset && offset <= u64::from(self.far)
    }
}

/// Up to [`MAX_RUNS`] disjoint runs, oldest numbers first.
#[derive(Debug, Clone, Copy)]
struct Runs {
    len: u8,
    runs: [Run; MAX_RUNS],
}

impl Runs {
    const EMPTY: Runs = Runs {
        len: 0,
        runs: [Run { near: 0, far: 0 }; MAX_RUNS],
    };
    fn as_slice(&self) -> &[Run] {
        &self.runs[..usize::from(self.len)]
    }
    /// Inserts `run` at `i`; false (unchanged) when full.
    fn insert(&mut self, i: usize, run: Run) -> bool {
        let n = usize::from(self.len);
        if n == MAX_RUNS {
            return false;
        }
        self.runs.copy_within(i..n, i + 1);
        self.runs[i] = run;
        self.len += 1;
        true
    }
    fn push(&mut self, run: Run) -> bool {
        self.insert(usize::from(self.len), run)
    }
    fn remove(&mut self, i: usize) {
        let n = usize::from(self.len);
        self.runs.copy_within(i + 1..n, i);
        self.len -= 1;
    }
    /// Marks the number `offset` back from the highest; false (unchanged) when that splits a
    /// run and there is no room for one more.
    fn fill(&mut self, offset: u64) -> bool {
        let Some(i) = self.as_slice().iter().position(|r| r.holds(offset)) else {
            return true;
        };
        let (near, far) = (u64::from(self.runs[i].near), u64::from(self.runs[i].far));
        match (offset == near, offset == far) {
            (true, true) => self.remove(i),
            (true, false) => self.runs[i] = Run::new(near + 1, far),
            (false, true) => self.runs[i] = Run::new(near, far - 1),
            (false, false) => {
                // Oldest first: the older part stays at `i`, the newer one follows it.
                if !self.insert(i + 1, Run::new(near, offset - 1)) {
                    return false;
                }
                self.runs[i] = Run::new(offset + 1, far);
            }
        }
        true
    }
    /// The runs once the highest number moved `delta` ahead and was marked: runs age by
    /// `delta` (those past the window go), the numbers skipped are a new run. None when that
    /// is one run too many.
    fn slid(&self, delta: u64) -> Option<Runs> {
        let mut out = Runs::EMPTY;
        if delta < W {
            for r in self.as_slice() {
                let near = u64::from(r.near) + delta;
                if near < W {
                    out.push(Run::new(near, (u64::from(r.far) + delta).min(W - 1)));
                }
            }
        }
        if delta >= 2 {
            match out.runs[..usize::from(out.len)].last_mut() {
                // The previous highest was unmarked (a window restored without its numbers):
                // the skipped numbers extend its run.
                Some(last) if u64::from(last.near) == delta => last.near = 1,
                _ => {
                    if !out.push(Run::new(1, (delta - 1).min(W - 1))) {
                        return None;
                    }
                }
            }
        }
        Some(out)
    }
}

impl SeqWindow {
    pub(super) fn new() -> SeqWindow {
        SeqWindow {
            highest: 0,
            unmarked: Unmarked::Fresh,
        }
    }

    /// A window that has seen every sequence number from `low` to `high` (a restored mark:
    /// the exact gaps are not kept, so a frame filling one after a restart counts as a
    /// duplicate; numbers below `low`, such as the session's Hello, are not marked).
    pub(super) fn seen_range(low: u64, high: u64) -> SeqWindow {
        let oldest = high.saturating_sub(W - 1);
        let from = low.max(oldest);
        let mut runs = Runs::EMPTY;
        if from > oldest {
            // The window's numbers below `from` (all of them when `low` is above `high`).
            let newest = (from - 1).min(high);
            runs.push(Run::new(high - newest, high - oldest));
        }
        SeqWindow {
            highest: high,
            unmarked: Unmarked::Runs(runs),
        }
    }

    pub(super) fn check(&self, seq: u64) -> SeqCheck {
        let h = self.highest;
        let unmarked = match &self.unmarked {
            Unmarked::Fresh => {
                return SeqCheck::New {
                    gap: 0,
                    filled: false,
                }
            }
            _ if seq > h => {
                return SeqCheck::New {
                    gap: seq - h - 1,
                    filled: false,
                }
            }
            _ if h - seq >= W => return SeqCheck::TooOld,
            Unmarked::Runs(runs) => runs.as_slice().iter().any(|r| r.holds(h - seq)),
            Unmarked::Bitmap { bits, .. } => !bit(bits, seq),
        };
        if unmarked {
            SeqCheck::New {
                gap: 0,
                filled: true,
            }
        } else {
            SeqCheck::Duplicate
        }
    }

    /// Marks `seq`, which [`SeqWindow::check`] found new (one older than the window is not
    /// remembered).
    pub(super) fn mark(&mut self, seq: u64) {
        let h = self.highest;
        if matches!(self.unmarked, Unmarked::Fresh) {
            // The window's numbers below the first are unmarked.
            let mut runs = Runs::EMPTY;
            if seq > 0 {
                runs.push(Run::new(1, seq.min(W - 1)));
            }
            *self = SeqWindow {
                highest: seq,
                unmarked: Unmarked::Runs(runs),
            };
        } else if seq > h {
            self.slide(seq);
        } else if h - seq < W {
            if let Unmarked::Runs(runs) = &mut self.unmarked {
                if runs.fill(h - seq) {
                    return;
                }
                self.spill_to_bitmap();
            }
            if let Unmarked::Bitmap { bits, .. } = &mut self.unmarked {
                set_bit(bits, seq);
            }
        }
    }

    /// Moves the window's highest number up to `seq`, marked.
    fn slide(&mut self, seq: u64) {
        let delta = seq - self.highest;
        if let Unmarked::Runs(runs) = &mut self.unmarked {
            if let Some(slid) = runs.slid(delta) {
                *runs = slid;
                self.highest = seq;
                return;
            }
            self.spill_to_bitmap();
        }
        if let Unmarked::Bitmap { bits, recheck_at } = &mut self.unmarked {
            // The numbers the window slides over start unmarked.
            let clear = delta.min(W);
            clear_bits(bits, seq - clear + 1, clear);
            set_bit(bits, seq);
            self.highest = seq;
            if seq >= *recheck_at {
                match runs_of(bits, seq) {
                    Some(runs) => self.unmarked = Unmarked::Runs(runs),
                    None => *recheck_at = seq.saturating_add(RECHECK),
                }
            }
        }
    }

    /// From runs to the bitmap, the same numbers marked.
    fn spill_to_bitmap(&mut self) {
        let h = self.highest;
        if let Unmarked::Runs(runs) = &self.unmarked {
            // Bits of numbers not in the window yet (below 0) are cleared as it slides to them.
            let mut bits = Box::new([!0u64; WORDS]);
            for r in runs.as_slice() {
                let (near, far) = (u64::from(r.near), u64::from(r.far));
                clear_bits(&mut bits, h - far, far - near + 1);
            }
            self.unmarked = Unmarked::Bitmap {
                bits,
                recheck_at: h.saturating_add(RECHECK),
            };
        }
    }

    /// Heap bytes the window holds: none but in the bitmap fallback.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        match self.unmarked {
            Unmarked::Bitmap { .. } => std::mem::size_of::<[u64; WORDS]>(),
            _ => 0,
        }
    }
}

fn bit(bits: &[u64; WORDS], seq: u64) -> bool {
    let i = (seq % W) as usize;
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64; WORDS], seq: u64) {
    let i = (seq % W) as usize;
    bits[i / 64] |= 1 << (i % 64);
}

/// Clears the bits of `count` (at most [`DEDUPE_WINDOW`]) numbers from `from` on, a word at a
/// time.
fn clear_bits(bits: &mut [u64; WORDS], from: u64, count: u64) {
    let mut i = (from % W) as usize;
    let mut left = count;
    while left > 0 {
        let shift = i % 64;
        let n = (64 - shift).min(left as usize);
        let mask = if n == 64 {
            !0
        } else {
            ((1u64 << n) - 1) << shift
        };
        bits[i / 64] &= !mask;
        i = (i + n) % W as usize;
        left -= n as u64;
    }
}

/// The unmarked numbers of a bitmap window whose highest number is `h`, as runs; none when
/// there are more than [`MAX_RUNS`].
fn runs_of(bits: &[u64; WORDS], h: u64) -> Option<Runs> {
    let oldest = h.saturating_sub(W - 1);
    let mut runs = Runs::EMPTY;
    // The oldest number of the run being read.
    let mut start = None;
    let mut seq = oldest;
    let mut left = h - oldest + 1;
    while left > 0 {
        let i = (seq % W) as usize;
        let word = bits[i / 64];
        let (n, unmarked) = if i.is_multiple_of(64) && left >= 64 && (word == 0 || word == !0) {
            (64, word == 0)
        } else {
            (1, word & (1 << (i % 64)) == 0)
        };
        match (unmarked, start) {
            (true, None) => start = Some(seq),
            (false, Some(a)) => {
                if !runs.push(Run::new(h - (seq - 1), h - a)) {
                    return None;
                }
                start = None;
            }
            _ => {}
        }
        seq = seq.wrapping_add(n);
        left -= n;
    }
    if let Some(a) = start {
        if !runs.push(Run::new(0, h - a)) {
            return None;
        }
    }
    Some(runs)
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    /// The bitmap window this replaces (issue 16 item 4), kept as the model the compact one
    /// must match call for call.
    #[derive(Debug, Clone)]
    struct Reference {
        highest: Option<u64>,
        bits: Vec<u64>,
    }

    impl Reference {
        fn new() -> Reference {
            Reference {
                highest: None,
                bits: vec![0; (DEDUPE_WINDOW / 64) as usize],
            }
        }
        fn bit(&self, seq: u64) -> bool {
            let i = seq % DEDUPE_WINDOW;
            self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
        }
        fn set(&mut self, seq: u64, on: bool) {
            let i = seq % DEDUPE_WINDOW;
            let w = &mut self.bits[(i / 64) as usize];
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
        fn check(&self, seq: u64) -> SeqCheck {
            match self.highest {
                None => SeqCheck::New {
                    gap: 0,
                    filled: false,
                },
                Some(h) if seq > h => SeqCheck::New {
                    gap: seq - h - 1,
                    filled: false,
                },
                Some(h) if h - seq >= DEDUPE_WINDOW => SeqCheck::TooOld,
                Some(_) if self.bit(seq) => SeqCheck::Duplicate,
                Some(_) => SeqCheck::New {
                    gap: 0,
                    filled: true,
                },
            }
        }
        fn mark(&mut self, seq: u64) {
            match self.highest {
                Some(h) if seq <= h => self.set(seq, true),
                Some(h) => {
                    let clear = (seq - h).min(DEDUPE_WINDOW);
                    for s in (seq - clear + 1)..=seq {
                        self.set(s, false);
                    }
                    self.set(seq, true);
                    self.highest = Some(seq);
                }
                None => {
                    self.set(seq, true);
                    self.highest = Some(seq);
                }
            }
        }
        fn seen_range(low: u64, high: u64) -> Reference {
            let mut w = Reference::new();
            w.highest = Some(high);
            let from = low.max(high.saturating_sub(DEDUPE_WINDOW - 1));
            for seq in from..=high {
                w.set(seq, true);
            }
            w
        }
    }

    /// Both windows, driven as `note_seq` drives a session's: `check`, then `mark` when new.
    struct Pair {
        model: Reference,
        window: SeqWindow,
        /// Where sequence numbers start from before anything is marked.
        base: u64,
    }

    impl Pair {
        fn highest(&self) -> u64 {
            self.model.highest.unwrap_or(self.base)
        }
        fn same(&self, seq: u64) -> Result<SeqCheck, TestCaseError> {
            let want = self.model.check(seq);
            prop_assert_eq!(
                &self.window.check(seq),
                &want,
                "seq {} window {:?}",
                seq,
                self.window
            );
            Ok(want)
        }
        fn frame(&mut self, seq: u64) -> Result<(), TestCaseError> {
            if let SeqCheck::New { .. } = self.same(seq)? {
                self.model.mark(seq);
                self.window.mark(seq);
            }
            prop_assert!(self.window.heap_bytes() <= 1024);
            Ok(())
        }
        /// Every number of the window and a few on either side.
        fn same_everywhere(&self) -> Result<(), TestCaseError> {
            let h = self.highest();
            let from = h.saturating_sub(W + 2);
            for seq in from..=h.saturating_add(2) {
                self.same(seq)?;
            }
            Ok(())
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A frame `k` ahead of the highest (1: in order; a few: a gap; about a window; far).
        Ahead(u64),
        /// A frame `k` behind the highest (a reorder, a resend, one older than the window).
        Behind(u64),
        /// `check` only, `k` ahead (positive) or behind the highest.
        Probe(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            30 => Just(Op::Ahead(1)),
            15 => (2..6u64).prop_map(Op::Ahead),
            3 => (W - 4..=W + 4).prop_map(Op::Ahead),
            2 => (W + 5..4 * W).prop_map(Op::Ahead),
            1 => (0..u64::MAX / 4).prop_map(Op::Ahead),
            10 => (0..8u64).prop_map(Op::Behind),
            6 => (8..W).prop_map(Op::Behind),
            3 => (W - 4..=W + 4).prop_map(Op::Behind),
            1 => (W + 5..10 * W).prop_map(Op::Behind),
            10 => (-(W as i64) - 8..=8i64).prop_map(Op::Probe),
        ]
    }

    fn value() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..20u64,
            0..3 * W,
            u64::MAX / 2 - 2 * W..u64::MAX / 2 + 2 * W,
            u64::MAX - 3 * W..=u64::MAX,
        ]
    }

    /// A fresh session at `base`, or a restored one (`seen_range(low, high)`), `low` near
    /// `high` (below or above it) or anywhere.
    fn start() -> impl Strategy<Value = (u64, Option<u64>)> {
        let low = prop_oneof![
            (0..2 * W).prop_map(|d| (d, true)),
            (0..4u64).prop_map(|d| (d, false)),
            any::<u64>().prop_map(|l| (l, false)),
        ];
        (value(), any::<bool>(), low).prop_map(|(high, fresh, (d, below))| {
            let low = match (fresh, below) {
                (true, _) => None,
                (false, true) => Some(high.saturating_sub(d)),
                (false, false) if d < 4 => Some(high.saturating_add(d)),
                (false, false) => Some(d),
            };
            (high, low)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The compact window answers every `check` as the bitmap did, for any sequence of
        /// frames (issue 16 item 4).
        #[test]
        fn prop_same_as_the_bitmap(
            (base, low) in start(),
            ops in prop::collection::vec(op(), 1..300),
        ) {
            let mut p = match low {
                None => Pair { model: Reference::new(), window: SeqWindow::new(), base },
                Some(low) => Pair {
                    model: Reference::seen_range(low, base),
                    window: SeqWindow::seen_range(low, base),
                    base,
                },
            };
            for (i, op) in ops.iter().enumerate() {
                let h = p.highest();
                match *op {
                    Op::Ahead(k) => p.frame(h.saturating_add(k))?,
                    Op::Behind(k) => p.frame(h.saturating_sub(k))?,
                    Op::Probe(k) => {
                        p.same(h.saturating_add_signed(k))?;
                    }
                }
                if i % 64 == 63 {
                    p.same_everywhere()?;
                }
            }
            p.same_everywhere()?;
        }
    }

    /// Drives a window and the model with `seqs` as `note_seq` would, comparing each check.
    fn drive(p: &mut Pair, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            p.frame(seq).unwrap();
        }
    }

    /// In order, with the odd loss or resend, and after a restart, a session's window holds no
    /// heap (the bitmap it replaced was 1 KiB per session; issue 16 item 4).
    #[test]
    fn test_in_order_window_holds_no_heap() {
        assert!(std::mem::size_of::<SeqWindow>() <= 40);
        for start in [0, 5, 3 * W + 7, u64::MAX / 2] {
            for restored in [false, true] {
                let (model, window) = if restored {
                    let low = start.saturating_sub(100);
                    (
                        Reference::seen_range(low, start),
                        SeqWindow::seen_range(low, start),
                    )
                } else {
                    (Reference::new(), SeqWindow::new())
                };
                let mut p = Pair {
                    model,
                    window,
                    base: start,
                };
                for seq in start..start + 3 * W {
                    // One frame in 1,500 lost, and one late resend of the one before.
                    if seq % 1_500 != 7 {
                        p.frame(seq).unwrap();
                    }
                    if seq % 700 == 0 {
                        p.frame(seq.saturating_sub(1)).unwrap();
                    }
                    assert_eq!(p.window.heap_bytes(), 0, "seq {seq}");
                }
                p.same_everywhere().unwrap();
            }
        }
    }

    /// A hostile agent (every other number) gets the bitmap, within the bound, and back to
    /// runs once its frames are in order again.
    #[test]
    fn test_adversarial_window_is_bounded() {
        let mut p = Pair {
            model: Reference::new(),
            window: SeqWindow::new(),
            base: 1_000,
        };
        drive(&mut p, (1_000..1_000 + 2 * W).step_by(2));
        assert_eq!(p.window.heap_bytes(), 1024);
        assert!(std::mem::size_of::<SeqWindow>() + p.window.heap_bytes() <= 1_100);
        p.same_everywhere().unwrap();
        // Gaps filled out of order and resends, in the bitmap.
        drive(&mut p, (1_000 + W..1_000 + 2 * W).rev().step_by(2));
        drive(&mut p, (1_000 + W..1_000 + 2 * W).step_by(7));
        p.same_everywhere().unwrap();
        // In order again: runs once the window has slid past the holes.
        let h = 1_000 + 2 * W - 2;
        drive(&mut p, h + 1..h + W + RECHECK);
        assert_eq!(p.window.heap_bytes(), 0);
        p.same_everywhere().unwrap();
        // Jumps of about a window, with holes behind each: bounded throughout.
        let mut seq = h + W + RECHECK;
        for i in 0..200 {
            seq += W - 3 + i % 7;
            drive(&mut p, [seq, seq - 5, seq + 2, seq + 4, seq + 6, seq + 9]);
            assert!(p.window.heap_bytes() <= 1024);
        }
        p.same_everywhere().unwrap();
    }

    /// Numbers near the top of the range: no overflow, same answers.
    #[test]
    fn test_window_at_the_top_of_the_range() {
        let mut p = Pair {
            model: Reference::seen_range(u64::MAX - 10, u64::MAX - 3),
            window: SeqWindow::seen_range(u64::MAX - 10, u64::MAX - 3),
            base: 0,
        };
        drive(
            &mut p,
            [u64::MAX - 1, u64::MAX, u64::MAX - 20, u64::MAX - 2],
        );
        p.same_everywhere().unwrap();
    }
}
