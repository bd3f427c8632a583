//! `cargo xtask demo`: builds everything, then (to be written) runs the failover demo.
use anyhow::Result;
use clap::Args;

use crate::ebpf;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Skip the prerequisite checks.
    #[arg(long)]
    pub skip_setup: bool,
    /// Demo arguments (placeholder until the demo defines its own options).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let object = ebpf::build(args.skip_setup)?;
    let agent = ebpf::build_agent_release()?;
    println!(
        "demo: not implemented yet (agent: {}, eBPF object: {}, args: {:?})",
        agent.display(),
        object.display(),
        args.args
    );
    Ok(())
}
