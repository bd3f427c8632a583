//! The discrete-event simulation of one scenario: a binary heap of events in global virtual
//! time, N nodes each running a real `ha_core::Failover` behind a driver that mirrors
//! `ha-agent`'s `event_loop`, their kernel peer tables, the LAN, the clients and the attacker.
use std::collections::{BinaryHeap, VecDeque};

use ha_common::wire::{Echo, FLAG_ANSWERING, FLAG_LEAVING, FLAG_MAINTENANCE, Heartbeat, NodeState, Sequence, TAG_LEN};
use ha_core::{
    Action, AnnounceCause, Command, Event, Failover, FailoverConfig, HeartbeatContent, Instant, Peer, Reason, Role,
    Transition,
    links::{LinkEvent, LinkSighting, Links},
    track::Tracking,
};

use crate::{
    invariants::{FLAP_BOUND_BASE, FLAP_BOUND_PER_MINUTE, Invariant, Violation},
    net::Net,
    queue::Item,
    rng::Rng,
    scenario::{self, CLIENT_BIT, Fault, FaultKind, KIND_NAMES, ReplayMode, SEC, Scenario},
    table::PeerTable,
};

/// How the run is observed.
#[derive(Clone, Debug)]
pub struct Options {
    /// Keep the whole trace (else the last [`TRACE_TAIL`] lines).
    pub trace: bool,
    /// The kernel-side fence of the XDP program (issue 12 item 2): once the agent's last
    /// liveness stamp (`Action::Stamp`) is a tolerance old, the node stops answering ARP for the
    /// address. Off models an agent without it (`--no-fence`).
    pub fence: bool,
    /// Run only these faults of the schedule (shrinking).
    pub keep_faults: Option<Vec<usize>>,
}

impl Default for Options {
    fn default() -> Self {
        Self { trace: false, fence: true, keep_faults: None }
    }
}

pub const TRACE_TAIL: usize = 40;
/// How often a client looks at its ARP cache (and asks when it is empty).
const CLIENT_TICK: u64 = 50 * scenario::MS;
/// How long a client caches a MAC (Linux: reachable for 15-45 s).
const CACHE_MIN: u64 = 15 * SEC;
const CACHE_MAX: u64 = 45 * SEC;
/// Recorded heartbeats kept per replay, and replayed at most.
const MAX_RECORDING: usize = 4000;

/// What one seed's run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub nodes: usize,
    pub sim_ns: u64,
    pub violations: Vec<Violation>,
    pub faults_per_kind: [u64; KIND_NAMES.len()],
    pub transitions: u64,
    pub events: u64,
    /// Client time spent pointed at a node that did not hold the address.
    pub lost_probe_ns: u64,
    /// How often the preconditions of (b), (c), (e) held: takeovers on silence checked, clean
    /// planned changes watched, windows of steady loss counted.
    pub checked_takeovers: u64,
    pub clean_changes: u64,
    pub loss_windows: u64,
    /// Stopped holders watched to the bound of (g).
    pub checked_stalls: u64,
    /// Nodes in event wake, of `nodes`.
    pub event_nodes: usize,
    /// Wakes of all agents, and kernel timer expiries delivered (event wake).
    pub wakes: u64,
    pub kernel_expiries: u64,
    /// Heartbeats a holder's kernel answered for it.
    pub answers: u64,
    /// Of those, answers to the group (every peer on the link).
    pub group_answers: u64,
    pub link_downs: u64,
    pub trace: Vec<String>,
    pub schedule: Vec<String>,
    pub cluster: String,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Start {
        node: u8,
    },
    /// The agent's own deadline (`token`: void once a later wake was planned).
    Wake {
        node: u8,
        inc: u32,
        token: u32,
    },
    /// Event wake: the ring buffer's fd became readable.
    Notify {
        node: u8,
        inc: u32,
    },
    /// Event wake: a peer's kernel timer fires (void once re-armed: `generation`).
    Expire {
        node: u8,
        inc: u32,
        peer: u32,
        generation: u32,
    },
    /// Event wake: the kernel-side sender's next heartbeat of schedule `generation`.
    KernelSend {
        node: u8,
        inc: u32,
        generation: u32,
    },
    /// `link`: which heartbeat link carried it.
    Deliver {
        to: u8,
        hb: Heartbeat,
        replayed: bool,
        link: u8,
    },
    Garp {
        client: u8,
        node: u8,
    },
    ArpRequest {
        client: u8,
        node: u8,
        req: u32,
    },
    ArpReply {
        client: u8,
        node: u8,
        req: u32,
    },
    ClientTick {
        client: u8,
    },
    FaultStart(u16),
    FaultEnd(u16),
    Replay {
        fault: u16,
        idx: u32,
    },
}

struct Agent {
    failover: Failover,
    /// Which heartbeat link carries which peer (`ha_core::links`), as the agent runs it.
    links: Links,
    epoch: u64,
    counter: u64,
    leaving: bool,
}

/// The newest heartbeat of one peer that reached a node's port (invariant (b)).
#[derive(Clone, Copy)]
struct PortSeen {
    node_id: u32,
    seq: Sequence,
    at: Instant,
    claims: bool,
}

pub(crate) struct SimNode {
    spec: scenario::NodeSpec,
    cfg: FailoverConfig,
    agent: Option<Agent>,
    /// Incarnation: wakes of an earlier agent are void.
    inc: u32,
    table: PeerTable,
    configured: bool,
    claiming: bool,
    agent_paused: bool,
    machine_paused: bool,
    link_up: bool,
    maintenance_file: bool,
    pending_maintenance: Vec<bool>,
    stop_requested: bool,
    priority: u32,
    /// Its tracked interface (`ha_core::track`), which the core's priority goes through.
    tracking: Tracking,
    /// The weight of its tracked interface while down (None: no weight, FAULT); None: up.
    track_down: Option<Option<u32>>,
    starts: u64,
    /// A wake fell due while paused: it runs at the resume.
    wake_missed: bool,
    /// Global time of the agent's last wake.
    last_run: u64,
    /// The holder this node last yielded to, and when by its own clock (invariant e, hold-down).
    yielded_to: Option<(u32, u64)>,
    /// Global time of the agent's last liveness stamp, which the fence reads.
    last_stamp: u64,
    /// The fence is switched off (`Action::Unfence`) until the next stamp.
    unfenced: bool,
    port: Vec<PortSeen>,
    /// When each link last carried each peer's newest heartbeat (the `PEER_LINKS` map).
    link_seen: Vec<LinkSighting>,
    peers: Vec<Peer>,
    /// Global time of its last `Take`.
    claimed_since: u64,
    /// An agent start waits for the machine to run again.
    start_pending: bool,
    /// The token of the planned wake (earlier ones are void).
    wake_token: u32,
    /// Event wake: each peer's timer generation and whether it fired.
    timers: Vec<(u32, u32, bool)>,
    /// Event wake: silence limits the agent handed the kernel.
    limits: Vec<(u32, u64)>,
    /// Event wake: expiries posted and not read yet.
    posted: Vec<(u32, Instant)>,
    /// Event wake: the kernel-side schedule (generation, content, interval, until; local).
    sched: Option<(u32, HeartbeatContent, u64, Instant)>,
    sched_gen: u32,
    /// Event wake: the local time of the last heartbeat the kernel-side sender sent.
    sched_sent: Option<Instant>,
    /// Event wake: what its XDP program answers peers' heartbeats with, until when.
    answering: Option<Answering>,
    /// Event wake with answers (the agent's own sender, a thread of its process): the local
    /// time of the first heartbeat its pause held back, sent when it runs again.
    overdue: Option<Instant>,
    /// The newest heartbeat of each peer its kernel saw on each link (answered once per link).
    answered_on: Vec<(u32, usize, Sequence)>,
}

/// Where a heartbeat goes on the LAN.
#[derive(Clone, Copy)]
enum To {
    /// Every peer, on every link: a heartbeat of the node's own.
    Everyone,
    /// Every peer on one link: an answer to the group.
    Link(usize),
    /// One peer on one link: an answer back to its requester.
    Peer(usize, usize),
}

/// A holder's kernel answers each peer's heartbeat for it (`Action::ScheduleHeartbeats` with
/// `answer`). The XDP program stays attached when the agent is killed (its link is pinned), so
/// the answers go on until `until` even then, with the dead run's epoch and counter.
#[derive(Clone, Copy)]
struct Answering {
    content: HeartbeatContent,
    /// Local time.
    until: Instant,
    epoch: u64,
    /// The counter once the agent is gone (they share one while it lives).
    counter: u64,
    /// The last request answered (its sender and sequence) and the answer's counter.
    last_request: Option<(u32, Sequence, u64)>,
    /// Local time of the last answer that took a new counter.
    answered_at: Option<Instant>,
}

impl SimNode {
    fn running(&self) -> bool {
        self.agent.is_some() && !self.agent_paused && !self.machine_paused
    }

    fn eligible(&self) -> bool {
        self.running() && self.link_up && !self.maintenance_file && !self.stop_requested
    }

    /// What its worthiness should be now (invariant h): checks, less a tracked interface down.
    fn worthiness(&self) -> u32 {
        match self.track_down {
            None => self.priority,
            Some(Some(w)) => self.priority.saturating_sub(w),
            Some(None) => 0,
        }
    }

    /// Traffic for the address reaches this node (invariant (c), (d), lost probes).
    fn delivers(&self) -> bool {
        self.configured && !self.machine_paused && self.link_up
    }
}

#[derive(Default)]
struct Client {
    cache: Option<(u8, u64)>,
    req: u32,
    req_open_since: Option<u64>,
    misdirected_since: Option<u64>,
    /// The latest time a fault lost, delayed or reordered announcements to this client.
    path_disturbed: u64,
    /// When the cache entry was last set (global time).
    cached_at: u64,
}

/// A span in which invariant (c) is checked.
struct CleanWindow {
    from: u64,
    to: u64,
    what: String,
    /// Another eligible node existed when it opened: no instant without a holder.
    needs_holder: bool,
    operated: usize,
}

/// A holder's agent stopped while it alone claimed (invariant g).
struct Stall {
    node: usize,
    from: u64,
    /// When another fault disturbs the cluster: the check ends there.
    clear_until: u64,
    done: bool,
}

/// A span of steady loss in which invariant (e) is checked.
struct FlapWindow {
    from: u64,
    to: u64,
    transitions: u64,
    done: bool,
}

pub(crate) struct World {
    sc: Scenario,
    opts: Options,
    now: u64,
    queue: BinaryHeap<Item<Ev>>,
    seq: u64,
    rng: Rng,
    net: Net,
    nodes: Vec<SimNode>,
    clients: Vec<Client>,
    active: Vec<(usize, Fault)>,
    recordings: Vec<Vec<(u64, Heartbeat)>>,
    /// Merged disturbances, sorted, and how far the clock has passed them.
    disturbances: Vec<(u64, u64)>,
    cursor: usize,
    windows: Vec<CleanWindow>,
    flaps: Vec<FlapWindow>,
    stalls: Vec<Stall>,
    report: Report,
    failed: [bool; crate::invariants::ALL.len()],
    trace: VecDeque<String>,
    settle: u64,
    client_settle: u64,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn merge(mut spans: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// How long before `t` the last of `spans` ended (0 while one lasts), or `t` when none began.
fn quiet_for(spans: &[(u64, u64)], t: u64) -> u64 {
    match spans.iter().rev().find(|s| s.0 <= t) {
        Some(&(_, b)) if b >= t => 0,
        Some(&(_, b)) => t - b,
        None => t,
    }
}

pub fn run(seed: u64, opts: &Options) -> Report {
    let mut sc = Scenario::generate(seed);
    if let Some(keep) = &opts.keep_faults {
        sc.keep_faults(keep);
    }
    run_scenario(sc, opts)
}

/// Runs a scenario made by hand (a seed's cluster with faults of a test's choosing).
pub fn run_scenario(sc: Scenario, opts: &Options) -> Report {
    let mut world = World::new(sc, opts.clone());
    world.run();
    world.finish()
}

impl World {
    fn new(sc: Scenario, opts: Options) -> Self {
        let c = &sc.cluster;
        let nodes = c
            .nodes
            .iter()
            .map(|spec| SimNode {
                spec: *spec,
                cfg: scenario::failover_config(c, spec),
                agent: None,
                inc: 0,
                table: PeerTable::default(),
                configured: false,
                claiming: false,
                agent_paused: false,
                machine_paused: false,
                link_up: true,
                maintenance_file: false,
                pending_maintenance: Vec::new(),
                stop_requested: false,
                priority: spec.priority,
                tracking: Tracking::default(),
                track_down: None,
                starts: 0,
                wake_missed: false,
                last_run: 0,
                yielded_to: None,
                last_stamp: 0,
                unfenced: false,
                port: Vec::new(),
                link_seen: Vec::new(),
                peers: Vec::with_capacity(c.nodes.len()),
                claimed_since: 0,
                start_pending: false,
                wake_token: 0,
                timers: Vec::new(),
                limits: Vec::new(),
                posted: Vec::new(),
                sched: None,
                sched_gen: 0,
                sched_sent: None,
                answering: None,
                answered_on: Vec::new(),
                overdue: None,
            })
            .collect();
        let mut spans: Vec<(u64, u64)> = c.nodes.iter().map(|s| (s.start, s.start)).collect();
        for f in &sc.faults {
            spans.extend(f.disturbances(c));
        }
        let mut report = Report {
            seed: sc.seed,
            nodes: c.nodes.len(),
            event_nodes: c.nodes.iter().filter(|n| n.event).count(),
            sim_ns: c.duration,
            schedule: sc.faults.iter().enumerate().map(|(i, f)| format!("#{i} {f}")).collect(),
            cluster: describe(&sc),
            ..Report::default()
        };
        for f in &sc.faults {
            report.faults_per_kind[f.kind.kind_index()] += 1;
        }
        if c.nodes.iter().any(|n| n.clock.ppb != 0) {
            report.faults_per_kind[KIND_NAMES.len() - 1] += 1;
        }
        let mut world = World {
            rng: Rng::derive(sc.seed, 0x5eed),
            settle: c.settle(),
            client_settle: c.client_settle(),
            clients: (0..c.clients).map(|_| Client::default()).collect(),
            recordings: vec![Vec::new(); sc.faults.len()],
            disturbances: merge(spans.clone()),
            windows: Vec::new(),
            flaps: Vec::new(),
            stalls: Vec::new(),
            sc,
            opts,
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            net: Net::default(),
            nodes,
            active: Vec::new(),
            cursor: 0,
            report,
            failed: [false; crate::invariants::ALL.len()],
            trace: VecDeque::new(),
        };
        world.plan_windows(&spans);
        world.report.clean_changes = world.windows.len() as u64;
        world.report.loss_windows = world.flaps.len() as u64;
        world
    }

    /// The windows of invariants (c) and (e), from the schedule.
    fn plan_windows(&mut self, spans: &[(u64, u64)]) {
        let c = &self.sc.cluster;
        for (i, f) in self.sc.faults.iter().enumerate() {
            let own = f.disturbances(c);
            let others = merge(spans.iter().copied().filter(|s| !own.contains(s)).collect());
            let w = self.client_settle + c.leave_timeout;
            let clean = |t0: u64, own_later: &[(u64, u64)]| {
                quiet_for(&others, t0) >= self.client_settle
                    && !others.iter().any(|&(a, b)| a <= t0 + w && b >= t0)
                    && !own_later.iter().any(|&(a, _)| a > t0 && a <= t0 + w)
                    && t0 + w < c.duration
            };
            if f.kind.is_planned() {
                let mut points = vec![f.start];
                let restarts = matches!(f.kind, FaultKind::Stop { restart: true, .. });
                if !matches!(f.kind, FaultKind::Stop { .. }) || restarts {
                    points.push(f.end);
                }
                for t0 in points {
                    if clean(t0, &own) {
                        self.windows.push(CleanWindow {
                            from: t0,
                            to: t0 + w,
                            what: format!("fault #{i} at {:.3} ms", ms(t0)),
                            needs_holder: false,
                            operated: planned_node(&f.kind),
                        });
                    }
                }
            }
            if let FaultKind::Loss { rate, .. } = f.kind {
                let ns = ha_core::Duration::from_nanos;
                let lcfg = ha_core::liveness::LivenessConfig {
                    tolerance: ns(c.tolerance),
                    max_tolerance: ns(c.max_tolerance),
                };
                // The limit the loss needs must be below the maximum (at it, the limit is capped).
                let covered = ha_core::liveness::silence_limit(rate, ns(c.interval), &lcfg) < ns(c.max_tolerance);
                let long = f.end - f.start >= 200 * c.interval;
                let alone = quiet_for(&others, f.start) >= self.client_settle
                    && !others.iter().any(|&(a, b)| a <= f.end + self.settle && b >= f.start);
                if rate <= 0.30 && covered && long && alone && f.end + self.settle < c.duration {
                    self.flaps.push(FlapWindow { from: f.start, to: f.end + self.settle, transitions: 0, done: false });
                }
            }
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Item { at, seq: self.seq, ev });
    }

    fn note(&mut self, line: String) {
        self.trace.push_back(format!("{:>10.3} ms  {line}", ms(self.now)));
        if !self.opts.trace && self.trace.len() > TRACE_TAIL {
            self.trace.pop_front();
        }
    }

    fn violate(&mut self, invariant: Invariant, detail: String) {
        if !self.failed[invariant.index()] {
            self.note(format!("VIOLATION {invariant}: {detail}"));
            self.failed[invariant.index()] = true;
            self.report.violations.push(Violation { invariant, at: self.now, detail });
        }
    }

    fn run(&mut self) {
        let duration = self.sc.cluster.duration;
        for i in 0..self.nodes.len() {
            let at = self.nodes[i].spec.start;
            self.push(at, Ev::Start { node: i as u8 });
        }
        for (i, f) in self.sc.faults.clone().iter().enumerate() {
            self.push(f.start, Ev::FaultStart(i as u16));
            if f.end < duration {
                self.push(f.end, Ev::FaultEnd(i as u16));
            }
        }
        for c in 0..self.clients.len() {
            let at = self.rng.range(0, CLIENT_TICK);
            self.push(at, Ev::ClientTick { client: c as u8 });
        }
        while let Some(item) = self.queue.pop() {
            if item.at > duration {
                break;
            }
            self.now = item.at;
            self.report.events += 1;
            self.handle(item.ev);
            self.check_step();
        }
        self.now = duration;
        self.check_step();
    }

    fn finish(mut self) -> Report {
        for c in 0..self.clients.len() {
            if let Some(since) = self.clients[c].misdirected_since.take() {
                self.report.lost_probe_ns += self.now - since;
            }
        }
        self.report.trace = self.trace.drain(..).collect();
        self.report
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Start { node } => self.start_agent(node as usize),
            Ev::Wake { node, inc, token } => {
                if token == self.nodes[node as usize].wake_token {
                    self.wake(node as usize, inc)
                }
            }
            Ev::Notify { node, inc } => self.wake(node as usize, inc),
            Ev::Expire { node, inc, peer, generation } => self.expire(node as usize, inc, peer, generation),
            Ev::KernelSend { node, inc, generation } => self.kernel_send(node as usize, inc, generation),
            Ev::Deliver { to, hb, replayed, link } => self.deliver(to as usize, hb, replayed, link as usize),
            Ev::Garp { client, node } => self.garp(client as usize, node as usize),
            Ev::ArpRequest { client, node, req } => {
                if self.answers(node as usize) {
                    self.send_to_client(node as usize, client as usize, |client, node| Ev::ArpReply {
                        client,
                        node,
                        req,
                    });
                }
            }
            Ev::ArpReply { client, node, req } => {
                let cl = &mut self.clients[client as usize];
                if cl.req == req && cl.req_open_since.is_some() && cl.cache.is_none() {
                    let expires = self.now + self.rng.range(CACHE_MIN, CACHE_MAX);
                    self.clients[client as usize].cache = Some((node, expires));
                    self.clients[client as usize].cached_at = self.now;
                    self.clients[client as usize].req_open_since = None;
                    self.note(format!("client c{client} learns n{node} (ARP reply)"));
                }
            }
            Ev::ClientTick { client } => self.client_tick(client as usize),
            Ev::FaultStart(i) => self.fault_start(i as usize),
            Ev::FaultEnd(i) => self.fault_end(i as usize),
            Ev::Replay { fault, idx } => self.replay(fault as usize, idx as usize),
        }
    }

    // ---- nodes ---------------------------------------------------------------------------

    fn start_agent(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        if n.agent.is_some() {
            return;
        }
        if n.machine_paused {
            n.start_pending = true;
            return;
        }
        n.start_pending = false;
        n.starts += 1;
        // The agent removes a leftover address at start (it was labelled as ours).
        n.configured = false;
        n.claiming = false;
        n.table = PeerTable::default();
        n.port.clear();
        n.link_seen.clear();
        n.stop_requested = false;
        n.pending_maintenance.clear();
        // The agent stamps once as it loads the XDP program: the fence is armed from its start.
        n.last_stamp = now;
        n.unfenced = false;
        let local = n.spec.clock.local(now);
        let mut failover = Failover::new(n.cfg.clone(), local);
        if n.maintenance_file {
            failover.handle_command(local, Command::Maintenance(true));
        }
        // The epoch grows with every start (the real agent uses realtime microseconds).
        let epoch = 1_700_000_000_000_000 + now / 1_000 + n.starts;
        let links = Links::new(self.sc.cluster.links);
        n.agent = Some(Agent { failover, links, epoch, counter: 0, leaving: false });
        n.inc += 1;
        n.last_run = now;
        n.timers.clear();
        n.limits.clear();
        n.posted.clear();
        n.sched = None;
        n.overdue = None;
        n.sched_sent = None;
        n.answering = None;
        let inc = n.inc;
        self.note(format!("n{i} agent starts (epoch {epoch})"));
        self.push(now, Ev::Notify { node: i as u8, inc });
    }

    fn kill_agent(&mut self, i: usize, why: &str) {
        let n = &mut self.nodes[i];
        let Some(agent) = n.agent.take() else {
            return;
        };
        if let Some(a) = n.answering.as_mut() {
            a.counter = agent.counter;
        }
        n.inc += 1;
        n.claiming = false;
        // The XDP program goes with the agent, and its table, timers and schedule.
        n.table = PeerTable::default();
        n.timers.clear();
        n.posted.clear();
        n.sched = None;
        n.overdue = None;
        n.wake_missed = false;
        let configured = n.configured;
        self.note(format!("n{i} agent gone ({why}){}", if configured { ", address still configured" } else { "" }));
    }

    /// One wake of the driver, as `ha-agent`'s `event_loop` does it.
    fn wake(&mut self, i: usize, inc: u32) {
        let now = self.now;
        {
            let n = &mut self.nodes[i];
            if inc != n.inc || n.agent.is_none() {
                return;
            }
            if n.agent_paused || n.machine_paused {
                n.wake_missed = true;
                return;
            }
            n.last_run = now;
        }
        self.report.wakes += 1;
        let local = self.nodes[i].spec.clock.local(now);
        // `now` first, then the table.
        let mut peers = std::mem::take(&mut self.nodes[i].peers);
        self.nodes[i].table.peers(&mut peers);
        {
            let n = &mut self.nodes[i];
            let Some(agent) = n.agent.as_mut() else { return };
            for on in n.pending_maintenance.drain(..) {
                agent.failover.handle_command(local, Command::Maintenance(on));
            }
            if n.stop_requested && !agent.leaving {
                agent.leaving = true;
                agent.failover.handle_command(local, Command::Leave);
            }
            for (peer, last_seen) in n.posted.drain(..) {
                agent.failover.handle_expired(local, peer, last_seen);
            }
            agent.failover.handle_link(local, n.link_up);
            agent.failover.handle_priority(local, n.tracking.adjust(n.priority));
            agent.failover.handle_peers(local, &peers);
            agent.failover.handle_timeout(local);
            if self.sc.cluster.links > 1 {
                let node = agent.failover.node();
                agent.links.handle_sightings(local, &n.link_seen, |p| node.peer_liveness(p).0);
            }
        }
        if let Some(due) = self.nodes[i].overdue.take()
            && let Some((_, c, _, _)) = self.nodes[i].sched
        {
            self.note(format!("n{i} sends the heartbeat held back since {due:?}"));
            self.send_heartbeat(i, c.state, c.flags, c.priority, c.echo);
        }
        while let Some(event) = self.nodes[i].agent.as_mut().and_then(|a| a.links.poll_event()) {
            self.check_link_down(i, event);
        }
        self.nodes[i].peers = peers;
        while let Some(action) = self.nodes[i].agent.as_mut().and_then(|a| a.failover.poll_action()) {
            self.carry_out(i, action);
        }
        while let Some(event) = self.nodes[i].agent.as_mut().and_then(|a| a.failover.poll_event()) {
            self.report_event(i, local, event);
        }
        let Some(agent) = self.nodes[i].agent.as_mut() else { return };
        if agent.failover.is_done() {
            self.kill_agent(i, "clean stop done, exits");
            return;
        }
        let at = agent.failover.poll_timeout();
        let slack = self.rng.range(0, self.sc.cluster.wake_slack);
        let next = self.nodes[i].spec.clock.global(at).max(now + 1) + slack;
        let n = &mut self.nodes[i];
        n.wake_token = n.wake_token.wrapping_add(1);
        let (inc, token) = (n.inc, n.wake_token);
        self.push(next, Ev::Wake { node: i as u8, inc, token });
    }

    /// Event wake: a peer's kernel timer fires; the expiry reaches the agent through the ring.
    fn expire(&mut self, i: usize, inc: u32, peer: u32, generation: u32) {
        let ring = self.sc.cluster.ring_delay;
        let n = &mut self.nodes[i];
        if inc != n.inc || n.agent.is_none() {
            return;
        }
        let Some(t) = n.timers.iter_mut().find(|t| t.0 == peer && t.1 == generation) else { return };
        t.2 = true;
        self.report.kernel_expiries += 1;
        let last_seen = n.table.get(peer).map_or(Instant::ZERO, |e| Instant::from_nanos(e.rec.last_seen_ns));
        n.posted.push((peer, last_seen));
        self.push(self.now + ring, Ev::Notify { node: i as u8, inc });
    }

    /// Event wake, in `deliver`: a recorded heartbeat re-arms the peer's timer; a change the
    /// decisions read (or its return after an expiry) is posted.
    fn kernel_heard(&mut self, j: usize, peer: u32, changed: bool) {
        let c = &self.sc.cluster;
        let (ring, slack) = (c.ring_delay, self.rng.range(0, c.timer_slack));
        let n = &mut self.nodes[j];
        let limit = n.limits.iter().find(|l| l.0 == peer).map_or(c.tolerance, |l| l.1);
        let (generation, returned) = match n.timers.iter_mut().find(|t| t.0 == peer) {
            Some(t) => {
                let returned = std::mem::replace(&mut t.2, false);
                t.1 = t.1.wrapping_add(1);
                (t.1, returned)
            }
            None => {
                n.timers.push((peer, 0, false));
                (0, false)
            }
        };
        let inc = n.inc;
        // The limit runs on the node's clock; drift over one limit is below a nanosecond's
        // worth of consequence here, so global time stands in.
        self.push(self.now + limit + 1 + slack, Ev::Expire { node: j as u8, inc, peer, generation });
        if changed || returned {
            self.push(self.now + ring, Ev::Notify { node: j as u8, inc });
        }
    }

    /// Event wake: the kernel-side sender (io_uring) sends the schedule's next heartbeat; it
    /// goes on while the agent is stopped, not while the machine is, nor once the agent is gone.
    fn kernel_send(&mut self, i: usize, inc: u32, generation: u32) {
        let n = &self.nodes[i];
        if inc != n.inc || n.agent.is_none() {
            return;
        }
        let Some((g, content, interval, until)) = n.sched else { return };
        if g != generation {
            return;
        }
        let local = self.nodes[i].spec.clock.local(self.now);
        // A node whose kernel answers sends its own heartbeats from its agent's process (no
        // kernel-side sender): none while the agent is stopped; the first held back leaves
        // when it runs again.
        let user = n.spec.answer;
        if user && (n.agent_paused || n.machine_paused) {
            self.nodes[i].overdue.get_or_insert(local);
        } else if !n.machine_paused {
            self.nodes[i].sched_sent = Some(local);
            self.send_heartbeat(i, content.state, content.flags, content.priority, content.echo);
        }
        let next = local + ha_core::Duration::from_nanos(interval);
        if next <= until {
            let at = self.nodes[i].spec.clock.global(next).max(self.now + 1);
            self.push(at, Ev::KernelSend { node: i as u8, inc, generation });
        }
    }

    fn carry_out(&mut self, i: usize, action: Action) {
        match action {
            Action::Take => {
                let n = &mut self.nodes[i];
                n.configured = true;
                n.claiming = true;
                n.claimed_since = self.now;
                self.note(format!("n{i} TAKE (adds the address, announces)"));
                self.announce(i);
            }
            Action::StopClaiming => {
                self.nodes[i].claiming = false;
                self.note(format!("n{i} stops claiming"));
            }
            Action::RemoveAddresses => {
                self.nodes[i].configured = false;
                self.note(format!("n{i} removes the address"));
            }
            Action::Announce(cause) => {
                if cause != AnnounceCause::Repeat {
                    self.note(format!("n{i} announces again ({cause:?})"));
                }
                self.announce(i)
            }
            Action::SendHeartbeat { state, flags, priority, echo, .. } => {
                self.send_heartbeat(i, state, flags, priority, echo)
            }
            Action::Stamp => {
                self.nodes[i].last_stamp = self.now;
                self.nodes[i].unfenced = false;
            }
            Action::Unfence => self.nodes[i].unfenced = true,
            Action::ScheduleHeartbeats { content, first, interval, until, answer } => {
                let n = &mut self.nodes[i];
                // Answering, the driver sends the heartbeat of `first` alone.
                let (last_request, answered_at) = n.answering.map_or((None, None), |a| (a.last_request, a.answered_at));
                n.answering = answer.then(|| Answering {
                    content,
                    until,
                    epoch: n.agent.as_ref().map_or(0, |a| a.epoch),
                    counter: 0,
                    last_request,
                    answered_at,
                });
                let until = if answer { first } else { until };
                n.sched_gen = n.sched_gen.wrapping_add(1);
                let generation = n.sched_gen;
                n.sched = Some((generation, content, interval.as_nanos() as u64, until));
                // A sender skips the heartbeat of `first` when it sent it already.
                let first = if n.sched_sent.is_some_and(|sent| sent >= first) { first + interval } else { first };
                let at = n.spec.clock.global(first).max(self.now);
                let inc = n.inc;
                self.push(at, Ev::KernelSend { node: i as u8, inc, generation });
            }
            Action::SetSilenceLimit { node_id, limit } => {
                let n = &mut self.nodes[i];
                n.limits.retain(|l| l.0 != node_id);
                n.limits.push((node_id, limit.as_nanos() as u64));
            }
        }
    }

    fn report_event(&mut self, i: usize, local: Instant, event: Event) {
        match event {
            Event::Transition(t) => self.on_transition(i, local, t),
            Event::Resumed { gap } => {
                self.note(format!("n{i} resumed after {:.3} ms: listens again", gap.as_secs_f64() * 1e3))
            }
            Event::AnswersUnheard { node_id } => {
                self.note(format!("n{i}: peer {node_id} claimed while its kernel answered: answers end"))
            }
            Event::Lingering { .. }
            | Event::Link { .. }
            | Event::ForeignClaim { .. }
            | Event::StatusDue
            | Event::Done => {}
        }
    }

    fn send_heartbeat(&mut self, i: usize, state: NodeState, flags: u8, priority: u32, echo: Echo) {
        let n = &mut self.nodes[i];
        let Some(agent) = n.agent.as_mut() else { return };
        // The real sender counts before it sends: a failed send is a gap in the counter.
        agent.counter += 1;
        let seq = Sequence { epoch: agent.epoch, counter: agent.counter };
        let hb = self.heartbeat_of(i, HeartbeatContent { state, flags, priority, echo }, seq);
        self.transmit(i, hb, To::Everyone);
    }

    /// Node `i`'s kernel answers `request` (just recorded, on `link`) with the content it was
    /// given, echoing the requester, to the requester alone or, `answer_group`, to every peer
    /// on that link, a new counter at most once per half interval; never an answer itself.
    fn kernel_answer(&mut self, i: usize, request: &Heartbeat, link: usize) {
        let gap = self.sc.cluster.interval / 2;
        let n = &mut self.nodes[i];
        let to_group = n.spec.answer_group;
        let local = n.spec.clock.local(self.now);
        let Some(a) = n.answering.as_mut() else { return };
        if request.flags & FLAG_ANSWERING != 0 || n.machine_paused || local > a.until {
            return;
        }
        let copy = a.last_request.is_some_and(|(id, seq, _)| id == request.node_id && seq == request.seq);
        if to_group && !copy && a.answered_at.is_some_and(|at| local < at + ha_core::Duration::from_nanos(gap)) {
            return;
        }
        // One answer per request, whatever link its copy came on: copies on the other links
        // carry the same counter, as the copies of a heartbeat of the agent's own do.
        let counter = match (a.last_request, n.agent.as_mut()) {
            (Some((id, seq, counter)), _) if id == request.node_id && seq == request.seq => counter,
            (_, Some(agent)) if agent.epoch == a.epoch => {
                agent.counter += 1;
                agent.counter
            }
            _ => {
                a.counter += 1;
                a.counter
            }
        };
        if !copy {
            a.answered_at = Some(local);
        }
        a.last_request = Some((request.node_id, request.seq, counter));
        let content =
            HeartbeatContent { echo: Echo { node_id: request.node_id, epoch: request.seq.epoch }, ..a.content };
        let seq = Sequence { epoch: a.epoch, counter };
        let Some(to) = self.nodes.iter().position(|o| o.spec.node_id == request.node_id) else { return };
        self.report.answers += 1;
        self.report.group_answers += u64::from(to_group);
        let hb = self.heartbeat_of(i, content, seq);
        self.transmit(i, hb, if to_group { To::Link(link) } else { To::Peer(to, link) });
    }

    fn heartbeat_of(&self, i: usize, content: HeartbeatContent, seq: Sequence) -> Heartbeat {
        let HeartbeatContent { state, flags, priority, echo } = content;
        let c = &self.sc.cluster;
        let n = &self.nodes[i];
        Heartbeat {
            cluster_id: crate::table::CLUSTER,
            node_id: n.spec.node_id,
            priority,
            state,
            flags,
            key_id: 1,
            interval_us: (c.interval / 1_000) as u32,
            seq,
            echo,
            group_count: 0,
            groups: ha_common::wire::GroupEntry::NONE,
            tag: [0; TAG_LEN],
        }
    }

    /// Puts `hb` of node `i` on the LAN: to every peer on every link, to every peer on one, or
    /// to one peer on one.
    fn transmit(&mut self, i: usize, hb: Heartbeat, to: To) {
        if !self.nodes[i].link_up {
            return;
        }
        // The attacker on the LAN records what it will replay.
        for (f, fault) in self.sc.faults.iter().enumerate() {
            if let FaultKind::Replay { origin, rec_start, rec_end, .. } = fault.kind
                && origin == i
                && (rec_start..rec_end).contains(&self.now)
                && self.recordings[f].len() < MAX_RECORDING
            {
                self.recordings[f].push((self.now, hb));
            }
        }
        // The same heartbeat on every link: the first copy to arrive is recorded, the others
        // are stale (as in `ha_common::accept`).
        for link in 0..self.sc.cluster.links {
            for j in 0..self.nodes.len() {
                let addressed = match to {
                    To::Everyone => true,
                    To::Link(l) => l == link,
                    To::Peer(p, l) => (p, l) == (j, link),
                };
                if j == i || crate::net::link_cut(&self.active, i, j, link) || !addressed {
                    continue;
                }
                let arrivals = self.net.transmit(&mut self.rng, &self.sc.cluster, &self.active, i as u8, j as u8);
                for d in [arrivals.first, arrivals.second].into_iter().flatten() {
                    self.push(self.now + d, Ev::Deliver { to: j as u8, hb, replayed: false, link: link as u8 });
                }
            }
        }
    }

    fn deliver(&mut self, j: usize, hb: Heartbeat, replayed: bool, link: usize) {
        let now = self.now;
        // Under loss on the way, a node cannot tell heartbeats its own pause ate from those the
        // network lost: there, one that reached a machine paused as a whole counts as lost.
        let lossy = self.active.iter().any(|&(_, f)| {
            matches!(f.kind, crate::scenario::FaultKind::Loss { .. } | crate::scenario::FaultKind::BurstLoss { .. })
        });
        let n = &mut self.nodes[j];
        if !n.link_up {
            return;
        }
        let local = n.spec.clock.local(now);
        // Counted even while the machine is paused as a whole: the holder was alive and sending
        // to it; this node's own absence is no reason to take over (invariant b).
        if !replayed && !(n.machine_paused && lossy) {
            let claims = hb.state == NodeState::Active && hb.flags & (FLAG_LEAVING | FLAG_MAINTENANCE) == 0;
            match n.port.iter_mut().find(|p| p.node_id == hb.node_id) {
                Some(p) if hb.seq > p.seq => *p = PortSeen { node_id: hb.node_id, seq: hb.seq, at: local, claims },
                Some(_) => {}
                None => n.port.push(PortSeen { node_id: hb.node_id, seq: hb.seq, at: local, claims }),
            }
        }
        let Some(epoch) = n.agent.as_ref().map(|a| a.epoch) else {
            // The killed agent's XDP program stays: it answers a fresh heartbeat (not a replay,
            // which its sequence check drops) until its schedule ends.
            if !replayed && !n.machine_paused {
                self.kernel_answer(j, &hb, link);
            }
            return;
        };
        if n.machine_paused {
            return;
        }
        let was_replayed = n.table.get(hb.node_id).is_some_and(|e| e.replayed);
        let confirmed_before =
            n.table.get(hb.node_id).is_some_and(|e| e.rec.confirmed != 0 && e.rec.epoch == hb.seq.epoch);
        // Newer than anything recorded of a run it had confirmed: a heartbeat this node never
        // got, delivered late, as a network could. What a recording must never do is confirm a
        // run, bring back an unconfirmed one, or count as news once received.
        let late_delivery = replayed && confirmed_before;
        let before = n.table.get(hb.node_id).map(|e| e.rec.watched());
        let recorded =
            n.table.receive(&crate::table::policy(n.spec.node_id, epoch), &hb, local, replayed && !late_delivery);
        if n.spec.event {
            let after = n.table.get(hb.node_id).map(|e| e.rec);
            let changed = match (before, after) {
                (None, Some(_)) => true,
                (Some(b), Some(a)) => b.changes(&a) != 0,
                _ => false,
            };
            if recorded {
                self.kernel_heard(j, hb.node_id, changed);
            } else if changed {
                let (ring, inc) = (self.sc.cluster.ring_delay, self.nodes[j].inc);
                self.push(self.now + ring, Ev::Notify { node: j as u8, inc });
            }
        }
        let n = &mut self.nodes[j];
        let confirmed = recorded && n.table.get(hb.node_id).is_some_and(|e| e.rec.confirmed != 0);
        // The link is credited with the newest heartbeat and copies of it (`ha_common::links`).
        let newest =
            n.table.get(hb.node_id).is_some_and(|e| e.rec.epoch == hb.seq.epoch && e.rec.counter == hb.seq.counter);
        // The kernel answers the first copy of the newest heartbeat on each link, so every
        // link the request came on carries an answer.
        let mut answer = recorded;
        if (recorded || newest) && !replayed {
            match n.answered_on.iter_mut().find(|a| a.0 == hb.node_id && a.1 == link) {
                Some(a) => {
                    answer |= a.2 != hb.seq;
                    a.2 = hb.seq;
                }
                None => {
                    answer = true;
                    n.answered_on.push((hb.node_id, link, hb.seq));
                }
            }
        }
        if newest && !replayed {
            let sighting = LinkSighting { peer: hb.node_id, link, last_seen: local };
            match n.link_seen.iter_mut().find(|s| s.peer == hb.node_id && s.link == link) {
                Some(s) => *s = sighting,
                None => n.link_seen.push(sighting),
            }
        }
        if answer {
            self.kernel_answer(j, &hb, link);
        }
        // A replay counts only once decisions would see it (confirmed). One the receiver never
        // got, of a run it had confirmed, is a late delivery, which any network may make: what
        // a recording must never do is confirm a run, or bring back one unconfirmed.
        if recorded && replayed && confirmed && !confirmed_before && !was_replayed {
            let origin = self.nodes.iter().position(|o| o.spec.node_id == hb.node_id);
            let state = hb.state.name();
            let who = origin.map_or(String::from("?"), |o| format!("n{o}"));
            self.note(format!("n{j} records a REPLAYED {state} heartbeat of {who} (seq {:?}), and maybe more", hb.seq));
            if let Some(o) = origin
                && !self.nodes[o].running()
            {
                self.violate(
                    Invariant::ReplayNeverRevives,
                    format!("n{j} recorded a replayed {state} heartbeat of n{o}, whose agent is not running"),
                );
            }
        }
    }

    fn on_transition(&mut self, i: usize, local: Instant, t: Transition) {
        let real = t.from != t.to;
        if real {
            self.report.transitions += 1;
            for w in &mut self.flaps {
                if (w.from..=w.to).contains(&self.now) {
                    w.transitions += 1;
                }
            }
        }
        self.check_hold_down(i, local, t);
        self.note(format!("n{i} {} -> {}: {}", t.from.name(), t.to.name(), t.reason));
        if real && t.to == Role::Active && matches!(t.reason, Reason::HolderSilent { .. } | Reason::NoHolder) {
            self.report.checked_takeovers += 1;
            self.check_takeover(i, local);
        }
        if let Some(named) = reason_node(&t.reason)
            && real
            && self.nodes[i].table.get(named).is_some_and(|e| e.replayed)
        {
            self.violate(
                Invariant::ReplayNeverMovesAddress,
                format!("n{i} {} -> {} because of a replayed heartbeat: {}", t.from.name(), t.to.name(), t.reason),
            );
        }
    }

    /// Invariant (b), at a takeover on silence.
    /// Invariant (e), hold-down: remembers each yield to a more worthy holder, and checks a
    /// takeover on silence against it.
    fn check_hold_down(&mut self, i: usize, local: Instant, t: Transition) {
        // In the node's own clock, as its hold-down runs.
        let now = local.as_nanos();
        match t.reason {
            Reason::MoreWorthyHolder { node_id, .. } if t.from == Role::Active => {
                self.nodes[i].yielded_to = Some((node_id, now));
            }
            Reason::HolderSilent { node_id, .. } if t.to == Role::Active => {
                let Some((to, at)) = self.nodes[i].yielded_to else { return };
                let Some(h) = self.nodes.iter().position(|n| n.spec.node_id == node_id) else { return };
                let cut = |a: usize, b: usize| crate::net::cut(&self.active, a as u8, b as u8);
                let within = now.saturating_sub(at) < self.sc.cluster.hold_down;
                if to == node_id && within && self.nodes[h].running() && !cut(h, i) && !cut(i, h) {
                    let detail = format!(
                        "n{i} took the address back from n{h} {:.3} ms after yielding to it (hold-down {:.3} ms), while n{h} lives",
                        ms(now - at),
                        ms(self.sc.cluster.hold_down)
                    );
                    self.violate(Invariant::NoTakeBackWithinHoldDown, detail);
                }
            }
            _ => {}
        }
    }

    /// Invariant (g): a link reported down for a peer was cut, or single packets were being
    /// lost or delayed.
    fn check_link_down(&mut self, i: usize, event: LinkEvent) {
        let LinkEvent::PeerDown { peer, link, silent } = event else { return };
        let Some(h) = self.nodes.iter().position(|n| n.spec.node_id == peer) else { return };
        let limit =
            self.nodes[i].agent.as_ref().map_or(0, |a| a.failover.node().peer_liveness(peer).0.as_nanos() as u64);
        let recent = |f: &Fault| f.start < self.now && f.end + limit + self.sc.cluster.interval >= self.now;
        let explained = self.sc.faults.iter().any(|f| {
            recent(f)
                && match f.kind {
                    FaultKind::CutLink { node, link: l } => l == link && (node == i || node == h),
                    FaultKind::Loss { .. }
                    | FaultKind::BurstLoss { .. }
                    | FaultKind::Delay { .. }
                    | FaultKind::Reorder { .. } => true,
                    _ => false,
                }
        });
        self.report.link_downs += 1;
        self.note(format!("n{i}: link {link} to n{h} down (silent {:.3} ms)", silent.as_secs_f64() * 1e3));
        if !explained {
            self.violate(
                Invariant::LinkDownOnlyWhenCut,
                format!(
                    "n{i} reports link {link} to n{h} down after {:.3} ms of silence, but no fault cut it",
                    silent.as_secs_f64() * 1e3
                ),
            );
        }
    }

    /// Whether every fault that acted within `window` before now is a pause of node `i`.
    fn only_own_pauses(&self, i: usize, window: u64) -> bool {
        self.sc
            .faults
            .iter()
            .filter(|f| f.start <= self.now && f.end.saturating_add(window) >= self.now)
            .all(|f| matches!(f.kind, FaultKind::Pause { node, .. } if node == i))
    }

    fn check_takeover(&mut self, i: usize, local: Instant) {
        let n = &self.nodes[i];
        let Some(agent) = n.agent.as_ref() else { return };
        let mut found = Vec::new();
        for h in 0..self.nodes.len() {
            let holder = &self.nodes[h];
            // Heard one way only, a holder cannot echo this node's run: it is indistinguishable
            // from a recording, and ignored by design (docs/architecture.md, invariant 2). And a
            // holder cut off from this node right now is not heard, whatever came before.
            let cut = |from: usize, to: usize| crate::net::cut(&self.active, from as u8, to as u8);
            // A holder whose agent is not running now does not keep sending.
            if h == i || !holder.claiming || !holder.running() || !holder.link_up || cut(i, h) || cut(h, i) {
                continue;
            }
            // Every heartbeat link between them cut: not heard either.
            let links = self.sc.cluster.links;
            if (0..links).all(|l| crate::net::link_cut(&self.active, i, h, l)) {
                continue;
            }
            let Some(seen) = n.port.iter().find(|p| p.node_id == holder.spec.node_id) else { continue };
            // Unconfirmed (it has not echoed this run: it could not hear it) is not heard.
            if n.table.get(holder.spec.node_id).is_some_and(|e| e.rec.confirmed == 0) {
                continue;
            }
            // A holder whose kernel answers for it (and whose machine runs) answers each of the
            // taker's heartbeats: when no fault but the taker's own pauses touched the last
            // settle time, its silence is the taker's, which did not ask.
            let answering = holder.answering.is_some_and(|a| holder.spec.clock.local(self.now) <= a.until);
            if answering && !holder.machine_paused && self.only_own_pauses(i, self.sc.cluster.settle()) {
                found.push(format!(
                    "n{i} took over on the silence of holder n{h}, whose kernel answers for it: no fault but n{i}'s own pauses kept it from asking"
                ));
                continue;
            }
            let (limit, loss) = agent.failover.node().peer_liveness(holder.spec.node_id);
            let limit = limit.as_nanos() as u64;
            // A partition between them within the last limit explains a silence the taker saw,
            // even if the first heartbeat after it reached a machine paused as a whole.
            let recent_cut = self.sc.faults.iter().any(|f| {
                matches!(f.kind, crate::scenario::FaultKind::Partition { .. })
                    && f.start < self.now
                    && f.end + limit >= self.now
                    && (crate::net::cut(&[(0, *f)], h as u8, i as u8) || crate::net::cut(&[(0, *f)], i as u8, h as u8))
            });
            // Likewise every heartbeat link between them cut within the last limit.
            let recently_cut = |l: usize| {
                self.sc.faults.iter().any(|f| {
                    matches!(f.kind, crate::scenario::FaultKind::CutLink { node, link } if link == l && (node == i || node == h))
                        && f.start < self.now
                        && f.end + limit >= self.now
                })
            };
            if recent_cut || (0..links).all(recently_cut) {
                continue;
            }
            let silent = local.since(seen.at).as_nanos() as u64;
            if seen.claims && silent <= limit {
                let detail = format!(
                    "n{i} took over on silence while holder n{h}'s last heartbeat reached it {:.3} ms ago, within its limit {:.3} ms (loss {:.2})",
                    ms(silent),
                    ms(limit),
                    loss
                );
                found.push(detail);
            }
        }
        for detail in found {
            self.violate(Invariant::NoTakeoverWhileHolderHeard, detail);
        }
    }

    // ---- addresses and clients ----------------------------------------------------------

    /// Whether node `i` answers ARP for the address now.
    fn answers(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        // The kernel's answers keep the fence down while they last.
        let answering = n.answering.is_some_and(|a| n.spec.clock.local(self.now) <= a.until);
        let fenced =
            self.opts.fence && !n.unfenced && !answering && self.now > n.last_stamp + self.sc.cluster.tolerance;
        n.delivers() && !fenced
    }

    fn announce(&mut self, i: usize) {
        if !self.nodes[i].link_up {
            return;
        }
        for c in 0..self.clients.len() {
            self.send_to_client(i, c, |client, node| Ev::Garp { client, node });
        }
    }

    fn send_to_client(&mut self, i: usize, c: usize, ev: impl Fn(u8, u8) -> Ev) {
        let ep = (CLIENT_BIT as usize + c) as u8;
        let arrivals = self.net.transmit(&mut self.rng, &self.sc.cluster, &self.active, i as u8, ep);
        for d in [arrivals.first, arrivals.second].into_iter().flatten() {
            self.push(self.now + d, ev(c as u8, i as u8));
        }
    }

    fn garp(&mut self, c: usize, i: usize) {
        let expires = self.now + self.rng.range(CACHE_MIN, CACHE_MAX);
        let before = self.clients[c].cache.map(|(m, _)| m);
        self.clients[c].cache = Some((i as u8, expires));
        self.clients[c].cached_at = self.now;
        self.clients[c].req_open_since = None;
        if before != Some(i as u8) {
            self.note(format!("client c{c} points at n{i} (announcement)"));
        }
    }

    fn client_tick(&mut self, c: usize) {
        let now = self.now;
        let cl = &mut self.clients[c];
        if cl.cache.is_some_and(|(_, exp)| exp <= now) {
            cl.cache = None;
        }
        let retry = cl.req_open_since.is_none_or(|at| now - at >= SEC);
        if cl.cache.is_none() && retry {
            cl.req += 1;
            cl.req_open_since = Some(now);
            let req = cl.req;
            let ep = (CLIENT_BIT as usize + c) as u8;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].link_up {
                    continue;
                }
                let arrivals = self.net.transmit(&mut self.rng, &self.sc.cluster, &self.active, ep, i as u8);
                if let Some(d) = arrivals.first {
                    self.push(now + d, Ev::ArpRequest { client: c as u8, node: i as u8, req });
                }
            }
        }
        self.push(now + CLIENT_TICK, Ev::ClientTick { client: c as u8 });
    }

    // ---- faults ---------------------------------------------------------------------------

    fn fault_start(&mut self, f: usize) {
        let fault = self.sc.faults[f];
        self.note(format!("FAULT #{f} starts: {fault}"));
        match fault.kind {
            FaultKind::Loss { .. }
            | FaultKind::BurstLoss { .. }
            | FaultKind::Delay { .. }
            | FaultKind::Reorder { .. }
            | FaultKind::Duplicate { .. }
            | FaultKind::CutLink { .. }
            | FaultKind::Partition { .. } => self.active.push((f, fault)),
            FaultKind::Pause { node, machine } => {
                if !machine {
                    self.open_stall(f, node);
                }
                self.nodes[node].agent_paused = true;
                self.nodes[node].machine_paused |= machine;
            }
            FaultKind::Crash { node, .. } => self.kill_agent(node, "SIGKILL"),
            FaultKind::Stop { node, .. } => {
                if self.nodes[node].agent.is_some() {
                    self.nodes[node].stop_requested = true;
                }
            }
            FaultKind::Maintenance { node } => {
                self.nodes[node].maintenance_file = true;
                self.nodes[node].pending_maintenance.push(true);
            }
            FaultKind::Priority { node, value } => self.nodes[node].priority = value,
            FaultKind::TrackDown { node, weight } => {
                let weight = (weight > 0).then_some(weight);
                self.nodes[node].tracking = Tracking::new(&[weight]);
                self.nodes[node].tracking.handle_link(0, false);
                self.nodes[node].track_down = Some(weight);
            }
            FaultKind::LinkDown { node } => self.nodes[node].link_up = false,
            FaultKind::Replay { mode, .. } => self.schedule_replay(f, mode),
        }
        self.open_windows();
    }

    /// Invariant (g): watch a stopped agent that alone claims, the cluster stable before.
    fn open_stall(&mut self, f: usize, node: usize) {
        let now = self.now;
        let claimers: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].claiming && self.nodes[i].running()).collect();
        if claimers != [node] {
            return;
        }
        let c = &self.sc.cluster;
        let since = now.saturating_sub(self.settle);
        let mut clear_until = u64::MAX;
        for (k, other) in self.sc.faults.iter().enumerate() {
            if k == f {
                continue;
            }
            for (s, e) in other.disturbances(c) {
                if s <= now && e >= since {
                    return;
                }
                if s > now {
                    clear_until = clear_until.min(s);
                }
            }
        }
        if c.nodes.iter().any(|n| n.start <= now && n.start >= since) {
            return;
        }
        self.stalls.push(Stall { node, from: now, clear_until, done: false });
    }

    fn check_stalls(&mut self) {
        let now = self.now;
        let c = &self.sc.cluster;
        let bound = c.max_tolerance + c.event_bound() + 4 * c.interval + 2 * c.wake_slack + 2 * c.max_delay();
        let mut found = Vec::new();
        for st in self.stalls.iter_mut().filter(|s| !s.done) {
            let n = &self.nodes[st.node];
            if now >= st.clear_until || !n.agent_paused || n.agent.is_none() {
                st.done = true;
                continue;
            }
            if now - st.from <= bound {
                continue;
            }
            st.done = true;
            self.report.checked_stalls += 1;
            let claims = self.nodes.iter().any(|o| o.claiming && o.running());
            let eligible: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].eligible()).collect();
            if !claims && !eligible.is_empty() {
                found.push(format!(
                    "n{} stopped {:.3} ms ago (bound {:.3} ms), {} eligible, nobody claims",
                    st.node,
                    ms(now - st.from),
                    ms(bound),
                    names(&eligible)
                ));
            }
        }
        for detail in found {
            self.violate(Invariant::StalledHolderReplaced, detail);
        }
    }

    fn fault_end(&mut self, f: usize) {
        let fault = self.sc.faults[f];
        self.note(format!("FAULT #{f} ends"));
        if let Some(to) = announcement_path(&fault.kind) {
            for (c, cl) in self.clients.iter_mut().enumerate() {
                if to & (1 << (CLIENT_BIT as usize + c)) != 0 {
                    cl.path_disturbed = self.now;
                }
            }
        }
        match fault.kind {
            FaultKind::Loss { .. }
            | FaultKind::BurstLoss { .. }
            | FaultKind::Delay { .. }
            | FaultKind::Reorder { .. }
            | FaultKind::Duplicate { .. }
            | FaultKind::CutLink { .. }
            | FaultKind::Partition { .. } => self.active.retain(|(i, _)| *i != f),
            FaultKind::Pause { node, machine } => {
                let n = &mut self.nodes[node];
                n.agent_paused = false;
                if machine {
                    n.machine_paused = false;
                }
                if (n.wake_missed || n.overdue.is_some()) && !n.machine_paused {
                    n.wake_missed = false;
                    let inc = n.inc;
                    let slack = self.rng.range(0, self.sc.cluster.wake_slack);
                    self.push(self.now + slack, Ev::Notify { node: node as u8, inc });
                }
                if self.nodes[node].start_pending && !self.nodes[node].machine_paused {
                    self.start_agent(node);
                }
            }
            FaultKind::Crash { node, restart: true } | FaultKind::Stop { node, restart: true } => {
                self.start_agent(node)
            }
            FaultKind::Crash { .. } | FaultKind::Stop { .. } | FaultKind::Replay { .. } => {}
            FaultKind::Maintenance { node } => {
                self.nodes[node].maintenance_file = false;
                self.nodes[node].pending_maintenance.push(false);
            }
            FaultKind::Priority { node, .. } => self.nodes[node].priority = self.nodes[node].spec.priority,
            FaultKind::TrackDown { node, .. } => {
                self.nodes[node].tracking.handle_link(0, true);
                self.nodes[node].track_down = None;
            }
            FaultKind::LinkDown { node } => self.nodes[node].link_up = true,
        }
        self.open_windows();
    }

    /// The replays of fault `f`, within its window.
    fn schedule_replay(&mut self, f: usize, mode: ReplayMode) {
        let span = self.sc.faults[f].end - self.sc.faults[f].start;
        let rec = &self.recordings[f];
        let Some(&(t0, _)) = rec.first() else { return };
        let picks: Vec<(u64, u32)> = match mode {
            ReplayMode::Paced => rec.iter().enumerate().map(|(k, (t, _))| (t - t0, k as u32)).collect(),
            ReplayMode::Burst => (0..rec.len()).map(|k| (k as u64 * 50_000, k as u32)).collect(),
            ReplayMode::Single => {
                let k = rec.iter().rposition(|(_, hb)| hb.state == NodeState::Active).unwrap_or(rec.len() - 1);
                vec![(0, k as u32)]
            }
        };
        for (offset, k) in picks.into_iter().filter(|&(offset, _)| offset <= span) {
            self.push(self.now + offset, Ev::Replay { fault: f as u16, idx: k });
        }
    }

    fn replay(&mut self, f: usize, k: usize) {
        let FaultKind::Replay { targets, .. } = self.sc.faults[f].kind else { return };
        let Some(&(_, hb)) = self.recordings[f].get(k) else { return };
        for j in 0..self.nodes.len() {
            if targets & (1 << j) != 0 {
                let d = self.sc.cluster.net_delay + self.rng.range(0, self.sc.cluster.net_jitter);
                self.push(self.now + d, Ev::Deliver { to: j as u8, hb, replayed: true, link: 0 });
            }
        }
    }

    /// Opens the (c) windows that begin now, with their precondition evaluated now.
    fn open_windows(&mut self) {
        let now = self.now;
        for w in 0..self.windows.len() {
            if self.windows[w].from == now {
                let operated = self.windows[w].operated;
                let others = (0..self.nodes.len()).filter(|&j| j != operated && self.nodes[j].eligible()).count();
                self.windows[w].needs_holder = others > 0;
            }
        }
    }

    /// Whether holder `h` recorded a claim of node `m` made no earlier than `at` (global): a
    /// claim it never heard (made across a partition by a node that then left or died) only
    /// the periodic refresh can correct, or the client's own neighbour timeout.
    fn heard_claim(&self, h: usize, m: usize, at: u64) -> bool {
        let holder = &self.nodes[h];
        let since = holder.spec.clock.local(at.saturating_sub(self.sc.cluster.interval));
        holder.table.get(self.nodes[m].spec.node_id).is_some_and(|e| e.rec.claimed_ns >= since.as_nanos())
    }

    // ---- invariants checked on every step ------------------------------------------------

    fn check_step(&mut self) {
        let now = self.now;
        while self.cursor + 1 < self.disturbances.len() && self.disturbances[self.cursor + 1].0 <= now {
            self.cursor += 1;
        }
        let quiet = quiet_for(&self.disturbances[..(self.cursor + 1).min(self.disturbances.len())], now);
        self.track_clients();
        if quiet >= self.settle {
            let holders = (0..self.nodes.len()).filter(|&i| self.answers(i)).count();
            if holders > 1 {
                let who: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.answers(i)).collect();
                let detail = format!("stable for {:.3} ms, yet {holders} answer ARP: {}", ms(quiet), names(&who));
                self.violate(Invariant::AtMostOneHolder, detail);
            }
            let mut claimers = self.nodes.iter().enumerate().filter(|(_, n)| n.claiming && n.running()).map(|(i, _)| i);
            let (first, second) = (claimers.next(), claimers.next());
            if first.is_none() && self.nodes.iter().any(SimNode::eligible) {
                let eligible: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].eligible()).collect();
                let detail = format!("stable for {:.3} ms, {} eligible, nobody claims", ms(quiet), names(&eligible));
                self.violate(Invariant::AtLeastOneClaims, detail);
            }
            if let (Some(h), None) = (first, second)
                && self.nodes[h].worthiness() == 0
            {
                let healthy: Vec<usize> = (0..self.nodes.len())
                    .filter(|&j| j != h && self.nodes[j].eligible() && self.nodes[j].worthiness() > 0)
                    .collect();
                if !healthy.is_empty() {
                    let detail = format!(
                        "stable for {:.3} ms, n{h} holds with worthiness 0 while {} could",
                        ms(quiet),
                        names(&healthy)
                    );
                    self.violate(Invariant::UnhealthyNeverHoldsBesideHealthy, detail);
                }
            }
            if let (Some(h), None) = (first, second)
                && quiet >= self.client_settle
            {
                let h = h as u8;
                let since = self.nodes[h as usize].claimed_since;
                // A holder cannot know its announcements were lost on the way: when they may
                // have been, since it claimed, only the periodic refresh can repair a client.
                let refreshed = self.sc.cluster.refresh.is_some_and(|p| quiet >= self.client_settle + p);
                for c in 0..self.clients.len() {
                    let heard = self.clients[c].path_disturbed < since || refreshed;
                    if let Some((m, _)) = self.clients[c].cache
                        && m != h
                        && heard
                        && (refreshed || self.heard_claim(h as usize, m as usize, self.clients[c].cached_at))
                    {
                        let detail = format!("stable for {:.3} ms, n{h} claims, client c{c} points at n{m}", ms(quiet));
                        self.violate(Invariant::ClientsPointAtHolder, detail);
                    }
                }
            }
        }
        self.check_windows();
        self.check_flaps();
        self.check_stalls();
    }

    fn track_clients(&mut self) {
        let now = self.now;
        for c in 0..self.clients.len() {
            let wrong = self.clients[c].cache.is_some_and(|(m, _)| !self.nodes[m as usize].delivers());
            let cl = &mut self.clients[c];
            match (wrong, cl.misdirected_since) {
                (true, None) => cl.misdirected_since = Some(now),
                (false, Some(since)) => {
                    cl.misdirected_since = None;
                    self.report.lost_probe_ns += now - since;
                }
                _ => {}
            }
        }
    }

    fn check_windows(&mut self) {
        let now = self.now;
        for w in 0..self.windows.len() {
            let win = &self.windows[w];
            if !(win.from..win.to).contains(&now) {
                continue;
            }
            if win.needs_holder && !(0..self.nodes.len()).any(|i| self.nodes[i].delivers()) {
                let detail = format!("no node holds the address during a clean planned change ({})", win.what);
                self.violate(Invariant::MakeBeforeBreak, detail);
            }
            for c in 0..self.clients.len() {
                // A client pointed wrong before the change is (d)'s to report.
                if let Some(since) = self.clients[c].misdirected_since
                    && now > since
                    && since >= self.windows[w].from
                    && self.windows[w].needs_holder
                {
                    let m = self.clients[c].cache.map_or(255, |(m, _)| m);
                    let what = self.windows[w].what.clone();
                    let detail = format!("client c{c} points at n{m}, which does not hold the address ({what})");
                    self.violate(Invariant::MakeBeforeBreak, detail);
                }
            }
        }
    }

    fn check_flaps(&mut self) {
        let now = self.now;
        for w in 0..self.flaps.len() {
            let win = &self.flaps[w];
            if win.done || now < win.to {
                continue;
            }
            let minutes = (win.to - win.from) as f64 / 60e9;
            let bound = FLAP_BOUND_BASE + (FLAP_BOUND_PER_MINUTE * minutes).ceil() as u64;
            let (n, from) = (win.transitions, win.from);
            self.flaps[w].done = true;
            if n > bound {
                let detail = format!(
                    "{n} transitions in {:.1} s of steady loss from {:.3} ms (bound {bound})",
                    minutes * 60.0,
                    ms(from)
                );
                self.violate(Invariant::NoFlapping, detail);
            }
        }
    }
}

fn names(nodes: &[usize]) -> String {
    nodes.iter().map(|i| format!("n{i}")).collect::<Vec<_>>().join(",")
}

/// The node at the origin of a change of state, for the replay invariant.
fn reason_node(reason: &Reason) -> Option<u32> {
    match *reason {
        Reason::HolderLeaving { node_id }
        | Reason::HolderInMaintenance { node_id }
        | Reason::Preempt { node_id, .. }
        | Reason::MoreWorthyHolder { node_id, .. }
        | Reason::SuccessorHolds { node_id }
        | Reason::HolderUnhealthy { node_id } => Some(node_id),
        _ => None,
    }
}

/// The clients a fault may have kept announcements from (lost, delayed or reordered).
fn announcement_path(kind: &FaultKind) -> Option<u32> {
    match *kind {
        FaultKind::Loss { to, .. }
        | FaultKind::BurstLoss { to, .. }
        | FaultKind::Delay { to, .. }
        | FaultKind::Reorder { to, .. } => Some(to),
        _ => None,
    }
}

fn planned_node(kind: &FaultKind) -> usize {
    match *kind {
        FaultKind::Stop { node, .. }
        | FaultKind::Maintenance { node }
        | FaultKind::Priority { node, .. }
        | FaultKind::TrackDown { node, .. } => node,
        _ => usize::MAX,
    }
}

fn describe(sc: &Scenario) -> String {
    let c = &sc.cluster;
    let nodes: Vec<String> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "n{i}=id {} prio {} {:+}ppm start {:.1}ms {}",
                n.node_id & 0xff,
                n.priority,
                n.clock.ppb / 1000,
                ms(n.start),
                if n.answer {
                    "event+answer"
                } else if n.event {
                    "event"
                } else {
                    "poll"
                }
            )
        })
        .collect();
    format!(
        "{} nodes [{}]; interval {:.3} ms, tolerance {:.3} ms, max {:.3} ms, hold-down {:.3} ms, preempt {:?}, refresh {:?}, leave timeout {:.1} ms, wake slack {:.3} ms, timer slack {:.3} ms, ring delay {:.3} ms, LAN {:.3}+{:.3} ms, {} clients, {:.1} s simulated; settle {:.3} ms, client settle {:.3} ms",
        c.nodes.len(),
        nodes.join("; "),
        ms(c.interval),
        ms(c.tolerance),
        ms(c.max_tolerance),
        ms(c.hold_down),
        c.preempt,
        c.refresh.map(ms),
        ms(c.leave_timeout),
        ms(c.wake_slack),
        ms(c.timer_slack),
        ms(c.ring_delay),
        ms(c.net_delay),
        ms(c.net_jitter),
        c.clients,
        c.duration as f64 / 1e9,
        ms(c.settle()),
        ms(c.client_settle()),
    )
}
