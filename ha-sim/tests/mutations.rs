//! The simulator must be able to fail: each deliberately broken core of
//! `ha_core::mutation` is caught within a bounded number of seeds. A seed catches a mutation
//! when the broken core breaks an invariant that the real core keeps on that same seed (the real
//! core's own findings on a seed do not count). Run with `--nocapture` for seeds-to-failure.
use ha_core::mutation::{self, Mutation};
use ha_sim::{Invariant, Options, run};

/// Seeds tried before a mutation counts as missed.
const BOUND: u64 = 1500;

fn seeds_to_catch(m: Mutation) -> Option<(u64, u64, Invariant, String)> {
    let opts = Options::default();
    for seed in 0..BOUND {
        mutation::set(Some(m));
        let broken = run(seed, &opts);
        mutation::set(None);
        if broken.violations.is_empty() {
            continue;
        }
        let real = run(seed, &opts);
        let new = broken.violations.iter().find(|v| !real.violations.iter().any(|r| r.invariant == v.invariant));
        if let Some(v) = new {
            return Some((seed + 1, seed, v.invariant, v.detail.clone()));
        }
    }
    None
}

fn caught(m: Mutation) {
    match seeds_to_catch(m) {
        Some((tried, seed, invariant, detail)) => {
            println!("{m:?}: caught after {tried} seeds (seed {seed}) by {invariant}: {detail}");
        }
        None => panic!("{m:?} was not caught in {BOUND} seeds"),
    }
}

#[test]
fn takeover_one_interval_early_is_caught() {
    caught(Mutation::TakeoverEarly);
}

#[test]
fn release_before_the_successor_claims_is_caught() {
    caught(Mutation::ReleaseBeforeSuccessor);
}

#[test]
fn ignoring_hold_down_is_caught() {
    caught(Mutation::IgnoreHoldDown);
}

#[test]
fn forgetting_the_loss_adaptive_limit_is_caught() {
    caught(Mutation::ForgetLossAdaptive);
}

#[test]
fn never_relistening_after_a_gap_is_caught() {
    caught(Mutation::NeverRelisten);
}

#[test]
fn a_heartbeat_schedule_past_the_stated_horizon_is_caught() {
    caught(Mutation::EndlessSchedule);
}

/// Caught by the groups simulation (`ha_sim::groups`), on a seed the real core keeps clean.
#[test]
fn a_clean_stop_done_after_its_first_group_is_caught() {
    let m = Mutation::DoneAfterFirstGroup;
    for seed in 0..BOUND {
        mutation::set(Some(m));
        let broken = ha_sim::groups::run(seed, false);
        mutation::set(None);
        if broken.failed() && !ha_sim::groups::run(seed, false).failed() {
            println!("{m:?}: caught after {} seeds (seed {seed}): {:?}", seed + 1, broken.violations[0]);
            return;
        }
    }
    panic!("{m:?} was not caught in {BOUND} seeds");
}

#[test]
fn every_mutation_has_a_test() {
    assert_eq!(mutation::ALL.len(), 7, "add a test above for the new mutation");
}
