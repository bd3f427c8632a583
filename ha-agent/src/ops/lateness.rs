//! How late scheduled heartbeats leave, relative to their absolute deadline: the measure of the
//! sender's precision under load. A log2 histogram in microseconds: fixed size, no allocation.
use serde::{Deserialize, Serialize};

/// Buckets of the histogram: bucket i counts lateness in [2^(i-1), 2^i) µs; bucket 0 is under
/// 1 µs, the last everything from 2^30 µs.
pub const BUCKETS: usize = 32;

#[derive(Clone, Debug, Default)]
pub struct Lateness {
    buckets: [u64; BUCKETS],
    max_ns: u64,
    sum_ns: u64,
    count: u64,
}

/// Quantiles are the upper bound of their bucket ("at most this late"), capped at the maximum:
/// every figure is in whole microseconds rounded up, so p50 <= p99 <= max always holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatenessSummary {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// The histogram itself, for metrics (not part of `status --json`).
    #[serde(skip)]
    pub buckets: [u64; BUCKETS],
    #[serde(skip)]
    pub sum_ns: u64,
}

impl Lateness {
    pub fn record(&mut self, late_ns: u64) {
        let us = late_ns / 1_000;
        let bucket = (u64::BITS - us.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)] += 1;
        self.max_ns = self.max_ns.max(late_ns);
        self.sum_ns = self.sum_ns.saturating_add(late_ns);
        self.count += 1;
    }

    fn quantile_us(&self, q: f64) -> u64 {
        let target = (self.count as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target && *n > 0 {
                return if i == 0 { 1 } else { 1u64 << i };
            }
        }
        self.max_ns / 1_000
    }

    pub fn summary(&self) -> LatenessSummary {
        // Rounded up like the bucket bounds: the maximum is the largest quantile, never below one.
        let max_us = self.max_ns.div_ceil(1_000);
        LatenessSummary {
            count: self.count,
            p50_us: self.quantile_us(0.5).min(max_us),
            p99_us: self.quantile_us(0.99).min(max_us),
            max_us,
            buckets: self.buckets,
            sum_ns: self.sum_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_bound_the_samples() {
        let mut l = Lateness::default();
        for _ in 0..98 {
            l.record(30_000); // 30 µs
        }
        l.record(900_000);
        l.record(5_000_000);
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert!(s.p50_us >= 30 && s.p50_us <= 64, "{s:?}");
        assert!(s.p99_us >= 900 && s.p99_us <= 1024, "{s:?}");
        assert_eq!(s.max_us, 5_000);
    }

    #[test]
    fn a_maximum_just_past_a_whole_microsecond_bounds_the_quantiles() {
        // Seen in the field: "p99 1257 us, max 1256 us".
        let mut l = Lateness::default();
        l.record(1_256_400);
        let s = l.summary();
        assert!(s.p99_us <= s.max_us && s.max_us >= 1_256, "{s:?}");
    }

    proptest::proptest! {
        #[test]
        fn quantiles_never_exceed_the_maximum_nor_each_other(
            samples in proptest::collection::vec(0u64..10_000_000_000, 1..200)
        ) {
            let mut l = Lateness::default();
            for ns in &samples {
                l.record(*ns);
            }
            let s = l.summary();
            let max_ns = *samples.iter().max().unwrap_or(&0);
            proptest::prop_assert!(s.p50_us <= s.p99_us && s.p99_us <= s.max_us, "{s:?}");
            // The maximum is the true one, rounded up to a whole microsecond.
            proptest::prop_assert!(s.max_us * 1_000 >= max_ns && s.max_us * 1_000 < max_ns + 1_000, "{s:?}");
        }
    }
}
