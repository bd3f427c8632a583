//! XDP program: recognises heartbeats and runs the acceptance rule (`ha_common::accept`, shared
//! with the socket receive path) with `KEYS` and `PEERS` as its keys and store; counts every
//! outcome in `STATS`; while the agent asks for it (`ANSWER`), answers each accepted heartbeat
//! with this node's own (`answer`). No policy here: who is ACTIVE is decided in user space from
//! what is recorded.
#![no_std]
#![no_main]

mod answer;
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
    wire::{HEARTBEAT_LEN, Heartbeat},
};
use parse::Frame;

#[btf_map]
pub(crate) static PEERS: HashMap<u32, PeerRecord, { MAX_PEERS as usize }> = HashMap::new();

#[btf_map]
static STATS: PerCpuArray<Stats, 1> = PerCpuArray::new();

#[btf_map]
static KEYS: Array<AuthKey, { KEY_SLOTS as usize }> = Array::new();

/// What does not fit on the 512-byte stack: the payload, the heartbeat decoded from it, a
/// peer's first record while it is built, and (event wake) what the decisions read of the
/// record before the heartbeat.
#[repr(C)]
pub struct Scratch {
    payload: [u8; HEARTBEAT_LEN],
    hb: Heartbeat,
    record: PeerRecord,
    watched: Watched,
}

impl Scratch {
    /// The payload as 8-byte words (`ha_common::answer::HeartbeatWords`).
    #[inline(always)]
    fn payload_words(&mut self) -> &mut ha_common::answer::HeartbeatWords {
        const _: () = assert!(core::mem::offset_of!(Scratch, payload) == 0 && core::mem::align_of::<Scratch>() == 8);
        // SAFETY: the payload starts the 8-byte aligned value and is as long as the words.
        unsafe { &mut *self.payload.as_mut_ptr().cast::<ha_common::answer::HeartbeatWords>() }
    }
}

#[btf_map]
static SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

// Load-time configuration; names are ha_common::maps::globals.
#[unsafe(no_mangle)]
pub(crate) static HA_PORT: Global<u16> = Global::new(DEFAULT_PORT);
#[unsafe(no_mangle)]
static HA_CLUSTER_ID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static HA_NODE_ID: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub(crate) static HA_FLAGS: Global<u32> = Global::new(0);
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
    // Index 0 of a one-entry array: the lookup does not fail (the verifier wants the check).
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return XDP_PASS;
    };
    // SAFETY: per-CPU, and XDP does not preempt itself on one CPU; nothing else holds it.
    let scratch = unsafe { &mut *scratch };
    if !parse::copy_payload(&ctx, frame.offset, &mut scratch.payload) {
        count(|s| Rejected::Truncated.count(s));
        return XDP_DROP;
    }
    let heard = record(&ctx, frame.src, scratch);
    if heard.recorded && HA_FLAGS.load() & XDP_FLAG_PASS_HEARTBEATS != 0 {
        return XDP_PASS;
    }
    if heard.first_on_link { answer::reply(&ctx, frame.offset, scratch.payload_words()) } else { XDP_DROP }
}

/// An empty program, never attached: the benchmark subtracts its cost (the kernel's test-run
/// loop) to report what `ha_xdp` itself costs per packet.
#[xdp]
pub fn ha_xdp_baseline(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

/// `PEERS` as the acceptance rule's store; with event wake, keeps what the decisions read of
/// the record it handed out (in `watched`), to tell a change (an event) from a plain heartbeat
/// without another lookup. A first record is built in `fresh`.
struct PeersMap<'a> {
    before: Option<(u32, *mut PeerRecord)>,
    watch: bool,
    watched: &'a mut Watched,
    fresh: &'a mut PeerRecord,
}

impl PeerStore for PeersMap<'_> {
    #[inline(always)]
    fn get_mut(&mut self, node_id: u32) -> Option<&mut PeerRecord> {
        // SAFETY: the entry stays valid during this program run; a racing update on another
        // CPU for the same peer can at worst interleave two valid records.
        let rec = PEERS.get_ptr_mut(&node_id)?;
        let rec = unsafe { &mut *rec };
        if self.watch {
            self.watched.read(rec);
            self.before = Some((node_id, rec as *mut PeerRecord));
        }
        Some(rec)
    }

    #[inline(always)]
    fn insert(&mut self, node_id: u32, record: &PeerRecord) -> Result<(), TableFull> {
        PEERS.insert(&node_id, record, 0).map_err(|_| TableFull)
    }

    #[inline(always)]
    fn insert_with(&mut self, node_id: u32, init: impl FnOnce(&mut PeerRecord)) -> Result<(), TableFull> {
        clear(self.fresh);
        init(self.fresh);
        PEERS.insert(&node_id, self.fresh, 0).map_err(|_| TableFull)
    }
}

/// Zeroes a record word by word (`*rec = PeerRecord::default()` may become a `memset` call).
#[inline(always)]
fn clear(rec: &mut PeerRecord) {
    const WORDS: usize = core::mem::size_of::<PeerRecord>() / 8;
    const _: () = assert!(core::mem::size_of::<PeerRecord>().is_multiple_of(8));
    let words = (rec as *mut PeerRecord).cast::<u64>();
    let mut i = 0;
    while i < WORDS {
        // SAFETY: within the record, which is 8-byte aligned; zero is a valid PeerRecord.
        unsafe { words.add(i).write(0) };
        i += 1;
    }
}

/// What became of a heartbeat.
struct Heard {
    /// Newer than the peer's record: recorded.
    recorded: bool,
    /// The first copy of the peer's newest heartbeat on this link (recorded or not): the one
    /// the kernel answers, if it answers for this node.
    first_on_link: bool,
}

fn record(ctx: &XdpContext, src: [u8; 4], scratch: &mut Scratch) -> Heard {
    let policy = Policy {
        cluster_id: HA_CLUSTER_ID.load(),
        node_id: HA_NODE_ID.load(),
        insecure: HA_FLAGS.load() & XDP_FLAG_INSECURE_NO_AUTH != 0,
        epoch: HA_EPOCH.load(),
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = || unsafe { bpf_ktime_get_ns() };
    let wake = wake::enabled();
    let Scratch { payload, hb, record, watched } = scratch;
    let mut store = PeersMap { before: None, watch: wake.is_some(), watched, fresh: record };
    let outcome = accept::receive_in(&policy, payload, hb, src, &mut store, find_key, now);
    count(|s| accept::count(&outcome, s));
    if let Some(default_limit_ns) = wake {
        report(&outcome, &store, default_limit_ns);
    }
    let first_on_link = links::note(ctx, payload, outcome.map(|a| a.node_id), |id| {
        // SAFETY: read once, field by field.
        PEERS.get_ptr(&id).map(|rec| unsafe { ((*rec).epoch, (*rec).counter) })
    });
    if let Ok(new) = outcome
        && new.new_peer
    {
        info!(ctx, "new peer {} priority {} from {:i}", new.node_id, new.priority, u32::from_be_bytes(src));
    }
    Heard { recorded: outcome.is_ok(), first_on_link }
}

/// Event wake: re-arms the peer's timer on a recorded heartbeat, and posts a change of what
/// the decisions read (a stale heartbeat may still confirm the peer).
#[inline(always)]
fn report(outcome: &Result<accept::Accepted, Rejected>, store: &PeersMap<'_>, default_limit_ns: u64) {
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
        (_, Some((node_id, rec))) => {
            // SAFETY: the record `get_mut` handed out, valid during this run.
            let (changes, last_seen_ns) = unsafe { (store.watched.changes(&*rec), (*rec).last_seen_ns) };
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
pub(crate) fn find_key(key_id: u8) -> Option<SipKey> {
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
