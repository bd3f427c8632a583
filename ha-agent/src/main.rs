use std::{
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::Context as _;
use ha_agent::{
    agent,
    auth::keys::KeySet,
    client::Client,
    clock::monotonic_ns,
    config::{
        AuthConfig,
        cli::{self, ArgsError, CleanupArgs, Command, PinArgs, PriorityChange, RunArgs},
        file::FileConfig,
    },
    launch,
    netlink::{
        Vip,
        route::{self, AddressMode},
    },
    ops::{control, event_stream, logging, status},
    rx::{peers::PeerMaps, settings::default_pin_dir},
};

fn main() -> ExitCode {
    // The config file is read here, before the logger starts: it may set the log level and format.
    let cli = match cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ArgsError::File(e)) => return fail(&e.into()),
        Err(ArgsError::Usage(e)) => match cli::one_line(&e) {
            Some(line) => {
                eprintln!("ha-agent: {line}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    logging::init(cli.log_level, cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Peers(args) => peers(&args),
        Command::Status { at, json } => show_status(&at, json),
        Command::Maintenance { mode, at } => maintenance(&at, mode == "on"),
        Command::Drain(at) => maintenance(&at, true),
        Command::Undrain(at) => maintenance(&at, false),
        Command::Priority { change, priority: n, at } => priority(&at, change, n),
        Command::Events { at, follow } => events(&at, follow),
        Command::Keygen { out } => keygen(&out),
        Command::Cleanup(args) => cleanup(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    // One line: what went wrong, through every cause.
    eprintln!("ha-agent: {e:#}");
    ExitCode::FAILURE
}

/// The run configuration of `args`, checked against this host as `run` needs it.
/// `check-config`: everything `run` checks before it touches the system, and nothing more.
fn check_config(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = launch::resolve(args)?;
    if let AuthConfig::KeyFile(path) = &cfg.auth {
        KeySet::load(path)?;
    }
    for warning in cfg.warnings() {
        println!("warning: {warning}");
    }
    println!("{}", cfg.summary());
    Ok(())
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = launch::resolve(args)?;
    for warning in cfg.warnings() {
        log::warn!("{warning}");
    }
    launch::check_privileges(&cfg)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    // SIGHUP: the same command line and file, read again.
    agent::run(cfg, stop, launch::rereader(std::env::args_os().collect()))
}

/// The running agent's pin directory: from the flags, else its config file, else the default.
fn pin_dir(args: &PinArgs) -> anyhow::Result<std::path::PathBuf> {
    Ok(pin_dir_and_file(args)?.0)
}

/// The pin directory, and the `run` options of the config file (defaults without one).
fn pin_dir_and_file(args: &PinArgs) -> anyhow::Result<(std::path::PathBuf, RunArgs)> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let run = file.run_args()?;
    let cluster = args.cluster.unwrap_or(run.cluster);
    let dir = args.pin_dir.clone().or(run.pin_dir.clone()).unwrap_or_else(|| default_pin_dir(cluster));
    Ok((dir, run))
}

fn cleanup(args: &CleanupArgs) -> anyhow::Result<()> {
    let (dir, run) = pin_dir_and_file(&args.at)?;
    // Routed mode (from the config file): the addresses sit on --vip-iface, with host routes.
    let routed = run.mode == AddressMode::Routed;
    let route_table = routed.then(|| run.route_table.unwrap_or(route::DEFAULT_TABLE));
    let vip_iface = routed.then(|| run.vip_iface.clone().unwrap_or_else(|| route::DEFAULT_VIP_IFACE.into()));
    let Some(iface) = args.iface.clone().or(vip_iface).or(run.iface.first().cloned()) else {
        anyhow::bail!("no interface: give --iface NAME or --config FILE");
    };
    let vips = if args.vips.is_empty() { run.vips } else { args.vips.clone() };
    anyhow::ensure!(!vips.is_empty(), "no shared address: give --vip ADDR/PREFIX or --config FILE");
    let vips: Vec<Vip> = vips.iter().map(|v| Vip::resolve(v, &iface)).collect();
    match ha_agent::cleanup::run(&vips, &dir, route_table)? {
        ha_agent::cleanup::Outcome::AgentRunning => {
            log::info!("an agent runs for {} or its shared addresses: nothing to clean up", dir.display())
        }
        ha_agent::cleanup::Outcome::Cleaned { addresses, xdp } => log::info!(
            "cleaned up after the agent of {}: {addresses} shared address copies removed, XDP {}",
            dir.display(),
            if xdp { "detached" } else { "was not attached" }
        ),
    }
    Ok(())
}

fn peers(args: &PinArgs) -> anyhow::Result<()> {
    let maps = PeerMaps::open_pinned(&pin_dir(args)?)?;
    let mut records = Vec::new();
    maps.read_peers(&mut records)?;
    // Liveness needs the agent's tolerance; without the agent at hand, show ages only.
    print!("{}", status::peer_table(&records, &maps.stats()?, monotonic_ns(), u64::MAX));
    Ok(())
}

fn show_status(args: &PinArgs, json: bool) -> anyhow::Result<()> {
    let reply = control::request(&control::socket_path(&pin_dir(args)?), "status")?;
    if json {
        println!("{reply}");
        return Ok(());
    }
    let parsed: status::Status =
        serde_json::from_str(&reply).with_context(|| format!("the agent answered {reply:?}"))?;
    print!("{}", status::render(&parsed, ha_agent::clock::realtime_us() / 1_000));
    Ok(())
}

fn maintenance(args: &PinArgs, on: bool) -> anyhow::Result<()> {
    let agent = Client::for_pin_dir(&pin_dir(args)?);
    if on {
        agent.drain()?
    } else {
        agent.undrain()?
    }
    println!("maintenance {}", if on { "on: handing the address over" } else { "off" });
    Ok(())
}

fn priority(args: &PinArgs, change: PriorityChange, n: Option<u32>) -> anyhow::Result<()> {
    let agent = Client::for_pin_dir(&pin_dir(args)?);
    match (change, n) {
        (PriorityChange::Set, Some(priority)) => {
            agent.set_priority(priority)?;
            println!("priority {priority} (until `ha-agent priority reset`, a restart or a reload that changes it)");
        }
        (PriorityChange::Reset, None) => {
            agent.reset_priority()?;
            println!("priority: the configured one again");
        }
        (PriorityChange::Set, None) => anyhow::bail!("priority set needs a priority: `ha-agent priority set N`"),
        (PriorityChange::Reset, Some(_)) => anyhow::bail!("priority reset takes no priority"),
    }
    Ok(())
}

fn events(args: &PinArgs, follow: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout();
    event_stream::stream(
        &control::socket_path(&pin_dir(args)?),
        follow,
        |line| writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_ok(),
        |note| eprintln!("ha-agent: {note}"),
    )?;
    Ok(())
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    ha_agent::auth::keygen::write_new(out)?;
    println!("wrote a new key to {} (mode 0600): copy it to every node of the cluster", out.display());
    Ok(())
}
