use std::{
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::Context as _;
use clap::Parser;
use ha_agent::{
    agent,
    cli::{Cli, Command, PinArgs, RunArgs},
    clock::monotonic_ns,
    config::RunConfig,
    ebpf, iface,
    peers::PeerMaps,
    privilege, show,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::new()
        .filter_level(cli.log_level)
        .format_timestamp_millis()
        .format_target(false)
        .init();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Peers(args) => peers(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what went wrong, through every cause.
            eprintln!("ha-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let own = iface::own_ipv4_addrs(&args.iface).context("listing interface addresses")?;
    if ebpf::ifindex(&args.iface).is_err() {
        anyhow::bail!("no interface named {}: check `ip link`", args.iface);
    }
    let cfg = RunConfig::new(args, &own)?;
    let missing = privilege::missing_capabilities();
    if !missing.is_empty() {
        anyhow::bail!("missing {}: run as root or grant them (see README, least privilege)", missing.join(", "));
    }
    if let Some(warning) = cfg.tolerance_warning() {
        log::warn!("{warning}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    agent::run(cfg, stop)
}

fn peers(args: &PinArgs) -> anyhow::Result<()> {
    let dir = args.pin_dir.clone().unwrap_or_else(|| ebpf::default_pin_dir(args.cluster));
    let maps = PeerMaps::open_pinned(&dir)?;
    let mut records = Vec::new();
    maps.read_peers(&mut records)?;
    print!("{}", show::peer_table(&records, &maps.stats()?, monotonic_ns()));
    Ok(())
}
