//! Two heartbeat links, client-observed: the LAN (with the shared address) and a direct cable
//! between the two nodes carrying heartbeats only. One repetition: cut the cable (heartbeats go
//! on over the LAN: nothing may change), cut node 1's LAN port too (node 1 is heard on no link:
//! node 2 takes over at the tolerance), restore both (node 1 preempts).
use std::{thread, time::Duration};

use anyhow::{Context, Result};
use ha_lab::{AgentSet, Lab, Prober, VIP};

use super::{
    failover,
    results::{FailoverSeries, Implementation, Results, Scenario, ScenarioRuns},
    settle_for,
};
use crate::scenario::{Measured, PROBE_PERIOD, STEP_TIMEOUT, ms};

/// (interval, tolerance) in ms: the L2 setting it sits beside in the report.
const SETTING: (u64, u64) = (10, 35);

pub fn run(res: &mut Results, agent: &std::path::Path, args: &super::BenchArgs) -> Result<()> {
    let (interval, tolerance) = match (&args.interval, &args.tolerance) {
        (Some(i), Some(t)) => (failover::duration(i)?, failover::duration(t)?),
        _ => (Duration::from_millis(SETTING.0), Duration::from_millis(SETTING.1)),
    };
    let setting = format!("{}/{} ms, LAN + cable", ms(interval), ms(tolerance));
    println!("\n-- ha with two heartbeat links, {setting}, {} repetitions, client probes every 0.2 ms --", args.reps);
    let mut series = FailoverSeries {
        implementation: Implementation::HaTwoLinks,
        setting,
        interval_ms: ms(interval),
        tolerance_ms: ms(tolerance),
        scenarios: [Scenario::OneLinkCut, Scenario::HardFailure, Scenario::Preemption]
            .iter()
            .map(|&scenario| ScenarioRuns { scenario, runs: Vec::new() })
            .collect(),
    };
    let outcome = (|| {
        let lab = Lab::new(2).context("making the lab")?;
        let cable = lab.add_cable(1, 2, "hb1", "10.77.0").context("a cable between the nodes")?;
        let mut s = super::ours(&failover::PRIORITIES, interval, tolerance, args.realtime);
        s.extra_args.extend(["--iface".into(), "hb1".into()]);
        let agents = AgentSet::start(&lab, agent, s)?;
        let settle = settle_for(tolerance);
        agents.wait_sole_holder(1, STEP_TIMEOUT)?;
        thread::sleep(settle);
        let measure = |to: usize, action: &dyn Fn() -> Result<()>| -> Result<Measured> {
            let prober = Prober::start(lab.client(), std::net::IpAddr::V4(VIP), PROBE_PERIOD)?;
            thread::sleep(Duration::from_millis(50));
            let start = std::time::Instant::now();
            action()?;
            agents.wait_sole_holder(to, STEP_TIMEOUT)?;
            let settled_after = start.elapsed();
            thread::sleep(settle);
            Ok(Measured::from_prober(prober, settled_after))
        };
        for rep in 1..=args.reps {
            println!("repetition {rep}/{}", args.reps);
            let m = measure(1, &|| lab.cut_lan_link(&cable, 1))?;
            failover::record(&mut series.scenarios, Scenario::OneLinkCut, m);
            let m = measure(2, &|| lab.cut_link(1))?;
            failover::record(&mut series.scenarios, Scenario::HardFailure, m);
            let m = measure(1, &|| {
                lab.restore_link(1)?;
                lab.restore_lan_link(&cable, 1)
            })?;
            failover::record(&mut series.scenarios, Scenario::Preemption, m);
        }
        Ok::<(), anyhow::Error>(())
    })();
    failover::finish(res, series, outcome);
    Ok(())
}
