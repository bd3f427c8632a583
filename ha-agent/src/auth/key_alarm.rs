//! Heartbeats of this cluster that fail authentication must not go unnoticed: XDP (or the
//! socket path) counts them as `unknown_key` (a key id this node does not have), `bad_auth`
//! (a key id it has, a tag that does not verify) or `unauthenticated` (unsigned: key id 0), and this turns a growing count into a
//! warning line, at most one per period. The line names the key ids: this node's, and the
//! unknown ones seen when the receive path knows them (the socket path does), so a key file
//! that differs between two nodes of one cluster is told apart from another cluster or a
//! forger.
use ha_common::maps::Stats;

const PERIOD_NS: u64 = 10_000_000_000;

#[derive(Default)]
pub struct KeyAlarm {
    seen_unknown: u64,
    seen_bad: u64,
    seen_unsigned: u64,
    last_warned: Option<u64>,
    pending_unknown: u64,
    pending_bad: u64,
    pending_unsigned: u64,
}

fn ids(ids: &[u8]) -> String {
    let list: Vec<String> = ids.iter().map(u8::to_string).collect();
    list.join(", ")
}

impl KeyAlarm {
    /// The warning to log now, if heartbeats of this cluster failed authentication since the
    /// last. `ours`: this node's key ids; `theirs`: unknown key ids seen (empty if not known).
    pub fn check(&mut self, now_ns: u64, stats: &Stats, cluster: u32, ours: &[u8], theirs: &[u8]) -> Option<String> {
        self.pending_unknown += stats.unknown_key.saturating_sub(self.seen_unknown);
        self.pending_bad += stats.bad_auth.saturating_sub(self.seen_bad);
        self.pending_unsigned += stats.unauthenticated.saturating_sub(self.seen_unsigned);
        (self.seen_unknown, self.seen_bad, self.seen_unsigned) =
            (stats.unknown_key, stats.bad_auth, stats.unauthenticated);
        let due = self.last_warned.is_none_or(|at| now_ns.saturating_sub(at) >= PERIOD_NS);
        if self.pending_unknown + self.pending_bad + self.pending_unsigned == 0 || !due {
            return None;
        }
        self.last_warned = Some(now_ns);
        let mut parts = Vec::new();
        let unknown = std::mem::take(&mut self.pending_unknown);
        if unknown > 0 {
            let carried = if theirs.is_empty() {
                "a key id that this node does not have".to_string()
            } else {
                format!("key id {} that this node does not have", ids(theirs))
            };
            parts.push(format!(
                "{unknown} heartbeats of cluster {cluster} failed authentication: they carry {carried} (this node has key id {}): if a node of this cluster signs with it, the key files differ: add the new key to every node's file before any node signs with it; otherwise another cluster uses id {cluster}: give each cluster its own --cluster id",
                ids(ours)
            ));
        }
        let bad = std::mem::take(&mut self.pending_bad);
        if bad > 0 {
            parts.push(format!(
                "{bad} heartbeats of cluster {cluster} failed authentication under a key id this node has ({}): that key differs between nodes' key files, or someone forges heartbeats",
                ids(ours)
            ));
        }
        let unsigned = std::mem::take(&mut self.pending_unsigned);
        if unsigned > 0 {
            parts.push(format!(
                "{unsigned} unsigned heartbeats (key id 0) of cluster {cluster} were refused: a node of this cluster runs with --insecure-no-auth, or someone forges heartbeats"
            ));
        }
        Some(parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_on_growth_at_most_once_per_period() {
        let mut alarm = KeyAlarm::default();
        let s = |bad| Stats { bad_auth: bad, ..Stats::default() };
        assert_eq!(alarm.check(0, &s(0), 1, &[1], &[]), None);
        let first = alarm.check(1, &s(3), 1, &[1], &[]).expect("warns");
        assert!(first.starts_with("3 heartbeats of cluster 1"), "{first}");
        assert_eq!(alarm.check(2, &s(5), 1, &[1], &[]), None, "not again within the period");
        let later = alarm.check(PERIOD_NS + 1, &s(6), 1, &[1], &[]).expect("warns again");
        assert!(later.starts_with("3 heartbeats"), "counts what came since: {later}");
        assert_eq!(alarm.check(3 * PERIOD_NS, &s(6), 1, &[1], &[]), None, "quiet when nothing fails");
    }

    #[test]
    fn a_key_id_we_do_not_have_is_named_with_ours() {
        let mut alarm = KeyAlarm::default();
        let s = Stats { unknown_key: 4, ..Stats::default() };
        let line = alarm.check(1, &s, 7, &[2, 1], &[3]).expect("warns");
        assert!(
            line.starts_with(
                "4 heartbeats of cluster 7 failed authentication: they carry key id 3 that this node does not have"
            ),
            "{line}"
        );
        assert!(line.contains("(this node has key id 2, 1)") && line.contains("key files differ"), "{line}");
        assert!(!line.contains("forges"), "not blamed on a forger: {line}");
        let mut alarm = KeyAlarm::default();
        let s = Stats { bad_auth: 2, ..Stats::default() };
        let line = alarm.check(1, &s, 7, &[2], &[]).expect("warns");
        assert!(line.contains("failed authentication under a key id this node has (2)"), "{line}");
    }

    #[test]
    fn unsigned_forgeries_count_too() {
        let mut alarm = KeyAlarm::default();
        let s = Stats { unauthenticated: 4, ..Stats::default() };
        let line = alarm.check(1, &s, 7, &[1], &[]).expect("warns");
        assert!(line.starts_with("4 unsigned heartbeats (key id 0) of cluster 7"), "{line}");
    }
}
