//! XDP program: recognises heartbeats and runs the acceptance rule (`ha_common::accept`, shared
//! with the socket receive path) with `KEYS` and `PEERS` as its keys and store; counts every
//! outcome in `STATS`. No policy here: who is ACTIVE is decided in user space from what is
//! recorded.
#![no_std]
#![no_main]

mod links;
mod neighbour;
mod parse;
mod wake;

use aya_ebpf::{
    Global,
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    btf_maps::{Array, HashMap, PerCpuArray},
    helpers::bpf_ktime_get_ns,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use aya_log_ebpf::info;
use ha_common::{
    DEFAULT_PORT,
    accept::{self, PeerStore, Policy, Rejected, TableFull},
    maps::{
        AuthKey, CHANGE_NEW, KEY_SLOTS, MAX_PEERS, PeerRecord, Stats, Watched, XDP_FLAG_INSECURE_NO_AUTH,
        XDP_FLAG_PASS_HEARTBEATS,
    },
    siphash::SipKey,
};
use parse::{Frame, HeartbeatFrame};

#[btf_map]
pub(crate) static PEERS: HashMap<u32, PeerRecord, { MAX_PEERS as usize }> = HashMap::new();

#[btf_map]
static STATS: PerCpuArray<Stats, 1> = PerCpuArray::new();

#[btf_map]
static KEYS: Array<AuthKey, { KEY_SLOTS as usize }> = Array::new();

// Load-time configuration; names are ha_common::maps::globals.
#[unsafe(no_mangle)]
static HA_PORT: Global<u16> = Global::new(DEFAULT_PORT);
#[unsafe(no_mangle)]
static HA_CLUSTER_ID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static HA_NODE_ID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static HA_FLAGS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static HA_EPOCH: Global<u64> = Global::new(0);

#[inline(always)]
pub(crate) fn count(bump: impl FnOnce(&mut Stats)) {
    if let Some(stats) = STATS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, and XDP does not preempt itself on one CPU.
        bump(unsafe { &mut *stats });
    }
}

#[xdp]
pub fn ha_xdp(ctx: XdpContext) -> u32 {
    let frame = match parse::heartbeat_frame(&ctx, HA_PORT.load()) {
        Frame::NotOurs => {
            count(|s| s.not_ours += 1);
            return neighbour::inspect(&ctx);
        }
        Frame::Truncated => {
            count(|s| Rejected::Truncated.count(s));
            return XDP_DROP;
        }
        Frame::Heartbeat(frame) => frame,
    };
    match record(&ctx, &frame) {
        Ok(()) if HA_FLAGS.load() & XDP_FLAG_PASS_HEARTBEATS != 0 => XDP_PASS,
        _ => XDP_DROP,
    }
}

/// An empty program, never attached: the benchmark subtracts its cost (the kernel's test-run
/// loop) to report what `ha_xdp` itself costs per packet.
#[xdp]
pub fn ha_xdp_baseline(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// `PEERS` as the acceptance rule's store; keeps what the decisions read of the record it
/// handed out, to tell a change (an event) from a plain heartbeat without another lookup.
struct PeersMap {
    before: Option<(u32, *mut PeerRecord, Watched)>,
}

impl PeerStore for PeersMap {
    #[inline(always)]
    fn get_mut(&mut self, node_id: u32) -> Option<&mut PeerRecord> {
        // SAFETY: the entry stays valid during this program run; a racing update on another
        // CPU for the same peer can at worst interleave two valid records.
        let rec = PEERS.get_ptr_mut(&node_id)?;
        let rec = unsafe { &mut *rec };
        self.before = Some((node_id, rec as *mut PeerRecord, rec.watched()));
        Some(rec)
    }

    #[inline(always)]
    fn insert(&mut self, node_id: u32, record: &PeerRecord) -> Result<(), TableFull> {
        PEERS.insert(&node_id, record, 0).map_err(|_| TableFull)
    }
}

fn record(ctx: &XdpContext, frame: &HeartbeatFrame) -> Result<(), ()> {
    let policy = Policy {
        cluster_id: HA_CLUSTER_ID.load(),
        node_id: HA_NODE_ID.load(),
        insecure: HA_FLAGS.load() & XDP_FLAG_INSECURE_NO_AUTH != 0,
        epoch: HA_EPOCH.load(),
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = || unsafe { bpf_ktime_get_ns() };
    let mut store = PeersMap { before: None };
    let outcome = accept::receive(&policy, &frame.payload, frame.src, &mut store, find_key, now);
    count(|s| accept::count(&outcome, s));
    if let Some(default_limit_ns) = wake::enabled() {
        report(&outcome, &store, default_limit_ns);
    }
    links::note(ctx, &frame.payload, outcome.map(|a| a.node_id), |id| {
        // SAFETY: a copy of the value, read once.
        PEERS.get_ptr(&id).map(|rec| unsafe { *rec })
    });
    match outcome {
        Ok(new) if new.new_peer => {
            info!(ctx, "new peer {} priority {} from {:i}", new.node_id, new.priority, u32::from_be_bytes(frame.src));
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(_) => Err(()),
    }
}

/// Event wake: re-arms the peer's timer on a recorded heartbeat, and posts a change of what
/// the decisions read (a stale heartbeat may still confirm the peer).
#[inline(always)]
fn report(outcome: &Result<accept::Accepted, Rejected>, store: &PeersMap, default_limit_ns: u64) {
    let recorded = match outcome {
        Ok(_) => true,
        Err(Rejected::Stale) => false,
        Err(_) => return,
    };
    match (outcome, store.before) {
        (Ok(a), _) if a.new_peer => {
            let last_seen_ns = PEERS.get_ptr(&a.node_id).map_or(0, |r| unsafe { (*r).last_seen_ns });
            wake::heard(a.node_id, last_seen_ns, CHANGE_NEW, default_limit_ns);
        }
        (_, Some((node_id, rec, before))) => {
            // SAFETY: the record `get_mut` handed out, valid during this run.
            let (changes, last_seen_ns) = unsafe { (before.changes(&*rec), (*rec).last_seen_ns) };
            if recorded {
                wake::heard(node_id, last_seen_ns, changes, default_limit_ns);
            } else if changes != 0 {
                wake::post_change(node_id, last_seen_ns, changes);
            }
        }
        _ => {}
    }
}

/// The key of a valid slot with this id (slots are few: a linear scan is cheapest).
#[inline(always)]
fn find_key(key_id: u8) -> Option<SipKey> {
    let mut slot = 0;
    while slot < KEY_SLOTS {
        if let Some(k) = KEYS.get(slot)
            && k.matches(key_id)
        {
            return Some(k.sip_key());
        }
        slot += 1;
    }
    None
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
