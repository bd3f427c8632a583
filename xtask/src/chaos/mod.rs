//! `cargo xtask chaos --minutes N [--seed S]`: random faults against a three-node lab of real
//! agents, judged from the client's side (see `ha_lab::chaos`). Prints a line per fault and a
//! summary, writes the markdown report (docs/chaos.md), and fails on any violation.
mod report;

use std::{
    path::PathBuf,
    process::ExitCode,
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use ha_lab::chaos;

use crate::{bench::machine, cmd, ebpf};

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// How long to inject faults, in minutes (fractions too: 0.5); the fault running then
    /// finishes. At most a day.
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// Seed of the fault schedule [default: from the clock]. The report names it: the same seed
    /// draws the same faults in the same order.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after this many faults even if time is left.
    #[arg(long)]
    pub faults: Option<usize>,
    /// Only these fault kinds, comma-separated: link-flap, loss-burst, partition, pause, kill,
    /// clean-stop, maintenance, key-reload [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    pub only: Vec<chaos::FaultKind>,
    /// Heartbeat interval of the agents.
    #[arg(long, default_value = "10ms")]
    pub interval: String,
    /// Tolerance of the agents.
    #[arg(long, default_value = "40ms")]
    pub tolerance: String,
    /// The markdown report, relative to the workspace root.
    #[arg(long, default_value = "docs/chaos.md")]
    pub report: PathBuf,
    /// Print the summary only; leave the report alone.
    #[arg(long)]
    pub no_report: bool,
    /// Skip the prerequisite checks.
    #[arg(long)]
    pub skip_setup: bool,
}

pub fn run(args: ChaosArgs) -> Result<ExitCode> {
    ensure!(
        args.minutes.is_finite() && args.minutes > 0.0 && args.minutes <= 24.0 * 60.0,
        "--minutes must be above 0 and at most a day, not {}",
        args.minutes
    );
    if !cmd::is_root() {
        bail!("chaos loads XDP and makes network namespaces: run it as root");
    }
    let interval = humantime::parse_duration(&args.interval).context("--interval")?;
    let tolerance = humantime::parse_duration(&args.tolerance).context("--tolerance")?;
    ha_lab::install_signal_cleanup()?;
    ebpf::build(args.skip_setup)?;
    let agent = ebpf::build_agent_release()?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut cfg = chaos::Config::new(agent, seed);
    cfg.duration = Duration::from_secs_f64(args.minutes * 60.0);
    cfg.max_faults = args.faults;
    cfg.interval = interval;
    cfg.tolerance = tolerance;
    cfg.kinds = args.only.clone();
    cfg.progress = true;
    let command = command_line(&args, seed);
    println!("chaos: {command}");
    watchdog(cfg.time_limit());
    let load_start = machine::loadavg();
    let outcome = chaos::run(&cfg)?;
    println!("\n{}", outcome.summary_text());
    if !args.no_report {
        let path = cmd::workspace_root()?.join(&args.report);
        let m = machine::describe();
        let context = report::Context {
            command,
            date: machine::utc_date(SystemTime::now()),
            commit: machine::commit(),
            machine: format!("{} x {}, kernel {}", m.nproc, m.cpu_model, m.kernel),
            load: [load_start, machine::loadavg()],
        };
        std::fs::write(&path, report::markdown(&outcome, &context))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(if outcome.violations.is_empty() && outcome.aborted.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn parse_kind(s: &str) -> Result<chaos::FaultKind, String> {
    chaos::FaultKind::from_slug(s).ok_or_else(|| {
        let all: Vec<&str> = chaos::FaultKind::ALL.iter().map(|k| k.slug()).collect();
        format!("not a fault kind; one of {}", all.join(", "))
    })
}

fn clock_seed() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

/// The command that replays this run.
fn command_line(args: &ChaosArgs, seed: u64) -> String {
    let mut c = format!("cargo xtask chaos --minutes {} --seed {seed}", args.minutes);
    if let Some(n) = args.faults {
        c.push_str(&format!(" --faults {n}"));
    }
    if !args.only.is_empty() {
        let kinds: Vec<&str> = args.only.iter().map(|k| k.slug()).collect();
        c.push_str(&format!(" --only {}", kinds.join(",")));
    }
    if args.interval != "10ms" || args.tolerance != "40ms" {
        c.push_str(&format!(" --interval {} --tolerance {}", args.interval, args.tolerance));
    }
    c
}

/// Ends a run that overruns its bound: the labs and agents go as on Ctrl-C, exit code 124.
fn watchdog(limit: Duration) {
    let spawned = thread::Builder::new().name("chaos-watchdog".into()).spawn(move || {
        thread::sleep(limit);
        eprintln!("chaos: still running after {} s: removing the lab and giving up", limit.as_secs());
        ha_lab::cleanup_and_exit(124);
    });
    if let Err(e) = spawned {
        eprintln!("chaos: no watchdog ({e}); Ctrl-C still cleans up");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<ChaosArgs, clap::Error> {
        let cli = crate::Cli::try_parse_from(["xtask", "chaos"].iter().chain(args))?;
        match cli.command {
            crate::Command::Chaos(a) => Ok(a),
            _ => panic!("not chaos"),
        }
    }

    #[test]
    fn chaos_command_line() -> Result<()> {
        let a = parse(&["--minutes", "0.5", "--seed", "7"])?;
        assert_eq!((a.minutes, a.seed, a.report.to_str()), (0.5, Some(7), Some("docs/chaos.md")));
        assert_eq!(command_line(&a, 7), "cargo xtask chaos --minutes 0.5 --seed 7");
        let b = parse(&["--faults", "3", "--tolerance", "80ms"])?;
        assert_eq!(
            command_line(&b, 1),
            "cargo xtask chaos --minutes 5 --seed 1 --faults 3 --interval 10ms --tolerance 80ms"
        );
        Ok(())
    }
}
