//! bpffs: where pinned maps live. `ip netns exec` mounts a fresh /sys without it, so the agent
//! mounts it itself when missing.
use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf";

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Mounts bpffs at `root` unless one is there already.
pub fn ensure_mounted(root: &Path) -> io::Result<()> {
    if is_bpffs(root) {
        return Ok(());
    }
    std::fs::create_dir_all(root)?;
    let target = CString::new(root.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: valid C strings; flags 0 and no data are what `mount -t bpf bpf DIR` passes.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    log::info!("mounted bpffs at {}", root.display());
    Ok(())
}
