//! ARP and IPv6 neighbour discovery for the shared addresses (`ha_common::neighbour`): the fence
//! drops requests for them once the agent's stamp is stale and the kernel's answers for it
//! (`ANSWER`) ended; claims by other MACs are counted.
//! Frames are never changed, and only the fence drops any.
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    btf_maps::{Array, HashMap, PerCpuArray},
    helpers::bpf_ktime_get_ns,
    macros::btf_map,
    programs::XdpContext,
};
use ha_common::{
    ether::{ETH_P_ARP, ETH_P_IPV6, IPPROTO_ICMPV6, IPV6_HLEN, ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT},
    maps::CLAIM_EVENT_EVERY_NS,
    neighbour::{AgentStamp, LastClaim, MAX_VIPS, NeighbourStats, vip_key_v4},
};

use crate::parse::{bytes_at, layer3};

#[btf_map]
static AGENT: Array<AgentStamp, 1> = Array::new();

#[btf_map]
static VIPS: HashMap<[u8; 16], u8, { MAX_VIPS as usize }> = HashMap::new();

#[btf_map]
static LAST_CLAIM: Array<LastClaim, 1> = Array::new();

#[btf_map]
static NEIGH_STATS: PerCpuArray<NeighbourStats, 1> = PerCpuArray::new();

/// Ethernet/IPv4 ARP: hardware type 1, protocol 0x0800, lengths 6 and 4, then the operation.
const ARP_ETH_IPV4: [u8; 6] = [0, 1, 8, 0, 6, 4];
const ARP_LEN: usize = 28;
const ARP_REQUEST: u16 = 1;
/// Type, code, checksum, reserved/flags, then the 16-byte target.
const ND_LEN: usize = 24;

/// The verdict for a frame that is not a heartbeat.
#[inline(always)]
pub fn inspect(ctx: &XdpContext) -> u32 {
    let Some((ethertype, l3)) = layer3(ctx) else {
        return XDP_PASS;
    };
    match ethertype {
        ETH_P_ARP => arp(ctx, l3),
        ETH_P_IPV6 => neighbour_discovery(ctx, l3),
        _ => XDP_PASS,
    }
}

#[inline(always)]
fn arp(ctx: &XdpContext, l3: usize) -> u32 {
    let Some(a) = bytes_at::<ARP_LEN>(ctx, l3) else {
        return XDP_PASS;
    };
    if !starts_with(&a, &ARP_ETH_IPV4) {
        return XDP_PASS;
    }
    let Some(agent) = AGENT.get(0) else {
        return XDP_PASS;
    };
    let sender_mac = [a[8], a[9], a[10], a[11], a[12], a[13]];
    let sender = vip_key_v4([a[14], a[15], a[16], a[17]]);
    if is_vip(&sender) {
        claim(agent, sender_mac, sender);
    }
    // The clock before the lookup: while the agent lives, that is all a request costs.
    let request = u16::from_be_bytes([a[6], a[7]]) == ARP_REQUEST;
    if request && fenced(agent) && is_vip(&vip_key_v4([a[24], a[25], a[26], a[27]])) {
        return fence_drop();
    }
    XDP_PASS
}

#[inline(always)]
fn neighbour_discovery(ctx: &XdpContext, l3: usize) -> u32 {
    let Some(ip) = bytes_at::<8>(ctx, l3) else {
        return XDP_PASS;
    };
    // No extension headers: neighbour discovery never carries any.
    if ip[0] >> 4 != 6 || ip[6] != IPPROTO_ICMPV6 {
        return XDP_PASS;
    }
    let Some(nd) = bytes_at::<ND_LEN>(ctx, l3 + IPV6_HLEN) else {
        return XDP_PASS;
    };
    if nd[0] != ND_NEIGHBOR_SOLICIT && nd[0] != ND_NEIGHBOR_ADVERT {
        return XDP_PASS;
    }
    let target = [
        nd[8], nd[9], nd[10], nd[11], nd[12], nd[13], nd[14], nd[15], nd[16], nd[17], nd[18], nd[19], nd[20], nd[21],
        nd[22], nd[23],
    ];
    if !is_vip(&target) {
        return XDP_PASS;
    }
    let Some(agent) = AGENT.get(0) else {
        return XDP_PASS;
    };
    if nd[0] == ND_NEIGHBOR_ADVERT {
        if let Some(src) = bytes_at::<6>(ctx, 6) {
            claim(agent, src, target);
        }
        return XDP_PASS;
    }
    if fenced(agent) { fence_drop() } else { XDP_PASS }
}

/// Byte-wise prefix comparison: a slice `==` may become a call to `memcmp`, which BPF lacks.
#[inline(always)]
fn starts_with<const N: usize, const M: usize>(bytes: &[u8; N], prefix: &[u8; M]) -> bool {
    let mut i = 0;
    while i < M && i < N {
        if bytes[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn is_vip(key: &[u8; 16]) -> bool {
    VIPS.get_ptr(key).is_some()
}

/// Whether the fence is up: the stamp is stale and the kernel no longer answers heartbeats for
/// this node (`ANSWER`).
#[inline(always)]
fn fenced(agent: &AgentStamp) -> bool {
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    agent.tolerance_ns != 0 && agent.fenced(unsafe { bpf_ktime_get_ns() }, crate::answer::until_ns())
}

#[inline(always)]
fn fence_drop() -> u32 {
    count(|s| s.fenced += 1);
    XDP_DROP
}

/// Counts a claim for `addr` by `mac`, unless `mac` is this interface's.
#[inline(always)]
fn claim(agent: &AgentStamp, mac: [u8; 6], addr: [u8; 16]) {
    if starts_with(&mac, &agent.mac) {
        return;
    }
    count(|s| s.claims += 1);
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let claim = LastClaim { at_ns: unsafe { bpf_ktime_get_ns() }, addr, mac, _pad: [0; 2] };
    let previous = LAST_CLAIM.get(0).map_or(0, |c| c.at_ns);
    let _ = LAST_CLAIM.set(0, &claim, 0);
    // A flood of claims wakes the agent at most once a millisecond.
    if claim.at_ns.saturating_sub(previous) >= CLAIM_EVENT_EVERY_NS {
        crate::wake::post_claim(claim.at_ns);
    }
}

#[inline(always)]
fn count(bump: impl FnOnce(&mut NeighbourStats)) {
    if let Some(stats) = NEIGH_STATS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, and XDP does not preempt itself on one CPU.
        bump(unsafe { &mut *stats });
    }
}
