//! Each simulated node's own `CLOCK_MONOTONIC`: an offset (time since its boot) and a rate off
//! by up to a few hundred ppm. A node only ever sees its own clock; the simulator runs on a
//! global virtual time in nanoseconds.
use ha_core::Instant;

#[derive(Clone, Copy, Debug)]
pub struct NodeClock {
    /// The node's monotonic time at global time 0.
    pub offset: u64,
    /// How much faster than global time it runs, in parts per billion.
    pub ppb: i64,
}

const BILLION: i128 = 1_000_000_000;

impl NodeClock {
    /// The node's clock at global time `t`.
    pub fn local(&self, t: u64) -> Instant {
        let t = i128::from(t);
        let local = i128::from(self.offset) + t + t * i128::from(self.ppb) / BILLION;
        Instant::from_nanos(local.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// The first global time at which the node's clock reads at least `at`.
    pub fn global(&self, at: Instant) -> u64 {
        if at == Instant::NEVER {
            return u64::MAX;
        }
        let since = i128::from(at.as_nanos()) - i128::from(self.offset);
        if since <= 0 {
            return 0;
        }
        let mut t = (since * BILLION / (BILLION + i128::from(self.ppb))).max(0) as u64;
        // Integer rounding: step to the first instant that reaches `at`.
        while self.local(t) < at {
            t += 1;
        }
        while t > 0 && self.local(t - 1) >= at {
            t -= 1;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_inverts_local() {
        for ppb in [-200_000, -1, 0, 3, 200_000] {
            let c = NodeClock { offset: 123_456_789, ppb };
            for t in [0u64, 1, 999, 1_000_000_007, 60_000_000_000] {
                let l = c.local(t);
                let g = c.global(l);
                assert!(g <= t && c.local(g) == l, "ppb {ppb} t {t} g {g}");
            }
        }
    }
}
