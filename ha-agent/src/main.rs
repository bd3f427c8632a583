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
    control, ebpf, iface,
    peers::PeerMaps,
    privilege, status,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // aya warns of each kernel feature probe that fails; when XDP is refused (e.g. no CAP_BPF)
    // that repeats the one line the agent logs about it. Shown from --log-level debug.
    let probes = if cli.log_level >= log::LevelFilter::Debug { cli.log_level } else { log::LevelFilter::Error };
    env_logger::Builder::new()
        .filter_level(cli.log_level)
        .filter_module("aya::kernel_features", probes)
        .format_timestamp_millis()
        .format_target(false)
        .init();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Peers(args) => peers(&args),
        Command::Status { at, json } => show_status(&at, json),
        Command::Maintenance { mode, at } => maintenance(&at, &mode),
        Command::Events(at) => events(&at),
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
    let missing = privilege::missing_capabilities(cfg.rx);
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

fn pin_dir(args: &PinArgs) -> std::path::PathBuf {
    args.pin_dir.clone().unwrap_or_else(|| ebpf::default_pin_dir(args.cluster))
}

fn peers(args: &PinArgs) -> anyhow::Result<()> {
    let maps = PeerMaps::open_pinned(&pin_dir(args))?;
    let mut records = Vec::new();
    maps.read_peers(&mut records)?;
    // Liveness needs the agent's tolerance; without the agent at hand, show ages only.
    print!("{}", status::peer_table(&records, &maps.stats()?, monotonic_ns(), u64::MAX));
    Ok(())
}

fn show_status(args: &PinArgs, json: bool) -> anyhow::Result<()> {
    let reply = control::request(&control::socket_path(&pin_dir(args)), "status")?;
    if json {
        println!("{reply}");
        return Ok(());
    }
    let parsed: status::Status =
        serde_json::from_str(&reply).with_context(|| format!("the agent answered {reply:?}"))?;
    print!("{}", status::render(&parsed, ha_agent::clock::realtime_us() / 1_000));
    Ok(())
}

fn maintenance(args: &PinArgs, mode: &str) -> anyhow::Result<()> {
    let reply = control::request(&control::socket_path(&pin_dir(args)), &format!("maintenance {mode}"))?;
    anyhow::ensure!(reply == "ok", "the agent answered {reply:?}");
    println!("maintenance {mode}");
    Ok(())
}

fn events(args: &PinArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout();
    control::follow(&control::socket_path(&pin_dir(args)), |line| {
        writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_ok()
    })?;
    Ok(())
}
