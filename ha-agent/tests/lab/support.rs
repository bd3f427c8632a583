//! Helpers every lab test module shares: the agent binary, time bounds, the lab itself, and
//! the lock that keeps the CPU-starvation test apart from the rest.
pub mod xdp;

use std::{
    net::IpAddr,
    process::Command,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ha_lab::{Host, Lab, VIP};

pub const AGENT: &str = env!("CARGO_BIN_EXE_ha-agent");
/// Generous for a loaded 2-core CI machine; a takeover needs about 100 ms.
pub const WAIT: Duration = Duration::from_secs(5);
/// Bound on any one lab test (they take 2-12 s).
pub const LIMIT: Duration = Duration::from_secs(120);

/// The CPU-starvation test loads every core, so it runs alone: every test whose agents or
/// timings a loaded machine would upset holds a shared guard, and these run side by side.
static CPU: RwLock<()> = RwLock::new(());

pub fn shared_cpu() -> RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(|p| p.into_inner())
}

pub fn all_cpus() -> RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(|p| p.into_inner())
}

/// Runs a lab test body on its own thread; a hang fails the test instead of holding up CI.
pub fn bounded(body: impl FnOnce() + Send + 'static) {
    ha_lab::within(LIMIT, move || {
        body();
        Ok(())
    });
}

pub fn lab(nodes: usize) -> Lab {
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    Lab::new(nodes).expect("lab")
}

/// The lab's (first) shared address.
pub fn vip() -> IpAddr {
    IpAddr::V4(VIP)
}

/// Polls the client's neighbour entry for the shared address until it names `mac`; returns
/// how long that took.
pub fn wait_client_points_at(lab: &Lab, mac: [u8; 6]) -> Duration {
    let start = Instant::now();
    loop {
        let entry = lab.client().neigh_mac(vip()).expect("neighbour table");
        if entry == Some(mac) {
            return start.elapsed();
        }
        assert!(start.elapsed() < WAIT, "client's neighbour entry for the VIP is {entry:?}, want {mac:?}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// `ha-agent status --json` of node i.
pub fn status_json(lab: &Lab, i: usize) -> serde_json::Value {
    let out = Command::new(AGENT)
        .args(["status", "--json", "--pin-dir"])
        .arg(lab.pin_dir(i))
        .output()
        .expect("run ha-agent status");
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// Waits until node i's agent has finished starting: its receive path is open and its status
/// filled (the control socket answers earlier, while the XDP program still loads).
pub fn wait_started(lab: &Lab, i: usize) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let status = status_json(lab, i);
        if status["wake"].as_str().is_some_and(|w| !w.is_empty()) {
            return status;
        }
        assert!(start.elapsed() < WAIT, "node {i} did not finish starting: {status}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `host`'s neighbour entry for `addr` until it names `mac`.
pub fn wait_neighbour(host: &Host, addr: IpAddr, mac: [u8; 6], context: &dyn Fn() -> String) {
    let start = Instant::now();
    loop {
        let entry = host.neigh_mac(addr).expect("neighbour table");
        if entry == Some(mac) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{}'s neighbour entry for {addr} is {entry:?}, want {mac:?}\n{}",
            host.name(),
            context()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// `WARN` lines of an agent's output.
pub fn warnings(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.contains(" WARN ")).collect()
}

/// `setpriv` arguments that leave exactly `caps` (e.g. `["net_admin", "net_raw"]`) in the
/// bounding set: a root process keeps only those, its children too.
pub fn only_caps(caps: &[&str]) -> Vec<String> {
    let set: String = caps.iter().map(|c| format!(",+{c}")).collect();
    vec!["setpriv".into(), format!("--bounding-set=-all{set}"), "--inh-caps=-all".into(), "--".into()]
}

/// How long after `since` node i's agent logged its first line containing `needle`, by the
/// line's own timestamp (`[2026-11-30T06:36:10.104Z INFO ] ...`, to the ms). A bound on when an
/// agent acted, read this way, leaves out how long the lab took to see the result (`ip` in each
/// namespace, which a loaded machine slows by tens of ms).
pub fn logged_after(agents: &ha_lab::AgentSet<'_>, i: usize, needle: &str, since: SystemTime) -> Option<Duration> {
    // The log has whole ms: a line of the same ms as `since` may be later than it.
    let since_ms =
        since - Duration::from_nanos(u64::from(since.duration_since(UNIX_EPOCH).ok()?.subsec_nanos() % 1_000_000));
    agents.output(i).lines().filter(|l| l.contains(needle)).find_map(|l| {
        let stamp = l.strip_prefix('[')?.split_whitespace().next()?;
        let at = humantime::parse_rfc3339(stamp).ok()?;
        at.duration_since(since_ms).ok()
    })
}
