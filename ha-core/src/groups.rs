//! Several groups in one node (active/active): one [`Failover`] per group, one heartbeat per
//! node. Each group decides alone who holds its addresses, on the peers as they run that group
//! ([`Peer::for_group`](crate::node::Peer)); what is the node's, not a group's, is done once:
//!
//! - one heartbeat carries every group's state, flags and priority
//!   ([`GroupsAction::SendHeartbeat`]), sent whenever any group asks for one. The groups run the
//!   same heartbeat cadence (they are created at one instant and woken together), so their
//!   scheduled heartbeats fall on the same wakes; a group that asks early (its state changed)
//!   makes every group's current state go out with it;
//! - the echo, `FLAG_CONFIRMING`, the liveness stamp, the operator's status cadence, link and
//!   resume events come from the first group (the *lead*): every group sees the same peers' runs,
//!   echoes and silences, so they agree on them;
//! - a clean stop ([`Command::Leave`]) hands every group over make-before-break and is done
//!   when the last group is; maintenance applies to every group.
//!
//! A node with the one group 0 (today's flat options) is a [`Failover`] seen through this
//! wrapper: its actions and events pass unchanged, the heartbeat carries group 0 in its header.
//! Event wake ([`Wake::Event`]) hands heartbeat schedules and silence limits to the kernel per
//! node; it is supported with one group only.
use std::collections::VecDeque;

use ha_common::wire::{Echo, FLAG_CONFIRMING, NodeState};
pub use ha_common::wire::{GroupEntry, MAX_GROUPS};

use crate::{
    failover::{Action, Command, Event, Failover, FailoverConfig, Wake},
    node::{NodeConfig, Peer, Preempt},
    time::Instant,
};

/// The group of the flat options; `[[group]]` tables use 1..=255.
pub const DEFAULT_GROUP: u8 = 0;

/// What differs between the groups of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub id: u8,
    pub priority: u32,
    pub preempt: Preempt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupsError {
    Empty,
    TooMany(usize),
    Duplicate(u8),
    GroupZeroAmongOthers,
    EventWake,
}

impl std::fmt::Display for GroupsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupsError::Empty => write!(f, "no group configured"),
            GroupsError::TooMany(n) => write!(f, "{n} groups configured; at most {MAX_GROUPS} are supported"),
            GroupsError::Duplicate(id) => write!(f, "group {id} is configured twice"),
            GroupsError::GroupZeroAmongOthers => {
                write!(f, "group 0 is the group of the flat options; [[group]] ids are 1..=255")
            }
            GroupsError::EventWake => write!(f, "event wake supports one group only; use --wake poll with groups"),
        }
    }
}

impl std::error::Error for GroupsError {}

/// One heartbeat of the node: every group's state, and what is the node's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Node-level flags (`FLAG_CONFIRMING`).
    pub flags: u8,
    pub echo: Echo,
    /// When the schedule wanted it (`None`: early, some group's state changed).
    pub scheduled: Option<Instant>,
    pub count: u8,
    /// The wire's entries: `FLAG_LEAVING` | `FLAG_MAINTENANCE` per group.
    pub groups: [GroupEntry; MAX_GROUPS],
}

impl Heartbeat {
    /// The groups this heartbeat carries.
    pub fn groups(&self) -> &[GroupEntry] {
        &self.groups[..usize::from(self.count)]
    }

    /// Group 0's state, flags (with the node's) and priority: what a node without `[[group]]`
    /// tables puts in the header. `None` when the node runs numbered groups (its header says
    /// STANDBY at priority 0).
    pub fn header(&self) -> Option<(NodeState, u8, u32)> {
        match self.groups() {
            [g] if g.group_id == DEFAULT_GROUP => Some((g.state, g.flags | self.flags, g.priority)),
            _ => None,
        }
    }
}

/// What the driver must do, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupsAction {
    /// One group's addresses: `Take`, `StopClaiming`, `RemoveAddresses`, `Announce`.
    Group { group: u8, action: Action },
    /// Send one heartbeat with every group in it.
    SendHeartbeat(Heartbeat),
    /// The node's: `Stamp`; with one group in event mode `ScheduleHeartbeats`, `SetSilenceLimit`.
    Node(Action),
}

/// What the driver reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupsEvent {
    /// A group's `Transition`, `Lingering`, `ForeignClaim`.
    Group { group: u8, event: Event },
    /// The node's: `Resumed`, `Link`, `StatusDue`, `Done` (every group has finished its stop).
    Node(Event),
}

struct Member {
    id: u8,
    failover: Failover,
    /// Its clean stop finished.
    done: bool,
}

pub struct Groups {
    members: Vec<Member>,
    done: bool,
    /// The latest `now` handed in.
    now: Instant,
    actions: VecDeque<GroupsAction>,
    events: VecDeque<GroupsEvent>,
}

impl Groups {
    /// One [`Failover`] per group, each with `cfg` and its own priority and preempt policy.
    pub fn new(cfg: &FailoverConfig, groups: &[GroupConfig], now: Instant) -> Result<Self, GroupsError> {
        if groups.is_empty() {
            return Err(GroupsError::Empty);
        }
        if groups.len() > MAX_GROUPS {
            return Err(GroupsError::TooMany(groups.len()));
        }
        for (i, g) in groups.iter().enumerate() {
            if groups[..i].iter().any(|o| o.id == g.id) {
                return Err(GroupsError::Duplicate(g.id));
            }
        }
        if groups.len() > 1 && groups.iter().any(|g| g.id == DEFAULT_GROUP) {
            return Err(GroupsError::GroupZeroAmongOthers);
        }
        if groups.len() > 1 && cfg.wake == Wake::Event {
            return Err(GroupsError::EventWake);
        }
        let members = groups
            .iter()
            .map(|g| {
                let node = NodeConfig { priority: g.priority, preempt: g.preempt, ..cfg.node };
                let cfg = FailoverConfig { node, ..cfg.clone() };
                Member { id: g.id, failover: Failover::new(cfg, now), done: false }
            })
            .collect();
        Ok(Self { members, done: false, now, actions: VecDeque::new(), events: VecDeque::new() })
    }

    /// Today's single group 0, from its `Failover` configuration.
    pub fn single(cfg: FailoverConfig, now: Instant) -> Self {
        let member = Member { id: DEFAULT_GROUP, failover: Failover::new(cfg, now), done: false };
        Self { members: vec![member], done: false, now, actions: VecDeque::new(), events: VecDeque::new() }
    }

    /// The groups in their configured order, with their decision machines.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &Failover)> {
        self.members.iter().map(|m| (m.id, &m.failover))
    }

    pub fn ids(&self) -> impl Iterator<Item = u8> + '_ {
        self.members.iter().map(|m| m.id)
    }

    pub fn group(&self, id: u8) -> Option<&Failover> {
        self.members.iter().find(|m| m.id == id).map(|m| &m.failover)
    }

    /// The group whose node-level work (echo, stamps, status, link events) stands for all.
    pub fn lead(&self) -> &Failover {
        &self.members[0].failover
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// True for the single group 0 (today's flat options).
    pub fn is_single(&self) -> bool {
        self.members.len() == 1 && self.members[0].id == DEFAULT_GROUP
    }

    /// Hands `now` to one group's `Failover` through `handle`, then collects what it said.
    fn for_group(&mut self, now: Instant, group: u8, handle: impl FnOnce(&mut Failover)) {
        self.now = now;
        if let Some(m) = self.member_mut(group) {
            handle(&mut m.failover);
        }
        self.collect();
    }

    fn member_mut(&mut self, id: u8) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// The link of the heartbeat interface: every group's.
    pub fn handle_link(&mut self, now: Instant, up: bool) {
        self.now = now;
        for m in &mut self.members {
            m.failover.handle_link(now, up);
        }
        self.collect();
    }

    /// One group's worthiness: its configured priority less its failing checks.
    pub fn handle_priority(&mut self, now: Instant, group: u8, priority: u32) {
        self.for_group(now, group, |f| f.handle_priority(now, priority));
    }

    /// A reloaded configuration for one group.
    pub fn handle_config(&mut self, now: Instant, group: u8, node: NodeConfig) {
        self.for_group(now, group, |f| f.handle_config(now, node));
    }

    /// Maintenance and the clean stop are the node's: every group follows.
    pub fn handle_command(&mut self, now: Instant, command: Command) {
        self.now = now;
        for m in &mut self.members {
            m.failover.handle_command(now, command);
        }
        self.collect();
    }

    /// One group's decision on the peers as they run it (see `Peer::for_group`). Call for
    /// every group on every wake, before `handle_timeout`.
    pub fn handle_peers(&mut self, now: Instant, group: u8, peers: &[Peer]) {
        self.for_group(now, group, |f| f.handle_peers(now, peers));
    }

    /// Event mode (one group): a kernel expiry.
    pub fn handle_expired(&mut self, now: Instant, node_id: u32, last_seen: Instant) {
        self.now = now;
        for m in &mut self.members {
            m.failover.handle_expired(now, node_id, last_seen);
        }
    }

    pub fn handle_table_unreadable(&mut self, now: Instant) {
        self.now = now;
        for m in &mut self.members {
            m.failover.handle_table_unreadable(now);
        }
    }

    /// Another MAC claimed one of `group`'s addresses at `at`.
    pub fn handle_foreign_claim(&mut self, now: Instant, group: u8, at: Instant) {
        self.now = now;
        if let Some(m) = self.member_mut(group) {
            m.failover.handle_foreign_claim(now, at);
        }
    }

    /// Whatever is due at `now` in any group, and the node's one heartbeat if any group asks.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let mut heartbeat: Option<Heartbeat> = None;
        // The fence is the node's: stamped while any group has its addresses, off once none has.
        let (mut stamp, mut unfence) = (false, false);
        for (i, m) in self.members.iter_mut().enumerate() {
            m.failover.handle_timeout(now);
            let lead = i == 0;
            while let Some(action) = m.failover.poll_action() {
                match action {
                    Action::SendHeartbeat { flags, echo, scheduled, .. } => {
                        let hb = heartbeat.get_or_insert(Heartbeat {
                            flags: 0,
                            echo,
                            scheduled: None,
                            count: 0,
                            groups: GroupEntry::NONE,
                        });
                        hb.flags |= flags & FLAG_CONFIRMING;
                        if lead {
                            hb.echo = echo;
                        }
                        hb.scheduled = hb.scheduled.or(scheduled);
                    }
                    Action::Stamp => stamp = true,
                    Action::Unfence => unfence = true,
                    Action::ScheduleHeartbeats { .. } | Action::SetSilenceLimit { .. } => {
                        if lead {
                            self.actions.push_back(GroupsAction::Node(action));
                        }
                    }
                    _ => self.actions.push_back(GroupsAction::Group { group: m.id, action }),
                }
            }
            Self::collect_events(&mut self.events, m, lead);
        }
        if let Some(mut hb) = heartbeat {
            for m in &self.members {
                let node = m.failover.node();
                hb.groups[usize::from(hb.count)] = GroupEntry {
                    group_id: m.id,
                    state: node.state(),
                    flags: node.flags() & !FLAG_CONFIRMING,
                    priority: node.priority(),
                };
                hb.count += 1;
            }
            self.actions.push_back(GroupsAction::SendHeartbeat(hb));
        }
        if stamp {
            self.actions.push_back(GroupsAction::Node(Action::Stamp));
        } else if unfence && !self.members.iter().any(|m| m.failover.has_addresses()) {
            self.actions.push_back(GroupsAction::Node(Action::Unfence));
        }
        let done = if crate::mutation::active(crate::mutation::Mutation::DoneAfterFirstGroup) {
            self.members.iter().any(|m| m.done)
        } else {
            self.members.iter().all(|m| m.done)
        };
        if !self.done && done {
            self.done = true;
            self.events.push_back(GroupsEvent::Node(Event::Done));
        }
    }

    /// Moves what the groups said outside `handle_timeout` (decisions on peers, commands) into
    /// this node's queues. Heartbeats are only ever asked for in `handle_timeout`.
    fn collect(&mut self) {
        let mut unfence = false;
        for (i, m) in self.members.iter_mut().enumerate() {
            let lead = i == 0;
            while let Some(action) = m.failover.poll_action() {
                match action {
                    // Any group's: the stamp before its take arms the node's fence.
                    Action::Stamp => self.actions.push_back(GroupsAction::Node(action)),
                    Action::Unfence => unfence = true,
                    Action::ScheduleHeartbeats { .. } | Action::SetSilenceLimit { .. } => {
                        if lead {
                            self.actions.push_back(GroupsAction::Node(action));
                        }
                    }
                    _ => self.actions.push_back(GroupsAction::Group { group: m.id, action }),
                }
            }
            Self::collect_events(&mut self.events, m, lead);
        }
        if unfence && !self.members.iter().any(|m| m.failover.has_addresses()) {
            self.actions.push_back(GroupsAction::Node(Action::Unfence));
        }
    }

    fn collect_events(events: &mut VecDeque<GroupsEvent>, m: &mut Member, lead: bool) {
        while let Some(event) = m.failover.poll_event() {
            match event {
                Event::Transition(_) | Event::Lingering { .. } | Event::ForeignClaim { .. } => {
                    events.push_back(GroupsEvent::Group { group: m.id, event });
                }
                Event::Done => m.done = true,
                // Any group's change is worth a refresh of the operator's view; once.
                Event::StatusDue => {
                    if !events.contains(&GroupsEvent::Node(Event::StatusDue)) {
                        events.push_back(GroupsEvent::Node(event));
                    }
                }
                // Groups poll: no answers; a node-level event of the lead group all the same.
                Event::Resumed { .. } | Event::Link { .. } | Event::AnswersUnheard { .. } => {
                    if lead {
                        events.push_back(GroupsEvent::Node(event));
                    }
                }
            }
        }
    }

    pub fn poll_action(&mut self) -> Option<GroupsAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<GroupsEvent> {
        self.events.pop_front()
    }

    /// The soonest wake any group asks for.
    pub fn poll_timeout(&mut self) -> Instant {
        let at = self.members.iter_mut().map(|m| m.failover.poll_timeout()).min().unwrap_or(Instant::NEVER);
        if self.actions.is_empty() { at } else { at.min(self.now) }
    }

    /// Every group's clean stop is complete and every action handed out.
    pub fn is_done(&self) -> bool {
        self.done && self.actions.is_empty()
    }
}

#[cfg(test)]
mod tests;
