//! The results file `bench/results/<date>.json`: raw measurements only (every repetition), so
//! the report can be regenerated from it and statistics recomputed. Summaries live in `stats`.
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning. 3: CPU at rest in ns (process CPU-time clocks) rather
/// than clock ticks, and the machine above idle net of unrelated processes, against idle
/// windows taken before and after each run.
pub const SCHEMA: u32 = 3;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    pub schema: u32,
    /// UTC date of the start, `YYYY-MM-DD`.
    pub date: String,
    pub started_unix: u64,
    /// Wall time of the whole run, builds included.
    pub duration_s: f64,
    /// `git describe`-like identification of the code measured.
    pub commit: String,
    pub machine: Machine,
    pub options: Options,
    #[serde(default)]
    pub xdp: Vec<XdpCase>,
    #[serde(default)]
    pub failover: Vec<FailoverSeries>,
    #[serde(default)]
    pub keepalived: KeepalivedInfo,
    #[serde(default)]
    pub stability: Vec<StabilityRun>,
    #[serde(default)]
    pub scale: Vec<ScalePoint>,
    /// Schema 1's cost at rest (agent only); kept to render old results.
    #[serde(default)]
    pub rest: Vec<RestPoint>,
    #[serde(default)]
    pub rest_baseline: Option<RestBaseline>,
    #[serde(default)]
    pub rest_runs: Vec<RestRun>,
    #[serde(default)]
    pub scale_stability: Option<ScaleStability>,
    /// Benchmarks that failed part-way, one line each; the others still ran.
    #[serde(default)]
    pub errors: Vec<String>,
    /// Sections measured again in a later run and put in here, one line each saying what and how.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_mib: u64,
    /// 1, 5 and 15 minute load averages when the run started and ended.
    pub load_start: [f64; 3],
    pub load_end: [f64; 3],
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Options {
    pub reps: usize,
    pub stability_secs: u64,
    /// The at-rest watch at 1/4 ms (0.5/2 ms: a fifth of it).
    #[serde(default)]
    pub rest_secs: u64,
    pub window_secs: u64,
    pub realtime: bool,
    pub scale_nodes: Vec<usize>,
    /// How our agents authenticated heartbeats (`lab key` or `none`).
    #[serde(default)]
    pub agent_auth: String,
}

/// One row of the `ha-agent` bench target `xdp` (`--json`); rows it adds later (e.g. with
/// authentication) appear in the report as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct XdpCase {
    pub case: String,
    pub measured_ns: f64,
    pub program_ns: f64,
    pub loop_ns: f64,
    pub target_ns: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    HardFailure,
    Crash,
    CleanStop,
    Preemption,
    /// With two heartbeat links: one of them cut (nothing may change).
    OneLinkCut,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [Scenario::HardFailure, Scenario::Crash, Scenario::CleanStop, Scenario::Preemption];

    pub fn title(self) -> &'static str {
        match self {
            Scenario::HardFailure => "hard failure (link down)",
            Scenario::Crash => "crash (SIGKILL)",
            Scenario::CleanStop => "clean stop (SIGTERM)",
            Scenario::Preemption => "preemption (holder returns)",
            Scenario::OneLinkCut => "one of two heartbeat links cut",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Implementation {
    Ha,
    Keepalived,
    /// Our agents in routed mode: the host route announced by BGP (BIRD) to a router.
    HaRouted,
    /// Our agents with two heartbeat links (the LAN and a direct cable).
    HaTwoLinks,
    /// No daemon: the barest heartbeat exchange of one shape (`bench::floor`).
    Floor,
}

impl Implementation {
    pub fn name(self) -> &'static str {
        match self {
            Implementation::Ha => "ha",
            Implementation::Keepalived => "keepalived",
            Implementation::HaRouted => "ha routed (BGP via BIRD)",
            Implementation::HaTwoLinks => "ha, two heartbeat links",
            Implementation::Floor => "the lab's floor (no daemon)",
        }
    }
}

/// All repetitions of the four scenarios at one setting of one implementation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailoverSeries {
    pub implementation: Implementation,
    /// `2/8 ms` (interval/tolerance) or `advert 0.01 s`.
    pub setting: String,
    pub interval_ms: f64,
    /// Silence after which the standby takes over (keepalived: 3 adverts + skew).
    pub tolerance_ms: f64,
    pub scenarios: Vec<ScenarioRuns>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioRuns {
    pub scenario: Scenario,
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Run {
    /// Longest gap between answered probes (0 without loss): probes every 0.2 ms since
    /// 2026-11-30 (every 1 ms before: then `outage_1ms` is absent, and this is that figure).
    pub outage_ms: f64,
    pub lost: u64,
    pub sent: u64,
    /// From the action until the expected node held the address.
    pub settled_ms: f64,
    /// The same run seen by a 1 ms prober (every fifth probe).
    #[serde(default)]
    pub outage_1ms: Option<f64>,
    #[serde(default)]
    pub lost_1ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeepalivedInfo {
    /// `Keepalived v2.2.7 (01/16,2022)` when it ran.
    pub version: Option<String>,
    /// Why the comparison did not run.
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StabilityRun {
    pub implementation: Implementation,
    /// `loss 10%` or `cpu saturation`.
    pub condition: String,
    pub setting: String,
    pub interval_ms: f64,
    pub tolerance_ms: f64,
    pub duration_s: f64,
    /// The standby took the address while the holder was alive.
    pub false_takeovers: u64,
    /// Every state change of every node during the period.
    pub transitions: u64,
    /// At the end of the period, still under the condition, the holder's link is cut: how long
    /// until the standby held the address (polled every 5 ms). Shows what tolerating the
    /// condition costs in detection time.
    #[serde(default)]
    pub failure_taken_over_ms: Option<f64>,
    /// At rest: how late a thread sleeping 1 ms woke during the same period, on the same
    /// machine (what the agents' timers suffered), so a false takeover can be read against it.
    #[serde(default)]
    pub stall: Option<Stall>,
}

/// One cluster size at a 10 ms interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalePoint {
    pub nodes: usize,
    /// From starting the first agent until the most worthy node alone holds the address.
    pub converge_ms: f64,
    /// Agent CPU (utime+stime) per node, % of one core: mean and max over the nodes.
    pub cpu_pct_mean: f64,
    pub cpu_pct_max: f64,
    pub rss_mib_mean: f64,
    pub rss_mib_max: f64,
    /// All nodes' XDP programs together, % of one core, and per packet.
    pub xdp_cpu_pct_total: f64,
    pub xdp_ns_per_packet: f64,
    pub xdp_packets_per_s: f64,
    pub window_s: f64,
}

/// Two idle nodes (one holder, one standby) at one interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestPoint {
    pub interval_ms: f64,
    pub tolerance_ms: f64,
    /// Holder first, then the standby.
    pub cpu_pct: Vec<f64>,
    pub rss_mib: Vec<f64>,
    pub xdp_cpu_pct_total: f64,
    pub xdp_ns_per_packet: f64,
    pub window_s: f64,
}

/// The machine with nothing of ours running, measured by the rest bench.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestBaseline {
    /// CPU busy (all but idle and iowait), % of one core: schema 2's one window at the start;
    /// since schema 3 the mean of `windows`.
    pub machine_busy_pct: f64,
    pub window_s: f64,
    pub stall: Stall,
    /// The idle windows, in order: one before the first run and one after each run.
    #[serde(default)]
    pub windows: Vec<IdleWindow>,
    /// Where the machine's busy time came from: `timer_list` (ns) or `stat` (10 ms ticks);
    /// empty in schema 2 (`stat`).
    #[serde(default)]
    pub machine_clock: String,
}

/// One window of the machine without a lab of ours, % of one core.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct IdleWindow {
    /// Every CPU's time less its idle time.
    pub busy_pct: f64,
    /// Run time of the processes that are not the kernel's (and of the kernel's memory
    /// housekeeping threads): what the residual leaves out.
    pub background_pct: f64,
    pub window_s: f64,
}

impl IdleWindow {
    /// What the machine does that is counted against the daemons when they run.
    pub fn residual_pct(&self) -> f64 {
        self.busy_pct - self.background_pct
    }
}

/// Oversleep of a thread sleeping `period_us` in a loop: what a daemon's timer suffers here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stall {
    pub period_us: f64,
    pub samples: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

/// Two idle nodes (holder, standby) of one implementation, mode and interval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestRun {
    pub implementation: Implementation,
    /// `event` or `poll` (the agent's `--wake`); empty for keepalived or an agent without it.
    pub mode: String,
    pub setting: String,
    pub interval_ms: f64,
    pub tolerance_ms: f64,
    /// Holder first, then the standby: every process of the node's daemon, % of one core.
    /// Whole clock ticks (10 ms) in schema 2, ns since schema 3 (`cpu_ns`).
    pub cpu_pct: Vec<f64>,
    /// `cpu_pct` comes from the processes' CPU-time clocks (ns), not utime+stime (ticks).
    #[serde(default)]
    pub cpu_ns: bool,
    /// Voluntary context switches per second of all their threads.
    pub wakes_per_s: Vec<f64>,
    pub rss_mib: Vec<f64>,
    /// The whole machine above the idle baseline, % of one core, both nodes together. Since
    /// schema 3: busy less `background_pct`, less the mean of the idle windows' residuals
    /// before and after the run.
    pub machine_pct_above_idle: f64,
    pub window_s: f64,
    /// The machine's busy time during the run (everything), % of one core.
    #[serde(default)]
    pub machine_busy_pct: Option<f64>,
    /// Run time of the unrelated processes during the run, taken out.
    #[serde(default)]
    pub background_pct: Option<f64>,
    /// Residuals of the idle windows just before and just after the run.
    #[serde(default)]
    pub idle_before_pct: Option<f64>,
    #[serde(default)]
    pub idle_after_pct: Option<f64>,
    /// ± this much of `machine_pct_above_idle` is noise: twice the standard deviation of such
    /// a difference, from the spread of all idle windows of the run. None: not measured.
    #[serde(default)]
    pub machine_noise_pct: Option<f64>,
}

/// A large cluster at rest: false takeovers over a period, then the holder killed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleStability {
    pub nodes: usize,
    pub interval_ms: f64,
    pub tolerance_ms: f64,
    pub duration_s: f64,
    /// A node other than the holder took the address while the holder lived.
    pub false_takeovers: u64,
    /// Every transition logged by any node during the period.
    pub transitions: u64,
    /// From SIGKILL of the holder until the most worthy survivor alone held the address.
    pub successor_ms: Option<f64>,
    /// Nodes that held the address at once at any poll after the kill (1 when clean).
    pub max_holders_after_kill: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_2_rest_figures_still_read() -> serde_json::Result<()> {
        let run: RestRun = serde_json::from_str(
            r#"{"implementation":"keepalived","mode":"","setting":"advert 0.01 s","interval_ms":10.0,
                "tolerance_ms":36.1,"cpu_pct":[0.4,0.05],"wakes_per_s":[99.0,99.0],"rss_mib":[13.0,13.0],
                "machine_pct_above_idle":-0.8,"window_s":20.0}"#,
        )?;
        assert!(!run.cpu_ns && run.machine_noise_pct.is_none() && run.idle_before_pct.is_none());
        let base: RestBaseline = serde_json::from_str(
            r#"{"machine_busy_pct":2.6,"window_s":20.0,
                "stall":{"period_us":1000.0,"samples":10,"p50_us":85.0,"p99_us":122.0,"max_us":5563.0}}"#,
        )?;
        assert!(base.windows.is_empty() && base.machine_clock.is_empty());
        Ok(())
    }
}
