//! Interval timestamps checked against the collector's own clock before a FlowBatch can touch
//! anything: one batch stamped hours or years ahead would otherwise move the aggregator's
//! watermark past every open interval (closing them all, and making every good agent's records
//! late), and stay in the WAL to do it again after a restart.

use super::grid::SKEW_TOLERANCE_MS;

/// The longest interval a batch may claim (agents report every 500 ms to a few minutes).
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Interval length counted at most this much when allowing for intervals ahead of the clock.
const MAX_AHEAD_INTERVAL_MS: u64 = 60_000;

/// How far ahead of the collector's clock a batch of this interval length may end: the clock
/// skew tolerance plus two intervals (an agent reports an interval when it ends, by its own
/// clock; a shutting-down agent may end its last one early), the length counted at most 60 s.
/// So at most 121 s: a 5 s interval may end up to 11 s ahead.
pub fn future_allowance_ms(len_ms: u64) -> u64 {
    SKEW_TOLERANCE_MS + 2 * len_ms.min(MAX_AHEAD_INTERVAL_MS)
}

/// Why a batch's interval is refused: `(reason, message)`.
pub type StampError = (&'static str, String);

/// Checks a batch's interval `[start, end)` against the collector's clock `now_ms`.
/// Refused: bounds reversed or longer than [`MAX_INTERVAL_MS`] (`bad_interval`), and an end
/// more than [`future_allowance_ms`] ahead of `now_ms` (`future_interval`). There is no past
/// bound here: old intervals cannot move the watermark (it only grows), they are placed as
/// late amendments or dropped as too late by the aggregator, which counts them.
pub fn check_interval(start_ms: u64, end_ms: u64, now_ms: u64) -> Result<(), StampError> {
    if end_ms < start_ms {
        return Err((
            "bad_interval",
            format!("interval ends ({end_ms}) before it starts ({start_ms})"),
        ));
    }
    let len = end_ms - start_ms;
    if len > MAX_INTERVAL_MS {
        return Err((
            "bad_interval",
            format!("interval of {len} ms is longer than {MAX_INTERVAL_MS} ms"),
        ));
    }
    let allowed = future_allowance_ms(len);
    if end_ms > now_ms.saturating_add(allowed) {
        return Err((
            "future_interval",
            format!(
                "interval ends at {end_ms}, {} ms ahead of the collector's clock ({now_ms}); at most {allowed} ms allowed",
                end_ms - now_ms
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_check_interval_bounds() {
        let now = 1_764_000_000_000u64;
        // On time, slightly ahead, far in the past: accepted.
        assert!(check_interval(now - 5_000, now, now).is_ok());
        assert!(check_interval(now, now + 5_000, now).is_ok());
        assert!(check_interval(now + 5_000, now + 11_000, now).is_ok());
        assert!(check_interval(1_700_000_000_000, 1_700_000_010_000, now).is_ok());
        // The allowance: 1 s + two 5 s intervals; one ms more is refused.
        assert!(check_interval(now + 6_000, now + 11_000, now).is_ok());
        assert_eq!(
            check_interval(now + 6_001, now + 11_001, now)
                .unwrap_err()
                .0,
            "future_interval"
        );
        // An hour and ten years ahead.
        assert_eq!(
            check_interval(now + 3_600_000, now + 3_605_000, now)
                .unwrap_err()
                .0,
            "future_interval"
        );
        let ten_years = 10 * 365 * 86_400_000;
        assert_eq!(
            check_interval(now + ten_years, now + ten_years + 5_000, now)
                .unwrap_err()
                .0,
            "future_interval"
        );
        // A long interval buys at most 2 × 60 s + 1 s.
        assert!(check_interval(now, now + 121_000, now).is_ok());
        assert_eq!(
            check_interval(now + 1, now + 121_001, now).unwrap_err().0,
            "future_interval"
        );
        // Reversed, and longer than an hour.
        assert_eq!(
            check_interval(now, now - 1, now).unwrap_err().0,
            "bad_interval"
        );
        assert_eq!(check_interval(0, now, now).unwrap_err().0, "bad_interval");
    }
}
