//! Event wake (`--wake event`): the `EVENTS` ring buffer the XDP program and its per-peer
//! timers post to, and `LIMITS`, where each peer's silence limit goes for those timers.
use std::os::fd::{AsFd, BorrowedFd};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError, RingBuf},
};
use ha_common::maps::{EVENTS_MAP, LIMITS_MAP, PeerEvent};

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("map {0} is missing from the XDP object")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: MapError },
}

pub struct EventMaps {
    ring: RingBuf<MapData>,
    limits: HashMap<MapData, u32, u64>,
}

impl EventMaps {
    /// Takes the maps out of a loaded object.
    pub fn take_from(ebpf: &mut Ebpf) -> Result<Self, EventsError> {
        let ring = ebpf.take_map(EVENTS_MAP).ok_or(EventsError::Missing("EVENTS"))?;
        let limits = ebpf.take_map(LIMITS_MAP).ok_or(EventsError::Missing("LIMITS"))?;
        Ok(Self {
            ring: RingBuf::try_from(ring).map_err(|source| EventsError::Map { name: "EVENTS", source })?,
            limits: HashMap::try_from(limits).map_err(|source| EventsError::Map { name: "LIMITS", source })?,
        })
    }

    /// Readable when an event waits.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }

    /// Every event posted since the last call, oldest first.
    pub fn drain(&mut self, out: &mut Vec<PeerEvent>) {
        while let Some(item) = self.ring.next() {
            if let Some(bytes) = item.get(..size_of::<PeerEvent>()) {
                // SAFETY: PeerEvent is plain #[repr(C)] data, valid for any bit pattern;
                // read_unaligned copes with the ring's 8-byte alignment.
                out.push(unsafe { bytes.as_ptr().cast::<PeerEvent>().read_unaligned() });
            }
        }
    }

    /// The silence limit the kernel arms `node_id`'s timer with from its next heartbeat on.
    pub fn set_limit(&mut self, node_id: u32, limit_ns: u64) -> Result<(), EventsError> {
        self.limits.insert(&node_id, &limit_ns, 0).map_err(|source| EventsError::Map { name: "LIMITS", source })
    }
}

/// Whether this kernel has what event wake needs: `bpf_timer` (Linux 5.15) and ring buffers
/// (5.8). Read from the kernel version: the XDP object is loaded once, with the mode decided.
pub fn kernel_supports_event_wake() -> Result<(), String> {
    match aya::util::KernelVersion::current() {
        Ok(v) if v >= aya::util::KernelVersion::new(5, 15, 0) => Ok(()),
        Ok(v) => Err(format!("Linux {v} has no bpf_timer (5.15 or newer is needed)")),
        Err(e) => Err(format!("cannot read the kernel version: {e}")),
    }
}
