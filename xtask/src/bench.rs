//! `cargo xtask bench [xdp|failover|all]`: builds everything, then (to be written) benchmarks.
use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::ebpf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKind {
    /// XDP fast-path throughput/latency.
    Xdp,
    /// Time from primary failure to takeover.
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
}

pub fn run(args: BenchArgs) -> Result<()> {
    let object = ebpf::build(args.skip_setup)?;
    let agent = ebpf::build_agent_release()?;
    println!(
        "bench: not implemented yet ({:?}; agent: {}, eBPF object: {})",
        args.which,
        agent.display(),
        object.display()
    );
    Ok(())
}
