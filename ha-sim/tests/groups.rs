//! Several groups per node: the groups simulation is clean on the real core, and fails on a
//! core whose clean stop ends with its first group (see `ha_core::mutation`).
use ha_sim::groups::run;

#[test]
fn groups_seeds_are_clean() {
    let mut checked = (0, 0);
    for seed in 0..300 {
        let r = run(seed, false);
        if r.failed() {
            let trace = run(seed, true).trace;
            let tail = trace.iter().rev().take(60).rev().cloned().collect::<Vec<_>>().join("\n");
            panic!("seed {seed}: {:?}\n{tail}", r.violations);
        }
        checked.0 += r.crashes_checked;
        checked.1 += r.stops_checked;
    }
    assert!(checked.0 > 50 && checked.1 > 50, "crashes and stops checked: {checked:?}");
}

#[test]
#[ignore]
fn print_trace() {
    let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let r = run(seed, true);
    println!("{}", r.trace.join("\n"));
    println!("{:?}", r.violations);
}
