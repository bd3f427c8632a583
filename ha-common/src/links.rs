//! Heartbeats per link: with several heartbeat interfaces (`--iface` repeated) every heartbeat
//! goes out on each, with the same sequence number. The peer record (`PEERS`) keeps the newest
//! from any link, which is what liveness needs; `PEER_LINKS` says which links carry a peer's
//! heartbeats, for the operator and for "a link to peer X is down" (decided in `ha-core`).
//!
//! A link is credited with a heartbeat that was recorded (the newest), and with an authentic
//! copy of the newest recorded heartbeat (the same heartbeat, come over another link later):
//! a copy counts for its link, never for the peer's liveness.

/// `PEER_LINKS`: [`LinkKey`] -> [`LinkRecord`], written by XDP.
pub const PEER_LINKS_MAP: &str = "PEER_LINKS";
/// Capacity of `PEER_LINKS`: every peer on up to 8 links (corosync's knet runs up to 8).
pub const MAX_PEER_LINKS: u32 = crate::maps::MAX_PEERS * MAX_LINKS;
/// The most heartbeat links one agent uses.
pub const MAX_LINKS: u32 = 8;

/// A peer on one link: the interface the heartbeat came in on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkKey {
    pub node_id: u32,
    pub ifindex: u32,
}

/// What one link carried of one peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkRecord {
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) of its last heartbeat on this link.
    pub last_seen_ns: u64,
    /// Heartbeats of this peer this link carried (first copies and later ones).
    pub received: u64,
    /// The counter of the last heartbeat of this peer this link carried.
    pub counter: u64,
}

impl LinkRecord {
    /// The first record of a peer on a link, for its heartbeat with `counter`.
    #[inline(always)]
    pub const fn first(now_ns: u64, counter: u64) -> Self {
        Self { last_seen_ns: now_ns, received: 1, counter }
    }

    /// Credits the link with the peer's heartbeat of `counter`; whether it is the first copy
    /// of that heartbeat on this link (a duplicate on the same link is not).
    #[inline(always)]
    pub fn note(&mut self, now_ns: u64, counter: u64) -> bool {
        self.last_seen_ns = now_ns;
        self.received += 1;
        let first = self.counter != counter;
        self.counter = counter;
        first
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` integers, no padding.
    unsafe impl aya::Pod for super::LinkKey {}
    // SAFETY: plain `repr(C)` integers, no padding.
    unsafe impl aya::Pod for super::LinkRecord {}
}
