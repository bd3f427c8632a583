//! The interface through the kernel: the shared address on it (add, remove, watch, guard), its
//! link state, and its own addresses.
pub mod address;
pub(crate) mod guard;
pub mod iface;
pub(crate) mod link;
mod shared_addr;

pub use shared_addr::{SharedAddr, SharedAddrError};
