//! `cargo xtask simulate`: the deterministic cluster simulator (`ha-sim`), built in release
//! and run over many seeds (split over the cores) or one seed with its trace.
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::cmd::{self, Cmd};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// How many seeds to run (from --first).
    #[arg(long, default_value_t = 10_000)]
    pub seeds: u64,
    /// The first seed of the run.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// Run this one seed and print its schedule and trace.
    #[arg(long)]
    pub seed: Option<u64>,
    /// With --seed: the whole trace, not its tail.
    #[arg(long)]
    pub trace: bool,
    /// Threads (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Failing seeds shown in full, with a shrunk schedule.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// One line per violation of every failing seed.
    #[arg(long)]
    pub list: bool,
    /// Model an agent without the kernel-side fence (before issue 12 item 2): a crashed agent's
    /// node keeps answering ARP.
    #[arg(long)]
    pub no_fence: bool,
}

pub fn run(args: SimulateArgs) -> Result<ExitCode> {
    let root = cmd::workspace_root()?;
    Cmd::new("cargo")
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "ha-sim"])
        .run()
        .context("building ha-sim failed (see cargo's output above)")?;
    let bin = cmd::host_target_dir()?.join("release").join("ha-sim");
    let mut sim = Cmd::new(&bin).current_dir(&root);
    match args.seed {
        Some(seed) => sim = sim.args(["--seed", &seed.to_string()]),
        None => {
            sim = sim.args(["--seeds", &args.seeds.to_string(), "--first", &args.first.to_string()]);
            sim = sim.args(["--show", &args.show.to_string()]);
        }
    }
    if let Some(jobs) = args.jobs {
        sim = sim.args(["--jobs", &jobs.to_string()]);
    }
    if args.trace {
        sim = sim.arg("--trace");
    }
    if args.list {
        sim = sim.arg("--list");
    }
    if args.no_fence {
        sim = sim.arg("--no-fence");
    }
    let status = sim.status()?;
    Ok(ExitCode::from(u8::try_from(cmd::exit_code(status)).unwrap_or(1)))
}
