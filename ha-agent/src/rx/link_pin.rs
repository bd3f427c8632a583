//! The XDP link pinned in bpffs, so that the program (and its fence) stays attached when the
//! agent dies without a clean stop. The next agent of the instance, or `ha-agent cleanup`,
//! detaches it at once through `BPF_LINK_DETACH`: merely removing the pin frees the link later
//! (after an RCU grace period), and a new attach would meanwhile find the interface busy.
use std::{
    ffi::CString,
    io,
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Detaches the link pinned at `path` and removes the pin; `Ok(false)` when there is none.
pub fn remove(path: &Path) -> io::Result<bool> {
    let link = match obj_get(path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let detached = link_detach(&link);
    // Whatever the detach said, the pin goes: with it the last reference, so the link is freed.
    std::fs::remove_file(path)?;
    detached.map(|()| true)
}

/// `bpf_attr` for BPF_OBJ_GET; the tail stays zero, as the kernel requires.
#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    _rest: [u64; 6],
}

/// `bpf_attr` for BPF_LINK_DETACH.
#[repr(C)]
struct LinkDetach {
    link_fd: u32,
    _pad: u32,
    _rest: [u64; 7],
}

fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is one of the plain structs above, valid for its size, which is passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, size_of::<A>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = ObjGet { pathname: name.as_ptr() as u64, bpf_fd: 0, file_flags: 0, _rest: [0; 6] };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: a new file descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn link_detach(link: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut attr = LinkDetach { link_fd: link.as_raw_fd() as u32, _pad: 0, _rest: [0; 7] };
    bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
}

#[cfg(test)]
mod tests {
    #[test]
    fn nothing_pinned_is_nothing_to_remove() {
        assert!(!super::remove(std::path::Path::new("/nonexistent/ha-link")).expect("absent is fine"));
    }
}
