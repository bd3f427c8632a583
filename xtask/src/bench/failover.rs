//! Client-observed outage of the four failover scenarios, repeated, at several settings; for
//! our agents and for keepalived, each in a fresh two-node lab (priorities 200 and 100).
//!
//! One repetition: cut node 1's link (hard failure: node 2 takes over), restore it (node 1
//! preempts), SIGTERM node 1 (clean stop), restart it, SIGKILL it (crash: its address stays,
//! node 2 must take over and announce), restart it.
use std::{thread, time::Duration};

use anyhow::{Context, Result};
use ha_lab::{AgentSet, Lab};

use super::{
    Daemons, first_line,
    keepalived::{self, Keepalived},
    results::{FailoverSeries, Implementation, Results, Run, Scenario, ScenarioRuns},
    settle_for, stats,
};
use crate::scenario::{self, Measured, STEP_TIMEOUT, ms};

/// (interval, tolerance) in µs: the settings the report compares.
const OUR_SETTINGS: [(u64, u64); 5] =
    [(500, 2_000), (1_000, 4_000), (2_000, 8_000), (10_000, 35_000), (100_000, 350_000)];
/// keepalived's smallest advert interval (VRRPv3 counts centiseconds) and ten times that.
const KEEPALIVED_ADVERTS_MS: [u64; 2] = [10, 100];
pub const PRIORITIES: [u32; 2] = [200, 100];

pub fn run_ours(res: &mut Results, agent: &std::path::Path, args: &super::BenchArgs) -> Result<()> {
    let settings: Vec<(Duration, Duration)> = match (&args.interval, &args.tolerance) {
        (Some(i), Some(t)) => vec![(duration(i)?, duration(t)?)],
        _ => OUR_SETTINGS.iter().map(|&(i, t)| (Duration::from_micros(i), Duration::from_micros(t))).collect(),
    };
    for (interval, tolerance) in settings {
        let setting = format!("{}/{} ms", ms(interval), ms(tolerance));
        println!("\n-- ha, interval/tolerance {setting}, {} repetitions, client probes every 0.2 ms --", args.reps);
        let mut series = FailoverSeries {
            implementation: Implementation::Ha,
            setting,
            interval_ms: ms(interval),
            tolerance_ms: ms(tolerance),
            scenarios: empty_runs(),
        };
        let outcome = (|| {
            let lab = Lab::new(2).context("making the lab")?;
            let mut agents =
                AgentSet::start(&lab, agent, super::ours(&PRIORITIES, interval, tolerance, args.realtime))?;
            repeat(&lab, &mut agents, args.reps, settle_for(tolerance), &mut series.scenarios)
        })();
        finish(res, series, outcome);
    }
    Ok(())
}

pub fn run_keepalived(res: &mut Results, args: &super::BenchArgs) -> Result<()> {
    for advert_ms in KEEPALIVED_ADVERTS_MS {
        let advert = Duration::from_millis(advert_ms);
        let down = keepalived::master_down(advert, PRIORITIES[1]);
        let setting = format!("advert {} s", advert.as_secs_f64());
        println!(
            "\n-- keepalived, {setting} (backup takes over after {:.1} ms), {} repetitions --",
            ms(down),
            args.reps
        );
        let mut series = FailoverSeries {
            implementation: Implementation::Keepalived,
            setting,
            interval_ms: ms(advert),
            tolerance_ms: ms(down),
            scenarios: empty_runs(),
        };
        let outcome = (|| {
            let lab = Lab::new(2).context("making the lab")?;
            let mut ka = Keepalived::start(&lab, advert, &PRIORITIES)?;
            let r = repeat(&lab, &mut ka, args.reps, settle_for(down), &mut series.scenarios);
            ka.stop_all(Duration::from_secs(2));
            r
        })();
        finish(res, series, outcome);
    }
    Ok(())
}

pub fn empty_runs() -> Vec<ScenarioRuns> {
    Scenario::ALL.iter().map(|&scenario| ScenarioRuns { scenario, runs: Vec::new() }).collect()
}

/// Keeps what was measured even if a step failed part-way; the failure goes to the errors.
pub fn finish(res: &mut Results, series: FailoverSeries, outcome: Result<()>) {
    if let Err(e) = outcome {
        eprintln!("{} {}: {e:#}", series.implementation.name(), series.setting);
        res.errors.push(format!(
            "failover {} {}: {}",
            series.implementation.name(),
            series.setting,
            first_line(&format!("{e:#}"))
        ));
    }
    print_table(&series);
    res.failover.push(series);
}

fn repeat(lab: &Lab, d: &mut impl Daemons, reps: usize, settle: Duration, out: &mut [ScenarioRuns]) -> Result<()> {
    scenario::wait_for(&*d, "node 1 alone holds the address", STEP_TIMEOUT, |h| h == [1])?;
    thread::sleep(settle);
    for rep in 1..=reps {
        println!("repetition {rep}/{reps}");
        let m = scenario::measure(lab, &*d, settle, || lab.cut_link(1), |h| h == [2])?;
        record(out, Scenario::HardFailure, m);
        let m = scenario::measure(lab, &*d, settle, || lab.restore_link(1), |h| h == [1])?;
        record(out, Scenario::Preemption, m);
        let m = scenario::measure(lab, &*d, settle, || d.clean_stop(1), |h| h == [2])?;
        record(out, Scenario::CleanStop, m);
        restart_holder(d, settle)?;
        // The crashed daemon cannot remove its copy: node 2 holding it (and announcing) is the end.
        let m = scenario::measure(lab, &*d, settle, || d.crash(1), |h| h.contains(&2))?;
        record(out, Scenario::Crash, m);
        restart_holder(d, settle)?;
    }
    Ok(())
}

fn restart_holder(d: &mut impl Daemons, settle: Duration) -> Result<()> {
    d.start_node(1)?;
    scenario::wait_for(&*d, "node 1 alone holds the address again", STEP_TIMEOUT, |h| h == [1])?;
    thread::sleep(settle);
    Ok(())
}

/// Prints one measurement and adds it to its scenario's runs.
pub fn record(out: &mut [ScenarioRuns], scenario: Scenario, m: Measured) {
    println!(
        "  {:<34} outage {:>6.1} ms, lost {:>3} of {:>4} (1 ms probes: {:.1} ms, {} lost)",
        scenario.title(),
        ms(m.outage),
        m.lost,
        m.sent,
        ms(m.outage_1ms),
        m.lost_1ms
    );
    if let Some(s) = out.iter_mut().find(|s| s.scenario == scenario) {
        s.runs.push(Run {
            outage_ms: ms(m.outage),
            lost: m.lost,
            sent: m.sent,
            settled_ms: ms(m.settled_after),
            outage_1ms: Some(ms(m.outage_1ms)),
            lost_1ms: Some(m.lost_1ms),
        });
    }
}

pub fn print_table(series: &FailoverSeries) {
    println!(
        "\n{} {}: client-observed outage in ms over {} repetitions",
        series.implementation.name(),
        series.setting,
        series.scenarios.first().map_or(0, |s| s.runs.len())
    );
    println!(
        "{:<30} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8}",
        "scenario", "min", "median", "p90", "max", "lost med", "no-loss"
    );
    for s in &series.scenarios {
        let st = stats::scenario(s);
        println!(
            "{:<30} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>9.0} {:>5}/{}",
            s.scenario.title(),
            st.outage.min,
            st.outage.median,
            st.outage.p90,
            st.outage.max,
            st.lost.median,
            st.no_loss,
            st.runs
        );
    }
}

pub fn duration(s: &str) -> Result<Duration> {
    humantime::parse_duration(s).with_context(|| format!("{s:?} is not a duration like 2ms"))
}
