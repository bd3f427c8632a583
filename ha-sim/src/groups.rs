//! Several groups per node (active/active): 2 to 4 nodes each run the same 2 to 4 groups
//! through [`ha_core::Groups`], with opposite preferences (each group prefers another node),
//! over a LAN with delay and jitter. The faults are the ones groups change:
//! a node crashes (SIGKILL) or stops cleanly (SIGTERM), and starts again later; each alone, the
//! cluster settled before it. Checked per group, on every step:
//!
//! - (a) stable for settle: at most one node claims the group, and one does while any node runs;
//! - (c) a clean stop: no instant where no running node holds the group's addresses
//!   (make-before-break, every group of the stopping node);
//! - (j) a node's death moves only its groups: no other node takes a group whose holder lives,
//!   until the next fault; and the dead node's groups are taken within settle.
//!
//! Heartbeats go through the same acceptance rule as in [`crate::sim`] (`ha_common::accept`,
//! [`crate::table`]): each carries every group's entry (wire version 3), and a group's view of
//! a peer is the peer as recorded with that group's entry (`Peer::for_group`).
use std::collections::BinaryHeap;

use ha_common::wire::{Heartbeat, NodeState, Sequence, TAG_LEN};
use ha_core::{
    Action, Command, Duration, FailoverConfig, GroupConfig, Groups, GroupsAction, GroupsEvent, Instant, NodeConfig,
    Peer, Preempt, Role, groups::Heartbeat as GroupsHeartbeat,
};

use crate::{queue::Item, rng::Rng, table::PeerTable};

/// A broken invariant on one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupViolation {
    pub invariant: &'static str,
    pub at_ns: u64,
    pub group: u8,
    pub detail: String,
}

#[derive(Clone, Debug, Default)]
pub struct GroupReport {
    pub seed: u64,
    pub nodes: usize,
    pub groups: usize,
    pub violations: Vec<GroupViolation>,
    pub transitions: u64,
    /// Crashes after which the check of (j) ran, and clean stops checked by (c).
    pub crashes_checked: u64,
    pub stops_checked: u64,
    pub heartbeats: u64,
    pub trace: Vec<String>,
}

/// `ha-sim --seeds` runs the groups part on every this many seeds (a run costs several of the
/// main simulation's); `--seed N` runs it always.
pub const EVERY: u64 = 4;

pub const INVARIANTS: [&str; 4] = [
    "a:at_most_one_claims_each_group",
    "a:at_least_one_claims_each_group",
    "c:clean_stop_hands_every_group_over",
    "j:a_death_moves_only_its_groups",
];

#[derive(Clone, Copy, Debug)]
enum Fault {
    Crash(usize),
    Stop(usize),
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Wake { node: usize, inc: u32 },
    Deliver { to: usize, hb: Heartbeat },
    Fault(Fault),
    Start(usize),
}

struct Agent {
    groups: Groups,
    epoch: u64,
    counter: u64,
}

struct Node {
    node_id: u32,
    agent: Option<Agent>,
    inc: u32,
    table: PeerTable,
    /// Per group: addresses configured / claimed.
    configured: Vec<bool>,
    claiming: Vec<bool>,
    starts: u64,
}

struct World {
    now: u64,
    queue: BinaryHeap<Item<Ev>>,
    seq: u64,
    rng: Rng,
    cfg: FailoverConfig,
    group_ids: Vec<u8>,
    /// Per node, per group: its priority.
    priorities: Vec<Vec<u32>>,
    preempt: Preempt,
    nodes: Vec<Node>,
    delay: (u64, u64),
    loss: f64,
    settle: u64,
    /// The last start or fault: (a) is checked from settle after it.
    last_change: u64,
    /// The last fault and when: checks are stated relative to it.
    last_fault: Option<(u64, Fault)>,
    /// (j): the holders when the current crash happened, per group.
    crash_holders: Option<(usize, Vec<Option<usize>>)>,
    /// (c): the stopping node, while its stop is checked.
    stopping: Option<usize>,
    report: GroupReport,
    trace: bool,
}

/// Runs one seed of the groups simulation.
pub fn run(seed: u64, trace: bool) -> GroupReport {
    let mut rng = Rng::derive(seed, 0x6772_6f75_7073);
    let n = rng.range(2, 4) as usize;
    let g = rng.range(2, 4) as usize;
    let interval_ms = rng.range(1, 10);
    let interval = Duration::from_millis(interval_ms);
    let tolerance = interval * rng.range(3, 6) as u32;
    let max_tolerance = tolerance * 2;
    let preempt = if rng.chance(0.75) { Preempt::Always } else { Preempt::Never };
    let node = NodeConfig {
        node_id: 0,
        priority: 0,
        tolerance,
        max_tolerance,
        preempt,
        leave_timeout: tolerance * 10,
        hold_down: Duration::ZERO,
        refresh: None,
    };
    let cfg = FailoverConfig::new(node, interval, interval);
    let group_ids: Vec<u8> = (0..g).map(|k| (k as u8 + 1) * 7).collect();
    // Group k prefers node k % n; the others follow in a seeded order.
    let priorities =
        (0..n).map(|i| (0..g).map(|k| if k % n == i { 200 } else { 100 + ((i + k) % n) as u32 }).collect()).collect();
    let nodes = (0..n)
        .map(|i| Node {
            node_id: i as u32 + 1,
            agent: None,
            inc: 0,
            table: PeerTable::default(),
            configured: vec![false; g],
            claiming: vec![false; g],
            starts: 0,
        })
        .collect();
    let tol_ns = tolerance.as_nanos() as u64;
    let int_ns = interval.as_nanos() as u64;
    let settle = 2 * max_tolerance.as_nanos() as u64 + 4 * int_ns + tol_ns * 2 + 5_000_000;
    let delay = (rng.range(20_000, 200_000), rng.range(0, 100_000));
    // No loss: a lost heartbeat is a disturbance under which (a) is not stated (see
    // `crate::invariants`); loss is the main simulation's business.
    let loss = 0.0;
    let mut w = World {
        now: 0,
        queue: BinaryHeap::new(),
        seq: 0,
        rng,
        cfg,
        group_ids,
        priorities,
        preempt,
        nodes,
        delay,
        loss,
        settle,
        last_change: 0,
        last_fault: None,
        crash_holders: None,
        stopping: None,
        report: GroupReport { seed, nodes: n, groups: g, ..GroupReport::default() },
        trace,
    };
    for i in 0..n {
        let at = w.rng.range(0, int_ns - 1);
        w.push(at, Ev::Start(i));
    }
    // Faults one after another, each with room to settle before and after.
    let faults = w.rng.range(1, 3);
    let mut t = 3 * settle;
    for _ in 0..faults {
        let who = w.rng.range(0, n as u64 - 1) as usize;
        let fault = if w.rng.chance(0.5) { Fault::Crash(who) } else { Fault::Stop(who) };
        w.push(t, Ev::Fault(fault));
        let back = t + 2 * settle + tolerance.as_nanos() as u64 * 4;
        w.push(back, Ev::Start(who));
        t = back + 2 * settle;
    }
    let end = t;
    w.note(format!(
        "{n} nodes, groups {:?}, interval {interval_ms} ms, tolerance {:.1} ms, {preempt:?}, loss {:.1}%, priorities {:?}",
        w.group_ids,
        tolerance.as_secs_f64() * 1e3,
        loss * 100.0,
        w.priorities
    ));
    while let Some(item) = w.queue.pop() {
        if item.at > end {
            break;
        }
        w.now = item.at;
        w.handle(item.ev);
        w.check();
    }
    w.report
}

impl World {
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Item { at, seq: self.seq, ev });
    }

    fn note(&mut self, line: String) {
        if self.trace {
            self.report.trace.push(format!("{:>12.6} ms  {line}", self.now as f64 / 1e6));
        }
    }

    fn violate(&mut self, invariant: &'static str, group: u8, detail: String) {
        self.note(format!("VIOLATION {invariant} group {group}: {detail}"));
        if !self.report.violations.iter().any(|v| v.invariant == invariant && v.group == group) {
            self.report.violations.push(GroupViolation { invariant, at_ns: self.now, group, detail });
        }
    }

    fn local(&self) -> Instant {
        Instant::from_nanos(self.now)
    }

    fn handle(&mut self, ev: Ev) {
        if matches!(ev, Ev::Start(_) | Ev::Fault(_)) {
            self.last_change = self.now;
        }
        match ev {
            Ev::Start(i) => self.start(i),
            Ev::Wake { node, inc } => self.wake(node, inc),
            Ev::Deliver { to, hb } => self.deliver(to, hb),
            Ev::Fault(f) => self.fault(f),
        }
    }

    fn start(&mut self, i: usize) {
        if self.nodes[i].agent.is_some() {
            return;
        }
        let local = self.local();
        let groups: Vec<GroupConfig> = self
            .group_ids
            .iter()
            .enumerate()
            .map(|(k, &id)| GroupConfig { id, priority: self.priorities[i][k], preempt: self.preempt })
            .collect();
        let mut cfg = self.cfg.clone();
        cfg.node.node_id = self.nodes[i].node_id;
        let Ok(g) = Groups::new(&cfg, &groups, local) else {
            self.violate("config", 0, "the groups were refused".into());
            return;
        };
        let n = &mut self.nodes[i];
        n.starts += 1;
        n.table = PeerTable::default();
        // The agent removes leftover addresses at start.
        n.configured.iter_mut().for_each(|c| *c = false);
        n.claiming.iter_mut().for_each(|c| *c = false);
        let epoch = 1_700_000_000_000_000 + self.now / 1_000 + n.starts;
        n.agent = Some(Agent { groups: g, epoch, counter: 0 });
        n.inc += 1;
        let inc = n.inc;
        self.note(format!("n{i} starts (epoch {epoch})"));
        self.push(self.now, Ev::Wake { node: i, inc });
    }

    fn fault(&mut self, f: Fault) {
        self.last_fault = Some((self.now, f));
        match f {
            Fault::Crash(i) => {
                let holders = (0..self.group_ids.len()).map(|k| self.claimer(k)).collect();
                self.crash_holders = Some((i, holders));
                self.stopping = None;
                let n = &mut self.nodes[i];
                n.agent = None;
                n.inc += 1;
                // The fence: a crashed node answers for nothing once its stamp is old; here at once.
                n.configured.iter_mut().for_each(|c| *c = false);
                n.claiming.iter_mut().for_each(|c| *c = false);
                self.note(format!("n{i} CRASHES (SIGKILL)"));
                self.report.crashes_checked += 1;
            }
            Fault::Stop(i) => {
                self.crash_holders = None;
                self.stopping = Some(i);
                self.report.stops_checked += 1;
                self.note(format!("n{i} stops cleanly (SIGTERM)"));
                let local = self.local();
                if let Some(a) = self.nodes[i].agent.as_mut() {
                    a.groups.handle_command(local, Command::Leave);
                    let inc = self.nodes[i].inc;
                    self.push(self.now, Ev::Wake { node: i, inc });
                }
            }
        }
    }

    /// The one running node claiming group `k`, if exactly one does.
    fn claimer(&self, k: usize) -> Option<usize> {
        let claimers: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].agent.is_some() && self.nodes[i].claiming[k]).collect();
        match claimers[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The peers of node `i` as group `group` sees them.
    fn group_peers(&self, i: usize, group: u8) -> Vec<Peer> {
        self.nodes[i].table.entries.iter().filter_map(|e| Peer::for_group(e.node_id, &e.rec, group)).collect()
    }

    fn wake(&mut self, i: usize, inc: u32) {
        if self.nodes[i].inc != inc || self.nodes[i].agent.is_none() {
            return;
        }
        let local = self.local();
        let ids = self.group_ids.clone();
        let views: Vec<Vec<Peer>> = ids.iter().map(|&id| self.group_peers(i, id)).collect();
        let Some(agent) = self.nodes[i].agent.as_mut() else { return };
        agent.groups.handle_link(local, true);
        for (k, &id) in ids.iter().enumerate() {
            agent.groups.handle_peers(local, id, &views[k]);
        }
        agent.groups.handle_timeout(local);
        while let Some(action) = self.nodes[i].agent.as_mut().and_then(|a| a.groups.poll_action()) {
            self.carry_out(i, action);
        }
        while let Some(event) = self.nodes[i].agent.as_mut().and_then(|a| a.groups.poll_event()) {
            if let GroupsEvent::Group { group, event: ha_core::Event::Transition(t) } = event {
                if t.from != t.to {
                    self.report.transitions += 1;
                }
                self.note(format!("n{i} group {group}: {} -> {}: {}", t.from.name(), t.to.name(), t.reason));
                if t.to == Role::Active && t.from != Role::Active {
                    self.check_take(i, group);
                }
            }
        }
        let Some(agent) = self.nodes[i].agent.as_mut() else { return };
        if agent.groups.is_done() {
            let n = &mut self.nodes[i];
            n.agent = None;
            n.inc += 1;
            self.note(format!("n{i} clean stop done, exits"));
            return;
        }
        let at = agent.groups.poll_timeout();
        let slack = self.rng.range(0, 49_999);
        let next = at.as_nanos().max(self.now + 1) + slack;
        self.push(next, Ev::Wake { node: i, inc });
    }

    fn carry_out(&mut self, i: usize, action: GroupsAction) {
        match action {
            GroupsAction::Group { group, action } => {
                let Some(k) = self.group_ids.iter().position(|&g| g == group) else { return };
                let n = &mut self.nodes[i];
                match action {
                    Action::Take => {
                        n.configured[k] = true;
                        n.claiming[k] = true;
                    }
                    Action::StopClaiming => n.claiming[k] = false,
                    Action::RemoveAddresses => n.configured[k] = false,
                    _ => {}
                }
            }
            GroupsAction::SendHeartbeat(hb) => self.send(i, hb),
            GroupsAction::Node(_) => {}
        }
    }

    fn send(&mut self, i: usize, g: GroupsHeartbeat) {
        let interval_us = (self.cfg.interval.as_nanos() / 1_000) as u32;
        let n = &mut self.nodes[i];
        let Some(agent) = n.agent.as_mut() else { return };
        agent.counter += 1;
        let (state, flags, priority) = g.header().unwrap_or((NodeState::Standby, g.flags, 0));
        let hb = Heartbeat {
            cluster_id: crate::table::CLUSTER,
            node_id: n.node_id,
            priority,
            state,
            flags,
            key_id: 1,
            interval_us,
            seq: Sequence { epoch: agent.epoch, counter: agent.counter },
            echo: g.echo,
            group_count: if g.header().is_some() { 0 } else { g.count },
            groups: if g.header().is_some() { ha_common::wire::GroupEntry::NONE } else { g.groups },
            tag: [0; TAG_LEN],
        };
        self.report.heartbeats += 1;
        if std::env::var_os("HA_SIM_SENDS").is_some() {
            let line = format!(
                "n{i} sends #{} {:?} scheduled {:?}",
                hb.seq.counter,
                g.groups().iter().map(|e| e.state.name()).collect::<Vec<_>>(),
                g.scheduled
            );
            self.note(line);
        }
        for j in 0..self.nodes.len() {
            if j == i || self.rng.chance(self.loss) {
                continue;
            }
            let d = self.delay.0 + self.rng.range(0, self.delay.1);
            self.push(self.now + d, Ev::Deliver { to: j, hb });
        }
    }

    fn deliver(&mut self, j: usize, hb: Heartbeat) {
        let local = self.local();
        let n = &mut self.nodes[j];
        let Some(epoch) = n.agent.as_ref().map(|a| a.epoch) else { return };
        n.table.receive(&crate::table::policy(n.node_id, epoch), &hb, local, false);
    }

    /// (j): a take after a crash, of a group whose holder lives.
    fn check_take(&mut self, i: usize, group: u8) {
        let Some((dead, holders)) = self.crash_holders.clone() else { return };
        let Some((at, _)) = self.last_fault else { return };
        if self.now > at + self.settle {
            return;
        }
        let Some(k) = self.group_ids.iter().position(|&g| g == group) else { return };
        if let Some(h) = holders[k]
            && h != dead
            && h != i
            && self.nodes[h].agent.is_some()
        {
            self.violate(
                "j:a_death_moves_only_its_groups",
                group,
                format!("n{dead} died and n{i} took group {group}, held by n{h}, alive"),
            );
        }
    }

    fn check(&mut self) {
        if self.now > self.last_change + self.settle {
            self.check_stable();
        }
        let Some((at, fault)) = self.last_fault else { return };
        if self.now > at + self.settle
            && let Some((dead, holders)) = self.crash_holders.take()
        {
            for (k, h) in holders.iter().enumerate() {
                if *h == Some(dead) && self.claimer(k).is_none() {
                    let g = self.group_ids[k];
                    self.violate("j:a_death_moves_only_its_groups", g, format!("n{dead}'s group {g} not taken"));
                }
            }
        }
        if let (Fault::Stop(i), Some(stopping)) = (fault, self.stopping) {
            // Make-before-break: from the stop until it is done and settled, every group is
            // held by some running node.
            if self.now > at + self.settle + self.cfg.node.leave_timeout.as_nanos() as u64 {
                self.stopping = None;
                return;
            }
            debug_assert_eq!(i, stopping);
            for k in 0..self.group_ids.len() {
                let held = self.nodes.iter().any(|n| n.agent.is_some() && n.configured[k]);
                if !held {
                    let g = self.group_ids[k];
                    self.violate(
                        "c:clean_stop_hands_every_group_over",
                        g,
                        format!("n{stopping} stopping: no running node holds group {g}"),
                    );
                }
            }
        }
    }

    fn check_stable(&mut self) {
        let running = self.nodes.iter().any(|n| n.agent.is_some());
        for k in 0..self.group_ids.len() {
            let g = self.group_ids[k];
            let claimers: Vec<usize> =
                (0..self.nodes.len()).filter(|&i| self.nodes[i].agent.is_some() && self.nodes[i].claiming[k]).collect();
            if claimers.len() > 1 {
                self.violate("a:at_most_one_claims_each_group", g, format!("claimed by {claimers:?}"));
            }
            if running && claimers.is_empty() {
                self.violate("a:at_least_one_claims_each_group", g, "nobody claims it".into());
            }
        }
    }
}

impl GroupReport {
    pub fn failed(&self) -> bool {
        !self.violations.is_empty()
    }

    pub fn replay_command(&self) -> String {
        format!("cargo xtask simulate --seed {} --trace   (groups part)", self.seed)
    }
}
