//! The interface through the kernel: the shared address on it (add, remove, watch, guard), its
//! link state, its own addresses, and in routed mode the host routes a BGP speaker exports.
pub mod address;
pub(crate) mod guard;
pub mod iface;
pub(crate) mod link;
pub(crate) mod qdisc;
pub mod route;
mod shared_addr;
pub mod vip;
pub mod vip_links;

pub use shared_addr::{SharedAddr, SharedAddrError};
pub use vip::{Vip, VipArg};
