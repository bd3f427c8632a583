//! Seeds that once broke an invariant, each kept with the rule of `ha-core` that fixed it: the
//! whole seed runs (its cluster, faults and timing model), and every invariant must hold.
use ha_sim::{Options, run};

fn holds(seed: u64, fixed_by: &str) {
    let report = run(seed, &Options::default());
    assert!(report.violations.is_empty(), "seed {seed} ({fixed_by}): {:?}", report.violations);
}

#[test]
fn a_claimer_in_maintenance_still_gets_the_holders_last_word() {
    // 3 event-woken nodes: a holder in maintenance, cut off, announced when a peer came back,
    // then yielded; the true holder had stopped watching its claim when maintenance began, so
    // a client stayed pointed at the old holder (d).
    holds(84903, "Node::step_active watches every claimer, candidate or not");
}

#[test]
fn a_new_run_keeps_its_echo_when_a_schedule_is_replaced_before_it_left() {
    // 14 and 16 event-woken nodes starting together: a node's only echo of a peer's new run sat
    // in a schedule replaced before its slot (the node took the address), so two holders did
    // not confirm each other for about 70 ms, past the settle time (a).
    holds(25751, "Failover::schedule_heartbeats owes the echo again");
    holds(25310, "Failover::schedule_heartbeats owes the echo again");
}
