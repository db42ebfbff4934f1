//! The interval grid: where a FlowBatch's interval lands. Agents end intervals on wall-clock
//! multiples of their interval, but their clocks disagree by up to a second and their ticks
//! jitter by a few ms, and an agent may run a shorter interval than the collector: this moves
//! each batch onto the collector's grid (or, with no collector interval, its own), so that a
//! fleet's hosts share one interval, and says what it did so that ingest can count it per
//! agent. Ingest and WAL replay use this one rule, so a batch lands in the same interval live
//! and after a restart.

use super::stamp::StampError;

/// How far an agent's clock may be off before its interval bounds stop being moved onto the
/// interval grid: agents end intervals on wall-clock multiples of their interval, so hosts
/// whose clocks differ by up to this much still report the same interval (a quarter of the
/// interval for intervals under 4 s).
pub const SKEW_TOLERANCE_MS: u64 = 1_000;

/// Where a FlowBatch's interval goes (see [`align_interval`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// On the grid already.
    OnGrid,
    /// Moved by at most the tolerance onto the grid.
    Aligned,
    /// Too far off the grid to say which interval it is: kept as sent, counted.
    Misaligned,
    /// Shorter than the collector's interval: moved into the one that holds its midpoint,
    /// counted.
    Rebucketed,
}

/// Moves a batch's interval `[start, end)` onto the grid of its nominal length (the agent's
/// interval: agents end intervals on wall-clock multiples of it; a stamped length within
/// [`LENGTH_JITTER_MS`] of whole seconds is taken as those seconds) when its start is within the
/// skew tolerance of a multiple; the moved interval has the nominal length.
pub fn align_interval(start: u64, end: u64) -> (u64, u64, Alignment) {
    let len = end.saturating_sub(start);
    if len == 0 {
        return (start, end, Alignment::OnGrid);
    }
    let nominal = nominal_len(len);
    let off = start % nominal;
    if off == 0 && len == nominal {
        return (start, end, Alignment::OnGrid);
    }
    let tol = SKEW_TOLERANCE_MS.min(nominal / 4);
    if off <= tol {
        (start - off, start - off + nominal, Alignment::Aligned)
    } else if nominal - off <= tol {
        let s = start + (nominal - off);
        (s, s + nominal, Alignment::Aligned)
    } else {
        (start, end, Alignment::Misaligned)
    }
}

/// How far an interval's length may be off a whole number of seconds and still be that many
/// seconds: an agent's tick is late or early by a few ms, so its stamped lengths jitter.
pub const LENGTH_JITTER_MS: u64 = 100;

/// The agent's nominal interval behind a stamped length `len`: the nearest whole second when
/// within [`LENGTH_JITTER_MS`] of it, else the length itself.
fn nominal_len(len: u64) -> u64 {
    if len >= 1_000 {
        let whole = (len + 500) / 1_000 * 1_000;
        if whole.abs_diff(len) <= LENGTH_JITTER_MS {
            return whole;
        }
    }
    len
}

/// Places a batch's interval on the collector's grid of `grid_ms` (`None`: the batch's own
/// nominal length, see [`align_interval`]). The batch's own grid first (skew and jitter); then:
/// - the same length as the collector's: as is;
/// - shorter (a 1 s agent under a 5 s collector, or the partial last interval of an agent that
///   is stopping): moved into the collector interval that holds its midpoint
///   ([`Alignment::Rebucketed`]; the records add up there);
/// - longer: refused as `interval_mismatch` — its records cannot be split across the
///   collector's intervals without inventing numbers.
pub fn place(
    start: u64,
    end: u64,
    grid_ms: Option<u64>,
) -> Result<(u64, u64, Alignment), StampError> {
    let (s, e, how) = align_interval(start, end);
    let Some(grid) = grid_ms.filter(|&g| g > 0) else {
        return Ok((s, e, how));
    };
    let len = e.saturating_sub(s);
    if len == grid {
        return Ok((s, e, how));
    }
    if len < grid {
        let mid = s + len / 2;
        let at = mid - mid % grid;
        return Ok((at, at + grid, Alignment::Rebucketed));
    }
    Err((
        "interval_mismatch",
        format!(
            "the agent's interval of {len} ms is longer than the collector's interval of {grid} ms: set the agent's --interval to {grid} ms or less"
        ),
    ))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_align_interval() {
        let t = 1_764_000_000_000u64;
        assert_eq!(
            align_interval(t, t + 5_000),
            (t, t + 5_000, Alignment::OnGrid)
        );
        // Clock 700 ms behind or ahead: the same interval.
        assert_eq!(
            align_interval(t - 700, t + 4_300),
            (t, t + 5_000, Alignment::Aligned)
        );
        assert_eq!(
            align_interval(t + 700, t + 5_700),
            (t, t + 5_000, Alignment::Aligned)
        );
        // Exactly at the tolerance, and past it.
        assert_eq!(align_interval(t + 1_000, t + 6_000).2, Alignment::Aligned);
        assert_eq!(
            align_interval(t + 2_400, t + 7_400),
            (t + 2_400, t + 7_400, Alignment::Misaligned)
        );
        // A 1 s interval tolerates a quarter of it.
        assert_eq!(align_interval(t + 200, t + 1_200).2, Alignment::Aligned);
        assert_eq!(align_interval(t + 400, t + 1_400).2, Alignment::Misaligned);
        // A tick a few ms late or early: the length is the agent's nominal 5 s, on its grid.
        assert_eq!(
            align_interval(t - 600 + 4, t + 4_400 - 3),
            (t, t + 5_000, Alignment::Aligned)
        );
        assert_eq!(
            align_interval(t + 2, t + 60_000 - 5),
            (t, t + 60_000, Alignment::Aligned)
        );
        // Empty or reversed bounds are left alone.
        assert_eq!(align_interval(t + 3, t + 3).2, Alignment::OnGrid);
        assert_eq!(align_interval(t + 9, t + 3).2, Alignment::OnGrid);
    }

    /// Agents whose clocks differ by up to the tolerance report into one interval; one too far
    /// off is counted per agent and kept as sent (issue 12 item 1).
    #[test]
    fn test_place_on_the_collector_grid() {
        let t = 1_764_000_000_000u64;
        // Same length: as is (skew and jitter handled as without a grid).
        assert_eq!(
            place(t + 300, t + 5_300, Some(5_000)).unwrap(),
            (t, t + 5_000, Alignment::Aligned)
        );
        // A 1 s agent, and a 500 ms one: into the 5 s interval that holds them.
        assert_eq!(
            place(t + 3_000, t + 4_000, Some(5_000)).unwrap(),
            (t, t + 5_000, Alignment::Rebucketed)
        );
        assert_eq!(
            place(t + 4_500, t + 5_000, Some(5_000)).unwrap(),
            (t, t + 5_000, Alignment::Rebucketed)
        );
        // A stopping agent's partial last interval (17 ms), and a 3 s agent's interval: into
        // the 5 s interval holding their midpoint.
        assert_eq!(
            place(t + 6_483, t + 6_500, Some(5_000)).unwrap(),
            (t + 5_000, t + 10_000, Alignment::Rebucketed)
        );
        assert_eq!(
            place(t + 3_000, t + 6_000, Some(5_000)).unwrap(),
            (t, t + 5_000, Alignment::Rebucketed)
        );
        assert_eq!(
            place(t + 6_000, t + 9_000, Some(5_000)).unwrap(),
            (t + 5_000, t + 10_000, Alignment::Rebucketed)
        );
        // Longer: refused with the reason.
        for (s, e) in [(t, t + 60_000), (t, t + 10_000)] {
            let err = place(s, e, Some(5_000)).unwrap_err();
            assert_eq!(err.0, "interval_mismatch");
            assert!(err.1.contains("5000 ms"), "{}", err.1);
        }
        // No collector interval: the batch's own grid.
        assert_eq!(
            place(t, t + 60_000, None).unwrap(),
            (t, t + 60_000, Alignment::OnGrid)
        );
    }
}
