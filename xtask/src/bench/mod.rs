//! `cargo xtask bench [xdp|failover|keepalived|stability|scale|rest|all|report]`.
//!
//! `all` (the default) runs every benchmark in one go, writes the raw results to
//! `bench/results/<date>.json` and regenerates `docs/benchmarks.md` with SVG plots from them.
//! A single benchmark prints its table (and writes `--json FILE` if asked) but leaves the
//! committed report alone; `report` regenerates it from a results file.
mod accounting;
mod failover;
mod floor;
mod keepalived;
mod links;
pub(crate) mod machine;
mod plots;
mod procfs;
mod report;
mod rest;
mod results;
mod routed;
mod scale;
mod stability;
mod stats;
mod xdp;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ha_lab::{AgentSet, AgentSettings, LabAuth};

use self::results::{KeepalivedInfo, Options, Results, SCHEMA};
use crate::{cmd, ebpf, scenario::Cluster};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKind {
    /// ns/packet of the XDP program (BPF_PROG_TEST_RUN).
    Xdp,
    /// Client-observed outage of hard failure, crash, clean stop and preemption, at several
    /// interval/tolerance settings.
    Failover,
    /// The same scenarios with keepalived (VRRPv3), installed with apt-get if missing.
    Keepalived,
    /// Routed mode: hard failure, preemption and clean stop seen by a client behind a BGP
    /// router (BIRD, BFD), at 10/35 ms (or --interval/--tolerance).
    Routed,
    /// Two heartbeat links (the LAN and a cable): one cut, then both, then restored, at 10/35
    /// ms (or --interval/--tolerance).
    Links,
    /// False takeovers and flaps under 10% loss and under CPU saturation, ours and keepalived;
    /// then ours at 1/4 and 0.5/2 ms at rest (--rest-secs), with the machine's stalls.
    Stability,
    /// 2 to 32 nodes at 10 ms: convergence, CPU and memory per node, XDP CPU; then 64 nodes:
    /// false takeovers over --scale-secs and the successor after the holder's death.
    Scale,
    /// Cost at rest, agent and keepalived: CPU of each node's processes, the machine's CPU
    /// above idle, wake-ups, at 1, 10 and 100 ms; the lab's floor; the machine's stall
    /// distribution.
    Rest,
    /// The lab's floor alone (part of rest): the barest heartbeat exchanges, a sender and a
    /// kernel that answers it, paced by a timer wake or by the kernel, at 1 and 10 ms.
    Floor,
    /// Everything; writes bench/results/<date>.json and regenerates docs/benchmarks.md.
    All,
    /// Regenerate docs/benchmarks.md (and its plots) from a results file, without measuring.
    Report,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark to run.
    #[arg(value_enum, default_value_t = BenchKind::All)]
    pub which: BenchKind,
    /// Skip the prerequisite checks.
    #[arg(long)]
    pub skip_setup: bool,
    /// Repetitions of each failover scenario at each setting.
    #[arg(long, default_value_t = 10)]
    pub reps: usize,
    /// Failover, links, routed and rest benches at this one heartbeat interval (with
    /// --tolerance) instead of their standard settings.
    #[arg(long, requires = "tolerance")]
    pub interval: Option<String>,
    /// Tolerance that goes with --interval.
    #[arg(long, requires = "interval")]
    pub tolerance: Option<String>,
    /// Run our agents with --realtime (SCHED_FIFO, locked memory).
    #[arg(long)]
    pub realtime: bool,
    /// Length of each stability run (ours and keepalived, under loss and under CPU load).
    #[arg(long, default_value_t = 120)]
    pub stability_secs: u64,
    /// Length of the at-rest watch of two nodes at 1/4 ms (stability; 0.5/2 ms gets a fifth of
    /// it); 0 leaves it out.
    #[arg(long, default_value_t = 600)]
    pub rest_secs: u64,
    /// Measuring window for CPU use (scale and rest).
    #[arg(long, default_value_t = 10)]
    pub window_secs: u64,
    /// Cluster sizes of the scale bench.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,16,32")]
    pub nodes: Vec<usize>,
    /// `--wake` modes of the agent to measure at rest (default: event and poll when the agent
    /// has the flag).
    #[arg(long, value_delimiter = ',')]
    pub wake_modes: Vec<String>,
    /// Length of the large cluster's false-takeover watch (scale).
    #[arg(long, default_value_t = 120)]
    pub scale_secs: u64,
    /// Size of the large cluster (scale); 0 leaves it out.
    #[arg(long, default_value_t = 64)]
    pub scale_big: usize,
    /// Leave keepalived out (no comparison).
    #[arg(long)]
    pub no_keepalived: bool,
    /// Do not apt-get install keepalived when it is missing (the comparison is skipped).
    #[arg(long)]
    pub no_install: bool,
    /// Also write the results (of any benchmark) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// `report`: the results file to render (default: the newest in bench/results).
    #[arg(long)]
    pub from: Option<PathBuf>,
}

/// Daemons that move the shared address in a lab (ours or keepalived), as the benchmarks
/// drive them. Nodes are 1-based.
pub trait Daemons: Cluster {
    /// (Re)starts node i's daemon.
    fn start_node(&mut self, i: usize) -> Result<()>;
    /// SIGTERM: the daemon hands over and exits.
    fn clean_stop(&self, i: usize) -> Result<()>;
    /// SIGKILL: it dies without a word.
    fn crash(&self, i: usize) -> Result<()>;
    fn pid(&self, i: usize) -> Option<u32>;
    /// Every state change node i's daemon has logged so far.
    fn transitions(&self, i: usize) -> Vec<keepalived::Transition>;
}

impl Daemons for AgentSet<'_> {
    fn start_node(&mut self, i: usize) -> Result<()> {
        AgentSet::start_node(self, i)
    }

    fn clean_stop(&self, i: usize) -> Result<()> {
        self.signal(i, libc::SIGTERM)
    }

    fn crash(&self, i: usize) -> Result<()> {
        self.signal(i, libc::SIGKILL)
    }

    fn pid(&self, i: usize) -> Option<u32> {
        AgentSet::pid(self, i).ok()
    }

    fn transitions(&self, i: usize) -> Vec<keepalived::Transition> {
        parse_our_transitions(&self.output(i))
    }
}

/// Our agent logs one line per transition: `[.. INFO ..] STANDBY -> ACTIVE: reason (acted in ..)`.
fn parse_our_transitions(out: &str) -> Vec<keepalived::Transition> {
    out.lines()
        .filter_map(|l| {
            let msg = l.split_once("] ").map_or(l, |(_, m)| m);
            let (from, rest) = msg.split_once(" -> ")?;
            let to = rest.split_once(':')?.0;
            let state = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase());
            (state(from) && state(to)).then_some(keepalived::Transition { to_active: to == "ACTIVE" })
        })
        .collect()
}

/// The hidden `floor-sender` command: the sender of the rest bench's floor runs.
pub fn floor_sender(to: std::net::Ipv4Addr, period: std::time::Duration, burst: u32) -> Result<()> {
    floor::sender(to, period, burst)
}

pub fn run(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    if args.which == BenchKind::Report {
        let path = match &args.from {
            Some(p) => p.clone(),
            None => newest_results()?,
        };
        let results: Results = serde_json::from_str(
            &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        return report::write(&results, &path);
    }
    if !cmd::is_root() {
        bail!("the benchmarks load XDP and make network namespaces: run them as root");
    }
    if args.reps == 0
        || args.window_secs == 0
        || args
            .nodes
            .iter()
            .chain(Some(&args.scale_big).filter(|&&n| n > 0))
            .any(|&n| !(2..=ha_lab::MAX_NODES).contains(&n))
    {
        bail!("--reps and --window-secs must be positive and --nodes within 2..={}", ha_lab::MAX_NODES);
    }
    ha_lab::install_signal_cleanup()?;
    let mut res = Results {
        schema: SCHEMA,
        date: machine::utc_date(SystemTime::now()),
        started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        commit: machine::commit(),
        machine: machine::describe(),
        options: Options {
            reps: args.reps,
            stability_secs: args.stability_secs,
            rest_secs: args.rest_secs,
            window_secs: args.window_secs,
            realtime: args.realtime,
            scale_nodes: args.nodes.clone(),
            agent_auth: match AgentSettings::new(&[1]).auth {
                LabAuth::LabKey => "lab key".into(),
                LabAuth::Insecure => "none".into(),
                LabAuth::Manual => "manual".into(),
            },
        },
        ..Results::default()
    };
    let m = &res.machine;
    println!(
        "bench on {} x {}, kernel {}, load {:.2} {:.2} {:.2}",
        m.nproc, m.cpu_model, m.kernel, m.load_start[0], m.load_start[1], m.load_start[2]
    );
    ebpf::build(args.skip_setup)?;
    let want = |k: BenchKind| args.which == k || args.which == BenchKind::All;
    if want(BenchKind::Xdp) {
        section(&mut res, "xdp", xdp::run);
    }
    let needs_agent = [
        BenchKind::Failover,
        BenchKind::Routed,
        BenchKind::Links,
        BenchKind::Keepalived,
        BenchKind::Stability,
        BenchKind::Scale,
        BenchKind::Rest,
    ]
    .into_iter()
    .any(want);
    let agent = if needs_agent { Some(ebpf::build_agent_release()?) } else { None };
    let with_keepalived = !args.no_keepalived
        && matches!(args.which, BenchKind::Keepalived | BenchKind::Stability | BenchKind::Rest | BenchKind::All);
    if with_keepalived {
        res.keepalived = match keepalived::ensure_installed(!args.no_install) {
            Ok(version) => KeepalivedInfo { version: Some(version), skipped: None },
            Err(why) => {
                println!("keepalived comparison skipped: {why}");
                KeepalivedInfo { version: None, skipped: Some(why) }
            }
        };
    } else {
        res.keepalived.skipped = Some("not requested (--no-keepalived or a single benchmark)".into());
    }
    let ka = res.keepalived.version.is_some();
    if let Some(agent) = &agent {
        if want(BenchKind::Failover) {
            section(&mut res, "failover", |res| failover::run_ours(res, agent, &args));
        }
        if want(BenchKind::Routed) {
            section(&mut res, "routed failover", |res| routed::run(res, agent, &args));
        }
        if want(BenchKind::Links) {
            section(&mut res, "failover with two heartbeat links", |res| links::run(res, agent, &args));
        }
        if ka && want(BenchKind::Keepalived) {
            section(&mut res, "failover with keepalived", |res| failover::run_keepalived(res, &args));
        }
        if want(BenchKind::Stability) {
            section(&mut res, "stability", |res| stability::run(res, agent, &args, ka));
            if args.rest_secs > 0 {
                section(&mut res, "stability: fast settings at rest", |res| stability::run_at_rest(res, agent, &args));
            }
        }
        if want(BenchKind::Scale) {
            section(&mut res, "scale", |res| scale::run_scale(res, agent, &args));
            if args.scale_big > 0 {
                section(&mut res, "scale: large cluster at rest", |res| scale::run_big(res, agent, &args));
            }
        }
        if want(BenchKind::Rest) {
            section(&mut res, "cost at rest", |res| rest::run(res, agent, &args, ka));
        }
    }
    if args.which == BenchKind::Floor {
        section(&mut res, "the lab's floor", |res| rest::run_floor(res, &args));
    }
    res.machine.load_end = machine::loadavg();
    res.duration_s = started.elapsed().as_secs_f64();
    println!("\n{}", report::summary_text(&res));
    let text = serde_json::to_string_pretty(&res).context("serialising results")?;
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    if args.which == BenchKind::All {
        let path = results_path(&res.date)?;
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
        report::write(&res, &path)?;
    }
    println!("bench took {:.1} min", started.elapsed().as_secs_f64() / 60.0);
    if !res.errors.is_empty() {
        bail!("{} benchmark(s) failed part-way: {}", res.errors.len(), res.errors.join("; "));
    }
    Ok(())
}

/// Our agents as every benchmark runs them: these priorities (node 1 first), one interval and
/// tolerance, and `--realtime` when the bench was asked for it.
fn ours(priorities: &[u32], interval: Duration, tolerance: Duration, realtime: bool) -> AgentSettings {
    let mut s = AgentSettings::new(priorities);
    s.interval = interval;
    s.tolerance = tolerance;
    if realtime {
        s.extra_args.push("--realtime".into());
    }
    s
}

/// Runs one benchmark; a failure is recorded (and shown in the report) and the next one runs.
fn section(res: &mut Results, name: &str, f: impl FnOnce(&mut Results) -> Result<()>) {
    let start = Instant::now();
    println!("\n== bench {name} ==");
    if let Err(e) = f(res) {
        eprintln!("bench {name} failed: {e:#}");
        res.errors.push(format!("{name}: {}", first_line(&format!("{e:#}"))));
    }
    println!("(bench {name}: {:.0} s)", start.elapsed().as_secs_f64());
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn results_dir() -> Result<PathBuf> {
    Ok(cmd::workspace_root()?.join("bench/results"))
}

/// `bench/results/<date>.json`, or `<date>-2.json`.. if that day already has one.
fn results_path(date: &str) -> Result<PathBuf> {
    let dir = results_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for n in 1..100 {
        let name = if n == 1 { format!("{date}.json") } else { format!("{date}-{n}.json") };
        let p = dir.join(name);
        if !p.exists() {
            return Ok(p);
        }
    }
    bail!("{} already holds 99 results of {date}", dir.display())
}

/// The results file that started last.
fn newest_results() -> Result<PathBuf> {
    let dir = results_dir()?;
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let started = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("started_unix")?.as_u64())
            .unwrap_or(0);
        if best.as_ref().is_none_or(|(b, _)| started >= *b) {
            best = Some((started, path));
        }
    }
    best.map(|(_, p)| p).with_context(|| format!("no results in {}: run `cargo xtask bench` first", dir.display()))
}

/// Settle time after a failover step: long enough to catch late outages (ARP, flaps).
fn settle_for(tolerance: Duration) -> Duration {
    (tolerance * 4).max(Duration::from_millis(100))
}

fn relative(p: &Path) -> String {
    cmd::workspace_root()
        .ok()
        .and_then(|root| p.strip_prefix(root).ok().map(|r| r.display().to_string()))
        .unwrap_or_else(|| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        let cli = crate::Cli::try_parse_from(["xtask", "bench"].iter().chain(args))?;
        match cli.command {
            crate::Command::Bench(b) => Ok(b),
            _ => panic!("not bench"),
        }
    }

    #[test]
    fn bench_command_line() -> Result<()> {
        let all = parse(&[])?;
        assert_eq!((all.which, all.reps, all.interval.is_none()), (BenchKind::All, 10, true));
        assert_eq!(all.nodes, [2, 4, 8, 16, 32]);
        let one = parse(&["failover", "--reps", "5", "--interval", "2ms", "--tolerance", "8ms"])?;
        assert_eq!((one.which, one.reps, one.tolerance.as_deref()), (BenchKind::Failover, 5, Some("8ms")));
        assert!(parse(&["failover", "--interval", "2ms"]).is_err(), "--interval needs --tolerance");
        assert_eq!(parse(&["scale", "--nodes", "2,3"])?.nodes, [2, 3]);
        Ok(())
    }

    #[test]
    fn our_transition_lines() {
        let out = "[2026-01-01T00:00:00Z INFO  ha_agent::agent] node 192.0.2.2 priority 100 on eth0\n\
                   [2026-01-01T00:00:00Z INFO  ha_agent::agent] STANDBY -> ACTIVE: holder 192.0.2.1 silent for 41 ms (acted in 90 us)\n\
                   [2026-01-01T00:00:00Z INFO  ha_agent::agent] ACTIVE -> STANDBY: 192.0.2.1 (priority 200) holds the address now\n\
                   [2026-01-01T00:00:00Z WARN  ha_agent::agent] a -> b: not a transition\n";
        let t = parse_our_transitions(out);
        assert_eq!(t.len(), 2);
        assert!(t[0].to_active && !t[1].to_active);
    }
}
