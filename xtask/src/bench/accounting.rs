//! Who used the CPU over a window, to the nanosecond: the whole machine, and every process on
//! it, so that the run time of processes that demonstrably have nothing to do with the daemons
//! measured (builds, editors, other labs, memory housekeeping) can be taken out of the
//! machine's figure, while everything the kernel does for the daemons (softirq, XDP, timers,
//! kworkers, ksoftirqd) stays in.
//!
//! - A process's CPU is its CPU-time clock (`clock_getcpuclockid`): the sum of every thread's
//!   `sum_exec_runtime` in ns, the threads that already exited included (the kernel folds them
//!   into the process), where /proc/PID/task/TID/schedstat only shows the live ones and
//!   utime+stime only whole clock ticks (10 ms).
//! - A process that ends during the window is counted by the process that reaps it: its
//!   parent's "children's time" (cutime + cstime of /proc/PID/stat, in ticks) grows by its
//!   whole life, so a process seen at the start and gone at the end counts as what the reaper
//!   gained less what it had at the start. The kernel threads that vanish are not reaped by
//!   anyone: their last moments are lost (none vanish at rest).
//! - The machine's busy time is, for each CPU, the time less its idle time (idle and iowait
//!   of /proc/timer_list, which the tickless kernel keeps in ns and excludes interrupts and
//!   softirqs from). A CPU's idle time there lags while the CPU sleeps, so each CPU is read from
//!   a thread pinned to it: the CPU is then awake and its idle time up to date. Where that
//!   fails, /proc/stat's idle + iowait (the same figures, in 10 ms units).
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use anyhow::{Context, Result};

/// Kernel threads that demonstrably work for nobody measured: memory housekeeping (DAMON's
/// monitor, huge-page collapsing, compaction, reclaim). kworkers, ksoftirqd and RCU are kept:
/// they may run the daemons' network and timer work.
const HOUSEKEEPING: [&str; 4] = ["kdamond", "khugepaged", "kcompactd", "kswapd"];

const PF_KTHREAD: u64 = 0x0020_0000;

/// One process as /proc shows it at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proc {
    comm: String,
    ppid: u32,
    kthread: bool,
    /// Start time in ticks since boot: tells a reused pid from the process that had it.
    start: u64,
    /// CPU time of all its threads, exited ones included, ns.
    own_ns: u64,
    /// CPU time of the children it has reaped (and theirs), ns, in steps of a clock tick.
    reaped_ns: u64,
}

impl Proc {
    fn total_ns(&self) -> i128 {
        i128::from(self.own_ns) + i128::from(self.reaped_ns)
    }
}

/// The machine and every process at one instant.
pub struct Snapshot {
    at: Instant,
    /// Σ over CPUs of (now - idle), ns, when every CPU could be read from /proc/timer_list.
    busy_ns: Option<u128>,
    /// Σ over CPUs of idle + iowait from /proc/stat, ns.
    stat_idle_ns: u128,
    procs: BTreeMap<u32, Proc>,
}

/// What a window cost, % of one core.
#[derive(Debug, Clone)]
pub struct Window {
    pub secs: f64,
    /// The whole machine: every CPU's time less its idle time.
    pub busy_pct: f64,
    /// Processes that are none of the trees asked for and not the kernel's (userspace, this
    /// bench included, and the housekeeping kernel threads).
    pub background_pct: f64,
    /// Each tree asked for: the process and all below it.
    pub trees_pct: Vec<f64>,
    /// The machine's busy time came from /proc/timer_list (ns) rather than /proc/stat (10 ms).
    pub precise: bool,
    /// Processes of the trees seen at the start and gone at the end (their last moments may
    /// be lost).
    pub trees_vanished: usize,
}

impl Window {
    /// The machine less the background: the daemons, and the kernel's work for anyone.
    pub fn residual_pct(&self) -> f64 {
        self.busy_pct - self.background_pct
    }
}

/// The start of a window: the machine first, then the processes.
pub fn snapshot() -> Result<Snapshot> {
    let mut s = machine()?;
    s.procs = read_procs();
    Ok(s)
}

/// The end of a window: the processes first, then the machine, so that the processes' window
/// lies inside the machine's and they never seem to use more than the machine did.
pub fn snapshot_end() -> Result<Snapshot> {
    let procs = read_procs();
    Ok(Snapshot { procs, ..machine()? })
}

fn machine() -> Result<Snapshot> {
    let at = Instant::now();
    let busy_ns = timer_list_busy_ns();
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let stat_idle_ns = u128::from(parse_stat_idle_ticks(&stat).context("parsing /proc/stat")?) * tick_ns();
    Ok(Snapshot { at, busy_ns, stat_idle_ns, procs: BTreeMap::new() })
}

/// Between two snapshots: the machine, the background, and the tree under each of `roots`.
pub fn window(a: &Snapshot, b: &Snapshot, roots: &[u32]) -> Window {
    let nanos = b.at.duration_since(a.at).as_nanos().max(1);
    let pct = |ns: i128| ns as f64 / nanos as f64 * 100.0;
    let (busy, precise) = match (a.busy_ns, b.busy_ns) {
        (Some(x), Some(y)) => (y as i128 - x as i128, true),
        _ => {
            let ncpu = std::thread::available_parallelism().map_or(1, usize::from) as i128;
            (ncpu * nanos as i128 - (b.stat_idle_ns as i128 - a.stat_idle_ns as i128), false)
        }
    };
    let trees: Vec<BTreeSet<u32>> = roots
        .iter()
        .map(|&r| {
            let mut t = descendants(&a.procs, r);
            t.extend(descendants(&b.procs, r));
            t
        })
        .collect();
    let mut tree_ns = vec![0i128; roots.len()];
    let mut background = 0i128;
    let mut vanished = 0;
    let pids: BTreeSet<u32> = a.procs.keys().chain(b.procs.keys()).copied().collect();
    for pid in pids {
        let (pa, pb) = (a.procs.get(&pid), b.procs.get(&pid));
        let d = gained_ns(pa, pb);
        let p = pb.or(pa).map(|p| (p.kthread, p.comm.as_str()));
        if let Some(i) = trees.iter().position(|t| t.contains(&pid)) {
            tree_ns[i] += d;
            vanished += usize::from(pa.is_some() && pb.is_none());
        } else if p.is_some_and(|(kthread, comm)| !kthread || is_housekeeping(comm)) {
            background += d;
        }
    }
    Window {
        secs: nanos as f64 / 1e9,
        busy_pct: pct(busy),
        background_pct: pct(background),
        trees_pct: tree_ns.into_iter().map(pct).collect(),
        precise,
        trees_vanished: vanished,
    }
}

/// What one pid used between two snapshots (see the module's notes on ends and reuse).
fn gained_ns(a: Option<&Proc>, b: Option<&Proc>) -> i128 {
    match (a, b) {
        (Some(a), Some(b)) if a.start == b.start => b.total_ns() - a.total_ns(),
        // Ended (and reaped: its reaper's children's time holds its whole life) or replaced
        // by a new process under the same pid (born in the window: all of it counts).
        (Some(a), b) => {
            let ended = if a.kthread { 0 } else { -a.total_ns() };
            ended + b.map_or(0, Proc::total_ns)
        }
        (None, Some(b)) => b.total_ns(),
        (None, None) => 0,
    }
}

fn is_housekeeping(comm: &str) -> bool {
    HOUSEKEEPING.iter().any(|h| comm.starts_with(h))
}

/// `root` and every process below it in `procs`.
fn descendants(procs: &BTreeMap<u32, Proc>, root: u32) -> BTreeSet<u32> {
    let mut tree = BTreeSet::new();
    if !procs.contains_key(&root) {
        return tree;
    }
    tree.insert(root);
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, p) in procs {
            if tree.contains(&p.ppid) && tree.insert(*pid) {
                grew = true;
            }
        }
    }
    tree
}

/// Every process readable in /proc; one that ends while being read is left out.
fn read_procs() -> BTreeMap<u32, Proc> {
    let mut procs = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(mut p) = parse_proc_stat(&stat) else { continue };
        let Some(own) = process_cpu_ns(pid) else { continue };
        p.own_ns = own;
        procs.insert(pid, p);
    }
    procs
}

/// The CPU-time clock of process `pid` (all its threads, exited ones included), ns.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid out pointer.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out pointer.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?)
}

/// comm, ppid (4), flags (9), cutime + cstime (16, 17), starttime (22); the command name may
/// hold spaces and parentheses, so fields are counted from the last ')'.
fn parse_proc_stat(stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Proc {
        comm,
        ppid: u32::try_from(num(1)?).ok()?,
        kthread: num(6)? & PF_KTHREAD != 0,
        start: num(19)?,
        own_ns: 0,
        reaped_ns: (num(13)? + num(14)?).saturating_mul(u64::try_from(tick_ns()).ok()?),
    })
}

/// One clock tick (USER_HZ) in ns.
fn tick_ns() -> u128 {
    // SAFETY: sysconf has no pointer arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / u128::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// idle + iowait of the `cpu ` line, in ticks.
fn parse_stat_idle_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(5).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    Some(v.get(3)? + v.get(4)?)
}

/// Σ over CPUs of (now - idle - iowait) from /proc/timer_list, each CPU read from a thread
/// pinned to it; None when any CPU cannot be read so.
fn timer_list_busy_ns() -> Option<u128> {
    let first = std::fs::read_to_string("/proc/timer_list").ok()?;
    let cpus = timer_list_cpus(&first);
    if cpus.is_empty() {
        return None;
    }
    let mut total = 0u128;
    for cpu in cpus {
        let busy = std::thread::scope(|s| s.spawn(move || pinned_busy_ns(cpu)).join().ok().flatten())?;
        total += busy;
    }
    Some(total)
}

fn pinned_busy_ns(cpu: usize) -> Option<u128> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity get valid
    // pointers (pid 0: the calling thread).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return None;
        }
    }
    let text = std::fs::read_to_string("/proc/timer_list").ok()?;
    let (now, idle) = parse_timer_list_cpu(&text, cpu)?;
    now.checked_sub(idle)
}

fn timer_list_cpus(text: &str) -> Vec<usize> {
    text.lines().filter_map(|l| l.strip_prefix("cpu: ")?.trim().parse().ok()).collect()
}

/// ("now at" ns, idle_sleeptime + iowait_sleeptime of `cpu` ns).
fn parse_timer_list_cpu(text: &str, cpu: usize) -> Option<(u128, u128)> {
    let ns = |l: &str| l.split(':').nth(1)?.trim().strip_suffix("nsecs")?.trim().parse::<u128>().ok();
    let now = text.lines().find_map(|l| l.strip_prefix("now at ")?.strip_suffix(" nsecs")?.parse().ok())?;
    let header = format!("cpu: {cpu}");
    let mut lines = text.lines().skip_while(|l| l.trim_end() != header).skip(1);
    let (mut idle, mut iowait) = (None, None);
    for l in lines.by_ref().take_while(|l| !l.starts_with("cpu: ")) {
        let t = l.trim_start();
        if t.starts_with(".idle_sleeptime") {
            idle = ns(t);
        } else if t.starts_with(".iowait_sleeptime") {
            iowait = ns(t);
        }
    }
    Some((now, idle? + iowait?))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn proc(comm: &str, ppid: u32, kthread: bool, own_ns: u64, reaped_ns: u64) -> Proc {
        Proc { comm: comm.into(), ppid, kthread, start: 1, own_ns, reaped_ns }
    }

    #[test]
    fn parses_stat_and_timer_list() {
        let stat = "77 (kdamond.0) S 2 0 0 0 -1 2129984 0 0 0 0 1690 3 4 5 20 0 1 0 42 0 0";
        let p = parse_proc_stat(stat).expect("parses");
        assert_eq!((p.comm.as_str(), p.ppid, p.kthread, p.start), ("kdamond.0", 2, true, 42));
        assert_eq!(p.reaped_ns, 9 * u64::try_from(tick_ns()).expect("small"));
        let user = "900 (a (b) c) S 1 900 900 0 -1 4194560 0 0 0 0 5 6 0 0 20 0 3 0 7 0 0";
        let p = parse_proc_stat(user).expect("parses");
        assert_eq!((p.comm.as_str(), p.ppid, p.kthread, p.start), ("a (b) c", 1, false, 7));
        assert_eq!(parse_proc_stat("garbage"), None);
        assert_eq!(parse_stat_idle_ticks("cpu  10 0 5 100 3 1 1 0 0 0\ncpu0 1 2\n"), Some(103));
        let tl = "Timer List Version: v0.10\nnow at 5000 nsecs\n\ncpu: 0\n clock 0:\n  .idle_sleeptime : 1000 nsecs\n  \
                  .iowait_sleeptime: 200 nsecs\n\ncpu: 1\n  .idle_sleeptime : 3000 nsecs\n  .iowait_sleeptime: 1 nsecs\n";
        assert_eq!(timer_list_cpus(tl), [0, 1]);
        assert_eq!(parse_timer_list_cpu(tl, 0), Some((5000, 1200)));
        assert_eq!(parse_timer_list_cpu(tl, 1), Some((5000, 3001)));
        assert_eq!(parse_timer_list_cpu(tl, 2), None);
    }

    #[test]
    fn a_window_splits_trees_background_and_kernel() {
        let at = Instant::now();
        let snap = |procs: Vec<(u32, Proc)>, busy: u128| Snapshot {
            at,
            busy_ns: Some(busy),
            stat_idle_ns: 0,
            procs: procs.into_iter().collect(),
        };
        let a = snap(
            vec![
                (10, proc("keepalived", 1, false, 100, 0)),
                (11, proc("keepalived", 10, false, 50, 0)),
                (20, proc("cargo", 1, false, 1000, 0)),
                (21, proc("rustc", 20, false, 500, 0)),
                (30, proc("kdamond.0", 2, true, 70, 0)),
                (31, proc("kworker/0:1", 2, true, 10, 0)),
                (32, proc("kworker/1:2", 2, true, 5, 0)),
            ],
            0,
        );
        let mut b = snap(
            vec![
                (10, proc("keepalived", 1, false, 130, 0)),
                (11, proc("keepalived", 10, false, 60, 0)),
                // a hook born in the window, under the VRRP child
                (12, proc("sh", 11, false, 7, 0)),
                // rustc 21 ended at 900 ns and was reaped by cargo
                (20, proc("cargo", 1, false, 1100, 900)),
                (30, proc("kdamond.0", 2, true, 90, 0)),
                (31, proc("kworker/0:1", 2, true, 40, 0)),
            ],
            0,
        );
        b.at = at + Duration::from_nanos(1000);
        let w = window(&a, &b, &[10]);
        // Tree: 30 + 10 + 7; background: cargo 100 + rustc's last 400 + kdamond 20; the kworkers
        // are the kernel's (kept in the residual), the vanished one lost.
        assert_eq!(w.trees_pct.len(), 1);
        assert!((w.trees_pct[0] - 4.7).abs() < 1e-9, "{w:?}");
        assert!((w.background_pct - 52.0).abs() < 1e-9, "{w:?}");
        assert_eq!(w.trees_vanished, 0);
        // A pid reused within the window: the old process ended, the new one was born.
        let mut reused = proc("cargo", 1, false, 3, 0);
        reused.start = 2;
        b.procs.insert(20, reused);
        let w = window(&a, &b, &[10]);
        assert!((w.background_pct - (-99.7 - 50.0 + 2.0)).abs() < 1e-9, "{w:?}");
    }

    #[test]
    fn the_process_clock_keeps_exited_threads() -> Result<()> {
        let me = std::process::id();
        let before = process_cpu_ns(me).context("own clock")?;
        std::thread::spawn(|| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
        })
        .join()
        .map_err(|_| anyhow::anyhow!("spinner panicked"))?;
        let after = process_cpu_ns(me).context("own clock")?;
        assert!(after - before >= 25_000_000, "{} ns", after - before);
        Ok(())
    }

    #[test]
    fn this_machine_reads() -> Result<()> {
        let a = snapshot()?;
        std::thread::sleep(Duration::from_millis(50));
        let b = snapshot_end()?;
        let w = window(&a, &b, &[std::process::id()]);
        assert!(w.busy_pct >= 0.0 && w.busy_pct <= 100.0 * 64.0, "{w:?}");
        assert_eq!(w.trees_pct.len(), 1);
        Ok(())
    }

    /// The noise of the machine's figure with nothing of ours running: idle windows back to
    /// back, whole and less the unrelated processes. Takes two minutes, so run by hand:
    /// `cargo test -p xtask idle_noise -- --ignored --nocapture`.
    #[test]
    #[ignore = "two minutes of idle windows"]
    fn idle_noise() -> Result<()> {
        let (n, window) = (6, Duration::from_secs(20));
        let mut busy = Vec::new();
        let mut residual = Vec::new();
        for _ in 0..n {
            let a = snapshot()?;
            std::thread::sleep(window);
            let w = window_of(&a)?;
            println!(
                "busy {:.3}%, unrelated {:.3}%, left {:.3}% (timer_list: {})",
                w.busy_pct,
                w.background_pct,
                w.residual_pct(),
                w.precise
            );
            busy.push(w.busy_pct);
            residual.push(w.residual_pct());
        }
        let stats = |v: &[f64]| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
            let (min, max) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!("mean {mean:.3}%, sd {sd:.3}%, range {min:.3}-{max:.3}%")
        };
        println!("whole machine: {}\nless unrelated: {}", stats(&busy), stats(&residual));
        Ok(())
    }

    fn window_of(a: &Snapshot) -> Result<Window> {
        Ok(window(a, &snapshot_end()?, &[]))
    }
}
