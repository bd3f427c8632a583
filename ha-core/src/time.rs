//! One unit of time for the whole core: an [`Instant`] of `CLOCK_MONOTONIC` (the clock the XDP
//! program stamps heartbeats with, so kernel and user times compare directly) and
//! [`Duration`] for every span, from the command line to the silence limits.
use core::ops::{Add, Sub};

pub use core::time::Duration;

/// A point on `CLOCK_MONOTONIC`, in nanoseconds since boot. Arithmetic saturates: a time
/// before boot or past the year 2554 is never reached, and must not wrap into a decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    /// Later than any deadline: "never".
    pub const NEVER: Instant = Instant(u64::MAX);

    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The span from `earlier` to `self`; zero when `earlier` is later.
    pub fn since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(nanos(d)))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(nanos(d)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.since(earlier)
    }
}

/// Whole nanoseconds of `d`, saturating (for the state machine's integer arithmetic).
pub fn as_nanos(d: Duration) -> u64 {
    nanos(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Instant::from_nanos(10);
        assert_eq!(t - Duration::from_nanos(20), Instant::ZERO);
        assert_eq!(Instant::NEVER + Duration::from_secs(1), Instant::NEVER);
        assert_eq!(t - Instant::from_nanos(30), Duration::ZERO);
        assert_eq!(Instant::from_nanos(30) - t, Duration::from_nanos(20));
        assert_eq!(Instant::ZERO + Duration::MAX, Instant::NEVER);
    }
}
