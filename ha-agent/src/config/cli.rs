//! The command line, and with it the one declaration of every option: the config file and
//! the option reference are derived from it. Parsing and value bounds only; validation across
//! options and against the system lives in `config`.
use std::{
    ffi::OsString,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, error::ErrorKind};
use ha_common::DEFAULT_PORT;

use super::{
    file::{FileConfig, FileError},
    values::{
        self, duration, number, parse_group, parse_listen, parse_log_level, parse_node_id, parse_peer, parse_preempt,
    },
};
use crate::{
    netlink::{VipArg, route::AddressMode},
    ops::logging::LogFormat,
    rx::settings::{AttachMode, RxMode, WakeMode},
};
use ha_core::Preempt;

#[derive(Parser, Debug)]
#[command(name = "ha-agent", version, about = "eBPF-assisted failover of a shared IP address")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level: off, error, warn, info, debug, trace; at info, one line per transition with its
    /// reason and timings, quiet in steady state.
    #[arg(long, global = true, value_name = "LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: log::LevelFilter,
    /// Log lines for people (human) or one JSON object per line (json).
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent on an interface.
    Run(Box<RunArgs>),
    /// Check a configuration as `run` would (flags, file, interface, key file) without
    /// touching the system: exit 0 when `run` would start with it (for `ExecStartPre=`).
    CheckConfig(Box<RunArgs>),
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
    /// Hand the address over and stay out of the election (on), or rejoin it (off). Survives
    /// restarts of the agent.
    Maintenance {
        #[arg(value_parser = ["on", "off"])]
        mode: String,
        #[command(flatten)]
        at: PinArgs,
    },
    /// For services: `maintenance on` (hand the address over make-before-break, stay out).
    Drain(PinArgs),
    /// For services: `maintenance off` (rejoin the election).
    Undrain(PinArgs),
    /// Change a running agent's priority (`set N`) until `reset`, a restart, or a reload that
    /// changes the configured priority; a move it causes is make-before-break.
    Priority {
        change: PriorityChange,
        /// The priority for `set`, 0 to 4294967295.
        #[arg(value_parser = number(0..=u32::MAX))]
        priority: Option<u32>,
        #[command(flatten)]
        at: PinArgs,
    },
    /// Write a new heartbeat key file (`1 <32 hex digits>`, mode 0600) for every node to share;
    /// never replaces an existing file.
    Keygen {
        /// Where to write it.
        #[arg(long, value_name = "PATH", default_value = crate::auth::keygen::DEFAULT_PATH)]
        out: PathBuf,
    },
    /// Follow a running agent's transitions, one JSON line each; says so and fails when the
    /// agent goes away.
    Events {
        #[command(flatten)]
        at: PinArgs,
        /// Wait for the agent when it is not running (restart, crash) and go on with its events.
        #[arg(long)]
        follow: bool,
    },
    /// After an agent exited without a clean stop (systemd ExecStopPost=): remove its copies of
    /// the shared addresses, detach its XDP program and unpin its maps. Does nothing while an
    /// agent runs for this instance or address.
    Cleanup(CleanupArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub at: PinArgs,
    /// The interface [default: the config file's].
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// A shared address (`@IFACE` when on another interface); repeat for several [default: the
    /// config file's].
    #[arg(long = "vip", value_name = "ADDR/PREFIX[@IF]")]
    pub vips: Vec<VipArg>,
}

/// Every option of `ha-agent run`, declared once: the config file takes each as a key named as
/// the flag (`file`), and the option tables in README.md and docs/operating.md are generated
/// from these declarations (`reference`). A help text ending in `[default: ...]` or
/// `[required]` describes a default that depends on other options.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// TOML file with any of these options, keyed by flag name (see examples/ha-agent.toml);
    /// flags given on the command line win over the file; unknown keys and bad values are
    /// refused with file:line.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface that carries heartbeats and, in l2 mode, the shared address. Repeat for
    /// redundant heartbeat links (up to 8, each with an IPv4 address): heartbeats go out on
    /// every one and a peer is alive while any carries its heartbeats; the first is the node's
    /// (node id, shared addresses without @IF). [required]
    #[arg(long, value_name = "IF")]
    pub iface: Vec<String>,
    /// Shared address with prefix, e.g. 192.0.2.200/24; repeat for several (moved together);
    /// IPv6 works too. `@IF` puts it on another interface than --iface (added and announced
    /// there, e.g. 198.51.100.10/32@eth1; any subnet); XDP is attached there too, for its ARP
    /// fence. [required]
    #[arg(long = "vip", value_name = "ADDR/PREFIX[@IF]")]
    pub vips: Vec<VipArg>,
    /// A group of shared addresses with its own holder (active/active, one keepalived
    /// vrrp_instance each): ID:PRIORITY:VIP[,VIP...][:preempt=P], id 1 to 255 and the same on
    /// every node, this node's priority for it; repeat for up to 16; in the file, `[[group]]`
    /// tables (id, vip, priority, preempt). Replaces --vip and --priority; l2 mode and --wake
    /// poll only. [default: none]
    #[arg(long = "vip-group", value_name = "ID:PRIO:VIP[,VIP]")]
    pub vip_groups: Vec<super::groups::GroupArg>,
    /// How clients reach the holder: l2 (the address on --iface, clients re-pointed by
    /// gratuitous ARP / unsolicited NA) or routed (a host route for a BGP speaker beside the
    /// agent to announce; see docs/routed.md).
    #[arg(long, value_enum, default_value = "l2")]
    pub mode: AddressMode,
    /// Routed mode: the kernel routing table the holder puts its host routes into, for the BGP
    /// speaker to export (not 253-255, which the kernel uses). [default: 100]
    #[arg(long, value_name = "N", value_parser = number(1..=u32::MAX))]
    pub route_table: Option<u32>,
    /// Routed mode: the interface the holder puts its shared addresses on, so that it accepts
    /// their traffic; a dummy interface or lo. [default: lo]
    #[arg(long, value_name = "IF")]
    pub vip_iface: Option<String>,
    /// Heartbeat keys, lines `<key-id 1-255> <32 hex digits>`, mode 0600; the first signs, a
    /// second is also accepted (rotation); SIGHUP reloads it. [required: this or
    /// --insecure-no-auth]
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Send and accept unauthenticated heartbeats: anyone on the LAN can then take the address.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Worthiness: the most worthy live node holds the address (ties: higher node id); 1 or more.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = number(0..=u32::MAX))]
    pub priority: u32,
    /// Time between heartbeats, 500us to 1m.
    #[arg(long, value_name = "DUR", default_value = "100ms", value_parser = duration(values::INTERVAL))]
    pub interval: Duration,
    /// Silence after which a peer counts as dead on a clean link (more under loss:
    /// --max-tolerance); must exceed the interval (3-5 intervals is usual); at most 1h.
    #[arg(long, value_name = "DUR", default_value = "350ms", value_parser = duration(values::TOLERANCE))]
    pub tolerance: Duration,
    /// While a peer's heartbeats are being lost, its silence limit grows above the tolerance so
    /// that lost heartbeats alone do not look like death, up to this; equal to --tolerance turns
    /// it off; at most 1h. [default: 2 x tolerance]
    #[arg(long, value_name = "DUR", value_parser = duration(values::TOLERANCE))]
    pub max_tolerance: Option<Duration>,
    /// Poll wake: longest time between two looks at the peer table, 100us to 1m. The agent also
    /// wakes exactly when a peer's silence reaches the tolerance; a shorter tick only makes it
    /// notice a peer's leaving or claim sooner. Event wake has no tick: the kernel reports each
    /// change and expiry. [default: the interval]
    #[arg(long, value_name = "DUR", value_parser = duration(values::TICK))]
    pub tick: Option<Duration>,
    /// always: a more worthy node takes over at once (make-before-break); never: the address
    /// stays with its holder while it lives (bi-stable); delay=DUR: take over after DUR of
    /// readiness (at most 24h).
    #[arg(long, value_name = "always|never|delay=DUR", default_value = "always", value_parser = parse_preempt)]
    pub preempt: Preempt,
    /// Cluster id: clusters on one LAN never mix.
    #[arg(long, value_name = "ID", default_value_t = 1, value_parser = number(0..=u32::MAX))]
    pub cluster: u32,
    /// This node's id, a number or an IPv4 address. [default: the interface's IPv4 address]
    #[arg(long, value_name = "ID", value_parser = parse_node_id)]
    pub node_id: Option<u32>,
    /// Multicast group heartbeats go to.
    #[arg(long, value_name = "MCAST", default_value = "239.255.72.65", value_parser = parse_group)]
    pub group: Ipv4Addr,
    /// UDP port of heartbeats, 1 to 65535.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PORT, value_parser = number(values::PORT))]
    pub port: u16,
    /// Send heartbeats by unicast to this peer instead of multicast; repeat for each peer (one
    /// list for the whole cluster: a node skips its own address). [default: multicast]
    #[arg(long = "peer", value_name = "ADDR", value_parser = parse_peer)]
    pub peers: Vec<Ipv4Addr>,
    /// How heartbeats are received: xdp, a UDP socket (no eBPF, fewer privileges), or auto
    /// (XDP, falling back to the socket with one warning when XDP cannot be loaded or attached).
    #[arg(long, value_enum, default_value = "auto")]
    pub rx: RxMode,
    /// How the agent wakes: event (kernel timers report a peer's expiry, XDP each change of a
    /// peer; the agent sleeps until then; Linux 5.15 or newer, heartbeats through XDP), poll (a
    /// look at the peer table every tick), or auto (event where the kernel and the receive path
    /// allow it, else poll with one warning).
    #[arg(long, value_enum, default_value = "auto")]
    pub wake: WakeMode,
    /// On a clean stop, how long to wait for a successor's claim before letting go anyway; at
    /// most 10m.
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = duration(values::LEAVE_TIMEOUT))]
    pub leave_timeout: Duration,
    /// After yielding to a more worthy holder, how long its silence alone does not make this
    /// node take the address back (0 turns it off; at most 1h); hand-overs and preemption are
    /// not delayed. [default: 3 x tolerance]
    #[arg(long, value_name = "DUR", value_parser = duration(values::HOLD_DOWN))]
    pub hold_down: Option<Duration>,
    /// The holder announces the address again (gratuitous ARP / unsolicited NA) this often, to
    /// correct clients that cached a wrong MAC; at least the interval, at most 24h; 0 is off.
    /// [default: off]
    #[arg(long, value_name = "DUR", value_parser = duration(values::GARP_REFRESH))]
    pub garp_refresh: Option<Duration>,
    /// Where the maps are pinned. [default: `/sys/fs/bpf/ha/<cluster>`]
    #[arg(long, value_name = "PATH")]
    pub pin_dir: Option<PathBuf>,
    /// XDP attach mode: auto tries native driver mode, then generic with one warning; on a VLAN
    /// or macvlan device, generic at once.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: AttachMode,
    /// Let recorded heartbeats continue up the stack (for tcpdump; costs a little).
    #[arg(long)]
    pub pass_heartbeats: bool,
    /// Run the heartbeat/decision thread at real-time priority (SCHED_FIFO) and lock memory,
    /// for short intervals.
    #[arg(long)]
    pub realtime: bool,
    /// Serve Prometheus metrics over HTTP at GET /metrics on this address, e.g. 127.0.0.1:9465:
    /// state, transitions by reason, peers' last-heard age, heartbeats, XDP drops by reason,
    /// takeover-duration histogram. [default: off]
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
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
    /// A hook still running after this is killed, 10ms to 1h; hooks never hold up a failover.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = duration(values::COMMAND_TIMEOUT))]
    pub hook_timeout: Duration,
    /// Health check: a shell command that exits 0 while this node can serve; repeat for several.
    /// A failing holder hands the address over make-before-break, even with --preempt never.
    #[arg(long = "check", value_name = "CMD")]
    pub checks: Vec<String>,
    /// Time between runs of the health checks, 10ms to 1h.
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = duration(values::CHECK_INTERVAL))]
    pub check_interval: Duration,
    /// A check still running after this counts as failed, 10ms to 1h. [default: the check
    /// interval]
    #[arg(long, value_name = "DUR", value_parser = duration(values::COMMAND_TIMEOUT))]
    pub check_timeout: Option<Duration>,
    /// An interface whose link state counts (keepalived's track_interface), e.g. eth1 or
    /// eth1:30: while its link is down, priority drops by the weight, or without a weight to 0
    /// (FAULT: the address is handed over make-before-break); repeat for several.
    #[arg(long = "track-iface", value_name = "IF[:W]")]
    pub track_ifaces: Vec<super::track::TrackArg>,
    /// Consecutive failures before a passing check counts as failing, 1 to 100.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = number(values::CHECK_COUNT))]
    pub check_fall: u32,
    /// Consecutive passes before a failing check counts as passing again, 1 to 100.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = number(values::CHECK_COUNT))]
    pub check_rise: u32,
    /// Priority taken off per failing check; the default, all of it, leaves 0, which no
    /// --preempt setting protects: any healthy peer takes over. [default: the whole priority]
    #[arg(long, value_name = "W", value_parser = number(0..=u32::MAX))]
    pub check_weight: Option<u32>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityChange {
    /// Run with the given priority.
    Set,
    /// Return to the configured priority.
    Reset,
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

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error(transparent)]
    File(#[from] FileError),
}

/// Parses a command line. With `run --config FILE`, the file's values become the defaults of
/// their flags: a flag given wins over the file, the file over the built-in default.
pub fn parse_from<I, T>(argv: I) -> Result<Cli, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let cli = Cli::try_parse_from(&argv)?;
    let (Command::Run(run) | Command::CheckConfig(run)) = &cli.command else { return Ok(cli) };
    let Some(path) = &run.config else { return Ok(cli) };
    let file = FileConfig::load(path)?;
    let matches = file.apply(Cli::command()).try_get_matches_from(&argv)?;
    Ok(Cli::from_arg_matches(&matches)?)
}

/// A bad value as one line naming the flag (clap adds a blank line and a hint to every error);
/// `None` for errors that need clap's full text (usage, help, suggestions).
pub fn one_line(e: &clap::Error) -> Option<String> {
    matches!(e.kind(), ErrorKind::ValueValidation | ErrorKind::InvalidValue).then(|| {
        let rendered = e.render().to_string();
        rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
