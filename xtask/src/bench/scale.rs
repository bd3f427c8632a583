//! What the agent costs: a cluster of 2..32 nodes at a 10 ms interval (time to converge on one
//! holder, CPU and memory per node, XDP CPU), and two idle nodes at 1, 10 and 100 ms.
use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_lab::{AgentSet, AgentSettings, Lab};

use super::{
    BenchArgs, first_line,
    procfs::{self, BpfStats, Usage},
    results::{RestPoint, Results, ScalePoint},
};
use crate::scenario::{self, ms};

const SCALE_INTERVAL: Duration = Duration::from_millis(10);
const SCALE_TOLERANCE: Duration = Duration::from_millis(35);
/// (interval, tolerance) in ms of the cost-at-rest runs.
const REST_SETTINGS: [(u64, u64); 3] = [(1, 4), (10, 35), (100, 350)];
/// Startup of many agents on a small machine can take a while; bounded all the same.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Let start-up work (XDP load, first announcements) pass before measuring.
const WARMUP: Duration = Duration::from_secs(2);

pub fn run_scale(res: &mut Results, agent: &std::path::Path, args: &BenchArgs) -> Result<()> {
    let _stats = BpfStats::enable()?;
    let window = Duration::from_secs(args.window_secs);
    for &n in &args.nodes {
        println!("\n-- {n} nodes, interval 10 ms, tolerance 35 ms --");
        match scale_point(agent, n, window, args.realtime) {
            Ok(p) => {
                println!(
                    "{n:>3} nodes: converged in {:.0} ms; agent CPU {:.2}% mean, {:.2}% max per node; RSS {:.1} MiB mean; \
                     XDP {:.2}% of a core in all ({:.0} ns/packet, {:.0} packets/s)",
                    p.converge_ms,
                    p.cpu_pct_mean,
                    p.cpu_pct_max,
                    p.rss_mib_mean,
                    p.xdp_cpu_pct_total,
                    p.xdp_ns_per_packet,
                    p.xdp_packets_per_s
                );
                res.scale.push(p);
            }
            Err(e) => {
                eprintln!("scale {n} nodes: {e:#}");
                res.errors.push(format!("scale {n} nodes: {}", first_line(&format!("{e:#}"))));
            }
        }
    }
    Ok(())
}

fn scale_point(agent: &std::path::Path, n: usize, window: Duration, realtime: bool) -> Result<ScalePoint> {
    let lab = Lab::new(n).context("making the lab")?;
    // Node 1 is the most worthy; every priority differs.
    let priorities: Vec<u32> = (0..n as u32).map(|k| 1000 - k).collect();
    let mut s = AgentSettings::new(&priorities);
    s.interval = SCALE_INTERVAL;
    s.tolerance = SCALE_TOLERANCE;
    if realtime {
        s.extra_args.push("--realtime".into());
    }
    let start = Instant::now();
    let agents = AgentSet::start(&lab, agent, s)?;
    scenario::wait_for(&agents, "node 1 alone holds the address", CONVERGE_TIMEOUT, |h| h == [1])?;
    let converge = start.elapsed();
    println!("converged on node 1 in {:.0} ms; measuring for {} s", ms(converge), window.as_secs());
    let u = usage(&lab, &agents, n, window)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    Ok(ScalePoint {
        nodes: n,
        converge_ms: ms(converge),
        cpu_pct_mean: mean(&u.cpu_pct),
        cpu_pct_max: max(&u.cpu_pct),
        rss_mib_mean: mean(&u.rss_mib),
        rss_mib_max: max(&u.rss_mib),
        xdp_cpu_pct_total: u.xdp_cpu_pct,
        xdp_ns_per_packet: u.xdp_ns_per_packet,
        xdp_packets_per_s: u.xdp_packets_per_s,
        window_s: u.window.as_secs_f64(),
    })
}

/// After a warm-up, every agent's CPU and RSS and all their XDP programs over `window`.
fn usage(lab: &Lab, agents: &AgentSet, n: usize, window: Duration) -> Result<Usage> {
    thread::sleep(WARMUP);
    let pids: Vec<u32> = (1..=n).map(|i| agents.pid(i)).collect::<Result<_>>()?;
    let progs: Vec<u32> = (1..=n).map(|i| procfs::xdp_prog_id(lab.node(i))).collect::<Result<_>>()?;
    procfs::measure_usage(&pids, &progs, window)
}

pub fn run_rest(res: &mut Results, agent: &std::path::Path, args: &BenchArgs) -> Result<()> {
    let _stats = BpfStats::enable()?;
    let window = Duration::from_secs(args.window_secs);
    for (i_ms, t_ms) in REST_SETTINGS {
        let (interval, tolerance) = (Duration::from_millis(i_ms), Duration::from_millis(t_ms));
        println!("\n-- 2 idle nodes, interval {i_ms} ms, tolerance {t_ms} ms, {} s window --", window.as_secs());
        let r = (|| {
            let lab = Lab::new(2).context("making the lab")?;
            let mut s = AgentSettings::new(&super::failover::PRIORITIES);
            s.interval = interval;
            s.tolerance = tolerance;
            if args.realtime {
                s.extra_args.push("--realtime".into());
            }
            let agents = AgentSet::start(&lab, agent, s)?;
            scenario::wait_for(&agents, "node 1 alone holds the address", CONVERGE_TIMEOUT, |h| h == [1])?;
            usage(&lab, &agents, 2, window)
        })();
        match r {
            Ok(u) => {
                println!(
                    "holder {:.2}% CPU, {:.1} MiB; standby {:.2}% CPU, {:.1} MiB; XDP {:.3}% of a core ({:.0} ns/packet)",
                    u.cpu_pct[0], u.rss_mib[0], u.cpu_pct[1], u.rss_mib[1], u.xdp_cpu_pct, u.xdp_ns_per_packet
                );
                res.rest.push(RestPoint {
                    interval_ms: ms(interval),
                    tolerance_ms: ms(tolerance),
                    cpu_pct: u.cpu_pct,
                    rss_mib: u.rss_mib,
                    xdp_cpu_pct_total: u.xdp_cpu_pct,
                    xdp_ns_per_packet: u.xdp_ns_per_packet,
                    window_s: u.window.as_secs_f64(),
                });
            }
            Err(e) => {
                eprintln!("rest {i_ms} ms: {e:#}");
                res.errors.push(format!("rest {i_ms} ms: {}", first_line(&format!("{e:#}"))));
            }
        }
    }
    Ok(())
}
