//! Checks up front that the agent may do what it must, so the operator gets one clear line
//! instead of an EPERM from deep inside a netlink or bpf call.
use std::fs;

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

/// Names of the capabilities the agent needs and lacks.
pub fn missing_capabilities() -> Vec<&'static str> {
    let Some(caps) = effective_caps() else {
        return Vec::new();
    };
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let mut missing = Vec::new();
    // CAP_SYS_ADMIN covers BPF and PERFMON on every kernel; CAP_BPF+CAP_PERFMON on 5.8+.
    if !has(CAP_SYS_ADMIN) && !(has(CAP_BPF) && has(CAP_PERFMON)) {
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
