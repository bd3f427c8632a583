//! `cargo xtask bench [xdp|failover|all]`: the XDP program's ns/packet (via BPF_PROG_TEST_RUN),
//! and client-observed outages of failover scenarios in the namespace lab.
use std::{thread, time::Duration};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ha_lab::{AgentSet, AgentSettings, Lab};

use crate::{
    cmd::{self, Cmd},
    ebpf,
    scenario::{self, Measured, ms},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKind {
    /// ns/packet of the XDP program.
    Xdp,
    /// Client-observed outage of hard failure, crash, clean stop and preemption.
    Failover,
    /// Everything.
    All,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark to run.
    #[arg(value_enum, default_value_t = BenchKind::All)]
    pub which: BenchKind,
    /// Skip the prerequisite checks.
    #[arg(long)]
    pub skip_setup: bool,
    /// Repetitions of each failover scenario.
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Heartbeat interval of the agents in the failover bench.
    #[arg(long, default_value = "2ms")]
    pub interval: String,
    /// Tolerance of the agents in the failover bench.
    #[arg(long, default_value = "8ms")]
    pub tolerance: String,
    /// Run the agents with --realtime (SCHED_FIFO, locked memory).
    #[arg(long)]
    pub realtime: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if !cmd::is_root() {
        bail!("the benchmarks load XDP and make network namespaces: run them as root");
    }
    ebpf::build(args.skip_setup)?;
    if matches!(args.which, BenchKind::Xdp | BenchKind::All) {
        xdp()?;
    }
    if matches!(args.which, BenchKind::Failover | BenchKind::All) {
        failover(&args)?;
    }
    Ok(())
}

fn xdp() -> Result<()> {
    println!("\n== bench xdp ==");
    Cmd::new("cargo")
        .current_dir(cmd::workspace_root()?)
        .args(["bench", "--quiet", "-p", "ha-agent", "--bench", "xdp"])
        .run()
        .context("the XDP benchmark failed")
}

const SCENARIOS: [&str; 4] =
    ["hard failure (link down)", "crash (SIGKILL)", "clean stop (SIGTERM)", "preemption (holder returns)"];

fn failover(args: &BenchArgs) -> Result<()> {
    let agent = ebpf::build_agent_release()?;
    ha_lab::install_signal_cleanup()?;
    let interval = humantime::parse_duration(&args.interval).context("--interval")?;
    let tolerance = humantime::parse_duration(&args.tolerance).context("--tolerance")?;
    println!(
        "\n== bench failover: {} repetitions, interval {}, tolerance {}, client probes every 1 ms ==",
        args.reps, args.interval, args.tolerance
    );
    let lab = Lab::new(2)?;
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.interval = interval;
    settings.tolerance = tolerance;
    if args.realtime {
        settings.extra_args.push("--realtime".into());
    }
    let mut agents = AgentSet::start(&lab, &agent, settings)?;
    agents.wait_sole_holder(1, scenario::STEP_TIMEOUT)?;
    let settle = (tolerance * 4).max(Duration::from_millis(100));
    let mut results: Vec<Vec<Measured>> = vec![Vec::new(); SCENARIOS.len()];
    for rep in 1..=args.reps {
        println!("repetition {rep}/{}", args.reps);
        let step = |which: usize, m: Measured, results: &mut Vec<Vec<Measured>>| {
            println!("  {:<30} outage {:>6.1} ms, lost {:>3} of {:>4}", SCENARIOS[which], ms(m.outage), m.lost, m.sent);
            results[which].push(m);
        };
        let m = scenario::measure(&lab, &agents, settle, || lab.cut_link(1), |h| h == [2])?;
        step(0, m, &mut results);
        let m = scenario::measure(&lab, &agents, settle, || lab.restore_link(1), |h| h == [1])?;
        step(3, m, &mut results);
        let m = scenario::measure(&lab, &agents, settle, || agents.signal(1, libc::SIGTERM), |h| h == [2])?;
        step(2, m, &mut results);
        agents.start_node(1)?;
        agents.wait_sole_holder(1, scenario::STEP_TIMEOUT)?;
        thread::sleep(settle);
        // The crashed agent cannot remove its copy: node 2 holding it (and announcing) is the end.
        let m = scenario::measure(&lab, &agents, settle, || agents.signal(1, libc::SIGKILL), |h| h.contains(&2))?;
        step(1, m, &mut results);
        agents.start_node(1)?;
        agents.wait_sole_holder(1, scenario::STEP_TIMEOUT)?;
        thread::sleep(settle);
    }
    print_table(&results, args);
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn print_table(results: &[Vec<Measured>], args: &BenchArgs) {
    println!(
        "\nclient-observed outage, interval {} tolerance {}, {} repetitions",
        args.interval, args.tolerance, args.reps
    );
    println!(
        "{:<30} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
        "scenario", "min ms", "median", "p90", "max ms", "lost med", "no-loss"
    );
    for (name, runs) in SCENARIOS.iter().zip(results) {
        let mut outage: Vec<f64> = runs.iter().map(|m| ms(m.outage)).collect();
        outage.sort_by(f64::total_cmp);
        let mut lost: Vec<f64> = runs.iter().map(|m| m.lost as f64).collect();
        lost.sort_by(f64::total_cmp);
        let clean = runs.iter().filter(|m| m.lost == 0).count();
        println!(
            "{:<30} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>10.0} {:>7}/{}",
            name,
            percentile(&outage, 0.0),
            percentile(&outage, 0.5),
            percentile(&outage, 0.9),
            percentile(&outage, 1.0),
            percentile(&lost, 0.5),
            clean,
            runs.len()
        );
    }
}
