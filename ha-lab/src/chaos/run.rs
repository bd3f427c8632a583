//! Runs the schedule against a three-node lab and checks it from the client's side only: who
//! answers ARP for the address, and how long the client's probes go unanswered.
use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{
    fault::{Allowance, FaultKind, LinkSide, Plan, Role, Schedule},
    keys::KeyRing,
    outcome::{Check, FaultRecord, Outcome, Violation, ms},
};
use crate::{AgentSet, AgentSettings, ArpWatcher, Lab, Prober, VIP, agent_files_under, left_behind, mac_text};

/// Most worthy first: node 1 holds the address whenever it can (preemption on).
pub const PRIORITIES: [u32; 3] = [300, 200, 100];
const PROBE_PERIOD: Duration = Duration::from_millis(1);
/// Probing that runs before the fault, so an outage at its very start is seen.
const PROBE_LEAD: Duration = Duration::from_millis(20);
const ARP_PERIOD: Duration = Duration::from_millis(5);
/// Who answers is judged over this window (20 requests).
const ARP_WINDOW: Duration = Duration::from_millis(100);
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// After a failed check, how long the cluster gets to reach one holder again before the run
/// gives up (every later fault would start from a broken state).
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct Config {
    /// The `ha-agent` binary (built with the XDP object).
    pub agent: PathBuf,
    pub seed: u64,
    /// No fault starts after this; the one running finishes.
    pub duration: Duration,
    /// Stop after this many faults even if time is left.
    pub max_faults: Option<usize>,
    pub interval: Duration,
    pub tolerance: Duration,
    /// Draw only these kinds (all when empty).
    pub kinds: Vec<FaultKind>,
    /// Print a line per fault.
    pub progress: bool,
}

impl Config {
    /// 10 ms heartbeats, 40 ms tolerance, one minute.
    pub fn new(agent: impl Into<PathBuf>, seed: u64) -> Self {
        Config {
            agent: agent.into(),
            seed,
            duration: Duration::from_secs(60),
            max_faults: None,
            interval: Duration::from_millis(10),
            tolerance: Duration::from_millis(40),
            kinds: Vec::new(),
            progress: false,
        }
    }

    /// How long a fault is given to settle before it is judged: ten tolerances, at least 300 ms
    /// (a takeover, its announcements, and the client's ARP moving along).
    pub fn settle(&self) -> Duration {
        (self.tolerance * 10).max(Duration::from_millis(300))
    }

    /// A bound on the whole run: its duration, plus one fault's worst case, plus setup and
    /// teardown. A watchdog may end a run that overruns it.
    pub fn time_limit(&self) -> Duration {
        self.duration + Duration::from_secs(90)
    }
}

/// Builds the lab, runs faults until the time or count is up, tears everything down and checks
/// nothing is left. An error only when the lab or the agents could not be set up at all.
pub fn run(cfg: &Config) -> Result<Outcome> {
    let start = Instant::now();
    let mut out = Outcome {
        seed: cfg.seed,
        interval: cfg.interval,
        tolerance: cfg.tolerance,
        settle: cfg.settle(),
        priorities: PRIORITIES.to_vec(),
        elapsed: Duration::ZERO,
        faults: Vec::new(),
        violations: Vec::new(),
        aborted: None,
    };
    let lab = Lab::new(PRIORITIES.len()).context("making the lab")?;
    let lab_id = lab.id().to_string();
    let pin_root = lab.pin_dir(1).parent().map(Path::to_path_buf).context("pin dir without a parent")?;
    let pids = {
        let mut r = Runner::start(cfg, &lab, start)?;
        if let Err(e) = r.faults(&mut out) {
            let what = format!("{e:#}");
            // The fault that failed is the one after the last recorded.
            r.violation(out.faults.len() + 1, None, Check::Error, what.clone());
            out.aborted = Some(what.lines().next().unwrap_or_default().to_string());
        }
        r.stop_all();
        let files = agent_files_under(&pin_root);
        if !files.is_empty() {
            r.violation(
                0,
                None,
                Check::Leftover,
                format!("agent files left after every agent stopped cleanly (issue 12 item 3): {}", files.join(", ")),
            );
        }
        out.violations.append(&mut r.violations);
        std::mem::take(&mut r.pids)
    };
    drop(lab);
    let left = left_behind(&lab_id, &pids)?;
    if !left.is_empty() {
        out.violations.push(Violation {
            fault: 0,
            kind: None,
            at: start.elapsed(),
            check: Check::Leftover,
            what: format!("left behind after the lab was removed: {}", left.join(", ")),
        });
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

struct Runner<'l> {
    cfg: &'l Config,
    lab: &'l Lab,
    agents: AgentSet<'l>,
    watcher: ArpWatcher,
    keys: KeyRing,
    start: Instant,
    settle: Duration,
    /// The node that alone answered ARP at the last check.
    holder: usize,
    violations: Vec<Violation>,
    /// Every agent process started, to check none outlives the run.
    pids: Vec<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// While the fault is on (it lasted long enough to settle).
    During,
    /// After it was undone and settled.
    After,
}

impl<'l> Runner<'l> {
    fn start(cfg: &'l Config, lab: &'l Lab, start: Instant) -> Result<Self> {
        let mut s = AgentSettings::new(&PRIORITIES);
        s.interval = cfg.interval;
        s.tolerance = cfg.tolerance;
        s.extra_args.extend(["--xdp-mode".into(), "driver".into()]);
        let mut agents = AgentSet::start(lab, &cfg.agent, s)?;
        let mut pids = Vec::new();
        for i in 1..=PRIORITIES.len() {
            agents.wait_ready(i, READY_TIMEOUT)?;
            pids.push(agents.pid(i)?);
        }
        let keys = KeyRing::new(agents.key_file());
        let watcher =
            ArpWatcher::start(lab.client(), VIP, ARP_PERIOD, cfg.time_limit()).context("watching ARP answers")?;
        let mut r = Runner {
            cfg,
            lab,
            agents,
            watcher,
            keys,
            start,
            settle: cfg.settle(),
            holder: 1,
            violations: Vec::new(),
            pids,
        };
        if let Err(waited) = r.wait_steady() {
            bail!("node 1 never became the one node answering ARP ({waited})\n{}", r.agents.diagnostics());
        }
        Ok(r)
    }

    fn faults(&mut self, out: &mut Outcome) -> Result<()> {
        let mut schedule = Schedule::new(self.cfg.seed, &self.cfg.kinds, self.settle, self.cfg.tolerance);
        while self.start.elapsed() < self.cfg.duration && self.cfg.max_faults.is_none_or(|m| out.faults.len() < m) {
            let plan = schedule.next_plan();
            let before = self.violations.len();
            let record = self.fault(out.faults.len() + 1, &plan)?;
            if self.cfg.progress {
                let verdict = if self.violations.len() > before { "VIOLATION" } else { "ok" };
                println!(
                    "#{:<4} {:>7.1} s  {:<20} {:<16} {:<28} longest outage {:>6.1} ms, lost {:>4}  {verdict}",
                    record.index,
                    record.at.as_secs_f64(),
                    record.kind.name(),
                    record.target(),
                    record.detail,
                    ms(record.longest_outage()),
                    record.lost
                );
            }
            out.faults.push(record);
            if !self.watcher.is_running() {
                bail!("the ARP watcher stopped");
            }
        }
        Ok(())
    }

    fn fault(&mut self, index: usize, plan: &Plan) -> Result<FaultRecord> {
        let node = self.resolve(plan.role);
        let hit_holder = node == Some(self.holder);
        let allowance = if hit_holder { plan.kind.allowance().0 } else { plan.kind.allowance().1 };
        let silence_limit = if hit_holder { self.successors_limit() } else { self.cfg.tolerance };
        let prober = Prober::start_bounded(
            self.lab.client(),
            IpAddr::V4(VIP),
            PROBE_PERIOD,
            plan.hold + READY_TIMEOUT + Duration::from_secs(30),
        )?;
        thread::sleep(PROBE_LEAD);
        let first_violation = self.violations.len();
        let log_marks: Vec<usize> = (1..=PRIORITIES.len()).map(|i| self.agents.output(i).len()).collect();
        let at = self.start.elapsed();
        let mut detail = plan.describe();
        if let Some(step) = self.inject(index, plan, node)? {
            detail = step;
        }
        if plan.settles_during(self.settle) {
            thread::sleep(plan.hold.saturating_sub(ARP_WINDOW));
            self.check_answerers(index, plan, node, Phase::During)?;
        } else {
            thread::sleep(plan.hold);
        }
        self.undo(index, plan, node)?;
        thread::sleep(self.settle);
        self.check_answerers(index, plan, node, Phase::After)?;
        let report = prober.stop();
        let mut outages: Vec<Duration> = report.outages.iter().map(|o| o.duration).collect();
        outages.sort_unstable_by(|a, b| b.cmp(a));
        let record = FaultRecord {
            index,
            at,
            kind: plan.kind,
            node,
            hit_holder,
            detail,
            allowance,
            silence_limit,
            sent: report.sent,
            lost: report.lost,
            outages,
        };
        self.judge_outages(&record);
        if self.violations.len() > first_violation {
            let restarted = node.filter(|_| matches!(plan.kind, FaultKind::Kill | FaultKind::CleanStop));
            let transitions = self.transitions_since(&log_marks, restarted);
            for v in &mut self.violations[first_violation..] {
                v.what.push_str(&format!(" [transitions: {transitions}]"));
            }
        }
        Ok(record)
    }

    /// The state changes the agents logged since `marks` (each node's output length then), for
    /// a violation's context. The `restarted` agent's lines count from its new start.
    fn transitions_since(&self, marks: &[usize], restarted: Option<usize>) -> String {
        let mut lines = Vec::new();
        for (i, &mark) in (1..=PRIORITIES.len()).zip(marks) {
            let out = self.agents.output(i);
            let from = if restarted == Some(i) { 0 } else { mark };
            let new = out.get(from..).unwrap_or(&out);
            for line in new.lines().filter(|l| l.contains(" -> ")) {
                let msg = line.split_once("] ").map_or(line, |(_, m)| m);
                lines.push(format!("node {i} {msg}"));
            }
        }
        if lines.is_empty() { "none".into() } else { lines.join("; ") }
    }

    /// The longest silence limit the other running agents apply to the holder now, from their
    /// `status --json`: the tolerance on a clean link; wider while recent loss lasts, as the
    /// agent is built to do (so a loss burst cannot cause a false takeover). An agent that does
    /// not answer counts as the tolerance.
    fn successors_limit(&mut self) -> Duration {
        let holder = self.lab.node(self.holder).addr().to_string();
        let mut limit = self.cfg.tolerance;
        for n in (1..=PRIORITIES.len()).filter(|&n| n != self.holder) {
            if !self.agents.is_running(n) {
                continue;
            }
            let Ok(text) = self.agents.control(n, &["status", "--json"]) else { continue };
            let Ok(status) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            let peers = status.get("peers").and_then(|p| p.as_array()).map(Vec::as_slice).unwrap_or_default();
            for peer in peers.iter().filter(|p| p.get("node_id").and_then(|a| a.as_str()) == Some(holder.as_str())) {
                if let Some(ms) = peer.get("limit_ms").and_then(|l| l.as_f64()) {
                    limit = limit.max(Duration::from_secs_f64(ms / 1e3));
                }
            }
        }
        limit
    }

    fn resolve(&self, role: Role) -> Option<usize> {
        match role {
            Role::Holder => Some(self.holder),
            Role::Other(k) => {
                let others: Vec<usize> = (1..=PRIORITIES.len()).filter(|&n| n != self.holder).collect();
                others.get(k % others.len().max(1)).copied()
            }
            Role::Everyone => None,
        }
    }

    /// Applies the fault; for a key reload, returns what the step did.
    fn inject(&mut self, index: usize, plan: &Plan, node: Option<usize>) -> Result<Option<String>> {
        let Some(n) = node else {
            let step = self.keys.advance()?;
            for i in 1..=PRIORITIES.len() {
                self.agents.signal(i, libc::SIGHUP)?;
            }
            return Ok(Some(step));
        };
        match plan.kind {
            FaultKind::LinkFlap => match plan.side {
                LinkSide::Iface => self.lab.iface_down(n)?,
                LinkSide::Port => self.lab.cut_link(n)?,
            },
            FaultKind::LossBurst => self.lab.netem(n, &format!("loss {}%", plan.loss_percent))?,
            FaultKind::Partition => self.lab.partition(&[&[], &[n]])?,
            FaultKind::Pause => self.agents.signal(n, libc::SIGSTOP)?,
            FaultKind::Kill => self.agents.kill(n)?,
            FaultKind::CleanStop => {
                let status = self.agents.stop(n, STOP_TIMEOUT)?;
                if !status.success() {
                    self.violation(
                        index,
                        Some(plan.kind),
                        Check::Error,
                        format!("node {n}'s agent exited {status} on SIGTERM"),
                    );
                }
            }
            FaultKind::Maintenance => self.agents.set_maintenance(n, true)?,
            FaultKind::KeyReload => {}
        }
        Ok(None)
    }

    fn undo(&mut self, index: usize, plan: &Plan, node: Option<usize>) -> Result<()> {
        let Some(n) = node else { return Ok(()) };
        match plan.kind {
            FaultKind::LinkFlap => match plan.side {
                LinkSide::Iface => self.lab.iface_up(n)?,
                LinkSide::Port => self.lab.restore_link(n)?,
            },
            FaultKind::LossBurst => self.lab.clear_netem(n)?,
            FaultKind::Partition => self.lab.heal()?,
            FaultKind::Pause => self.agents.signal(n, libc::SIGCONT)?,
            FaultKind::Kill | FaultKind::CleanStop => {
                self.agents.start_node(n)?;
                self.pids.push(self.agents.pid(n)?);
                if let Err(e) = self.agents.wait_ready(n, READY_TIMEOUT) {
                    // Logged as what it is, then the run stops: a node short is another lab.
                    self.violation(index, Some(plan.kind), Check::Error, format!("restart of node {n} failed: {e:#}"));
                    return Err(e);
                }
            }
            FaultKind::Maintenance => self.agents.set_maintenance(n, false)?,
            FaultKind::KeyReload => {}
        }
        Ok(())
    }

    /// Exactly one node must answer ARP for the address; after the fault is undone, node 1.
    fn check_answerers(&mut self, index: usize, plan: &Plan, node: Option<usize>, phase: Phase) -> Result<()> {
        let macs = self.watcher.answered_during(ARP_WINDOW);
        let nodes = self.nodes_of(&macs);
        let wanted = |nodes: &[Result<usize, String>]| match phase {
            Phase::During => nodes.len() == 1,
            Phase::After => matches!(nodes, [Ok(1)]),
        };
        if wanted(&nodes) {
            if let [Ok(n)] = nodes.as_slice() {
                self.holder = *n;
            }
            return Ok(());
        }
        let (check, mut what) = if nodes.len() == 1 {
            (Check::Holder, format!("{} answers ARP, not node 1 (the most worthy) once all are back", names(&nodes)))
        } else {
            (Check::ArpAnswerers, self.label(plan, node, &nodes))
        };
        what.push_str(&format!(" (address on {})", self.address_holders()));
        if phase == Phase::During {
            what.push_str(" while the fault was on");
            self.violation(index, Some(plan.kind), check, what);
            return Ok(());
        }
        let waited = self.wait_steady();
        match &waited {
            Ok(took) => what.push_str(&format!("; node 1 alone answers again {} ms later", took.as_millis())),
            Err(e) => what.push_str(&format!("; {e}")),
        }
        self.violation(index, Some(plan.kind), check, what);
        waited.map(drop).map_err(|e| anyhow::anyhow!("the cluster did not recover after fault #{index}: {e}"))
    }

    /// The message of a wrong answerer count, naming the known issue it matches.
    fn label(&self, plan: &Plan, node: Option<usize>, nodes: &[Result<usize, String>]) -> String {
        let answering = names(nodes);
        if nodes.is_empty() {
            return "no node answers ARP for the address".into();
        }
        let target_answers = node.is_some_and(|n| nodes.contains(&Ok(n)));
        match plan.kind {
            FaultKind::Kill if target_answers => {
                format!("crashed agent's node still answers ARP (issue 12 item 2): {answering} answer")
            }
            FaultKind::Pause if target_answers => {
                format!(
                    "stopped (SIGSTOP) agent's node still answers ARP (no fence, cf. issue 12 item 2): {answering} answer"
                )
            }
            _ => format!("{} nodes answer ARP: {answering} answer", nodes.len()),
        }
    }

    /// Waits until node 1 alone answers ARP; how long that took, or why it did not.
    fn wait_steady(&mut self) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let nodes = self.nodes_of(&self.watcher.answered_during(ARP_WINDOW));
            if matches!(nodes.as_slice(), [Ok(1)]) {
                self.holder = 1;
                return Ok(start.elapsed());
            }
            if start.elapsed() > RECOVERY_TIMEOUT {
                return Err(format!(
                    "still {} after {} s (address on {})",
                    if nodes.is_empty() { "no answer".into() } else { format!("{} answering", names(&nodes)) },
                    RECOVERY_TIMEOUT.as_secs(),
                    self.address_holders()
                ));
            }
        }
    }

    fn judge_outages(&mut self, r: &FaultRecord) {
        let limit = r.allowance.limit(self.cfg.interval, r.silence_limit);
        let what = match r.allowance {
            Allowance::Lossless if r.lost > 0 => format!(
                "lost probes where none may be lost: {} lost, longest outage {:.1} ms ({}, {})",
                r.lost,
                ms(r.longest_outage()),
                r.target(),
                r.detail
            ),
            Allowance::Takeover if r.longest_outage() > limit => format!(
                "outage beyond the takeover allowance: {:.1} ms > {} ms, {} of {} outages over ({}, {})",
                ms(r.longest_outage()),
                limit.as_millis(),
                r.outages.iter().filter(|&&o| o > limit).count(),
                r.outages.len(),
                r.target(),
                r.detail
            ),
            _ => return,
        };
        self.violations.push(Violation { fault: r.index, kind: Some(r.kind), at: r.at, check: Check::Outage, what });
    }

    fn violation(&mut self, fault: usize, kind: Option<FaultKind>, check: Check, what: String) {
        self.violations.push(Violation { fault, kind, at: self.start.elapsed(), check, what });
    }

    /// Node index per answering MAC (an unknown MAC as its text).
    fn nodes_of(&self, macs: &BTreeSet<[u8; 6]>) -> Vec<Result<usize, String>> {
        macs.iter()
            .map(|mac| (1..=PRIORITIES.len()).find(|&i| self.lab.node(i).mac() == *mac).ok_or_else(|| mac_text(mac)))
            .collect()
    }

    /// Which nodes have the address assigned (a diagnostic, not an assertion).
    fn address_holders(&self) -> String {
        match self.agents.holders() {
            Ok(h) if h.is_empty() => "no node".into(),
            Ok(h) => h.iter().map(|n| format!("node {n}")).collect::<Vec<_>>().join(", "),
            Err(e) => format!("unknown: {e:#}"),
        }
    }

    /// Clean stop of every agent, standbys first.
    fn stop_all(&mut self) {
        let mut order: Vec<usize> = (1..=PRIORITIES.len()).filter(|&n| n != self.holder).collect();
        order.push(self.holder);
        for n in order {
            // A paused agent would not act on SIGTERM.
            let _ = self.agents.signal(n, libc::SIGCONT);
            if !self.agents.is_running(n) {
                continue;
            }
            match self.agents.stop(n, STOP_TIMEOUT) {
                Ok(st) if st.success() => {}
                Ok(st) => {
                    self.violation(0, None, Check::Error, format!("node {n}'s agent exited {st} on the final SIGTERM"))
                }
                Err(e) => self.violation(0, None, Check::Error, format!("final stop of node {n}: {e:#}")),
            }
        }
    }
}

fn names(nodes: &[Result<usize, String>]) -> String {
    let parts: Vec<String> = nodes
        .iter()
        .map(|n| match n {
            Ok(i) => format!("node {i}"),
            Err(mac) => format!("unknown MAC {mac}"),
        })
        .collect();
    parts.join(" and ")
}
