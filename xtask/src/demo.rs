//! `cargo xtask demo`: three nodes and a client in network namespaces, real agents, a client
//! probing the shared address every 0.2 ms, and a readable timeline of a hard failure,
//! the old holder's return, and a clean stop. Everything is removed at the end or on Ctrl-C.
use std::{
    cell::RefCell,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use ha_lab::{AgentSet, AgentSettings, Lab, PREFIX, VIP};

use crate::{
    cmd, ebpf,
    scenario::{self, Measured, ms},
};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Skip the prerequisite checks.
    #[arg(long)]
    pub skip_setup: bool,
    /// Heartbeat interval of the agents.
    #[arg(long, default_value = "5ms")]
    pub interval: String,
    /// Silence after which a node counts as dead.
    #[arg(long, default_value = "20ms")]
    pub tolerance: String,
    /// always, never or delay=DUR: what happens when the old holder returns.
    #[arg(long, default_value = "always")]
    pub preempt: String,
}

/// Prints timestamped lines, and the agents' own transition lines as they appear.
struct Timeline<'a> {
    start: Instant,
    agents: &'a AgentSet<'a>,
    shown: RefCell<Vec<usize>>,
}

impl<'a> Timeline<'a> {
    fn say(&self, what: &str) {
        println!("[{:>7.3} s] {what}", self.start.elapsed().as_secs_f64());
    }

    /// The agents' log lines not shown yet (transitions and stops), indented under the timeline.
    fn agent_lines(&self) {
        let mut shown = self.shown.borrow_mut();
        for i in 1..=shown.len() {
            let out = self.agents.output(i);
            let lines: Vec<&str> = out.lines().collect();
            for line in lines.iter().skip(shown[i - 1]) {
                // env_logger prefix "[time LEVEL ] ": keep the message only.
                let msg = line.split_once("] ").map_or(*line, |(_, m)| m);
                if msg.contains(" -> ") || msg.contains("stop") || msg.contains("WARN") || line.contains("WARN") {
                    println!("             node{i} | {msg}");
                }
            }
            shown[i - 1] = lines.len();
        }
    }
}

fn outcome(m: &Measured) -> String {
    if m.lost == 0 {
        format!("the client lost no probe ({} sent, one every 0.2 ms)", m.sent)
    } else {
        format!("the client saw an outage of {:.1} ms ({} of {} probes lost)", ms(m.outage), m.lost, m.sent)
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!("the demo makes network namespaces and loads XDP: run it as root");
    }
    ebpf::build(args.skip_setup)?;
    let agent = ebpf::build_agent_release()?;
    ha_lab::install_signal_cleanup()?;
    let interval = duration(&args.interval)?;
    let tolerance = duration(&args.tolerance)?;
    println!();
    let lab = Lab::new(3).context("making the lab")?;
    let mut settings = AgentSettings::new(&[300, 200, 100]);
    settings.interval = interval;
    settings.tolerance = tolerance;
    settings.preempt = args.preempt.clone();
    let start = Instant::now();
    println!(
        "[  0.000 s] lab {}: node1..3 = 192.0.2.1..3, client = 192.0.2.100, on one bridge; shared address {VIP}/{PREFIX}",
        lab.id()
    );
    let mut agents = AgentSet::start(&lab, &agent, settings).context("starting agents")?;
    let t = Timeline { start, agents: &agents, shown: RefCell::new(vec![0; 3]) };
    t.say(&format!(
        "agents started: priorities 300, 200, 100; interval {}, tolerance {}, preempt {}",
        args.interval, args.tolerance, args.preempt
    ));
    agents.wait_sole_holder(1, Duration::from_secs(5))?;
    t.agent_lines();
    t.say("node1 (the most worthy) is ACTIVE; the client probes 192.0.2.200 every 0.2 ms from now on");
    thread::sleep(Duration::from_millis(300));

    t.say("pulling node1's cable (its switch port goes down)");
    let settle = (tolerance * 3).max(Duration::from_millis(100));
    let m = scenario::measure(&lab, t.agents, settle, || lab.cut_link(1), |h| h == [2])?;
    t.agent_lines();
    t.say(&format!("node2 is ACTIVE {:.1} ms after the cut; {}", ms(m.settled_after), outcome(&m)));
    let repointed = scenario::client_points_at(&lab, lab.node(2).mac());
    t.say(&format!("client's ARP entry for the shared address -> node2's MAC: {}", yes(repointed)));
    thread::sleep(Duration::from_millis(500));

    t.say("plugging node1 back in");
    let back = if args.preempt == "never" { 2 } else { 1 };
    let m = scenario::measure(
        &lab,
        t.agents,
        settle.max(Duration::from_millis(300)),
        || lab.restore_link(1),
        |h| h == [back],
    )?;
    t.agent_lines();
    if back == 1 {
        t.say(&format!("node1 took the address back make-before-break; {}", outcome(&m)));
    } else {
        t.say(&format!("preempt never: the address stays on node2 (bi-stable); {}", outcome(&m)));
    }
    thread::sleep(Duration::from_millis(500));

    t.say(&format!("clean stop of the holder, node{back} (SIGTERM)"));
    let successor = if back == 1 { 2 } else { 1 };
    let m = scenario::measure(&lab, t.agents, settle, || t.agents.signal(back, libc::SIGTERM), |h| h == [successor])?;
    t.agent_lines();
    t.say(&format!("node{successor} is ACTIVE, node{back} exited after handing over; {}", outcome(&m)));
    thread::sleep(Duration::from_millis(200));
    drop(t);
    for i in 1..=3 {
        if agents.is_running(i) {
            agents.stop(i, Duration::from_secs(5))?;
        }
    }
    println!("[{:>7.3} s] all agents stopped; removing the lab", start.elapsed().as_secs_f64());
    drop(agents);
    drop(lab);
    println!("done: no namespace, link or pin is left behind.");
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn duration(s: &str) -> Result<Duration> {
    humantime::parse_duration(s).with_context(|| format!("{s:?} is not a duration like 5ms"))
}
