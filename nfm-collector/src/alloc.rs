//! Allocator tuning for the collector's binaries (which use mimalloc as the global allocator).
//!
//! Why: every closed interval frees its columns (100k flows: tens of MiB) and the next one
//! allocates them again. mimalloc returns idle memory to the kernel after a purge delay
//! (default 1 s), so intervals faulted in, and the kernel zeroed, the same pages afresh. In
//! the collector bench without health (`perf stat -e page-faults`, 8 s runs) a 10 ms delay
//! gave 515k page faults and 1.00 µs CPU per record, 1 s gave 83.5k and 0.69 µs, 10 s gave
//! 492 and 0.69 µs. Keeping idle memory for 10 s (jemalloc's default decay) removes the
//! churn; memory still goes back after a burst, and resident memory stays flat under load.

pub use crate::metrics::Trimmer;

/// mimalloc's `mi_option_purge_delay` (not exported as a constant by `libmimalloc-sys`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Idle memory is returned to the kernel after this long.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// mimalloc's `mi_option_allow_thp` (enum position in mimalloc 3's `mimalloc.h`).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Applies the tuning. Call first thing in `main`, before any thread starts (mimalloc's
/// option setters are not thread safe). Harmless where mimalloc is linked but not the global
/// allocator.
pub fn tune() {
    // An explicit MIMALLOC_PURGE_DELAY in the environment wins (for experiments).
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide option; called before other threads exist.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
    }
    // No transparent huge pages (issue 16 item 4): a huge page partly in use is resident whole,
    // and the arena mimalloc reserved before `main` was already advised for them, so the option
    // alone (read at process start) is not enough: THP goes off for the whole process, as
    // mimalloc itself does when the option is 0 from the start (`MIMALLOC_ALLOW_THP=0`).
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: sets a process-wide option and flag; called before other threads exist.
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

/// Returns the memory mimalloc holds freed but not yet purged to the kernel, now (all arenas,
/// whatever their purge delay; issue 16 item 4). For when the pipeline has gone idle: with a
/// [`PURGE_DELAY_MS`] longer than an interval, what each interval frees is reused by the next and
/// never purged, so without this the resident memory of an idle collector stays at its busiest
/// (~1.2 KB per active flow at 100k flows). Costs a few ms (madvise) and re-faulting those pages
/// at the next interval, so call it only when nothing is waiting, never per batch.
/// Harmless where mimalloc is linked but not the global allocator.
pub fn trim() {
    // SAFETY: mi_collect is thread safe; `force` purges every arena's free memory now.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// No records on their way to the aggregator: the pipeline has caught up.
pub fn pipeline_idle(m: &crate::metrics::Metrics) -> bool {
    m.records_in_flight
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
}

/// An actor's call once it has finished its work: `after_work` (it did work since its last
/// trim and nothing is queued for it now) with the pipeline idle means the collector went idle:
/// [`trim`] (counted in `memory_trims` under `who`), and true. Under a steady flood this never
/// runs. mimalloc purges free memory of every arena but empty pages only of the calling thread,
/// so each actor that frees an interval's or a batch's memory calls this itself.
pub fn trim_when_idle(after_work: bool, who: Trimmer, m: &crate::metrics::Metrics) -> bool {
    let idle = after_work && pipeline_idle(m);
    if idle {
        trim();
        m.memory_trims[who as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    idle
}

/// An actor's idle trims (issue 16 item 4): after an interval summary as soon as nothing is
/// queued; after other work at the next tick that finds nothing queued, at most once a second,
/// so that the memory of a burst whose interval is still open goes back too. Ingest, resolver,
/// aggregator and store each keep one (the health stage trims on its own idle timeout).
#[derive(Debug)]
pub struct IdleTrims {
    who: Trimmer,
    /// A summary arrived since the last trim.
    summary: bool,
    /// Work arrived since the last trim.
    worked: bool,
    last: std::time::Instant,
}

impl IdleTrims {
    pub fn new(who: Trimmer) -> IdleTrims {
        IdleTrims {
            who,
            summary: false,
            worked: false,
            last: std::time::Instant::now(),
        }
    }

    /// One group of messages handled: a summary in it, any work in it, a tick in it, nothing
    /// queued behind it.
    pub fn after_group(
        &mut self,
        summary: bool,
        worked: bool,
        tick: bool,
        drained: bool,
        m: &crate::metrics::Metrics,
    ) {
        self.summary |= summary;
        self.worked |= worked;
        let quiet = tick && !worked && self.worked && self.last.elapsed().as_secs() >= 1;
        if trim_when_idle((self.summary || quiet) && drained, self.who, m) {
            *self = IdleTrims::new(self.who);
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_idle_trims_after_a_summary_at_once_and_after_batches_at_a_quiet_tick() {
        use std::sync::atomic::Ordering::Relaxed;
        let m = crate::metrics::Metrics::default();
        let trims = || m.memory_trims[Trimmer::Store as usize].load(Relaxed);
        let mut t = IdleTrims::new(Trimmer::Store);
        // Batches with nothing queued behind them: not yet (no summary, no tick).
        t.after_group(false, true, false, true, &m);
        assert_eq!(trims(), 0);
        // A quiet tick within a second of the last trim: not yet.
        t.after_group(false, false, true, true, &m);
        assert_eq!(trims(), 0);
        // A quiet tick a second later: trimmed.
        t.last = std::time::Instant::now() - std::time::Duration::from_secs(2);
        t.after_group(false, false, true, true, &m);
        assert_eq!(trims(), 1);
        // Nothing came since: a quiet tick trims nothing.
        t.last = std::time::Instant::now() - std::time::Duration::from_secs(2);
        t.after_group(false, false, true, true, &m);
        assert_eq!(trims(), 1);
        // A summary with more queued behind it: not yet; once drained, at once.
        t.after_group(true, true, false, false, &m);
        assert_eq!(trims(), 1);
        t.after_group(false, true, false, true, &m);
        assert_eq!(trims(), 2);
        // Records on their way to the aggregator: the pipeline is not idle.
        m.records_in_flight.store(5, Relaxed);
        t.after_group(true, true, false, true, &m);
        assert_eq!(trims(), 2);
    }

    #[test]
    fn test_purge_delay_is_the_option_we_set() {
        // The option number is mimalloc's enum position: option 15 must hold purge_delay's
        // default (1000 ms in mimalloc 3's options.c) before we set it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(
                before, 1000,
                "option 15 is not purge_delay in this mimalloc"
            );
            tune();
            let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(v as i64, PURGE_DELAY_MS);
        }
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // allow_thp's default is 1 (options.c); `tune` turned it off.
            let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP) };
            assert_eq!(v, 0, "option 43 is not allow_thp in this mimalloc");
        }
    }
}
