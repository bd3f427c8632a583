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

/// A cluster of three or more event-woken nodes whose kernels answer, to the group when
/// `group`: node 0 the most worthy, its agent (not its machine) stopped from 3 s for longer
/// than any peer's silence limit, but for under half the horizon its last renewal covers.
fn holder_agent_stopped(group: bool) -> Scenario {
    let fits = |sc: &Scenario| {
        let c = &sc.cluster;
        let half_horizon = ha_core::failover::heartbeat_horizon(ha_core::Duration::from_nanos(c.interval)) / 2;
        c.nodes.len() >= 3 && c.max_tolerance * 6 / 5 + 2 * c.interval < half_horizon.as_nanos() as u64
    };
    let mut sc = (0..10_000).map(Scenario::generate).find(fits).expect("a seed with three nodes and a short limit");
    let stop = sc.cluster.max_tolerance * 6 / 5;
    for (k, n) in sc.cluster.nodes.iter_mut().enumerate() {
        (n.event, n.answer, n.answer_group) = (true, true, group);
        n.priority = if k == 0 { 250 } else { 100 - k as u32 };
        n.start = n.start.min(SEC / 10);
    }
    sc.faults = vec![Fault { kind: FaultKind::Pause { node: 0, machine: false }, start: 3 * SEC, end: 3 * SEC + stop }];
    sc
}

/// Takeovers from 3 s on (the stop's start), from the trace: `<time> ms  nX ... -> ACTIVE`.
fn takeovers_from_the_stop(group: bool) -> (ha_sim::Report, usize) {
    let report = run_scenario(holder_agent_stopped(group), &Options { trace: true, ..Options::default() });
    let after = |line: &String| {
        let ms: f64 = line.split_whitespace().next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
        ms >= 3000.0 && line.contains("-> ACTIVE")
    };
    let takeovers = report.trace.iter().filter(|l| after(l)).count();
    (report, takeovers)
}

#[test]
fn a_holder_answered_for_to_the_group_keeps_the_address_through_its_agents_stop() {
    let (report, takeovers) = takeovers_from_the_stop(true);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(report.group_answers > 1000, "the holder's kernel answered to the group ({})", report.group_answers);
    assert_eq!(takeovers, 0, "no standby took over during the stop\n{}", report.trace.join("\n"));
    // Answers back to one requester serve one peer at most: with more, the holder sends its
    // own heartbeats, and its stop is a silence longer than the limit.
    let (report, takeovers) = takeovers_from_the_stop(false);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert!(takeovers > 0, "a standby takes over from a holder silent for that long");
}
