//! Cost at rest, counted two ways in one run: every process of each node's daemon (utime +
//! stime, and wake-ups: voluntary context switches of its threads), and the whole machine
//! above an idle baseline measured first (/proc/stat: softirq, timers, XDP and io_uring work
//! done for the daemons included). Our agent at 1, 10 and 100 ms in each `--wake` mode it
//! has, and keepalived at advert 0.01 s, so every figure is a ratio. The machine's stall
//! distribution is measured in the same run.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_lab::{AgentSet, Lab};

use super::{
    BenchArgs, Daemons,
    failover::PRIORITIES,
    first_line,
    keepalived::Keepalived,
    procfs,
    results::{Implementation, RestBaseline, RestRun, Results, Stall},
};
use crate::{
    cmd::Cmd,
    scenario::{self, ms},
};

/// (interval, tolerance) in ms.
const SETTINGS: [(u64, u64); 3] = [(1, 4), (10, 35), (100, 350)];
pub const KEEPALIVED_ADVERT: Duration = Duration::from_millis(10);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Start-up work (XDP load, first announcements) passes before measuring.
const WARMUP: Duration = Duration::from_secs(2);
/// The stall probe's sleep.
const STALL_PERIOD: Duration = Duration::from_millis(1);
/// Groups of the groups run: the most one agent runs.
const GROUPS: u8 = 16;

pub fn run(res: &mut Results, agent: &std::path::Path, args: &BenchArgs, keepalived: bool) -> Result<()> {
    let window = Duration::from_secs(args.window_secs);
    println!("idle baseline of the machine over {} s", window.as_secs());
    let a = procfs::machine_jiffies()?;
    thread::sleep(window);
    let idle = procfs::machine_pct(a, procfs::machine_jiffies()?);
    let stall = stall_distribution(window);
    println!(
        "machine idle: {idle:.2}% of a core busy; stalls of a 1 ms sleep: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        stall.p50_us, stall.p99_us, stall.max_us
    );
    res.rest_baseline = Some(RestBaseline { machine_busy_pct: idle, window_s: window.as_secs_f64(), stall });
    let modes = wake_modes(agent, args);
    for (i_ms, t_ms) in SETTINGS {
        for mode in &modes {
            let label =
                format!("{i_ms}/{t_ms} ms{}", mode.as_deref().map_or(String::new(), |m| format!(" --wake {m}")));
            println!("\n-- 2 idle nodes, {label}, {} s window --", window.as_secs());
            let r = (|| {
                let lab = Lab::new(2).context("making the lab")?;
                let (interval, tolerance) = (Duration::from_millis(i_ms), Duration::from_millis(t_ms));
                let mut s = super::ours(&PRIORITIES, interval, tolerance, args.realtime);
                if let Some(m) = mode {
                    s.extra_args.extend(["--wake".into(), m.clone()]);
                }
                let agents = AgentSet::start(&lab, agent, s)?;
                scenario::wait_for(&agents, "node 1 alone holds the address", CONVERGE_TIMEOUT, |h| h == [1])?;
                measure(&agents, window, idle)
            })();
            push(res, r, Implementation::Ha, mode.clone().unwrap_or_default(), label, i_ms as f64, t_ms as f64);
        }
    }
    groups_at_rest(res, agent, args, window, idle);
    if keepalived {
        let label = format!("advert {} s", KEEPALIVED_ADVERT.as_secs_f64());
        println!("\n-- keepalived, 2 idle nodes, {label}, {} s window --", window.as_secs());
        let r = (|| {
            let lab = Lab::new(2).context("making the lab")?;
            let mut ka = Keepalived::start(&lab, KEEPALIVED_ADVERT, &PRIORITIES)?;
            let m = scenario::wait_for(&ka, "node 1 alone holds the address", CONVERGE_TIMEOUT, |h| h == [1])
                .and_then(|_| measure(&ka, window, idle));
            ka.stop_all(Duration::from_secs(2));
            m
        })();
        let down = ms(super::keepalived::master_down(KEEPALIVED_ADVERT, PRIORITIES[1]));
        push(res, r, Implementation::Keepalived, String::new(), label, ms(KEEPALIVED_ADVERT), down);
    }
    Ok(())
}

/// Groups in one agent (issue 14): 16 groups at 10/35 ms, node 1 preferred for all of them, in
/// the mode several groups run (poll), beside the one-group poll run above: one heartbeat
/// carries them all, so 16 should cost about what one does.
fn groups_at_rest(res: &mut Results, agent: &std::path::Path, args: &BenchArgs, window: Duration, idle: f64) {
    let (i_ms, t_ms) = (10, 35);
    let label = format!("{i_ms}/{t_ms} ms --wake poll, {GROUPS} groups");
    println!("\n-- 2 idle nodes, {label}, {} s window --", window.as_secs());
    let r = (|| {
        let lab = Lab::new(2).context("making the lab")?;
        let (interval, tolerance) = (Duration::from_millis(i_ms), Duration::from_millis(t_ms));
        let mut s = super::ours(&PRIORITIES, interval, tolerance, args.realtime);
        s.vips.clear();
        s.extra_args.extend(["--wake".into(), "poll".into()]);
        for (i, priority) in PRIORITIES.iter().enumerate() {
            // Group 1 has the lab's shared address (so "node 1 holds" reads as usual), the
            // others the next addresses.
            s.node(i + 1).args = (1..=GROUPS)
                .flat_map(|g| {
                    let addr = std::net::Ipv4Addr::from(u32::from(ha_lab::VIP) + u32::from(g) - 1);
                    ["--vip-group".to_string(), format!("{g}:{priority}:{addr}/32")]
                })
                .collect();
        }
        let agents = AgentSet::start(&lab, agent, s)?;
        scenario::wait_for(&agents, "node 1 alone holds group 1's address", CONVERGE_TIMEOUT, |h| h == [1])?;
        measure(&agents, window, idle)
    })();
    push(res, r, Implementation::Ha, "poll".into(), label, i_ms as f64, t_ms as f64);
}

fn push(
    res: &mut Results,
    r: Result<RestRun>,
    implementation: Implementation,
    mode: String,
    setting: String,
    interval_ms: f64,
    tolerance_ms: f64,
) {
    match r {
        Ok(run) => {
            let run = RestRun { implementation, mode, setting, interval_ms, tolerance_ms, ..run };
            println!(
                "{} {}: holder {:.2}% CPU, {:.0} wakes/s; standby {:.2}% CPU, {:.0} wakes/s; machine above idle {:.2}% (both nodes)",
                implementation.name(),
                run.setting,
                run.cpu_pct[0],
                run.wakes_per_s[0],
                run.cpu_pct[1],
                run.wakes_per_s[1],
                run.machine_pct_above_idle
            );
            res.rest_runs.push(run);
        }
        Err(e) => {
            eprintln!("rest {} {setting}: {e:#}", implementation.name());
            res.errors.push(format!("rest {} {setting}: {}", implementation.name(), first_line(&format!("{e:#}"))));
        }
    }
}

/// `--wake-modes`, else both when `ha-agent run --help` offers `--wake`, else the one mode the
/// agent has.
fn wake_modes(agent: &std::path::Path, args: &BenchArgs) -> Vec<Option<String>> {
    if !args.wake_modes.is_empty() {
        return args.wake_modes.iter().cloned().map(Some).collect();
    }
    let help = Cmd::new(agent).args(["run", "--help"]).quiet().read().unwrap_or_default();
    if help.contains("--wake") { vec![Some("event".into()), Some("poll".into())] } else { vec![None] }
}

/// Every process of nodes 1 and 2 (holder, standby) and the machine, over `window`.
fn measure(d: &impl Daemons, window: Duration, idle_pct: f64) -> Result<RestRun> {
    thread::sleep(WARMUP);
    let trees: Vec<Vec<u32>> = (1..=2)
        .map(|i| d.pid(i).map(procfs::process_tree).with_context(|| format!("node {i} runs no daemon")))
        .collect::<Result<_>>()?;
    let cpu = |t: &[u32]| t.iter().map(|&p| procfs::cpu_seconds(p).unwrap_or(0.0)).sum::<f64>();
    let wakes = |t: &[u32]| t.iter().map(|&p| procfs::voluntary_switches(p)).sum::<u64>();
    let cpu0: Vec<f64> = trees.iter().map(|t| cpu(t)).collect();
    let wakes0: Vec<u64> = trees.iter().map(|t| wakes(t)).collect();
    let m0 = procfs::machine_jiffies()?;
    let start = Instant::now();
    thread::sleep(window);
    let m1 = procfs::machine_jiffies()?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_pct = trees.iter().zip(&cpu0).map(|(t, c0)| (cpu(t) - c0) / secs * 100.0).collect();
    let wakes_per_s = trees.iter().zip(&wakes0).map(|(t, w0)| wakes(t).saturating_sub(*w0) as f64 / secs).collect();
    let rss_mib = trees.iter().map(|t| t.iter().map(|&p| procfs::rss_mib(p).unwrap_or(0.0)).sum()).collect();
    Ok(RestRun {
        implementation: Implementation::Ha,
        mode: String::new(),
        setting: String::new(),
        interval_ms: 0.0,
        tolerance_ms: 0.0,
        cpu_pct,
        wakes_per_s,
        rss_mib,
        machine_pct_above_idle: procfs::machine_pct(m0, m1) - idle_pct,
        window_s: secs,
    })
}

/// A thread sleeping 1 ms in a loop: how much longer than asked each sleep took.
pub fn stall_distribution(window: Duration) -> Stall {
    let start = Instant::now();
    let mut over_us = Vec::new();
    while start.elapsed() < window {
        let t = Instant::now();
        thread::sleep(STALL_PERIOD);
        over_us.push(t.elapsed().saturating_sub(STALL_PERIOD).as_secs_f64() * 1e6);
    }
    over_us.sort_by(f64::total_cmp);
    let q = |p: f64| over_us.get(((over_us.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    Stall {
        period_us: STALL_PERIOD.as_secs_f64() * 1e6,
        samples: over_us.len() as u64,
        p50_us: q(0.5),
        p99_us: q(0.99),
        max_us: q(1.0),
    }
}
