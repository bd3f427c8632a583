//! Event wake (`--wake event`): a `bpf_timer` per peer, armed on each of its accepted
//! heartbeats with its silence limit (`LIMITS`, else `HA_DEFAULT_LIMIT_NS`), whose expiry and
//! each change of a record the decisions read are posted to the `EVENTS` ring buffer, so the
//! agent sleeps until something happens. No policy: the core decides on the table.
//!
//! On only when `HA_WAKE_EVENT` is set at load time. Otherwise the verifier sees the timer code
//! as dead (a read-only global): the poll mode costs nothing more, and a kernel without
//! `bpf_timer` still loads the program.
use core::ffi::c_void;

use aya_ebpf::{
    Global,
    bindings::{BPF_NOEXIST, bpf_timer},
    btf_maps::{HashMap, RingBuf},
    helpers::generated::{bpf_timer_init, bpf_timer_set_callback, bpf_timer_start},
    macros::btf_map,
};
use ha_common::maps::{
    CHANGE_RETURNED, EVENT_CHANGED, EVENT_CLAIM, EVENT_EXPIRED, EVENTS_BYTES, MAX_PEERS, PeerEvent, Stats,
};

use crate::PEERS;

/// `CLOCK_MONOTONIC`: the clock of `bpf_ktime_get_ns`, so the limit runs from `last_seen_ns`.
const CLOCK_MONOTONIC: u64 = 1;

/// One peer's expiry timer. Only the kernel writes it: an update from user space would
/// replace the element and cancel the timer.
#[repr(C)]
pub struct PeerTimer {
    timer: bpf_timer,
    /// Non-zero once the timer fired, until the peer is heard again.
    expired: u32,
    _pad: u32,
}

#[btf_map]
static TIMERS: HashMap<u32, PeerTimer, { MAX_PEERS as usize }> = HashMap::new();

#[btf_map]
static LIMITS: HashMap<u32, u64, { MAX_PEERS as usize }> = HashMap::new();

// Load-time configuration; names are ha_common::maps::globals.
#[unsafe(no_mangle)]
static HA_WAKE_EVENT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static HA_DEFAULT_LIMIT_NS: Global<u64> = Global::new(0);

#[btf_map]
static EVENTS: RingBuf<PeerEvent, { EVENTS_BYTES as usize }> = RingBuf::new();

/// The default silence limit, when event wake is on.
#[inline(always)]
pub fn enabled() -> Option<u64> {
    (HA_WAKE_EVENT.load() != 0).then(|| HA_DEFAULT_LIMIT_NS.load())
}

/// A heartbeat of `node_id` was recorded at `last_seen_ns` and changed `changes` of what the
/// decisions read: re-arm its timer, and post what the agent must hear of.
#[inline(always)]
pub fn heard(node_id: u32, last_seen_ns: u64, mut changes: u32, default_limit_ns: u64) {
    if let Some(t) = timer(node_id) {
        let limit = LIMITS.get_ptr(&node_id).map_or(default_limit_ns, |l| unsafe { *l });
        // SAFETY: `t` points into TIMERS; the verifier checks the timer belongs to it.
        unsafe {
            if (*t).expired != 0 {
                (*t).expired = 0;
                changes |= CHANGE_RETURNED;
            }
            bpf_timer_start(&raw mut (*t).timer, limit, 0);
        }
    }
    if changes != 0 {
        post_change(node_id, last_seen_ns, changes);
    }
}

/// Another MAC claimed a shared address at `at_ns` (event wake only).
#[inline(always)]
pub fn post_claim(at_ns: u64) {
    if HA_WAKE_EVENT.load() != 0 {
        post(&PeerEvent { last_seen_ns: at_ns, node_id: 0, kind: EVENT_CLAIM, changes: 0, _pad: 0 });
    }
}

/// A change without a newer heartbeat (a stale one that confirmed the peer).
#[inline(always)]
pub fn post_change(node_id: u32, last_seen_ns: u64, changes: u32) {
    post(&PeerEvent { last_seen_ns, node_id, kind: EVENT_CHANGED, changes, _pad: 0 });
}

/// The timer of `node_id`, created (with its callback) on the peer's first heartbeat.
#[inline(always)]
fn timer(node_id: u32) -> Option<*mut PeerTimer> {
    if let Some(t) = TIMERS.get_ptr_mut(&node_id) {
        return Some(t);
    }
    let fresh = PeerTimer { timer: bpf_timer { __opaque: [0; 2] }, expired: 0, _pad: 0 };
    // Another CPU may have created it meanwhile: then the init below fails harmlessly.
    let _ = TIMERS.insert(&node_id, &fresh, u64::from(BPF_NOEXIST));
    let t = TIMERS.get_ptr_mut(&node_id)?;
    let map = core::ptr::from_ref(&TIMERS).cast_mut().cast::<c_void>();
    // SAFETY: `t` points into TIMERS, which `map` is.
    unsafe {
        bpf_timer_init(&raw mut (*t).timer, map, CLOCK_MONOTONIC);
        bpf_timer_set_callback(&raw mut (*t).timer, expired as *mut c_void);
    }
    Some(t)
}

/// The timer callback: the peer was silent for its limit.
extern "C" fn expired(_map: *mut c_void, key: *mut u32, value: *mut PeerTimer) -> i64 {
    // SAFETY: the kernel passes the element's key and value.
    let node_id = unsafe { *key };
    unsafe { (*value).expired = 1 };
    let last_seen_ns = PEERS.get_ptr(&node_id).map_or(0, |r| unsafe { (*r).last_seen_ns });
    post(&PeerEvent { last_seen_ns, node_id, kind: EVENT_EXPIRED, changes: 0, _pad: 0 });
    0
}

#[inline(always)]
fn post(event: &PeerEvent) {
    if EVENTS.output(event, 0).is_err() {
        crate::count(|s: &mut Stats| s.events_lost += 1);
    }
}
