//! The command line. Parsing only; validation that needs the system lives in `config`.
use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use ha_common::DEFAULT_PORT;

use crate::{address::SharedAddr, ebpf::AttachMode, node::Preempt, rx::RxMode};

#[derive(Parser, Debug)]
#[command(name = "ha-agent", version, about = "eBPF-assisted failover of a shared IP address")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: log::LevelFilter,
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
    /// Interface that carries heartbeats and the shared address.
    #[arg(long)]
    pub iface: String,
    /// Shared address with prefix, e.g. 192.0.2.200/24 (repeat for several, moved together).
    #[arg(long = "vip", required = true, value_name = "ADDR/PREFIX")]
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
    /// How often the peer table is read and the state machine runs (default: interval / 4).
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
}

#[derive(Args, Debug, Clone)]
pub struct PinArgs {
    /// Cluster id of the running agent.
    #[arg(long, default_value_t = 1)]
    pub cluster: u32,
    /// Pin directory of the running agent (overrides --cluster).
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
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
