//! Two clusters with the same id but different keys on one LAN must not mix silently: XDP
//! counts their heartbeats as `bad_auth`/`unknown_key`, and this turns a growing count into a
//! warning line, at most one per period.
use ha_common::maps::Stats;

const PERIOD_NS: u64 = 10_000_000_000;

#[derive(Default)]
pub struct KeyAlarm {
    seen: u64,
    last_warned: Option<u64>,
    pending: u64,
}

impl KeyAlarm {
    /// The warning to log now, if heartbeats of this cluster failed authentication since the last.
    pub fn check(&mut self, now_ns: u64, stats: &Stats, cluster: u32) -> Option<String> {
        let failed = stats.bad_auth + stats.unknown_key;
        self.pending += failed.saturating_sub(self.seen);
        self.seen = failed;
        let due = self.last_warned.is_none_or(|at| now_ns.saturating_sub(at) >= PERIOD_NS);
        if self.pending == 0 || !due {
            return None;
        }
        let count = std::mem::take(&mut self.pending);
        self.last_warned = Some(now_ns);
        Some(format!(
            "{count} heartbeats of cluster {cluster} failed authentication (bad_auth={}, unknown_key={} in all): another cluster uses this id with a different key, or someone forges heartbeats; give each cluster its own --cluster id",
            stats.bad_auth, stats.unknown_key
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_on_growth_at_most_once_per_period() {
        let mut alarm = KeyAlarm::default();
        let s = |bad| Stats { bad_auth: bad, ..Stats::default() };
        assert_eq!(alarm.check(0, &s(0), 1), None);
        let first = alarm.check(1, &s(3), 1).expect("warns");
        assert!(first.starts_with("3 heartbeats of cluster 1"), "{first}");
        assert_eq!(alarm.check(2, &s(5), 1), None, "not again within the period");
        let later = alarm.check(PERIOD_NS + 1, &s(6), 1).expect("warns again");
        assert!(later.starts_with("3 heartbeats"), "counts what came since: {later}");
        assert_eq!(alarm.check(3 * PERIOD_NS, &s(6), 1), None, "quiet when nothing fails");
    }
}
