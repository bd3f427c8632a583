//! The node's heartbeat counter in the `COUNTERS` map (`ha_common::maps::Counters`), mapped into
//! the agent's memory: its own heartbeats and its kernel's answers take turns on one counter,
//! without a syscall per heartbeat.
use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use aya::maps::{MapData, MapError};
use ha_common::maps::Counters;

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    #[error("the counters map is not an array: {0}")]
    Map(#[from] MapError),
    #[error("mapping the counters into memory: {0}")]
    Mmap(std::io::Error),
}

/// A handle on the mapped counter; clones share it.
#[derive(Clone)]
pub struct SharedCounter(Arc<Mapping>);

struct Mapping {
    counters: NonNull<Counters>,
    len: usize,
    /// Keeps the map open while mapped (the mapping alone would too; this says so).
    _map: MapData,
}

// SAFETY: the mapping is shared memory, touched only through atomics (`sent`).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl SharedCounter {
    /// Maps `COUNTERS` (created with `BPF_F_MMAPABLE`) into memory.
    pub fn map(map: MapData) -> Result<Self, CounterError> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = size_of::<Counters>().div_ceil(page) * page;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a shared mapping of a map fd, of whole pages covering its one value.
        let at = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if at == libc::MAP_FAILED {
            return Err(CounterError::Mmap(std::io::Error::last_os_error()));
        }
        let counters =
            NonNull::new(at.cast::<Counters>()).ok_or(CounterError::Mmap(std::io::ErrorKind::Other.into()))?;
        Ok(Self(Arc::new(Mapping { counters, len, _map: map })))
    }

    fn count(&self) -> &AtomicU64 {
        const _: () = assert!(std::mem::offset_of!(Counters, sent) == 0);
        // SAFETY: `sent` is the mapping's first, 8-byte aligned (page-aligned) u64, which lives
        // as long as `self`; the kernel touches it with plain loads and stores.
        unsafe { AtomicU64::from_ptr(self.0.counters.as_ptr().cast::<u64>()) }
    }

    fn sending(&self) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: `sending` is a naturally aligned u32 of the mapping (see `sent`); the kernel
        // only reads it.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(&raw mut (*self.0.counters.as_ptr()).sending) }
    }

    /// The counter of this node's next heartbeat of its own; the kernel does not answer until
    /// [`SharedCounter::left`] (see `Counters::sending`).
    pub fn next(&self) -> u64 {
        self.sending().store(1, Ordering::SeqCst);
        self.count().fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The heartbeat of the last [`SharedCounter::next`] left (or failed to): answers resume.
    pub fn left(&self) {
        self.sending().store(0, Ordering::SeqCst);
    }

    /// Lifts the counter to `floor` (the heartbeats this run counted before it shared it).
    pub fn raise_to(&self, floor: u64) {
        self.count().fetch_max(floor, Ordering::SeqCst);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.counters.as_ptr().cast(), self.len) };
    }
}
