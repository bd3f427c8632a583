//! The peer table as operators read it (`ha-agent peers`).
use std::fmt::Write;

use ha_common::{
    maps::{PeerRecord, Stats},
    wire::{FLAG_LEAVING, FLAG_MAINTENANCE, NodeState},
};

use crate::node::id;

pub fn peer_table(peers: &[(u32, PeerRecord)], stats: &Stats, now_ns: u64) -> String {
    let mut rows: Vec<&(u32, PeerRecord)> = peers.iter().collect();
    rows.sort_by_key(|(node, rec)| (std::cmp::Reverse(rec.priority), *node));
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {:<16} {:<8} {:>8} {:>10} {:>10} {:>10}  flags", "node", "address", "state", "priority", "age ms", "seq", "received");
    for (node, rec) in rows {
        let state = NodeState::from_u8(rec.state).map_or("?", NodeState::name);
        let age_ms = now_ns.saturating_sub(rec.last_seen_ns) as f64 / 1e6;
        let mut flags = Vec::new();
        if rec.flags & FLAG_LEAVING != 0 {
            flags.push("leaving");
        }
        if rec.flags & FLAG_MAINTENANCE != 0 {
            flags.push("maintenance");
        }
        let addr = std::net::Ipv4Addr::from(rec.addr);
        let _ = writeln!(
            out,
            "{:<16} {:<16} {:<8} {:>8} {:>10.1} {:>10} {:>10}  {}",
            id(*node).to_string(),
            addr.to_string(),
            state,
            rec.priority,
            age_ms,
            rec.counter,
            rec.received,
            flags.join(",")
        );
    }
    let drops: Vec<String> = stats.drops().iter().filter(|(_, n)| *n > 0).map(|(name, n)| format!("{name}={n}")).collect();
    let _ = writeln!(out, "heartbeats recorded: {}; dropped: {}", stats.valid, if drops.is_empty() { "none".to_string() } else { drops.join(" ") });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_age_state_and_drops() {
        let rec = PeerRecord { last_seen_ns: 1_000_000, priority: 150, state: 2, counter: 9, received: 9, addr: [192, 0, 2, 2], flags: FLAG_LEAVING, ..PeerRecord::default() };
        let stats = Stats { valid: 9, stale: 2, ..Stats::default() };
        let text = peer_table(&[(0xc000_0202, rec)], &stats, 3_500_000);
        assert!(text.contains("192.0.2.2"), "{text}");
        assert!(text.contains("ACTIVE") && text.contains("2.5") && text.contains("leaving"), "{text}");
        assert!(text.contains("stale=2"), "{text}");
    }
}
