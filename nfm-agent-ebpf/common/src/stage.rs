//! Per-CPU staging of open and close events: each CPU fills a stage of [`RECORDS`] events
//! and writes them to the ring buffer in one go; user space reads every stage at interval end
//! and dedupes by per-CPU sequence numbers.

use super::{CloseEvent, OpenEvent, OpenEvent4, SockStats};
use core::sync::atomic::{compiler_fence, Ordering};

/// Records per stage (one ring-buffer write per this many events of a kind on a CPU).
pub const RECORDS: usize = 8;
/// `seq` = `(n << LANE_BITS) | lane`, lane = `4 × cpu + kind`: each CPU's IPv6 opens,
/// closes and IPv4 opens are numbered separately.
pub const LANE_BITS: u32 = 18;
pub const LANE_MASK: u64 = (1 << LANE_BITS) - 1;
pub const OPENS: u32 = 0;
pub const CLOSES: u32 = 1;
pub const OPENS4: u32 = 2;

/// A record that can be staged: `seq` first, `seq_end` last.
pub trait Staged: Copy {
    fn seq_mut(&mut self) -> &mut u64;
    fn seq_end_mut(&mut self) -> &mut u32;
}

/// Every staged record names its two sequence fields `seq` and `seq_end`.
macro_rules! staged {
    ($($t:ty),*) => {$(
        impl Staged for $t {
            #[inline(always)]
            fn seq_mut(&mut self) -> &mut u64 {
                &mut self.seq
            }
            #[inline(always)]
            fn seq_end_mut(&mut self) -> &mut u32 {
                &mut self.seq_end
            }
        }
    )*};
}

staged!(OpenEvent, OpenEvent4, CloseEvent);

/// One CPU's staged events of one kind (the value of a per-CPU map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stage<T> {
    /// Records staged on this CPU so far.
    pub next: u64,
    /// Records sent through the ring buffer (a multiple of [`RECORDS`]).
    pub flushed: u64,
    /// Record n (1-based) is in slot (n - 1) % RECORDS.
    pub recs: [T; RECORDS],
}

/// Bytes of one flushed stage in the ring buffer.
pub const OPEN_BATCH_LEN: usize = RECORDS * super::OPEN_EVENT_LEN;
pub const OPEN4_BATCH_LEN: usize = RECORDS * super::OPEN_EVENT4_LEN;
pub const CLOSE_BATCH_LEN: usize = RECORDS * super::CLOSE_EVENT_LEN;

#[inline(always)]
pub fn seq(n: u64, cpu: u32, kind: u32) -> u64 {
    (n << LANE_BITS) | (((cpu as u64) << 2 | kind as u64) & LANE_MASK)
}

/// The lane (CPU and kind) a sequence number belongs to.
pub fn lane_of(seq: u64) -> usize {
    (seq & LANE_MASK) as usize
}

pub fn n_of(seq: u64) -> u64 {
    seq >> LANE_BITS
}

/// A staged record read whole (see the module docs), after `to_stats`.
pub fn complete(r: &SockStats) -> bool {
    r.seq != 0 && r.seq_end == r.seq as u32
}

/// Appends `rec` to this CPU's stage and hands the whole stage to `flush` (a ring-buffer
/// write; true when it fit) once it holds [`RECORDS`] unsent records. Returns false when
/// `rec` could not be staged: the stage is full of records the ring buffer did not take.
#[inline(always)]
pub fn push<T: Staged, F: FnMut(&[T; RECORDS]) -> bool>(
    st: &mut Stage<T>,
    cpu: u32,
    kind: u32,
    rec: &T,
    mut flush: F,
) -> bool {
    if st.next.wrapping_sub(st.flushed) >= RECORDS as u64 {
        // An earlier flush failed (ring buffer full): retry before overwriting.
        if !flush(&st.recs) {
            return false;
        }
        st.flushed = st.next;
    }
    let n = st.next.wrapping_add(1);
    let seq = seq(n, cpu, kind);
    let i = (st.next % RECORDS as u64) as usize;
    if let Some(slot) = st.recs.get_mut(i) {
        // seq_end first, the record, seq last; the fences keep the compiler from moving the
        // record's stores across the markers (they emit no instruction).
        // SAFETY: a valid, exclusive reference.
        unsafe { core::ptr::write_volatile(slot.seq_end_mut(), seq as u32) };
        compiler_fence(Ordering::SeqCst);
        *slot = *rec;
        *slot.seq_end_mut() = seq as u32;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(slot.seq_mut(), seq) };
    }
    st.next = n;
    if n.wrapping_sub(st.flushed) >= RECORDS as u64 && flush(&st.recs) {
        st.flushed = n;
    }
    true
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for Stage<OpenEvent> {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Stage<CloseEvent> {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for Stage<OpenEvent4> {}
