//! A run's configuration, validated before anything on the system is touched.
pub mod cli;
pub mod file;
pub mod groups;
pub mod reference;
pub mod reload;
pub mod track;
pub mod values;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use self::cli::RunArgs;
use crate::{
    netlink::{
        SharedAddr, Vip,
        route::{self, AddressMode},
    },
    ops::{checks::CheckConfig, hooks::HookConfig},
    rx::settings::{self, AttachMode, RxMode, WakeMode},
};
use ha_core::{NodeConfig, Preempt};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error(
        "--tolerance {} must exceed --interval {} (it covers {ratio:.1} intervals; 3 to 5 is usual)",
        values::spell_duration(*tolerance), values::spell_duration(*interval)
    )]
    ToleranceTooShort { tolerance: Duration, interval: Duration, ratio: f64 },
    #[error(
        "--max-tolerance {} is below --tolerance {}: give at least the tolerance (equal: it never grows)",
        values::spell_duration(*max), values::spell_duration(*tolerance)
    )]
    MaxToleranceTooShort { max: Duration, tolerance: Duration },
    #[error("--vip {0} is this node's own address on the interface (its primary): choose an address no host has")]
    VipIsOwnAddress(SharedAddr),
    #[error("--vip {vip}@{iface}: no interface named {iface} (check `ip link`)")]
    NoVipIface { vip: SharedAddr, iface: String },
    #[error("--vip {0} is given twice")]
    DuplicateVip(SharedAddr),
    #[error("{0} shared addresses: at most {max} (the XDP program watches ARP and NDP for each)", max = ha_common::neighbour::MAX_VIPS)]
    TooManyVips(usize),
    #[error("interface {0} has no IPv4 address: give it one, or pass --node-id and --peer")]
    NoIpv4(String),
    #[error(
        "--garp-refresh {} is shorter than --interval {}: announce less often than heartbeats",
        values::spell_duration(*refresh), values::spell_duration(*interval)
    )]
    GarpRefreshTooShort { refresh: Duration, interval: Duration },
    #[error("no interface: give --iface NAME (or iface in the config file)")]
    NoIface,
    #[error("--iface {0}: no such interface (check `ip link`)")]
    NoSuchIface(String),
    #[error("--track-iface {0}: no such interface (check `ip link`)")]
    NoTrackedIface(String),
    #[error("--track-iface {0} is given twice")]
    DuplicateTrackedIface(String),
    #[error("--iface {0} is given twice")]
    DuplicateIface(String),
    #[error("{0} heartbeat links: at most {max}", max = ha_common::links::MAX_LINKS)]
    TooManyLinks(usize),
    #[error("--rx socket listens on one interface: with several --iface use --rx xdp or auto")]
    SocketRxOneLink,
    #[error("--peer (unicast) with several --iface: unicast heartbeats go on one link; use multicast")]
    UnicastOneLink,
    #[error("no shared address: give --vip ADDR/PREFIX (or vip in the config file)")]
    NoVip,
    #[error("--priority 0 is reserved for a node whose checks fail: use 1 or more")]
    ZeroPriority,
    #[error("heartbeats need a key: pass --key-file PATH (see README, authentication), or --insecure-no-auth")]
    NoAuth,
    #[error("--key-file and --insecure-no-auth contradict each other: pass only one")]
    AuthConflict,
    #[error("--{0} applies to routed mode only: add --mode routed, or leave it out")]
    RoutedOnly(&'static str),
    #[error(
        "--vip {0}: routed mode announces a shared address as a host route; give it as {addr}/{max}",
        addr = .0.addr, max = SharedAddr::max_prefix(.0.addr)
    )]
    NotAHostRoute(SharedAddr),
    #[error(
        "--route-table {0} is one the kernel routes with (253 default, 254 main, 255 local): use a table of its own, e.g. 100"
    )]
    ReservedTable(u32),
    #[error("--garp-refresh does nothing in routed mode (no ARP is involved): leave it out")]
    GarpInRoutedMode,
    #[error("--vip {0}: routed mode puts every shared address on --vip-iface; leave @IF out")]
    PlacedInRoutedMode(String),
    #[error("--vip with --vip-group ([[group]]): with groups, every shared address belongs to a group")]
    GroupsWithFlatVip,
    #[error("{0} groups: at most {max}", max = ha_core::groups::MAX_GROUPS)]
    TooManyGroups(usize),
    #[error("group {0} is given twice: group ids are unique")]
    DuplicateGroup(u8),
    #[error("{vip} is in group {first} and in group {second}: a shared address belongs to one group")]
    VipInTwoGroups { vip: SharedAddr, first: u8, second: u8 },
    #[error("--vip-group ([[group]]) needs --wake poll or auto: event wake runs one group")]
    GroupsWithEventWake,
    #[error("--vip-group ([[group]]) runs in l2 mode only: leave --mode routed out")]
    GroupsInRoutedMode,
}

/// One group of a run with `--vip-group` (`[[group]]`): its id, priority, preempt policy and
/// its share of [`RunConfig::vips`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub id: u8,
    pub priority: u32,
    pub preempt: Preempt,
    pub vips: Vec<Vip>,
}

/// The groups, checked against each other (their addresses are checked with the flat ones').
fn groups(args: &RunArgs) -> Result<(), ConfigError> {
    if args.vip_groups.is_empty() {
        return Ok(());
    }
    if !args.vips.is_empty() {
        return Err(ConfigError::GroupsWithFlatVip);
    }
    if args.vip_groups.len() > ha_core::groups::MAX_GROUPS {
        return Err(ConfigError::TooManyGroups(args.vip_groups.len()));
    }
    for (i, g) in args.vip_groups.iter().enumerate() {
        if args.vip_groups[..i].iter().any(|o| o.id == g.id) {
            return Err(ConfigError::DuplicateGroup(g.id));
        }
    }
    if args.wake == WakeMode::Event {
        return Err(ConfigError::GroupsWithEventWake);
    }
    if args.mode == AddressMode::Routed {
        return Err(ConfigError::GroupsInRoutedMode);
    }
    Ok(())
}

/// Routed mode: where the holder puts its host routes and its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedConfig {
    /// Kernel routing table of the host routes the BGP speaker exports.
    pub table: u32,
    /// Interface the shared addresses go on while this node may receive their traffic.
    pub vip_iface: String,
}

/// How heartbeats are authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// Signed and verified with the keys of this file (read at start and on SIGHUP).
    KeyFile(PathBuf),
    InsecureNoAuth,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The first heartbeat interface: the node's (its id, addresses without @IF, link state).
    pub iface: String,
    pub iface_addr: Ipv4Addr,
    /// Every heartbeat link, the first one first.
    pub links: Vec<HeartbeatLink>,
    /// Every shared address with the interface that carries it (`--iface` unless given).
    pub vips: Vec<Vip>,
    pub node: NodeConfig,
    pub interval: Duration,
    pub tick: Duration,
    pub cluster_id: u32,
    pub group: Ipv4Addr,
    pub port: u16,
    pub unicast_peers: Vec<Ipv4Addr>,
    pub pin_dir: PathBuf,
    pub xdp_mode: AttachMode,
    pub rx: RxMode,
    pub wake: WakeMode,
    pub pass_heartbeats: bool,
    pub realtime: bool,
    pub metrics: Option<SocketAddr>,
    pub hooks: HookConfig,
    pub checks: CheckConfig,
    pub auth: AuthConfig,
    /// Interfaces whose link lowers worthiness while down (`--track-iface`).
    pub track: Vec<track::TrackArg>,
    /// `Some` in routed mode (`--mode routed`): host routes for a BGP speaker, no ARP.
    pub routed: Option<RoutedConfig>,
    /// `--vip-group`s (`[[group]]`); empty: the one group 0 of the flat options.
    pub groups: Vec<GroupConfig>,
}

/// The routed-mode settings, or `None` in l2 mode; a routed-only option without the mode, or a
/// shared address that is not a host route, is refused.
fn routed(args: &RunArgs, vips: &[SharedAddr]) -> Result<Option<RoutedConfig>, ConfigError> {
    if args.mode == AddressMode::L2 {
        if args.route_table.is_some() {
            return Err(ConfigError::RoutedOnly("route-table"));
        }
        if args.vip_iface.is_some() {
            return Err(ConfigError::RoutedOnly("vip-iface"));
        }
        return Ok(None);
    }
    if let Some(vip) = vips.iter().find(|v| v.prefix != SharedAddr::max_prefix(v.addr)) {
        return Err(ConfigError::NotAHostRoute(*vip));
    }
    if args.garp_refresh.is_some_and(|r| !r.is_zero()) {
        return Err(ConfigError::GarpInRoutedMode);
    }
    let table = args.route_table.unwrap_or(route::DEFAULT_TABLE);
    if route::RESERVED_TABLES.contains(&table) {
        return Err(ConfigError::ReservedTable(table));
    }
    let vip_iface = args.vip_iface.clone().unwrap_or_else(|| route::DEFAULT_VIP_IFACE.to_string());
    Ok(Some(RoutedConfig { table, vip_iface }))
}

/// Default hold-down, in tolerances: long enough that a flaky link cannot flap the address
/// every few beats, short enough to matter little if the new holder dies right away.
const HOLD_DOWN_TOLERANCES: u32 = 3;
/// Default bound of a peer's silence limit under loss, in tolerances: at 4 intervals of
/// tolerance it covers 10% loss (6 lost in a row); detection on a lossy link takes at most this.
const MAX_TOLERANCE_TOLERANCES: u32 = 2;

/// An interface heartbeats go out on and come in on, with the IPv4 address they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatLink {
    pub iface: String,
    pub addr: Ipv4Addr,
}

/// What the configuration is checked against on this host: each interface's own IPv4
/// addresses (primary first), None when there is no such interface.
pub trait HostFacts {
    fn own_ipv4(&self, iface: &str) -> Option<Vec<Ipv4Addr>>;
}

/// For tests: every interface exists and has these addresses.
impl<const N: usize> HostFacts for [Ipv4Addr; N] {
    fn own_ipv4(&self, _: &str) -> Option<Vec<Ipv4Addr>> {
        Some(self.to_vec())
    }
}

/// The heartbeat links after the first (whose checks are the node's own), checked.
fn heartbeat_links(args: &RunArgs, host: &impl HostFacts) -> Result<Vec<HeartbeatLink>, ConfigError> {
    if args.iface.len() > ha_common::links::MAX_LINKS as usize {
        return Err(ConfigError::TooManyLinks(args.iface.len()));
    }
    if args.iface.len() > 1 && args.rx == RxMode::Socket {
        return Err(ConfigError::SocketRxOneLink);
    }
    if args.iface.len() > 1 && !args.peers.is_empty() {
        return Err(ConfigError::UnicastOneLink);
    }
    let mut links: Vec<HeartbeatLink> = Vec::new();
    for (i, name) in args.iface.iter().enumerate() {
        if links.iter().any(|l| &l.iface == name) {
            return Err(ConfigError::DuplicateIface(name.clone()));
        }
        let own = host.own_ipv4(name);
        let addr = match (i, own) {
            (_, Some(own)) => own.first().copied(),
            (0, None) => None, // the first interface's absence is the caller's to report
            (_, None) => return Err(ConfigError::NoSuchIface(name.clone())),
        };
        let addr = match addr {
            Some(addr) => addr,
            None if i == 0 => Ipv4Addr::UNSPECIFIED, // refused below as NoIpv4, after the rest
            None => return Err(ConfigError::NoIpv4(name.clone())),
        };
        links.push(HeartbeatLink { iface: name.clone(), addr });
    }
    Ok(links)
}

impl RunConfig {
    /// `host`: the interfaces' own IPv4 addresses, read by the caller; the heartbeat
    /// interface's existence is the caller's to check.
    pub fn new(args: &RunArgs, host: &impl HostFacts) -> Result<Self, ConfigError> {
        if args.tolerance <= args.interval {
            return Err(ConfigError::ToleranceTooShort {
                tolerance: args.tolerance,
                interval: args.interval,
                ratio: args.tolerance.as_secs_f64() / args.interval.as_secs_f64(),
            });
        }
        let max_tolerance = args.max_tolerance.unwrap_or(args.tolerance * MAX_TOLERANCE_TOLERANCES);
        if max_tolerance < args.tolerance {
            return Err(ConfigError::MaxToleranceTooShort { max: max_tolerance, tolerance: args.tolerance });
        }
        let iface = args.iface.first().cloned().ok_or(ConfigError::NoIface)?;
        let iface_addrs = host.own_ipv4(&iface).unwrap_or_default();
        let links = heartbeat_links(args, host)?;
        groups(args)?;
        // Every shared address, with the group it belongs to (0: the flat options').
        let vip_args: Vec<(u8, &crate::netlink::VipArg)> = match args.vip_groups.is_empty() {
            true => args.vips.iter().map(|v| (0, v)).collect(),
            false => args.vip_groups.iter().flat_map(|g| g.vips.iter().map(move |v| (g.id, v))).collect(),
        };
        if vip_args.is_empty() {
            return Err(ConfigError::NoVip);
        }
        if args.priority == 0 {
            return Err(ConfigError::ZeroPriority);
        }
        if vip_args.len() > ha_common::neighbour::MAX_VIPS as usize {
            return Err(ConfigError::TooManyVips(vip_args.len()));
        }
        let shared: Vec<SharedAddr> = vip_args.iter().map(|(_, v)| v.addr).collect();
        let routed = routed(args, &shared)?;
        if let (Some(_), Some((_, arg))) = (&routed, vip_args.iter().find(|(_, v)| v.iface.is_some())) {
            return Err(ConfigError::PlacedInRoutedMode(arg.to_string()));
        }
        // Where an address goes unless it names its interface.
        let home = routed.as_ref().map_or(iface.as_str(), |r| r.vip_iface.as_str()).to_string();
        let mut vips: Vec<Vip> = Vec::new();
        let mut vip_groups: Vec<u8> = Vec::new();
        for &(group, arg) in &vip_args {
            let vip = Vip::resolve(arg, &home);
            let own = match host.own_ipv4(&vip.iface) {
                _ if vip.iface == iface => iface_addrs.clone(),
                Some(own) => own,
                // Routed mode's --vip-iface: the caller names it when it is missing.
                None if arg.iface.is_none() => Vec::new(),
                None => return Err(ConfigError::NoVipIface { vip: vip.addr, iface: vip.iface.clone() }),
            };
            // Only the primary address is the node's own; another copy of the shared address on
            // the interface (keepalived killed, added by hand) is adopted as a leftover at start.
            if own.first().is_some_and(|a| std::net::IpAddr::V4(*a) == vip.addr.addr) {
                return Err(ConfigError::VipIsOwnAddress(vip.addr));
            }
            if let Some(k) = vips.iter().position(|v| v.addr.addr == vip.addr.addr) {
                if vip_groups[k] != group {
                    return Err(ConfigError::VipInTwoGroups { vip: vip.addr, first: vip_groups[k], second: group });
                }
                return Err(ConfigError::DuplicateVip(vip.addr));
            }
            vips.push(vip);
            vip_groups.push(group);
        }
        let groups = args
            .vip_groups
            .iter()
            .map(|g| GroupConfig {
                id: g.id,
                priority: g.priority,
                preempt: g.preempt.unwrap_or(args.preempt),
                vips: vips.iter().zip(&vip_groups).filter(|(_, id)| **id == g.id).map(|(v, _)| v.clone()).collect(),
            })
            .collect();
        let refresh = args.garp_refresh.filter(|r| !r.is_zero());
        if let Some(refresh) = refresh.filter(|r| *r < args.interval) {
            return Err(ConfigError::GarpRefreshTooShort { refresh, interval: args.interval });
        }
        let iface_addr = *iface_addrs.first().ok_or_else(|| ConfigError::NoIpv4(iface.clone()))?;
        let mut links = links;
        if let Some(first) = links.first_mut() {
            first.addr = iface_addr;
        }
        let auth = match (&args.key_file, args.insecure_no_auth) {
            (Some(path), false) => AuthConfig::KeyFile(path.clone()),
            (None, true) => AuthConfig::InsecureNoAuth,
            (Some(_), true) => return Err(ConfigError::AuthConflict),
            (None, false) => return Err(ConfigError::NoAuth),
        };
        let mut tracked: Vec<track::TrackArg> = Vec::new();
        for t in &args.track_ifaces {
            if tracked.iter().any(|o| o.iface == t.iface) {
                return Err(ConfigError::DuplicateTrackedIface(t.iface.clone()));
            }
            host.own_ipv4(&t.iface).ok_or_else(|| ConfigError::NoTrackedIface(t.iface.clone()))?;
            tracked.push(t.clone());
        }
        let node_id = args.node_id.unwrap_or(u32::from(iface_addr));
        Ok(Self {
            iface,
            iface_addr,
            links,
            vips,
            node: NodeConfig {
                node_id,
                priority: args.priority,
                tolerance: args.tolerance,
                max_tolerance,
                preempt: args.preempt,
                leave_timeout: args.leave_timeout,
                hold_down: args.hold_down.unwrap_or(args.tolerance * HOLD_DOWN_TOLERANCES),
                refresh,
            },
            interval: args.interval,
            tick: args.tick.unwrap_or(args.interval),
            cluster_id: args.cluster,
            group: args.group,
            port: args.port,
            // One --peer list for the whole cluster: each node skips itself.
            unicast_peers: args.peers.iter().filter(|p| !iface_addrs.contains(p)).copied().collect(),
            pin_dir: args.pin_dir.clone().unwrap_or_else(|| settings::default_pin_dir(args.cluster)),
            xdp_mode: args.xdp_mode,
            rx: args.rx,
            wake: args.wake,
            pass_heartbeats: args.pass_heartbeats,
            realtime: args.realtime,
            metrics: args.metrics,
            hooks: HookConfig {
                on_active: args.on_active.clone(),
                on_standby: args.on_standby.clone(),
                notify: args.notify.clone(),
                timeout: args.hook_timeout,
            },
            checks: CheckConfig {
                commands: args.checks.clone(),
                interval: args.check_interval,
                timeout: args.check_timeout.unwrap_or(args.check_interval),
                fall: args.check_fall.max(1),
                rise: args.check_rise.max(1),
                weight: args.check_weight,
            },
            auth,
            routed,
            track: tracked,
            groups,
        })
    }

    /// The interface the shared addresses go on unless they name theirs (`@IF`): the heartbeat
    /// interface, or in routed mode `--vip-iface`.
    pub fn vip_iface(&self) -> &str {
        self.routed.as_ref().map_or(&self.iface, |r| &r.vip_iface)
    }

    /// The shared addresses as `--vip` spells them (`@IFACE` only off [`RunConfig::vip_iface`]).
    pub fn vip_names(&self) -> Vec<String> {
        self.vips.iter().map(|v| v.spelt(self.vip_iface())).collect()
    }

    /// The shared addresses alone, whatever carries them.
    pub fn shared_addrs(&self) -> Vec<SharedAddr> {
        self.vips.iter().map(|v| v.addr).collect()
    }

    /// One line saying what this configuration runs, for `check-config`.
    pub fn summary(&self) -> String {
        let vips = self.vip_names();
        let routed = self
            .routed
            .as_ref()
            .map_or(String::new(), |r| format!(" (routed: on {}, host routes in table {})", r.vip_iface, r.table));
        format!(
            "configuration OK: node {} priority {} on {}, shared {}{routed}; interval {}, tolerance {}, cluster {}",
            ha_core::node::id(self.node.node_id),
            self.node.priority,
            self.links.iter().map(|l| l.iface.as_str()).collect::<Vec<_>>().join(" + "),
            vips.join(" "),
            values::spell_duration(self.interval),
            values::spell_duration(self.node.tolerance),
            self.cluster_id,
        )
    }

    /// Settings that work but probably not as meant; logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self.tolerance_warning().into_iter().collect();
        let left = self.checks.weight.map(|w| self.node.priority.saturating_sub(w)).filter(|left| *left > 0);
        if let (Some(left), Preempt::Never | Preempt::Delay(_), false) =
            (left, self.preempt(), self.checks.commands.is_empty())
        {
            warnings.push(format!(
                "a failing check leaves priority {left}: with --preempt {} the holder keeps the address while \
                 failing (only priority 0 is handed over at once); leave --check-weight out to hand over",
                values::spell_preempt(self.preempt())
            ));
        }
        warnings
    }

    /// Fewer than two intervals of tolerance turn one lost heartbeat into a failover.
    pub fn tolerance_warning(&self) -> Option<String> {
        let ratio = self.node.tolerance.as_secs_f64() / self.interval.as_secs_f64();
        (ratio < 2.0).then(|| {
            format!("--tolerance covers only {ratio:.1} intervals: a single lost heartbeat will cause a failover")
        })
    }

    pub fn preempt(&self) -> Preempt {
        self.node.preempt
    }

    /// The timing settings as the command line spells them, for the start line.
    pub fn timings(&self) -> String {
        format!(
            "interval {}, tolerance {}, max-tolerance {}, preempt {}, hold-down {}, garp-refresh {}",
            values::spell_duration(self.interval),
            values::spell_duration(self.node.tolerance),
            values::spell_duration(self.node.max_tolerance),
            values::spell_preempt(self.preempt()),
            values::spell_period(Some(self.node.hold_down)),
            values::spell_period(self.node.refresh),
        )
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::cli::{Cli, Command};

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["ha-agent", "run", "--iface", "eth0", "--vip", "192.0.2.200/24"];
        if !extra.iter().any(|a| a.contains("auth") || *a == "--key-file") {
            argv.push("--insecure-no-auth");
        }
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parse").command {
            Command::Run(a) => *a,
            _ => unreachable!(),
        }
    }

    const OWN: [Ipv4Addr; 1] = [Ipv4Addr::new(192, 0, 2, 1)];

    #[test]
    fn defaults_validate_and_derive_node_id_and_tick() {
        let cfg = RunConfig::new(&args(&[]), &OWN).expect("valid");
        assert_eq!(cfg.node.node_id, u32::from(OWN[0]));
        assert_eq!(cfg.tick, Duration::from_millis(100));
        assert_eq!(cfg.pin_dir, PathBuf::from("/sys/fs/bpf/ha/1"));
        assert!(cfg.tolerance_warning().is_none());
        assert!(cfg.warnings().is_empty());
        assert_eq!(cfg.checks.timeout, cfg.checks.interval, "check timeout defaults to the interval");
    }

    #[test]
    fn missing_iface_or_vip_and_priority_zero_are_refused() {
        let mut a = args(&[]);
        a.iface.clear();
        assert_eq!(RunConfig::new(&a, &OWN).unwrap_err(), ConfigError::NoIface);
        let mut a = args(&[]);
        a.vips.clear();
        assert_eq!(RunConfig::new(&a, &OWN).unwrap_err(), ConfigError::NoVip);
        assert_eq!(RunConfig::new(&args(&["--priority", "0"]), &OWN).unwrap_err(), ConfigError::ZeroPriority);
    }

    #[test]
    fn a_partial_check_weight_under_preempt_never_is_warned_about() {
        let cfg = RunConfig::new(&args(&["--check", "true", "--check-weight", "30", "--preempt", "never"]), &OWN)
            .expect("valid");
        assert!(cfg.warnings().iter().any(|w| w.contains("leaves priority 70")), "{:?}", cfg.warnings());
        assert!(cfg.warnings().iter().any(|w| w.contains("with --preempt never the")), "{:?}", cfg.warnings());
        let cfg = RunConfig::new(&args(&["--check", "true", "--preempt", "never"]), &OWN).expect("valid");
        assert!(cfg.warnings().is_empty(), "the default weight hands over: {:?}", cfg.warnings());
    }

    #[test]
    fn timings_are_spelt_as_the_command_line_takes_them() {
        let cfg = RunConfig::new(&args(&["--preempt", "delay=5s", "--hold-down", "0s"]), &OWN).expect("valid");
        assert_eq!(
            cfg.timings(),
            "interval 100ms, tolerance 350ms, max-tolerance 700ms, preempt delay=5s, hold-down off, garp-refresh off"
        );
        let cfg = RunConfig::new(&args(&["--garp-refresh", "30s"]), &OWN).expect("valid");
        assert!(cfg.timings().ends_with("preempt always, hold-down 1s50ms, garp-refresh 30s"), "{}", cfg.timings());
    }

    #[test]
    fn tolerance_must_exceed_interval_and_says_by_how_much() {
        let err = RunConfig::new(&args(&["--interval", "10ms", "--tolerance", "10ms"]), &OWN).unwrap_err();
        assert!(err.to_string().contains("covers 1.0 intervals"), "{err}");
        let cfg = RunConfig::new(&args(&["--interval", "10ms", "--tolerance", "15ms"]), &OWN).expect("valid");
        assert!(cfg.tolerance_warning().is_some());
    }

    #[test]
    fn max_tolerance_defaults_to_twice_the_tolerance_and_may_not_be_below_it() {
        let cfg = RunConfig::new(&args(&["--interval", "10ms", "--tolerance", "40ms"]), &OWN).expect("valid");
        assert_eq!(cfg.node.max_tolerance, Duration::from_millis(80));
        let cfg = RunConfig::new(&args(&["--tolerance", "400ms", "--max-tolerance", "400ms"]), &OWN).expect("valid");
        assert_eq!(cfg.node.max_tolerance, cfg.node.tolerance);
        let err = RunConfig::new(&args(&["--tolerance", "400ms", "--max-tolerance", "300ms"]), &OWN).unwrap_err();
        assert!(matches!(err, ConfigError::MaxToleranceTooShort { .. }), "{err}");
    }

    #[test]
    fn groups_are_checked_before_anything_and_share_out_the_addresses() {
        let grouped = |extra: &[&str]| {
            let mut argv = vec!["ha-agent", "run", "--iface", "eth0", "--insecure-no-auth"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).expect("parse").command {
                Command::Run(a) => RunConfig::new(&a, &OWN),
                _ => unreachable!(),
            }
        };
        let cfg = grouped(&[
            "--vip-group",
            "7:200:192.0.2.7/24,192.0.2.8/24",
            "--vip-group",
            "9:100:192.0.2.9/24:preempt=never",
        ])
        .expect("valid");
        assert_eq!(cfg.groups.len(), 2);
        assert_eq!((cfg.groups[0].id, cfg.groups[0].priority, cfg.groups[0].vips.len()), (7, 200, 2));
        assert_eq!((cfg.groups[1].preempt, cfg.groups[1].vips.len()), (Preempt::Never, 1));
        assert_eq!(cfg.vips.len(), 3, "every group's addresses are the run's");
        let err = |extra: &[&str]| grouped(extra).expect_err("refused").to_string();
        assert!(
            err(&["--vip-group", "7:1:192.0.2.7/24", "--vip-group", "7:1:192.0.2.8/24"])
                .contains("group 7 is given twice")
        );
        assert!(
            err(&["--vip-group", "7:1:192.0.2.7/24", "--vip-group", "8:1:192.0.2.7/24"])
                .contains("192.0.2.7/24 is in group 7 and in group 8")
        );
        assert!(err(&["--vip-group", "7:1:192.0.2.7/24", "--vip", "192.0.2.8/24"]).contains("--vip with --vip-group"));
        assert!(err(&["--vip-group", "7:1:192.0.2.7/24", "--wake", "event"]).contains("--wake poll"));
        let many: Vec<String> = (1..=17).map(|i| format!("--vip-group={i}:1:192.0.2.{i}/32")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(err(&many).contains("17 groups: at most 16"));
        let cfg = RunConfig::new(&args(&[]), &OWN).expect("valid");
        assert!(cfg.groups.is_empty(), "flat options: group 0 alone");
    }

    /// eth0 with 192.0.2.1, eth1 with 10.9.0.1, nothing else.
    struct TwoIfaces;

    impl HostFacts for TwoIfaces {
        fn own_ipv4(&self, iface: &str) -> Option<Vec<Ipv4Addr>> {
            match iface {
                "eth0" => Some(vec![Ipv4Addr::new(192, 0, 2, 1)]),
                "eth1" => Some(vec![Ipv4Addr::new(10, 9, 0, 1)]),
                _ => None,
            }
        }
    }

    #[test]
    fn an_address_on_another_interface_is_checked_against_that_interface() {
        let cfg = RunConfig::new(&args(&["--vip", "198.51.100.10/32@eth1"]), &TwoIfaces).expect("valid");
        assert_eq!(cfg.vips[0].iface, "eth0");
        assert_eq!(cfg.vips[1].iface, "eth1");
        assert_eq!(cfg.vip_names(), ["192.0.2.200/24", "198.51.100.10/32@eth1"]);
        assert!(cfg.summary().contains("shared 192.0.2.200/24 198.51.100.10/32@eth1"), "{}", cfg.summary());
        let cfg = RunConfig::new(&args(&["--iface", "eth1"]), &TwoIfaces).expect("valid");
        assert!(cfg.summary().contains(" on eth0 + eth1, "), "{}", cfg.summary());
        let err = RunConfig::new(&args(&["--vip", "198.51.100.10/32@eth9"]), &TwoIfaces).unwrap_err();
        assert_eq!(err.to_string(), "--vip 198.51.100.10/32@eth9: no interface named eth9 (check `ip link`)");
        let err = RunConfig::new(&args(&["--vip", "10.9.0.1/24@eth1"]), &TwoIfaces).unwrap_err();
        assert!(matches!(err, ConfigError::VipIsOwnAddress(_)), "{err}");
        // The same address twice is refused whichever interfaces carry it.
        let err = RunConfig::new(&args(&["--vip", "192.0.2.200/32@eth1"]), &TwoIfaces).unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateVip(_)), "{err}");
    }

    #[test]
    fn routed_mode_puts_every_address_on_the_vip_interface() {
        let mut a = args(&["--mode", "routed"]);
        a.vips = vec!["203.0.113.200/32@eth1".parse().expect("addr")];
        let err = RunConfig::new(&a, &TwoIfaces).unwrap_err();
        assert_eq!(err, ConfigError::PlacedInRoutedMode("203.0.113.200/32@eth1".into()));
        a.vips = vec!["203.0.113.200/32".parse().expect("addr")];
        let cfg = RunConfig::new(&a, &TwoIfaces).expect("valid: lo is checked by the caller");
        assert_eq!((cfg.vips[0].iface.as_str(), cfg.vip_names()), ("lo", vec!["203.0.113.200/32".to_string()]));
    }

    #[test]
    fn redundant_heartbeat_links_are_checked_each() {
        let cfg = RunConfig::new(&args(&["--iface", "eth1"]), &TwoIfaces).expect("valid");
        let links: Vec<(&str, Ipv4Addr)> = cfg.links.iter().map(|l| (l.iface.as_str(), l.addr)).collect();
        assert_eq!(links, [("eth0", Ipv4Addr::new(192, 0, 2, 1)), ("eth1", Ipv4Addr::new(10, 9, 0, 1))]);
        assert_eq!(cfg.iface, "eth0", "the first is the node's");
        let err = RunConfig::new(&args(&["--iface", "eth9"]), &TwoIfaces).unwrap_err();
        assert_eq!(err.to_string(), "--iface eth9: no such interface (check `ip link`)");
        let err = RunConfig::new(&args(&["--iface", "eth0"]), &TwoIfaces).unwrap_err();
        assert_eq!(err, ConfigError::DuplicateIface("eth0".into()));
        let err = RunConfig::new(&args(&["--iface", "eth1", "--rx", "socket"]), &TwoIfaces).unwrap_err();
        assert_eq!(err, ConfigError::SocketRxOneLink);
        let err = RunConfig::new(&args(&["--iface", "eth1", "--peer", "192.0.2.2"]), &TwoIfaces).unwrap_err();
        assert_eq!(err, ConfigError::UnicastOneLink);
        let nine: Vec<&str> =
            (1..=8).flat_map(|i| ["--iface", ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"][i - 1]]).collect();
        assert_eq!(RunConfig::new(&args(&nine), &OWN).unwrap_err(), ConfigError::TooManyLinks(9));
    }

    #[test]
    fn tracked_interfaces_must_exist_and_be_given_once() {
        let cfg = RunConfig::new(&args(&["--track-iface", "eth1:30"]), &TwoIfaces).expect("valid");
        assert_eq!(cfg.track[0].weight, Some(30));
        let err = RunConfig::new(&args(&["--track-iface", "eth9"]), &TwoIfaces).unwrap_err();
        assert_eq!(err.to_string(), "--track-iface eth9: no such interface (check `ip link`)");
        let err = RunConfig::new(&args(&["--track-iface", "eth1", "--track-iface", "eth1:5"]), &TwoIfaces).unwrap_err();
        assert_eq!(err, ConfigError::DuplicateTrackedIface("eth1".into()));
    }

    #[test]
    fn own_address_as_vip_and_duplicates_are_refused() {
        let mut a = args(&[]);
        a.vips = vec!["192.0.2.1/24".parse().expect("addr")];
        assert!(matches!(RunConfig::new(&a, &OWN), Err(ConfigError::VipIsOwnAddress(_))));
        // A secondary copy is a leftover (keepalived's, say), adopted at start.
        let leftover = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 200)];
        assert!(RunConfig::new(&args(&[]), &leftover).is_ok());
        let a = args(&["--vip", "192.0.2.200/24"]);
        assert!(matches!(RunConfig::new(&a, &OWN), Err(ConfigError::DuplicateVip(_))));
        assert!(matches!(RunConfig::new(&args(&[]), &[]), Err(ConfigError::NoIpv4(_))));
    }

    #[test]
    fn more_shared_addresses_than_xdp_watches_are_refused() {
        let mut a = args(&[]);
        a.vips = (1..=65u8).map(|i| format!("198.51.100.{i}/24").parse().expect("addr")).collect();
        assert_eq!(RunConfig::new(&a, &OWN).unwrap_err(), ConfigError::TooManyVips(65));
        a.vips.pop();
        assert!(RunConfig::new(&a, &OWN).is_ok(), "64 is the most");
    }

    #[test]
    fn hold_down_defaults_to_three_tolerances_and_garp_refresh_to_off() {
        let cfg = RunConfig::new(&args(&["--tolerance", "200ms"]), &OWN).expect("valid");
        assert_eq!(cfg.node.hold_down, Duration::from_millis(600));
        assert_eq!(cfg.node.refresh, None);
        let cfg = RunConfig::new(&args(&["--hold-down", "0s", "--garp-refresh", "30s"]), &OWN).expect("valid");
        assert_eq!((cfg.node.hold_down, cfg.node.refresh), (Duration::ZERO, Some(Duration::from_secs(30))));
        assert_eq!(RunConfig::new(&args(&["--garp-refresh", "0s"]), &OWN).expect("valid").node.refresh, None);
        let err = RunConfig::new(&args(&["--garp-refresh", "50ms"]), &OWN).unwrap_err();
        assert!(matches!(err, ConfigError::GarpRefreshTooShort { .. }), "{err}");
    }

    #[test]
    fn one_peer_list_serves_every_node() {
        let cfg = RunConfig::new(&args(&["--peer", "192.0.2.1", "--peer", "192.0.2.2"]), &OWN).expect("valid");
        assert_eq!(cfg.unicast_peers, vec![Ipv4Addr::new(192, 0, 2, 2)], "its own address is skipped");
        assert_eq!(cfg.rx, RxMode::Auto);
    }

    #[test]
    fn heartbeat_authentication_is_chosen_explicitly() {
        let cfg = RunConfig::new(&args(&["--key-file", "/etc/ha/keys"]), &OWN).expect("valid");
        assert_eq!(cfg.auth, AuthConfig::KeyFile("/etc/ha/keys".into()));
        assert_eq!(RunConfig::new(&args(&[]), &OWN).expect("valid").auth, AuthConfig::InsecureNoAuth);
        let mut neither = args(&[]);
        neither.insecure_no_auth = false;
        assert_eq!(RunConfig::new(&neither, &OWN).unwrap_err(), ConfigError::NoAuth);
        let both = args(&["--key-file", "k", "--insecure-no-auth"]);
        assert_eq!(RunConfig::new(&both, &OWN).unwrap_err(), ConfigError::AuthConflict);
    }

    #[test]
    fn routed_mode_takes_host_routes_and_its_own_table() {
        let routed = |extra: &[&str]| {
            let mut a = args(&["--mode", "routed"]);
            a.vips = vec!["203.0.113.200/32".parse().expect("addr")];
            let more = args(extra);
            a.route_table = more.route_table;
            a.vip_iface = more.vip_iface;
            a.garp_refresh = more.garp_refresh;
            RunConfig::new(&a, &OWN)
        };
        let cfg = routed(&[]).expect("valid");
        assert_eq!(cfg.routed, Some(RoutedConfig { table: 100, vip_iface: "lo".into() }));
        assert_eq!(cfg.vip_iface(), "lo");
        assert!(cfg.summary().contains("(routed: on lo, host routes in table 100)"), "{}", cfg.summary());
        let cfg = routed(&["--route-table", "1000", "--vip-iface", "ha0"]).expect("valid");
        assert_eq!(cfg.routed, Some(RoutedConfig { table: 1000, vip_iface: "ha0".into() }));
        assert_eq!(routed(&["--route-table", "254"]).unwrap_err(), ConfigError::ReservedTable(254));
        assert_eq!(routed(&["--garp-refresh", "30s"]).unwrap_err(), ConfigError::GarpInRoutedMode);

        let mut a = args(&["--mode", "routed"]);
        a.vips = vec!["203.0.113.200/24".parse().expect("addr")];
        let err = RunConfig::new(&a, &OWN).unwrap_err();
        assert!(matches!(err, ConfigError::NotAHostRoute(_)), "{err}");
        assert!(err.to_string().ends_with("give it as 203.0.113.200/32"), "{err}");
    }

    #[test]
    fn routed_options_without_routed_mode_are_refused() {
        let cfg = RunConfig::new(&args(&[]), &OWN).expect("valid");
        assert_eq!((cfg.routed.clone(), cfg.vip_iface()), (None, "eth0"));
        let err = RunConfig::new(&args(&["--route-table", "100"]), &OWN).unwrap_err();
        assert_eq!(err, ConfigError::RoutedOnly("route-table"));
        let err = RunConfig::new(&args(&["--vip-iface", "lo"]), &OWN).unwrap_err();
        assert_eq!(err.to_string(), "--vip-iface applies to routed mode only: add --mode routed, or leave it out");
    }
}
