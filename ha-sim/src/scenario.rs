//! What one seed simulates: a random cluster (its nodes, clocks and timing options) and a
//! random schedule of faults over a simulated duration. Everything here is drawn from the seed
//! before the simulation starts, so a failing schedule can be printed, shrunk and replayed.
use std::fmt;

use ha_core::{Duration, FailoverConfig, NodeConfig, Preempt};

use crate::{clock::NodeClock, rng::Rng};

pub const MS: u64 = 1_000_000;
pub const US: u64 = 1_000;
pub const SEC: u64 = 1_000_000_000;

/// Bits 0..16 of a mask name nodes, bits 16.. clients.
pub const CLIENT_BIT: u32 = 16;
pub const MAX_NODES: usize = 16;
pub const MAX_CLIENTS: usize = 3;

#[derive(Clone, Copy, Debug)]
pub struct NodeSpec {
    pub node_id: u32,
    pub priority: u32,
    pub clock: NodeClock,
    /// Global time at which its agent first starts.
    pub start: u64,
    /// Event wake (`--wake event`): kernel timers and events, heartbeats from a kernel-side
    /// schedule; else poll.
    pub event: bool,
    /// Event wake: its XDP program can answer peers' heartbeats while it holds at rest
    /// (`FailoverConfig::answer`).
    pub answer: bool,
    /// Those answers go to every peer, at most one new counter per half interval
    /// (`FailoverConfig::answer_group`); else back to the requester alone. One heartbeat link
    /// only: with several, a request's copy on the second link may come after another peer's
    /// request took a new counter, and finds none left to give within the gap, so that link
    /// would go quiet for the peers (invariant h found it).
    pub answer_group: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreemptSpec {
    Always,
    Never,
    Delay(u64),
}

#[derive(Clone, Debug)]
pub struct Cluster {
    pub nodes: Vec<NodeSpec>,
    pub interval: u64,
    pub tolerance: u64,
    pub max_tolerance: u64,
    pub hold_down: u64,
    pub leave_timeout: u64,
    pub refresh: Option<u64>,
    pub preempt: PreemptSpec,
    pub tick: u64,
    /// One-way LAN delay and its jitter when no fault adds to them.
    pub net_delay: u64,
    pub net_jitter: u64,
    /// How late a driver wakes after its deadline (timer slack, scheduling), at most.
    pub wake_slack: u64,
    /// Event wake: an expiry timer fires up to this late (hrtimer slack, softirq).
    pub timer_slack: u64,
    /// Event wake: from a post to the ring buffer to the agent's wake.
    pub ring_delay: u64,
    pub clients: usize,
    pub duration: u64,
    /// Heartbeat links between the nodes (`--iface` repeated): every heartbeat goes out on
    /// each; [`FaultKind::CutLink`] silences one. Clients and announcements use link 0.
    pub links: usize,
}

/// The one place where the simulator builds the core's configuration.
pub fn failover_config(cluster: &Cluster, node: &NodeSpec) -> FailoverConfig {
    let spec = node;
    let ns = Duration::from_nanos;
    let preempt = match cluster.preempt {
        PreemptSpec::Always => Preempt::Always,
        PreemptSpec::Never => Preempt::Never,
        PreemptSpec::Delay(d) => Preempt::Delay(ns(d)),
    };
    let node = NodeConfig {
        node_id: node.node_id,
        priority: node.priority,
        tolerance: ns(cluster.tolerance),
        max_tolerance: ns(cluster.max_tolerance),
        preempt,
        leave_timeout: ns(cluster.leave_timeout),
        hold_down: ns(cluster.hold_down),
        refresh: cluster.refresh.map(ns),
    };
    let wake = if spec.event { ha_core::Wake::Event } else { ha_core::Wake::Poll };
    FailoverConfig {
        wake,
        answer: spec.answer,
        answer_group: spec.answer_group,
        ..FailoverConfig::new(node, Duration::from_nanos(cluster.interval), Duration::from_nanos(cluster.tick))
    }
}

impl Cluster {
    /// The longest one-way delay of the LAN without faults.
    pub fn max_delay(&self) -> u64 {
        self.net_delay + self.net_jitter
    }

    /// How long after the last disturbance the cluster must have settled, each term a wait the
    /// design asks for: a (re)started or resumed node first listens for a tolerance; a silent
    /// holder is noticed within the max tolerance; a preemption waits its delay; a node that
    /// yielded holds down; the old holder lingers a tolerance after a hand-over before it
    /// removes the address; plus two intervals, a tick, and the slack of wakes and the LAN.
    pub fn settle(&self) -> u64 {
        let preempt_delay = match self.preempt {
            PreemptSpec::Delay(d) => d,
            _ => 0,
        };
        let listen = self.tolerance;
        let linger = self.tolerance;
        listen
            + self.max_tolerance
            + preempt_delay
            + self.hold_down
            + linger
            + 2 * self.interval
            + self.tick
            + 2 * self.wake_slack
            + 2 * self.max_delay()
            + self.event_bound()
    }

    /// What event wake adds to noticing a silence: a stalled agent's kernel sends its schedule
    /// up to a horizon on, a timer fires up to its slack late, and the ring buffer's wake.
    pub fn event_bound(&self) -> u64 {
        if !self.nodes.iter().any(|n| n.event) {
            return 0;
        }
        let horizon = ha_core::failover::heartbeat_horizon(Duration::from_nanos(self.interval)).as_nanos() as u64;
        horizon + self.timer_slack + self.ring_delay
    }

    /// Settle, plus the last scheduled repeat of an announcement and its way to the clients.
    pub fn client_settle(&self) -> u64 {
        let last_repeat = ha_core::failover::ANNOUNCE_REPEATS.iter().map(|d| d.as_nanos() as u64).max().unwrap_or(0);
        self.settle() + last_repeat + 2 * self.max_delay() + self.wake_slack
    }

    pub fn node_mask(&self) -> u32 {
        (1u32 << self.nodes.len()) - 1
    }

    pub fn client_mask(&self) -> u32 {
        ((1u32 << self.clients) - 1) << CLIENT_BIT
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayMode {
    /// Each recorded heartbeat again, with the spacing it had.
    Paced,
    /// The whole recording within a few milliseconds.
    Burst,
    /// The last recorded ACTIVE heartbeat (or the last one), once.
    Single,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultKind {
    /// Each packet from a `from` to a `to` endpoint lost with this chance.
    Loss {
        from: u32,
        to: u32,
        rate: f64,
    },
    /// Gilbert-Elliott: a good and a bad state per link.
    BurstLoss {
        from: u32,
        to: u32,
        enter_bad: f64,
        leave_bad: f64,
        bad_loss: f64,
    },
    Delay {
        from: u32,
        to: u32,
        extra: u64,
        jitter: u64,
    },
    Reorder {
        from: u32,
        to: u32,
        chance: f64,
        extra: u64,
    },
    Duplicate {
        from: u32,
        to: u32,
        chance: f64,
    },
    /// Nodes in `side` cannot reach the others (`symmetric`), or only `side` -> others is cut.
    Partition {
        side: u32,
        symmetric: bool,
    },
    /// The agent stops running (SIGSTOP); with `machine`, the whole machine (its kernel table
    /// does not record, it answers nothing).
    Pause {
        node: usize,
        machine: bool,
    },
    /// SIGKILL of the agent at `start`; restarted at `end` when `restart`. Its address stays
    /// configured meanwhile, as a real SIGKILL leaves it.
    Crash {
        node: usize,
        restart: bool,
    },
    /// A clean stop (`Command::Leave`) at `start`; started again at `end` when `restart`.
    Stop {
        node: usize,
        restart: bool,
    },
    /// Maintenance on at `start`, off at `end`.
    Maintenance {
        node: usize,
    },
    /// The node's worthiness from its checks (0: checks failing) from `start` to `end`.
    Priority {
        node: usize,
        value: u32,
    },
    LinkDown {
        node: usize,
    },
    /// The node's tracked interface (`--track-iface`) is down: its priority drops by `weight`,
    /// or with weight 0 to 0 (FAULT), through `ha_core::track`.
    TrackDown {
        node: usize,
        weight: u32,
    },
    /// Heartbeats over one of the node's heartbeat links are lost both ways (its NIC, cable or
    /// switch on that path); clients and the other links are not affected.
    CutLink {
        node: usize,
        link: usize,
    },
    /// The attacker replays `origin`'s heartbeats it saw on the LAN in `[rec_start, rec_end)`
    /// to `targets`, from `start` on.
    Replay {
        origin: usize,
        targets: u32,
        rec_start: u64,
        rec_end: u64,
        mode: ReplayMode,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub start: u64,
    pub end: u64,
}

pub const KIND_NAMES: [&str; 19] = [
    "loss",
    "burst_loss",
    "delay",
    "reorder",
    "duplicate",
    "partition",
    "partition_asym",
    "pause_agent",
    "pause_machine",
    "crash",
    "stop",
    "maintenance",
    "priority",
    "check_fail",
    "link_down",
    "replay",
    "cut_link",
    "track_down",
    "clock_rate",
];

impl FaultKind {
    /// Index into [`KIND_NAMES`].
    pub fn kind_index(&self) -> usize {
        match self {
            FaultKind::Loss { .. } => 0,
            FaultKind::BurstLoss { .. } => 1,
            FaultKind::Delay { .. } => 2,
            FaultKind::Reorder { .. } => 3,
            FaultKind::Duplicate { .. } => 4,
            FaultKind::Partition { symmetric: true, .. } => 5,
            FaultKind::Partition { symmetric: false, .. } => 6,
            FaultKind::Pause { machine: false, .. } => 7,
            FaultKind::Pause { machine: true, .. } => 8,
            FaultKind::Crash { .. } => 9,
            FaultKind::Stop { .. } => 10,
            FaultKind::Maintenance { .. } => 11,
            FaultKind::Priority { value, .. } if *value > 0 => 12,
            FaultKind::Priority { .. } => 13,
            FaultKind::LinkDown { .. } => 14,
            FaultKind::Replay { .. } => 15,
            FaultKind::CutLink { .. } => 16,
            FaultKind::TrackDown { .. } => 17,
        }
    }

    /// An operator's planned change (what invariant (c) is about), not a failure.
    pub fn is_planned(&self) -> bool {
        matches!(
            self,
            FaultKind::Stop { .. }
                | FaultKind::Maintenance { .. }
                | FaultKind::Priority { .. }
                | FaultKind::TrackDown { .. }
        )
    }
}

impl Fault {
    /// The spans of global time during which this fault disturbs the cluster (the cluster must
    /// settle after each). A change at one instant (a crash, a command, a link flap) is a span
    /// of zero length; a condition that lasts (loss, a partition, a pause, a replay) disturbs
    /// for as long as it lasts.
    pub fn disturbances(&self, cluster: &Cluster) -> Vec<(u64, u64)> {
        let (s, e) = (self.start, self.end);
        match self.kind {
            FaultKind::Loss { .. }
            | FaultKind::BurstLoss { .. }
            | FaultKind::Delay { .. }
            | FaultKind::Reorder { .. }
            | FaultKind::Duplicate { .. }
            | FaultKind::Partition { .. }
            | FaultKind::Pause { .. }
            | FaultKind::CutLink { .. }
            | FaultKind::Replay { .. } => vec![(s, e + self.extra_delay())],
            FaultKind::Crash { restart, .. } => {
                if restart {
                    vec![(s, s), (e, e)]
                } else {
                    vec![(s, s)]
                }
            }
            FaultKind::Stop { restart, .. } => {
                let leave = (s, s + cluster.leave_timeout);
                if restart { vec![leave, (e, e)] } else { vec![leave] }
            }
            FaultKind::Maintenance { .. }
            | FaultKind::Priority { .. }
            | FaultKind::TrackDown { .. }
            | FaultKind::LinkDown { .. } => {
                vec![(s, s), (e, e)]
            }
        }
    }

    /// Packets in flight when a delaying fault ends still arrive late.
    fn extra_delay(&self) -> u64 {
        match self.kind {
            FaultKind::Delay { extra, jitter, .. } => extra + jitter,
            FaultKind::Reorder { extra, .. } => extra,
            _ => 0,
        }
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn mask(m: u32) -> String {
    let mut parts = Vec::new();
    for b in 0..32 {
        if m & (1 << b) != 0 {
            if b < CLIENT_BIT { parts.push(format!("n{b}")) } else { parts.push(format!("c{}", b - CLIENT_BIT)) }
        }
    }
    format!("{{{}}}", parts.join(","))
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>9.3} ms .. {:>9.3} ms] ", ms(self.start), ms(self.end))?;
        match self.kind {
            FaultKind::Loss { from, to, rate } => write!(f, "loss {:.0}% {} -> {}", rate * 100.0, mask(from), mask(to)),
            FaultKind::BurstLoss { from, to, enter_bad, leave_bad, bad_loss } => write!(
                f,
                "burst loss (enter {:.3}, leave {:.3}, bad {:.0}%) {} -> {}",
                enter_bad,
                leave_bad,
                bad_loss * 100.0,
                mask(from),
                mask(to)
            ),
            FaultKind::Delay { from, to, extra, jitter } => {
                write!(f, "delay +{:.3} ms jitter {:.3} ms {} -> {}", ms(extra), ms(jitter), mask(from), mask(to))
            }
            FaultKind::Reorder { from, to, chance, extra } => {
                write!(f, "reorder {:.0}% by {:.3} ms {} -> {}", chance * 100.0, ms(extra), mask(from), mask(to))
            }
            FaultKind::Duplicate { from, to, chance } => {
                write!(f, "duplicate {:.0}% {} -> {}", chance * 100.0, mask(from), mask(to))
            }
            FaultKind::Partition { side, symmetric } => {
                write!(f, "partition {} {} rest", mask(side), if symmetric { "<-/->" } else { "-/->" })
            }
            FaultKind::Pause { node, machine } => {
                write!(f, "pause n{node} ({})", if machine { "whole machine" } else { "agent, SIGSTOP" })
            }
            FaultKind::Crash { node, restart } => {
                write!(f, "crash n{node} (SIGKILL){}", if restart { ", restart at end" } else { "" })
            }
            FaultKind::Stop { node, restart } => {
                write!(f, "clean stop n{node}{}", if restart { ", start again at end" } else { "" })
            }
            FaultKind::Maintenance { node } => write!(f, "maintenance n{node} on, off at end"),
            FaultKind::Priority { node, value } => write!(f, "priority n{node} = {value}, restored at end"),
            FaultKind::LinkDown { node } => write!(f, "link down n{node}, up at end"),
            FaultKind::CutLink { node, link } => write!(f, "heartbeat link {link} of n{node} cut"),
            FaultKind::TrackDown { node, weight: 0 } => {
                write!(f, "tracked interface of n{node} down (FAULT), up at end")
            }
            FaultKind::TrackDown { node, weight } => {
                write!(f, "tracked interface of n{node} down (weight {weight}), up at end")
            }
            FaultKind::Replay { origin, targets, rec_start, rec_end, mode } => write!(
                f,
                "replay {mode:?} of n{origin}'s heartbeats seen in [{:.3} ms, {:.3} ms) to {}",
                ms(rec_start),
                ms(rec_end),
                mask(targets)
            ),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub cluster: Cluster,
    pub faults: Vec<Fault>,
}

impl Scenario {
    /// Keeps only the faults at these indices (to shrink a failing schedule).
    pub fn keep_faults(&mut self, keep: &[usize]) {
        self.faults = self.faults.iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, f)| *f).collect();
    }

    pub fn generate(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed);
        let mut cluster = gen_cluster(&mut rng);
        let mut faults = gen_faults(&mut rng, &cluster);
        // From a stream of its own, so that the other draws of a seed stay what they were.
        gen_links(&mut Rng::derive(seed, 0x11a5), &mut cluster, &mut faults);
        // As the agent: answers to the group on one heartbeat link only (see `answer_group`).
        if cluster.links > 1 {
            cluster.nodes.iter_mut().for_each(|n| n.answer_group = false);
        }
        gen_tracking(&mut Rng::derive(seed, 0x7ac4), &cluster, &mut faults);
        Scenario { seed, cluster, faults }
    }
}

fn gen_cluster(rng: &mut Rng) -> Cluster {
    let n = rng.weighted(&[(40, 2usize), (28, 3), (12, 4), (8, 5), (7, 6), (5, 16)]);
    let n = if n == 16 {
        rng.range(7, 16) as usize
    } else if n == 6 {
        rng.range(6, 8) as usize
    } else {
        n
    };
    let interval = rng.log_range(MS, 100 * MS);
    let tolerance = interval * rng.range(3, 6);
    let max_tolerance = match rng.range(0, 99) {
        0..=14 => tolerance,
        15..=54 => 2 * tolerance,
        _ => tolerance * rng.range(2, 5),
    };
    let hold_down = match rng.range(0, 99) {
        0..=19 => 0,
        20..=79 => 3 * tolerance,
        _ => tolerance * rng.range(1, 5),
    };
    let preempt = match rng.range(0, 99) {
        0..=44 => PreemptSpec::Always,
        45..=79 => PreemptSpec::Never,
        _ => PreemptSpec::Delay(interval * rng.range(1, 10)),
    };
    let refresh = if rng.chance(0.3) { Some(rng.log_range(200 * MS, 5 * SEC)) } else { None };
    let leave_timeout = (interval * rng.range(5, 40)).clamp(20 * MS, SEC);
    let skew = rng.chance(0.8);
    let late_joiners = rng.chance(0.2);
    let mut ids: Vec<u32> = Vec::with_capacity(n);
    while ids.len() < n {
        let id = 0x0a00_0000 + rng.range(1, 254) as u32;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let beats = rng.range(300, 2500);
    let mut duration = (beats * interval).clamp(3 * SEC, 60 * SEC);
    let priorities = [50, 100, 100, 150, 200, 250];
    let nodes: Vec<NodeSpec> = ids
        .iter()
        .map(|&node_id| NodeSpec {
            node_id,
            priority: if rng.chance(0.8) { priorities[rng.range(0, 5) as usize] } else { rng.range(1, 255) as u32 },
            clock: NodeClock {
                offset: rng.range(SEC, 1_000_000 * SEC),
                ppb: if skew { rng.range(0, 400_000) as i64 - 200_000 } else { 0 },
            },
            start: if late_joiners && rng.chance(0.3) { rng.range(0, duration / 3) } else { rng.range(0, interval) },
            event: false,
            answer: false,
            answer_group: false,
        })
        .collect();
    let net_delay = rng.range(20 * US, 300 * US);
    let net_jitter = rng.range(0, 100 * US);
    let wake_slack = match rng.range(0, 99) {
        0..=19 => 0,
        20..=79 => rng.range(1, 50 * US),
        _ => rng.range(50 * US, (interval / 4).clamp(50 * US, 500 * US)),
    };
    // Event wake from a stream of its own, so the draws above (and every seed's cluster) stay.
    let mixed = interval ^ tolerance.rotate_left(17) ^ wake_slack.rotate_left(31) ^ hold_down.rotate_left(47);
    let mut ev = Rng::derive(mixed, 0xe7e7);
    let (timer_slack, ring_delay) = (ev.range(0, 100 * US), ev.range(US, 200 * US));
    let mut nodes = nodes;
    match ev.range(0, 2) {
        0 => {}
        1 => nodes.iter_mut().for_each(|n| n.event = true),
        _ => nodes.iter_mut().for_each(|n| n.event = ev.range(0, 1) == 1),
    }
    // Kernel answers from a stream of their own too: two event clusters in three answer.
    let mut answers = Rng::derive(mixed, 0xa115);
    if answers.range(0, 2) != 0 {
        nodes.iter_mut().for_each(|n| n.answer = n.event);
        // Half of those to the group, as over multicast (a stream of its own again).
        if Rng::derive(mixed, 0x96a0).range(0, 1) == 1 {
            nodes.iter_mut().for_each(|n| n.answer_group = n.answer);
        }
    }
    let mut cluster = Cluster {
        nodes,
        interval,
        tolerance,
        max_tolerance,
        hold_down,
        leave_timeout,
        refresh,
        preempt,
        tick: interval,
        net_delay,
        net_jitter,
        wake_slack,
        timer_slack,
        ring_delay,
        clients: rng.range(1, MAX_CLIENTS as u64) as usize,
        duration,
        links: 1,
    };
    // Room for a few faults and the settling after each.
    duration = duration.max(6 * cluster.client_settle()).min(120 * SEC);
    cluster.duration = duration;
    cluster
}

/// Redundant heartbeat links in some clusters, with cuts of one link, and sometimes of every
/// link of one node (which is then lost to the others, as in an asymmetric partition).
fn gen_links(rng: &mut Rng, cluster: &mut Cluster, faults: &mut Vec<Fault>) {
    if !rng.chance(0.35) {
        return;
    }
    cluster.links = rng.range(2, 3) as usize;
    let settle = cluster.client_settle();
    let n = cluster.nodes.len();
    for _ in 0..rng.range(1, 4) {
        let start = rng.range(settle, cluster.duration.saturating_sub(3 * settle).max(settle + 1));
        let end = start + rng.log_range(cluster.interval, 4 * settle);
        if end + settle >= cluster.duration {
            continue;
        }
        let node = rng.range(0, n as u64 - 1) as usize;
        let every = rng.chance(0.3);
        let one = rng.range(0, cluster.links as u64 - 1) as usize;
        for link in 0..cluster.links {
            if every || link == one {
                faults.push(Fault { kind: FaultKind::CutLink { node, link }, start, end });
            }
        }
    }
    faults.sort_by_key(|f| f.start);
}

/// Tracked interfaces going down in some clusters: with a weight, or FAULT.
fn gen_tracking(rng: &mut Rng, cluster: &Cluster, faults: &mut Vec<Fault>) {
    if !rng.chance(0.25) {
        return;
    }
    let settle = cluster.client_settle();
    let n = cluster.nodes.len();
    for _ in 0..rng.range(1, 2) {
        let start = rng.range(settle, cluster.duration.saturating_sub(3 * settle).max(settle + 1));
        let end = start + rng.range(settle, 5 * settle);
        if end + settle >= cluster.duration {
            continue;
        }
        let node = rng.range(0, n as u64 - 1) as usize;
        let weight = if rng.chance(0.5) { 0 } else { rng.range(1, 255) as u32 };
        faults.push(Fault { kind: FaultKind::TrackDown { node, weight }, start, end });
    }
    faults.sort_by_key(|f| f.start);
}

fn some_nodes(rng: &mut Rng, n: usize) -> u32 {
    loop {
        let m = rng.range(1, (1u64 << n) - 2) as u32;
        if m != 0 && m != (1u32 << n) - 1 {
            return m;
        }
    }
}

/// A set of directed links: all, from one node, to one node, or one pair.
fn links(rng: &mut Rng, cluster: &Cluster) -> (u32, u32) {
    let n = cluster.nodes.len();
    let all = cluster.node_mask() | cluster.client_mask();
    let one = 1u32 << rng.range(0, n as u64 - 1);
    match rng.range(0, 3) {
        0 => (all, all),
        1 => (one, all),
        2 => (all, one),
        _ => (one, 1u32 << rng.range(0, n as u64 - 1)),
    }
}

fn gen_faults(rng: &mut Rng, cluster: &Cluster) -> Vec<Fault> {
    let n = cluster.nodes.len();
    let settle = cluster.client_settle();
    let iv = cluster.interval;
    let count = rng.weighted(&[(8, 0usize), (18, 1), (24, 2), (20, 3), (16, 4), (14, 6)]);
    let first = cluster.nodes.iter().map(|s| s.start).max().unwrap_or(0) + settle;
    let mut cursor = first;
    let mut faults: Vec<Fault> = Vec::new();
    // Invariant (e) needs long steady loss with nothing else going on: give it its own room.
    if rng.chance(0.15) {
        let all = cluster.node_mask() | cluster.client_mask();
        let rate = rng.range(5, 30) as f64 / 100.0;
        let start = cursor + rng.range(0, settle);
        let end = start + iv * rng.range(300, 1500);
        if end + 2 * settle < cluster.duration {
            faults.push(Fault { kind: FaultKind::Loss { from: all, to: all, rate }, start, end });
            cursor = end + settle;
        }
    }
    for _ in 0..count {
        let kind = rng.weighted(&[
            (10, 0u8),
            (8, 1),
            (5, 2),
            (4, 3),
            (4, 4),
            (8, 5),
            (5, 6),
            (6, 7),
            (6, 8),
            (9, 9),
            (7, 10),
            (8, 11),
            (9, 12),
            (7, 14),
            (9, 15),
        ]);
        let overlap = !faults.is_empty() && rng.chance(0.25);
        let start = match faults.last() {
            Some(prev) if overlap => prev.start + rng.range(0, prev.end.saturating_sub(prev.start)),
            _ => cursor + rng.range(settle / 4, 3 * settle),
        };
        let node = rng.range(0, n as u64 - 1) as usize;
        let mut start_at = start;
        let (kind, len) = match kind {
            0 => {
                let (from, to) = links(rng, cluster);
                let rate =
                    if rng.chance(0.7) { rng.range(1, 30) as f64 / 100.0 } else { rng.range(31, 100) as f64 / 100.0 };
                (FaultKind::Loss { from, to, rate }, iv * rng.range(50, 1500))
            }
            1 => {
                let (from, to) = links(rng, cluster);
                let kind = FaultKind::BurstLoss {
                    from,
                    to,
                    enter_bad: rng.range(1, 20) as f64 / 100.0,
                    leave_bad: rng.range(5, 60) as f64 / 100.0,
                    bad_loss: rng.range(50, 100) as f64 / 100.0,
                };
                (kind, iv * rng.range(50, 1000))
            }
            2 => {
                let (from, to) = links(rng, cluster);
                let kind = FaultKind::Delay {
                    from,
                    to,
                    extra: rng.log_range(100 * US, 2 * iv),
                    jitter: rng.log_range(10 * US, 2 * iv),
                };
                (kind, iv * rng.range(20, 300))
            }
            3 => {
                let (from, to) = links(rng, cluster);
                let kind = FaultKind::Reorder {
                    from,
                    to,
                    chance: rng.range(1, 50) as f64 / 100.0,
                    extra: rng.log_range(iv / 2, 3 * iv),
                };
                (kind, iv * rng.range(20, 300))
            }
            4 => {
                let (from, to) = links(rng, cluster);
                (FaultKind::Duplicate { from, to, chance: rng.range(1, 50) as f64 / 100.0 }, iv * rng.range(20, 300))
            }
            5 | 6 => {
                let kind = FaultKind::Partition { side: some_nodes(rng, n), symmetric: kind == 5 };
                (kind, rng.log_range(cluster.tolerance / 2, 4 * settle))
            }
            7 | 8 => {
                let kind = FaultKind::Pause { node, machine: kind == 8 };
                (kind, rng.log_range(iv / 2, 5 * cluster.max_tolerance))
            }
            9 => (FaultKind::Crash { node, restart: rng.chance(0.75) }, rng.log_range(cluster.tolerance, 4 * settle)),
            10 => (FaultKind::Stop { node, restart: rng.chance(0.6) }, rng.range(settle, 4 * settle)),
            11 => (FaultKind::Maintenance { node }, rng.range(settle, 5 * settle)),
            12 => {
                let value = if rng.chance(0.3) { 0 } else { rng.range(1, 255) as u32 };
                (FaultKind::Priority { node, value }, rng.range(settle, 5 * settle))
            }
            14 => (FaultKind::LinkDown { node }, rng.log_range(iv, 4 * settle)),
            _ => {
                let rec_len = iv * rng.range(1, 200);
                let rec_end = start.saturating_sub(rng.range(0, 2 * settle)).max(first);
                let rec_start = rec_end.saturating_sub(rec_len).max(first / 2);
                let mode = rng.weighted(&[(5, ReplayMode::Paced), (3, ReplayMode::Burst), (2, ReplayMode::Single)]);
                let other = (node + rng.range(1, n as u64 - 1) as usize) % n;
                let targets = if rng.chance(0.5) { cluster.node_mask() & !(1 << node) } else { 1 << other };
                let kind = FaultKind::Replay { origin: node, targets, rec_start, rec_end, mode };
                // The dangerous case on purpose: the origin dies after the recording, and
                // sometimes a target restarts with an empty table before the replay.
                if rng.chance(0.5) {
                    let crash_at = rec_end + rng.range(0, settle / 2);
                    faults.push(Fault {
                        kind: FaultKind::Crash { node, restart: false },
                        start: crash_at,
                        end: cluster.duration,
                    });
                    start_at = start_at.max(crash_at + rng.range(0, 2 * settle));
                    if rng.chance(0.6) {
                        let t = (0..n).find(|&i| i != node && targets & (1 << i) != 0).unwrap_or(node);
                        if t != node {
                            let at = crash_at + rng.range(settle / 2, settle);
                            let back = at + rng.range(cluster.interval, cluster.tolerance);
                            faults.push(Fault {
                                kind: FaultKind::Crash { node: t, restart: true },
                                start: at,
                                end: back,
                            });
                            start_at = start_at.max(back + rng.range(0, cluster.tolerance));
                        }
                    }
                }
                (kind, rng.range(iv, 200 * iv))
            }
        };
        let start = start_at;
        let permanent =
            matches!(kind, FaultKind::Crash { restart: false, .. } | FaultKind::Stop { restart: false, .. });
        let end = if permanent { cluster.duration } else { start + len.max(1) };
        if start + settle >= cluster.duration || (!permanent && end + settle >= cluster.duration) {
            break;
        }
        faults.push(Fault { kind, start, end });
        cursor = cursor.max(if permanent { start } else { end });
    }
    faults.retain(|f| f.start < cluster.duration);
    faults.sort_by_key(|f| f.start);
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_scenario_and_sane_ranges() {
        for seed in 0..500 {
            let a = Scenario::generate(seed);
            let b = Scenario::generate(seed);
            assert_eq!(a.faults, b.faults);
            let c = &a.cluster;
            assert!((2..=MAX_NODES).contains(&c.nodes.len()));
            assert!(c.tolerance >= 3 * c.interval && c.max_tolerance >= c.tolerance);
            for f in &a.faults {
                assert!(f.start <= f.end && f.start < c.duration, "{f}");
            }
        }
    }
}
