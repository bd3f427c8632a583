//! Which link carried a peer's heartbeat (`ha_common::links`): credited on a recorded
//! heartbeat, and on an authentic copy of the newest recorded one (the same heartbeat sent on
//! every link; only the first copy to arrive is recorded in `PEERS`).
use aya_ebpf::{btf_maps::HashMap, helpers::bpf_ktime_get_ns, macros::btf_map, programs::XdpContext};
use ha_common::{
    accept::Rejected,
    links::{LinkKey, LinkRecord, MAX_PEER_LINKS},
    wire::{HEARTBEAT_LEN, be_u32, be_u64},
};

#[btf_map]
static PEER_LINKS: HashMap<LinkKey, LinkRecord, { MAX_PEER_LINKS as usize }> = HashMap::new();

/// Credits the link `ctx` came in on, after the acceptance rule said `outcome` of `payload`;
/// `recorded` reads the sequence (epoch, counter) of the peer's record in `PEERS`. Whether
/// this was the first copy of the peer's newest heartbeat on this link (what the kernel's
/// answer answers: once per link, however often the copy is replayed).
#[inline(always)]
pub fn note(
    ctx: &XdpContext,
    payload: &[u8; HEARTBEAT_LEN],
    outcome: Result<u32, Rejected>,
    recorded: impl FnOnce(u32) -> Option<(u64, u64)>,
) -> bool {
    let node_id = match outcome {
        Ok(node_id) => node_id,
        // Authentic and decoded (the rule decodes and checks the tag before the sequence) but
        // not newer: a copy of the newest if its sequence is the recorded one. Read from the
        // bytes: decoding again would put a second heartbeat on the stack.
        Err(Rejected::Stale) => {
            let node_id = be_u32(payload, 12);
            let Some(seq) = recorded(node_id) else { return false };
            if seq != (be_u64(payload, 24), be_u64(payload, 32)) {
                return false;
            }
            node_id
        }
        Err(_) => return false,
    };
    let counter = be_u64(payload, 32);
    let key = LinkKey { node_id, ifindex: ctx.ingress_ifindex() as u32 };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match PEER_LINKS.get_ptr_mut(&key) {
        // SAFETY: the entry stays valid during this run; racing CPUs can at worst lose a count.
        Some(rec) => unsafe { (*rec).note(now, counter) },
        None => PEER_LINKS.insert(&key, &LinkRecord::first(now, counter), 0).is_ok(),
    }
}
