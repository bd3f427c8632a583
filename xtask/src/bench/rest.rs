//! Cost at rest, counted two ways in one run: every process of each node's daemon (CPU time
//! to the ns, and wake-ups: voluntary context switches of its threads), and the whole machine
//! above idle (softirq, timers, XDP and io_uring work done for the daemons included; see
//! `accounting`). Our agent at 1, 10 and 100 ms in each `--wake` mode it has, and keepalived
//! at advert 0.01 s, so every figure is a ratio; and the lab's floor (`floor`), the barest
//! heartbeat exchanges with no daemon. Each run sits between two idle windows of the
//! same length (the lab not yet started, the lab gone), whose spread is the noise of the
//! machine's figure. The machine's stall distribution is measured in the same run.
use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_lab::{AgentSet, Lab};

use super::{
    BenchArgs, Daemons, accounting,
    failover::PRIORITIES,
    first_line,
    keepalived::Keepalived,
    procfs,
    results::{IdleWindow, Implementation, RestBaseline, RestRun, Results, Stall},
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
pub(super) const WARMUP: Duration = Duration::from_secs(2);
/// After a lab is torn down, before the idle window that follows it: the kernel frees a
/// network namespace in the background.
const SETTLE: Duration = Duration::from_secs(2);
/// The stall probe's sleep.
const STALL_PERIOD: Duration = Duration::from_millis(1);
/// Groups of the groups run: the most one agent runs.
const GROUPS: u8 = 16;

pub fn run(res: &mut Results, agent: &std::path::Path, args: &BenchArgs, keepalived: bool) -> Result<()> {
    let window = Duration::from_secs(args.window_secs);
    let stall = stall_distribution(window);
    println!(
        "stalls of a 1 ms sleep over {} s: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        window.as_secs(),
        stall.p50_us,
        stall.p99_us,
        stall.max_us
    );
    let first_run = res.rest_runs.len();
    let mut idle = IdleSeries::start(window)?;
    let modes = wake_modes(agent, args);
    let settings: Vec<(Duration, Duration)> = match (&args.interval, &args.tolerance) {
        (Some(i), Some(t)) => vec![(super::failover::duration(i)?, super::failover::duration(t)?)],
        _ => SETTINGS.iter().map(|&(i, t)| (Duration::from_millis(i), Duration::from_millis(t))).collect(),
    };
    for (interval, tolerance) in settings {
        let (i_ms, t_ms) = (ms(interval), ms(tolerance));
        for mode in &modes {
            let label =
                format!("{i_ms}/{t_ms} ms{}", mode.as_deref().map_or(String::new(), |m| format!(" --wake {m}")));
            println!("\n-- 2 idle nodes, {label}, {} s window --", window.as_secs());
            let r = idle.around(|| {
                let lab = Lab::new(2).context("making the lab")?;
                let mut s = super::ours(&PRIORITIES, interval, tolerance, args.realtime);
                if let Some(m) = mode {
                    s.extra_args.extend(["--wake".into(), m.clone()]);
                }
                let agents = AgentSet::start(&lab, agent, s)?;
                scenario::wait_for(&agents, "node 1 alone holds the address", CONVERGE_TIMEOUT, |h| h == [1])?;
                measure(&agents, window)
            });
            push(res, r, Implementation::Ha, mode.clone().unwrap_or_default(), label, i_ms, t_ms);
        }
    }
    groups_at_rest(res, agent, args, &mut idle);
    super::floor::run(res, &mut idle, window);
    if keepalived {
        let label = format!("advert {} s", KEEPALIVED_ADVERT.as_secs_f64());
        println!("\n-- keepalived, 2 idle nodes, {label}, {} s window --", window.as_secs());
        let r = idle.around(|| {
            let lab = Lab::new(2).context("making the lab")?;
            let mut ka = Keepalived::start(&lab, KEEPALIVED_ADVERT, &PRIORITIES)?;
            let m = scenario::wait_for(&ka, "node 1 alone holds the address", CONVERGE_TIMEOUT, |h| h == [1])
                .and_then(|_| measure(&ka, window));
            ka.stop_all(Duration::from_secs(2));
            m
        });
        let down = ms(super::keepalived::master_down(KEEPALIVED_ADVERT, PRIORITIES[1]));
        push(res, r, Implementation::Keepalived, String::new(), label, ms(KEEPALIVED_ADVERT), down);
    }
    idle.finish(res, first_run, stall);
    Ok(())
}

/// The floor alone, between idle windows of its own.
pub fn run_floor(res: &mut Results, args: &BenchArgs) -> Result<()> {
    let window = Duration::from_secs(args.window_secs);
    let stall = stall_distribution(window);
    let first_run = res.rest_runs.len();
    let mut idle = IdleSeries::start(window)?;
    super::floor::run(res, &mut idle, window);
    idle.finish(res, first_run, stall);
    Ok(())
}

/// Idle windows of the machine, one before the first run and one after each: a run's machine
/// figure is taken above the mean of the two around it.
pub(super) struct IdleSeries {
    window: Duration,
    windows: Vec<IdleWindow>,
    /// Every window read the machine's busy time in ns (/proc/timer_list).
    precise: bool,
}

impl IdleSeries {
    fn start(window: Duration) -> Result<IdleSeries> {
        let mut s = IdleSeries { window, windows: Vec::new(), precise: true };
        s.measure()?;
        Ok(s)
    }

    fn measure(&mut self) -> Result<IdleWindow> {
        let a = accounting::snapshot()?;
        thread::sleep(self.window);
        let w = accounting::window(&a, &accounting::snapshot_end()?, &[]);
        self.precise &= w.precise;
        let idle = IdleWindow { busy_pct: w.busy_pct, background_pct: w.background_pct, window_s: w.secs };
        println!(
            "idle window: machine {:.3}% busy, {:.3}% of it unrelated processes: {:.3}% left",
            idle.busy_pct,
            idle.background_pct,
            idle.residual_pct()
        );
        self.windows.push(idle);
        Ok(idle)
    }

    /// Runs `f` (which measures a lab and tears it down), then the idle window after it; the
    /// run's machine figure becomes its residual less the mean of the windows around it.
    pub(super) fn around(&mut self, f: impl FnOnce() -> Result<RestRun>) -> Result<RestRun> {
        let before = self.windows.last().copied();
        let r = f();
        thread::sleep(SETTLE);
        let after = self.measure()?;
        let mut run = r?;
        let before = before.context("no idle window before the run")?;
        run.idle_before_pct = Some(before.residual_pct());
        run.idle_after_pct = Some(after.residual_pct());
        run.machine_pct_above_idle -= (before.residual_pct() + after.residual_pct()) / 2.0;
        Ok(run)
    }

    /// Gives the runs since `first_run` the noise of every window, prints the windows and
    /// keeps them as the results' baseline.
    pub(super) fn finish(self, res: &mut Results, first_run: usize, stall: Stall) {
        let noise = self.noise_pct();
        for r in &mut res.rest_runs[first_run..] {
            r.machine_noise_pct = noise;
        }
        let windows = &self.windows;
        let n = windows.len() as f64;
        let busy: Vec<f64> = windows.iter().map(|w| w.busy_pct).collect();
        let residual: Vec<f64> = windows.iter().map(IdleWindow::residual_pct).collect();
        println!(
            "\n{} idle windows of {} s: busy {:.3}% (sd {:.3}%), less unrelated processes {:.3}% (sd {:.3}%); \
             a run's machine figure is good to ± {}",
            windows.len(),
            self.window.as_secs(),
            busy.iter().sum::<f64>() / n,
            sd(&busy).unwrap_or(f64::NAN),
            residual.iter().sum::<f64>() / n,
            sd(&residual).unwrap_or(f64::NAN),
            noise.map_or("? (too few windows)".into(), |u| format!("{u:.3}% of a core")),
        );
        res.rest_baseline = Some(RestBaseline {
            machine_busy_pct: busy.iter().sum::<f64>() / n,
            window_s: self.window.as_secs_f64(),
            stall,
            machine_clock: if self.precise { "timer_list" } else { "stat" }.into(),
            windows: self.windows,
        });
    }

    /// ± two standard deviations of a run's residual less the mean of two idle windows, each
    /// with the spread of the idle windows (sd × √(1 + 1/2)); None below 3 windows.
    fn noise_pct(&self) -> Option<f64> {
        let residual: Vec<f64> = self.windows.iter().map(IdleWindow::residual_pct).collect();
        (residual.len() >= 3).then(|| sd(&residual)).flatten().map(|sd| 2.0 * sd * 1.5f64.sqrt())
    }
}

/// Sample standard deviation; None below 2 values.
fn sd(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    Some((v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

/// Groups in one agent (issue 14): 16 groups at 10/35 ms, node 1 preferred for all of them, in
/// the mode several groups run (poll), beside the one-group poll run above: one heartbeat
/// carries them all, so 16 should cost about what one does.
fn groups_at_rest(res: &mut Results, agent: &std::path::Path, args: &BenchArgs, idle: &mut IdleSeries) {
    let window = idle.window;
    let (i_ms, t_ms) = (10, 35);
    let label = format!("{i_ms}/{t_ms} ms --wake poll, {GROUPS} groups");
    println!("\n-- 2 idle nodes, {label}, {} s window --", window.as_secs());
    let r = idle.around(|| {
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
        measure(&agents, window)
    });
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
            let get = |v: Option<f64>| v.unwrap_or(f64::NAN);
            println!(
                "{} {}: holder {:.3}% CPU, {:.0} wakes/s; standby {:.3}% CPU, {:.0} wakes/s; machine above idle \
                 {:.3}% (both nodes: {:.3}% busy less {:.3}% unrelated, less {:.3}% / {:.3}% idle before / after)",
                implementation.name(),
                run.setting,
                run.cpu_pct[0],
                run.wakes_per_s[0],
                run.cpu_pct[1],
                run.wakes_per_s[1],
                run.machine_pct_above_idle,
                get(run.machine_busy_pct),
                get(run.background_pct),
                get(run.idle_before_pct),
                get(run.idle_after_pct),
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

/// Every process of nodes 1 and 2 (holder, standby) and the machine, over `window`; the
/// machine figure is the residual (busy less unrelated processes), not yet above idle.
fn measure(d: &impl Daemons, window: Duration) -> Result<RestRun> {
    thread::sleep(WARMUP);
    let roots: Vec<u32> =
        (1..=2).map(|i| d.pid(i).with_context(|| format!("node {i} runs no daemon"))).collect::<Result<_>>()?;
    let wakes = || -> Vec<BTreeMap<u32, u64>> {
        roots
            .iter()
            .map(|&r| procfs::process_tree(r).into_iter().map(|p| (p, procfs::voluntary_switches(p))).collect())
            .collect()
    };
    let a = accounting::snapshot()?;
    let wakes0 = wakes();
    let start = Instant::now();
    thread::sleep(window);
    let wakes1 = wakes();
    let secs = start.elapsed().as_secs_f64();
    let w = accounting::window(&a, &accounting::snapshot_end()?, &roots);
    if w.trees_vanished > 0 {
        println!(
            "{} process(es) of the daemons ended during the window: their last moments are not counted",
            w.trees_vanished
        );
    }
    let wakes_per_s = wakes0
        .iter()
        .zip(&wakes1)
        .map(|(w0, w1)| {
            w1.iter().map(|(p, n)| n.saturating_sub(w0.get(p).copied().unwrap_or(0))).sum::<u64>() as f64 / secs
        })
        .collect();
    let rss_mib = roots
        .iter()
        .map(|&r| procfs::process_tree(r).into_iter().map(|p| procfs::rss_mib(p).unwrap_or(0.0)).sum())
        .collect();
    Ok(window_run(Implementation::Ha, &w, w.trees_pct.clone(), wakes_per_s, rss_mib))
}

/// A run of `implementation` measured over `w` (holder first, then the standby, in each of
/// `cpu_pct`, `wakes_per_s` and `rss_mib`); its setting and idle windows are filled in later.
pub(super) fn window_run(
    implementation: Implementation,
    w: &accounting::Window,
    cpu_pct: Vec<f64>,
    wakes_per_s: Vec<f64>,
    rss_mib: Vec<f64>,
) -> RestRun {
    RestRun {
        implementation,
        mode: String::new(),
        setting: String::new(),
        interval_ms: 0.0,
        tolerance_ms: 0.0,
        cpu_pct,
        cpu_ns: true,
        wakes_per_s,
        rss_mib,
        machine_pct_above_idle: w.residual_pct(),
        window_s: w.secs,
        machine_busy_pct: Some(w.busy_pct),
        background_pct: Some(w.background_pct),
        idle_before_pct: None,
        idle_after_pct: None,
        machine_noise_pct: None,
    }
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
