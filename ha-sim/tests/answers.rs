//! A holder whose kernel answers for it is heard by a standby only when the standby asks: a
//! standby's own pause is no silence of the holder's. What keeps it so is the late-wake rule
//! (`Failover::hold_after_a_late_wake`, and the gap guard for longer stops): the standby's
//! heartbeats leave from its own process, so it asks again within an interval of its return.
use ha_core::mutation::{self, Mutation};
use ha_sim::{
    Invariant, Options, run_scenario,
    scenario::{Fault, FaultKind, SEC, Scenario},
};

/// Seed 360: two event-woken nodes whose kernels answer (n0 holds; 1.6/4.8 ms, max 9.6 ms), and
/// one fault: the standby n1 stops for `len`, from `start`. Stops of a tolerance or more are
/// the gap guard's (the standby listens again); shorter ones the late wake's.
fn standby_paused(machine: bool, start: u64, len: u64) -> Scenario {
    let mut sc = Scenario::generate(360);
    assert!(sc.cluster.nodes.iter().all(|n| n.answer), "the seed's cluster answers");
    sc.faults = vec![Fault { kind: FaultKind::Pause { node: 1, machine }, start, end: start + len }];
    sc
}

/// Stops just under the tolerance, from every point of an interval (50 us apart).
fn pauses() -> impl Iterator<Item = (u64, u64)> {
    let sc = Scenario::generate(360);
    let (interval, tolerance) = (sc.cluster.interval, sc.cluster.tolerance);
    (0..interval / 50_000)
        .flat_map(move |k| [tolerance * 8 / 10, tolerance * 95 / 100].map(|len| (3 * SEC / 2 + k * 50_000, len)))
}

#[test]
fn a_standbys_own_pause_is_not_the_answering_holders_silence() {
    for machine in [false, true] {
        for (start, len) in pauses() {
            let report = run_scenario(standby_paused(machine, start, len), &Options::default());
            assert!(report.violations.is_empty(), "machine {machine} at {start} for {len}: {:?}", report.violations);
            assert_eq!(report.transitions, 1, "machine {machine} at {start} for {len}: a false takeover");
            assert!(report.answers > 1000, "the holder's kernel answered ({})", report.answers);
        }
    }
}

#[test]
fn a_core_that_never_forgives_its_own_absence_is_caught() {
    mutation::set(Some(Mutation::NeverRelisten));
    let caught = pauses().any(|(start, len)| {
        let report = run_scenario(standby_paused(false, start, len), &Options::default());
        report.violations.iter().any(|v| v.invariant == Invariant::NoTakeoverWhileHolderHeard)
    });
    mutation::set(None);
    assert!(caught, "no stop under the tolerance made the broken core take over");
}
