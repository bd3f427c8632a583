//! Types shared by the XDP program (`ha-ebpf`) and user space (`ha-agent`):
//! the heartbeat wire format, its authentication (SipHash-2-4), the rule that accepts a received
//! heartbeat and the key/value types of every BPF map.
//! `no_std`, no allocation: the kernel side decodes through the same code.
#![no_std]

pub mod accept;
pub mod answer;
pub mod auth;
pub mod ether;
pub mod links;
pub mod maps;
pub mod neighbour;
pub mod siphash;
pub mod wire;

/// Default UDP port of heartbeats.
pub const DEFAULT_PORT: u16 = 7265;
/// Default multicast group of heartbeats (organisation-local scope, RFC 2365).
pub const DEFAULT_GROUP: [u8; 4] = [239, 255, 72, 65];
