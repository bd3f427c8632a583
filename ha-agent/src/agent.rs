//! The agent's run loop: one thread that reads the peer table, steps the state machine, carries
//! out what it decides, and sends heartbeats on a drift-free schedule. Everything here is I/O;
//! every decision is in `node`.
use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use ha_common::wire::NodeState;

use crate::{
    auth::Auth,
    clock::{monotonic_ns, realtime_us, sleep_until_ns},
    config::RunConfig,
    linger::{self, Linger},
    netlink::{address::AddressManager, guard::AddressGuard, link::LinkWatch},
    node::{Beats, Inputs, Node, Output, Peer, id},
    observe::observe,
    ops::{
        checks::Checks,
        control::{Command, ControlServer, Hub},
        events::Event,
        hooks::{Hooks, NodeFacts},
        metrics::Metrics,
        metrics_http::MetricsServer,
        status,
    },
    rx::Receiver,
    tx::{
        announce::{AnnounceWorker, Announcer},
        sender::{Sender, SenderConfig},
    },
};

/// Repeats of the announcement after the first, which goes out before the ACTIVE heartbeat.
const ANNOUNCE_REPEATS: [Duration; 4] =
    [Duration::from_millis(5), Duration::from_millis(20), Duration::from_millis(100), Duration::from_millis(500)];

/// The system side of a run: what the loop touches.
struct Io {
    cfg: RunConfig,
    addresses: AddressManager,
    announcer: Announcer,
    repeats: AnnounceWorker,
    sender: Sender,
    link: LinkWatch,
    rx: Receiver,
    vip_addrs: Vec<IpAddr>,
    hub: Arc<Hub>,
    transitions: u64,
    guard: AddressGuard,
    lateness: crate::ops::lateness::Lateness,
    key_alarm: crate::auth::key_alarm::KeyAlarm,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    checks: Checks,
    auth: Auth,
    /// Addresses kept for a grace after a hand-over.
    linger: Linger,
}

impl Io {
    /// Takes the addresses: add, announce once, then (in the caller) say ACTIVE; the worker repeats.
    fn take(&mut self) {
        self.linger.cancel();
        self.guard.state().holding.store(true, Ordering::Release);
        for vip in &self.cfg.vips {
            if let Err(e) = self.addresses.add(vip) {
                log::error!("adding {vip} to {}: {e}", self.cfg.iface);
            }
        }
        if let Err(e) = self.announcer.announce(&self.vip_addrs) {
            log::warn!("announcing {:?}: {e}", self.vip_addrs);
        }
        self.repeats.request(self.vip_addrs.clone());
    }

    fn release(&mut self) {
        self.stop_claiming();
        self.remove_addresses();
    }

    /// Stop re-pointing clients at us (before the address goes); the guard no longer restores it.
    fn stop_claiming(&mut self) {
        self.repeats.cancel();
        self.guard.state().holding.store(false, Ordering::Release);
    }

    /// A hand-over: stop announcing now, but keep answering for one tolerance, until the new
    /// holder has had the last word (see `linger`).
    fn let_go(&mut self, now: u64) {
        self.stop_claiming();
        let grace = self.cfg.node.tolerance;
        log::debug!("handed over: keeping the addresses {} ms for clients still pointed here", grace / 1_000_000);
        self.linger.start(now, grace);
    }

    fn remove_addresses(&mut self) {
        self.linger.cancel();
        for vip in &self.cfg.vips {
            if let Err(e) = self.addresses.remove(vip) {
                log::error!("removing {vip} from {}: {e}", self.cfg.iface);
            }
        }
    }

    fn apply(&mut self, node: &Node, out: &Output, started_ns: u64) {
        if out.take {
            let decided = monotonic_ns();
            self.take();
            self.metrics.takeover(monotonic_ns().saturating_sub(decided) as f64 / 1e9);
        }
        if out.release {
            if out.transition.is_some_and(|t| linger::after_hand_over(&t.reason)) {
                self.let_go(started_ns);
            } else {
                self.release();
            }
        }
        if out.announce {
            if out.transition.is_none() {
                log::info!(
                    "another node claims the shared address, a peer we could not hear is back, or the node we took it from let go; announcing ours again"
                );
            }
            if let Err(e) = self.announcer.announce(&self.vip_addrs) {
                log::warn!("announcing: {e}");
            }
            self.repeats.request(self.vip_addrs.clone());
        }
        if out.refresh {
            log::debug!("periodic refresh: announcing {:?} again", self.vip_addrs);
            if let Err(e) = self.announcer.announce(&self.vip_addrs) {
                log::warn!("announcing: {e}");
            }
        }
        if let Some(gap) = out.resumed_after {
            log::warn!("this agent did not run for {} ms (paused?): listening again before deciding", gap / 1_000_000);
        }
        if let Some(t) = out.transition {
            let took_us = (monotonic_ns().saturating_sub(started_ns)) / 1_000;
            let (from, to, label) = (t.from.name(), t.to.name(), t.reason.label());
            log::info!(
                event = "transition", from = from, to = to, reason = label, took_us = took_us;
                "{from} -> {to}: {} (acted in {took_us} us)", t.reason
            );
            self.transitions += 1;
            self.metrics.transition(from, to, label);
            let event = Event::new(node.config().node_id, &t);
            self.hub.update_status(|s| {
                s.since_unix_ms = event.unix_ms;
                s.reason = t.reason.to_string();
            });
            self.hub.publish_event(&event.to_json());
            self.hooks.fire(&event, node.priority());
        }
    }

    /// Refreshes what `ha-agent status` shows.
    fn publish_status(&mut self, node: &Node, raw: &[(u32, ha_common::maps::PeerRecord)], now: u64, link_up: bool) {
        let stats = self.rx.stats().unwrap_or_default();
        if let Some(warning) = self.key_alarm.check(now, &stats, self.cfg.cluster_id) {
            log::warn!("{warning}");
        }
        let peers = status::peer_rows(raw, now, node.config().tolerance, |id| Some(node.peer_liveness(id)));
        let (priority_parts, checks) = (self.checks.priority_parts(), self.checks.statuses());
        self.hub.update_status(|s| {
            s.state = node.state().name().to_string();
            s.priority = node.priority();
            s.priority_parts = priority_parts;
            s.checks = checks;
            s.maintenance = node.in_maintenance();
            s.leaving = node.is_leaving();
            s.link_up = link_up;
            s.heartbeats_sent = self.sender.sent;
            s.send_lateness = self.lateness.summary();
            s.transitions = self.transitions;
            s.heartbeats_recorded = stats.valid;
            s.drops = status::drops(&stats);
            s.peers = peers;
        });
    }

    fn heartbeat(&mut self, node: &Node) {
        if let Err(e) = self.sender.send(node.state(), node.flags(), node.priority()) {
            // Counted; the link may be down. Logged once per burst at debug to stay quiet.
            log::debug!("sending heartbeat: {e}");
        }
    }
}

/// Runs until `stop` is set and the clean stop has handed the address over.
pub fn run(cfg: RunConfig, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    // Keys first: a bad key file must stop us before anything on the system changes.
    let reload_keys = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload_keys))
        .context("installing the SIGHUP handler")?;
    let auth = Auth::start(&cfg.auth, reload_keys)?;
    let addresses = AddressManager::new(&cfg.iface)?;
    for vip in &cfg.vips {
        if addresses.is_present(vip)? {
            log::warn!(
                "{vip} was already on {}, left by an earlier run: removing it until this node is chosen",
                cfg.iface
            );
        }
        // Unconditional (idempotent): also opens the rtnetlink connection now, so the first
        // takeover does not pay for it.
        addresses.remove(vip)?;
    }
    let rx = Receiver::open(&cfg, auth.mode())?;
    log::info!(
        "node {} priority {} on {} ({}); interval {:?}, tolerance {:?}, preempt {:?}, hold-down {:?}, GARP refresh {:?}",
        id(cfg.node.node_id),
        cfg.node.priority,
        cfg.iface,
        rx.describe(),
        cfg.interval,
        Duration::from_nanos(cfg.node.tolerance),
        cfg.preempt(),
        Duration::from_nanos(cfg.node.hold_down),
        cfg.node.refresh.map(Duration::from_nanos),
    );
    let mut sender = Sender::new(SenderConfig {
        iface: cfg.iface.clone(),
        iface_addr: cfg.iface_addr,
        group: cfg.group,
        port: cfg.port,
        unicast_peers: cfg.unicast_peers.clone(),
        join_group: rx.needs_membership(),
        cluster_id: cfg.cluster_id,
        node_id: cfg.node.node_id,
        interval_us: cfg.interval.as_micros() as u32,
        epoch: realtime_us(),
    })
    .context("opening the heartbeat socket")?;
    sender.set_signing_key(auth.signing());
    let announcer = Announcer::new(&cfg.iface).context("opening the announcement socket")?;
    let repeats = AnnounceWorker::spawn(
        Announcer::new(&cfg.iface).context("opening the announcement socket")?,
        ANNOUNCE_REPEATS.to_vec(),
    )
    .context("starting the announcer")?;
    let link = LinkWatch::new(&cfg.iface).context("watching the link state")?;
    if cfg.realtime {
        realtime().context("--realtime: setting SCHED_FIFO and locking memory")?;
    }
    let vip_addrs = cfg.vips.iter().map(|v| v.addr).collect();
    let (hub, commands) = Hub::new();
    hub.update_status(|s| {
        s.node_id = id(cfg.node.node_id).to_string();
        s.iface = cfg.iface.clone();
        s.cluster = cfg.cluster_id;
        s.vips = cfg.vips.iter().map(ToString::to_string).collect();
        s.state = NodeState::Standby.name().to_string();
        s.since_unix_ms = realtime_us() / 1_000;
        s.reason = "started; listening for a holder".into();
        s.interval_ms = cfg.interval.as_secs_f64() * 1e3;
        s.tolerance_ms = cfg.node.tolerance as f64 / 1e6;
        s.preempt = format!("{:?}", cfg.preempt()).to_lowercase();
    });
    let _control = ControlServer::start(crate::ops::control::socket_path(&cfg.pin_dir), Arc::clone(&hub))
        .context("opening the control socket")?;
    let metrics = Arc::new(Metrics::new(Arc::clone(&hub)));
    let _metrics_server = match cfg.metrics {
        Some(addr) => Some(MetricsServer::start(addr, Arc::clone(&metrics))?),
        None => None,
    };
    let facts = NodeFacts { iface: cfg.iface.clone(), vips: cfg.vips.iter().map(ToString::to_string).collect() };
    let hooks = Hooks::start(cfg.hooks.clone(), facts, Arc::clone(&metrics)).context("starting the hook thread")?;
    let check_env = vec![("HA_NODE", id(cfg.node.node_id).to_string()), ("HA_IFACE", cfg.iface.clone())];
    let checks =
        Checks::start(cfg.checks.clone(), cfg.node.priority, check_env).context("starting the health checks")?;
    let maintenance_file = crate::ops::maintenance::MaintenanceFile::new(&cfg.pin_dir);
    let guard = AddressGuard::start(&cfg.iface, cfg.vips.clone()).context("watching the shared addresses")?;
    let mut io = Io {
        cfg,
        addresses,
        announcer,
        repeats,
        sender,
        link,
        rx,
        vip_addrs,
        hub,
        transitions: 0,
        guard,
        lateness: Default::default(),
        key_alarm: Default::default(),
        metrics,
        hooks,
        checks,
        auth,
        linger: Linger::default(),
    };
    let result = event_loop(&mut io, &stop, &commands, &maintenance_file);
    if result.is_err() {
        // Never leave the address behind on an error exit.
        io.release();
    }
    drop(io); // detach XDP and unpin, or close the socket
    result
}

/// How often `status` is refreshed when nothing changes.
const STATUS_EVERY_NS: u64 = 50_000_000;

fn event_loop(
    io: &mut Io,
    stop: &AtomicBool,
    commands: &std::sync::mpsc::Receiver<Command>,
    maintenance_file: &crate::ops::maintenance::MaintenanceFile,
) -> anyhow::Result<()> {
    let interval = io.cfg.interval.as_nanos() as u64;
    let tick = io.cfg.tick.as_nanos() as u64;
    let mut node = Node::new(io.cfg.node, monotonic_ns());
    if maintenance_file.is_on() {
        log::warn!(
            "in maintenance (since before this start): this node will not take the address; `ha-agent maintenance off` ends it"
        );
        node.set_maintenance(true);
    }
    let mut last_status = 0u64;
    let mut raw = Vec::with_capacity(16);
    let mut peers: Vec<Peer> = Vec::with_capacity(16);
    let mut next_send = monotonic_ns();
    let mut read_errors = 0u64;
    let mut link_up = true;
    loop {
        let (now, table) = observe(monotonic_ns, || io.rx.read_peers(&mut raw));
        let mut out = Output::default();
        io.auth.reload_if_asked(&mut io.rx, &mut io.sender);
        while let Ok(Command::Maintenance(on)) = commands.try_recv() {
            log::info!("maintenance {}", if on { "on: handing the address over" } else { "off" });
            if let Err(e) = maintenance_file.set(on) {
                log::warn!("maintenance will not survive a restart: {e}");
            }
            out.send_now |= node.set_maintenance(on).send_now;
        }
        if stop.load(Ordering::Relaxed) && !node.is_leaving() {
            log::info!("stopping: handing the address over before leaving");
            out = node.leave(now);
        }
        let up = io.link.is_up();
        if up != link_up {
            log::warn!("link {} is {}", io.cfg.iface, if up { "up" } else { "down" });
            link_up = up;
        }
        out.send_now |= node.set_priority(io.checks.priority()).send_now;
        if let Err(e) = table {
            // Without the peer table no decision is safe: skip this step, keep heartbeating.
            read_errors += 1;
            if read_errors.is_power_of_two() {
                log::error!("reading peers ({read_errors} failures): {e}");
            }
        } else {
            peers.clear();
            peers.extend(raw.iter().filter_map(|(node_id, rec)| {
                Some(Peer {
                    node_id: *node_id,
                    priority: rec.priority,
                    state: NodeState::from_u8(rec.state)?,
                    flags: rec.flags,
                    last_seen: rec.last_seen_ns,
                    beats: Beats {
                        interval: u64::from(rec.interval_us) * 1_000,
                        epoch: rec.epoch,
                        sent: rec.counter,
                        received: rec.received,
                    },
                    claimed_at: rec.claimed_ns,
                })
            }));
            let stepped = node.step(Inputs { now, peers: &peers, link_up });
            out.send_now |= stepped.send_now;
            out = Output { send_now: out.send_now, ..stepped };
        }
        io.apply(&node, &out, now);
        if io.linger.due(monotonic_ns()) {
            io.remove_addresses();
        }
        if out.transition.is_some() || out.send_now || now.saturating_sub(last_status) >= STATUS_EVERY_NS {
            io.publish_status(&node, &raw, now, link_up);
            last_status = now;
        }
        if out.send_now || now >= next_send {
            io.heartbeat(&node);
            if now >= next_send {
                io.lateness.record(monotonic_ns().saturating_sub(next_send));
                next_send += interval;
                if next_send <= now {
                    next_send = now + interval; // we fell behind (paused); do not burst
                }
            }
        }
        if out.exit {
            if let Some(at) = io.linger.deadline() {
                // Handed over moments ago: answer stray clients for the rest of the grace.
                sleep_until_ns(at);
                io.remove_addresses();
            }
            log::info!("clean stop complete");
            return Ok(());
        }
        let wake = next_wake(now, next_send, tick, peers.iter().map(|p| node.silent_at(p)));
        sleep_until_ns(io.linger.deadline().map_or(wake, |at| wake.min(at)));
    }
}

/// When the loop must look again: the next heartbeat to send, the instant the next live peer
/// would count as silent (so a dead holder is noticed exactly at its silence limit, not up to a
/// tick later), and at most `tick` from now. Nothing else can change a decision in between, so
/// an idle node wakes about once per interval.
fn next_wake(now: u64, next_send: u64, tick: u64, silent_at: impl Iterator<Item = u64>) -> u64 {
    let expiry = silent_at.filter(|&at| at > now).min().unwrap_or(u64::MAX);
    next_send.min(now.saturating_add(tick)).min(expiry)
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
