//! Small robust-statistics kit for the health evaluator: a median/MAD window, decayed rate
//! sums, and the Poisson upper tail used to test count metrics.
//!
//! Why these and not a mean/stddev: one bad interval in a baseline window moves a mean and a
//! standard deviation a lot and a median and MAD hardly at all, so a past fault does not widen
//! the band that should catch the next one. Count metrics (retransmissions, timeouts, failed
//! connects) are mostly zero per interval, so their median is 0 and useless: they are tested
//! as Poisson counts against a pooled expected rate instead (see docs/health.md).

/// Hasher for maps whose keys are already 64-bit SipHash digests (path and class keys): one
/// multiply instead of hashing the digest again. Not for keys an agent controls directly.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map keyed by digests.
pub type DigestMap<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// Scale that turns a median absolute deviation into a standard-deviation estimate for normal data.
pub const MAD_TO_SIGMA: f32 = 1.4826;

/// Capacity of a [`RobustWindow`]: 16 intervals is enough for a stable median and MAD, and
/// small enough (64 bytes) to keep one per path for 100k paths.
pub const WINDOW: usize = 16;

/// The last [`WINDOW`] values of one metric, with their median and scaled MAD cached.
///
/// The values are kept sorted, each with its age in a 4-bit field of `ages` (0: newest), so a
/// push is one removal and one insertion in 16 floats, and the median and MAD come from the
/// sorted values without sorting or selecting (one push per path and interval made this the
/// evaluator's costliest statistic). The results are exactly those of [`median_mad`] over the
/// held values.
#[derive(Debug, Clone, Copy, Default)]
pub struct RobustWindow {
    sorted: [f32; WINDOW],
    /// Age of `sorted[k]` in bits `4k..4k+4`.
    ages: u64,
    len: u8,
    median: f32,
    sigma: f32,
}

/// The low `n` nibbles of a u64.
fn nibbles(n: usize) -> u64 {
    if n >= 16 {
        u64::MAX
    } else {
        (1u64 << (4 * n)) - 1
    }
}

impl RobustWindow {
    /// Number of values held (at most [`WINDOW`]).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Median of the held values (0 when empty).
    pub fn median(&self) -> f32 {
        self.median
    }

    /// MAD × 1.4826 of the held values (0 when empty).
    pub fn sigma(&self) -> f32 {
        self.sigma
    }

    /// Adds one value, dropping the oldest when full. Non-finite values are ignored.
    pub fn push(&mut self, v: f32) {
        if !v.is_finite() {
            return;
        }
        let mut n = self.len as usize;
        let mut ages = self.ages;
        if n == WINDOW {
            // The oldest has age WINDOW - 1.
            let p = (0..WINDOW)
                .find(|&k| (ages >> (4 * k)) & 0xf == (WINDOW - 1) as u64)
                .unwrap_or(0);
            self.sorted.copy_within(p + 1..WINDOW, p);
            let high = if p + 1 >= 16 {
                0
            } else {
                ages >> (4 * (p + 1))
            };
            ages = (ages & nibbles(p)) | (high << (4 * p));
            n -= 1;
        }
        // Everyone held ages by one (at most n - 1 < 15 before: no carry between fields).
        ages += 0x1111_1111_1111_1111 & nibbles(n);
        let q = self.sorted[..n].partition_point(|x| x.total_cmp(&v).is_le());
        self.sorted.copy_within(q..n, q + 1);
        self.sorted[q] = v;
        ages = (ages & nibbles(q)) | ((ages & !nibbles(q)) << 4);
        n += 1;
        self.ages = ages;
        self.len = n as u8;
        let (median, mad) = sorted_median_mad(&self.sorted[..n]);
        self.median = median;
        self.sigma = mad * MAD_TO_SIGMA;
    }

    /// The spread of the held values net of a steady trend: the MAD of successive differences
    /// (in time order, from the ages) around their median, × 1.4826 / √2. A metric drifting a
    /// few percent per interval widens the plain MAD by the drift itself, so a slow ramp would
    /// hide inside the band it widens; this one sees only the jitter between intervals. The
    /// plain [`sigma`](Self::sigma) with fewer than 4 values.
    pub fn trend_free_sigma(&self) -> f32 {
        let n = self.len as usize;
        if n < 4 {
            return self.sigma;
        }
        let mut by_age = [0f32; WINDOW];
        for (k, &v) in self.sorted[..n].iter().enumerate() {
            by_age[((self.ages >> (4 * k)) & 0xf) as usize] = v;
        }
        let mut d = [0f32; WINDOW];
        for a in 0..n - 1 {
            d[a] = by_age[a] - by_age[a + 1];
        }
        let (_, mad) = median_mad(&mut d[..n - 1]);
        mad * MAD_TO_SIGMA * std::f32::consts::FRAC_1_SQRT_2
    }
}

/// [`median_mad`] of values already sorted (by `total_cmp`): the median from the middle, the MAD
/// by merging the deviations below and above it (each run is sorted) up to the middle rank.
/// The same values as [`median_mad`]: both are elements, or means of two elements, of the same
/// multisets.
fn sorted_median_mad(xs: &[f32]) -> (f32, f32) {
    let n = xs.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mid = n / 2;
    let m = if n % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    };
    let mut lo = xs.partition_point(|&x| x < m);
    let mut hi = lo;
    let mut prev = 0f32;
    let mut cur = 0f32;
    for _ in 0..=mid {
        prev = cur;
        let left = (lo > 0).then(|| (xs[lo - 1] - m).abs());
        let right = (hi < n).then(|| (xs[hi] - m).abs());
        cur = match (left, right) {
            (Some(l), Some(r)) if l.total_cmp(&r).is_le() => {
                lo -= 1;
                l
            }
            (_, Some(r)) => {
                hi += 1;
                r
            }
            (Some(l), None) => {
                lo -= 1;
                l
            }
            (None, None) => unreachable!("mid < n"),
        };
    }
    let mad = if n % 2 == 1 { cur } else { (prev + cur) / 2.0 };
    (m, mad)
}

/// Median of `xs` (reordered in place); 0 for an empty slice.
pub fn median(xs: &mut [f32]) -> f32 {
    if xs.is_empty() {
        return 0.0;
    }
    let mid = xs.len() / 2;
    let (_, m, _) = xs.select_nth_unstable_by(mid, f32::total_cmp);
    let m = *m;
    if xs.len() % 2 == 1 {
        m
    } else {
        // The lower middle is the largest of the lower half.
        let lower = xs[..mid].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (lower + m) / 2.0
    }
}

/// (median, MAD) of `xs`, reordering it; (0, 0) when empty.
pub fn median_mad(xs: &mut [f32]) -> (f32, f32) {
    let m = median(xs);
    for x in xs.iter_mut() {
        *x = (*x - m).abs();
    }
    (m, median(xs))
}

/// An event count over an exposure (retransmissions over segments sent, failed connects over
/// attempts), summed over past intervals with exponential decay so old intervals fade.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecayedRate {
    pub events: f32,
    pub exposure: f32,
}

impl DecayedRate {
    pub fn decay(&mut self, factor: f32) {
        self.events *= factor;
        self.exposure *= factor;
    }

    pub fn add(&mut self, events: f64, exposure: f64) {
        self.events += events as f32;
        self.exposure += exposure as f32;
    }

    /// Rate shrunk towards `prior` with the weight of `prior_exposure` pseudo-observations
    /// (a Bayesian average): a path with little history takes its class's rate, a path with
    /// much history its own.
    pub fn shrunk(&self, prior: f64, prior_exposure: f64) -> f64 {
        (self.events as f64 + prior * prior_exposure) / (self.exposure as f64 + prior_exposure)
    }
}

/// ln(n!) for n < 16 as the running sum of ln i (computed once; the Poisson test of small
/// counts otherwise spends most of its time here).
static LN_FACTORIAL_SMALL: std::sync::LazyLock<[f64; 16]> = std::sync::LazyLock::new(|| {
    let mut t = [0f64; 16];
    for (k, v) in t.iter_mut().enumerate() {
        *v = ln_factorial_sum(k as f64);
    }
    t
});

fn ln_factorial_sum(n: f64) -> f64 {
    let mut acc = 0.0;
    let mut i = 2.0;
    while i <= n {
        acc += f64::ln(i);
        i += 1.0;
    }
    acc
}

/// ln(n!) by Stirling's series; exact enough (< 1e-8 relative) for tail probabilities.
fn ln_factorial(n: f64) -> f64 {
    if n < 2.0 {
        return 0.0;
    }
    if n < 16.0 {
        // Only whole counts reach here; the table holds the same running sums of ln i.
        if n.fract() == 0.0 {
            return LN_FACTORIAL_SMALL[n as usize];
        }
        return ln_factorial_sum(n);
    }
    n * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI * n).ln() + 1.0 / (12.0 * n)
        - 1.0 / (360.0 * n * n * n)
}

/// Complementary error function (Numerical Recipes `erfcc`, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// P(X ≥ k) for X ~ Poisson(lambda): how surprising `k` events are when `lambda` were expected.
/// Returns 1 when `k` is not above the mean (only the upper tail matters here).
pub fn poisson_sf(k: u64, lambda: f64) -> f64 {
    if k == 0 || lambda.is_nan() || lambda <= 0.0 {
        return if k == 0 { 1.0 } else { 0.0 };
    }
    let kf = k as f64;
    if kf <= lambda {
        return 1.0;
    }
    if lambda > 500.0 {
        // Normal approximation with continuity correction; the exact sum converges slowly here.
        let z = (kf - 0.5 - lambda) / lambda.sqrt();
        return 0.5 * erfc(z / std::f64::consts::SQRT_2);
    }
    // Sum the tail upwards from k; terms shrink by lambda/(j+1) < 1.
    let mut term = (-lambda + kf * lambda.ln() - ln_factorial(kf)).exp();
    let mut sum = 0.0;
    let mut j = kf;
    for _ in 0..10_000 {
        sum += term;
        j += 1.0;
        term *= lambda / j;
        // `== 0`: far in the tail the terms underflow, and once `sum * 1e-12` is 0 too only
        // this stops the loop (it ran all 10,000 steps for degraded flows under a heavy fault).
        if term == 0.0 || term < sum * 1e-12 {
            break;
        }
    }
    sum.min(1.0)
}

/// Whether P(X ≥ k | lambda) < alpha, stopping as soon as the answer is known: the tail's
/// first term alone often exceeds `alpha` (not surprising), and the sum need only be followed
/// until it does. Same result as `poisson_sf(k, lambda) < alpha`, at a fraction of the cost
/// for the many flows that are not in the tail.
pub fn poisson_tail_below(k: u64, lambda: f64, alpha: f64) -> bool {
    if k == 0 || lambda.is_nan() || lambda <= 0.0 {
        return k > 0 && alpha > 0.0;
    }
    let kf = k as f64;
    if kf <= lambda {
        return false;
    }
    if lambda > 500.0 {
        return poisson_sf(k, lambda) < alpha;
    }
    let mut term = (-lambda + kf * lambda.ln() - ln_factorial(kf)).exp();
    let mut sum = 0.0;
    let mut j = kf;
    for _ in 0..10_000 {
        sum += term;
        if sum >= alpha {
            return false;
        }
        j += 1.0;
        term *= lambda / j;
        if term == 0.0 || term < sum * 1e-12 {
            break;
        }
    }
    sum < alpha
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_median_odd_even_empty() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0]), 3.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    /// The window's statistics equal [`median_mad`] over its last [`WINDOW`] values, bit for
    /// bit, for every length up to the window and well past it, with ties, repeats and zeros.
    #[test]
    fn test_window_matches_median_mad_of_last_values() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..60 {
            let mut w = RobustWindow::default();
            let mut last = std::collections::VecDeque::new();
            for step in 0..80 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = match round % 4 {
                    0 => (x % 5) as f32,
                    1 => (x % 100_000) as f32 / 7.0,
                    2 => f32::from_bits(0x3f80_0000 | (x as u32 & 0x007f_ffff)) * 1e3,
                    _ => [0.0, 1.5, 1.5, 2.0, 1e6][(x % 5) as usize],
                };
                w.push(v);
                last.push_back(v);
                if last.len() > WINDOW {
                    last.pop_front();
                }
                let mut copy: Vec<f32> = last.iter().copied().collect();
                let (m, mad) = median_mad(&mut copy);
                assert_eq!(w.len(), last.len());
                assert_eq!(w.median().to_bits(), m.to_bits(), "{round} {step} {last:?}");
                assert_eq!(
                    w.sigma().to_bits(),
                    (mad * MAD_TO_SIGMA).to_bits(),
                    "{round} {step} {last:?}"
                );
            }
        }
    }

    #[test]
    fn test_ln_factorial_table_is_the_sum() {
        for k in 0..40u32 {
            let n = k as f64;
            let want = if n < 2.0 {
                0.0
            } else if n < 16.0 {
                ln_factorial_sum(n)
            } else {
                ln_factorial(n)
            };
            assert_eq!(ln_factorial(n).to_bits(), want.to_bits(), "{k}");
        }
        assert_eq!(ln_factorial(5.5).to_bits(), ln_factorial_sum(5.5).to_bits());
    }

    #[test]
    fn test_median_mad_ignores_one_outlier() {
        let mut xs = [10.0, 11.0, 9.0, 10.0, 1000.0];
        let (m, mad) = median_mad(&mut xs);
        assert_eq!(m, 10.0);
        assert_eq!(mad, 1.0);
    }

    #[test]
    fn test_window_capacity_minus_one_full_and_over() {
        let mut w = RobustWindow::default();
        for i in 0..WINDOW - 1 {
            w.push(i as f32);
        }
        assert_eq!(w.len(), WINDOW - 1);
        w.push((WINDOW - 1) as f32);
        assert_eq!(w.len(), WINDOW);
        // Over capacity: the oldest (0) is dropped, the median moves up by half a step.
        let before = w.median();
        w.push(100.0);
        assert_eq!(w.len(), WINDOW);
        assert!(w.median() > before);
        w.push(f32::NAN);
        assert_eq!(w.len(), WINDOW);
    }

    #[test]
    fn test_poisson_sf_known_values() {
        // P(X >= 3 | 0.5) = 1 - e^-0.5 (1 + 0.5 + 0.125) = 0.014388
        assert!((poisson_sf(3, 0.5) - 0.014388).abs() < 1e-5);
        // P(X >= 1 | 2) = 1 - e^-2
        assert_eq!(poisson_sf(1, 2.0), 1.0); // k below the mean: not in the upper tail
        assert!((poisson_sf(5, 2.0) - 0.052653).abs() < 1e-5);
        assert_eq!(poisson_sf(0, 1.0), 1.0);
        assert_eq!(poisson_sf(1, 0.0), 0.0);
        // Large lambda: normal approximation, mean + 5 sd is about 3e-7.
        let p = poisson_sf(1000 + 5 * 32, 1000.0);
        assert!(p > 1e-8 && p < 1e-5, "{p}");
    }

    #[test]
    fn test_tail_below_agrees_with_sf() {
        for &lambda in &[0.0, 1e-4, 0.05, 0.5, 3.0, 40.0, 400.0, 2_000.0] {
            for k in [0u64, 1, 2, 3, 5, 8, 20, 60, 500, 2_200, 3_000] {
                for &alpha in &[1e-3, 1e-4] {
                    assert_eq!(
                        poisson_tail_below(k, lambda, alpha),
                        poisson_sf(k, lambda) < alpha,
                        "k {k} lambda {lambda} alpha {alpha}"
                    );
                }
            }
        }
    }

    /// Far tails whose terms underflow (to 0 at once, or after a subnormal first term): the
    /// same answers as summing all 10,000 steps.
    #[test]
    fn test_underflowing_tail() {
        for (k, lambda) in [(2_000u64, 0.5), (400, 1e-3), (60_000, 400.0), (344, 16.408)] {
            let p = poisson_sf(k, lambda);
            assert!(p < 1e-300, "{k} {lambda} {p}");
            assert!(poisson_tail_below(k, lambda, 1e-3));
            assert!(!poisson_tail_below(k, lambda, 0.0));
        }
    }

    #[test]
    fn test_shrunk_rate_moves_from_prior_to_own() {
        let mut r = DecayedRate::default();
        assert_eq!(r.shrunk(0.01, 100.0), 0.01);
        r.add(10.0, 100_000.0);
        assert!((r.shrunk(0.01, 100.0) - 0.000_11).abs() < 1e-5);
        r.decay(0.5);
        assert_eq!(r.exposure, 50_000.0);
    }

    /// A steady ramp with small jitter: the plain spread grows with the ramp, the trend-free
    /// one stays near the jitter (and equals neither for too few values).
    #[test]
    fn test_trend_free_sigma_ignores_a_ramp() {
        let mut w = RobustWindow::default();
        let mut x = 7u64;
        for k in 0..WINDOW {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = ((x >> 40) % 200) as f32 / 10.0 - 10.0; // ±10
            w.push(1_000.0 + 30.0 * k as f32 + jitter);
        }
        assert!(w.sigma() > 150.0, "{}", w.sigma());
        assert!(w.trend_free_sigma() < 20.0, "{}", w.trend_free_sigma());
        let mut short = RobustWindow::default();
        for v in [1.0, 5.0, 9.0] {
            short.push(v);
        }
        assert_eq!(short.trend_free_sigma(), short.sigma());
    }
}
