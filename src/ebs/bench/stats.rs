//! Per-request latency and the longest stall of one case.
//!
//! Latency goes into a log-linear histogram (HDR-style: 128 sub-buckets per power of two, so a
//! reported percentile is at most 1/128 above the true value) instead of a list of samples: its
//! memory is fixed (~60 KB) however long or fast a case runs. The maximum is kept exactly.

/// Sub-bucket bits: 2^7 = 128 buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Enough buckets for any u64 nanosecond value.
const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB_COUNT as usize;

/// Nanosecond latencies, counted in log-linear buckets.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max_ns: 0,
        }
    }
}

/// The bucket of a value: values below 128 have one each, above that each power of two is cut
/// into 128 equal parts.
fn bucket_of(v: u64) -> usize {
    if v < SUB_COUNT {
        return v as usize;
    }
    let exponent = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exponent - SUB_BITS;
    let mantissa = v >> shift; // in SUB_COUNT..2 * SUB_COUNT
    ((shift as u64 + 1) * SUB_COUNT + (mantissa - SUB_COUNT)) as usize
}

/// The largest value that falls in bucket `i`.
fn bucket_high(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB_COUNT {
        return i;
    }
    let shift = i / SUB_COUNT - 1;
    let mantissa = SUB_COUNT + i % SUB_COUNT;
    // (mantissa + 1) << shift, minus one, without overflow at the top bucket.
    (mantissa << shift).saturating_add((1u64 << shift) - 1)
}

impl Histogram {
    pub fn record_ns(&mut self, ns: u64) {
        self.counts[bucket_of(ns)] += 1;
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The smallest bucket bound with at least `q` of the values at or below it, never above the
    /// maximum: so p50 <= p99 <= p99.9 <= max always holds. 0 when empty.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_high(i).min(self.max_ns);
            }
        }
        self.max_ns
    }

    /// Up to `points` values spread evenly over the distribution, sorted: what a CDF plot needs.
    /// One pass over the buckets, however many points.
    pub fn cdf_points_ns(&self, points: usize) -> Vec<u64> {
        let n = (self.count as usize).min(points);
        let mut out = Vec::with_capacity(n);
        let mut buckets = self.counts.iter().enumerate();
        let (mut bucket, mut seen) = (0usize, 0u64);
        for i in 0..n {
            let q = (i as f64 + 0.5) / n as f64;
            let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
            while seen < rank {
                match buckets.next() {
                    Some((b, &c)) => {
                        bucket = b;
                        seen += c;
                    }
                    None => break,
                }
            }
            out.push(bucket_high(bucket).min(self.max_ns));
        }
        out
    }
}

/// The longest wall-clock interval in which no request completed while at least one was
/// outstanding; and, if a window is set, the longest such interval that overlaps it (the stall an
/// event such as a black hole caused, told apart from the host's own hiccups elsewhere in the
/// run). Times are nanoseconds since the case started.
#[derive(Clone, Copy, Debug, Default)]
pub struct StallTracker {
    /// Since when requests have been outstanding with no completion (None: none outstanding).
    waiting_since_ns: Option<u64>,
    max_ns: u64,
    /// When the longest stall began.
    max_since_ns: u64,
    window_ns: Option<(u64, u64)>,
    max_in_window_ns: u64,
}

impl StallTracker {
    /// A tracker that also watches stalls overlapping `from_ns..=to_ns`.
    pub fn with_window(from_ns: u64, to_ns: u64) -> Self {
        StallTracker {
            window_ns: Some((from_ns, to_ns)),
            ..StallTracker::default()
        }
    }

    fn interval(&mut self, since: u64, now: u64) {
        let length = now.saturating_sub(since);
        if length > self.max_ns {
            self.max_ns = length;
            self.max_since_ns = since;
        }
        if let Some((from, to)) = self.window_ns
            && since <= to
            && now >= from
        {
            self.max_in_window_ns = self.max_in_window_ns.max(length);
        }
    }

    /// The longest stall overlapping the window (0 without one).
    pub fn max_in_window_ns(&self) -> u64 {
        self.max_in_window_ns
    }

    /// A request was submitted at `now_ns` with `outstanding_before` already in flight.
    pub fn on_submit(&mut self, now_ns: u64, outstanding_before: usize) {
        if outstanding_before == 0 {
            self.waiting_since_ns = Some(now_ns);
        }
    }

    /// A request completed at `now_ns`, leaving `outstanding_after` in flight.
    pub fn on_complete(&mut self, now_ns: u64, outstanding_after: usize) {
        if let Some(since) = self.waiting_since_ns {
            self.interval(since, now_ns);
        }
        self.waiting_since_ns = (outstanding_after > 0).then_some(now_ns);
    }

    /// The case ended at `now_ns`: requests still outstanding then (given up on) stalled until it.
    pub fn finish(&mut self, now_ns: u64) {
        if let Some(since) = self.waiting_since_ns.take() {
            self.interval(since, now_ns);
        }
    }

    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// When the longest stall began, since the case started (0 without one).
    pub fn max_since_ns(&self) -> u64 {
        self.max_since_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        for v in (0..5000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v}");
            assert!(bucket_high(b) >= v, "{v} above its bucket's bound");
            if b > 0 {
                assert!(bucket_high(b - 1) < v, "{v} belongs to an earlier bucket");
            }
        }
        assert_eq!(bucket_high(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn quantiles_are_within_one_128th_and_ordered() {
        let mut h = Histogram::default();
        // 1..=10_000 us: p50 = 5000 us, p99 = 9900 us, p99.9 = 9990 us.
        for us in 1..=10_000u64 {
            h.record_ns(us * 1000);
        }
        for (q, exact) in [(0.5, 5_000_000u64), (0.99, 9_900_000), (0.999, 9_990_000)] {
            let got = h.quantile_ns(q);
            assert!(got >= exact && got <= exact + exact / 128 + 1, "{q}: {got}");
        }
        assert_eq!(h.quantile_ns(1.0), 10_000_000);
        assert_eq!(h.max_ns(), 10_000_000);
        let (p50, p99, p999) = (
            h.quantile_ns(0.5),
            h.quantile_ns(0.99),
            h.quantile_ns(0.999),
        );
        assert!(p50 <= p99 && p99 <= p999 && p999 <= h.max_ns());
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn a_single_value_is_every_quantile_and_empty_is_zero() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ns(0.99), 0);
        assert!(h.cdf_points_ns(10).is_empty());
        h.record_ns(123_457);
        for q in [0.0, 0.5, 0.999, 1.0] {
            assert_eq!(h.quantile_ns(q), 123_457);
        }
        let pts = h.cdf_points_ns(100);
        assert_eq!(pts, vec![123_457]);
    }

    #[test]
    fn cdf_points_are_sorted() {
        let mut h = Histogram::default();
        for v in [5u64, 900, 17, 1 << 40, 3_000_000, 42] {
            h.record_ns(v);
        }
        let pts = h.cdf_points_ns(1000);
        assert_eq!(pts.len(), 6);
        assert!(pts.windows(2).all(|w| w[0] <= w[1]), "{pts:?}");
        // The one-pass walk agrees with quantile_ns point by point.
        let mut h = Histogram::default();
        for v in 0..10_000u64 {
            h.record_ns(v * v);
        }
        let pts = h.cdf_points_ns(777);
        for (i, &p) in pts.iter().enumerate() {
            assert_eq!(p, h.quantile_ns((i as f64 + 0.5) / 777.0), "point {i}");
        }
    }

    #[test]
    fn a_stall_is_the_longest_gap_with_requests_outstanding() {
        let mut s = StallTracker::default();
        // qd 2: submits at 0, completions at 10 and 15, resubmits; a gap of 100 from 15 to 115.
        s.on_submit(0, 0);
        s.on_submit(0, 1);
        s.on_complete(10, 1);
        s.on_submit(10, 1);
        s.on_complete(15, 1);
        s.on_submit(15, 1);
        s.on_complete(115, 1);
        assert_eq!(s.max_ns(), 100);
        assert_eq!(s.max_since_ns(), 15);
        s.on_complete(120, 0);
        // Idle (nothing outstanding) does not count as a stall.
        s.on_submit(10_000, 0);
        s.on_complete(10_050, 0);
        assert_eq!(s.max_ns(), 100);
        // Given up at the end with one outstanding since 20_000.
        s.on_submit(20_000, 0);
        s.finish(20_500);
        assert_eq!(s.max_ns(), 500);
        assert_eq!(s.max_since_ns(), 20_000);
        // finish with nothing outstanding changes nothing.
        s.finish(99_999);
        assert_eq!(s.max_ns(), 500);
        assert_eq!(s.max_in_window_ns(), 0);
    }

    #[test]
    fn the_window_sees_only_the_stalls_that_overlap_it() {
        let mut s = StallTracker::with_window(1_000, 1_100);
        s.on_submit(0, 0);
        s.on_complete(900, 1); // 0..900: before the window, the run's longest
        s.on_complete(950, 1);
        s.on_complete(1_250, 1); // 950..1250 overlaps it
        s.on_complete(1_300, 1);
        s.on_complete(1_500, 0); // 1300..1500: after it
        assert_eq!(s.max_ns(), 900);
        assert_eq!(s.max_in_window_ns(), 300);
    }
}
