//! Routed mode: while this node claims the shared addresses, a host route for each sits in a
//! dedicated kernel routing table; a BGP speaker beside the agent (BIRD's `protocol kernel` with
//! `learn`, FRR's `ip import-table`) exports exactly those routes. The route is the claim, the
//! address on `--vip-iface` the service.
//!
//! The route's protocol number says which: [`HELD`] while this node claims the address,
//! [`HANDED_OVER`] during the grace after a hand-over (see `ha_core::linger`), when the address
//! is still here for packets on their way but the successor should win. The speaker announces
//! a handed-over route as less preferred (BIRD: an AS-path prepend on `krt_source`), so the
//! router moves to the successor as soon as it has the successor's route, never before; the
//! route goes (a withdrawal) with the address at the end of the grace. Make-before-break then
//! does not depend on how fast the successor's announcement travels.
//!
//! Changes go through rtnetlink on a private current-thread runtime, like `address`.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::route::{RouteMessage, RouteProtocol, RouteScope},
};
use thiserror::Error;

use super::SharedAddr;

/// `--mode`: how clients are pointed at the holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AddressMode {
    /// The address on the heartbeat interface; gratuitous ARP / unsolicited NA re-point clients.
    L2,
    /// A host route in a kernel table that a BGP speaker announces; no ARP involved.
    Routed,
}

impl AddressMode {
    pub fn name(self) -> &'static str {
        match self {
            AddressMode::L2 => "l2",
            AddressMode::Routed => "routed",
        }
    }
}

/// The routing protocol number of a route this node claims (`ip route ... proto 99`). Our two
/// numbers show whose the routes are and let a start remove exactly a crashed run's leftovers;
/// any number but the kernel's own (2) and BIRD's (12) is one BIRD's `learn` imports.
pub const HELD: u8 = 99;
/// The protocol number of a route handed over, kept for the grace: to be announced as less
/// preferred.
pub const HANDED_OVER: u8 = 98;
/// Default `--route-table`.
pub const DEFAULT_TABLE: u32 = 100;
/// Default `--vip-iface`.
pub const DEFAULT_VIP_IFACE: &str = "lo";
/// Tables the kernel itself uses (default, main, local): our routes there would route traffic.
pub const RESERVED_TABLES: [u32; 3] = [253, 254, 255];
/// Longest wait for the kernel to answer one request (it answers at once; see `address`).
const NL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Error)]
pub enum RouteError {
    #[error("cannot set up netlink for routes: {0}")]
    Setup(io::Error),
    #[error("{action}: {cause}{}", if cause.raw_os_error() == Some(libc::EPERM) { " (the agent needs root or CAP_NET_ADMIN)" } else { "" })]
    Netlink { action: String, cause: io::Error },
}

/// Adds and removes the host routes of the shared addresses in one table (blocking facade;
/// call it from plain threads only, as `AddressManager`).
pub struct RouteManager {
    table: u32,
    ifindex: u32,
    handle: Handle,
    runtime: tokio::runtime::Runtime,
}

impl RouteManager {
    /// Opens netlink in the calling thread's namespace; routes point at `ifindex`.
    pub fn new(table: u32, ifindex: u32) -> Result<Self, RouteError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(RouteError::Setup)?;
        let handle = {
            let _ctx = runtime.enter();
            let (connection, handle, _unsolicited) = rtnetlink::new_connection().map_err(RouteError::Setup)?;
            runtime.spawn(connection);
            handle
        };
        Ok(Self { table, ifindex, handle, runtime })
    }

    pub fn table(&self) -> u32 {
        self.table
    }

    /// Puts the host route of `a` into the table as claimed (the announcement), replacing a
    /// handed-over one in place so that the speaker never sees it missing.
    pub fn claim(&self, a: &SharedAddr) -> Result<(), RouteError> {
        self.put(a, HELD)
    }

    /// Marks the host route of `a` as handed over (less preferred), in place.
    pub fn hand_over(&self, a: &SharedAddr) -> Result<(), RouteError> {
        self.put(a, HANDED_OVER)
    }

    fn put(&self, a: &SharedAddr, protocol: u8) -> Result<(), RouteError> {
        let msg = route_message(a.addr, self.table, protocol, Some(self.ifindex));
        self.block_on(self.handle.route().add(msg).replace().execute()).map_err(|cause| RouteError::Netlink {
            action: format!("cannot put the route of {} into table {}", a.addr, self.table),
            cause,
        })
    }

    /// Removes our host route of `a` (the withdrawal); already absent is success. Only a route
    /// with one of our protocol numbers goes: one an operator put there is left alone.
    pub fn remove(&self, a: &SharedAddr) -> Result<(), RouteError> {
        for protocol in [HELD, HANDED_OVER] {
            let msg = route_message(a.addr, self.table, protocol, None);
            match self.block_on(self.handle.route().del(msg).execute()) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                other => other.map_err(|cause| RouteError::Netlink {
                    action: format!("cannot remove the route of {} from table {}", a.addr, self.table),
                    cause,
                })?,
            }
        }
        Ok(())
    }

    fn block_on<F>(&self, fut: F) -> io::Result<()>
    where
        F: std::future::Future<Output = Result<(), rtnetlink::Error>>,
    {
        self.runtime.block_on(async {
            match tokio::time::timeout(NL_TIMEOUT, fut).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(rtnetlink::Error::NetlinkError(msg))) => Err(msg.to_io()),
                Ok(Err(other)) => Err(io::Error::other(other.to_string())),
                Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut)),
            }
        })
    }
}

/// `ip route replace ADDR/32 dev IF table N proto P scope link`; without an interface, the
/// delete that matches it (any scope, as `ip route del` asks).
fn route_message(addr: IpAddr, table: u32, protocol: u8, ifindex: Option<u32>) -> RouteMessage {
    let v4 = |a| RouteMessageBuilder::<Ipv4Addr>::new().destination_prefix(a, 32);
    let v6 = |a| RouteMessageBuilder::<Ipv6Addr>::new().destination_prefix(a, 128);
    match addr {
        IpAddr::V4(a) => finish(v4(a), table, protocol, ifindex),
        IpAddr::V6(a) => finish(v6(a), table, protocol, ifindex),
    }
}

fn finish<T>(builder: RouteMessageBuilder<T>, table: u32, protocol: u8, ifindex: Option<u32>) -> RouteMessage {
    let builder = builder.table_id(table).protocol(RouteProtocol::from(protocol));
    match ifindex {
        Some(i) => builder.output_interface(i).scope(RouteScope::Link).build(),
        None => builder.scope(RouteScope::NoWhere).build(),
    }
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::route::RouteAttribute;

    use super::*;

    #[test]
    fn a_host_route_in_our_table_with_the_protocol_of_its_state() {
        let m = route_message("203.0.113.200".parse().expect("addr"), 100, HELD, Some(7));
        assert_eq!(m.header.destination_prefix_length, 32);
        assert_eq!(m.header.protocol, RouteProtocol::from(HELD));
        assert_eq!(m.header.scope, RouteScope::Link);
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)), "{m:?}");
        let m = route_message("2001:db8::200".parse().expect("addr"), 1000, HANDED_OVER, None);
        assert_eq!(m.header.protocol, RouteProtocol::from(HANDED_OVER));
        assert_eq!(m.header.scope, RouteScope::NoWhere);
        assert_eq!(m.header.destination_prefix_length, 128);
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)), "{m:?}");
        assert!(!m.attributes.iter().any(|a| matches!(a, RouteAttribute::Oif(_))), "{m:?}");
    }
}
