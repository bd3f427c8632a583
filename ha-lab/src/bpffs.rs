//! bpffs at /sys/fs/bpf, where labs put per-node pin dirs. Children keep the host mount
//! namespace (we only setns the network), so they all see this one bpffs.

use std::{ffi::CString, fs, io, os::unix::ffi::OsStrExt, path::Path, sync::Mutex};

use anyhow::{Context, Result};

pub const ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: all-zero is a valid statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Mounts bpffs at /sys/fs/bpf unless one is there (what systemd does at boot; minimal
/// CI machines may lack it).
pub fn ensure_bpffs() -> Result<()> {
    // Two racing mounts would stack, hiding pins made under the lower one.
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let root = Path::new(ROOT);
    if is_bpffs(root) {
        return Ok(());
    }
    fs::create_dir_all(root).with_context(|| format!("creating {ROOT}"))?;
    let target = CString::new(ROOT).context("bpffs path")?;
    // SAFETY: valid C strings; flags 0 and no data are what `mount -t bpf bpf DIR` passes.
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), target.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context(format!("mounting bpffs at {ROOT}"));
    }
    Ok(())
}
