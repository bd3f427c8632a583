//! The agent's run loop: a thin driver of `ha_core::Groups` (one `Failover` per group; the flat
//! options are the one group 0). It reads the clock and the peer table, tells the core what
//! happened, carries out the actions the core hands back (each group's addresses and
//! announcements, the node's one heartbeat) and reports its events (logs, metrics, hooks,
//! status). Every decision, schedule and wake time is the core's.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use ha_common::wire::{Echo, NodeState};
use ha_core::{
    Action, AnnounceCause, Command as CoreCommand, Event as CoreEvent, FailoverConfig, GroupConfig, Groups,
    GroupsAction, GroupsEvent, Instant, Peer, Reannounce, Wake, groups::Heartbeat as GroupsHeartbeat,
};

use crate::{
    auth::Auth,
    clock::{monotonic_ns, realtime_us, wait_readable_until_ns},
    config::RunConfig,
    config::reload::ReloadPlan,
    instance::InstanceLock,
    links::HeartbeatLinks,
    netlink::{link::LinkWatch, route::RouteManager, vip_links::VipLinks},
    nudge::Nudge,
    observe::observe,
    ops::{
        checks::Checks,
        control::{Command, ControlServer, Hub},
        events::Event,
        foreign_claims::ForeignClaims,
        hooks::{Hooks, NodeFacts},
        metrics::Metrics,
        metrics_http::MetricsServer,
        status,
        steering::PriorityOverride,
        systemd::Notifier,
    },
    rx::{Receiver, RxMode, WakeMode},
    track::TrackedIfaces,
    tx::{
        queued::{Departure, QueuedSchedule},
        schedule::UserSchedule,
        sender::{Sender, SenderConfig},
    },
};
use ha_core::node::id;

/// The system side of a run: what the loop touches.
struct Io {
    cfg: RunConfig,
    /// Each group's shared addresses on their interfaces, with their announcers and guards.
    vips: Vec<(u8, VipLinks)>,
    /// Each group's last transition, for `status` (with groups).
    group_status: Vec<status::GroupStatus>,
    /// Routed mode: the host routes a BGP speaker exports (the claim); `None` in l2 mode.
    routes: Option<RouteManager>,
    sender: Sender,
    /// The heartbeat links after the first, and which link carries which peer.
    links: HeartbeatLinks,
    link: LinkWatch,
    rx: Receiver,
    hub: Arc<Hub>,
    transitions: u64,
    lateness: crate::ops::lateness::Lateness,
    key_alarm: crate::auth::key_alarm::KeyAlarm,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    checks: Checks,
    /// Tracked interfaces (`--track-iface`).
    tracked: TrackedIfaces,
    auth: Auth,
    /// Failed reads of the peer table, for a log line at powers of two.
    read_errors: u64,
    /// Set by SIGHUP.
    reload: Arc<AtomicBool>,
    /// Signals, commands and changes of the links and checks wake the loop through it.
    nudge: Nudge,
    waker: crate::nudge::Waker,
    reread: Rereader,
    metrics_server: Option<MetricsServer>,
    facts: NodeFacts,
    check_env: Vec<(&'static str, String)>,
    /// Failed liveness stamps, likewise.
    stamp_errors: u64,
    /// Failed reads of the last foreign claim, likewise.
    claim_errors: u64,
    foreign_claims: ForeignClaims,
    foreign_claims_defended: u64,
    priority: PriorityOverride,
    wake: Wake,
    /// The core's heartbeat schedule (`--wake event`), sent from here one per interval.
    schedule: Option<UserSchedule>,
    /// `--wake event` with an fq qdisc: schedules are queued in the kernel instead.
    queued: Option<QueuedSchedule>,
    departures: Vec<Departure>,
    kernel_events: Vec<ha_common::maps::PeerEvent>,
    kernel_events_seen: u64,
    /// Failed writes of a silence limit, for a log line at powers of two.
    limit_errors: u64,
    /// Event wake: the kernel answers peers' heartbeats for this node while it holds
    /// (`tx::answer`, `FailoverConfig::answer`).
    answers: bool,
    /// Those answers go to the group, so they serve any number of peers
    /// (`FailoverConfig::answer_group`).
    answers_to_group: bool,
    /// Failed writes of the kernel's answers, likewise.
    answer_errors: u64,
    /// What the kernel answers with and until when, while it does.
    answering: Option<(ha_core::HeartbeatContent, Instant)>,
}

impl Io {
    /// Carries out one action of the core.
    fn carry_out(&mut self, action: GroupsAction) {
        match action {
            GroupsAction::Group { group, action } => self.carry_out_group(group, action),
            GroupsAction::SendHeartbeat(hb) => self.send_heartbeat(&hb),
            GroupsAction::Node(action) => self.carry_out_node(action),
        }
    }

    /// One group's addresses.
    fn carry_out_group(&mut self, group: u8, action: Action) {
        let Some(k) = self.vips.iter().position(|(id, _)| *id == group) else { return };
        match action {
            Action::Take => {
                let started = monotonic_ns();
                self.vips[k].1.set_holding(true);
                self.vips[k].1.add_all();
                // The address first: traffic the route draws finds it already there.
                self.announce(k);
                self.metrics.takeover(monotonic_ns().saturating_sub(started) as f64 / 1e9);
            }
            Action::StopClaiming => {
                self.vips[k].1.set_holding(false);
                // Routed mode: the successor's route wins from now on; the address stays for
                // packets still on their way, and the route until the grace is over.
                self.hand_over_routes();
            }
            Action::RemoveAddresses => self.remove_addresses(k),
            Action::Announce(cause) => {
                let of = if group == 0 { String::new() } else { format!(" of group {group}") };
                match cause {
                    AnnounceCause::Reclaim(why) => log::info!(
                        event = "announce", reason = why.label();
                        "announcing the shared address{of} again: {}", reannounce_words(why)
                    ),
                    AnnounceCause::Refresh => {
                        log::debug!("periodic refresh: announcing {:?} again", self.vips[k].1.addrs())
                    }
                    // Warned of, rate-limited, with the event.
                    AnnounceCause::Repeat | AnnounceCause::ForeignClaim => {}
                }
                self.announce(k);
            }
            other => self.carry_out_node(other),
        }
    }

    /// The node's one heartbeat: group 0 in the header, or every group in its entries.
    fn send_heartbeat(&mut self, hb: &GroupsHeartbeat) {
        let (state, flags, priority) = match hb.header() {
            Some(header) => header,
            None => {
                self.sender.set_groups(hb.count, hb.groups);
                self.links.set_groups(hb.count, hb.groups);
                (NodeState::Standby, hb.flags, 0)
            }
        };
        self.send_own(state, flags, priority, hb.echo, hb.scheduled);
    }

    /// One heartbeat of this node's own on every link, with how late it left when it was
    /// `scheduled`. The kernel does not answer from taking its counter until every copy left.
    fn send_own(&mut self, state: NodeState, flags: u8, priority: u32, echo: Echo, scheduled: Option<Instant>) {
        // Counted, and logged once per burst of failures by the sender.
        let _ = self.sender.send(state, flags, priority, echo);
        self.links.send(self.sender.counter(), state, flags, priority, echo);
        self.sender.left_everywhere();
        if let Some(at) = scheduled {
            self.lateness.record(monotonic_ns().saturating_sub(at.as_nanos()));
        }
    }

    /// The node's actions: the liveness stamp; in event mode schedules and silence limits.
    fn carry_out_node(&mut self, action: Action) {
        match action {
            Action::ScheduleHeartbeats { content, first, interval, until, answer: true } => {
                // The template before the counter is taken for the heartbeat of `first` (see
                // `tx::answer`); then only that one from here, the kernel answers the rest.
                self.answer(content, until);
                self.schedule = Some(UserSchedule::replace(self.schedule, content, first, interval, first));
                self.send_due(Instant::from_nanos(monotonic_ns()));
            }
            Action::ScheduleHeartbeats { content, first, interval, until, answer: false } => {
                self.stop_answering();
                match &mut self.queued {
                    Some(queued) => {
                        let now = Instant::from_nanos(monotonic_ns());
                        queued.plan(content, first, interval, until, now, &mut self.departures);
                        for d in &self.departures {
                            let at = match d {
                                Departure::Now => None,
                                Departure::At(at) => Some(at.as_nanos()),
                            };
                            let _ =
                                self.sender.send_at(content.state, content.flags, content.priority, content.echo, at);
                        }
                    }
                    None => {
                        self.schedule = Some(UserSchedule::replace(self.schedule, content, first, interval, until));
                        self.send_due(Instant::from_nanos(monotonic_ns()));
                    }
                }
            }
            Action::SetSilenceLimit { node_id, limit } => {
                let ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
                if let Err(e) = self.rx.set_silence_limit(node_id, ns) {
                    self.limit_errors += 1;
                    if self.limit_errors.is_power_of_two() {
                        log::error!(
                            "writing the silence limit of {} for the kernel ({} failures): its expiry may be reported early, and is checked again then: {e}",
                            id(node_id),
                            self.limit_errors
                        );
                    }
                }
            }
            Action::SendHeartbeat { state, flags, priority, echo, scheduled } => {
                self.send_own(state, flags, priority, echo, scheduled)
            }
            Action::Unfence => {
                if let Err(e) = self.rx.unfence() {
                    log::error!("switching the fence off (this node holds no address): {e}");
                }
            }
            Action::Stamp => {
                if let Err(e) = self.rx.stamp(monotonic_ns()) {
                    self.stamp_errors += 1;
                    if self.stamp_errors.is_power_of_two() {
                        log::error!(
                            "stamping this agent's liveness ({} failures): the kernel may stop answering ARP for the shared address: {e}",
                            self.stamp_errors
                        );
                    }
                }
            }
            // A group's, handed out by `carry_out_group`.
            Action::Take | Action::StopClaiming | Action::RemoveAddresses | Action::Announce(_) => {}
        }
    }

    /// The kernel answers for this node with `content` until `until`.
    fn answer(&mut self, content: ha_core::HeartbeatContent, until: Instant) {
        self.answering = Some((content, until));
        let template = self.sender.template(content.state, content.flags, content.priority, content.echo);
        let Some(answerer) = self.rx.answerer() else { return };
        if let Err(e) = answerer.answer(&template, until.as_nanos()) {
            self.answer_errors += 1;
            if self.answer_errors.is_power_of_two() {
                log::error!(
                    "writing the kernel's answers ({} failures): peers hear this node only from its own heartbeats until its next schedule: {e}",
                    self.answer_errors
                );
            }
        }
    }

    /// The kernel stops answering for this node, at once.
    fn stop_answering(&mut self) {
        self.answering = None;
        let Some(answerer) = self.rx.answerer() else { return };
        if let Err(e) = answerer.stop() {
            log::error!(
                "stopping the kernel's answers: {e}; they go on until {} ms from now at most",
                answerer.until_ns().saturating_sub(monotonic_ns()) / 1_000_000
            );
        }
    }

    /// The heartbeats of the schedule due by `now`.
    fn send_due(&mut self, now: Instant) {
        while let Some((c, at)) = self.schedule.as_mut().and_then(|s| s.due(now)) {
            self.send_own(c.state, c.flags, c.priority, c.echo, Some(at));
        }
    }

    /// Kernel events since the last wake: expiries go to the core; every event means the
    /// table is worth reading, which each wake does.
    fn take_kernel_events(&mut self, failover: &mut Groups, now: Instant) {
        self.kernel_events.clear();
        self.rx.drain_events(&mut self.kernel_events);
        self.kernel_events_seen += self.kernel_events.len() as u64;
        for e in &self.kernel_events {
            if e.kind == ha_common::maps::EVENT_EXPIRED {
                failover.handle_expired(now, e.node_id, Instant::from_nanos(e.last_seen_ns));
            }
        }
    }

    /// Sleeps until the core's `deadline`, until the kernel posts an event (`--wake event`) or
    /// until something wakes the loop (a signal, a command, a change of a link or a check),
    /// sending the schedule's heartbeats that fall due meanwhile. Such a wake needs nothing
    /// but the send: everything else the loop looks at either wakes it or waits for the core's
    /// deadline. At rest that is most wakes of a standby, which would otherwise read the peer
    /// table and step the core once per heartbeat.
    fn sleep(&mut self, deadline: Instant) {
        loop {
            let next_send = self.schedule.and_then(|s| s.next_at());
            let until = next_send.map_or(deadline, |at| at.min(deadline));
            let woken = match self.rx.event_fd() {
                Some(fd) => wait_readable_until_ns(&[fd, self.nudge.fd()], until.as_nanos()),
                None => wait_readable_until_ns(&[self.nudge.fd()], until.as_nanos()),
            };
            if woken {
                self.nudge.drain();
                return;
            }
            let now = Instant::from_nanos(monotonic_ns());
            if now >= deadline || next_send.is_none_or(|at| now < at) {
                return;
            }
            self.send_due(now);
        }
    }

    /// A claim for the shared address by another MAC since the last look: its time.
    fn new_foreign_claim(&mut self) -> Option<Instant> {
        match self.rx.last_claim() {
            Ok(claim) => self.foreign_claims.observe(claim?).map(Instant::from_nanos),
            Err(e) => {
                self.claim_errors += 1;
                if self.claim_errors.is_power_of_two() {
                    log::error!("reading foreign claims ({} failures): {e}", self.claim_errors);
                }
                None
            }
        }
    }

    /// Points clients here: gratuitous ARP / unsolicited NA, or in routed mode the host routes
    /// (put back if something removed them; a route already there is left as it is).
    fn announce(&mut self, k: usize) {
        if let Some(routes) = &self.routes {
            if self.vips[k].1.holding() {
                for vip in &self.cfg.vips {
                    if let Err(e) = routes.claim(&vip.addr) {
                        log::error!("announcing {}: {e}", vip.addr);
                    }
                }
            }
            return;
        }
        self.vips[k].1.announce();
    }

    fn remove_addresses(&mut self, k: usize) {
        self.withdraw_routes();
        self.vips[k].1.remove_all();
    }

    fn hand_over_routes(&mut self) {
        let Some(routes) = &self.routes else { return };
        for vip in &self.cfg.vips {
            if let Err(e) = routes.hand_over(&vip.addr) {
                log::error!("handing over {}: {e}", vip.addr);
            }
        }
    }

    fn withdraw_routes(&mut self) {
        let Some(routes) = &self.routes else { return };
        for vip in &self.cfg.vips {
            if let Err(e) = routes.remove(&vip.addr) {
                log::error!("withdrawing {}: {e}", vip.addr);
            }
        }
    }

    /// Reports one event of the core.
    fn report(
        &mut self,
        event: GroupsEvent,
        groups: &Groups,
        raw: &[(u32, ha_common::maps::PeerRecord)],
        now: Instant,
    ) {
        let event = match event {
            GroupsEvent::Group { group, event: CoreEvent::Transition(t) } if !groups.is_single() => {
                return self.report_group_transition(group, t, groups, now);
            }
            GroupsEvent::Group { event, .. } | GroupsEvent::Node(event) => event,
        };
        let failover = groups.lead();
        match event {
            CoreEvent::Transition(t) => {
                let took_us = monotonic_ns().saturating_sub(now.as_nanos()) / 1_000;
                let (from, to, label) = (t.from.name(), t.to.name(), t.reason.label());
                log::info!(
                    event = "transition", from = from, to = to, reason = label, took_us = took_us;
                    "{from} -> {to}: {} (acted in {took_us} us)", t.reason
                );
                self.transitions += 1;
                self.metrics.transition(from, to, label);
                let event = Event::new(failover.node().config().node_id, &t);
                self.hub.update_status(|s| {
                    s.since_unix_ms = event.unix_ms;
                    s.reason = event.reason.clone();
                    s.detail = event.detail.clone();
                });
                self.hub.publish_event(&event.to_json());
                self.hooks.fire(&event, failover.node().priority());
            }
            CoreEvent::Resumed { gap } => {
                log::warn!(
                    "this agent did not run for {} ms (paused?): listening again before deciding",
                    gap.as_millis()
                )
            }
            CoreEvent::Lingering { grace } => {
                log::debug!(
                    "handed over: keeping the addresses {} ms for clients still pointed here",
                    grace.as_millis()
                )
            }
            CoreEvent::Link { up } if self.cfg.links.len() > 1 => {
                log::warn!("{}", if up { "a heartbeat link is up again" } else { "every heartbeat link is down" })
            }
            CoreEvent::Link { up } => log::warn!("link {} is {}", self.cfg.iface, if up { "up" } else { "down" }),
            CoreEvent::ForeignClaim { defended: true } => {
                self.foreign_claims_defended += 1;
                if let Some(warning) = self.foreign_claims.warning(now.as_nanos()) {
                    log::warn!(event = "foreign_claim"; "{warning}");
                }
            }
            CoreEvent::ForeignClaim { defended: false } => {
                log::debug!("another MAC announced the shared address: a peer's hand-over, or not ours to hold")
            }
            CoreEvent::AnswersUnheard { node_id } => log::warn!(
                "peer {} claimed the address while this node's kernel answered for it: answers may not reach \
                 peers (on a veth, its peer end needs an XDP program of its own for XDP_TX); every heartbeat from this agent from now on",
                id(node_id)
            ),
            CoreEvent::StatusDue => self.publish_status(groups, raw, now),
            CoreEvent::Done => log::info!("clean stop complete"),
        }
    }

    /// A transition of one of several groups: logged, counted, published and hooked with its
    /// group.
    fn report_group_transition(&mut self, group: u8, t: ha_core::Transition, groups: &Groups, now: Instant) {
        let took_us = monotonic_ns().saturating_sub(now.as_nanos()) / 1_000;
        let (from, to, label) = (t.from.name(), t.to.name(), t.reason.label());
        log::info!(
            event = "transition", group = group, from = from, to = to, reason = label, took_us = took_us;
            "group {group}: {from} -> {to}: {} (acted in {took_us} us)", t.reason
        );
        self.transitions += 1;
        self.metrics.transition(from, to, label);
        let Some(failover) = groups.group(group) else { return };
        let event = Event::of_group(failover.node().config().node_id, Some(group), &t);
        if let Some(g) = self.group_status.iter_mut().find(|g| g.id == group) {
            g.since_unix_ms = event.unix_ms;
            g.reason = event.reason.clone();
            g.detail = event.detail.clone();
        }
        self.hub.publish_event(&event.to_json());
        self.hooks.fire(&event, failover.node().priority());
    }

    /// SIGHUP: reads the configuration again and applies what can change live, keeping the
    /// address; names each change that needs a restart. A bad file changes nothing.
    fn reload(&mut self, failover: &mut Groups, now: Instant) {
        let new = match (self.reread)() {
            Ok(new) => new,
            Err(e) => {
                log::error!("reload: {e:#}; nothing changed");
                return;
            }
        };
        let mut new = new;
        let (priority, ended) = self.priority.reload(new.cfg.node.priority);
        if let Some(set) = ended {
            log::info!(
                "reload: the configured priority is {} now; it replaces the priority {set} set at run time",
                new.cfg.node.priority
            );
            self.hub.update_status(|s| s.priority_set = None);
        }
        new.cfg.node.priority = priority;
        let plan = ReloadPlan::between(&self.cfg, &new.cfg);
        if new.cfg.auth == self.cfg.auth {
            self.auth.reload(&mut self.rx, &mut self.sender);
            self.links.set_signing_key(self.auth.signing());
            // The template names the signing key: the kernel signs its answers with the new one
            // from now on (the old one may be gone from `KEYS`).
            if let Some((content, until)) = self.answering {
                self.answer(content, until);
            }
        }
        if log::max_level() != new.log_level {
            log::info!("reload: log level {} -> {}", log::max_level(), new.log_level);
            log::set_max_level(new.log_level);
        }
        for name in &plan.needs_restart {
            log::warn!("reload: {name} changed; it needs a restart, the running value stays");
        }
        if plan.live.is_empty() {
            log::info!("reload: no change that applies live");
            return;
        }
        if new.cfg.metrics != self.cfg.metrics {
            let started = new.cfg.metrics.map(|addr| MetricsServer::start(addr, Arc::clone(&self.metrics)));
            match started {
                Some(Err(e)) => {
                    log::error!("reload: {e:#}; nothing changed");
                    return;
                }
                Some(Ok(server)) => self.metrics_server = Some(server),
                None => self.metrics_server = None,
            }
            self.cfg.metrics = new.cfg.metrics;
        }
        if new.cfg.hooks != self.cfg.hooks {
            match Hooks::start(new.cfg.hooks.clone(), self.facts.clone(), Arc::clone(&self.metrics)) {
                // The old hooks finish what they run on a thread of their own: a slow hook must
                // not hold up this loop.
                Ok(hooks) => drop_aside(std::mem::replace(&mut self.hooks, hooks)),
                Err(e) => log::error!("reload: starting the hooks: {e}; the old hooks stay"),
            }
            self.cfg.hooks = new.cfg.hooks.clone();
        }
        if new.cfg.checks != self.cfg.checks || new.cfg.node.priority != self.cfg.node.priority {
            match Checks::start(
                new.cfg.checks.clone(),
                new.cfg.node.priority,
                self.check_env.clone(),
                self.waker.clone(),
            ) {
                Ok(checks) => drop_aside(std::mem::replace(&mut self.checks, checks)),
                Err(e) => log::error!("reload: starting the checks: {e}; the old checks stay"),
            }
            self.cfg.checks = new.cfg.checks.clone();
        }
        if new.cfg.groups != self.cfg.groups {
            log::warn!("reload: the groups changed; that needs a restart, the running groups stay");
        }
        for (id, node) in group_nodes(&self.cfg, &new.cfg.node) {
            failover.handle_config(now, id, node);
        }
        self.cfg.node = new.cfg.node;
        self.cfg.node.priority = priority;
        log::info!("reload: applied {}", plan.live.join(", "));
    }

    /// `priority set N` / `priority reset`: the new worthiness goes to the core like a reloaded
    /// one, so a move it causes is make-before-break as any preemption.
    fn steer_priority(&mut self, failover: &mut Groups, now: Instant, set: Option<u32>) {
        if !failover.is_single() {
            log::warn!("`ha-agent priority` steers the flat options' priority; with groups it changes nothing");
            return;
        }
        let before = self.priority.effective();
        self.priority.set(set);
        let after = self.priority.effective();
        match set {
            Some(_) => log::info!(
                "priority {before} -> {after}, set at run time (`ha-agent priority reset` returns to the configured {})",
                self.priority.configured()
            ),
            None => log::info!("priority {before} -> {after}: the configured priority again"),
        }
        self.checks.set_base(after);
        let mut node = self.cfg.node;
        node.priority = after;
        failover.handle_config(now, 0, node);
        self.cfg.node = *failover.lead().node().config();
        self.hub.update_status(|s| s.priority_set = set);
    }

    /// Refreshes what `ha-agent status` shows.
    fn publish_status(&mut self, groups: &Groups, raw: &[(u32, ha_common::maps::PeerRecord)], now: Instant) {
        let failover = groups.lead();
        let node = failover.node();
        let now = now.as_nanos();
        let stats = self.rx.stats().unwrap_or_default();
        let neighbour = self.rx.neighbour_stats().unwrap_or_default();
        let (ours, theirs) = (self.auth.key_ids(), self.rx.unknown_key_ids());
        if let Some(warning) = self.key_alarm.check(now, &stats, self.cfg.cluster_id, &ours, &theirs) {
            log::warn!("{warning}");
        }
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let peers = status::peer_rows(raw, now, ns(node.config().tolerance), |id| {
            let (limit, loss) = node.peer_liveness(id);
            Some((ns(limit), loss))
        });
        let (mut priority_parts, checks) = (self.checks.priority_parts(), self.checks.statuses());
        priority_parts.extend(self.tracked.parts(self.checks.priority()));
        let link_up = failover.link_up();
        let peer_links = self.links.rows(Instant::from_nanos(now));
        // With groups: each group's state, and the node is ACTIVE while it holds any.
        for g in &mut self.group_status {
            let Some(f) = groups.group(g.id) else { continue };
            g.state = f.node().role().name().to_string();
            g.priority = f.node().priority();
            g.holder = raw
                .iter()
                .filter_map(|(id, rec)| Peer::for_group(*id, rec, g.id))
                .find(|p| {
                    p.state == NodeState::Active
                        && p.confirmed
                        && now.saturating_sub(p.last_seen.as_nanos()) <= ns(node.config().tolerance)
                })
                .map(|p| id(p.node_id).to_string());
        }
        let any_active = groups.iter().any(|(_, f)| f.node().state() == NodeState::Active);
        let state = if any_active { NodeState::Active.name().to_string() } else { node.role().name().to_string() };
        let group_status = self.group_status.clone();
        self.hub.update_status(|s| {
            s.state = state;
            s.groups = group_status;
            s.priority = node.priority();
            s.priority_parts = priority_parts;
            s.checks = checks;
            s.maintenance = node.in_maintenance();
            s.leaving = node.is_leaving();
            s.link_up = link_up;
            let (more_sent, more_errors) = self.links.sent_and_errors();
            s.heartbeats_sent = self.sender.sent + more_sent;
            s.heartbeat_send_errors = self.sender.errors + more_errors;
            s.links = self.cfg.links.iter().map(|l| l.iface.clone()).collect();
            s.peer_links = peer_links;
            s.send_lateness = self.lateness.summary();
            s.transitions = self.transitions;
            s.heartbeats_recorded = stats.valid;
            s.drops = status::drops(&stats);
            s.socket_buffer_drops = self.rx.buffer_drops();
            s.peers = peers;
            s.foreign_claims = neighbour.claims;
            s.last_foreign_claim = self.foreign_claims.status(now);
            s.foreign_claims_defended = self.foreign_claims_defended;
            s.kernel_events = self.kernel_events_seen;
            s.kernel_events_lost = stats.events_lost;
            s.heartbeats_answered = stats.answered;
        });
    }
}

/// Runs until `stop` is set and the clean stop has handed the address over.
/// The configuration read again on a reload: the run's, and the log level.
pub struct Reread {
    pub cfg: RunConfig,
    pub log_level: log::LevelFilter,
}

/// Reads the command line and config file again (SIGHUP).
pub type Rereader = Box<dyn Fn() -> anyhow::Result<Reread> + Send>;

/// Runs until `stop` is set and the clean stop has handed the address over. SIGHUP reloads the
/// configuration with `reread`.
pub fn run(cfg: RunConfig, stop: Arc<AtomicBool>, reread: Rereader) -> anyhow::Result<()> {
    // Everything that can refuse comes first; the system changes only after the last of them
    // (XDP attached, maps pinned, leftovers removed). Keys: a bad key file stops us here.
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing the SIGHUP handler")?;
    let nudge = Nudge::new().context("making the loop's wake-up socket")?;
    for signal in [signal_hook::consts::SIGHUP, signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        nudge.on_signal(signal).context("installing the signal handlers")?;
    }
    let auth = Auth::start(&cfg.auth)?;
    // One agent per instance and per shared address: a second agent must not take a running
    // agent's address for a leftover.
    let _instance = InstanceLock::acquire(&cfg.pin_dir, &cfg.shared_addrs())?;
    let (hub, commands) = Hub::new();
    let waker = nudge.waker().context("making the loop's wake-up socket")?;
    hub.wake_on_command(waker.clone());
    let metrics = Arc::new(Metrics::new(Arc::clone(&hub)));
    let metrics_server = match cfg.metrics {
        Some(addr) => Some(MetricsServer::start(addr, Arc::clone(&metrics))?),
        None => None,
    };
    let _control = ControlServer::start(crate::ops::control::socket_path(&cfg.pin_dir), Arc::clone(&hub))
        .context("opening the control socket")?;
    // Routed mode announces by host routes, not ARP: no announcement sockets.
    let mut vips: Vec<(u8, VipLinks)> = Vec::new();
    if cfg.groups.is_empty() {
        vips.push((0, VipLinks::open(&cfg.vips, cfg.routed.is_none())?));
    }
    for g in &cfg.groups {
        vips.push((g.id, VipLinks::open(&g.vips, cfg.routed.is_none())?));
    }
    let routes = match &cfg.routed {
        Some(r) => Some(
            RouteManager::new(r.table, crate::netlink::iface::index(&r.vip_iface)?)
                .context("opening netlink for routes")?,
        ),
        None => None,
    };
    let link = LinkWatch::new(&cfg.iface, waker.clone()).context("watching the link state")?;
    let group_names =
        |g: &crate::config::GroupConfig| -> Vec<String> { g.vips.iter().map(|v| v.spelt(cfg.vip_iface())).collect() };
    let facts = NodeFacts {
        iface: cfg.iface.clone(),
        vips: cfg.vip_names(),
        group_vips: cfg.groups.iter().map(|g| (g.id, group_names(g))).collect(),
    };
    let group_status: Vec<status::GroupStatus> = cfg
        .groups
        .iter()
        .map(|g| status::GroupStatus {
            id: g.id,
            state: NodeState::Standby.name().to_string(),
            priority: g.priority,
            preempt: crate::config::values::spell_preempt(g.preempt),
            vips: group_names(g),
            holder: None,
            since_unix_ms: realtime_us() / 1_000,
            reason: "started".into(),
            detail: "started; listening for a holder".into(),
        })
        .collect();
    let hooks =
        Hooks::start(cfg.hooks.clone(), facts.clone(), Arc::clone(&metrics)).context("starting the hook thread")?;
    let check_env = vec![("HA_NODE", id(cfg.node.node_id).to_string()), ("HA_IFACE", cfg.iface.clone())];
    let checks = Checks::start(cfg.checks.clone(), cfg.node.priority, check_env.clone(), waker.clone())
        .context("starting the health checks")?;
    let maintenance_file = crate::ops::maintenance::MaintenanceFile::new(&cfg.pin_dir);
    let tracked = TrackedIfaces::open(&cfg.track, &waker)?;

    let mut cfg = cfg;
    let asked = cfg.wake;
    cfg.wake = resolve_wake(&cfg)?;
    let epoch = crate::clock::new_epoch();
    // Claims by this MAC are ours: the one our announcements for the (first) addresses carry.
    let mac = match vips.iter().find_map(|(_, v)| v.first_mac()) {
        Some(mac) => mac,
        None => crate::tx::announce::Announcer::new(&cfg.iface).context("reading the MAC of the interface")?.mac(),
    };
    let mut rx = Receiver::open(&cfg, auth.mode(), epoch, mac)?;
    // XDP may have fallen back to the socket (with its own warning): that path polls.
    let wake = if rx.event_fd().is_some() { Wake::Event } else { Wake::Poll };
    let sender_cfg = SenderConfig {
        iface: cfg.iface.clone(),
        iface_addr: cfg.iface_addr,
        group: cfg.group,
        port: cfg.port,
        unicast_peers: cfg.unicast_peers.clone(),
        join_group: rx.needs_membership(),
        cluster_id: cfg.cluster_id,
        node_id: cfg.node.node_id,
        interval_us: u32::try_from(cfg.interval.as_micros()).unwrap_or(u32::MAX),
        epoch,
    };
    let mut links = HeartbeatLinks::open(&cfg, &sender_cfg, &waker)?;
    links.set_signing_key(auth.signing());
    let mut sender = Sender::new(sender_cfg).context("opening the heartbeat socket")?;
    sender.set_signing_key(auth.signing());
    // Only when event wake is asked for: the queued sender has not run on a kernel with fq in
    // our lab (this one has none), so `auto` keeps the sender that has.
    let queued = (wake == Wake::Event && asked == WakeMode::Event)
        .then(|| crate::tx::queued::open(&cfg.iface, cfg.links.len(), &mut sender, true))
        .flatten();
    // The kernel answers for a holder in event wake, heartbeats through XDP (so its answers),
    // unless the fq qdisc carries the schedules: its queued heartbeats have counters of their
    // own, which the kernel's answers would make stale.
    let answers = wake == Wake::Event && queued.is_none() && rx.answerer().is_some();
    // Heartbeats to a group: an answer to the group reaches every peer, so the kernel answers
    // for a holder with any number of them, one new counter per half interval at most. On one
    // link: on several, a request's copy on the next link may find its counter's gap taken by
    // another peer's request, and that link would carry too few answers (ha-sim invariant h).
    let answers_to_group = answers && cfg.unicast_peers.is_empty() && cfg.links.len() <= 1;
    if answers && let Some(answerer) = rx.answerer() {
        sender.share_counter(answerer.counter());
        if answers_to_group {
            answerer.set_group_gap(cfg.interval / 2).context("configuring the kernel's answers")?;
        }
    }
    log::info!(
        "heartbeats: {}",
        match (answers, answers_to_group) {
            (true, true) =>
                "answered by XDP while holder (to the group: any number of peers), own every interval otherwise",
            (true, false) => "answered by XDP while holder (back to one peer), own every interval otherwise",
            _ => "own every interval",
        }
    );
    if let Some(routes) = &routes {
        // A crashed run's host route would keep announcing an address nobody here serves.
        for vip in &cfg.vips {
            routes.remove(&vip.addr)?;
        }
    }
    for (_, v) in &vips {
        v.remove_leftovers()?;
    }
    for (_, v) in &mut vips {
        v.start_guards().context("watching the shared addresses")?;
    }
    if cfg.realtime {
        realtime().context("--realtime: setting SCHED_FIFO and locking memory")?;
    }
    log::info!(
        "node {} priority {} on {} ({}); {}",
        id(cfg.node.node_id),
        cfg.node.priority,
        cfg.iface,
        rx.describe(),
        cfg.timings(),
    );
    if let Some(r) = &cfg.routed {
        log::info!(
            "routed mode: while holding, the shared addresses go on {} and their host routes into table {} for the BGP speaker",
            r.vip_iface,
            r.table
        );
    }
    hub.update_status(|s| {
        s.node_id = id(cfg.node.node_id).to_string();
        s.iface = cfg.iface.clone();
        s.cluster = cfg.cluster_id;
        s.vips = cfg.vip_names();
        s.state = NodeState::Standby.name().to_string();
        s.since_unix_ms = realtime_us() / 1_000;
        s.reason = "started".into();
        s.detail = "started; listening for a holder".into();
        s.interval_ms = cfg.interval.as_secs_f64() * 1e3;
        s.tolerance_ms = cfg.node.tolerance.as_secs_f64() * 1e3;
        s.preempt = crate::config::values::spell_preempt(cfg.preempt());
        s.rx_path = rx.path_name().to_string();
        s.wake = wake.name().to_string();
    });
    let priority = PriorityOverride::new(cfg.node.priority);
    let mut io = Io {
        cfg,
        vips,
        group_status,
        routes,
        sender,
        links,
        link,
        rx,
        hub,
        transitions: 0,
        lateness: Default::default(),
        key_alarm: Default::default(),
        metrics,
        hooks,
        checks,
        tracked,
        auth,
        read_errors: 0,
        reload,
        nudge,
        waker,
        reread,
        metrics_server,
        facts,
        check_env,
        stamp_errors: 0,
        claim_errors: 0,
        foreign_claims: ForeignClaims::default(),
        foreign_claims_defended: 0,
        priority,
        wake,
        schedule: None,
        queued,
        departures: Vec::with_capacity(256),
        kernel_events: Vec::with_capacity(64),
        kernel_events_seen: 0,
        limit_errors: 0,
        answers,
        answers_to_group,
        answer_errors: 0,
        answering: None,
    };
    let result = event_loop(&mut io, &stop, &commands, &maintenance_file);
    if result.is_err() {
        // Never leave the address behind on an error exit.
        for k in 0..io.vips.len() {
            io.vips[k].1.set_holding(false);
            io.remove_addresses(k);
        }
    }
    io.stop_answering();
    drop(io); // detach XDP and unpin, or close the socket
    result
}

fn event_loop(
    io: &mut Io,
    stop: &AtomicBool,
    commands: &std::sync::mpsc::Receiver<Command>,
    maintenance_file: &crate::ops::maintenance::MaintenanceFile,
) -> anyhow::Result<()> {
    let clock = || Instant::from_nanos(monotonic_ns());
    let cfg = FailoverConfig {
        wake: io.wake,
        answer: io.answers,
        answer_group: io.answers_to_group,
        ..FailoverConfig::new(io.cfg.node, io.cfg.interval, io.cfg.tick)
    };
    let mut failover = match io.cfg.groups.is_empty() {
        true => Groups::single(cfg, clock()),
        false => {
            let groups: Vec<GroupConfig> = io
                .cfg
                .groups
                .iter()
                .map(|g| GroupConfig { id: g.id, priority: g.priority, preempt: g.preempt })
                .collect();
            Groups::new(&cfg, &groups, clock()).context("starting the groups")?
        }
    };
    let ids: Vec<u8> = failover.ids().collect();
    // Ready for systemd once the first tolerance is over: the core's first decision is made.
    let mut systemd = Notifier::from_env(monotonic_ns(), io.cfg.node.tolerance);
    if maintenance_file.is_on() {
        log::warn!(
            "in maintenance (since before this start): this node will not take the address; `ha-agent maintenance off` ends it"
        );
        failover.handle_command(clock(), CoreCommand::Maintenance(true));
    }
    let mut raw = Vec::with_capacity(16);
    let mut peers: Vec<Peer> = Vec::with_capacity(16);
    let mut leaving = false;
    loop {
        // Events first: each was posted before `now`, so an expiry is seen at its time or later.
        if io.wake == Wake::Event {
            io.take_kernel_events(&mut failover, clock());
        }
        let (now, table) = observe(clock, || io.rx.read_peers(&mut raw));
        if io.reload.swap(false, Ordering::Relaxed) {
            io.reload(&mut failover, now);
        }
        while let Ok(command) = commands.try_recv() {
            match command {
                Command::Maintenance(on) => {
                    log::info!("maintenance {}", if on { "on: handing the address over" } else { "off" });
                    if let Err(e) = maintenance_file.set(on) {
                        log::warn!("maintenance will not survive a restart: {e}");
                    }
                    failover.handle_command(now, CoreCommand::Maintenance(on));
                }
                Command::Priority(set) => io.steer_priority(&mut failover, now, set),
            }
        }
        if stop.load(Ordering::Relaxed) && !leaving {
            log::info!("stopping: handing the address over before leaving");
            leaving = true;
            systemd.stopping();
            failover.handle_command(now, CoreCommand::Leave);
        }
        let link_up = io.links.own_up(io.link.is_up());
        failover.handle_link(now, link_up);
        let worth = io.tracked.priority(io.checks.priority());
        for (id, priority) in group_priorities(&io.cfg, worth) {
            failover.handle_priority(now, id, priority);
        }
        match table {
            Ok(()) => {
                for &group in &ids {
                    peers.clear();
                    peers.extend(raw.iter().filter_map(|(node_id, rec)| Peer::for_group(*node_id, rec, group)));
                    failover.handle_peers(now, group, &peers);
                }
            }
            Err(e) => {
                io.read_errors += 1;
                if io.read_errors.is_power_of_two() {
                    log::error!("reading peers ({} failures): {e}", io.read_errors);
                }
                failover.handle_table_unreadable(now);
            }
        }
        io.links.observe(now, &io.rx, failover.lead().node());
        for line in io.links.drain_events(io.cfg.node.node_id) {
            io.hub.publish_event(&line);
        }
        if let Some(at) = io.new_foreign_claim() {
            // Which address it was is not recorded: each group decides whether it holds one.
            for &group in &ids {
                failover.handle_foreign_claim(now, group, at);
            }
        }
        failover.handle_timeout(now);
        while let Some(action) = failover.poll_action() {
            io.carry_out(action);
        }
        while let Some(event) = failover.poll_event() {
            io.report(event, &failover, &raw, now);
        }
        if failover.is_done() {
            return Ok(());
        }
        io.send_due(Instant::from_nanos(monotonic_ns()));
        systemd.poll(now.as_nanos());
        let wake = failover.poll_timeout();
        io.sleep(systemd.next_due().map_or(wake, |due| wake.min(Instant::from_nanos(due))));
    }
}

/// Each group's worthiness from the node's (`worth`: the configured priority less failing
/// checks and tracked interfaces): checks and tracked interfaces are the node's, so a group
/// loses what the node loses, and 0 stays 0.
fn group_priorities(cfg: &RunConfig, worth: u32) -> Vec<(u8, u32)> {
    if cfg.groups.is_empty() {
        return vec![(0, worth)];
    }
    let lost = cfg.node.priority.saturating_sub(worth);
    cfg.groups.iter().map(|g| (g.id, if worth == 0 { 0 } else { g.priority.saturating_sub(lost) })).collect()
}

/// Each group's decision settings under `node` (a reloaded configuration).
fn group_nodes(cfg: &RunConfig, node: &ha_core::NodeConfig) -> Vec<(u8, ha_core::NodeConfig)> {
    if cfg.groups.is_empty() {
        return vec![(0, *node)];
    }
    cfg.groups
        .iter()
        .map(|g| (g.id, ha_core::NodeConfig { priority: g.priority, preempt: g.preempt, ..*node }))
        .collect()
}

/// `--wake`, decided before the first change to the system: event where the kernel has
/// `bpf_timer` and ring buffers and heartbeats come through XDP (auto: poll otherwise, with one
/// warning line; an XDP that falls back to the socket polls too, see `Receiver::open`).
fn resolve_wake(cfg: &RunConfig) -> anyhow::Result<WakeMode> {
    let kernel = crate::rx::events::kernel_supports_event_wake;
    Ok(match (cfg.wake, cfg.rx) {
        (WakeMode::Poll, _) => WakeMode::Poll,
        (WakeMode::Auto, RxMode::Socket) => WakeMode::Poll,
        (WakeMode::Auto, _) if !cfg.groups.is_empty() => {
            log::info!("groups (--vip-group, [[group]]) poll: event wake carries one group");
            WakeMode::Poll
        }
        (WakeMode::Event, RxMode::Socket) => {
            log::warn!("--wake event needs XDP (the socket path has no kernel timers): polling instead");
            WakeMode::Poll
        }
        (WakeMode::Event, _) => {
            kernel().map_err(|why| anyhow::anyhow!("--wake event: {why}; use --wake poll or auto"))?;
            WakeMode::Event
        }
        (WakeMode::Auto, _) => match kernel() {
            Ok(()) => WakeMode::Event,
            Err(why) => {
                log::warn!("event wake unavailable ({why}): polling the peer table every tick instead");
                WakeMode::Poll
            }
        },
    })
}

/// One precise cause of a re-announcement, in words.
fn reannounce_words(why: Reannounce) -> &'static str {
    match why {
        Reannounce::PeerReturned => "a peer we could not hear is back (it may have claimed the address meanwhile)",
        Reannounce::MissedClaim => "a peer claimed the address and gave it back between two looks",
        Reannounce::OtherClaims => "another node claims the address too",
        Reannounce::OtherClaimEnded => "another node's claim ended (its announcements may have come after ours)",
        Reannounce::OldHolderLetGo => "the node we took the address from let go (the last word of the hand-over)",
        Reannounce::LinkBack => "our link is back within the tolerance",
    }
}

/// Drops `value` on a thread of its own: joining a hook or check thread may take a while.
fn drop_aside<T: Send + 'static>(value: T) {
    if let Err(e) = std::thread::Builder::new().name("reload-drop".into()).spawn(move || drop(value)) {
        log::warn!("reload: {e}");
    }
}

/// SCHED_FIFO for the loop thread and locked memory, as keepalived does for short intervals.
/// Reset-on-fork: threads and commands (hooks, checks) started later run at normal priority.
fn realtime() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: valid parameter struct; 0 means the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: no pointers involved.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
