//! `ha-lab`: a disposable LAN of network namespaces for ha's integration tests, demo and
//! benchmarks. One switch namespace holds a bridge; each node and the client has an `eth0`
//! veth plugged into it. Nothing is created in the host's root namespace, and everything is
//! removed on drop, on SIGINT/SIGTERM (after [`install_signal_cleanup`]) or by the next run's
//! [`sweep_leftovers`]. Needs root.

use std::net::{Ipv4Addr, Ipv6Addr};

pub mod addr_watch;
mod agents;
mod arp_watch;
pub mod bgp;
mod bound;
mod bpffs;
pub mod chaos;
mod child;
mod cleanup;
pub mod frames;
mod host;
mod inject;
mod lab;
mod loss;
mod napi;
mod netns;
mod probe;
mod tcx;

pub use agents::{AgentSet, AgentSettings, LAB_KEY, LAB_KEY_ID, LabAuth, NodeOverrides, write_key_file};
pub use arp_watch::{ArpWatcher, WATCH_IP, WATCH_MAC, mac_text};
pub use bound::within;
pub use bpffs::ensure_bpffs;
pub use child::Child;
pub use cleanup::{agent_files_under, cleanup_and_exit, install_signal_cleanup, left_behind, sweep_leftovers};
pub use host::Host;
pub use inject::FrameSender;
pub use lab::{Lab, Lan, MAX_NODES, REMOTE_NET, ROUTER_ADDR, SUB_NET, SubIface};
pub use probe::{DEFAULT_MAX_DURATION, LATE_AFTER, Outage, ProbeReport, Prober};

/// The shared address tests fail over (TEST-NET-1, never routed).
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
/// The IPv6 shared address (documentation range).
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);
/// Prefix length of the lab LAN 192.0.2.0/24.
pub const PREFIX: u8 = 24;
/// Prefix length of the lab LAN 2001:db8::/64.
pub const PREFIX6: u8 = 64;
/// Prefix of every lab's namespace names and pin dirs (`halab-<pid>-<seq>...`).
pub const NAME_PREFIX: &str = cleanup::PREFIX;

/// Names of namespaces currently in /run/netns (e.g. to assert a lab left nothing behind).
pub fn namespaces() -> anyhow::Result<Vec<String>> {
    netns::list()
}
