//! XDP program: recognises heartbeats, verifies their tag against `KEYS`, records each peer in
//! `PEERS`, counts every outcome in `STATS`. No policy here: who is ACTIVE is decided in user
//! space from what is recorded. Nothing unauthenticated or stale reaches `PEERS`.
#![no_std]
#![no_main]

mod parse;

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
    auth::{self, AuthError},
    maps::{AuthKey, KEY_SLOTS, MAX_PEERS, PeerRecord, Stats, XDP_FLAG_INSECURE_NO_AUTH, XDP_FLAG_PASS_HEARTBEATS},
    siphash::SipKey,
    wire::{DecodeError, Heartbeat, Sequence},
};
use parse::{Frame, HeartbeatFrame};

#[btf_map]
static PEERS: HashMap<u32, PeerRecord, { MAX_PEERS as usize }> = HashMap::new();

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

#[inline(always)]
fn count(bump: impl FnOnce(&mut Stats)) {
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
            return XDP_PASS;
        }
        Frame::Truncated => {
            count(|s| s.truncated += 1);
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

/// Why a well-framed heartbeat was not recorded; each reason has its own counter.
enum Rejected {
    Decode(DecodeError),
    WrongCluster,
    Own,
    // Flat rather than `Auth(AuthError)`: with a second payload-carrying variant LLVM emitted a
    // read of a clobbered register for the payload-less ones, which the verifier refuses.
    Unauthenticated,
    UnknownKey,
    BadAuth,
    Stale,
    PeersFull,
}

fn record(ctx: &XdpContext, frame: &HeartbeatFrame) -> Result<(), ()> {
    let outcome = check_and_record(ctx, frame);
    count(|s| match outcome {
        Ok(()) => s.valid += 1,
        Err(Rejected::Decode(DecodeError::Truncated)) => s.truncated += 1,
        Err(Rejected::Decode(DecodeError::BadMagic)) => s.bad_magic += 1,
        Err(Rejected::Decode(DecodeError::BadVersion)) => s.bad_version += 1,
        Err(Rejected::Decode(DecodeError::Malformed)) => s.malformed += 1,
        Err(Rejected::WrongCluster) => s.wrong_cluster += 1,
        Err(Rejected::Own) => s.own += 1,
        Err(Rejected::Unauthenticated) => s.unauthenticated += 1,
        Err(Rejected::UnknownKey) => s.unknown_key += 1,
        Err(Rejected::BadAuth) => s.bad_auth += 1,
        Err(Rejected::Stale) => s.stale += 1,
        Err(Rejected::PeersFull) => s.peers_full += 1,
    });
    outcome.map_err(|_| ())
}

#[inline(always)]
fn check_and_record(ctx: &XdpContext, frame: &HeartbeatFrame) -> Result<(), Rejected> {
    let hb = Heartbeat::decode_fixed(&frame.payload).map_err(Rejected::Decode)?;
    if hb.cluster_id != HA_CLUSTER_ID.load() {
        return Err(Rejected::WrongCluster);
    }
    if hb.node_id == HA_NODE_ID.load() {
        return Err(Rejected::Own);
    }
    // Before any map update: only a heartbeat signed with a key we hold may change state.
    let insecure = HA_FLAGS.load() & XDP_FLAG_INSECURE_NO_AUTH != 0;
    auth::check(&frame.payload, insecure, find_key).map_err(|e| match e {
        AuthError::Unauthenticated => Rejected::Unauthenticated,
        AuthError::UnknownKey => Rejected::UnknownKey,
        AuthError::BadAuth => Rejected::BadAuth,
    })?;
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(rec) = PEERS.get_ptr_mut(&hb.node_id) {
        // SAFETY: the entry stays valid during this program run; a racing update on another
        // CPU for the same peer can at worst interleave two valid records.
        let rec = unsafe { &mut *rec };
        if hb.seq <= (Sequence { epoch: rec.epoch, counter: rec.counter }) {
            return Err(Rejected::Stale);
        }
        rec.record(&hb, frame.src, now);
        rec.received += 1;
        return Ok(());
    }
    let mut rec = PeerRecord { received: 1, ..PeerRecord::default() };
    rec.record(&hb, frame.src, now);
    PEERS.insert(&hb.node_id, &rec, 0).map_err(|_| Rejected::PeersFull)?;
    info!(ctx, "new peer {} priority {} from {:i}", hb.node_id, hb.priority, u32::from_be_bytes(frame.src));
    Ok(())
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
