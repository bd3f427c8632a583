//! The simulated LAN between nodes and clients: what each active fault does to one packet on
//! one directed link (lost, delayed, reordered, duplicated, cut by a partition). Endpoints are
//! bit numbers: nodes `0..16`, clients from [`CLIENT_BIT`]. A node's link being down is the
//! simulator's to check (it also drops what the node sends and receives).
use std::collections::HashMap;

use crate::{
    rng::Rng,
    scenario::{CLIENT_BIT, Cluster, Fault, FaultKind},
};

#[derive(Default)]
pub struct Net {
    /// Gilbert-Elliott state per (fault, from, to): true while bad.
    bad: HashMap<(usize, u8, u8), bool>,
}

/// When a packet arrives, relative to its sending: at most two copies.
#[derive(Clone, Copy, Debug, Default)]
pub struct Arrivals {
    pub first: Option<u64>,
    pub second: Option<u64>,
}

fn on(mask: u32, ep: u8) -> bool {
    mask & (1u32 << ep) != 0
}

/// Whether a partition among `active` cuts every packet from node `from` to node `to`.
pub fn cut(active: &[(usize, Fault)], from: u8, to: u8) -> bool {
    active.iter().any(|&(_, f)| match f.kind {
        FaultKind::Partition { side, symmetric } => {
            let (a, b) = (on(side, from), on(side, to));
            (a && !b) || (symmetric && b && !a)
        }
        _ => false,
    })
}

/// Whether heartbeat link `link` between nodes `a` and `b` is cut now (either end's).
pub fn link_cut(active: &[(usize, Fault)], a: usize, b: usize, link: usize) -> bool {
    active
        .iter()
        .any(|&(_, f)| matches!(f.kind, FaultKind::CutLink { node, link: l } if l == link && (node == a || node == b)))
}

impl Net {
    /// One packet from endpoint `from` to `to`, under the faults `active` (index, fault).
    pub fn transmit(
        &mut self,
        rng: &mut Rng,
        cluster: &Cluster,
        active: &[(usize, Fault)],
        from: u8,
        to: u8,
    ) -> Arrivals {
        let nodes = u32::from(from) < CLIENT_BIT && u32::from(to) < CLIENT_BIT;
        let mut delay = cluster.net_delay + rng.range(0, cluster.net_jitter);
        let mut duplicate = false;
        for &(i, f) in active {
            match f.kind {
                FaultKind::Partition { side, symmetric } if nodes => {
                    let (a, b) = (on(side, from), on(side, to));
                    if (a && !b) || (symmetric && b && !a) {
                        return Arrivals::default();
                    }
                }
                FaultKind::Loss { from: fm, to: tm, rate } if on(fm, from) && on(tm, to) => {
                    if rng.chance(rate) {
                        return Arrivals::default();
                    }
                }
                FaultKind::BurstLoss { from: fm, to: tm, enter_bad, leave_bad, bad_loss }
                    if on(fm, from) && on(tm, to) =>
                {
                    let bad = self.bad.entry((i, from, to)).or_insert(false);
                    *bad = if *bad { !rng.chance(leave_bad) } else { rng.chance(enter_bad) };
                    let loss = if *bad { bad_loss } else { 0.002 };
                    if rng.chance(loss) {
                        return Arrivals::default();
                    }
                }
                FaultKind::Delay { from: fm, to: tm, extra, jitter } if on(fm, from) && on(tm, to) => {
                    delay += extra + rng.range(0, jitter);
                }
                FaultKind::Reorder { from: fm, to: tm, chance, extra } if on(fm, from) && on(tm, to) => {
                    if rng.chance(chance) {
                        delay += rng.range(extra / 2, extra);
                    }
                }
                FaultKind::Duplicate { from: fm, to: tm, chance } if on(fm, from) && on(tm, to) => {
                    duplicate |= rng.chance(chance);
                }
                _ => {}
            }
        }
        let second = duplicate.then(|| delay + rng.range(0, cluster.net_jitter + cluster.interval / 4));
        Arrivals { first: Some(delay), second }
    }
}
