//! The kernel's answer (`ha_common::answer`): while `ANSWER` is in force, an accepted heartbeat
//! that asks for one is turned into this node's own, in place, and sent back where it came
//! from, or to the group it was sent to (`Answer::group_gap_ns`), out of the interface it came
//! in on (`XDP_TX`). No policy: the agent decides when to answer, with what and to whom.
use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_TX},
    btf_maps::{Array, HashMap},
    helpers::bpf_ktime_get_ns,
    macros::btf_map,
    programs::XdpContext,
};
use ha_common::{
    answer::{self, HeartbeatWords, IPV4_HLEN, UDP_LEN},
    auth::NO_KEY,
    ether::{ETH_P_IPV4, UDP_HLEN},
    maps::{Answer, AnswerIface, BPF_F_MMAPABLE, Counters, MAX_ANSWER_IFACES, XDP_FLAG_INSECURE_NO_AUTH},
    wire::{HEARTBEAT_LEN, be_u32, be_u64},
};

use crate::parse::{bytes_at, layer3};

#[btf_map]
pub(crate) static ANSWER: Array<Answer, 1> = Array::new();

#[btf_map]
static ANSWER_IFACES: HashMap<u32, AnswerIface, { MAX_ANSWER_IFACES as usize }> = HashMap::new();

#[btf_map]
static COUNTERS: Array<Counters, 1, BPF_F_MMAPABLE> = Array::new();

/// The time up to which the kernel answers for this node (0: it does not): the fence waits
/// for it.
#[inline(always)]
pub fn until_ns() -> u64 {
    ANSWER.get(0).map_or(0, |a| a.until_ns)
}

/// The verdict for an accepted heartbeat whose payload (`payload`, a copy) starts at
/// `offset`: `XDP_TX` with the answer in its place, or `XDP_DROP` when there is none to give.
#[inline(always)]
pub fn reply(ctx: &XdpContext, offset: usize, payload: &mut HeartbeatWords) -> u32 {
    let Some(a) = ANSWER.get_ptr(0) else {
        return XDP_DROP;
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a map value, valid during this run; the agent replaces it whole, and never the
    // slot in force (see `Answer`).
    let a = unsafe { &*a };
    if !a.in_force(now) || !answer::asks(answer::as_bytes(payload)) {
        return XDP_DROP;
    }
    let Some(iface) = ANSWER_IFACES.get_ptr(&(ctx.ingress_ifindex() as u32)) else {
        return XDP_DROP;
    };
    // SAFETY: as above.
    let iface = unsafe { &*iface };
    let Some(l3) = plain_frame(ctx, offset) else {
        return XDP_DROP;
    };
    let template = a.template();
    let key = match answer::key_id(template) {
        NO_KEY if crate::HA_FLAGS.load() & XDP_FLAG_INSECURE_NO_AUTH != 0 => None,
        NO_KEY => return XDP_DROP,
        key_id => match crate::find_key(key_id) {
            Some(k) => Some(k),
            None => return XDP_DROP,
        },
    };
    let Some(counters) = COUNTERS.get_ptr_mut(0) else {
        return XDP_DROP;
    };
    // The counter before the template is copied (in `build`): the agent writes a template
    // before it takes its next counter, so an answer with a later counter carries the newer
    // content.
    // SAFETY: as below.
    if unsafe { core::ptr::read_volatile(&raw const (*counters).sending) } != 0 {
        return XDP_DROP;
    }
    let request = answer::as_bytes(payload);
    let (node_id, epoch, counter) = (be_u32(request, 12), be_u64(request, 24), be_u64(request, 32));
    let gap_ns = u64::from(a.group_gap_ns);
    let to_group =
        gap_ns != 0 && bytes_at::<1>(ctx, l3 + answer::IPV4_DST).is_some_and(|d| answer::is_multicast_v4(d[0]));
    // SAFETY: a map value, valid during this run; shared with the agent (see `Counters`).
    let counter = unsafe { (*counters).answer_to(node_id, epoch, counter, now, if to_group { gap_ns } else { 0 }) };
    let Some(counter) = counter else {
        return XDP_DROP;
    };
    answer::build(payload, a.template_words(), counter, key.as_ref());
    if rewrite(ctx, l3, offset, iface, payload, to_group).is_none() {
        return XDP_DROP;
    }
    crate::count(|s| s.answered += 1);
    XDP_TX
}

/// Where the IPv4 header starts, if the frame is one an answer can take the place of: IPv4
/// without options, a UDP length of exactly one heartbeat, the payload at `offset`.
#[inline(always)]
fn plain_frame(ctx: &XdpContext, offset: usize) -> Option<usize> {
    let (ethertype, l3) = layer3(ctx)?;
    let ip = bytes_at::<1>(ctx, l3)?;
    let udp_len = bytes_at::<2>(ctx, l3 + IPV4_HLEN + 4)?;
    // The heartbeat parser checked the protocol (UDP) and the port already.
    let plain = ethertype == ETH_P_IPV4
        && ip[0] == 0x45
        && u16::from_be_bytes(udp_len) == UDP_LEN
        && offset == l3 + IPV4_HLEN + UDP_HLEN;
    plain.then_some(l3)
}

/// Turns the frame into the answer, in place: back to the requester's MAC and address (or,
/// `to_group`, to the group the request went to), from this interface's, to the heartbeat
/// port, the answer as its payload. A VLAN tag stays.
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    l3: usize,
    offset: usize,
    iface: &AnswerIface,
    payload: &HeartbeatWords,
    to_group: bool,
) -> Option<()> {
    answer::rewrite_ethernet(at::<12>(ctx, 0)?, &iface.mac, to_group);
    answer::rewrite_ipv4(at::<IPV4_HLEN>(ctx, l3)?, &iface.ipv4, to_group);
    answer::rewrite_udp(at::<UDP_HLEN>(ctx, l3 + IPV4_HLEN)?, crate::HA_PORT.load());
    put_payload(ctx, offset, payload)
}

/// The `N` bytes at `offset` of the packet, to change in place; `None` past its end.
#[inline(always)]
fn at<'a, const N: usize>(ctx: &'a XdpContext, offset: usize) -> Option<&'a mut [u8; N]> {
    let start = ctx.data() + offset;
    if start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the range was checked against data_end just above; nothing else refers to these
    // bytes during this run.
    Some(unsafe { &mut *(start as *mut [u8; N]) })
}

/// Writes the payload back word by word (see `parse::copy_payload`).
#[inline(always)]
fn put_payload(ctx: &XdpContext, offset: usize, payload: &HeartbeatWords) -> Option<()> {
    let start = ctx.data() + offset;
    if start + HEARTBEAT_LEN > ctx.data_end() {
        return None;
    }
    let mut i = 0;
    while i < payload.len() {
        // SAFETY: within the range checked against data_end above.
        unsafe { core::ptr::write_unaligned((start + 8 * i) as *mut u64, payload[i]) };
        i += 1;
    }
    Some(())
}
