//! Routed mode beyond one LAN, client-observed: two nodes whose BIRD speakers announce the
//! holder's host route by eBGP to a router (BIRD, BFD), and a client behind the router probing
//! every 0.2 ms. One repetition: cut node 1's link (hard failure: BFD takes its route off
//! the router, node 2 takes over), restore it (node 1 preempts once its session is back),
//! SIGTERM node 1 (clean stop), restart it. A crash is left out: a killed agent's route stays
//! in its table, announced, until `ha-agent cleanup` or a restart removes it (docs/routed.md).
use std::{
    net::{IpAddr, Ipv4Addr},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ha_lab::{
    AgentSet, Lab, Prober,
    bgp::{Bfd, BgpSettings, ROUTED_VIP, Speakers},
};

use super::{
    Daemons, failover,
    results::{FailoverSeries, Implementation, Results, Scenario, ScenarioRuns},
    settle_for,
};
use crate::scenario::{Measured, PROBE_PERIOD, STEP_TIMEOUT, ms};

/// (interval, tolerance) in ms: the L2 setting it sits beside in the report.
const SETTING: (u64, u64) = (10, 35);
/// BFD 10 ms x 3: a dead node's route leaves the router within about the tolerance.
const BFD: Bfd = Bfd { interval: Duration::from_millis(10), multiplier: 3 };
/// A returning node's BGP session comes back within BIRD's error wait (1-2 s in the lab).
const SESSION_TIMEOUT: Duration = Duration::from_secs(15);

pub fn run(res: &mut Results, agent: &std::path::Path, args: &super::BenchArgs) -> Result<()> {
    let (interval, tolerance) = match (&args.interval, &args.tolerance) {
        (Some(i), Some(t)) => (super::failover::duration(i)?, super::failover::duration(t)?),
        _ => (Duration::from_millis(SETTING.0), Duration::from_millis(SETTING.1)),
    };
    let setting =
        format!("{}/{} ms, BFD {} ms x {}", ms(interval), ms(tolerance), BFD.interval.as_millis(), BFD.multiplier);
    println!(
        "\n-- ha routed (BGP via BIRD), {setting}, {} repetitions, remote client probes every 0.2 ms --",
        args.reps
    );
    let mut series = FailoverSeries {
        implementation: Implementation::HaRouted,
        setting,
        interval_ms: ms(interval),
        tolerance_ms: ms(tolerance),
        scenarios: failover::empty_runs(),
    };
    let outcome = (|| {
        let lab = Lab::with_router(2).context("making the routed lab")?;
        let mut speakers = Speakers::start(&lab, 2, BgpSettings { bfd: Some(BFD), ..BgpSettings::default() })?;
        speakers.wait_established(&[1, 2], SESSION_TIMEOUT)?;
        let mut s = speakers.agent_settings(&failover::PRIORITIES)?;
        s.interval = interval;
        s.tolerance = tolerance;
        if args.realtime {
            s.extra_args.push("--realtime".into());
        }
        let mut agents = AgentSet::start(&lab, agent, s)?;
        let r = Routed { lab: &lab, speakers: &speakers, settle: settle_for(tolerance) };
        r.repeat(&mut agents, args.reps, &mut series.scenarios)
    })();
    failover::finish(res, series, outcome);
    Ok(())
}

struct Routed<'a> {
    lab: &'a Lab,
    speakers: &'a Speakers<'a>,
    settle: Duration,
}

impl Routed<'_> {
    fn repeat(&self, agents: &mut AgentSet, reps: usize, out: &mut [ScenarioRuns]) -> Result<()> {
        self.settled_on(agents, 1, SESSION_TIMEOUT)?;
        for rep in 1..=reps {
            println!("repetition {rep}/{reps}");
            let m = self.measure(agents, 2, || self.lab.cut_link(1))?;
            failover::record(out, Scenario::HardFailure, m);
            let m = self.measure(agents, 1, || self.lab.restore_link(1))?;
            failover::record(out, Scenario::Preemption, m);
            let m = self.measure(agents, 2, || agents.clean_stop(1))?;
            failover::record(out, Scenario::CleanStop, m);
            agents.start_node(1)?;
            self.settled_on(agents, 1, STEP_TIMEOUT)?;
        }
        Ok(())
    }

    /// Runs `action` while the remote client probes, until the router routes to node `to` and
    /// `to` alone holds the address; then the client settles and what it saw is returned.
    fn measure(&self, agents: &AgentSet, to: usize, action: impl FnOnce() -> Result<()>) -> Result<Measured> {
        let remote = self.lab.remote_client().context("no remote client")?;
        let prober = Prober::start(remote, IpAddr::V4(ROUTED_VIP), PROBE_PERIOD)?;
        thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        action()?;
        self.settled_on(agents, to, SESSION_TIMEOUT)?;
        let settled_after = start.elapsed();
        thread::sleep(self.settle);
        Ok(Measured::from_prober(prober, settled_after))
    }

    fn settled_on(&self, agents: &AgentSet, node: usize, timeout: Duration) -> Result<()> {
        let hop: Option<Ipv4Addr> = Some(self.lab.node(node).addr());
        self.speakers.wait_next_hop(ROUTED_VIP, hop, timeout)?;
        agents.wait_sole_holder_of(IpAddr::V4(ROUTED_VIP), node, timeout)?;
        thread::sleep(self.settle);
        Ok(())
    }
}
