//! Which link carried a peer's heartbeat (`ha_common::links`): credited on a recorded
//! heartbeat, and on an authentic copy of the newest recorded one (the same heartbeat sent on
//! every link; only the first copy to arrive is recorded in `PEERS`).
use aya_ebpf::{btf_maps::HashMap, helpers::bpf_ktime_get_ns, macros::btf_map, programs::XdpContext};
use ha_common::{
    accept::Rejected,
    links::{LinkKey, LinkRecord, MAX_PEER_LINKS},
    maps::PeerRecord,
    wire::{HEARTBEAT_LEN, Heartbeat},
};

#[btf_map]
static PEER_LINKS: HashMap<LinkKey, LinkRecord, { MAX_PEER_LINKS as usize }> = HashMap::new();

/// Credits the link `ctx` came in on, after the acceptance rule said `outcome` of `payload`;
/// `record` reads the peer's record in `PEERS`.
#[inline(always)]
pub fn note(
    ctx: &XdpContext,
    payload: &[u8; HEARTBEAT_LEN],
    outcome: Result<u32, Rejected>,
    record: impl FnOnce(u32) -> Option<PeerRecord>,
) {
    let node_id = match outcome {
        Ok(node_id) => node_id,
        // Authentic (the rule checks the tag before the sequence) but not newer: a copy of the
        // newest if its sequence is the recorded one.
        Err(Rejected::Stale) => {
            let Ok(hb) = Heartbeat::decode_fixed(payload) else { return };
            let Some(rec) = record(hb.node_id) else { return };
            if hb.seq.epoch != rec.epoch || hb.seq.counter != rec.counter {
                return;
            }
            hb.node_id
        }
        Err(_) => return,
    };
    let key = LinkKey { node_id, ifindex: ctx.ingress_ifindex() as u32 };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match PEER_LINKS.get_ptr_mut(&key) {
        // SAFETY: the entry stays valid during this run; racing CPUs can at worst lose a count.
        Some(rec) => unsafe { (*rec).note(now) },
        None => {
            let _ = PEER_LINKS.insert(&key, &LinkRecord { last_seen_ns: now, received: 1 }, 0);
        }
    }
}
