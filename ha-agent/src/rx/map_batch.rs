//! Reads a whole BPF hash map with `BPF_MAP_LOOKUP_BATCH`: one syscall for the peer table,
//! where aya's iterator makes two per entry plus one (get-next-key, lookup, ..., end). The run
//! loop reads the table on every wake, and at rest those syscalls were most of its CPU time.
use std::{
    io,
    mem::size_of,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

/// `enum bpf_cmd` in linux/bpf.h.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Key and value buffers sized for the whole map, allocated once.
pub struct BatchReader<K, V> {
    keys: Vec<K>,
    values: Vec<V>,
}

impl<K: aya::Pod, V: aya::Pod> BatchReader<K, V> {
    pub fn new(max_entries: u32) -> Self {
        let n = max_entries.max(1) as usize;
        // SAFETY: Pod types are plain data, valid for any bit pattern, including all zeroes.
        let (key, value) = unsafe { (std::mem::zeroed::<K>(), std::mem::zeroed::<V>()) };
        Self { keys: vec![key; n], values: vec![value; n] }
    }

    /// Appends every entry of the hash map `map` to `out`. Like iteration, not a snapshot:
    /// an entry added or removed meanwhile may or may not be seen. Err(EINVAL or ENOTSUPP):
    /// this kernel or map type has no batch lookup.
    pub fn read_all(&mut self, map: BorrowedFd<'_>, out: &mut Vec<(K, V)>) -> io::Result<()> {
        // Hash maps resume from a bucket index (u32) the kernel hands back.
        let mut token = 0u32;
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { &raw const token as u64 },
                out_batch: &raw mut token as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: self.keys.len() as u32,
                map_fd: map.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            // SAFETY: the attr points at buffers that hold `count` keys and values of the map's
            // sizes (aya checked them against K and V when the map was opened) and at `token`.
            let rc = unsafe {
                libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_BATCH, &raw mut attr, size_of::<BatchAttr>() as u32)
            };
            let err = (rc < 0).then(io::Error::last_os_error);
            // Filled entries count also when the kernel says ENOENT (no more buckets).
            let filled = if err.as_ref().is_none_or(|e| e.raw_os_error() == Some(libc::ENOENT)) {
                (attr.count as usize).min(self.keys.len())
            } else {
                0
            };
            out.extend(self.keys[..filled].iter().copied().zip(self.values[..filled].iter().copied()));
            match err {
                None => first = false,
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Some(e) => return Err(e),
            }
        }
    }
}

/// Whether `e` says batch lookup is not available here (then iterate instead).
pub fn unsupported(e: &io::Error) -> bool {
    const ENOTSUPP: i32 = 524; // kernel-internal, leaks to user space from bpf()
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP | ENOTSUPP))
}

/// The fd of an aya map, for syscalls aya does not wrap.
pub fn fd_of(map: &aya::maps::MapData) -> BorrowedFd<'_> {
    map.fd().as_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_has_the_kernel_layout() {
        // linux/bpf.h: six u64 slots with count and map_fd sharing the fifth.
        assert_eq!(size_of::<BatchAttr>(), 56);
        assert_eq!(std::mem::offset_of!(BatchAttr, count), 32);
        assert_eq!(std::mem::offset_of!(BatchAttr, map_fd), 36);
        assert_eq!(std::mem::offset_of!(BatchAttr, elem_flags), 40);
    }
}
