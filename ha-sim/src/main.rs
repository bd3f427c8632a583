//! `ha-sim`: run the simulator over many seeds or replay one. Usually run through
//! `cargo xtask simulate` (a release build).
//!
//! ```text
//! ha-sim [--seeds N] [--first S] [--jobs J] [--no-fence]   many seeds, a summary
//! ha-sim --seed N [--trace] [--no-fence]                   one seed, its schedule and trace
//! ```
use std::{
    process::ExitCode,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use ha_sim::{Options, Report, invariants::ALL, run, scenario::KIND_NAMES, shrink::shrink};

struct Args {
    seeds: u64,
    first: u64,
    seed: Option<u64>,
    trace: bool,
    fence: bool,
    jobs: usize,
    /// Failing seeds shown in full (with a shrunk schedule) in a multi-seed run.
    show: usize,
    /// One line per violation of every failing seed.
    list: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 1000,
        first: 0,
        seed: None,
        trace: false,
        fence: true,
        jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        show: 3,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>, name: &str| -> Result<u64, String> {
        v.ok_or(format!("{name} needs a value"))?.parse::<u64>().map_err(|e| format!("{name}: {e}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seeds" => args.seeds = number(it.next(), "--seeds")?,
            "--first" => args.first = number(it.next(), "--first")?,
            "--seed" => args.seed = Some(number(it.next(), "--seed")?),
            "--jobs" => args.jobs = number(it.next(), "--jobs")?.max(1) as usize,
            "--show" => args.show = number(it.next(), "--show")? as usize,
            "--trace" => args.trace = true,
            "--no-fence" => args.fence = false,
            "--list" => args.list = true,
            "-h" | "--help" => {
                return Err("usage: ha-sim [--seeds N] [--first S] [--jobs J] [--show K] [--list] [--no-fence] | --seed N [--trace] [--no-fence]".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn replay_command(seed: u64, fence: bool) -> String {
    format!("cargo xtask simulate --seed {seed} --trace{}", if fence { "" } else { " --no-fence" })
}

fn print_failure(r: &Report, fence: bool, tail: usize, shrink_it: bool) {
    println!("--- seed {} FAILED", r.seed);
    println!("cluster: {}", r.cluster);
    for v in &r.violations {
        println!("  {} at {:.3} ms: {}", v.invariant, v.at as f64 / 1e6, v.detail);
    }
    println!("schedule:");
    for line in &r.schedule {
        println!("  {line}");
    }
    if shrink_it && let Some(v) = r.violations.first() {
        let keep = shrink(r.seed, v.invariant, 40, &Options { fence, ..Options::default() });
        println!("shrunk schedule for {} (faults {:?} of the above):", v.invariant, keep);
        for i in &keep {
            if let Some(line) = r.schedule.get(*i) {
                println!("  {line}");
            }
        }
    }
    println!("trace (last {} lines):", tail.min(r.trace.len()));
    for line in r.trace.iter().skip(r.trace.len().saturating_sub(tail)) {
        println!("  {line}");
    }
    println!("replay: {}", replay_command(r.seed, fence));
}

fn one(args: &Args, seed: u64) -> ExitCode {
    let opts = Options { trace: args.trace, fence: args.fence, keep_faults: None };
    let start = Instant::now();
    let r = run(seed, &opts);
    println!("seed {seed}: {}", r.cluster);
    println!("schedule:");
    for line in &r.schedule {
        println!("  {line}");
    }
    println!("trace:");
    for line in &r.trace {
        println!("  {line}");
    }
    println!(
        "{} events, {} transitions, {:.3} ms of client probes lost, {:.1} ms wall",
        r.events,
        r.transitions,
        r.lost_probe_ns as f64 / 1e6,
        start.elapsed().as_secs_f64() * 1e3
    );
    let g = ha_sim::groups::run(seed, args.trace);
    println!("groups part: {} nodes, {} groups, {} transitions", g.nodes, g.groups, g.transitions);
    for line in &g.trace {
        println!("  {line}");
    }
    for v in &g.violations {
        println!("groups part: {} group {} at {:.3} ms: {}", v.invariant, v.group, v.at_ns as f64 / 1e6, v.detail);
    }
    if r.violations.is_empty() && g.violations.is_empty() {
        println!("seed {seed}: all invariants hold");
        return ExitCode::SUCCESS;
    }
    if !r.violations.is_empty() {
        print_failure(&r, args.fence, usize::MAX, true);
    }
    ExitCode::FAILURE
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    sim_ns: u128,
    node_ns: u128,
    events: u64,
    transitions: u64,
    lost_probe_ns: u128,
    checked: [u64; 5],
    /// Seeds, wakes and node time by wake mode: all poll, mixed, all event.
    modes: [u64; 3],
    wakes: [u64; 3],
    mode_node_ns: [u128; 3],
    kernel_expiries: u64,
    answers: u64,
    group_answers: u64,
    faults: [u64; KIND_NAMES.len()],
    violations: [u64; ALL.len()],
    failing: Vec<Report>,
    failing_seeds: Vec<u64>,
    /// The groups part of each seed (`ha_sim::groups`): crashes and clean stops checked,
    /// violations per invariant, failing seeds.
    groups_checked: [u64; 2],
    groups_violations: [u64; ha_sim::groups::INVARIANTS.len()],
    groups_failing: Vec<(u64, String)>,
}

fn many(args: &Args) -> ExitCode {
    let start = Instant::now();
    let next = AtomicU64::new(args.first);
    let end = args.first + args.seeds;
    let totals = Mutex::new(Totals::default());
    let opts = Options { trace: false, fence: args.fence, keep_faults: None };
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(|| {
                let mut local = Totals::default();
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let r = run(seed, &opts);
                    local.seeds += 1;
                    local.sim_ns += u128::from(r.sim_ns);
                    local.node_ns += u128::from(r.sim_ns) * r.nodes as u128;
                    local.events += r.events;
                    local.transitions += r.transitions;
                    local.lost_probe_ns += u128::from(r.lost_probe_ns);
                    local.checked[0] += r.checked_takeovers;
                    local.checked[1] += r.clean_changes;
                    local.checked[2] += r.loss_windows;
                    local.checked[3] += r.checked_stalls;
                    let mode = match r.event_nodes {
                        0 => 0,
                        n if n == r.nodes => 2,
                        _ => 1,
                    };
                    local.modes[mode] += 1;
                    local.wakes[mode] += r.wakes;
                    local.mode_node_ns[mode] += u128::from(r.sim_ns) * r.nodes as u128;
                    local.kernel_expiries += r.kernel_expiries;
                    local.answers += r.answers;
                    local.group_answers += r.group_answers;
                    local.checked[4] += r.link_downs;
                    for (t, f) in local.faults.iter_mut().zip(r.faults_per_kind) {
                        *t += f;
                    }
                    for v in &r.violations {
                        local.violations[v.invariant.index()] += 1;
                    }
                    if !r.violations.is_empty() {
                        local.failing_seeds.push(seed);
                        local.failing.push(r);
                    }
                    // Every fourth seed: a groups run costs several of the main one.
                    if !seed.is_multiple_of(ha_sim::groups::EVERY) {
                        continue;
                    }
                    let g = ha_sim::groups::run(seed, false);
                    local.groups_checked[0] += g.crashes_checked;
                    local.groups_checked[1] += g.stops_checked;
                    for v in &g.violations {
                        if let Some(k) = ha_sim::groups::INVARIANTS.iter().position(|i| *i == v.invariant) {
                            local.groups_violations[k] += 1;
                        }
                        let line = format!(
                            "{} group {} at {:.3} ms: {}",
                            v.invariant,
                            v.group,
                            v.at_ns as f64 / 1e6,
                            v.detail
                        );
                        local.groups_failing.push((seed, line));
                    }
                }
                let mut t = totals.lock().unwrap_or_else(|e| e.into_inner());
                t.seeds += local.seeds;
                t.sim_ns += local.sim_ns;
                t.node_ns += local.node_ns;
                t.events += local.events;
                t.transitions += local.transitions;
                t.lost_probe_ns += local.lost_probe_ns;
                for (a, b) in t.checked.iter_mut().zip(local.checked) {
                    *a += b;
                }
                for m in 0..3 {
                    t.modes[m] += local.modes[m];
                    t.wakes[m] += local.wakes[m];
                    t.mode_node_ns[m] += local.mode_node_ns[m];
                }
                t.kernel_expiries += local.kernel_expiries;
                t.answers += local.answers;
                t.group_answers += local.group_answers;
                for (a, b) in t.faults.iter_mut().zip(local.faults) {
                    *a += b;
                }
                for (a, b) in t.violations.iter_mut().zip(local.violations) {
                    *a += b;
                }
                t.failing.extend(local.failing);
                t.failing_seeds.extend(local.failing_seeds);
                for (a, b) in t.groups_checked.iter_mut().zip(local.groups_checked) {
                    *a += b;
                }
                for (a, b) in t.groups_violations.iter_mut().zip(local.groups_violations) {
                    *a += b;
                }
                t.groups_failing.extend(local.groups_failing);
            });
        }
    });
    let mut t = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    let wall = start.elapsed().as_secs_f64();
    t.failing.sort_by_key(|r| r.seed);
    t.failing_seeds.sort_unstable();
    // The first failing seed of each invariant, in full.
    let mut shown = Vec::new();
    for inv in ALL {
        if shown.len() >= args.show {
            break;
        }
        if let Some(r) = t.failing.iter().find(|r| r.violations.iter().any(|v| v.invariant == inv))
            && !shown.contains(&r.seed)
        {
            shown.push(r.seed);
            print_failure(r, args.fence, 25, true);
        }
    }
    if args.list {
        for r in &t.failing {
            for v in &r.violations {
                println!("seed {} {} at {:.3} ms: {}", r.seed, v.invariant, v.at as f64 / 1e6, v.detail);
            }
        }
    }
    println!(
        "=== simulate: seeds {}..{} ({} run) on {} threads{}",
        args.first,
        end,
        t.seeds,
        args.jobs,
        if args.fence { "" } else { ", without the fence (an agent before issue 12)" }
    );
    println!(
        "simulated: {:.2} cluster-hours ({:.2} node-hours), {} events, {} transitions, {:.3} s of client probes lost",
        t.sim_ns as f64 / 3.6e12,
        t.node_ns as f64 / 3.6e12,
        t.events,
        t.transitions,
        t.lost_probe_ns as f64 / 1e9
    );
    println!(
        "preconditions met: {} takeovers on silence (b), {} clean planned changes (c), {} windows of steady loss (e), {} stopped holders (g), {} links reported down (h)",
        t.checked[0], t.checked[1], t.checked[2], t.checked[3], t.checked[4]
    );
    let per_node_s = |m: usize| t.wakes[m] as f64 / (t.mode_node_ns[m] as f64 / 1e9).max(1e-9);
    println!(
        "wake: {} seeds all poll ({:.0} wakes per node-second), {} mixed ({:.0}), {} all event ({:.0}; the kernel sends the heartbeats); {} kernel expiries delivered; {} heartbeats answered by a holder's kernel ({} of them to the group)",
        t.modes[0],
        per_node_s(0),
        t.modes[1],
        per_node_s(1),
        t.modes[2],
        per_node_s(2),
        t.kernel_expiries,
        t.answers,
        t.group_answers
    );
    let faults: Vec<String> = KIND_NAMES.iter().zip(t.faults).map(|(k, n)| format!("{k} {n}")).collect();
    println!("faults injected: {}", faults.join(", "));
    println!("violations (seeds failing each invariant):");
    for inv in ALL {
        println!("  {:<36} {}", inv.label(), t.violations[inv.index()]);
    }
    println!(
        "groups part (several groups per node, every {}th seed): {} crashes (j), {} clean stops (c) checked",
        ha_sim::groups::EVERY,
        t.groups_checked[0],
        t.groups_checked[1]
    );
    for (k, inv) in ha_sim::groups::INVARIANTS.iter().enumerate() {
        println!("  {:<36} {}", inv, t.groups_violations[k]);
    }
    t.groups_failing.sort();
    for (seed, line) in t.groups_failing.iter().take(10) {
        println!("groups part, seed {seed}: {line} (replay: --seed {seed} --trace)");
    }
    let mut groups_seeds: Vec<u64> = t.groups_failing.iter().map(|(s, _)| *s).collect();
    groups_seeds.dedup();
    for s in groups_seeds {
        if !t.failing_seeds.contains(&s) {
            t.failing_seeds.push(s);
        }
    }
    let shown_seeds: Vec<String> = t.failing_seeds.iter().take(30).map(u64::to_string).collect();
    if !t.failing_seeds.is_empty() {
        println!(
            "failing seeds ({}): {}{}",
            t.failing_seeds.len(),
            shown_seeds.join(" "),
            if t.failing_seeds.len() > 30 { " ..." } else { "" }
        );
    }
    println!("wall: {:.1} s, {:.0} seeds/s", wall, t.seeds as f64 / wall.max(1e-9));
    if t.failing_seeds.is_empty() {
        println!("simulate: 0 violations");
        ExitCode::SUCCESS
    } else {
        println!("simulate: {} seeds FAILED", t.failing_seeds.len());
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ha-sim: {e}");
            return ExitCode::from(2);
        }
    };
    match args.seed {
        Some(seed) => one(&args, seed),
        None => many(&args),
    }
}
