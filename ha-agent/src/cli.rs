//! The command line. Parsing only; validation that needs the system lives in `config`.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource};
use ha_common::DEFAULT_PORT;

use crate::{
    netlink::SharedAddr,
    node::Preempt,
    ops::logging::LogFormat,
    rx::settings::{AttachMode, RxMode},
};

#[derive(Parser, Debug)]
#[command(name = "ha-agent", version, about = "eBPF-assisted failover of a shared IP address")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: log::LevelFilter,
    /// Log lines for people (human) or one JSON object per line (json).
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent on an interface.
    Run(Box<RunArgs>),
    /// Print the peer table of a running agent (from its pinned maps).
    Peers(PinArgs),
    /// Show a running agent's state, why, its worthiness and its peers.
    Status {
        #[command(flatten)]
        at: PinArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Hand the address over and stay out of the election (on), or rejoin it (off).
    Maintenance {
        #[arg(value_parser = ["on", "off"])]
        mode: String,
        #[command(flatten)]
        at: PinArgs,
    },
    /// Follow a running agent's transitions, one JSON line each.
    Events(PinArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// TOML file with any of these options, keyed by flag name (see examples/ha-agent.toml);
    /// flags given on the command line win over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface that carries heartbeats and the shared address (required, here or in the file).
    #[arg(long)]
    pub iface: Option<String>,
    /// Shared address with prefix, e.g. 192.0.2.200/24 (repeat for several, moved together;
    /// required, here or in the file).
    #[arg(long = "vip", value_name = "ADDR/PREFIX")]
    pub vips: Vec<SharedAddr>,
    /// Worthiness: the most worthy live node holds the address (ties: higher node id).
    #[arg(long, default_value_t = 100)]
    pub priority: u32,
    /// Time between heartbeats.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Silence after which a peer counts as dead (must exceed the interval; 3-5 intervals is usual).
    #[arg(long, default_value = "350ms", value_parser = parse_duration)]
    pub tolerance: Duration,
    /// While a peer's heartbeats are being lost, its silence limit grows above --tolerance so
    /// that lost heartbeats alone do not look like death, up to this (default: 2 x tolerance;
    /// equal to --tolerance turns it off). On a clean link the limit is --tolerance.
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub max_tolerance: Option<Duration>,
    /// Longest time between two looks at the peer table (default: the interval). The agent also
    /// wakes exactly when a peer's silence reaches the tolerance; a shorter tick only makes it
    /// notice a peer's leaving or claim sooner.
    #[arg(long, value_parser = parse_duration)]
    pub tick: Option<Duration>,
    /// Cluster id: heartbeats of other clusters on the LAN are ignored.
    #[arg(long, default_value_t = 1)]
    pub cluster: u32,
    /// This node's id, a number or an IPv4 address (default: the interface's primary IPv4 address).
    #[arg(long, value_parser = parse_node_id)]
    pub node_id: Option<u32>,
    /// Multicast group of heartbeats.
    #[arg(long, default_value = "239.255.72.65")]
    pub group: Ipv4Addr,
    /// UDP port of heartbeats.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Send heartbeats by unicast to this peer instead of multicast (repeat for each peer; the
    /// same list on every node is fine: a node skips its own address).
    #[arg(long = "peer", value_name = "ADDR")]
    pub peers: Vec<Ipv4Addr>,
    /// How heartbeats are received: xdp, a UDP socket (no eBPF, fewer privileges), or auto
    /// (XDP, else the socket with a warning).
    #[arg(long, value_enum, default_value = "auto")]
    pub rx: RxMode,
    /// always: a more worthy node takes over (make-before-break); never: the address stays with
    /// its holder while it lives; delay=DUR: take over after DUR of readiness.
    #[arg(long, default_value = "always", value_parser = parse_preempt)]
    pub preempt: Preempt,
    /// On a clean stop, how long to wait for a successor's claim before letting go anyway.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub leave_timeout: Duration,
    /// After yielding to a more worthy holder, how long its silence alone does not make this
    /// node take the address back (default: 3 x tolerance; 0 turns it off).
    #[arg(long, value_parser = parse_duration)]
    pub hold_down: Option<Duration>,
    /// The holder announces the address again (gratuitous ARP / unsolicited NA) this often, to
    /// correct clients that cached a wrong MAC (default: off).
    #[arg(long, value_parser = parse_duration, value_name = "DUR")]
    pub garp_refresh: Option<Duration>,
    /// Where the maps are pinned (default: /sys/fs/bpf/ha/<cluster>).
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// XDP attach mode: auto tries native driver mode, then generic.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: AttachMode,
    /// Let recorded heartbeats continue up the stack (for tcpdump; costs a little).
    #[arg(long)]
    pub pass_heartbeats: bool,
    /// Run the heartbeat/decision thread at real-time priority and lock memory (short intervals).
    #[arg(long)]
    pub realtime: bool,
    /// Serve Prometheus metrics over HTTP at GET /metrics on this address, e.g. 127.0.0.1:9465.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,
    /// Shell command run when this node takes the address (args: STATE REASON; env: HA_*).
    #[arg(long, value_name = "CMD")]
    pub on_active: Option<String>,
    /// Shell command run when this node lets the address go (args: STATE REASON; env: HA_*).
    #[arg(long, value_name = "CMD")]
    pub on_standby: Option<String>,
    /// Shell command run on every transition, after on-active/on-standby (args: STATE REASON).
    #[arg(long, value_name = "CMD")]
    pub notify: Option<String>,
    /// A hook still running after this is killed; hooks never hold up a failover.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hook_timeout: Duration,
    /// Health check: a shell command that exits 0 while this node can serve (repeat for several).
    #[arg(long = "check", value_name = "CMD")]
    pub checks: Vec<String>,
    /// Time between runs of the health checks.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub check_interval: Duration,
    /// A check still running after this counts as failed (default: the check interval).
    #[arg(long, value_parser = parse_duration)]
    pub check_timeout: Option<Duration>,
    /// Consecutive failures before a passing check counts as failing.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub check_fall: u32,
    /// Consecutive passes before a failing check counts as passing again.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub check_rise: u32,
    /// Priority taken off per failing check (default: all of it, to 0, which no --preempt
    /// setting protects: any healthy peer takes over).
    #[arg(long, value_name = "W")]
    pub check_weight: Option<u32>,
    /// Heartbeat keys, one `<key-id 1-255> <32 hex digits>` per line, mode 0600; the first signs,
    /// a second is also accepted (rotation). SIGHUP reloads it.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Send and accept unauthenticated heartbeats: anyone on the LAN can then take the address.
    #[arg(long)]
    pub insecure_no_auth: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PinArgs {
    /// The running agent's config file: its cluster and pin-dir are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Cluster id of the running agent [default: 1].
    #[arg(long)]
    pub cluster: Option<u32>,
    /// Pin directory of the running agent (overrides --cluster).
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
}

/// Parses a command line, keeping clap's matches so the config file can tell which flags were
/// given (they win over the file) from defaults (the file wins over them).
pub fn parse_from<I, T>(argv: I) -> Result<(Cli, ArgMatches), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    Ok((cli, matches))
}

/// Whether the argument with clap id `id` (its field name) was on the command line.
pub fn given_on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.try_get_raw(id).is_ok() && matches.value_source(id) == Some(ValueSource::CommandLine)
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 2ms, 500ms, 1s)"))
}

pub fn parse_node_id(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .or_else(|_| s.parse::<Ipv4Addr>().map(u32::from))
        .map_err(|_| format!("{s:?} is neither a number nor an IPv4 address"))
}

pub fn parse_preempt(s: &str) -> Result<Preempt, String> {
    match s {
        "always" => Ok(Preempt::Always),
        "never" => Ok(Preempt::Never),
        _ => match s.strip_prefix("delay=") {
            Some(d) => parse_duration(d).map(|d| Preempt::Delay(d.as_nanos() as u64)),
            None => Err(format!("{s:?}: expected always, never or delay=DUR")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_preempt_and_node_ids_parse() {
        assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_duration("fast").is_err());
        assert_eq!(parse_preempt("delay=30s"), Ok(Preempt::Delay(30_000_000_000)));
        assert_eq!(parse_preempt("never"), Ok(Preempt::Never));
        assert!(parse_preempt("sometimes").is_err());
        assert_eq!(parse_node_id("192.0.2.1"), Ok(0xc000_0201));
        assert_eq!(parse_node_id("7"), Ok(7));
        assert!(parse_node_id("x").is_err());
    }

    #[test]
    fn run_defaults_are_usable_as_they_are() {
        let cli =
            Cli::try_parse_from(["ha-agent", "run", "--iface", "eth0", "--vip", "192.0.2.200/24"]).expect("parse");
        let Command::Run(args) = cli.command else { panic!("run") };
        assert_eq!((args.interval, args.tolerance), (Duration::from_millis(100), Duration::from_millis(350)));
        assert_eq!(args.preempt, Preempt::Always);
    }

    #[test]
    fn bad_prefix_is_a_parse_error() {
        assert!(Cli::try_parse_from(["ha-agent", "run", "--iface", "eth0", "--vip", "192.0.2.200/33"]).is_err());
    }
}
