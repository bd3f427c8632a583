//! The whole failover logic of one node, sans I/O, in the style of quinn-proto's `Connection`:
//! the driver feeds what happened through `handle_*`, carries out what [`Failover::poll_action`]
//! and [`Failover::poll_event`] hand back, in that order, and sleeps until
//! [`Failover::poll_timeout`] (or until something happens). Every schedule lives here: the
//! heartbeat times and their catch-up after a stall, the repeats of an announcement, the grace
//! an old holder keeps its address after a hand-over, the next wake. The decision itself is
//! [`Node`]'s.
//!
//! Freshness: a peer's heartbeats count only once one of them echoed this node's epoch (its
//! record is `confirmed`, see `ha_common::accept`): recordings of any age, replayed to a node
//! that just started, are ignored. So every heartbeat echoes one peer's epoch back: a peer seen
//! in a new run first (each in a heartbeat of its own, sent at once), then peers that say they
//! are still confirming (`FLAG_CONFIRMING`), then all live peers in turn. While a recently heard
//! peer is unconfirmed, this node takes no takeover decision, for at most the longest silence
//! limit: a live holder whose echo was lost is not mistaken for an absent one.
//!
//! A late wake: when this node wakes more than an interval after it meant to, its machine may
//! have stalled with it (a VM pause), and heartbeats that arrived meanwhile were not recorded.
//! Every peer's silence limit is then longer by the stall (at most two intervals), for a while:
//! this node's absence is no peer's silence.
//!
//! One wake of a driver:
//! 1. `now` from the clock, *then* the peer table (see [`Failover::handle_peers`]);
//! 2. `handle_link`, `handle_priority`, `handle_command` for whatever changed;
//! 3. `handle_peers` with the table (or `handle_table_unreadable`);
//! 4. `handle_timeout(now)`;
//!    (`handle_foreign_claim` for claims for the address by other MACs, any time before it);
//! 5. drain `poll_action` (addresses, announcements, heartbeats, stamps), then `poll_event`;
//! 6. stop when `is_done()`, else sleep until `poll_timeout()`.
//!
//! Two ways to wake ([`Wake`]). `Poll`: the driver looks at the table at least every `tick`,
//! and at each peer's expiry, and sends each heartbeat itself. `Event`: the kernel reports what
//! the driver would otherwise poll for (a peer's expiry by a timer armed with the limit this
//! core hands out in [`Action::SetSilenceLimit`], and each change of a peer's record the
//! decisions read), so `poll_timeout` holds only the deadlines this core owns; and heartbeats
//! leave as a schedule ([`Action::ScheduleHeartbeats`]) a kernel-side sender carries out
//! without a wake per heartbeat. Before step 3 of a wake that a kernel expiry caused, the
//! driver calls `handle_expired`.
use std::collections::VecDeque;

use ha_common::wire::{Echo, FLAG_ANSWERING, FLAG_CONFIRMING, FLAG_LEAVING, FLAG_MAINTENANCE, NodeState};

use crate::{
    linger::{Linger, after_hand_over},
    node::{Node, NodeConfig, Output, Peer, Reannounce, Transition},
    time::{Duration, Instant},
};

/// Repeats of an announcement after the first (which goes out with the take, before the
/// ACTIVE heartbeat): clients whose first ARP reply was lost, or that cached ours late.
pub const ANNOUNCE_REPEATS: [Duration; 4] =
    [Duration::from_millis(5), Duration::from_millis(20), Duration::from_millis(100), Duration::from_millis(500)];

/// A wake this late or less is scheduling jitter, not a stall of the machine.
pub const JITTER: Duration = Duration::from_millis(1);

/// How often the operator's view (`status`) is refreshed when nothing changes.
pub const STATUS_EVERY: Duration = Duration::from_millis(50);

/// How long after another MAC's claim for the address a holder decides on it: a legitimate new
/// holder sends its ACTIVE heartbeat right after its announcement, so by then its claim is in
/// the peer table and the hand-over is not fought.
pub const CLAIM_SETTLE: Duration = Duration::from_millis(2);

/// How the driver learns of what happens (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wake {
    /// A table read at least every tick and at every peer's expiry; a wake per heartbeat.
    #[default]
    Poll,
    /// Kernel expiry timers and change events; heartbeats as a schedule.
    Event,
}

impl Wake {
    pub fn name(self) -> &'static str {
        match self {
            Wake::Poll => "poll",
            Wake::Event => "event",
        }
    }
}

/// The shortest heartbeat schedule handed out in event mode (see [`heartbeat_horizon`]). The
/// holder whose kernel answers wakes once per half of it, so it sets that cost at rest (20
/// wakes/s), and how long a holder agent may be descheduled before its answers lapse (50 ms).
pub const HORIZON_MIN: Duration = Duration::from_millis(100);
/// The longest: a stalled agent is heard at most this long after it stopped.
pub const HORIZON_MAX: Duration = Duration::from_millis(200);

/// How far ahead a heartbeat schedule reaches in event mode: `max(100 ms, 4 intervals)`, at most
/// 200 ms (or two intervals, if longer). It is renewed when about half of it is left, so it is
/// also the bound on how long a stalled agent's kernel keeps speaking for it: its peers notice
/// the stall within their silence limit plus this.
pub fn heartbeat_horizon(interval: Duration) -> Duration {
    (interval * 4).max(HORIZON_MIN).min(HORIZON_MAX.max(interval * 2))
}

/// When a schedule from `first` is renewed: on one of its own heartbeat times (a driver that
/// sends them itself wakes then anyway), the last one at or before half the horizon.
fn renewal(first: Instant, interval: Duration) -> Instant {
    let half = heartbeat_horizon(interval) / 2;
    let slots = if interval.is_zero() { 1 } else { (half.as_nanos() / interval.as_nanos()).max(1) };
    first + interval * u32::try_from(slots).unwrap_or(u32::MAX)
}

/// What a heartbeat says, apart from its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatContent {
    pub state: NodeState,
    pub flags: u8,
    pub priority: u32,
    pub echo: Echo,
}

#[derive(Clone, Debug)]
pub struct FailoverConfig {
    /// How the driver wakes; [`Wake::Poll`] unless set.
    pub wake: Wake,
    pub node: NodeConfig,
    /// Time between two heartbeats of this node.
    pub interval: Duration,
    /// Longest time between two looks at the peer table.
    pub tick: Duration,
    /// When an announcement is repeated, after its first.
    pub announce_repeats: Vec<Duration>,
    /// How often this node stamps its liveness for the kernel-side fence, which refuses to
    /// answer for the address once the stamp is a tolerance old. A quarter of the tolerance:
    /// a late wake or two does not raise the fence under a live agent.
    pub stamp_every: Duration,
    /// Event mode, without the addresses (no stamps): the longest time between two wakes. A
    /// step more than a tolerance after the last one reads as a pause of this node
    /// (`Node::note_gap`), so half the tolerance: a late wake is not mistaken for one.
    pub watch_every: Duration,
    /// See [`CLAIM_SETTLE`].
    pub claim_settle: Duration,
    /// Event mode: the driver's kernel can answer peers' heartbeats for this node (XDP), so a
    /// holder at rest need not wake for its heartbeats (see [`Action::ScheduleHeartbeats`]).
    pub answer: bool,
    /// With `answer`: the kernel's answers go to the group and take a new counter at most
    /// once per half interval, so every peer hears one sequence from them, and they serve any
    /// number of peers. Without it they go back to the requester, and serve one peer at most.
    pub answer_group: bool,
}

impl FailoverConfig {
    pub fn new(node: NodeConfig, interval: Duration, tick: Duration) -> Self {
        Self {
            wake: Wake::Poll,
            node,
            interval,
            tick,
            announce_repeats: ANNOUNCE_REPEATS.to_vec(),
            stamp_every: node.tolerance / 4,
            watch_every: node.tolerance / 2,
            claim_settle: CLAIM_SETTLE,
            answer: false,
            answer_group: false,
        }
    }
}

/// A request from outside the node: an operator, the service manager, a health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Maintenance on (hand the address over and stay out) or off.
    Maintenance(bool),
    /// A clean stop: hand the address over make-before-break, then finish.
    Leave,
}

/// Why the addresses are announced (ARP, unsolicited NA) without a change of state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceCause {
    /// A scheduled repeat of the previous announcement.
    Repeat,
    /// Clients may point elsewhere; why, precisely.
    Reclaim(Reannounce),
    /// The periodic refresh (`refresh`).
    Refresh,
    /// Another MAC claimed the address (a gratuitous ARP or NA) and no peer holds or just took
    /// it: a misconfigured host or an attacker. Clients may point there now.
    ForeignClaim,
}

/// What the driver must do, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add the shared addresses and announce them once; from now on they are ours.
    Take,
    /// Stop announcing and stop defending the addresses; keep them until `RemoveAddresses`.
    StopClaiming,
    /// Remove the shared addresses.
    RemoveAddresses,
    /// Announce the shared addresses.
    Announce(AnnounceCause),
    /// Send a heartbeat saying this, echoing `echo`. `scheduled` is when the schedule wanted it
    /// (`None`: sent early because the state changed), so the driver can measure how late it
    /// went.
    SendHeartbeat { state: NodeState, flags: u8, priority: u32, echo: Echo, scheduled: Option<Instant> },
    /// Stamp this node's liveness where the kernel-side fence reads it; the fence is armed
    /// from then on. Only while this node has the addresses (from just before `Take` until
    /// `RemoveAddresses`): the fence guards nothing else.
    Stamp,
    /// The addresses are gone (or never came): the fence has nothing to guard and no stamp
    /// comes until the next `Stamp`, so switch it off rather than let it rise.
    Unfence,
    /// Event mode: replace every heartbeat queued so far by heartbeats saying `content` at
    /// `first`, `first + interval`, ... up to `until` (inclusive). Handed out again before
    /// `until` while the node runs, and at once when the content changes. A renewal starts at
    /// a time of the schedule it replaces (the renewal's own slot): a sender that already sent
    /// the heartbeat of `first` goes on from `first + interval`; `first` may be in the past
    /// (a late wake): then it is sent at once.
    ///
    /// `answer` (only with [`FailoverConfig::answer`]): the driver sends the heartbeat of
    /// `first` itself, then, instead of the others, lets its kernel answer each peer's
    /// heartbeat with `content` (echoing that peer, `FLAG_ANSWERING` set) until `until`; its
    /// fence stays down until `until` too, so this needs no `Stamp` meanwhile.
    ScheduleHeartbeats { content: HeartbeatContent, first: Instant, interval: Duration, until: Instant, answer: bool },
    /// Event mode: this peer's silence limit changed (its loss rate did); the kernel's expiry
    /// timer for it is armed with `limit` from its next heartbeat on.
    SetSilenceLimit { node_id: u32, limit: Duration },
}

/// What the driver reports (logs, metrics, hooks, status); no system change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A change of state, or a healed split brain this node won (`from == to`).
    Transition(Transition),
    /// This node did not run for `gap` (paused, starved): it listens again before deciding.
    Resumed { gap: Duration },
    /// After a hand-over the addresses stay for `grace`, for clients still pointed here.
    Lingering { grace: Duration },
    /// The link went up or down.
    Link { up: bool },
    /// Another MAC claimed the address; `defended`: this holder announces it again (else a
    /// peer holds or just took it, or this node does not hold it).
    ForeignClaim { defended: bool },
    /// Time to refresh the operator's view.
    StatusDue,
    /// A peer claimed the address while this node's kernel answered for it: the answers may not
    /// reach peers (a veth whose peer end runs no XDP program keeps `XDP_TX` frames), so this node
    /// sends every heartbeat itself for the rest of its run.
    AnswersUnheard { node_id: u32 },
    /// The clean stop is complete: the driver exits once the actions are carried out.
    Done,
}

pub struct Failover {
    cfg: FailoverConfig,
    node: Node,
    link_up: bool,
    /// A heartbeat should go out at the next `handle_timeout`: our state changed.
    send_now: bool,
    next_send: Instant,
    next_stamp: Instant,
    /// This node has the addresses (from `Take` until `RemoveAddresses`): stamps are due.
    has_addresses: bool,
    /// The driver's fence is armed (it arms it at start, and with each `Stamp`).
    fence_armed: bool,
    /// The first and the last claim by another MAC not yet decided on.
    foreign_claim: Option<(Instant, Instant)>,
    /// Pending repeats of the last announcement, soonest last.
    repeats: Vec<Instant>,
    linger: Linger,
    /// The clean stop is decided; finished once the linger is over.
    exiting: bool,
    done: bool,
    /// The confirmed peers of the last table: what decisions see, and whose expiry wakes us.
    peers: Vec<Peer>,
    /// Every peer heard, to echo their epochs back.
    echoes: Echoes,
    /// Some recently heard peer is not confirmed yet: ask peers to echo us first.
    confirming: bool,
    /// Since when some recently heard peer has been unconfirmed.
    confirming_since: Option<Instant>,
    /// Event mode: peers whose kernel timer fired, with the `last_seen` it fired for. Until
    /// they are heard again their expiry is this core's own deadline (a forgiven absence may
    /// make it later than the kernel's).
    expired: Vec<(u32, Instant)>,
    /// Event mode: the silence limit last handed to the kernel, per peer.
    limits: Vec<(u32, Duration)>,
    /// Event mode: the heartbeat schedule handed out last, and when to renew it.
    schedule: Option<Schedule>,
    /// A peer claimed the address while the kernel answered for this node: no more answers.
    answers_unheard: bool,
    /// The wake `poll_timeout` last asked for, to notice a late one.
    planned_wake: Option<Instant>,
    last_now: Instant,
    last_status: Option<Instant>,
    status_now: bool,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Failover {
    pub fn new(cfg: FailoverConfig, now: Instant) -> Self {
        let node = Node::new(cfg.node, now);
        Self {
            cfg,
            node,
            link_up: true,
            send_now: false,
            next_send: now,
            next_stamp: now,
            has_addresses: false,
            fence_armed: true,
            foreign_claim: None,
            repeats: Vec::new(),
            linger: Linger::default(),
            exiting: false,
            done: false,
            peers: Vec::new(),
            echoes: Echoes::default(),
            confirming: false,
            confirming_since: None,
            expired: Vec::new(),
            limits: Vec::new(),
            schedule: None,
            answers_unheard: false,
            planned_wake: None,
            last_now: now,
            last_status: None,
            status_now: true,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The decision state machine, for the operator's view.
    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn config(&self) -> &FailoverConfig {
        &self.cfg
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// The link of the heartbeat interface, as last reported.
    pub fn handle_link(&mut self, now: Instant, up: bool) {
        self.last_now = now;
        if up != self.link_up {
            self.link_up = up;
            self.events.push_back(Event::Link { up });
        }
    }

    /// The node's worthiness now: the configured priority less failing checks.
    pub fn handle_priority(&mut self, now: Instant, priority: u32) {
        self.last_now = now;
        let out = self.node.set_priority(priority);
        self.merge(now, out);
    }

    /// A reloaded configuration (see [`Node::reconfigure`] for what applies live).
    pub fn handle_config(&mut self, now: Instant, node: NodeConfig) {
        self.last_now = now;
        self.node.reconfigure(node);
        self.cfg.node = *self.node.config();
    }

    pub fn handle_command(&mut self, now: Instant, command: Command) {
        self.last_now = now;
        let out = match command {
            Command::Maintenance(on) => self.node.set_maintenance(on),
            Command::Leave if self.node.is_leaving() => Output::default(),
            Command::Leave => self.node.leave(now),
        };
        self.merge(now, out);
    }

    /// One decision on the peer table as recorded. `now` must be read *before* the table: a
    /// driver that is late then sees heartbeats younger than `now`, never a live holder as
    /// silent.
    pub fn handle_peers(&mut self, now: Instant, peers: &[Peer]) {
        self.last_now = now;
        let tolerance = self.cfg.node.tolerance;
        if self.echoes.observe(peers) {
            // A new run heard: echo it at once.
            self.send_now = true;
        }
        self.confirming = peers.iter().any(|p| !p.confirmed && now - p.last_seen <= tolerance);
        self.hold_while_confirming(now);
        self.hold_after_a_late_wake(now);
        self.peers.clear();
        self.peers.extend(peers.iter().filter(|p| p.confirmed));
        let out = self.node.step(crate::node::Inputs { now, peers: &self.peers, link_up: self.link_up });
        self.merge(now, out);
        if self.cfg.wake == Wake::Event {
            // Heard again since its kernel timer fired: the kernel has re-armed it.
            self.expired.retain(|&(id, seen)| peers.iter().any(|p| p.node_id == id && p.last_seen == seen));
            self.hand_out_limits();
        }
    }

    /// Event mode: the kernel's timer for `node_id` fired, for its heartbeat of `last_seen`.
    /// Call before `handle_peers` of the same wake; the decision is taken there.
    pub fn handle_expired(&mut self, now: Instant, node_id: u32, last_seen: Instant) {
        self.last_now = now;
        if !self.expired.iter().any(|&(id, seen)| id == node_id && seen == last_seen) {
            self.expired.retain(|&(id, _)| id != node_id);
            self.expired.push((node_id, last_seen));
        }
    }

    /// Each confirmed peer's silence limit, for the kernel's timers, when it changed.
    fn hand_out_limits(&mut self) {
        for p in &self.peers {
            let (limit, _) = self.node.peer_liveness(p.node_id);
            match self.limits.iter_mut().find(|(id, _)| *id == p.node_id) {
                Some((_, known)) if *known == limit => continue,
                Some((_, known)) => *known = limit,
                // The kernel starts every peer at the tolerance.
                None if limit == self.cfg.node.tolerance => {
                    self.limits.push((p.node_id, limit));
                    continue;
                }
                None => self.limits.push((p.node_id, limit)),
            }
            self.actions.push_back(Action::SetSilenceLimit { node_id: p.node_id, limit });
        }
    }

    /// The peer table could not be read: no decision is safe, heartbeats go on.
    pub fn handle_table_unreadable(&mut self, now: Instant) {
        self.last_now = now;
    }

    /// Another MAC claimed the address at `at` (a gratuitous ARP or NA seen by the receive
    /// path). Decided on `claim_settle` after the first claim, with the peer table of then.
    pub fn handle_foreign_claim(&mut self, now: Instant, at: Instant) {
        self.last_now = now;
        self.foreign_claim = Some(match self.foreign_claim {
            Some((first, last)) => (first.min(at), last.max(at)),
            None => (at, at),
        });
    }

    /// Whatever is due at `now`: announcement repeats, the end of a linger, a foreign claim,
    /// the heartbeat, the liveness stamp.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.decide_foreign_claim(now);
        let before = self.repeats.len();
        self.repeats.retain(|&at| at > now);
        if self.repeats.len() < before {
            self.actions.push_back(Action::Announce(AnnounceCause::Repeat));
        }
        if self.linger.due(now) {
            self.actions.push_back(Action::RemoveAddresses);
            self.has_addresses = false;
        }
        self.heartbeat(now);
        if !self.has_addresses && self.fence_armed {
            self.actions.push_back(Action::Unfence);
            self.fence_armed = false;
        }
        // While the kernel answers, its schedule keeps the fence down; once it stops, the stamp
        // is long due and comes right after the new schedule.
        if self.has_addresses && now >= self.next_stamp && !self.answering() {
            self.actions.push_back(Action::Stamp);
            self.next_stamp = now + self.cfg.stamp_every;
        }
        if self.status_now || self.last_status.is_none_or(|at| now.since(at) >= STATUS_EVERY) {
            self.status_now = false;
            self.last_status = Some(now);
            self.events.push_back(Event::StatusDue);
        }
        if self.exiting && self.linger.deadline().is_none() && !self.done {
            self.done = true;
            self.events.push_back(Event::Done);
        }
    }

    /// The next thing for the driver to do, in order; `None` when there is nothing.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing to report; drain after the actions.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call `handle_timeout` next (with a fresh table) if nothing happens before: the
    /// next heartbeat, the instant the next live peer would count as silent (so a dead holder
    /// is noticed exactly at its limit), a repeat, the end of a linger, and at most a tick.
    pub fn poll_timeout(&mut self) -> Instant {
        let at = self.next_wake();
        self.planned_wake = Some(at);
        at
    }

    fn next_wake(&self) -> Instant {
        let now = self.last_now;
        if self.send_now || !self.actions.is_empty() {
            return now;
        }
        if self.cfg.wake == Wake::Event {
            return self.next_event_wake(now);
        }
        let expiry =
            self.peers.iter().map(|p| self.node.silent_at(p)).filter(|&at| at > now).min().unwrap_or(Instant::NEVER);
        let linger = self.linger.deadline().unwrap_or(Instant::NEVER);
        let repeat = self.repeats.iter().copied().min().unwrap_or(Instant::NEVER);
        let cut_off = self.node.link_release_at().unwrap_or(Instant::NEVER);
        let claim = self.foreign_claim.map_or(Instant::NEVER, |(first, _)| first + self.cfg.claim_settle);
        let stamp = self.stamp_due();
        self.next_send.min(now + self.cfg.tick).min(expiry).min(linger).min(repeat).min(cut_off).min(stamp).min(claim)
    }

    /// Event mode: only this core's own deadlines. A peer's expiry is the kernel's to report
    /// (unless it already did, for this silence), changes of the table arrive as events, and
    /// heartbeats go out from the schedule: no tick, no wake per heartbeat.
    fn next_event_wake(&self, now: Instant) -> Instant {
        let future = |at: Instant| if at > now { at } else { Instant::NEVER };
        let reported = self
            .peers
            .iter()
            .filter(|p| self.expired.iter().any(|&(id, seen)| id == p.node_id && seen == p.last_seen))
            .map(|p| future(self.node.silent_at(p)))
            .min()
            .unwrap_or(Instant::NEVER);
        let renew = self.schedule.map_or(now, |s| s.renew_at);
        let confirming = self
            .confirming_since
            .map_or(Instant::NEVER, |since| future(since + self.cfg.node.max_tolerance.max(self.cfg.node.tolerance)));
        // Past the one-step listen `hold_while_confirming` sets (its end is `confirming`).
        let own = self.node.next_deadline(now + Duration::from_nanos(1));
        let linger = self.linger.deadline().unwrap_or(Instant::NEVER);
        let repeat = self.repeats.iter().copied().min().unwrap_or(Instant::NEVER);
        let cut_off = self.node.link_release_at().unwrap_or(Instant::NEVER);
        let claim = self.foreign_claim.map_or(Instant::NEVER, |(first, _)| first + self.cfg.claim_settle);
        let watch = if self.has_addresses { Instant::NEVER } else { self.watch_at(now) };
        [reported, renew, confirming, own, linger, repeat, cut_off, claim, self.stamp_due(), watch]
            .into_iter()
            .min()
            .unwrap_or(Instant::NEVER)
    }

    /// A node without the addresses looks again within `watch_every`: on the last slot of its
    /// own heartbeat schedule before then, when one falls in between, so the driver's wake
    /// for that heartbeat is this one too (a wake between two heartbeats would cost as much
    /// as the heartbeat's).
    fn watch_at(&self, now: Instant) -> Instant {
        let latest = now + self.cfg.watch_every;
        let interval = self.cfg.interval;
        let slot = self.schedule.filter(|s| s.content.flags & FLAG_ANSWERING == 0).map(|s| {
            let next = s.next_slot(latest, interval);
            if next > latest { next - interval } else { next }
        });
        slot.filter(|&at| at > now).unwrap_or(latest)
    }

    /// Whether this node has the addresses (from `Take` until `RemoveAddresses`).
    pub fn has_addresses(&self) -> bool {
        self.has_addresses
    }

    /// The next stamp, while this node has the addresses: a standby does not wake to stamp.
    fn stamp_due(&self) -> Instant {
        if self.has_addresses && !self.answering() { self.next_stamp } else { Instant::NEVER }
    }

    /// The clean stop is complete and every action has been handed out.
    pub fn is_done(&self) -> bool {
        self.done && self.actions.is_empty()
    }

    /// A holder re-points clients another MAC drew away, unless that was a legitimate
    /// hand-over: a live peer holds the address, or claimed it around the time of the claim
    /// (the split-brain rule deals with a peer's claim).
    fn decide_foreign_claim(&mut self, now: Instant) {
        let Some((first, _)) = self.foreign_claim else {
            return;
        };
        if now < first + self.cfg.claim_settle {
            return;
        }
        self.foreign_claim = None;
        let node = &self.node;
        let holding = node.state() == NodeState::Active && !node.is_leaving() && !node.in_maintenance();
        let since = first - node.config().tolerance;
        let peer_claims = self.peers.iter().any(|p| {
            (p.state == NodeState::Active && now < node.silent_at(p)) || p.claimed_at.is_some_and(|at| at >= since)
        });
        let defended = holding && self.link_up && !peer_claims;
        if defended {
            self.actions.push_back(Action::Announce(AnnounceCause::ForeignClaim));
            self.schedule_repeats(now);
        }
        self.events.push_back(Event::ForeignClaim { defended });
    }

    fn heartbeat(&mut self, now: Instant) {
        if self.cfg.wake == Wake::Event {
            return self.schedule_heartbeats(now);
        }
        let due = now >= self.next_send;
        if !(self.send_now || due) {
            return;
        }
        self.send_now = false;
        let scheduled = due.then_some(self.next_send);
        let node = &self.node;
        let confirming = if self.confirming { FLAG_CONFIRMING } else { 0 };
        let recent = self.cfg.node.max_tolerance.max(self.cfg.node.tolerance);
        self.actions.push_back(Action::SendHeartbeat {
            state: node.state(),
            flags: node.flags() | confirming,
            priority: node.priority(),
            echo: self.echoes.next(now, recent),
            scheduled,
        });
        // More new runs to echo: another heartbeat right away.
        self.send_now |= self.echoes.owes(now, recent);
        if due {
            self.next_send = self.next_send + self.cfg.interval;
            if self.next_send <= now {
                // We fell behind (paused): no burst of heartbeats to catch up.
                self.next_send = now + self.cfg.interval;
            }
        }
    }

    /// Event mode: a new heartbeat schedule when the content changed, a new run or a
    /// confirming peer wants its echo, or half the horizon is left. A change goes out at once;
    /// a renewal keeps the cadence.
    fn schedule_heartbeats(&mut self, now: Instant) {
        let recent = self.cfg.node.max_tolerance.max(self.cfg.node.tolerance);
        let interval = self.cfg.interval;
        let node = &self.node;
        let flags = node.flags() | if self.confirming { FLAG_CONFIRMING } else { 0 };
        let (state, priority) = (node.state(), node.priority());
        self.note_answers_unheard(now);
        let answer = self.kernel_answers(now, state, flags);
        let flags = flags | if answer { FLAG_ANSWERING } else { 0 };
        let changed = match self.schedule {
            None => true,
            Some(s) => {
                let c = s.content;
                (c.state, c.flags, c.priority) != (state, flags, priority)
                    || self.echoes.wants_other(c.echo, now, recent)
            }
        };
        let renew = self.schedule.is_none_or(|s| now >= s.renew_at);
        if !(self.send_now || changed || renew) {
            return;
        }
        let urgent = self.send_now || changed;
        self.send_now = false;
        // A renewal goes on from the slot it was planned at, however late it is handled: a
        // heartbeat is neither skipped nor sent twice by a sender that skips what it sent.
        let first = match self.schedule {
            Some(s) if !urgent => s.next_slot(s.renew_at, interval),
            _ => now,
        };
        // An echo owed to a new run is paid only once a heartbeat carrying it left: its
        // schedule lived past its first slot. Replaced sooner (the state changed), it is owed
        // again, or a new run could wait a whole round robin for its only echo.
        if let Some(old) = self.schedule.filter(|s| s.paying && now <= s.first) {
            self.echoes.owe_again(old.content.echo);
        }
        let owed_before = self.echoes.owes(now, recent);
        let content = HeartbeatContent { state, flags, priority, echo: self.echoes.next(now, recent) };
        let paying = owed_before;
        let horizon = heartbeat_horizon(interval);
        let until = if crate::mutation::active(crate::mutation::Mutation::EndlessSchedule) {
            first + horizon * 20
        } else {
            first + horizon
        };
        // More new runs to echo: each gets a heartbeat of its own. The renewal comes half an
        // interval after this schedule's first slot: that slot has left with this echo, and the
        // next one is not sent yet, so the renewal's own first slot carries the next echo.
        let renew_at = if self.echoes.owes(now, recent) { first + interval / 2 } else { renewal(first, interval) };
        self.node.set_quiet(if answer { horizon } else { Duration::ZERO });
        self.schedule = Some(Schedule { content, first, renew_at, paying });
        self.actions.push_back(Action::ScheduleHeartbeats { content, first, interval, until, answer });
    }

    /// Event mode: whether the kernel answers peers' heartbeats for this node instead of a
    /// heartbeat of its own every interval: a holder at rest (no hand-over under way, nobody
    /// unconfirmed) whose live peers are no holders themselves; at most one such peer unless
    /// the answers go to the group. One peer at most otherwise: a heartbeat's counter counts
    /// what its sender sent, and each of several peers would read the answers to the others as
    /// its own losses (`liveness`).
    fn kernel_answers(&self, now: Instant, state: NodeState, flags: u8) -> bool {
        if !self.cfg.answer || self.answers_unheard || self.cfg.wake != Wake::Event || state != NodeState::Active {
            return false;
        }
        if flags & (FLAG_LEAVING | FLAG_MAINTENANCE | FLAG_CONFIRMING) != 0 {
            return false;
        }
        // Beside another holder, each must hear the other every interval to heal the split
        // brain soon, not at their renewals.
        let recent = self.cfg.node.max_tolerance.max(self.cfg.node.tolerance);
        let mut live = self.peers.iter().filter(|p| now - p.last_seen <= recent);
        let standby = |p: &Peer| p.state != NodeState::Active && p.flags & FLAG_ANSWERING == 0;
        if self.cfg.answer_group {
            return live.all(standby);
        }
        match (live.next(), live.next()) {
            (None, _) => true,
            (Some(p), None) => standby(p),
            (Some(_), Some(_)) => false,
        }
    }

    /// A live peer no more worthy than this holder claims the address while the kernel answers
    /// for it (a more worthy one preempts, as it should): a split brain (a partition healed),
    /// or peers that do not hear the answers. Both heal on heartbeats of its own; the second
    /// would come back with every answer, so answers end for this run.
    fn note_answers_unheard(&mut self, now: Instant) {
        if !self.answering() || self.answers_unheard {
            return;
        }
        let recent = self.cfg.node.max_tolerance.max(self.cfg.node.tolerance);
        let priority = self.node.priority();
        let claimer = self
            .peers
            .iter()
            .find(|p| p.state == NodeState::Active && p.priority <= priority && now - p.last_seen <= recent);
        if let Some(p) = claimer {
            self.answers_unheard = true;
            self.events.push_back(Event::AnswersUnheard { node_id: p.node_id });
        }
    }

    /// The current schedule is answered by the kernel.
    fn answering(&self) -> bool {
        self.schedule.is_some_and(|s| s.content.flags & FLAG_ANSWERING != 0)
    }

    /// No takeover decision while a recently heard peer is unconfirmed, up to the longest
    /// silence limit after it was first seen so.
    fn hold_while_confirming(&mut self, now: Instant) {
        if !self.confirming {
            self.confirming_since = None;
            return;
        }
        let since = *self.confirming_since.get_or_insert(now);
        let bound = self.cfg.node.max_tolerance.max(self.cfg.node.tolerance);
        if now - since < bound {
            self.node.listen_until(now + Duration::from_nanos(1));
        }
    }

    /// After a wake more than half an interval late (and more than [`JITTER`]), forgive every
    /// peer the stall, up to two intervals. (The stall may have begun before the planned wake:
    /// the lateness is its least length.) Forgiving every jitter would slow every failover at
    /// short intervals. A live peer is heard within an interval of our
    /// return, so two are enough; a longer stall makes everybody look silent, which the gap
    /// guard answers with a new listen.
    fn hold_after_a_late_wake(&mut self, now: Instant) {
        let Some(planned) = self.planned_wake.take() else { return };
        let late = now - planned;
        let threshold = (self.cfg.interval / 2).max(JITTER);
        if late > threshold && !crate::mutation::active(crate::mutation::Mutation::NeverRelisten) {
            self.node.note_absence(now, late.min(self.cfg.interval * 2));
        }
    }

    /// Turns one decision into actions and events, and schedules what follows from it.
    fn merge(&mut self, now: Instant, out: Output) {
        self.send_now |= out.send_now;
        if out.take {
            self.linger.cancel();
            // Armed with a fresh stamp before the address is added: a standby's fence is off,
            // and a holder that died before its first periodic stamp would answer for the
            // address for ever.
            self.actions.push_back(Action::Stamp);
            self.next_stamp = now + self.cfg.stamp_every;
            self.fence_armed = true;
            self.has_addresses = true;
            self.actions.push_back(Action::Take);
            self.schedule_repeats(now);
        }
        if out.release {
            self.repeats.clear();
            self.actions.push_back(Action::StopClaiming);
            if out.transition.is_some_and(|t| after_hand_over(&t.reason)) {
                let grace = self.cfg.node.tolerance;
                self.linger.start(now, grace);
                self.events.push_back(Event::Lingering { grace });
            } else {
                self.linger.cancel();
                self.actions.push_back(Action::RemoveAddresses);
                self.has_addresses = false;
            }
        }
        if out.announce {
            let why = self.node.reannounce().unwrap_or(Reannounce::PeerReturned);
            self.actions.push_back(Action::Announce(AnnounceCause::Reclaim(why)));
            self.schedule_repeats(now);
        }
        if out.refresh {
            self.actions.push_back(Action::Announce(AnnounceCause::Refresh));
        }
        if let Some(gap) = out.resumed_after {
            self.events.push_back(Event::Resumed { gap });
            // This node did not run for over a tolerance, so the fence may be up and a peer may
            // hold the address: the fence stays until this node has listened again.
            self.next_stamp = self.next_stamp.max(now + self.cfg.node.tolerance);
        }
        if let Some(t) = out.transition {
            self.events.push_back(Event::Transition(t));
            self.status_now = true;
        }
        if out.send_now {
            self.status_now = true;
        }
        if out.exit {
            self.exiting = true;
        }
    }

    fn schedule_repeats(&mut self, now: Instant) {
        self.repeats.clear();
        self.repeats.extend(self.cfg.announce_repeats.iter().map(|&d| now + d));
    }
}

/// The heartbeat schedule handed out last (event mode).
#[derive(Clone, Copy, Debug)]
struct Schedule {
    content: HeartbeatContent,
    first: Instant,
    renew_at: Instant,
    /// Its echo pays a debt to a new run (see `Echoes::owe_again`).
    paying: bool,
}

impl Schedule {
    /// The first heartbeat time of this schedule at or after `now`.
    fn next_slot(&self, now: Instant, interval: Duration) -> Instant {
        if now <= self.first || interval.is_zero() {
            return self.first.max(now);
        }
        let step = crate::time::as_nanos(interval);
        let passed = ((now - self.first).as_nanos() as u64).div_ceil(step);
        self.first + Duration::from_nanos(passed.saturating_mul(step))
    }
}

/// The peers whose epochs this node echoes, and whose turn it is.
#[derive(Debug, Default)]
struct Echoes {
    peers: Vec<EchoTarget>,
    /// Where the round robin goes on.
    turn: usize,
}

#[derive(Clone, Copy, Debug)]
struct EchoTarget {
    echo: Echo,
    last_seen: Instant,
    /// Its last heartbeat asked to be echoed first.
    confirming: bool,
    /// Echoes still owed to a run seen anew, before the round robin.
    owed: u8,
}

/// Echoes of a peer's new run before the round robin (a lost one is made up for by the peer's
/// `FLAG_CONFIRMING`).
const ECHOES_OF_A_NEW_RUN: u8 = 1;

impl Echoes {
    /// Takes the peers heard; true when one of them is in a run not echoed yet.
    fn observe(&mut self, peers: &[Peer]) -> bool {
        let mut new_run = false;
        for p in peers {
            let echo = Echo { node_id: p.node_id, epoch: p.beats.epoch };
            let confirming = p.flags & FLAG_CONFIRMING != 0;
            match self.peers.iter_mut().find(|t| t.echo.node_id == p.node_id) {
                Some(t) => {
                    if t.echo.epoch != echo.epoch {
                        t.owed = ECHOES_OF_A_NEW_RUN;
                        new_run = true;
                    }
                    *t = EchoTarget { echo, last_seen: p.last_seen, confirming, ..*t };
                }
                None => {
                    self.peers.push(EchoTarget { echo, last_seen: p.last_seen, confirming, owed: ECHOES_OF_A_NEW_RUN });
                    new_run = true;
                }
            }
        }
        new_run
    }

    /// Whether a schedule echoing `current` should give way: a new run waits for its echo, a
    /// live peer asks to be echoed first and `current` is not such a peer, or `current` is
    /// no longer live while another peer is.
    fn wants_other(&self, current: Echo, now: Instant, recent: Duration) -> bool {
        let live = |t: &EchoTarget| now - t.last_seen <= recent;
        let target = self.peers.iter().find(|t| t.echo == current && live(t));
        if self.peers.iter().any(|t| t.confirming && live(t)) && !target.is_some_and(|t| t.confirming) {
            return true;
        }
        target.is_none() && self.peers.iter().any(live)
    }

    /// A heartbeat with this echo, owed to a new run, may never have left: owe it again (same
    /// run only).
    fn owe_again(&mut self, echo: Echo) {
        if let Some(t) = self.peers.iter_mut().find(|t| t.echo == echo) {
            t.owed = t.owed.max(1);
        }
    }

    /// Whether a new run heard within `recent` still waits for its echo.
    fn owes(&self, now: Instant, recent: Duration) -> bool {
        self.peers.iter().any(|t| t.owed > 0 && now - t.last_seen <= recent)
    }

    /// The echo for the next heartbeat: a new run first, then peers still confirming, then
    /// every peer heard within `recent`, in turn. No echo when nobody was heard.
    fn next(&mut self, now: Instant, recent: Duration) -> Echo {
        let live = |t: &EchoTarget| now - t.last_seen <= recent;
        if let Some(t) = self.peers.iter_mut().find(|t| t.owed > 0 && live(t)) {
            t.owed -= 1;
            return t.echo;
        }
        let n = self.peers.len();
        let wanted = self.peers.iter().any(|t| t.confirming && live(t));
        for i in 0..n {
            let t = &self.peers[(self.turn + i) % n];
            if live(t) && (t.confirming || !wanted) {
                self.turn = (self.turn + i + 1) % n;
                return t.echo;
            }
        }
        Echo::default()
    }
}

#[cfg(test)]
mod tests;
