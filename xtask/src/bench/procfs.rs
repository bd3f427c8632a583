//! Resource use of running daemons: CPU time and RSS from /proc, and the XDP programs' run time
//! from the kernel's BPF statistics (enabled only while a [`BpfStats`] guard lives).
use std::{
    collections::BTreeMap,
    os::fd::{FromRawFd, OwnedFd},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use ha_lab::Host;

use crate::cmd::Cmd;

/// CPU time of a process (all its threads, exited ones included), in seconds, to the ns: its
/// CPU-time clock, where utime+stime of /proc/PID/stat counts whole clock ticks (10 ms).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    super::accounting::process_cpu_ns(pid)
        .map(|ns| ns as f64 / 1e9)
        .with_context(|| format!("reading the CPU clock of pid {pid}"))
}

/// `pid` and every process below it (keepalived forks its VRRP child; hooks may run).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        if let Some(ppid) = parse_ppid(&stat) {
            parent_of.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parent_of.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// Field 4 (ppid), counted after the command name.
fn parse_ppid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// Voluntary context switches of every live thread of `pid`: how often it went to sleep, so
/// woke (a thread that exits takes its count along).
pub fn voluntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|status| {
            status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?.trim().parse::<u64>().ok()
        })
        .sum()
}

/// Resident set size in MiB (VmRSS).
pub fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vmrss_kib(&status).map(|kib| kib as f64 / 1024.0).with_context(|| format!("no VmRSS for pid {pid}"))
}

fn parse_vmrss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// Keeps the kernel's BPF run-time statistics on (`kernel.bpf_stats_enabled` reads 1) while it
/// lives. BPF_ENABLE_STATS hands back an fd: closing it, also by a crash or Ctrl-C, restores
/// the previous setting, so nothing global can be left changed.
pub struct BpfStats {
    _fd: OwnedFd,
}

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        const BPF_STATS_RUN_TIME: u32 = 0;
        let mut attr: [u32; 2] = [BPF_STATS_RUN_TIME, 0];
        // SAFETY: a bpf_attr prefix of the given size ({ u32 type }, zero padded).
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_mut_ptr(), size_of_val(&attr)) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("enabling BPF run-time statistics (BPF_ENABLE_STATS)");
        }
        // SAFETY: a new fd the kernel gave us.
        Ok(BpfStats { _fd: unsafe { OwnedFd::from_raw_fd(fd as i32) } })
    }
}

/// The id of the XDP program attached to a host's eth0.
pub fn xdp_prog_id(host: &Host) -> Result<u32> {
    let out = host.ip(&["-o", "link", "show", "dev", "eth0"])?;
    parse_xdp_prog_id(&out).with_context(|| format!("no XDP program on eth0 in {}: {}", host.name(), out.trim()))
}

/// `ip link` shows `prog/xdp id N ...` (also for generic mode), older versions `xdp/id:N`.
fn parse_xdp_prog_id(out: &str) -> Option<u32> {
    let toks: Vec<&str> = out.split_whitespace().collect();
    toks.windows(3).find_map(|w| (w[0] == "prog/xdp" && w[1] == "id").then(|| w[2].parse().ok()).flatten()).or_else(
        || {
            toks.iter().find_map(|t| {
                t.strip_prefix("xdp").and_then(|t| t.split_once("/id:")).and_then(|(_, id)| id.parse().ok())
            })
        },
    )
}

/// (run_time_ns, run_cnt) of each program id.
pub fn prog_run_stats(ids: &[u32]) -> Result<BTreeMap<u32, (u64, u64)>> {
    let out = Cmd::new("bpftool").args(["prog", "show", "--json"]).quiet().read()?;
    let all: serde_json::Value = serde_json::from_str(&out).context("parsing `bpftool prog show --json`")?;
    let mut found = BTreeMap::new();
    for p in all.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(id) = p.get("id").and_then(serde_json::Value::as_u64).and_then(|i| u32::try_from(i).ok()) else {
            continue;
        };
        if ids.contains(&id) {
            let get = |k: &str| p.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            found.insert(id, (get("run_time_ns"), get("run_cnt")));
        }
    }
    if found.len() != ids.len() {
        bail!("bpftool lists {} of the {} XDP programs {ids:?}", found.len(), ids.len());
    }
    Ok(found)
}

/// What a set of processes and XDP programs used over one window.
pub struct Usage {
    pub window: Duration,
    /// Per pid, % of one core.
    pub cpu_pct: Vec<f64>,
    pub rss_mib: Vec<f64>,
    /// All programs together, % of one core.
    pub xdp_cpu_pct: f64,
    pub xdp_ns_per_packet: f64,
    pub xdp_packets_per_s: f64,
}

/// Samples CPU time and XDP statistics, sleeps `window`, samples again; RSS at the end.
pub fn measure_usage(pids: &[u32], prog_ids: &[u32], window: Duration) -> Result<Usage> {
    let cpu0: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect::<Result<_>>()?;
    let xdp0 = prog_run_stats(prog_ids)?;
    let start = Instant::now();
    thread::sleep(window);
    let cpu1: Vec<f64> = pids.iter().map(|&p| cpu_seconds(p)).collect::<Result<_>>()?;
    let xdp1 = prog_run_stats(prog_ids)?;
    let elapsed = start.elapsed();
    let secs = elapsed.as_secs_f64();
    let rss_mib = pids.iter().map(|&p| rss_mib(p)).collect::<Result<_>>()?;
    let (mut ns, mut cnt) = (0u64, 0u64);
    for (id, (t1, c1)) in &xdp1 {
        let (t0, c0) = xdp0.get(id).copied().unwrap_or_default();
        ns += t1.saturating_sub(t0);
        cnt += c1.saturating_sub(c0);
    }
    Ok(Usage {
        window: elapsed,
        cpu_pct: cpu0.iter().zip(&cpu1).map(|(a, b)| (b - a) / secs * 100.0).collect(),
        rss_mib,
        xdp_cpu_pct: ns as f64 / 1e9 / secs * 100.0,
        xdp_ns_per_packet: if cnt > 0 { ns as f64 / cnt as f64 } else { f64::NAN },
        xdp_packets_per_s: cnt as f64 / secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "1234 (ha agent) S 1 1234 1234 0 -1 4194560 300 0 0 0 17 5 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_ppid(stat), Some(1));
        assert_eq!(parse_vmrss_kib("Name:\tx\nVmRSS:\t    5120 kB\n"), Some(5120));
        assert_eq!(parse_vmrss_kib("Name:\tx\n"), None);
        let link = "2: eth0@if3: <UP,LOWER_UP> mtu 1500 xdp qdisc noqueue state UP\\    link/ether 02:00:00:00:00:01 \
                    brd ff:ff:ff:ff:ff:ff\\    prog/xdp id 1099 name ha_xdp tag 746a7a3509334db3 jited";
        assert_eq!(parse_xdp_prog_id(link), Some(1099));
        assert_eq!(parse_xdp_prog_id("2: eth0: <UP> mtu 1500 xdpgeneric/id:45 qdisc noqueue"), Some(45));
        assert_eq!(parse_xdp_prog_id("2: eth0: <UP> mtu 1500 qdisc noqueue"), None);
    }

    #[test]
    fn own_process_is_readable() -> Result<()> {
        let me = std::process::id();
        assert!(cpu_seconds(me)? >= 0.0);
        assert!(rss_mib(me)? > 0.0);
        Ok(())
    }
}
