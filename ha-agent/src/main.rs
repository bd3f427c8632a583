use std::{
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
};

use anyhow::Context as _;
use ha_agent::{
    agent,
    cli::{self, Command, PinArgs, RunArgs},
    clock::monotonic_ns,
    config::RunConfig,
    config_file::FileConfig,
    netlink::iface,
    ops::{control, logging, status},
    privilege,
    rx::{peers::PeerMaps, settings::default_pin_dir},
};

fn main() -> ExitCode {
    let (mut cli, matches) = cli::parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    // The config file is read before the logger starts: it may set the log level and format.
    if let Command::Run(args) = &mut cli.command
        && let Some(path) = args.config.clone()
    {
        let file = match FileConfig::load(&path) {
            Ok(file) => file,
            Err(e) => return fail(&e.into()),
        };
        let given = |id: &str| matches.subcommand_matches("run").is_some_and(|m| cli::given_on_command_line(m, id));
        if !given("log_level")
            && let Some(level) = file.log_level
        {
            cli.log_level = level;
        }
        if !given("log_format")
            && let Some(format) = file.log_format
        {
            cli.log_format = format;
        }
        file.apply(args, given);
    }
    logging::init(cli.log_level, cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Peers(args) => peers(&args),
        Command::Status { at, json } => show_status(&at, json),
        Command::Maintenance { mode, at } => maintenance(&at, &mode),
        Command::Events(at) => events(&at),
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

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let Some(iface) = args.iface.as_deref() else {
        anyhow::bail!("no interface: give --iface NAME (or iface in the config file)");
    };
    let own = iface::own_ipv4_addrs(iface).context("listing interface addresses")?;
    if iface::index(iface).is_err() {
        anyhow::bail!("no interface named {iface}: check `ip link`");
    }
    let cfg = RunConfig::new(args, &own)?;
    for warning in cfg.warnings() {
        log::warn!("{warning}");
    }
    let missing = privilege::missing_capabilities(cfg.rx);
    if !missing.is_empty() {
        anyhow::bail!("missing {}: run as root or grant them (see README, least privilege)", missing.join(", "));
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    agent::run(cfg, stop)
}

/// The running agent's pin directory: from the flags, else its config file, else the default.
fn pin_dir(args: &PinArgs) -> anyhow::Result<std::path::PathBuf> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let cluster = args.cluster.or(file.cluster).unwrap_or(1);
    Ok(args.pin_dir.clone().or(file.pin_dir).unwrap_or_else(|| default_pin_dir(cluster)))
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

fn maintenance(args: &PinArgs, mode: &str) -> anyhow::Result<()> {
    let reply = control::request(&control::socket_path(&pin_dir(args)?), &format!("maintenance {mode}"))?;
    anyhow::ensure!(reply == "ok", "the agent answered {reply:?}");
    println!("maintenance {mode}");
    Ok(())
}

fn events(args: &PinArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout();
    control::follow(&control::socket_path(&pin_dir(args)?), |line| {
        writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_ok()
    })?;
    Ok(())
}
