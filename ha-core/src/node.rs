//! The failover decision as pure code. It is handed `now`, the peers the XDP program recorded
//! and the link state, and hands back what to do; it owns no socket, timer or clock, so tests
//! drive time by hand.
//!
//! Rules:
//! - Everybody starts STANDBY and first listens for one tolerance, to learn of a holder.
//! - A peer is live while its last heartbeat is at most its silence limit old: the tolerance, or
//!   more while its heartbeats are being lost (`liveness`), up to `max_tolerance`. A live peer
//!   that is leaving or in maintenance is not a candidate for the address.
//! - Worthiness orders candidates: priority, then node id. The priority is the configured one
//!   less failing health checks (`set_priority`); 0 marks an unhealthy node.
//! - Only the most worthy live candidate takes the address: when nobody holds it, or (preempt)
//!   when it is more worthy than the holder. A holder at priority 0 is protected by no preempt
//!   setting: any live candidate above 0 that is the most worthy takes over, make-before-break.
//! - Make-before-break: a taker adds the address, announces it, and says ACTIVE at once; a holder
//!   releases only when it sees a more worthy live holder (or, leaving, any successor). The
//!   client is re-pointed before the old holder lets go.
//! - The taker has the last word: once the holder it took from stops claiming, it announces
//!   again. The old holder may have announced (a scheduled repeat) after the taker did but
//!   before it heard the claim; the agent keeps the old holder's address for a grace meanwhile.
//! - Hold-down: a node that just yielded to a more worthy holder does not take the address on
//!   that holder's silence again for `hold_down` (explicit hand-overs still go through). A
//!   false takeover on a lossy link then costs one round trip, not a flap every few beats.
//! - Gap guard: a step more than a tolerance after the previous one means this node did not run
//!   (stopped, starved, or the whole machine paused). Silences in the table may be our own
//!   absence, so the node listens again for one tolerance before taking anything.
//! - A holder announces again when a peer claimed the address and withdrew between two of its
//!   looks (a false takeover while this holder stalled): clients may point at that peer now.
//! - A holder announces again whenever a peer it could not hear comes back: while apart, that
//!   peer may have claimed the address and re-pointed clients (a partition healing). It may
//!   also yield before we ever see its claim, so its return is the only sign we get.
//! - With `refresh`, the holder announces the address again every period.
//! - A holder whose link goes down keeps the address for one tolerance: a blip shorter than
//!   that, which no peer can have acted on (their silence limits are at least the tolerance),
//!   costs clients nothing more than the blip. Longer, it lets go (`link_down`); peers take
//!   over on its silence.
//! - A node that cannot serve (its link is down, or its checks fail: priority 0) and does not
//!   hold the address reports FAULT ([`Role`]); on the wire it stays STANDBY, a candidate of
//!   last resort. Its own fault is its reason: `link_down`, `checks_failing`, `recovered`.
use ha_common::wire::{FLAG_CONFIRMING, FLAG_LEAVING, FLAG_MAINTENANCE, NodeState};

pub use crate::liveness::Beats;
use crate::{
    liveness::{Liveness, LivenessConfig},
    mutation::{self, Mutation},
    time::{Duration, Instant},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preempt {
    /// A more worthy node takes the address as soon as it sees a less worthy holder.
    Always,
    /// The address stays with its holder while the holder lives (bi-stable).
    Never,
    /// Like `Always`, after the more worthy node has been ready this long without interruption.
    Delay(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub node_id: u32,
    pub priority: u32,
    pub tolerance: Duration,
    /// The most a peer's silence limit grows above `tolerance` while its heartbeats are lost.
    pub max_tolerance: Duration,
    pub preempt: Preempt,
    /// How long a leaving holder waits for a successor's claim before letting go anyway.
    pub leave_timeout: Duration,
    /// After yielding to a more worthy holder, how long its silence alone does not make this
    /// node take the address back (0: off).
    pub hold_down: Duration,
    /// The holder announces the address again this often (None: only on changes).
    pub refresh: Option<Duration>,
}

/// A peer as recorded by the XDP program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node_id: u32,
    pub priority: u32,
    pub state: NodeState,
    pub flags: u8,
    pub last_seen: Instant,
    /// Its heartbeat counts, from which its loss rate is estimated.
    pub beats: Beats,
    /// When its last heartbeat claiming the address arrived.
    pub claimed_at: Option<Instant>,
    /// A heartbeat of its current run echoed ours: it is live, not a recording (see
    /// `ha_common::accept`). Decisions see only confirmed peers.
    pub confirmed: bool,
}

impl Peer {
    /// The peer as the receive path recorded it (`None` for a state this build does not know).
    pub fn from_record(node_id: u32, rec: &ha_common::maps::PeerRecord) -> Option<Self> {
        Some(Peer {
            node_id,
            priority: rec.priority,
            state: NodeState::from_u8(rec.state)?,
            flags: rec.flags,
            last_seen: Instant::from_nanos(rec.last_seen_ns),
            beats: Beats {
                interval: Duration::from_micros(u64::from(rec.interval_us)),
                epoch: rec.epoch,
                sent: rec.counter,
                received: rec.received,
            },
            claimed_at: (rec.claimed_ns != 0).then_some(Instant::from_nanos(rec.claimed_ns)),
            confirmed: rec.confirmed != 0,
        })
    }

    /// The peer as group `group_id` sees it: group 0 is [`Peer::from_record`]; another group
    /// reads its entry of the peer's last heartbeat (state, priority, its own flags with the
    /// node's `FLAG_CONFIRMING`, when it last claimed). `None` when the peer does not run that
    /// group (invisible to it) or the entry's state is unknown.
    pub fn for_group(node_id: u32, rec: &ha_common::maps::PeerRecord, group_id: u8) -> Option<Self> {
        let peer = Self::from_record(node_id, rec)?;
        if group_id == 0 {
            return Some(peer);
        }
        let g = rec.group(group_id)?;
        Some(Peer {
            priority: g.priority,
            state: NodeState::from_u8(g.state)?,
            flags: g.flags | (rec.flags & FLAG_CONFIRMING),
            claimed_at: (g.claimed_ns != 0).then_some(Instant::from_nanos(g.claimed_ns)),
            ..peer
        })
    }

    fn rank(&self) -> (u32, u32) {
        (self.priority, self.node_id)
    }

    fn is_candidate(&self) -> bool {
        self.flags & (FLAG_LEAVING | FLAG_MAINTENANCE) == 0
    }

    fn holds(&self) -> bool {
        self.state == NodeState::Active
    }
}

/// What the node observes at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub now: Instant,
    pub peers: &'a [Peer],
    pub link_up: bool,
}

/// Why a transition happened; logged, counted in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Nobody held the address and this node is the most worthy live one.
    NoHolder,
    /// The holder's heartbeats stopped.
    HolderSilent { node_id: u32, silent_for: Duration },
    /// The holder announced a clean stop.
    HolderLeaving { node_id: u32 },
    /// The holder went into maintenance.
    HolderInMaintenance { node_id: u32 },
    /// This node is more worthy than the live holder (preemption).
    Preempt { node_id: u32, priority: u32 },
    /// A more worthy node holds the address now: make-before-break hand-over completed.
    MoreWorthyHolder { node_id: u32, priority: u32 },
    /// Leaving or in maintenance, and a successor holds the address now.
    SuccessorHolds { node_id: u32 },
    /// Leaving, and no successor claimed the address within the leave timeout.
    LeaveTimeout,
    /// Leaving, and no live node could take the address.
    NoSuccessor,
    /// This node's link went down: it cannot serve the address.
    LinkDown,
    /// The holder announces priority 0 (its checks fail): no preempt setting protects it.
    HolderUnhealthy { node_id: u32 },
    /// Not a change of state: this holder met another holder it had not taken the address from
    /// (a healed split brain), is more worthy, keeps the address and announces it again.
    SplitBrainWon { node_id: u32, priority: u32 },
    /// This node's health checks fail (priority 0): it hands the address over, or cannot serve.
    ChecksFailing { successor: Option<u32> },
    /// This node's link is up and its checks pass again: it can serve.
    Recovered,
}

impl Reason {
    /// A short stable name for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::NoHolder => "no_holder",
            Reason::HolderSilent { .. } => "holder_silent",
            Reason::HolderLeaving { .. } => "holder_leaving",
            Reason::HolderInMaintenance { .. } => "holder_maintenance",
            Reason::Preempt { .. } => "preempt",
            Reason::MoreWorthyHolder { .. } => "more_worthy_holder",
            Reason::SuccessorHolds { .. } => "successor_holds",
            Reason::LeaveTimeout => "leave_timeout",
            Reason::NoSuccessor => "no_successor",
            Reason::LinkDown => "link_down",
            Reason::HolderUnhealthy { .. } => "holder_unhealthy",
            Reason::SplitBrainWon { .. } => "split_brain_won",
            Reason::ChecksFailing { .. } => "checks_failing",
            Reason::Recovered => "recovered",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        match self {
            Reason::NoHolder => write!(f, "nobody holds the address and this node is the most worthy"),
            Reason::HolderSilent { node_id, silent_for } => {
                write!(f, "holder {} silent for {:.1} ms", id(*node_id), ms(silent_for))
            }
            Reason::HolderLeaving { node_id } => write!(f, "holder {} is leaving", id(*node_id)),
            Reason::HolderInMaintenance { node_id } => {
                write!(f, "holder {} is in maintenance", id(*node_id))
            }
            Reason::Preempt { node_id, priority } => {
                write!(f, "more worthy than holder {} (priority {priority})", id(*node_id))
            }
            Reason::MoreWorthyHolder { node_id, priority } => {
                write!(f, "{} (priority {priority}) holds the address now", id(*node_id))
            }
            Reason::SuccessorHolds { node_id } => {
                write!(f, "successor {} holds the address now", id(*node_id))
            }
            Reason::LeaveTimeout => write!(f, "no successor claimed the address in time"),
            Reason::NoSuccessor => write!(f, "no live node can take the address"),
            Reason::LinkDown => write!(f, "link is down"),
            Reason::HolderUnhealthy { node_id } => write!(f, "holder {} is unhealthy (priority 0)", id(*node_id)),
            Reason::SplitBrainWon { node_id, priority } => write!(
                f,
                "{} (priority {priority}) held the address too (split brain); this node is more worthy and keeps it",
                id(*node_id)
            ),
            Reason::ChecksFailing { successor: Some(node_id) } => {
                write!(f, "health checks fail; {} holds the address now", id(*node_id))
            }
            Reason::ChecksFailing { successor: None } => write!(f, "health checks fail"),
            Reason::Recovered => write!(f, "link up and health checks pass: can serve again"),
        }
    }
}

/// Node ids default to IPv4 addresses: show them that way.
pub fn id(node_id: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(node_id)
}

/// Why a holder announces the address again without a change of state: one precise cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reannounce {
    /// A peer it could not hear is back: while apart, it may have claimed and re-pointed clients.
    PeerReturned,
    /// A peer claimed the address and gave it back between two looks (a claim never seen).
    MissedClaim,
    /// Another node claims the address too (an overlap or a healed split brain).
    OtherClaims,
    /// Another node's claim ended: its announcements may have come after ours.
    OtherClaimEnded,
    /// The holder it took the address from stopped claiming (the last word of a hand-over).
    OldHolderLetGo,
    /// Its link came back within the tolerance.
    LinkBack,
}

impl Reannounce {
    /// A short stable name for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Reannounce::PeerReturned => "peer_returned",
            Reannounce::MissedClaim => "missed_claim",
            Reannounce::OtherClaims => "other_claims",
            Reannounce::OtherClaimEnded => "other_claim_ended",
            Reannounce::OldHolderLetGo => "old_holder_let_go",
            Reannounce::LinkBack => "link_back",
        }
    }
}

/// The state a node reports (status, events, hooks, metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Active,
    Standby,
    /// Not holding, and unable to serve: its link is down or its checks fail.
    Fault,
}

impl Role {
    pub const fn name(self) -> &'static str {
        match self {
            Role::Active => "ACTIVE",
            Role::Standby => "STANDBY",
            Role::Fault => "FAULT",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Role,
    pub to: Role,
    pub reason: Reason,
}

/// What to do after one step. No allocation: this runs every tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Add the shared addresses, announce them, then say ACTIVE.
    pub take: bool,
    /// Stop announcing and remove the shared addresses (after a hand-over the agent keeps them
    /// for a grace: see `linger`).
    pub release: bool,
    /// Announce the addresses again (another node claimed them; we keep them).
    pub announce: bool,
    /// Periodic refresh: announce the addresses once (no repeats).
    pub refresh: bool,
    /// Send a heartbeat now rather than at the next interval: our state changed.
    pub send_now: bool,
    /// The clean stop is complete.
    pub exit: bool,
    pub transition: Option<Transition>,
    /// This step came this long after the previous one (more than a tolerance): the node did
    /// not run meanwhile and listens again before deciding.
    pub resumed_after: Option<Duration>,
}

pub struct Node {
    cfg: NodeConfig,
    /// Announced worthiness: the configured priority less failing checks.
    priority: u32,
    state: NodeState,
    /// No takeover decisions before this: we may not have heard the holder yet.
    listening_until: Instant,
    leaving_since: Option<Instant>,
    maintenance: bool,
    link_up: bool,
    /// A holder's link went down at this instant: it lets go one tolerance later.
    link_down_since: Option<Instant>,
    /// Since when a preemption with a delay has been continuously possible.
    preempt_ready_since: Option<Instant>,
    /// Whether another live holder was seen in the last step (to re-announce once per claim).
    other_holder_seen: bool,
    /// No takeover on a holder's silence before this: we yielded to it recently.
    held_down_until: Instant,
    /// `now` of the previous step, to notice when this node did not run for a while.
    last_step: Option<Instant>,
    /// Whether the previous step restarted the listen after a gap.
    relistened: bool,
    /// Steps this far apart beyond the tolerance are planned, not a pause (a holder whose kernel
    /// answers for it wakes only to renew: see `Failover`).
    quiet: Duration,
    /// Peers live at the previous step (a reused buffer: no allocation once warm).
    live_peers: Vec<u32>,
    /// When the holder announces again (with `refresh`).
    next_refresh: Instant,
    /// The holder this node took the address from, while it still claims it: the expected
    /// overlap of a make-before-break hand-over, not a split brain.
    took_from: Option<u32>,
    /// Each peer's silence limit, from its loss rate.
    liveness: Liveness,
    /// The role last reported.
    role: Role,
    /// Why the last step announced again, if it did.
    reannounce: Option<Reannounce>,
    /// After a late wake: this much more silence is forgiven every peer, until the instant.
    absence: Option<(Duration, Instant)>,
}

impl Node {
    pub fn new(cfg: NodeConfig, now: Instant) -> Self {
        Self {
            cfg,
            priority: cfg.priority,
            state: NodeState::Standby,
            listening_until: now + cfg.tolerance,
            leaving_since: None,
            maintenance: false,
            link_up: true,
            link_down_since: None,
            preempt_ready_since: None,
            other_holder_seen: false,
            held_down_until: Instant::ZERO,
            last_step: None,
            relistened: false,
            quiet: Duration::ZERO,
            live_peers: Vec::new(),
            next_refresh: Instant::ZERO,
            took_from: None,
            liveness: Liveness::new(LivenessConfig { tolerance: cfg.tolerance, max_tolerance: cfg.max_tolerance }),
            role: Role::Standby,
            reannounce: None,
            absence: None,
        }
    }

    /// Worthiness announced now.
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// Sets the worthiness (the configured priority less failing checks); peers hear at once.
    pub fn set_priority(&mut self, priority: u32) -> Output {
        let changed = self.priority != priority;
        self.priority = priority;
        Output { send_now: changed, ..Output::default() }
    }

    pub fn state(&self) -> NodeState {
        self.state
    }

    /// The state to report: FAULT for a node that does not hold and cannot serve.
    pub fn role(&self) -> Role {
        match self.state {
            NodeState::Active => Role::Active,
            NodeState::Standby if !self.link_up || self.priority == 0 => Role::Fault,
            NodeState::Standby => Role::Standby,
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Why the last step asked to announce again (`Output::announce`), if it did.
    pub fn reannounce(&self) -> Option<Reannounce> {
        self.reannounce
    }

    fn announce(&mut self, why: Reannounce, out: &mut Output) {
        out.announce = true;
        self.reannounce = Some(why);
    }

    /// When a holder cut off from its link lets go, unless the link comes back first.
    pub fn link_release_at(&self) -> Option<Instant> {
        self.link_down_since.map(|since| since + self.cfg.tolerance)
    }

    /// No takeover decision before `at`: what this node sees cannot be trusted yet (it did not
    /// run for a while, or it cannot yet tell live peers from recordings).
    /// Steps up to `quiet` more than a tolerance apart are this node's plan, not a pause of its
    /// machine: the gap guard lets them be.
    pub fn set_quiet(&mut self, quiet: Duration) {
        self.quiet = quiet;
    }

    pub fn listen_until(&mut self, at: Instant) {
        self.listening_until = self.listening_until.max(at);
    }

    /// Takes a reloaded configuration: the base priority, preempt, hold-down, refresh and
    /// leave timeout apply from the next step. The identity and the time base (node id,
    /// tolerance, maximum tolerance) stay: they need a restart.
    pub fn reconfigure(&mut self, cfg: NodeConfig) {
        self.cfg = NodeConfig {
            node_id: self.cfg.node_id,
            tolerance: self.cfg.tolerance,
            max_tolerance: self.cfg.max_tolerance,
            ..cfg
        };
        if self.cfg.refresh.is_none() {
            self.next_refresh = Instant::ZERO;
        }
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving_since.is_some()
    }

    /// Flags for this node's heartbeats.
    pub fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.is_leaving() {
            flags |= FLAG_LEAVING;
        }
        if self.maintenance {
            flags |= FLAG_MAINTENANCE;
        }
        flags
    }

    /// Begins a clean stop: peers are told at once, the most worthy takes over, we let go after.
    pub fn leave(&mut self, now: Instant) -> Output {
        if self.leaving_since.is_none() {
            self.leaving_since = Some(now);
        }
        Output { send_now: true, ..Output::default() }
    }

    /// Maintenance: hand the address over (make-before-break) and do not take it until off.
    pub fn set_maintenance(&mut self, on: bool) -> Output {
        let changed = self.maintenance != on;
        self.maintenance = on;
        Output { send_now: changed, ..Output::default() }
    }

    pub fn in_maintenance(&self) -> bool {
        self.maintenance
    }

    fn is_candidate(&self) -> bool {
        !self.is_leaving() && !self.maintenance && self.link_up
    }

    fn rank(&self) -> (u32, u32) {
        (self.priority, self.cfg.node_id)
    }

    fn is_live(&self, peer: &Peer, now: Instant) -> bool {
        let mut silence = now - peer.last_seen;
        if mutation::active(Mutation::TakeoverEarly) {
            silence += peer.beats.interval;
        }
        silence <= self.limit(peer.node_id, now)
    }

    /// A peer's silence limit at `now`: its own, and the forgiven absence after a late wake.
    fn limit(&self, node_id: u32, now: Instant) -> Duration {
        let forgiven = self.absence.filter(|&(_, until)| now < until).map_or(Duration::ZERO, |(late, _)| late);
        self.liveness.limit(node_id) + forgiven
    }

    /// The first instant at which `peer`, unheard meanwhile, counts as silent.
    pub fn silent_at(&self, peer: &Peer) -> Instant {
        let plain = peer.last_seen + self.liveness.limit(peer.node_id) + Duration::from_nanos(1);
        match self.absence {
            // While the absence is forgiven the limit is longer; when it ends, the plain one.
            Some((late, until)) if plain < until => (plain + late).min(until),
            _ => plain,
        }
    }

    /// This node woke `late` after it meant to: its machine may have stalled with it, and
    /// heartbeats that reached it meanwhile may not be in the table. For the next while (the
    /// longest silence limit, then the stall again) every peer's silence limit is `late` longer.
    pub fn note_absence(&mut self, now: Instant, late: Duration) {
        let until = now + self.cfg.max_tolerance.max(self.cfg.tolerance) + late;
        // A shorter stall does not shorten the forgiveness of a longer one still in force.
        self.absence = match self.absence {
            Some((earlier, ends)) if now < ends => Some((earlier.max(late), ends.max(until))),
            _ => Some((late, until)),
        };
    }

    /// The next instant after `now` at which a step may decide differently with the same
    /// peers: a listen, a hold-down, a preemption delay, a leave timeout, a refresh, or a
    /// forgiven absence ends. (A driver that polls finds them with its tick; one woken by
    /// events must wake for them.)
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let future = |at: Instant| if at > now { at } else { Instant::NEVER };
        let preempt = match (self.cfg.preempt, self.preempt_ready_since) {
            (Preempt::Delay(delay), Some(since)) => future(since + delay),
            _ => Instant::NEVER,
        };
        let leave = self.leaving_since.map_or(Instant::NEVER, |since| future(since + self.cfg.leave_timeout));
        let refresh = match self.cfg.refresh {
            Some(_) if self.state == NodeState::Active => future(self.next_refresh),
            _ => Instant::NEVER,
        };
        let absence = self.absence.map_or(Instant::NEVER, |(_, until)| future(until));
        [future(self.listening_until), future(self.held_down_until), preempt, leave, refresh, absence]
            .into_iter()
            .min()
            .unwrap_or(Instant::NEVER)
    }

    /// How long this peer may be silent and still count as live, and its estimated loss rate.
    pub fn peer_liveness(&self, node_id: u32) -> (Duration, f64) {
        (self.liveness.limit(node_id), self.liveness.loss(node_id))
    }

    fn become_(&mut self, to: NodeState, reason: Reason, out: &mut Output) {
        out.send_now = true;
        match to {
            NodeState::Active => out.take = true,
            NodeState::Standby => out.release = true,
        }
        self.state = to;
        let role = self.role();
        let reason = match reason {
            // Handing over because our own checks fail: that is the reason, not the successor.
            Reason::MoreWorthyHolder { node_id, .. } if role == Role::Fault && self.priority == 0 => {
                Reason::ChecksFailing { successor: Some(node_id) }
            }
            other => other,
        };
        out.transition = Some(Transition { from: self.role, to: role, reason });
        self.role = role;
        self.preempt_ready_since = None;
        self.other_holder_seen = false;
        self.took_from = None;
    }

    /// One decision at `inputs.now`. `now` must be read before the peer table, so that a step
    /// that runs late sees peers younger than `now`, never stale ones as silent.
    pub fn step(&mut self, inputs: Inputs<'_>) -> Output {
        let previous_look = self.last_step;
        let mut out = Output { resumed_after: self.note_gap(inputs.now), ..Output::default() };
        self.reannounce = None;
        self.liveness.observe(inputs.peers);
        let returned = self.note_returns(inputs.now, inputs.peers);
        let missed_claim = previous_look.is_some_and(|at| self.missed_claim(inputs.peers, at, inputs.now));
        self.decide(inputs, &mut out);
        if (returned || missed_claim) && self.state == NodeState::Active && !out.take && !out.announce {
            let why = if missed_claim { Reannounce::MissedClaim } else { Reannounce::PeerReturned };
            self.announce(why, &mut out);
        }
        self.report_fault(&mut out);
        self.schedule_refresh(inputs.now, &mut out);
        out
    }

    /// The gap guard. Kernel timestamps keep the table right while only this process is late;
    /// but if the machine was paused too, nothing was recorded meanwhile and every peer looks
    /// silent. Listening again costs one tolerance after a pause; it is not restarted by the
    /// step right after one that restarted it, so a node starved for good still decides.
    fn note_gap(&mut self, now: Instant) -> Option<Duration> {
        let prev = self.last_step.replace(now)?;
        let gap = now - prev;
        if mutation::active(Mutation::NeverRelisten) {
            return None;
        }
        let relisten = gap > self.cfg.tolerance + self.quiet && !self.relistened;
        self.relistened = relisten;
        if !relisten {
            return None;
        }
        self.listening_until = self.listening_until.max(now + self.cfg.tolerance);
        Some(gap)
    }

    /// Whether a live peer was not live at the previous step (it joined, or came back).
    fn note_returns(&mut self, now: Instant, peers: &[Peer]) -> bool {
        let mut returned = false;
        let before = self.live_peers.len();
        for p in peers {
            if now - p.last_seen <= self.limit(p.node_id, now) {
                returned |= !self.live_peers[..before].contains(&p.node_id);
                self.live_peers.push(p.node_id);
            }
        }
        self.live_peers.drain(..before);
        returned
    }

    /// A change between STANDBY and FAULT (the link, or the checks) is reported with this node's
    /// own reason.
    fn report_fault(&mut self, out: &mut Output) {
        let role = self.role();
        if role == self.role || out.transition.is_some() {
            return;
        }
        let reason = match role {
            Role::Fault if !self.link_up => Reason::LinkDown,
            Role::Fault => Reason::ChecksFailing { successor: None },
            Role::Standby | Role::Active => Reason::Recovered,
        };
        out.transition = Some(Transition { from: self.role, to: role, reason });
        self.role = role;
    }

    /// Whether a peer claimed the address after `since` and no longer does (it yielded, or it
    /// went silent: died, or cut off again): its claim was never seen between two looks, but its
    /// announcement may have re-pointed clients.
    fn missed_claim(&self, peers: &[Peer], since: Instant, now: Instant) -> bool {
        peers.iter().any(|p| p.claimed_at.is_some_and(|at| at > since) && !(p.holds() && self.is_live(p, now)))
    }

    /// The holder's periodic announcement; any announcement restarts the period.
    fn schedule_refresh(&mut self, now: Instant, out: &mut Output) {
        let Some(period) = self.cfg.refresh else {
            return;
        };
        if self.state != NodeState::Active {
            return;
        }
        if out.take || out.announce || now >= self.next_refresh {
            out.refresh = !out.take && !out.announce;
            self.next_refresh = now + period;
        }
    }

    fn decide(&mut self, inputs: Inputs<'_>, out: &mut Output) {
        let now = inputs.now;
        if inputs.link_up != self.link_up {
            self.link_up = inputs.link_up;
            if !inputs.link_up && self.state == NodeState::Active {
                self.link_down_since = Some(now);
            } else if inputs.link_up && self.link_down_since.take().is_some() {
                // Back within the tolerance: nobody acted on our silence; clients learn again.
                self.announce(Reannounce::LinkBack, out);
            } else if inputs.link_up {
                // Back on the wire: learn who holds the address before deciding anything.
                self.listening_until = now + self.cfg.tolerance;
            }
        }
        if let Some(since) = self.link_down_since {
            if now - since >= self.cfg.tolerance {
                self.link_down_since = None;
                self.become_(NodeState::Standby, Reason::LinkDown, out);
            }
            // Cut off: nothing it sees now can change what it should do.
            return;
        }
        let live = |p: &&Peer| self.is_live(p, now);
        // The most worthy live holder that is a candidate (not leaving, not in maintenance).
        let best_holder =
            inputs.peers.iter().filter(live).filter(|p| p.holds() && p.is_candidate()).max_by_key(|p| p.rank());
        match self.state {
            NodeState::Active => self.step_active(now, inputs.peers, best_holder, out),
            NodeState::Standby => self.step_standby(now, inputs.peers, best_holder, out),
        }
    }

    fn step_active(&mut self, now: Instant, peers: &[Peer], best_holder: Option<&Peer>, out: &mut Output) {
        if !self.is_candidate() {
            if mutation::active(Mutation::ReleaseBeforeSuccessor) && best_holder.is_none() {
                self.become_(NodeState::Standby, Reason::LeaveTimeout, out);
                out.exit = self.is_leaving();
                return;
            }
            // Leaving or in maintenance: let go once a successor holds the address.
            if let Some(successor) = best_holder {
                self.become_(NodeState::Standby, Reason::SuccessorHolds { node_id: successor.node_id }, out);
                out.exit = self.is_leaving();
                return;
            }
            let Some(since) = self.leaving_since else {
                return;
            };
            let any_candidate = peers.iter().any(|p| self.is_live(p, now) && p.is_candidate());
            // Just resumed from a gap, candidates may only look silent: rely on the timeout.
            let resuming = now < self.listening_until;
            if !any_candidate && !resuming {
                self.become_(NodeState::Standby, Reason::NoSuccessor, out);
                out.exit = true;
            } else if now - since >= self.cfg.leave_timeout {
                self.become_(NodeState::Standby, Reason::LeaveTimeout, out);
                out.exit = true;
            }
            return;
        }
        // Another live node that claims the address, candidate or not: a holder in maintenance
        // or leaving still announces (it waits for a successor) and may re-point clients after
        // us, so its claim must end in our last word too.
        let other_claimer = best_holder.or_else(|| {
            peers
                .iter()
                .filter(|p| p.holds() && self.is_live(p, now) && self.took_from != Some(p.node_id))
                .max_by_key(|p| p.rank())
        });
        match best_holder {
            Some(holder) if holder.rank() > self.rank() => {
                let reason = Reason::MoreWorthyHolder { node_id: holder.node_id, priority: holder.priority };
                self.become_(NodeState::Standby, reason, out);
                self.held_down_until = now + self.cfg.hold_down;
            }
            _ if other_claimer.is_some() && best_holder.is_none() => {
                // A claimer that is no candidate (it hands over once it sees us hold): keep
                // watching its claim, no split brain to report.
                if !self.other_holder_seen {
                    self.announce(Reannounce::OtherClaims, out);
                }
                self.other_holder_seen = true;
            }
            Some(other) => {
                // A less worthy node claims the address too (it preempted wrongly, or a partition
                // healed): it will yield; re-point the clients at us meanwhile.
                if !self.other_holder_seen {
                    self.announce(Reannounce::OtherClaims, out);
                    if self.took_from != Some(other.node_id) {
                        // Hooks and events learn that this node won: it did not change state.
                        let reason = Reason::SplitBrainWon { node_id: other.node_id, priority: other.priority };
                        out.transition = Some(Transition { from: Role::Active, to: Role::Active, reason });
                    }
                }
                self.other_holder_seen = true;
            }
            None => {
                // The other holder stopped claiming (it yielded or died): its announcements may
                // have re-pointed clients after ours, so we have the last word.
                if std::mem::take(&mut self.other_holder_seen) {
                    self.announce(Reannounce::OtherClaimEnded, out);
                }
            }
        }
        self.announce_once_old_holder_lets_go(now, peers, out);
    }

    /// The last word of a hand-over, once the holder we took from stopped claiming (yielded or
    /// died): its scheduled announcements may have re-pointed clients after ours.
    fn announce_once_old_holder_lets_go(&mut self, now: Instant, peers: &[Peer], out: &mut Output) {
        let Some(old) = self.took_from else {
            return;
        };
        let still_claims = peers.iter().any(|p| p.node_id == old && p.holds() && self.is_live(p, now));
        if !still_claims {
            self.took_from = None;
            self.announce(Reannounce::OldHolderLetGo, out);
        }
    }

    fn step_standby(&mut self, now: Instant, peers: &[Peer], best_holder: Option<&Peer>, out: &mut Output) {
        if self.is_leaving() {
            out.exit = true;
            return;
        }
        if !self.is_candidate() || now < self.listening_until {
            self.preempt_ready_since = None;
            return;
        }
        let most_worthy =
            peers.iter().filter(|p| self.is_live(p, now) && p.is_candidate()).all(|p| p.rank() < self.rank());
        if !most_worthy {
            self.preempt_ready_since = None;
            return;
        }
        let Some(holder) = best_holder else {
            let reason = self.why_no_holder(now, peers);
            let on_silence = matches!(reason, Reason::HolderSilent { .. } | Reason::NoHolder);
            if on_silence && now < self.held_down_until && !mutation::active(Mutation::IgnoreHoldDown) {
                // We yielded moments ago: one late heartbeat is no reason to take it back.
                return;
            }
            match reason {
                // A hand-over: that holder still claims until it hears us.
                Reason::HolderLeaving { node_id } | Reason::HolderInMaintenance { node_id } => {
                    self.take_from(node_id, reason, out)
                }
                _ => self.become_(NodeState::Active, reason, out),
            }
            return;
        };
        // A live, less worthy node holds the address.
        if holder.priority == 0 && self.priority > 0 {
            // Its checks fail: preempt protects healthy holders only.
            self.take_from(holder.node_id, Reason::HolderUnhealthy { node_id: holder.node_id }, out);
            return;
        }
        let reason = Reason::Preempt { node_id: holder.node_id, priority: holder.priority };
        match self.cfg.preempt {
            Preempt::Never => {}
            Preempt::Always => self.take_from(holder.node_id, reason, out),
            Preempt::Delay(delay) => {
                let since = *self.preempt_ready_since.get_or_insert(now);
                if now - since >= delay {
                    self.take_from(holder.node_id, reason, out);
                }
            }
        }
    }

    /// Takes the address from a live holder, which keeps claiming it until it hears us.
    fn take_from(&mut self, holder: u32, reason: Reason, out: &mut Output) {
        self.become_(NodeState::Active, reason, out);
        self.took_from = Some(holder);
    }

    fn why_no_holder(&self, now: Instant, peers: &[Peer]) -> Reason {
        let live_holder = peers.iter().filter(|p| self.is_live(p, now) && p.holds()).max_by_key(|p| p.rank());
        if let Some(holder) = live_holder {
            return if holder.flags & FLAG_LEAVING != 0 {
                Reason::HolderLeaving { node_id: holder.node_id }
            } else {
                Reason::HolderInMaintenance { node_id: holder.node_id }
            };
        }
        // The most recently heard holder, now silent.
        match peers.iter().filter(|p| p.holds()).max_by_key(|p| p.last_seen) {
            Some(holder) => Reason::HolderSilent { node_id: holder.node_id, silent_for: now - holder.last_seen },
            None => Reason::NoHolder,
        }
    }
}

#[cfg(test)]
mod tests;
