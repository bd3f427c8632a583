use proptest::prelude::*;

use super::*;

/// Times in these tests are whole nanoseconds, so that steps can be counted with integers;
/// `at` and `d` turn them into the core's types at the boundary.
type Nanos = u64;

fn at(ns: Nanos) -> Instant {
    Instant::from_nanos(ns)
}

fn d(ns: Nanos) -> Duration {
    Duration::from_nanos(ns)
}

const MS: Nanos = 1_000_000;
const TOL: Nanos = 8 * MS;
const HOLD_DOWN: Nanos = 3 * TOL;

fn cfg(node_id: u32, priority: u32, preempt: Preempt) -> NodeConfig {
    NodeConfig {
        node_id,
        priority,
        tolerance: d(TOL),
        max_tolerance: d(TOL),
        preempt,
        leave_timeout: d(100 * MS),
        hold_down: d(HOLD_DOWN),
        refresh: None,
    }
}

fn peer(node_id: u32, priority: u32, state: NodeState, last_seen: Nanos) -> Peer {
    Peer {
        node_id,
        priority,
        state,
        flags: 0,
        last_seen: at(last_seen),
        beats: Beats::default(),
        claimed_at: None,
        confirmed: true,
    }
}

fn step(node: &mut Node, now: Nanos, peers: &[Peer]) -> Output {
    node.step(Inputs { now: at(now), peers, link_up: true })
}

/// Steps every millisecond from `from` to `to` inclusive, as the agent's tick does, with the
/// peers `at(t)` shows; returns the outputs that did something.
fn run(node: &mut Node, from: Nanos, to: Nanos, at: impl Fn(Nanos) -> Vec<Peer>) -> Vec<(Nanos, Output)> {
    let mut acted = Vec::new();
    let mut t = from;
    while t <= to {
        let out = step(node, t, &at(t));
        if out != Output::default() {
            acted.push((t, out));
        }
        t += MS;
    }
    acted
}

/// A node that has listened and taken the address alone.
fn holder(node_id: u32, priority: u32, preempt: Preempt) -> Node {
    let mut n = Node::new(cfg(node_id, priority, preempt), at(0));
    let out = step(&mut n, TOL, &[]);
    assert!(out.take);
    n
}

#[test]
fn starts_standby_and_listens_one_tolerance_before_taking() {
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
    assert_eq!(n.state(), NodeState::Standby);
    assert_eq!(step(&mut n, TOL - 1, &[]), Output::default());
    let out = step(&mut n, TOL, &[]);
    assert!(out.take && out.send_now && !out.release);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::NoHolder));
    assert_eq!(n.state(), NodeState::Active);
}

#[test]
fn less_worthy_node_waits_for_the_more_worthy_one() {
    let mut low = Node::new(cfg(1, 100, Preempt::Always), at(0));
    let high = peer(2, 200, NodeState::Standby, TOL);
    assert!(!step(&mut low, TOL, &[high]).take);
    // Equal priority: the node id decides.
    let mut a = Node::new(cfg(1, 100, Preempt::Always), at(0));
    assert!(!step(&mut a, TOL, &[peer(2, 100, NodeState::Standby, TOL)]).take);
    let mut b = Node::new(cfg(2, 100, Preempt::Always), at(0));
    assert!(step(&mut b, TOL, &[peer(1, 100, NodeState::Standby, TOL)]).take);
}

#[test]
fn takes_over_exactly_when_the_holder_has_been_silent_for_the_tolerance() {
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
    let last = 20 * MS;
    let h = peer(2, 200, NodeState::Active, last);
    assert!(!step(&mut n, last + TOL, &[h]).take, "still live at exactly the tolerance");
    let out = step(&mut n, last + TOL + 1, &[h]);
    assert!(out.take);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::HolderSilent { node_id: 2, silent_for: d(TOL + 1) }));
}

#[test]
fn a_silent_peer_is_not_a_candidate_either() {
    // The more worthy standby died too: the less worthy one must not wait for it.
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
    let dead_high = peer(3, 300, NodeState::Standby, 0);
    let dead_holder = peer(2, 200, NodeState::Active, 0);
    assert!(step(&mut n, TOL + 1, &[dead_high, dead_holder]).take);
}

#[test]
fn preempt_always_is_make_before_break() {
    let mut old = holder(1, 100, Preempt::Always);
    let mut new = Node::new(cfg(2, 200, Preempt::Always), at(0));
    // The new node hears the old holder, listens, then claims; the old one keeps the address
    // until it hears the claim.
    let t = 2 * TOL;
    let out = step(&mut new, t, &[peer(1, 100, NodeState::Active, t)]);
    assert!(out.take);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::Preempt { node_id: 1, priority: 100 }));
    assert_eq!(
        step(&mut old, t, &[peer(2, 200, NodeState::Standby, t)]),
        Output { announce: true, ..Output::default() },
        "old holder waits for the claim (and announces again: a peer it had not heard)"
    );
    let out = step(&mut old, t + 1, &[peer(2, 200, NodeState::Active, t + 1)]);
    assert!(out.release && !out.take);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::MoreWorthyHolder { node_id: 2, priority: 200 }));
    // The new holder keeps it when it sees the old one still claiming for a moment.
    let out = step(&mut new, t + 1, &[peer(1, 100, NodeState::Active, t + 1)]);
    assert!(!out.release && out.announce, "re-announce once while the old holder still claims");
    assert_eq!(out.transition, None, "the hand-over's overlap is no split brain");
    assert!(!step(&mut new, t + 2, &[peer(1, 100, NodeState::Active, t + 2)]).announce, "only once per claim");
}

#[test]
fn the_taker_announces_last_once_the_old_holder_lets_go() {
    // The old holder's scheduled announcement can leave after the taker's and before the old
    // holder hears the claim: the client then follows it to a node about to let go. So the
    // taker announces once more when the old holder stops claiming.
    let t = 2 * TOL;
    let mut new = Node::new(cfg(2, 200, Preempt::Always), at(0));
    assert!(step(&mut new, t, &[peer(1, 100, NodeState::Active, t)]).take);
    step(&mut new, t + 1, &[peer(1, 100, NodeState::Active, t + 1)]); // the overlap's announcement
    assert!(!step(&mut new, t + 2, &[peer(1, 100, NodeState::Active, t + 2)]).announce, "not while it still claims");
    let out = step(&mut new, t + 3, &[peer(1, 100, NodeState::Standby, t + 3)]);
    assert_eq!(out, Output { announce: true, ..Output::default() });
    assert!(run(&mut new, t + 4, t + 3 * TOL, |at| vec![peer(1, 100, NodeState::Standby, at)]).is_empty(), "once");

    // Also after a clean stop's hand-over, and when the old holder dies instead of yielding.
    let mut leaving = peer(1, 300, NodeState::Active, t);
    leaving.flags = FLAG_LEAVING;
    let mut successor = Node::new(cfg(2, 200, Preempt::Always), at(0));
    assert!(step(&mut successor, t, &[leaving]).take);
    assert!(!step(&mut successor, t + 1, &[leaving]).announce, "the leaving holder still claims");
    let out = step(&mut successor, t + 2, &[Peer { state: NodeState::Standby, last_seen: at(t + 2), ..leaving }]);
    assert!(out.announce && out.transition.is_none());
    let mut taker = Node::new(cfg(2, 200, Preempt::Always), at(0));
    assert!(step(&mut taker, t, &[peer(1, 100, NodeState::Active, t)]).take);
    let acted = run(&mut taker, t + MS, t + 2 * TOL, |_| vec![peer(1, 100, NodeState::Active, t)]);
    let announce = Output { announce: true, ..Output::default() };
    assert_eq!(acted, vec![(t + MS, announce), (t + TOL + MS, announce)], "still claiming, then silent");
}

#[test]
fn preempt_never_keeps_the_address_where_it_is() {
    let mut high = Node::new(cfg(2, 200, Preempt::Never), at(0));
    for t in (0..50).map(|i| i * MS) {
        assert!(!step(&mut high, t, &[peer(1, 100, NodeState::Active, t)]).take);
    }
    // ...but takes it when the holder dies.
    let acted = run(&mut high, 50 * MS, 60 * MS, |_| vec![peer(1, 100, NodeState::Active, 49 * MS)]);
    assert_eq!(acted.len(), 1);
    assert!(acted[0].1.take && acted[0].0 == 49 * MS + TOL + MS);
}

#[test]
fn preempt_delay_waits_for_continuous_readiness() {
    let mut n = Node::new(cfg(2, 200, Preempt::Delay(d(20 * MS))), at(0));
    let h = |t| vec![peer(1, 100, NodeState::Active, t)];
    let took = |acted: Vec<(Nanos, Output)>| acted.iter().filter(|(_, o)| o.take).map(|(t, _)| *t).collect::<Vec<_>>();
    assert_eq!(took(run(&mut n, TOL, TOL + 30 * MS, h)), vec![TOL + 20 * MS]);
    // An interruption (a more worthy peer appears, then goes) restarts the delay.
    let mut n = Node::new(cfg(2, 200, Preempt::Delay(d(20 * MS))), at(0));
    step(&mut n, TOL, &h(TOL));
    step(&mut n, TOL + MS, &[peer(1, 100, NodeState::Active, TOL + MS), peer(3, 300, NodeState::Standby, TOL + MS)]);
    assert_eq!(took(run(&mut n, TOL + 2 * MS, TOL + 50 * MS, h)), vec![TOL + 22 * MS]);
}

#[test]
fn clean_stop_hands_over_before_letting_go() {
    let mut leaving = holder(2, 200, Preempt::Always);
    let mut standby = Node::new(cfg(1, 100, Preempt::Always), at(0));
    let t = 2 * TOL;
    let out = leaving.leave(at(t));
    assert!(out.send_now && !out.release);
    assert_eq!(leaving.flags() & FLAG_LEAVING, FLAG_LEAVING);
    // Still holding while the standby is live but has not claimed.
    let out = step(&mut leaving, t, &[peer(1, 100, NodeState::Standby, t)]);
    assert_eq!(out, Output { announce: true, ..Output::default() }, "announces for a peer it had not heard");
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
    alone.leave(at(TOL));
    let out = step(&mut alone, TOL, &[]);
    assert!(out.release && out.exit);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::NoSuccessor));

    let mut stuck = holder(1, 100, Preempt::Always);
    stuck.leave(at(TOL));
    let t = TOL + 99 * MS;
    assert!(!step(&mut stuck, t, &[peer(2, 50, NodeState::Standby, t)]).exit);
    let t = TOL + 100 * MS;
    let out = step(&mut stuck, t, &[peer(2, 50, NodeState::Standby, t)]);
    assert!(out.release && out.exit);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::LeaveTimeout));
}

#[test]
fn a_standby_leaves_at_once() {
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
    n.leave(at(MS));
    let out = step(&mut n, MS, &[peer(2, 200, NodeState::Active, MS)]);
    assert!(out.exit && !out.release && !out.take);
}

#[test]
fn leaving_and_maintenance_peers_are_not_candidates() {
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
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
    // Hooks and events hear that b won, though its state did not change; once per episode.
    let won = Transition {
        from: Role::Active,
        to: Role::Active,
        reason: Reason::SplitBrainWon { node_id: 1, priority: 100 },
    };
    assert_eq!(out_b.transition, Some(won));
    assert_eq!(step(&mut b, t + 1, &[peer(1, 100, NodeState::Active, t + 1)]).transition, None);
    assert_eq!(step(&mut b, t + 2, &[peer(1, 100, NodeState::Standby, t + 2)]).transition, None);
    // A later split brain is reported again.
    assert_eq!(step(&mut b, t + 3, &[peer(1, 100, NodeState::Active, t + 3)]).transition, Some(won));
}

#[test]
fn a_lowered_priority_ranks_lower_and_is_announced_at_once() {
    let mut n = holder(1, 200, Preempt::Always);
    assert_eq!(n.set_priority(200), Output::default(), "no change, nothing to say");
    assert!(n.set_priority(150).send_now);
    assert_eq!(n.priority(), 150);
    assert_eq!(n.config().priority, 200, "the configured base stays");
    // A peer of 180 now outranks it: once that peer holds, this holder lets go.
    let t = 2 * TOL;
    let out = step(&mut n, t, &[peer(2, 180, NodeState::Active, t)]);
    assert!(out.release);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::MoreWorthyHolder { node_id: 2, priority: 180 }));
    // Healthy again, preempt=always takes it back.
    n.set_priority(200);
    let out = step(&mut n, t + TOL, &[peer(2, 180, NodeState::Active, t + TOL)]);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::Preempt { node_id: 2, priority: 180 }));
}

#[test]
fn an_unhealthy_holder_is_taken_over_whatever_preempt_says() {
    for preempt in [Preempt::Always, Preempt::Never, Preempt::Delay(d(60_000 * MS))] {
        let mut n = Node::new(cfg(2, 100, preempt), at(0));
        let out = step(&mut n, TOL, &[peer(1, 0, NodeState::Active, TOL)]);
        assert!(out.take, "{preempt:?}");
        assert_eq!(out.transition.map(|t| t.reason), Some(Reason::HolderUnhealthy { node_id: 1 }), "{preempt:?}");
        // The old holder still claims for a moment: an expected overlap, not a split brain.
        let out = step(&mut n, TOL + 1, &[peer(1, 0, NodeState::Active, TOL + 1)]);
        assert!(out.announce && out.transition.is_none(), "{preempt:?}");
    }
    // Merely less worthy is still protected by never.
    let mut n = Node::new(cfg(2, 100, Preempt::Never), at(0));
    assert!(!step(&mut n, TOL, &[peer(1, 50, NodeState::Active, TOL)]).take);
    // An unhealthy node does not take from another unhealthy one.
    let mut n = Node::new(cfg(2, 100, Preempt::Never), at(0));
    n.set_priority(0);
    assert!(!step(&mut n, TOL, &[peer(1, 0, NodeState::Active, TOL)]).take);
    // ...but once the other is gone, it serves rather than leave the address unheld.
    let gone = [peer(1, 0, NodeState::Active, TOL)];
    assert!((1..=2 * TOL / MS).any(|i| step(&mut n, TOL + i * MS, &gone).take));
}

#[test]
fn link_down_releases_after_a_tolerance_and_link_up_listens_again() {
    let mut n = holder(1, 100, Preempt::Always);
    let out = n.step(Inputs { now: at(2 * TOL), peers: &[], link_up: false });
    assert_eq!(out, Output::default(), "keeps the address through a blip");
    assert_eq!(n.link_release_at(), Some(at(3 * TOL)));
    assert!(!n.step(Inputs { now: at(3 * TOL - 1), peers: &[], link_up: false }).release);
    let out = n.step(Inputs { now: at(3 * TOL), peers: &[], link_up: false });
    assert!(out.release);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::LinkDown));
    assert!(!n.step(Inputs { now: at(7 * TOL / 2), peers: &[], link_up: false }).take);
    assert!(!n.step(Inputs { now: at(4 * TOL), peers: &[], link_up: true }).take, "listens first");
    assert!(n.step(Inputs { now: at(5 * TOL), peers: &[], link_up: true }).take);
}

#[test]
fn a_link_blip_shorter_than_the_tolerance_keeps_the_address() {
    // Peers act on a silence of at least the tolerance: a shorter blip changes nothing for them,
    // and letting go would cost clients a listen on top of the blip.
    let mut n = holder(1, 100, Preempt::Always);
    assert_eq!(n.step(Inputs { now: at(2 * TOL), peers: &[], link_up: false }), Output::default());
    let out = n.step(Inputs { now: at(2 * TOL + TOL / 2), peers: &[], link_up: true });
    assert_eq!(out, Output { announce: true, ..Output::default() }, "back: announces, no transition");
    assert_eq!((n.state(), n.link_release_at()), (NodeState::Active, None));
}

/// Node 1 (priority 100) took the address alone, then yielded it at `t0` to node 2 (200).
fn yielded_at(hold_down: Nanos, t0: Nanos) -> Node {
    let mut n = Node::new(NodeConfig { hold_down: d(hold_down), ..cfg(1, 100, Preempt::Always) }, at(0));
    let acted = run(&mut n, 0, t0 - MS, |_| vec![]);
    assert!(acted.len() == 1 && acted[0].1.take);
    let out = step(&mut n, t0, &[peer(2, 200, NodeState::Active, t0)]);
    assert!(out.release);
    n
}

#[test]
fn after_yielding_a_late_heartbeat_is_no_reason_to_take_back() {
    let t0 = 2 * TOL;
    let mut n = yielded_at(HOLD_DOWN, t0);
    // The new holder's next heartbeat comes 2 tolerances late, then they flow again.
    let late = t0 + 2 * TOL;
    let acted =
        run(&mut n, t0 + MS, t0 + 10 * TOL, |t| vec![peer(2, 200, NodeState::Active, if t < late { t0 } else { t })]);
    assert_eq!(acted, vec![], "held down");
    // Without the hold-down the same late heartbeat flaps the address.
    let mut n = yielded_at(0, t0);
    let acted =
        run(&mut n, t0 + MS, t0 + 10 * TOL, |t| vec![peer(2, 200, NodeState::Active, if t < late { t0 } else { t })]);
    let kinds: Vec<(bool, bool)> = acted.iter().map(|(_, o)| (o.take, o.release)).collect();
    assert_eq!(kinds, vec![(true, false), (false, true)], "take on the silence, yield on the late beat");
}

#[test]
fn the_hold_down_delays_a_real_takeover_by_at_most_its_length() {
    let t0 = 2 * TOL;
    let mut n = yielded_at(HOLD_DOWN, t0);
    // The new holder dies right after taking over.
    let acted = run(&mut n, t0 + MS, t0 + 2 * HOLD_DOWN, |_| vec![peer(2, 200, NodeState::Active, t0)]);
    assert_eq!(acted.len(), 1);
    let (t, out) = acted[0];
    assert_eq!(t, t0 + HOLD_DOWN);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::HolderSilent { node_id: 2, silent_for: d(HOLD_DOWN) }));
    // With the hold-down off, one tolerance as usual.
    let mut n = yielded_at(0, t0);
    let acted = run(&mut n, t0 + MS, t0 + 2 * HOLD_DOWN, |_| vec![peer(2, 200, NodeState::Active, t0)]);
    assert_eq!(acted.iter().map(|(t, _)| *t).collect::<Vec<_>>(), vec![t0 + TOL + MS]);
}

#[test]
fn the_hold_down_does_not_stop_explicit_hand_overs() {
    let t0 = 2 * TOL;
    for (flags, reason) in [
        (FLAG_LEAVING, Reason::HolderLeaving { node_id: 2 }),
        (FLAG_MAINTENANCE, Reason::HolderInMaintenance { node_id: 2 }),
    ] {
        let mut n = yielded_at(HOLD_DOWN, t0);
        let mut holder = peer(2, 200, NodeState::Active, t0 + MS);
        holder.flags = flags;
        let out = step(&mut n, t0 + MS, &[holder]);
        assert!(out.take);
        assert_eq!(out.transition.map(|t| t.reason), Some(reason));
    }
}

proptest! {
    /// The more worthy holder's heartbeats to the standby are lost at random (60%: false
    /// takeovers do happen at this tolerance): the holder never lets go, the standby yields on
    /// the next heartbeat that gets through, and takes again no sooner than the hold-down.
    #[test]
    fn a_lossy_link_never_moves_the_address_and_false_takeovers_are_held_down(
        lost in proptest::collection::vec(proptest::bool::weighted(0.6), 3000),
    ) {
        let mut a = holder(2, 200, Preempt::Always);
        let mut b = Node::new(cfg(1, 100, Preempt::Always), at(0));
        let mut a_seen = TOL;
        let mut last_yield: Option<Nanos> = None;
        for (i, &lost) in lost.iter().enumerate() {
            let now = TOL + (i as Nanos + 1) * MS;
            if !lost {
                a_seen = now;
            }
            let b_state = b.state();
            prop_assert!(!step(&mut a, now, &[peer(1, 100, b_state, now)]).release);
            let was_active = b.state() == NodeState::Active;
            let out = step(&mut b, now, &[peer(2, 200, NodeState::Active, a_seen)]);
            if out.take {
                prop_assert!(last_yield.is_none_or(|y| now - y >= HOLD_DOWN), "took {now} after yielding at {last_yield:?}");
            }
            if was_active && !lost {
                prop_assert!(out.release, "a heard, more worthy holder ends the double claim at once");
                last_yield = Some(now);
            }
        }
    }
}

#[test]
fn after_a_gap_the_node_listens_again_before_taking() {
    let holder_at = |t| vec![peer(2, 200, NodeState::Active, t)];
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
    assert_eq!(run(&mut n, 0, 20 * MS, holder_at), vec![]);
    // Paused until 60 ms, and the machine with it: nothing was recorded meanwhile.
    let out = step(&mut n, 60 * MS, &holder_at(20 * MS));
    assert_eq!(out.resumed_after, Some(d(40 * MS)));
    assert!(!out.take, "the silence is ours, not the holder's");
    // The holder's heartbeat arrives a few ms after the resume: no takeover at all.
    let acted = run(&mut n, 61 * MS, 100 * MS, |t| holder_at(if t < 65 * MS { 20 * MS } else { t }));
    assert_eq!(acted, vec![]);
    // A holder that really is gone is replaced one tolerance after the resume.
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
    run(&mut n, 0, 20 * MS, holder_at);
    assert!(!step(&mut n, 60 * MS, &holder_at(20 * MS)).take);
    let acted = run(&mut n, 61 * MS, 100 * MS, |_| holder_at(20 * MS));
    assert_eq!(acted.len(), 1);
    assert!(acted[0].1.take && acted[0].0 == 60 * MS + TOL);
}

#[test]
fn a_pause_right_at_the_end_of_the_first_listen_is_guarded_too() {
    let holder_at = |t| vec![peer(2, 200, NodeState::Active, t)];
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
    run(&mut n, 0, TOL - MS, holder_at);
    let out = step(&mut n, TOL + 5 * TOL, &holder_at(TOL - MS));
    assert!(out.resumed_after.is_some() && !out.take, "{out:?}");
}

#[test]
fn a_holder_announces_again_when_a_peer_it_could_not_hear_returns() {
    // A partition heals. The loser hears the survivor first and yields before the survivor
    // ever sees its claim: all the survivor sees is a peer coming back, already STANDBY. The
    // clients on the loser's side still point at the loser, so the survivor must announce.
    let mut survivor = holder(2, 200, Preempt::Always);
    let apart = run(&mut survivor, TOL + MS, 30 * TOL, |_| vec![peer(1, 100, NodeState::Active, 0)]);
    assert_eq!(apart, vec![]);
    let back = 30 * TOL + MS;
    let out = step(&mut survivor, back, &[peer(1, 100, NodeState::Standby, back)]);
    assert_eq!(out, Output { announce: true, ..Output::default() });
    // Once per return.
    assert_eq!(run(&mut survivor, back + MS, back + 3 * TOL, |t| vec![peer(1, 100, NodeState::Standby, t)]), vec![]);
    // A standby has nothing to announce.
    let mut standby = Node::new(cfg(1, 100, Preempt::Always), at(0));
    assert_eq!(run(&mut standby, 0, 5 * MS, |t| vec![peer(2, 200, NodeState::Active, t)]), vec![]);
}

#[test]
fn a_node_starved_for_good_still_decides_every_other_step() {
    let holder_at = |t| vec![peer(2, 200, NodeState::Active, t)];
    let mut n = Node::new(cfg(1, 100, Preempt::Always), at(0));
    run(&mut n, 0, 20 * MS, holder_at);
    // The holder dies at 20 ms; this node now only runs every two tolerances.
    let out = step(&mut n, 20 * MS + 2 * TOL, &holder_at(20 * MS));
    assert!(out.resumed_after.is_some() && !out.take);
    let out = step(&mut n, 20 * MS + 4 * TOL, &holder_at(20 * MS));
    assert!(out.resumed_after.is_none() && out.take, "{out:?}");
}

#[test]
fn a_leaving_holder_back_from_a_gap_waits_for_its_successor() {
    let standby_at = |state, t| vec![peer(1, 100, state, t)];
    let mut n = holder(2, 200, Preempt::Always);
    run(&mut n, TOL + MS, 20 * MS, |t| standby_at(NodeState::Standby, t));
    n.leave(at(20 * MS));
    // Paused, machine and all, until 60 ms: the standby only looks gone.
    let out = step(&mut n, 60 * MS, &standby_at(NodeState::Standby, 20 * MS));
    assert!(!out.release && !out.exit, "{out:?}");
    let out = step(&mut n, 61 * MS, &standby_at(NodeState::Active, 61 * MS));
    assert!(out.release && out.exit);
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::SuccessorHolds { node_id: 1 }));
}

#[test]
fn the_holder_refreshes_its_announcement_every_period() {
    let mut n = Node::new(NodeConfig { refresh: Some(d(10 * MS)), ..cfg(1, 100, Preempt::Always) }, at(0));
    let out = step(&mut n, TOL, &[]);
    assert!(out.take && !out.refresh, "taking announces anyway");
    let acted = run(&mut n, TOL + MS, TOL + 35 * MS, |_| vec![]);
    let refreshed: Vec<Nanos> = acted.iter().filter(|(_, o)| o.refresh).map(|(t, _)| *t - TOL).collect();
    assert_eq!(refreshed, vec![10 * MS, 20 * MS, 30 * MS]);
    // A claim's re-announcement restarts the period.
    let t = TOL + 36 * MS;
    let out = step(&mut n, t, &[peer(2, 50, NodeState::Active, t)]);
    assert!(out.announce && !out.refresh);
    // The other claim ends: the last word (an announcement), which restarts the period too.
    let acted = run(&mut n, t + MS, t + 11 * MS, |_| vec![]);
    let when =
        |pick: fn(&Output) -> bool| acted.iter().filter(|(_, o)| pick(o)).map(|(at, _)| *at - t).collect::<Vec<_>>();
    assert_eq!(when(|o| o.announce), vec![MS], "the last word once the other claim ends");
    assert_eq!(when(|o| o.refresh), vec![11 * MS]);
    // A standby never refreshes; nor does anyone by default.
    let out = step(&mut n, t + 12 * MS, &[peer(3, 300, NodeState::Active, t + 12 * MS)]);
    assert!(out.release && !out.refresh);
    assert!(run(&mut n, t + 13 * MS, t + 40 * MS, |at| vec![peer(3, 300, NodeState::Active, at)]).is_empty());
    let mut quiet = holder(1, 100, Preempt::Always);
    assert!(run(&mut quiet, TOL + MS, TOL + 100 * MS, |_| vec![]).is_empty());
}

/// A cluster with perfect delivery, stepped in lockstep with a 1 ms tick.
struct Sim {
    nodes: Vec<Node>,
    alive: Vec<bool>,
    last_seen: Vec<Nanos>,
}

impl Sim {
    fn new(priorities: &[u32], preempt: Preempt) -> Self {
        let nodes =
            priorities.iter().enumerate().map(|(i, &p)| Node::new(cfg(i as u32 + 1, p, preempt), at(0))).collect();
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
                priority: n.priority(),
                state: n.state(),
                flags: n.flags(),
                last_seen: at(self.last_seen[i]),
                beats: Beats::default(),
                claimed_at: None,
                confirmed: true,
            })
            .collect();
        for i in 0..self.nodes.len() {
            if !self.alive[i] {
                continue;
            }
            let others: Vec<Peer> = snapshot.iter().copied().filter(|p| p.node_id != i as u32 + 1).collect();
            self.nodes[i].step(Inputs { now: at(now), peers: &others, link_up: true });
        }
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.alive[i] && self.nodes[i].state() == NodeState::Active).collect()
    }

    fn most_worthy_alive(&self) -> usize {
        (0..self.nodes.len()).filter(|&i| self.alive[i]).max_by_key(|&i| (self.nodes[i].priority(), i)).unwrap_or(0)
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
            sim.nodes[i] = Node::new(cfg(i as u32 + 1, priority, Preempt::Never), at(now));
        }
        for _ in 0..100 { now += MS; sim.tick(now); prop_assert_eq!(sim.holders(), vec![0]); }
    }

    #[test]
    fn an_unhealthy_holder_hands_over_to_the_most_worthy_healthy_node_even_with_never(
        priorities in proptest::collection::vec(1u32..5, 2..6),
        preempt_never in any::<bool>(),
    ) {
        let preempt = if preempt_never { Preempt::Never } else { Preempt::Always };
        let mut sim = Sim::new(&priorities, preempt);
        let mut now = 0;
        for _ in 0..30 { now += MS; sim.tick(now); }
        let holders = sim.holders();
        prop_assert_eq!(holders.len(), 1);
        let sick = holders[0];
        sim.nodes[sick].set_priority(0);
        for _ in 0..5 { now += MS; sim.tick(now); }
        let healthy_best = (0..priorities.len()).filter(|&i| i != sick).max_by_key(|&i| (priorities[i], i));
        prop_assert_eq!(sim.holders(), healthy_best.into_iter().collect::<Vec<_>>());
        // Steady afterwards: exactly one holder at every tick.
        for _ in 0..30 { now += MS; sim.tick(now); prop_assert_eq!(sim.holders().len(), 1); }
    }
}

#[test]
fn heartbeats_lost_at_random_do_not_make_a_standby_take_over_but_a_death_does() {
    // 2 ms heartbeats, tolerance 4 intervals, 10% lost: with the tolerance alone, dozens of false
    // takeovers in these 100 s. The silence limit grows with the loss instead.
    const INTERVAL: Nanos = 2 * MS;
    let mut n = Node::new(
        NodeConfig { max_tolerance: d(2 * TOL), hold_down: Duration::ZERO, ..cfg(1, 100, Preempt::Always) },
        at(0),
    );
    let mut coin = crate::liveness::tests::Coin(99);
    let mut holder = peer(2, 200, NodeState::Active, 0);
    holder.beats = Beats { interval: d(INTERVAL), epoch: 1, sent: 0, received: 0 };
    let mut now = 0;
    for _ in 0..50_000 {
        now += INTERVAL;
        holder.beats.sent += 1;
        if !coin.flip(0.1) {
            holder.beats.received += 1;
            holder.last_seen = at(now);
        }
        // Two looks per interval, the second half an interval late.
        assert!(!step(&mut n, now, &[holder]).take, "false takeover at {} ms", now / MS);
        assert!(!step(&mut n, now + INTERVAL / 2, &[holder]).take, "false takeover at {} ms", now / MS);
    }
    // It dies: the standby takes over within the grown limit, and not before the tolerance.
    let died = holder.last_seen.as_nanos();
    let (limit, loss) = n.peer_liveness(2);
    assert!(limit > d(TOL) && limit <= d(2 * TOL) && loss > 0.05, "limit {limit:?}, loss {loss}");
    let acted = run(&mut n, now + MS, died + 3 * TOL, |_| vec![holder]);
    assert_eq!(
        acted.first().map(|(t, o)| (*t, o.take)),
        Some((n.silent_at(&holder).as_nanos().div_ceil(MS) * MS, true))
    );
}

#[test]
fn on_a_clean_link_a_death_is_noticed_at_the_tolerance_even_with_a_maximum() {
    let mut n = Node::new(NodeConfig { max_tolerance: d(2 * TOL), ..cfg(1, 100, Preempt::Always) }, at(0));
    let mut holder = peer(2, 200, NodeState::Active, 0);
    for beat in 1..=100 {
        holder.last_seen = at(beat * 2 * MS);
        holder.beats = Beats { interval: d(2 * MS), epoch: 1, sent: beat, received: beat };
        assert!(!step(&mut n, beat * 2 * MS, &[holder]).take);
    }
    let died = holder.last_seen.as_nanos();
    let acted = run(&mut n, died + MS, died + 2 * TOL, |_| vec![holder]);
    assert_eq!(acted.first().map(|(t, o)| (*t, o.take)), Some((died + TOL + MS, true)));
}

#[test]
fn a_holder_announces_again_after_a_claim_it_did_not_see() {
    // The holder stalls; meanwhile the standby takes the address on its silence, announces,
    // hears the holder again and yields. The holder's next look shows a standby that claimed
    // after the previous look: clients may point at it, so the holder announces.
    let mut n = holder(1, 200, Preempt::Always);
    let mut standby = peer(2, 100, NodeState::Standby, TOL);
    step(&mut n, TOL + MS, &[standby]); // a new peer: announced as a return
    assert!(!step(&mut n, TOL + 2 * MS, &[standby]).announce);
    standby.claimed_at = Some(at(TOL + 20 * MS));
    standby.last_seen = at(TOL + 21 * MS);
    let out = step(&mut n, TOL + 22 * MS, &[standby]);
    assert!(out.announce && !out.release && out.transition.is_none(), "{out:?}");
    // Once: the claim is older than this look now.
    assert!(!step(&mut n, TOL + 23 * MS, &[standby]).announce);
}

#[test]
fn a_claim_still_standing_is_left_to_the_split_brain_rule() {
    let mut n = holder(1, 200, Preempt::Always);
    let mut other = peer(2, 100, NodeState::Active, TOL + MS);
    other.claimed_at = Some(at(TOL + MS));
    let first = step(&mut n, TOL + 2 * MS, &[other]);
    assert!(first.announce, "the split brain rule announces once");
    other.claimed_at = Some(at(TOL + 3 * MS));
    other.last_seen = at(TOL + 3 * MS);
    assert!(!step(&mut n, TOL + 4 * MS, &[other]).announce, "not on every heartbeat of a standing claim");
}

#[test]
fn a_node_whose_checks_fail_reports_fault_with_its_own_reason() {
    // The holder's checks fail: a healthy peer takes over, and the old holder says why it let go.
    let mut n = holder(1, 200, Preempt::Always);
    n.set_priority(0);
    let t = 2 * TOL;
    let out = step(&mut n, t, &[peer(2, 100, NodeState::Active, t)]);
    assert!(out.release);
    let t1 = out.transition.expect("a transition");
    assert_eq!((t1.from, t1.to), (Role::Active, Role::Fault));
    assert_eq!(t1.reason, Reason::ChecksFailing { successor: Some(2) });
    assert_eq!(t1.reason.label(), "checks_failing");
    // Checks pass again: back to STANDBY, said once.
    n.set_priority(200);
    let out = step(&mut n, t + MS, &[peer(2, 100, NodeState::Active, t + MS)]);
    let back = out.transition.expect("recovered");
    assert_eq!(
        (back.from, back.to, back.reason),
        (Role::Fault, Role::Active, Reason::Preempt { node_id: 2, priority: 100 })
    );
    // A standby whose checks fail: FAULT, then STANDBY again, each once.
    let mut s = Node::new(cfg(3, 100, Preempt::Never), at(0));
    let h = |t| vec![peer(2, 200, NodeState::Active, t)];
    assert_eq!(step(&mut s, MS, &h(MS)).transition, None);
    s.set_priority(0);
    let fault = step(&mut s, 2 * MS, &h(2 * MS)).transition.expect("fault");
    assert_eq!(
        (fault.from, fault.to, fault.reason),
        (Role::Standby, Role::Fault, Reason::ChecksFailing { successor: None })
    );
    assert_eq!(step(&mut s, 3 * MS, &h(3 * MS)).transition, None, "once");
    s.set_priority(100);
    let ok = step(&mut s, 4 * MS, &h(4 * MS)).transition.expect("recovered");
    assert_eq!((ok.from, ok.to, ok.reason), (Role::Fault, Role::Standby, Reason::Recovered));
}

#[test]
fn a_holder_whose_link_goes_down_reports_fault_and_recovers_when_it_comes_back() {
    let mut n = holder(1, 100, Preempt::Always);
    assert_eq!(n.step(Inputs { now: at(2 * TOL), peers: &[], link_up: false }).transition, None);
    let down = n.step(Inputs { now: at(3 * TOL), peers: &[], link_up: false }).transition.expect("down");
    assert_eq!((down.from, down.to, down.reason), (Role::Active, Role::Fault, Reason::LinkDown));
    assert_eq!(n.role(), Role::Fault);
    let up = n.step(Inputs { now: at(4 * TOL), peers: &[], link_up: true }).transition.expect("up");
    assert_eq!((up.from, up.to, up.reason), (Role::Fault, Role::Standby, Reason::Recovered));
    assert_eq!(n.step(Inputs { now: at(5 * TOL - 1), peers: &[], link_up: true }).transition, None, "listens first");
    let took = n.step(Inputs { now: at(5 * TOL), peers: &[], link_up: true }).transition.expect("takes");
    assert_eq!((took.from, took.to), (Role::Standby, Role::Active));
}

#[test]
fn a_reload_applies_preempt_and_priority_but_keeps_the_identity_and_time_base() {
    let mut n = Node::new(cfg(2, 200, Preempt::Never), at(0));
    let h = |t| vec![peer(1, 100, NodeState::Active, t)];
    assert!(!step(&mut n, TOL, &h(TOL)).take, "never preempts");
    n.reconfigure(NodeConfig { node_id: 9, tolerance: d(1), ..cfg(2, 200, Preempt::Always) });
    assert_eq!((n.config().node_id, n.config().tolerance), (2, d(TOL)), "identity and tolerance need a restart");
    let out = step(&mut n, TOL + MS, &h(TOL + MS));
    assert_eq!(out.transition.map(|t| t.reason), Some(Reason::Preempt { node_id: 1, priority: 100 }));
}

#[test]
fn a_holder_announces_again_after_a_claim_it_missed_by_a_peer_that_then_died() {
    // While this holder stalled, a peer claimed the address (re-pointing clients) and died
    // still claiming: its last heartbeat says ACTIVE, but it is silent now. Clients may point at
    // a dead node: announce.
    let mut n = holder(1, 200, Preempt::Always);
    let mut other = peer(2, 100, NodeState::Standby, TOL);
    step(&mut n, TOL + MS, &[other]);
    assert!(!step(&mut n, TOL + 2 * MS, &[other]).announce);
    other.state = NodeState::Active;
    other.claimed_at = Some(at(TOL + 20 * MS));
    other.last_seen = at(TOL + 21 * MS);
    let out = step(&mut n, TOL + 21 * MS + 2 * TOL, &[other]);
    assert!(out.announce && !out.release, "{out:?}");
    assert_eq!(n.reannounce(), Some(Reannounce::MissedClaim));
}

#[test]
fn a_holder_has_the_last_word_after_a_claimer_in_maintenance_lets_go() {
    // A less worthy node claims too (a healed partition), then goes into maintenance while it
    // still claims: it waits for a successor and may announce meanwhile (a peer of its own came
    // back). Its claim ends only when it yields: this holder must announce then, though the
    // claimer stopped being a candidate long before.
    let mut n = holder(1, 200, Preempt::Always);
    let mut other = peer(2, 100, NodeState::Active, TOL + MS);
    let out = step(&mut n, TOL + MS, &[other]);
    assert!(out.announce && n.reannounce() == Some(Reannounce::OtherClaims), "{out:?}");
    other.flags = FLAG_MAINTENANCE;
    other.last_seen = at(TOL + 2 * MS);
    assert!(!step(&mut n, TOL + 2 * MS, &[other]).announce, "it still claims: nothing ended");
    other.state = NodeState::Standby;
    other.last_seen = at(TOL + 3 * MS);
    let out = step(&mut n, TOL + 3 * MS, &[other]);
    assert!(out.announce, "{out:?}");
    assert_eq!(n.reannounce(), Some(Reannounce::OtherClaimEnded));
}

#[test]
fn a_group_sees_a_peer_through_its_entry_or_not_at_all() {
    use ha_common::{
        maps::PeerRecord,
        wire::{Echo, GroupEntry, Heartbeat, Sequence, TAG_LEN},
    };
    let mut groups = GroupEntry::NONE;
    groups[0] = GroupEntry { group_id: 7, state: NodeState::Active, flags: FLAG_LEAVING, priority: 50 };
    groups[1] = GroupEntry { group_id: 9, state: NodeState::Standby, flags: 0, priority: 200 };
    let hb = Heartbeat {
        cluster_id: 1,
        node_id: 2,
        priority: 0,
        state: NodeState::Standby,
        flags: FLAG_CONFIRMING,
        key_id: 0,
        interval_us: 1000,
        seq: Sequence { epoch: 5, counter: 1 },
        echo: Echo::default(),
        group_count: 2,
        groups,
        tag: [0; TAG_LEN],
    };
    let mut rec = PeerRecord::default();
    rec.record(&hb, [0; 4], 1_000, true);
    let zero = Peer::for_group(2, &rec, 0).expect("group 0 is the header");
    assert_eq!(Some(zero), Peer::from_record(2, &rec));
    assert_eq!((zero.state, zero.priority, zero.claimed_at), (NodeState::Standby, 0, None));
    let seven = Peer::for_group(2, &rec, 7).expect("runs group 7");
    assert_eq!((seven.state, seven.priority), (NodeState::Active, 50));
    assert_eq!(seven.flags, FLAG_LEAVING | FLAG_CONFIRMING, "its own flags and the node's confirming");
    assert_eq!(seven.claimed_at, Some(Instant::from_nanos(1_000)));
    assert_eq!((seven.last_seen, seven.confirmed, seven.beats.epoch), (zero.last_seen, true, 5), "node-level");
    let nine = Peer::for_group(2, &rec, 9).expect("runs group 9");
    assert_eq!(
        (nine.state, nine.priority, nine.flags, nine.claimed_at),
        (NodeState::Standby, 200, FLAG_CONFIRMING, None)
    );
    assert_eq!(Peer::for_group(2, &rec, 8), None, "does not run group 8: invisible to it");
}
