//! False takeovers and flaps of a healthy two-node cluster over a fixed period, under 10%
//! packet loss (every node's egress) and under CPU saturation (a busy loop per core), for our
//! agents and keepalived at comparable settings. Transitions are counted from the daemons' own
//! log lines; a false takeover is the standby becoming active while the holder is alive.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use ha_lab::{AgentSet, Lab};

use super::{
    BenchArgs, Daemons,
    failover::PRIORITIES,
    first_line,
    keepalived::{self, Keepalived},
    rest::stall_distribution,
    results::{Implementation, Results, StabilityRun, Stall},
};
use crate::scenario::{self, STEP_TIMEOUT, ms};

/// Ours: 10 ms heartbeats, tolerance 4 intervals (the target's condition).
const OUR_INTERVAL: Duration = Duration::from_millis(10);
const OUR_TOLERANCE: Duration = Duration::from_millis(40);
/// keepalived at its smallest advert interval: it takes over after 3 adverts + skew (36 ms),
/// which VRRP does not let one raise.
const KEEPALIVED_ADVERT: Duration = Duration::from_millis(10);
const LOSS: &str = "loss 10%";

/// Ours at the fast settings, left alone: (interval, tolerance) in µs, and the share of
/// `--rest-secs` each runs (1/4 ms the whole period, the target's 10 minutes by default; 0.5/2
/// ms a fifth of it, for its false-takeover rate).
const FAST_AT_REST: [(u64, u64, u64); 2] = [(1_000, 4_000, 1), (500, 2_000, 5)];

#[derive(Clone, Copy, Debug)]
enum Condition {
    Loss,
    Cpu,
    Rest,
}

impl Condition {
    fn name(self) -> &'static str {
        match self {
            Condition::Loss => "loss 10%",
            Condition::Cpu => "cpu saturation",
            Condition::Rest => "at rest",
        }
    }
}

/// Two healthy nodes at the fast settings with nothing disturbing them: false takeovers come
/// only from the machine (scheduling stalls), measured beside them in the same period.
pub fn run_at_rest(res: &mut Results, agent: &std::path::Path, args: &BenchArgs) -> Result<()> {
    for (interval_us, tolerance_us, share) in FAST_AT_REST {
        let (interval, tolerance) = (Duration::from_micros(interval_us), Duration::from_micros(tolerance_us));
        let period = Duration::from_secs((args.rest_secs / share).max(1));
        let setting = format!("{}/{} ms", ms(interval), ms(tolerance));
        println!("\n-- ha {setting}, at rest for {} s --", period.as_secs());
        let r = (|| {
            let lab = Lab::new(2).context("making the lab")?;
            let s = super::ours(&PRIORITIES, interval, tolerance, args.realtime);
            let agents = AgentSet::start(&lab, agent, s)?;
            observe(&lab, &agents, Condition::Rest, period)
        })();
        push(res, Implementation::Ha, Condition::Rest, setting, interval, tolerance, period, r);
    }
    Ok(())
}

pub fn run(res: &mut Results, agent: &std::path::Path, args: &BenchArgs, with_keepalived: bool) -> Result<()> {
    let period = Duration::from_secs(args.stability_secs);
    for condition in [Condition::Loss, Condition::Cpu] {
        let setting = format!("{}/{} ms", ms(OUR_INTERVAL), ms(OUR_TOLERANCE));
        println!("\n-- ha {setting}, {} for {} s --", condition.name(), period.as_secs());
        let r = (|| {
            let lab = Lab::new(2).context("making the lab")?;
            let s = super::ours(&PRIORITIES, OUR_INTERVAL, OUR_TOLERANCE, args.realtime);
            let agents = AgentSet::start(&lab, agent, s)?;
            observe(&lab, &agents, condition, period)
        })();
        push(res, Implementation::Ha, condition, setting, OUR_INTERVAL, OUR_TOLERANCE, period, r);
        if !with_keepalived {
            continue;
        }
        let down = keepalived::master_down(KEEPALIVED_ADVERT, PRIORITIES[1]);
        let setting = format!("advert {} s", KEEPALIVED_ADVERT.as_secs_f64());
        println!("\n-- keepalived {setting}, {} for {} s --", condition.name(), period.as_secs());
        let r = (|| {
            let lab = Lab::new(2).context("making the lab")?;
            let mut ka = Keepalived::start(&lab, KEEPALIVED_ADVERT, &PRIORITIES)?;
            let r = observe(&lab, &ka, condition, period);
            ka.stop_all(Duration::from_secs(2));
            r
        })();
        push(res, Implementation::Keepalived, condition, setting, KEEPALIVED_ADVERT, down, period, r);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn push(
    res: &mut Results,
    implementation: Implementation,
    condition: Condition,
    setting: String,
    interval: Duration,
    tolerance: Duration,
    period: Duration,
    r: Result<Observed>,
) {
    match r {
        Ok(Observed { false_takeovers, transitions, failure_taken_over, stall }) => {
            println!(
                "{} {setting} under {}: {false_takeovers} false takeovers, {transitions} transitions in {} s",
                implementation.name(),
                condition.name(),
                period.as_secs()
            );
            if let Some(t) = failure_taken_over {
                println!("  then the holder's link was cut: the standby held the address after {:.0} ms", ms(t));
            }
            if let Some(st) = &stall {
                println!(
                    "  stalls meanwhile (a thread sleeping 1 ms): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
                    st.p50_us, st.p99_us, st.max_us
                );
            }
            res.stability.push(StabilityRun {
                implementation,
                condition: condition.name().into(),
                setting,
                interval_ms: ms(interval),
                tolerance_ms: ms(tolerance),
                duration_s: period.as_secs_f64(),
                false_takeovers,
                transitions,
                failure_taken_over_ms: failure_taken_over.map(ms),
                stall,
            });
        }
        Err(e) => {
            eprintln!("stability {} {}: {e:#}", implementation.name(), condition.name());
            res.errors.push(format!(
                "stability {} {}: {}",
                implementation.name(),
                condition.name(),
                first_line(&format!("{e:#}"))
            ));
        }
    }
}

/// What one stability run saw.
struct Observed {
    false_takeovers: u64,
    transitions: u64,
    /// After the period, under the condition still, from cutting the holder's link until the
    /// standby held the address (None: it did not within the step timeout).
    failure_taken_over: Option<Duration>,
    /// At rest: the machine's stalls during the period.
    stall: Option<Stall>,
}

/// Waits for node 1 to hold the address, applies `condition` for `period`, counts the false
/// takeovers and transitions meanwhile, then cuts node 1's link and times the takeover.
fn observe(lab: &Lab, d: &impl Daemons, condition: Condition, period: Duration) -> Result<Observed> {
    scenario::wait_for(d, "node 1 alone holds the address", STEP_TIMEOUT, |h| h == [1])?;
    thread::sleep(Duration::from_secs(1));
    let before: Vec<usize> = (1..=2).map(|i| d.transitions(i).len()).collect();
    let count = || -> (u64, u64) {
        let (mut takeovers, mut all) = (0, 0);
        for i in 1..=2 {
            let t = d.transitions(i);
            let new = t.get(before[i - 1]..).unwrap_or_default();
            all += new.len() as u64;
            if i == 2 {
                takeovers += new.iter().filter(|t| t.to_active).count() as u64;
            }
        }
        (takeovers, all)
    };
    let burner = match condition {
        Condition::Loss => {
            for i in 1..=2 {
                lab.netem(i, LOSS)?;
            }
            None
        }
        Condition::Cpu => Some(Burner::start(period + Duration::from_secs(5))),
        Condition::Rest => None,
    };
    let stalls = matches!(condition, Condition::Rest)
        .then(|| thread::Builder::new().name("bench-stalls".into()).spawn(move || stall_distribution(period)));
    let start = Instant::now();
    let mut next_report = Duration::from_secs(15);
    while start.elapsed() < period {
        thread::sleep(Duration::from_millis(200).min(period.saturating_sub(start.elapsed())));
        if start.elapsed() >= next_report {
            let (takeovers, all) = count();
            println!("  {:>4} s: {takeovers} false takeovers, {all} transitions", next_report.as_secs());
            next_report += Duration::from_secs(15);
        }
        if (1..=2).any(|i| d.pid(i).is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}/stat")).exists())) {
            bail!("a daemon exited during the stability run\n{}", d.diagnostics());
        }
    }
    let (false_takeovers, transitions) = count();
    let stall = match stalls {
        Some(Ok(h)) => h.join().ok(),
        Some(Err(e)) => bail!("starting the stall sampler: {e}"),
        None => None,
    };
    let failure_taken_over = if d.holders()? == [1] {
        lab.cut_link(1)?;
        let taken = scenario::wait_for(d, "node 2 alone holds the address", STEP_TIMEOUT, |h| h == [2]);
        lab.restore_link(1)?;
        taken.ok()
    } else {
        None
    };
    if let Some(b) = burner {
        b.stop();
    }
    for i in 1..=2 {
        lab.clear_netem(i)?;
    }
    Ok(Observed { false_takeovers, transitions, failure_taken_over, stall })
}

/// One busy thread per core until stopped or `max` elapsed (so it ends by itself).
struct Burner {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl Burner {
    fn start(max: Duration) -> Burner {
        let stop = Arc::new(AtomicBool::new(false));
        let n = thread::available_parallelism().map_or(1, usize::from);
        let threads = (0..n)
            .filter_map(|k| {
                let stop = Arc::clone(&stop);
                thread::Builder::new()
                    .name(format!("bench-burn-{k}"))
                    .spawn(move || {
                        let start = Instant::now();
                        let mut spins = 0u64;
                        while !stop.load(Ordering::Relaxed) && start.elapsed() < max {
                            spins = std::hint::black_box(spins.wrapping_add(1));
                        }
                        spins
                    })
                    .ok()
            })
            .collect();
        Burner { stop, threads }
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Burner {
    fn drop(&mut self) {
        self.halt();
    }
}
