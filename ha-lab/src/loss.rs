//! Random egress packet loss without sch_netem (kernels built without it, like our CI's):
//! a seven-instruction BPF program on the interface's tcx egress hook drops each packet with
//! the given probability. The returned link fd is the attachment: closing it detaches.

use std::{
    ffi::CString,
    io,
    os::fd::{FromRawFd, OwnedFd},
};

use anyhow::{Context, Result, bail, ensure};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_EGRESS: u32 = 47;
const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;
const TCX_NEXT: i32 = -1;
const TCX_DROP: i32 = 2;
/// Loss granularity: basis points.
const SCALE: i32 = 10_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: 0, off, imm } // every instruction here works on r0 only
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

/// Parses a netem spec that only asks for loss (`loss 10%`, `loss random 2.5%`) into a
/// probability in percent; anything else cannot be emulated without sch_netem.
pub fn loss_only(spec: &str) -> Option<f64> {
    let toks: Vec<&str> = spec.split_whitespace().collect();
    let pct = match toks.as_slice() {
        ["loss", p] | ["loss", "random", p] => *p,
        _ => return None,
    };
    let v: f64 = pct.strip_suffix('%').unwrap_or(pct).parse().ok()?;
    (0.0..=100.0).contains(&v).then_some(v)
}

/// Attaches the loss program to `iface`'s egress in the calling thread's namespace.
pub fn attach_egress_loss(iface: &str, percent: f64) -> Result<OwnedFd> {
    ensure!((0.0..=100.0).contains(&percent), "loss {percent}% out of range");
    let threshold = (percent / 100.0 * SCALE as f64).round() as i32;
    let prog = [
        insn(0x85, 0, BPF_FUNC_GET_PRANDOM_U32), // call bpf_get_prandom_u32
        insn(0x94, 0, SCALE),                    // w0 %= SCALE
        insn(0xa5, 2, threshold),                // if r0 < threshold goto drop
        insn(0xb7, 0, TCX_NEXT),                 // r0 = TCX_NEXT
        insn(0x95, 0, 0),                        // exit
        insn(0xb7, 0, TCX_DROP),                 // drop: r0 = TCX_DROP
        insn(0x95, 0, 0),                        // exit
    ];
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..7].copy_from_slice(b"ha_loss");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_TCX_EGRESS,
        ..Default::default()
    };
    let prog_fd = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd,
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let msg = String::from_utf8_lossy(&log[..end]);
            bail!("loading the loss BPF program: {e}; verifier: {}", msg.trim());
        }
    };
    let c = CString::new(iface).context("interface name")?;
    // SAFETY: valid C string; resolves in the calling thread's network namespace.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error()).context(format!("no interface {iface}"));
    }
    let mut link = LinkCreateAttr {
        prog_fd: std::os::fd::AsRawFd::as_raw_fd(&prog_fd) as u32,
        target_ifindex: ifindex,
        attach_type: BPF_TCX_EGRESS,
        ..Default::default()
    };
    bpf(BPF_LINK_CREATE, &mut link).context(format!("attaching the loss program to {iface} egress (tcx)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_specs() {
        assert_eq!(loss_only("loss 10%"), Some(10.0));
        assert_eq!(loss_only("loss random 2.5%"), Some(2.5));
        assert_eq!(loss_only("loss 100"), Some(100.0));
        assert_eq!(loss_only("loss 10% delay 1ms"), None);
        assert_eq!(loss_only("delay 1ms"), None);
        assert_eq!(loss_only("loss 120%"), None);
    }
}
