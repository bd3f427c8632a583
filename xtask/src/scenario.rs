//! One measured failover step, shared by the demo and the benchmark: the client probes the
//! shared address every 0.2 ms while something happens to the cluster, until the expected
//! node holds the address; then what the client saw is reported. Works for any [`Cluster`]:
//! our agents, or keepalived in the benchmark's comparison.
use std::{
    net::IpAddr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use ha_lab::{AgentSet, Lab, Prober, VIP};

/// How often the client probes. An outage reads as the gap between answered probes, so it is
/// known to one period: at 1 ms a 3.2 ms outage read as 4 or 5 ms, and targets of 2.5 and
/// 4.2 ms could not be told from chance.
pub const PROBE_PERIOD: Duration = Duration::from_micros(200);
/// Every this many probes make a 1 ms prober, whose figures earlier runs had.
pub const PROBES_PER_MS: usize = (1_000_000 / PROBE_PERIOD.as_nanos()) as usize;
/// How long a step may take before it counts as failed.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Longest gap between answered probes, as the client saw it (0 without loss).
    pub outage: Duration,
    pub lost: u64,
    pub sent: u64,
    /// From the action until the expected holder (alone, unless allowed otherwise) holds it.
    pub settled_after: Duration,
    /// What a client probing every 1 ms would have seen: the same run's every fifth probe.
    pub outage_1ms: Duration,
    pub lost_1ms: u64,
}

impl Measured {
    /// Stops `prober` (which probed every [`PROBE_PERIOD`]) and reports what it saw.
    pub fn from_prober(prober: Prober, settled_after: Duration) -> Measured {
        let (fine, coarse) = prober.stop_thinned(PROBES_PER_MS);
        Measured {
            outage: fine.longest_outage,
            lost: fine.lost,
            sent: fine.sent,
            settled_after,
            outage_1ms: coarse.longest_outage,
            lost_1ms: coarse.lost,
        }
    }
}

/// Whatever moves the shared address between the lab's nodes: who holds it now, and what to
/// show when a step times out.
pub trait Cluster {
    /// Nodes (1-based) that hold the shared address now.
    fn holders(&self) -> Result<Vec<usize>>;
    /// Every daemon's output, for an error message.
    fn diagnostics(&self) -> String;
}

impl Cluster for AgentSet<'_> {
    fn holders(&self) -> Result<Vec<usize>> {
        AgentSet::holders(self)
    }

    fn diagnostics(&self) -> String {
        AgentSet::diagnostics(self)
    }
}

/// Polls (every 5 ms, at most `timeout`) until `want(holders)`; returns the time it took.
pub fn wait_for(
    cluster: &impl Cluster,
    what: &str,
    timeout: Duration,
    want: impl Fn(&[usize]) -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        let holders = cluster.holders()?;
        if want(&holders) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("{what}: not within {timeout:?} (holders now {holders:?})\n{}", cluster.diagnostics());
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `action` while the client probes, waits until `done(holders)`, lets the client settle
/// for `settle`, and returns what the client saw.
pub fn measure(
    lab: &Lab,
    cluster: &impl Cluster,
    settle: Duration,
    action: impl FnOnce() -> Result<()>,
    done: impl Fn(&[usize]) -> bool,
) -> Result<Measured> {
    let prober = Prober::start(lab.client(), IpAddr::V4(VIP), PROBE_PERIOD)?;
    thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    action()?;
    wait_for(cluster, "the expected holder", STEP_TIMEOUT, done)?;
    let settled_after = start.elapsed();
    thread::sleep(settle);
    Ok(Measured::from_prober(prober, settled_after))
}

/// Waits until the client's neighbour entry for the shared address names `mac`.
pub fn client_points_at(lab: &Lab, mac: [u8; 6]) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if lab.client().neigh_mac(IpAddr::V4(VIP)).ok().flatten() == Some(mac) {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
