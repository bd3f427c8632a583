//! The XDP program's watch over neighbour discovery (ARP, IPv6 NS/NA) for the shared addresses:
//! map names and value types, shared by both sides.
//!
//! - Fence: the agent stamps [`AgentStamp`] in `AGENT` while it runs. Once the stamp is older
//!   than its tolerance (the agent died or hangs) and the kernel no longer answers heartbeats
//!   for it (`ANSWER`, see `crate::answer`: while it does, peers hear this node as live, so it
//!   keeps answering ARP for its address; the bound is then `until_ns`), the program drops ARP
//!   requests and neighbour solicitations for the shared addresses, so this node's kernel stops
//!   answering for an address a live peer has taken by then. The XDP link is pinned, so this
//!   outlives the agent.
//! - Claims: an ARP packet whose sender is a shared address, or a neighbour advertisement for
//!   one, from a MAC other than this interface's, is recorded in `LAST_CLAIM` and counted in
//!   `NEIGH_STATS` (and passed on): the agent tells its core, which decides whether to announce
//!   the address again.

/// `AGENT`: array of one [`AgentStamp`], written by the agent.
pub const AGENT_MAP: &str = "AGENT";
/// `VIPS`: the shared addresses ([`vip_key`] -> 1), written by the agent at start.
pub const VIPS_MAP: &str = "VIPS";
/// `LAST_CLAIM`: array of one [`LastClaim`], written by XDP.
pub const LAST_CLAIM_MAP: &str = "LAST_CLAIM";
/// `NEIGH_STATS`: per-CPU array of one [`NeighbourStats`], written by XDP.
pub const NEIGH_STATS_MAP: &str = "NEIGH_STATS";
/// Capacity of `VIPS`: the most shared addresses one agent manages.
pub const MAX_VIPS: u32 = 64;
/// File name of the pinned XDP link in the pin directory: the program stays attached after the
/// agent dies, so the fence can act.
pub const LINK_PIN: &str = "xdp_link";

/// What the agent tells the program about itself.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentStamp {
    /// `CLOCK_MONOTONIC` (as `bpf_ktime_get_ns`) of the agent's last sign of life.
    pub stamp_ns: u64,
    /// The fence acts once the stamp is older than this; 0: never (no agent configured it).
    pub tolerance_ns: u64,
    /// This interface's MAC: claims from it are our own.
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

impl AgentStamp {
    /// Whether the agent is presumed dead at `now_ns`: the fence is up. `answer_until_ns`: the
    /// kernel answers peers' heartbeats for this node until then (`Answer::until_ns`, 0: not
    /// at all); until then its peers hear it as the holder, so the fence stays down.
    #[inline(always)]
    pub const fn fenced(&self, now_ns: u64, answer_until_ns: u64) -> bool {
        self.tolerance_ns != 0 && now_ns.saturating_sub(self.stamp_ns) > self.tolerance_ns && now_ns >= answer_until_ns
    }
}

/// The last claim for a shared address by another MAC. Claims racing on two CPUs may mix
/// their fields: the agent only needs to learn that one happened, when, and roughly by whom.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastClaim {
    /// `bpf_ktime_get_ns()` of the claim; 0: none yet.
    pub at_ns: u64,
    /// The address claimed, as a `VIPS` key ([`vip_key_v4`] for IPv4).
    pub addr: [u8; 16],
    /// Who claimed it (the ARP sender's hardware address, or the advertisement's Ethernet source).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Counters of the neighbour watch; one instance per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighbourStats {
    /// Claims for a shared address by another MAC.
    pub claims: u64,
    /// ARP requests and neighbour solicitations for a shared address dropped by the fence.
    pub fenced: u64,
}

impl NeighbourStats {
    /// Sum of the per-CPU instances.
    pub fn add(&mut self, other: &NeighbourStats) {
        self.claims += other.claims;
        self.fenced += other.fenced;
    }
}

/// The `VIPS` key of an IPv4 address: IPv4-mapped, so one map serves both families.
#[inline(always)]
pub const fn vip_key_v4(addr: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3]]
}

/// The IPv4 address of a [`vip_key_v4`] key, if it is one.
pub fn v4_of_key(key: &[u8; 16]) -> Option<[u8; 4]> {
    (key[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).then(|| [key[12], key[13], key[14], key[15]])
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] data with explicit padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::AgentStamp {}
    unsafe impl aya::Pod for super::LastClaim {}
    unsafe impl aya::Pod for super::NeighbourStats {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_rises_only_past_the_tolerance_and_never_unconfigured() {
        let stamp = AgentStamp { stamp_ns: 1_000, tolerance_ns: 100, ..Default::default() };
        assert!(!stamp.fenced(1_000, 0));
        assert!(!stamp.fenced(1_100, 0), "exactly one tolerance old is still alive");
        assert!(stamp.fenced(1_101, 0));
        assert!(!stamp.fenced(500, 0), "a stamp from the future (another CPU's clock read) is alive");
        assert!(!AgentStamp::default().fenced(u64::MAX, 0), "no agent configured it: no fence");
    }

    #[test]
    fn the_fence_waits_for_the_kernel_s_answers_to_end() {
        let stamp = AgentStamp { stamp_ns: 1_000, tolerance_ns: 100, ..Default::default() };
        assert!(!stamp.fenced(1_500, 2_000), "the kernel still answers for the holder");
        assert!(!stamp.fenced(1_999, 2_000));
        assert!(stamp.fenced(2_000, 2_000), "answers ended at 2000: the bound is `until`");
        assert!(stamp.fenced(1_101, 1_050), "answers that ended before the stamp aged change nothing");
    }

    #[test]
    fn ipv4_keys_round_trip_and_ipv6_keys_are_not_ipv4() {
        let key = vip_key_v4([192, 0, 2, 200]);
        assert_eq!(v4_of_key(&key), Some([192, 0, 2, 200]));
        let v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0];
        assert_eq!(v4_of_key(&v6), None);
    }
}
