//! What the running agent tells operators: its state and why, and its peers. Published by the
//! run loop, served over the control socket (`ha-agent status`), shown as a table or JSON.
use std::{collections::BTreeMap, fmt::Write};

use ha_common::{
    maps::{PeerRecord, Stats},
    wire::{FLAG_CONFIRMING, FLAG_LEAVING, FLAG_MAINTENANCE, NodeState},
};
use serde::{Deserialize, Serialize};

use ha_core::node::id;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerStatus {
    pub node_id: String,
    pub address: String,
    pub state: String,
    pub priority: u32,
    pub age_ms: f64,
    pub live: bool,
    pub seq: u64,
    pub received: u64,
    /// Estimated share of its heartbeats lost lately, in percent (known to a running agent only).
    pub loss_pct: Option<f64>,
    /// How long it may be silent and still count as live: the tolerance, more under loss.
    pub limit_ms: Option<f64>,
    pub flags: Vec<String>,
}

/// A peer's silence limit (ns) and loss rate (0..1), when the caller knows them.
pub type PeerLiveness = Option<(u64, f64)>;

/// One health check as `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckStatus {
    pub command: String,
    /// pending, passing or failing.
    pub state: String,
    /// Why it fails: exit status or timeout, and its last line of output.
    pub detail: String,
}

/// One group's state (`--vip-group`, `[[group]]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupStatus {
    pub id: u8,
    pub state: String,
    pub priority: u32,
    pub preempt: String,
    pub vips: Vec<String>,
    /// The peer holding it, if another node does.
    pub holder: Option<String>,
    pub since_unix_ms: u64,
    pub reason: String,
    pub detail: String,
}

/// Missing fields default, so `status` of one version reads an agent of another.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub node_id: String,
    pub iface: String,
    pub cluster: u32,
    pub vips: Vec<String>,
    pub state: String,
    /// Wall-clock milliseconds since the epoch of the last transition (or the start).
    pub since_unix_ms: u64,
    /// Why it is in this state: the stable label `events` and hooks carry (e.g. `holder_silent`).
    pub reason: String,
    /// The same reason in words, with its measured timings (as `events` carries it).
    pub detail: String,
    /// Worthiness announced now.
    pub priority: u32,
    /// What makes up the priority: the configured base, then each adjustment.
    pub priority_parts: Vec<(String, i64)>,
    /// The priority set at run time (`ha-agent priority set`), replacing the configured one.
    pub priority_set: Option<u32>,
    pub maintenance: bool,
    pub leaving: bool,
    pub link_up: bool,
    pub interval_ms: f64,
    pub tolerance_ms: f64,
    pub preempt: String,
    pub heartbeats_sent: u64,
    /// Heartbeat sends the kernel refused (one per target), e.g. no route or the link down.
    pub heartbeat_send_errors: u64,
    /// How late scheduled heartbeats left (the sender's precision).
    pub send_lateness: super::lateness::LatenessSummary,
    pub transitions: u64,
    pub heartbeats_recorded: u64,
    pub drops: BTreeMap<String, u64>,
    /// Which receive path counts `drops`: `xdp` or `socket`.
    pub rx_path: String,
    /// How the agent wakes: `event` (kernel timers and events) or `poll` (a tick).
    pub wake: String,
    /// Events the kernel posted (`--wake event`), and those lost to a full ring buffer.
    pub kernel_events: u64,
    pub kernel_events_lost: u64,
    /// Peers' heartbeats the kernel answered with one of this node's own (XDP, event wake).
    pub heartbeats_answered: u64,
    /// Heartbeat datagrams the kernel dropped, the receive socket's buffer full (`--rx socket`
    /// only: XDP reads frames before any socket buffer).
    pub socket_buffer_drops: Option<u64>,
    pub peers: Vec<PeerStatus>,
    /// The heartbeat links (`--iface`), the first first.
    pub links: Vec<String>,
    /// Each peer on each link, with several links.
    pub peer_links: Vec<crate::links::PeerLinkStatus>,
    pub checks: Vec<CheckStatus>,
    /// Claims for a shared address by other MACs (gratuitous ARP, NA), seen by XDP.
    pub foreign_claims: u64,
    pub last_foreign_claim: Option<super::foreign_claims::ClaimStatus>,
    /// Of those, the ones this holder answered by announcing the address again.
    pub foreign_claims_defended: u64,
    /// Each group, with groups (`state` above is then the node's: ACTIVE while it holds any).
    pub groups: Vec<GroupStatus>,
}

/// A peer's flags as words; `unconfirmed`: none of its heartbeats echoed our run yet (it may be
/// a recording: decisions ignore it).
pub fn flag_names(flags: u8, confirmed: bool) -> Vec<String> {
    let mut names = Vec::new();
    if !confirmed {
        names.push("unconfirmed".to_string());
    }
    if flags & FLAG_CONFIRMING != 0 {
        names.push("confirming".to_string());
    }
    if flags & FLAG_LEAVING != 0 {
        names.push("leaving".to_string());
    }
    if flags & FLAG_MAINTENANCE != 0 {
        names.push("maintenance".to_string());
    }
    names
}

/// Peer rows from the map, most worthy first.
/// `liveness` gives each peer's silence limit and loss (None: judge it by `tolerance_ns`).
pub fn peer_rows(
    peers: &[(u32, PeerRecord)],
    now_ns: u64,
    tolerance_ns: u64,
    liveness: impl Fn(u32) -> PeerLiveness,
) -> Vec<PeerStatus> {
    let mut rows: Vec<PeerStatus> = peers
        .iter()
        .map(|(node, rec)| {
            let age = now_ns.saturating_sub(rec.last_seen_ns);
            let known = liveness(*node);
            let limit = known.map_or(tolerance_ns, |(limit, _)| limit);
            PeerStatus {
                node_id: id(*node).to_string(),
                address: std::net::Ipv4Addr::from(rec.addr).to_string(),
                state: NodeState::from_u8(rec.state).map_or("?", NodeState::name).to_string(),
                priority: rec.priority,
                age_ms: age as f64 / 1e6,
                live: age <= limit && rec.confirmed != 0,
                seq: rec.counter,
                received: rec.received,
                loss_pct: known.map(|(_, loss)| loss * 100.0),
                limit_ms: known.map(|(limit, _)| limit as f64 / 1e6),
                flags: flag_names(rec.flags, rec.confirmed != 0),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.priority.cmp(&a.priority).then(b.node_id.cmp(&a.node_id)));
    rows
}

pub fn drops(stats: &Stats) -> BTreeMap<String, u64> {
    stats.drops().iter().map(|(name, n)| (name.to_string(), *n)).collect()
}

fn peer_lines(out: &mut String, peers: &[PeerStatus]) {
    let _ = writeln!(
        out,
        "{:<16} {:<16} {:<8} {:>8} {:>10} {:>10} {:>10} {:>7} {:>9}  flags",
        "node", "address", "state", "priority", "age ms", "seq", "received", "loss %", "limit ms"
    );
    let or_dash = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for p in peers {
        let mut flags = p.flags.clone();
        if !p.live {
            flags.push("dead".into());
        }
        let _ = writeln!(
            out,
            "{:<16} {:<16} {:<8} {:>8} {:>10.1} {:>10} {:>10} {:>7} {:>9}  {}",
            p.node_id,
            p.address,
            p.state,
            p.priority,
            p.age_ms,
            p.seq,
            p.received,
            or_dash(p.loss_pct),
            or_dash(p.limit_ms),
            flags.join(",")
        );
    }
}

/// Milliseconds as the command line spells a duration ("100ms").
fn spell_ms(ms: f64) -> String {
    crate::config::values::spell_duration(std::time::Duration::from_nanos((ms * 1e6).round() as u64))
}

fn drop_line(recorded: u64, drops: &BTreeMap<String, u64>) -> String {
    let nonzero: Vec<String> = drops.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k}={n}")).collect();
    let dropped = if nonzero.is_empty() { "none".to_string() } else { nonzero.join(" ") };
    format!("heartbeats recorded: {recorded}; dropped: {dropped}\n")
}

/// The peer table alone (`ha-agent peers`, from pinned maps).
pub fn peer_table(peers: &[(u32, PeerRecord)], stats: &Stats, now_ns: u64, tolerance_ns: u64) -> String {
    let mut out = String::new();
    peer_lines(&mut out, &peer_rows(peers, now_ns, tolerance_ns, |_| None));
    out.push_str(&drop_line(stats.valid, &drops(stats)));
    out
}

/// The human status (`ha-agent status`).
pub fn render(s: &Status, now_unix_ms: u64) -> String {
    let mut out = String::new();
    let since_s = now_unix_ms.saturating_sub(s.since_unix_ms) as f64 / 1e3;
    let mut modes = Vec::new();
    if s.maintenance {
        modes.push("maintenance");
    }
    if s.leaving {
        modes.push("leaving");
    }
    if !s.link_up {
        modes.push("link down");
    }
    let modes = if modes.is_empty() { String::new() } else { format!(" [{}]", modes.join(", ")) };
    let _ = writeln!(
        out,
        "node {} on {} (cluster {}): {}{} for {:.1} s: {} [{}]",
        s.node_id, s.iface, s.cluster, s.state, modes, since_s, s.detail, s.reason
    );
    let parts: Vec<String> = s.priority_parts.iter().map(|(name, v)| format!("{name} {v:+}")).collect();
    let set = match s.priority_set {
        Some(p) => format!(" [set at run time to {p}: `ha-agent priority reset` returns to the configured]"),
        None => String::new(),
    };
    let _ = writeln!(out, "priority {} ({}){set}; shared {}", s.priority, parts.join(", "), s.vips.join(" "));
    for g in &s.groups {
        let held = g.holder.as_ref().map_or(String::new(), |h| format!(", held by {h}"));
        let since_s = now_unix_ms.saturating_sub(g.since_unix_ms) as f64 / 1e3;
        let _ = writeln!(
            out,
            "group {}: {} for {since_s:.1} s{held}, priority {}, preempt {}, shared {}: {} [{}]",
            g.id,
            g.state,
            g.priority,
            g.preempt,
            g.vips.join(" "),
            g.detail,
            g.reason
        );
    }
    let _ = writeln!(
        out,
        "interval {}, tolerance {}, preempt {}, wake {}; {} heartbeats sent (late by p50 {} us, p99 {} us, max {} us), {} transitions",
        spell_ms(s.interval_ms),
        spell_ms(s.tolerance_ms),
        s.preempt,
        s.wake,
        s.heartbeats_sent,
        s.send_lateness.p50_us,
        s.send_lateness.p99_us,
        s.send_lateness.max_us,
        s.transitions
    );
    if s.heartbeat_send_errors > 0 {
        let _ = writeln!(out, "heartbeat sends refused by the kernel: {}", s.heartbeat_send_errors);
    }
    if s.heartbeats_answered > 0 {
        let _ = writeln!(out, "peers' heartbeats the kernel answered for this node: {}", s.heartbeats_answered);
    }
    for c in &s.checks {
        let detail = if c.detail.is_empty() { String::new() } else { format!(" ({})", c.detail) };
        let _ = writeln!(out, "check `{}`: {}{detail}", c.command, c.state);
    }
    peer_lines(&mut out, &s.peers);
    for l in &s.peer_links {
        let _ = writeln!(
            out,
            "  {} on {}: {}, last heard {:.0} ms ago, {} heartbeats, down {} times",
            l.node_id,
            l.link,
            if l.up { "up" } else { "DOWN" },
            l.age_ms,
            l.received,
            l.downs
        );
    }
    out.push_str(&drop_line(s.heartbeats_recorded, &s.drops));
    if let Some(n) = s.socket_buffer_drops {
        let _ = writeln!(out, "datagrams dropped by the kernel, the socket's buffer full: {n}");
    }
    if let Some(c) = &s.last_foreign_claim {
        let _ = writeln!(
            out,
            "{} claims for the shared address by other MACs ({} answered); last: {} by {}, {:.1} s ago",
            s.foreign_claims,
            s.foreign_claims_defended,
            c.address,
            c.mac,
            c.age_ms / 1e3
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_age_state_liveness_and_drops() {
        let rec = PeerRecord {
            last_seen_ns: 1_000_000,
            priority: 150,
            state: 2,
            counter: 9,
            received: 9,
            addr: [192, 0, 2, 2],
            flags: FLAG_LEAVING,
            ..PeerRecord::default()
        };
        let stats = Stats { valid: 9, stale: 2, ..Stats::default() };
        let text = peer_table(&[(0xc000_0202, rec)], &stats, 3_500_000, 1_000_000);
        assert!(text.contains("192.0.2.2"), "{text}");
        assert!(text.contains("ACTIVE") && text.contains("2.5") && text.contains("leaving,dead"), "{text}");
        assert!(text.contains("stale=2"), "{text}");
    }

    #[test]
    fn status_renders_and_round_trips_as_json() {
        let s = Status {
            node_id: "192.0.2.1".into(),
            state: "ACTIVE".into(),
            reason: "no_holder".into(),
            detail: "nobody holds the address".into(),
            interval_ms: 100.0,
            tolerance_ms: 350.0,
            preempt: "delay=5s".into(),
            wake: "event".into(),
            priority: 90,
            priority_parts: vec![("base".into(), 100), ("check web".into(), -10)],
            since_unix_ms: 1_000,
            link_up: true,
            checks: vec![CheckStatus { command: "web".into(), state: "failing".into(), detail: "exit 1: down".into() }],
            ..Status::default()
        };
        let text = render(&s, 3_500);
        assert!(text.contains("check `web`: failing (exit 1: down)"), "{text}");
        assert!(text.contains("ACTIVE for 2.5 s: nobody holds the address [no_holder]"), "{text}");
        assert!(text.contains("interval 100ms, tolerance 350ms, preempt delay=5s, wake event;"), "{text}");
        assert!(text.contains("priority 90 (base +100, check web -10)"), "{text}");
        let json = serde_json::to_string(&s).expect("json");
        assert_eq!(serde_json::from_str::<Status>(&json).expect("parse"), s);
        let older: Status = serde_json::from_str(r#"{"state":"STANDBY"}"#).expect("fields default");
        assert_eq!(older.state, "STANDBY");
    }
}
