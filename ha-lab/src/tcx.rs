//! Tiny hand-assembled BPF programs on an interface's tcx egress hook: impairments the lab
//! needs on kernels without sch_netem or nftables tools. The returned link fd is the
//! attachment: closing it detaches. The loader and the link are shared with [`crate::napi`].

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, bail};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
pub const TCX_NEXT: i32 = -1;
pub const TCX_DROP: i32 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Insn {
    code: u8,
    /// dst register in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// An instruction on r0 only.
pub const fn insn(code: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: 0, off, imm }
}

/// An instruction with registers.
pub const fn insn_regs(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    rest: [u64; 4],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: attr is a properly laid out bpf_attr prefix of the given size.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

/// Loads `prog` (named `name`, at most 15 bytes) and attaches it to `iface`'s egress in the
/// calling thread's namespace.
pub fn attach_egress(iface: &str, name: &str, prog: &[Insn]) -> Result<OwnedFd> {
    attach(iface, name, prog, BPF_TCX_EGRESS, "egress")
}

/// [`attach_egress`] on `iface`'s ingress.
pub fn attach_ingress(iface: &str, name: &str, prog: &[Insn]) -> Result<OwnedFd> {
    attach(iface, name, prog, BPF_TCX_INGRESS, "ingress")
}

fn attach(iface: &str, name: &str, prog: &[Insn], attach_type: u32, hook: &str) -> Result<OwnedFd> {
    let prog_fd = load(name, BPF_PROG_TYPE_SCHED_CLS, attach_type, prog)?;
    let ifindex = ifindex(iface)?;
    link_create(&prog_fd, ifindex, attach_type, 0)
        .context(format!("attaching the {name} program to {iface} {hook} (tcx)"))
}

/// Loads `prog` (named `name`, at most 15 bytes) of `prog_type`; the fd is the program.
pub fn load(name: &str, prog_type: u32, expected_attach_type: u32, prog: &[Insn]) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut prog_name = [0u8; 16];
    let len = name.len().min(15);
    prog_name[..len].copy_from_slice(&name.as_bytes()[..len]);
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name,
        expected_attach_type,
        ..Default::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let msg = String::from_utf8_lossy(&log[..end]);
            bail!("loading the {name} BPF program: {e}; verifier: {}", msg.trim());
        }
    }
}

/// `iface`'s index in the calling thread's namespace.
pub fn ifindex(iface: &str) -> Result<u32> {
    let c = CString::new(iface).context("interface name")?;
    // SAFETY: valid C string; resolves in the calling thread's network namespace.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error()).context(format!("no interface {iface}"));
    }
    Ok(ifindex)
}

/// Attaches a loaded program to `ifindex` at `attach_type` as a BPF link; closing the returned
/// fd detaches it.
pub fn link_create(prog: &OwnedFd, ifindex: u32, attach_type: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut link = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type,
        flags,
        ..Default::default()
    };
    bpf(BPF_LINK_CREATE, &mut link)
}

/// Drops every frame to an IPv4 multicast MAC (01:00:5e:...) leaving `iface`: multicast
/// heartbeats (and IGMP) go nowhere, while unicast, ARP and IPv6 neighbour discovery still work.
pub fn attach_egress_ipv4_multicast_drop(iface: &str) -> Result<OwnedFd> {
    const DATA: i16 = 76; // offsetof(struct __sk_buff, data)
    const DATA_END: i16 = 80;
    let prog = [
        insn_regs(0x61, 2, 1, DATA, 0),     // r2 = skb->data
        insn_regs(0x61, 3, 1, DATA_END, 0), // r3 = skb->data_end
        insn_regs(0xbf, 4, 2, 0, 0),        // r4 = r2
        insn_regs(0x07, 4, 0, 0, 3),        // r4 += 3
        insn_regs(0x2d, 4, 3, 8, 0),        // if r4 > r3 goto pass
        insn_regs(0x71, 5, 2, 0, 0),        // r5 = dst[0]
        insn_regs(0x55, 5, 0, 6, 0x01),     // if r5 != 0x01 goto pass
        insn_regs(0x71, 5, 2, 1, 0),        // r5 = dst[1]
        insn_regs(0x55, 5, 0, 4, 0x00),     // if r5 != 0x00 goto pass
        insn_regs(0x71, 5, 2, 2, 0),        // r5 = dst[2]
        insn_regs(0x55, 5, 0, 2, 0x5e),     // if r5 != 0x5e goto pass
        insn(0xb7, 0, TCX_DROP),            // r0 = TCX_DROP
        insn(0x95, 0, 0),                   // exit
        insn(0xb7, 0, TCX_NEXT),            // pass: r0 = TCX_NEXT
        insn(0x95, 0, 0),                   // exit
    ];
    attach_egress(iface, "ha_no_mcast4", &prog)
}
