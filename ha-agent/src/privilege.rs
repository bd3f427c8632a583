//! Checks up front that the agent may do what it must, so the operator gets one clear line
//! instead of an EPERM from deep inside a netlink or bpf call.
//!
//! Always: CAP_NET_ADMIN (addresses; attaching XDP) and CAP_NET_RAW (announcements on an
//! AF_PACKET socket). With XDP also CAP_BPF and CAP_PERFMON: the verifier refuses this program
//! without CAP_PERFMON. Nothing else, given a mounted bpffs (mounting it needs CAP_SYS_ADMIN).
use std::fs;

use crate::rx::settings::RxMode;

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process (CapEff in /proc/self/status).
fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Names of the capabilities the agent needs for `rx` and lacks. In `auto`, the BPF ones are
/// not required: without them the kernel refuses XDP and the agent uses the socket.
pub fn missing_capabilities(rx: RxMode) -> Vec<&'static str> {
    effective_caps().map(|caps| missing_from(caps, rx)).unwrap_or_default()
}

fn missing_from(caps: u64, rx: RxMode) -> Vec<&'static str> {
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let mut missing = Vec::new();
    // CAP_SYS_ADMIN covers BPF and PERFMON on every kernel; CAP_BPF+CAP_PERFMON on 5.8+.
    if rx == RxMode::Xdp && !has(CAP_SYS_ADMIN) && !(has(CAP_BPF) && has(CAP_PERFMON)) {
        missing.extend(["CAP_BPF", "CAP_PERFMON"]);
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn set(bits: &[u32]) -> u64 {
        let mut caps = 0;
        let mut i = 0;
        while i < bits.len() {
            caps |= 1 << bits[i];
            i += 1;
        }
        caps
    }

    #[test]
    fn each_receive_path_needs_its_own_set() {
        let xdp = set(&[CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW]);
        let socket = set(&[CAP_NET_ADMIN, CAP_NET_RAW]);
        assert!(missing_from(xdp, RxMode::Xdp).is_empty());
        assert_eq!(missing_from(socket, RxMode::Xdp), ["CAP_BPF", "CAP_PERFMON"]);
        assert!(missing_from(socket, RxMode::Socket).is_empty());
        assert!(missing_from(socket, RxMode::Auto).is_empty(), "auto falls back instead");
        assert_eq!(missing_from(set(&[CAP_NET_RAW]), RxMode::Auto), ["CAP_NET_ADMIN"]);
        assert!(missing_from(set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW]), RxMode::Xdp).is_empty());
    }
}
