//! `ha-agent cleanup`: what an agent that did not stop cleanly (killed, crashed) leaves behind,
//! removed once it has exited (systemd's `ExecStopPost=`): its copies of the shared addresses,
//! its XDP program (the pinned link, whose fence would otherwise keep refusing ARP for them)
//! and its pinned maps; in routed mode also its host routes, which its BGP speaker would
//! otherwise keep announcing. Nothing is touched while an agent holds the instance or an address.
use std::path::Path;

use crate::{
    instance::{InstanceError, InstanceLock},
    netlink::{SharedAddr, Vip, address::AddressManager, route::RouteManager, vip},
    rx::ebpf,
};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An agent runs for this instance or one of the addresses: nothing was touched.
    AgentRunning,
    Cleaned {
        /// Copies of the shared addresses removed.
        addresses: usize,
        /// Whether an XDP program was detached.
        xdp: bool,
    },
}

/// `vips`: each address with the interface it was on (in routed mode `--vip-iface`);
/// `route_table`: routed mode's table, whose routes of these addresses (ours only) go too.
pub fn run(vips: &[Vip], pin_dir: &Path, route_table: Option<u32>) -> anyhow::Result<Outcome> {
    let addrs: Vec<SharedAddr> = vips.iter().map(|v| v.addr).collect();
    // Held until the end: an agent starting meanwhile waits for none of this, it is refused.
    let _lock = match InstanceLock::acquire(pin_dir, &addrs) {
        Ok(lock) => lock,
        Err(InstanceError::Busy(_) | InstanceError::AddressTaken(_)) => return Ok(Outcome::AgentRunning),
        Err(e) => return Err(e.into()),
    };
    let xdp = ebpf::remove_leftover_pins(pin_dir)
        .map_err(|e| anyhow::anyhow!("removing the pins in {}: {e}", pin_dir.display()))?;
    if let (Some(table), Some(first)) = (route_table, vips.first()) {
        // Routed mode keeps every address on --vip-iface.
        let routes = RouteManager::new(table, AddressManager::new(&first.iface)?.ifindex())?;
        for vip in &addrs {
            routes.remove(vip)?;
        }
    }
    let mut removed = 0;
    for iface in vip::interfaces(vips) {
        let addresses = AddressManager::new(iface)?;
        for vip in vips.iter().filter(|v| v.iface == iface) {
            // Only copies an agent added (labelled; every IPv6 copy): the agent adopts other
            // copies at its next start, but a cleanup does not guess whose they are.
            for copy in addresses.copies(vip.addr.addr)?.into_iter().filter(|c| c.ours) {
                addresses.remove(&copy.addr)?;
                removed += 1;
            }
        }
    }
    Ok(Outcome::Cleaned { addresses: removed, xdp })
}
