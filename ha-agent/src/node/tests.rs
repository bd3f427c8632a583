use super::*;
use proptest::prelude::*;

const MS: Nanos = 1_000_000;
const TOL: Nanos = 8 * MS;

fn cfg(node_id: u32, priority: u32, preempt: Preempt) -> NodeConfig {
    NodeConfig { node_id, priority, tolerance: TOL, preempt, leave_timeout: 100 * MS }
}

fn peer(node_id: u32, priority: u32, state: NodeState, last_seen: Nanos) -> Peer {
    Peer { node_id, priority, state, flags: 0, last_seen }
}

fn step(node: &mut Node, now: Nanos, peers: &[Peer]) -> Output {
    node.step(Inputs { now, peers, link_up: true })
}

/// A node that has listened and taken the address alone.
fn holder(node_id: u32, priority: u32, preempt: Preempt) -> Node {
    let mut n = Node::new(cfg(node_id, priority, preempt), 0);
    let out = step(&mut n, TOL, &[]);
    assert!(out.take);
    n
}

#[test]
fn starts_standby_and_listens_one_tolerance_before_taking() {
    let mut n = Node::new(cfg(1, 100, Preempt::Always), 0);
    assert_eq!(n.state(), NodeState::Standby);
    assert_eq!(step(&mut n, TOL - 1, &[]), Output::default());
    let out = step(&mut n, TOL, &[]);
    assert!(out.take && out.send_now && !out.release);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::NoHolder));
    assert_eq!(n.state(), NodeState::Active);
}

#[test]
fn less_worthy_node_waits_for_the_more_worthy_one() {
    let mut low = Node::new(cfg(1, 100, Preempt::Always), 0);
    let high = peer(2, 200, NodeState::Standby, TOL);
    assert!(!step(&mut low, TOL, &[high]).take);
    // Equal priority: the node id decides.
    let mut a = Node::new(cfg(1, 100, Preempt::Always), 0);
    assert!(!step(&mut a, TOL, &[peer(2, 100, NodeState::Standby, TOL)]).take);
    let mut b = Node::new(cfg(2, 100, Preempt::Always), 0);
    assert!(step(&mut b, TOL, &[peer(1, 100, NodeState::Standby, TOL)]).take);
}

#[test]
fn takes_over_exactly_when_the_holder_has_been_silent_for_the_tolerance() {
    let mut n = Node::new(cfg(1, 100, Preempt::Always), 0);
    let last = 20 * MS;
    let h = peer(2, 200, NodeState::Active, last);
    assert!(!step(&mut n, last + TOL, &[h]).take, "still live at exactly the tolerance");
    let out = step(&mut n, last + TOL + 1, &[h]);
    assert!(out.take);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::HolderSilent { node_id: 2, silent_for: TOL + 1 }));
}

#[test]
fn a_silent_peer_is_not_a_candidate_either() {
    // The more worthy standby died too: the less worthy one must not wait for it.
    let mut n = Node::new(cfg(1, 100, Preempt::Always), 0);
    let dead_high = peer(3, 300, NodeState::Standby, 0);
    let dead_holder = peer(2, 200, NodeState::Active, 0);
    assert!(step(&mut n, TOL + 1, &[dead_high, dead_holder]).take);
}

#[test]
fn preempt_always_is_make_before_break() {
    let mut old = holder(1, 100, Preempt::Always);
    let mut new = Node::new(cfg(2, 200, Preempt::Always), 0);
    // The new node hears the old holder, listens, then claims; the old one keeps the address
    // until it hears the claim.
    let t = 2 * TOL;
    let out = step(&mut new, t, &[peer(1, 100, NodeState::Active, t)]);
    assert!(out.take);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::Preempt { node_id: 1, priority: 100 }));
    assert_eq!(
        step(&mut old, t, &[peer(2, 200, NodeState::Standby, t)]),
        Output::default(),
        "old holder waits for the claim"
    );
    let out = step(&mut old, t + 1, &[peer(2, 200, NodeState::Active, t + 1)]);
    assert!(out.release && !out.take);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::MoreWorthyHolder { node_id: 2, priority: 200 }));
    // The new holder keeps it when it sees the old one still claiming for a moment.
    let out = step(&mut new, t + 1, &[peer(1, 100, NodeState::Active, t + 1)]);
    assert!(!out.release && out.announce, "re-announce once while the old holder still claims");
    assert!(!step(&mut new, t + 2, &[peer(1, 100, NodeState::Active, t + 2)]).announce, "only once per claim");
}

#[test]
fn preempt_never_keeps_the_address_where_it_is() {
    let mut high = Node::new(cfg(2, 200, Preempt::Never), 0);
    for t in (0..50).map(|i| i * MS) {
        assert!(!step(&mut high, t, &[peer(1, 100, NodeState::Active, t)]).take);
    }
    // ...but takes it when the holder dies.
    assert!(step(&mut high, 60 * MS, &[peer(1, 100, NodeState::Active, 49 * MS)]).take);
}

#[test]
fn preempt_delay_waits_for_continuous_readiness() {
    let mut n = Node::new(cfg(2, 200, Preempt::Delay(20 * MS)), 0);
    let h = |t| [peer(1, 100, NodeState::Active, t)];
    assert!(!step(&mut n, TOL, &h(TOL)).take);
    assert!(!step(&mut n, TOL + 19 * MS, &h(TOL + 19 * MS)).take);
    assert!(step(&mut n, TOL + 20 * MS, &h(TOL + 20 * MS)).take);
    // An interruption (a more worthy peer appears, then goes) restarts the delay.
    let mut n = Node::new(cfg(2, 200, Preempt::Delay(20 * MS)), 0);
    step(&mut n, TOL, &h(TOL));
    step(&mut n, TOL + MS, &[peer(1, 100, NodeState::Active, TOL + MS), peer(3, 300, NodeState::Standby, TOL + MS)]);
    assert!(!step(&mut n, TOL + 21 * MS, &h(TOL + 21 * MS)).take);
    assert!(step(&mut n, TOL + 41 * MS, &h(TOL + 41 * MS)).take);
}

#[test]
fn clean_stop_hands_over_before_letting_go() {
    let mut leaving = holder(2, 200, Preempt::Always);
    let mut standby = Node::new(cfg(1, 100, Preempt::Always), 0);
    let t = 2 * TOL;
    let out = leaving.leave(t);
    assert!(out.send_now && !out.release);
    assert_eq!(leaving.flags() & FLAG_LEAVING, FLAG_LEAVING);
    // Still holding while the standby is live but has not claimed.
    assert_eq!(step(&mut leaving, t, &[peer(1, 100, NodeState::Standby, t)]), Output::default());
    // The standby takes at once, without waiting for the tolerance.
    let mut leaving_peer = peer(2, 200, NodeState::Active, t);
    leaving_peer.flags = FLAG_LEAVING;
    let out = step(&mut standby, t, &[leaving_peer]);
    assert!(out.take);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::HolderLeaving { node_id: 2 }));
    let out = step(&mut leaving, t + 1, &[peer(1, 100, NodeState::Active, t + 1)]);
    assert!(out.release && out.exit);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::SuccessorHolds { node_id: 1 }));
}

#[test]
fn clean_stop_alone_lets_go_at_once_and_times_out_otherwise() {
    let mut alone = holder(1, 100, Preempt::Always);
    alone.leave(TOL);
    let out = step(&mut alone, TOL, &[]);
    assert!(out.release && out.exit);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::NoSuccessor));

    let mut stuck = holder(1, 100, Preempt::Always);
    stuck.leave(TOL);
    let t = TOL + 99 * MS;
    assert!(!step(&mut stuck, t, &[peer(2, 50, NodeState::Standby, t)]).exit);
    let t = TOL + 100 * MS;
    let out = step(&mut stuck, t, &[peer(2, 50, NodeState::Standby, t)]);
    assert!(out.release && out.exit);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::LeaveTimeout));
}

#[test]
fn a_standby_leaves_at_once() {
    let mut n = Node::new(cfg(1, 100, Preempt::Always), 0);
    n.leave(MS);
    let out = step(&mut n, MS, &[peer(2, 200, NodeState::Active, MS)]);
    assert!(out.exit && !out.release && !out.take);
}

#[test]
fn leaving_and_maintenance_peers_are_not_candidates() {
    let mut n = Node::new(cfg(1, 100, Preempt::Always), 0);
    let mut maint = peer(2, 200, NodeState::Standby, TOL);
    maint.flags = FLAG_MAINTENANCE;
    assert!(step(&mut n, TOL, &[maint]).take);
}

#[test]
fn maintenance_hands_over_make_before_break_and_stays_out() {
    let mut n = holder(2, 200, Preempt::Always);
    assert!(n.set_maintenance(true).send_now);
    let t = 2 * TOL;
    // No successor yet: keep serving.
    assert!(!step(&mut n, t, &[peer(1, 100, NodeState::Standby, t)]).release);
    assert!(!step(&mut n, t, &[]).release, "alone in maintenance: keep the address rather than drop it");
    let out = step(&mut n, t + 1, &[peer(1, 100, NodeState::Active, t + 1)]);
    assert!(out.release && !out.exit);
    // Stays out even though it is the most worthy.
    assert!(!step(&mut n, t + TOL, &[peer(1, 100, NodeState::Active, t + TOL)]).take);
    n.set_maintenance(false);
    assert!(step(&mut n, t + TOL + 1, &[peer(1, 100, NodeState::Active, t + TOL + 1)]).take);
}

#[test]
fn split_brain_heals_to_the_most_worthy_holder() {
    let mut a = holder(1, 100, Preempt::Never);
    let mut b = holder(2, 200, Preempt::Never);
    let t = 5 * TOL;
    let out_a = step(&mut a, t, &[peer(2, 200, NodeState::Active, t)]);
    let out_b = step(&mut b, t, &[peer(1, 100, NodeState::Active, t)]);
    assert!(out_a.release);
    assert!(out_b.announce && !out_b.release, "the survivor re-announces");
}

#[test]
fn link_down_releases_and_link_up_listens_again() {
    let mut n = holder(1, 100, Preempt::Always);
    let out = n.step(Inputs { now: 2 * TOL, peers: &[], link_up: false });
    assert!(out.release);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::LinkDown));
    assert!(!n.step(Inputs { now: 3 * TOL, peers: &[], link_up: false }).take);
    assert!(!n.step(Inputs { now: 4 * TOL, peers: &[], link_up: true }).take, "listens first");
    assert!(n.step(Inputs { now: 5 * TOL, peers: &[], link_up: true }).take);
}

/// A cluster with perfect delivery, stepped in lockstep with a 1 ms tick.
struct Sim {
    nodes: Vec<Node>,
    alive: Vec<bool>,
    last_seen: Vec<Nanos>,
}

impl Sim {
    fn new(priorities: &[u32], preempt: Preempt) -> Self {
        let nodes = priorities.iter().enumerate().map(|(i, &p)| Node::new(cfg(i as u32 + 1, p, preempt), 0)).collect();
        Self { nodes, alive: vec![true; priorities.len()], last_seen: vec![0; priorities.len()] }
    }

    fn tick(&mut self, now: Nanos) {
        for i in 0..self.nodes.len() {
            if self.alive[i] {
                self.last_seen[i] = now;
            }
        }
        let snapshot: Vec<Peer> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| Peer {
                node_id: i as u32 + 1,
                priority: n.cfg.priority,
                state: n.state(),
                flags: n.flags(),
                last_seen: self.last_seen[i],
            })
            .collect();
        for i in 0..self.nodes.len() {
            if !self.alive[i] {
                continue;
            }
            let others: Vec<Peer> = snapshot.iter().copied().filter(|p| p.node_id != i as u32 + 1).collect();
            self.nodes[i].step(Inputs { now, peers: &others, link_up: true });
        }
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.alive[i] && self.nodes[i].state() == NodeState::Active).collect()
    }

    fn most_worthy_alive(&self) -> usize {
        (0..self.nodes.len()).filter(|&i| self.alive[i]).max_by_key(|&i| (self.nodes[i].cfg.priority, i)).unwrap_or(0)
    }
}

proptest! {
    #[test]
    fn any_cluster_converges_on_the_most_worthy_and_survives_its_death(
        priorities in proptest::collection::vec(1u32..5, 2..6),
        victim_pick in any::<prop::sample::Index>(),
    ) {
        let mut sim = Sim::new(&priorities, Preempt::Always);
        let mut now = 0;
        for _ in 0..30 {
            now += MS;
            sim.tick(now);
        }
        prop_assert_eq!(sim.holders(), vec![sim.most_worthy_alive()]);
        // Steady state: exactly one holder at every tick.
        for _ in 0..50 {
            now += MS;
            sim.tick(now);
            prop_assert_eq!(sim.holders().len(), 1);
        }
        // Kill a node (maybe the holder): within tolerance + 2 ticks exactly one holder again.
        let victim = victim_pick.index(priorities.len());
        sim.alive[victim] = false;
        for _ in 0..(TOL / MS + 2) {
            now += MS;
            sim.tick(now);
        }
        prop_assert_eq!(sim.holders(), vec![sim.most_worthy_alive()]);
    }

    #[test]
    fn never_preempt_keeps_the_first_holder_when_others_join(
        priorities in proptest::collection::vec(1u32..5, 2..5),
    ) {
        // The first node starts alone; the others join later and must not move the address.
        let mut sim = Sim::new(&priorities, Preempt::Never);
        for i in 1..priorities.len() { sim.alive[i] = false; }
        let mut now = 0;
        for _ in 0..20 { now += MS; sim.tick(now); }
        prop_assert_eq!(sim.holders(), vec![0]);
        for (i, &priority) in priorities.iter().enumerate().skip(1) {
            sim.alive[i] = true;
            sim.nodes[i] = Node::new(cfg(i as u32 + 1, priority, Preempt::Never), now);
        }
        for _ in 0..100 { now += MS; sim.tick(now); prop_assert_eq!(sim.holders(), vec![0]); }
    }
}
