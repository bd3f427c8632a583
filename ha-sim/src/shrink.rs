//! Shrinking a failing schedule: drop one fault at a time, keep the drop while the same
//! invariant still fails. What is left is a schedule in which every fault is needed.
use crate::{Invariant, Options, run, scenario::Scenario};

/// The indices (into the seed's full schedule) of a smaller schedule that still breaks
/// `invariant`, and at most `budget` runs spent finding it.
pub fn shrink(seed: u64, invariant: Invariant, budget: usize, base: &Options) -> Vec<usize> {
    let total = Scenario::generate(seed).faults.len();
    let mut keep: Vec<usize> = (0..total).collect();
    let mut runs = 0;
    let mut i = 0;
    while i < keep.len() && runs < budget {
        let mut candidate = keep.clone();
        candidate.remove(i);
        runs += 1;
        let opts = Options { keep_faults: Some(candidate.clone()), ..base.clone() };
        if run(seed, &opts).violations.iter().any(|v| v.invariant == invariant) {
            keep = candidate;
        } else {
            i += 1;
        }
    }
    keep
}
