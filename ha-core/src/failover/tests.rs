use ha_common::wire::{FLAG_ANSWERING, FLAG_CONFIRMING, NodeState};

use super::*;
use crate::node::{Beats, Preempt, Reason};

const MS: Duration = Duration::from_millis(1);
const INTERVAL: Duration = Duration::from_millis(2);
const TOL: Duration = Duration::from_millis(8);

fn at(ms: u64) -> Instant {
    Instant::ZERO + MS * ms as u32
}

fn config(node_id: u32, priority: u32) -> FailoverConfig {
    FailoverConfig::new(
        NodeConfig {
            node_id,
            priority,
            tolerance: TOL,
            max_tolerance: TOL,
            preempt: Preempt::Always,
            leave_timeout: 100 * MS,
            hold_down: 3 * TOL,
            refresh: None,
        },
        INTERVAL,
        INTERVAL,
    )
}

fn peer(node_id: u32, priority: u32, state: NodeState, last_seen: Instant) -> Peer {
    Peer {
        node_id,
        priority,
        state,
        flags: 0,
        last_seen,
        beats: Beats::default(),
        claimed_at: (state == NodeState::Active).then_some(last_seen),
        confirmed: true,
    }
}

/// One wake of a driver: the table, then the timeout; returns what it was told to do, less the
/// liveness stamps (see `wake_all`).
fn wake(f: &mut Failover, now: Instant, peers: &[Peer]) -> (Vec<Action>, Vec<Event>) {
    let (mut actions, events) = wake_all(f, now, peers);
    actions.retain(|a| !matches!(a, Action::Stamp | Action::Unfence));
    (actions, events)
}

fn wake_all(f: &mut Failover, now: Instant, peers: &[Peer]) -> (Vec<Action>, Vec<Event>) {
    f.handle_peers(now, peers);
    f.handle_timeout(now);
    (std::iter::from_fn(|| f.poll_action()).collect(), std::iter::from_fn(|| f.poll_event()).collect())
}

fn sends(actions: &[Action]) -> usize {
    actions.iter().filter(|a| matches!(a, Action::SendHeartbeat { .. })).count()
}

/// A node that listened alone for a tolerance and took the address at `TOL`.
fn holder() -> Failover {
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    let (actions, _) = wake(&mut f, at(8), &[]);
    assert_eq!(actions.first(), Some(&Action::Take));
    f
}

#[test]
fn heartbeats_follow_the_interval_and_do_not_burst_after_a_stall() {
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    let (actions, _) = wake(&mut f, at(0), &[]);
    assert_eq!(sends(&actions), 1, "the first heartbeat goes at once");
    assert_eq!(f.poll_timeout(), at(2), "next heartbeat");
    assert_eq!(sends(&wake(&mut f, at(1), &[]).0), 0, "not due yet");
    let (actions, _) = wake(&mut f, at(2), &[]);
    assert_eq!(
        actions,
        vec![Action::SendHeartbeat {
            state: NodeState::Standby,
            flags: 0,
            priority: 100,
            echo: ha_common::wire::Echo::default(),
            scheduled: Some(at(2))
        }]
    );
    // Paused for 5 intervals: one heartbeat, then the schedule restarts from now.
    assert_eq!(sends(&wake(&mut f, at(13), &[]).0), 1);
    assert_eq!(f.poll_timeout(), at(15));
}

#[test]
fn a_take_announces_then_says_active_at_once_and_repeats_the_announcement() {
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    wake(&mut f, at(0), &[]);
    let (actions, events) = wake(&mut f, at(8), &[]);
    assert_eq!(actions[0], Action::Take, "address and first announcement before the ACTIVE heartbeat");
    assert!(
        matches!(actions[1], Action::SendHeartbeat { state: NodeState::Active, scheduled: Some(_), .. }),
        "{actions:?}"
    );
    assert!(matches!(events[0], Event::Transition(t) if t.reason == Reason::NoHolder));
    // Repeats 5, 20, 100 and 500 ms later, each one wake.
    let mut repeats = Vec::new();
    let mut now = at(8);
    while now < at(600) {
        now = f.poll_timeout();
        let (actions, _) = wake(&mut f, now, &[]);
        if actions.contains(&Action::Announce(AnnounceCause::Repeat)) {
            repeats.push(now - at(8));
        }
    }
    assert_eq!(repeats, ANNOUNCE_REPEATS.to_vec());
}

#[test]
fn the_wake_is_exactly_when_the_holder_would_count_as_silent() {
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    let h = peer(2, 200, NodeState::Active, at(1) + Duration::from_micros(300));
    wake(&mut f, at(1) + Duration::from_micros(500), &[h]);
    // Heartbeats every 2 ms would wake at 2, 4, ...; the silence limit ends at 9.3 ms + 1 ns.
    let expected = h.last_seen + TOL + Duration::from_nanos(1);
    while f.poll_timeout() < expected {
        let now = f.poll_timeout();
        let (actions, _) = wake(&mut f, now, &[h]);
        assert!(!actions.contains(&Action::Take), "took at {now:?}");
    }
    assert_eq!(f.poll_timeout(), expected);
    let expiry = f.poll_timeout();
    let (actions, _) = wake(&mut f, expiry, &[h]);
    assert_eq!(actions[0], Action::Take);
}

#[test]
fn a_hand_over_stops_claiming_at_once_and_removes_the_address_one_tolerance_later() {
    let mut f = holder();
    let t = at(20);
    let (actions, events) = wake(&mut f, t, &[peer(2, 200, NodeState::Active, t)]);
    assert_eq!(actions[0], Action::StopClaiming);
    assert!(!actions.contains(&Action::RemoveAddresses), "clients may still be pointed here");
    assert!(events.contains(&Event::Lingering { grace: TOL }));
    assert_eq!(f.poll_timeout().min(t + TOL), f.poll_timeout(), "wakes for the end of the grace");
    let mut removed_at = None;
    let mut now = t;
    while now < t + TOL * 2 {
        now = f.poll_timeout().max(now + Duration::from_nanos(1));
        let (actions, _) = wake(&mut f, now, &[peer(2, 200, NodeState::Active, now)]);
        assert!(!actions.contains(&Action::Announce(AnnounceCause::Repeat)), "repeats were cancelled");
        if actions.contains(&Action::RemoveAddresses) {
            assert!(removed_at.is_none(), "removed once");
            removed_at = Some(now);
        }
    }
    assert_eq!(removed_at, Some(t + TOL));
}

#[test]
fn a_release_without_successor_removes_at_once() {
    let mut f = holder();
    f.handle_link(at(20), false);
    let (actions, events) = wake(&mut f, at(20), &[]);
    assert!(!actions.contains(&Action::StopClaiming), "keeps the address for a tolerance: {actions:?}");
    assert!(events.contains(&Event::Link { up: false }));
    assert!(f.poll_timeout() <= at(28), "wakes to let go one tolerance later");
    f.handle_link(at(28), false);
    let (actions, _) = wake(&mut f, at(28), &[]);
    assert_eq!(&actions[..2], &[Action::StopClaiming, Action::RemoveAddresses]);
}

#[test]
fn a_clean_stop_finishes_only_after_the_grace() {
    let mut f = holder();
    let t = at(20);
    f.handle_command(t, Command::Leave);
    let (actions, _) = wake(&mut f, t, &[peer(2, 100, NodeState::Standby, t)]);
    assert!(
        actions.iter().any(|a| matches!(a, Action::SendHeartbeat { flags, state: NodeState::Active, .. } if flags & ha_common::wire::FLAG_LEAVING != 0)),
        "peers hear at once: {actions:?}"
    );
    assert!(!f.is_done());
    let t2 = t + MS;
    let (actions, _) = wake(&mut f, t2, &[peer(2, 100, NodeState::Active, t2)]);
    assert_eq!(actions[0], Action::StopClaiming, "the successor claims: let go");
    assert!(!f.is_done(), "still answering clients pointed here");
    let mut now = t2;
    while !f.is_done() {
        now = f.poll_timeout().max(now + Duration::from_nanos(1));
        assert!(now <= t2 + TOL, "done by the end of the grace");
        wake(&mut f, now, &[peer(2, 100, NodeState::Active, now)]);
    }
    assert_eq!(now, t2 + TOL);
}

#[test]
fn the_next_wake_is_never_later_than_a_tick() {
    let mut cfg = config(1, 100);
    cfg.interval = Duration::from_millis(100);
    cfg.tick = Duration::from_millis(3);
    cfg.stamp_every = Duration::from_millis(100);
    let mut f = Failover::new(cfg, Instant::ZERO);
    wake(&mut f, at(0), &[]);
    assert_eq!(f.poll_timeout(), at(3));
}

fn echoes(actions: &[Action]) -> Vec<u32> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendHeartbeat { echo, .. } => Some(echo.node_id),
            _ => None,
        })
        .collect()
}

#[test]
fn an_unconfirmed_holder_is_ignored_and_we_ask_to_be_echoed() {
    // A recording of a dead holder, replayed to a node that just started: none of it echoes
    // this run, so the node takes the address after its listen as if nobody held it.
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    let replayed = |t: Instant| Peer { confirmed: false, ..peer(2, 200, NodeState::Active, t) };
    let (actions, _) = wake(&mut f, at(0), &[replayed(at(0))]);
    assert!(
        actions.iter().any(|a| matches!(a, Action::SendHeartbeat { flags, .. } if flags & FLAG_CONFIRMING != 0)),
        "asks peers to echo it first: {actions:?}"
    );
    let mut now = at(0);
    let mut took = None;
    while now < at(40) && took.is_none() {
        now = f.poll_timeout().max(now + Duration::from_nanos(1));
        let (actions, events) = wake(&mut f, now, &[replayed(now)]);
        if actions.contains(&Action::Take) {
            took = events.iter().find_map(|e| match e {
                Event::Transition(t) => Some(t.reason),
                _ => None,
            });
        }
    }
    assert_eq!(took, Some(Reason::NoHolder), "took on its own listen, at {now:?}");
    // The same holder, confirmed, is respected.
    let mut g = Failover::new(config(1, 100), Instant::ZERO);
    for ms in 0..40 {
        let (actions, _) = wake(&mut g, at(ms), &[peer(2, 200, NodeState::Active, at(ms))]);
        assert!(!actions.contains(&Action::Take), "took from a live confirmed holder at {ms} ms");
    }
}

/// Wakes as the agent's loop does: again at once while the core asks for it.
fn drive(f: &mut Failover, now: Instant, peers: &[Peer]) -> Vec<Action> {
    let mut all = Vec::new();
    loop {
        all.extend(wake(f, now, peers).0);
        if f.poll_timeout() > now {
            return all;
        }
    }
}

#[test]
fn a_new_run_is_echoed_at_once_then_peers_still_confirming_then_all_in_turn() {
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    let p = |id, epoch, flags, t| Peer {
        flags,
        beats: Beats { epoch, ..Beats::default() },
        ..peer(id, 100, NodeState::Standby, t)
    };
    let all = |t, three: (u64, u8)| [p(2, 20, 0, t), p(3, three.0, three.1, t), p(4, 40, 0, t)];
    // Three peers heard at once: each new run echoed at once, in a heartbeat of its own.
    assert_eq!(echoes(&drive(&mut f, at(0), &all(at(0), (30, 0)))), vec![2, 3, 4]);
    // Then everybody in turn, one heartbeat an interval.
    let mut sent: Vec<u32> =
        [2, 4, 6].iter().flat_map(|&ms| echoes(&drive(&mut f, at(ms), &all(at(ms), (30, 0))))).collect();
    sent.sort_unstable();
    assert_eq!(sent, vec![2, 3, 4]);
    // Node 3 restarted and asks to be confirmed: its new run at once, then it alone while it asks.
    let sent: Vec<u32> = [7, 8, 10, 12]
        .iter()
        .flat_map(|&ms| echoes(&drive(&mut f, at(ms), &all(at(ms), (31, FLAG_CONFIRMING)))))
        .collect();
    assert_eq!(sent, vec![3, 3, 3, 3], "at 7 ms at once, then at every heartbeat");
    // A peer not heard for a while is not echoed; with nobody heard, no echo.
    let mut g = Failover::new(config(1, 100), Instant::ZERO);
    assert_eq!(echoes(&drive(&mut g, at(0), &[])), vec![0]);
}

fn stamps(actions: &[Action]) -> usize {
    actions.iter().filter(|a| **a == Action::Stamp).count()
}

/// Drives a lone node until it takes the address: when, and what that wake did.
fn until_take(f: &mut Failover) -> (Instant, Vec<Action>) {
    let mut now = Instant::ZERO;
    loop {
        let (actions, _) = wake_all(f, now, &[]);
        if actions.contains(&Action::Take) {
            return (now, actions);
        }
        assert_eq!(stamps(&actions), 0, "a standby does not stamp ({now:?})");
        now = f.poll_timeout().max(now + Duration::from_nanos(1));
        assert!(now < at(1000), "never took");
    }
}

#[test]
fn the_liveness_stamp_goes_before_the_take_then_every_quarter_tolerance_and_waits_a_tolerance_after_a_pause() {
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    let (took, actions) = until_take(&mut f);
    let (stamp, take) =
        (actions.iter().position(|a| *a == Action::Stamp), actions.iter().position(|a| *a == Action::Take));
    assert!(stamp.is_some() && stamp < take, "the fence is down before the address is added: {actions:?}");
    let mut stamped = vec![took];
    let mut now = took;
    while now < took + 20 * MS {
        now = f.poll_timeout();
        assert!(now <= stamped[stamped.len() - 1] + TOL / 4, "the wake never misses a stamp");
        if stamps(&wake_all(&mut f, now, &[]).0) == 1 {
            stamped.push(now);
        }
    }
    let gaps: Vec<Duration> = stamped.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&g| g == TOL / 4), "{gaps:?}");

    // Not run for 3 tolerances: the fence may be up and a peer may hold the address. The stamp
    // (which lowers the fence) waits until this node has listened for a tolerance again.
    let resumed = now + TOL * 3;
    let (actions, events) = wake_all(&mut f, resumed, &[]);
    assert!(events.iter().any(|e| matches!(e, Event::Resumed { .. })), "{events:?}");
    assert_eq!(stamps(&actions), 0);
    let mut next = resumed;
    while stamps(&wake_all(&mut f, next, &[]).0) == 0 {
        next = f.poll_timeout().max(next + Duration::from_nanos(1));
        assert!(next <= resumed + TOL, "stamping again after one tolerance");
    }
    assert_eq!(next, resumed + TOL);
}

#[test]
fn a_standby_switches_the_fence_off_once_and_never_wakes_to_stamp() {
    // Event wake with the default stamp cadence: what wakes a standby at rest is its schedule.
    let mut f = Failover::new(FailoverConfig { wake: Wake::Event, ..config(1, 100) }, Instant::ZERO);
    let holder = |now: Instant| peer(2, 200, NodeState::Active, now);
    let (actions, _) = wake_all(&mut f, Instant::ZERO, &[holder(Instant::ZERO)]);
    assert_eq!(actions.iter().filter(|a| **a == Action::Unfence).count(), 1, "{actions:?}");
    let (mut now, mut wakes) = (Instant::ZERO, 0);
    while now < at(200) {
        now = f.poll_timeout().max(now + Duration::from_nanos(1));
        wakes += 1;
        let (actions, _) = wake_all(&mut f, now, &[holder(now)]);
        assert!(!actions.iter().any(|a| matches!(a, Action::Stamp | Action::Unfence)), "{now:?}: {actions:?}");
    }
    // A wake every half tolerance (50 in 200 ms) for the gap guard, and the schedule's renewals
    // every 24 ms; a stamp every quarter tolerance would be 100 more.
    assert!(wakes <= 60, "{wakes} wakes in 200 ms");
}

#[test]
fn a_standby_looks_again_on_a_heartbeat_slot_so_the_driver_wakes_once_for_both() {
    // Event wake: a standby wakes for each heartbeat of its schedule (every 2 ms from 0) and
    // looks at the table every half tolerance (4 ms). Its driver wakes a little late, as real
    // ones do; each look still falls on a heartbeat's slot.
    let mut f = Failover::new(FailoverConfig { wake: Wake::Event, ..config(1, 100) }, Instant::ZERO);
    let holder = |now: Instant| peer(2, 200, NodeState::Active, now);
    let late = Duration::from_micros(50);
    let mut now = Instant::ZERO;
    let mut looks = 0;
    while now < at(200) {
        wake_all(&mut f, now, &[holder(now)]);
        let next = f.poll_timeout();
        assert!(next > now && next <= now + TOL / 2, "{now:?}: next look at {next:?}");
        assert_eq!((next - Instant::ZERO).as_nanos() % INTERVAL.as_nanos(), 0, "{now:?}: {next:?} is off the slots");
        now = next + late;
        looks += 1;
    }
    assert!(looks >= 200 / 4, "{looks} looks in 200 ms");
}

#[test]
fn the_fence_is_switched_off_once_the_addresses_are_gone() {
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    let (took, _) = until_take(&mut f);
    // A more worthy node takes over: after the hand-over's linger the addresses go, and the
    // fence with them.
    let mut now = took;
    let mut removed = None;
    while now < took + 200 * MS {
        now = f.poll_timeout().max(now + Duration::from_nanos(1));
        let peers = [peer(2, 200, NodeState::Active, now)];
        let (actions, _) = wake_all(&mut f, now, &peers);
        if let Some(r) = actions.iter().position(|a| *a == Action::RemoveAddresses) {
            let unfence = actions.iter().position(|a| *a == Action::Unfence);
            assert!(unfence.is_some_and(|u| u > r), "{actions:?}");
            removed = Some(now);
        } else if removed.is_some() {
            assert!(!actions.iter().any(|a| matches!(a, Action::Stamp | Action::Unfence)), "{actions:?}");
        }
    }
    assert!(removed.is_some(), "the addresses were never removed");
}

/// Claims by another MAC at `claim`, decided at the first wake at or after the settle time.
fn claim_decided(f: &mut Failover, claim: Instant, peers: &dyn Fn(Instant) -> Vec<Peer>) -> (Vec<Action>, bool) {
    f.handle_foreign_claim(claim, claim);
    let (actions, events) = wake(f, claim, &peers(claim));
    assert!(!events.iter().any(|e| matches!(e, Event::ForeignClaim { .. })), "decided before the settle time");
    assert!(!actions.iter().any(|a| matches!(a, Action::Announce(AnnounceCause::ForeignClaim))));
    assert_eq!(f.poll_timeout().min(claim + CLAIM_SETTLE), f.poll_timeout(), "wakes to decide");
    let mut now = claim;
    loop {
        now = f.poll_timeout().max(now + Duration::from_nanos(1));
        let (actions, events) = wake(f, now, &peers(now));
        if let Some(defended) = events.iter().find_map(|e| match e {
            Event::ForeignClaim { defended } => Some(*defended),
            _ => None,
        }) {
            assert_eq!(now, claim + CLAIM_SETTLE);
            return (actions, defended);
        }
        assert!(now < claim + CLAIM_SETTLE, "no decision");
    }
}

#[test]
fn a_holder_reannounces_after_a_foreign_claim_with_the_usual_repeats() {
    let mut f = holder();
    let standby = |now: Instant| vec![peer(2, 50, NodeState::Standby, now)];
    let (actions, defended) = claim_decided(&mut f, at(30), &standby);
    assert!(defended);
    assert_eq!(
        actions.iter().filter(|a| **a == Action::Announce(AnnounceCause::ForeignClaim)).count(),
        1,
        "{actions:?}"
    );
    let decided = at(30) + CLAIM_SETTLE;
    let mut repeats = Vec::new();
    let mut now = decided;
    while now < decided + Duration::from_millis(600) {
        now = f.poll_timeout().max(now + Duration::from_nanos(1));
        if wake(&mut f, now, &standby(now)).0.contains(&Action::Announce(AnnounceCause::Repeat)) {
            repeats.push(now - decided);
        }
    }
    assert_eq!(repeats, ANNOUNCE_REPEATS.to_vec());

    // A standby only counts claims.
    let mut s = Failover::new(config(1, 100), Instant::ZERO);
    wake(&mut s, at(0), &[peer(2, 200, NodeState::Active, at(0))]);
    let holder_peer = |now: Instant| vec![peer(2, 200, NodeState::Active, now)];
    let (actions, defended) = claim_decided(&mut s, at(10), &holder_peer);
    assert!(!defended && !actions.iter().any(|a| matches!(a, Action::Announce(_))), "{actions:?}");
}

#[test]
fn a_peers_take_over_is_not_fought_even_when_its_heartbeat_follows_its_announcement() {
    // Preemption: node 2 announces first (the claim) and says ACTIVE right after; the holder
    // reads the claim before the heartbeat is in its table.
    let mut f = holder();
    let claim = at(30);
    let taker = move |now: Instant| {
        let active_at = claim + Duration::from_micros(200);
        if now < active_at {
            vec![peer(2, 200, NodeState::Standby, claim - MS)]
        } else {
            vec![peer(2, 200, NodeState::Active, active_at)]
        }
    };
    let (actions, defended) = claim_decided(&mut f, claim, &taker);
    assert!(!defended, "a legitimate hand-over: {actions:?}");
    assert!(!actions.iter().any(|a| matches!(a, Action::Announce(AnnounceCause::ForeignClaim))));
    assert_eq!(f.node().state(), NodeState::Standby, "yielded to the more worthy taker");

    // A peer that claimed moments before and yielded (a split brain we won): its late
    // announcement is its own, not a stranger's.
    let mut f = holder();
    let yielded = move |now: Instant| {
        let mut p = peer(2, 50, NodeState::Standby, now);
        p.claimed_at = Some(at(29));
        vec![p]
    };
    let (_, defended) = claim_decided(&mut f, at(30), &yielded);
    assert!(!defended);
}

#[test]
fn a_stream_of_foreign_claims_is_decided_a_settle_time_after_the_first_not_postponed() {
    let mut f = holder();
    let standby = |now: Instant| vec![peer(2, 50, NodeState::Standby, now)];
    let mut announced = Vec::new();
    let mut now = at(30);
    // A claim every 500 us for 20 ms; the holder wakes at its own pace.
    let mut next_claim = at(30);
    while now < at(50) {
        while next_claim <= now {
            f.handle_foreign_claim(now, next_claim);
            next_claim = next_claim + Duration::from_micros(500);
        }
        let (actions, _) = wake(&mut f, now, &standby(now));
        if actions.contains(&Action::Announce(AnnounceCause::ForeignClaim)) {
            announced.push(now);
        }
        now = f.poll_timeout().min(next_claim).max(now + Duration::from_nanos(1));
    }
    assert_eq!(announced.first(), Some(&(at(30) + CLAIM_SETTLE)));
    assert!(announced.windows(2).all(|w| w[1] - w[0] >= CLAIM_SETTLE), "at most one per settle time: {announced:?}");
}

#[test]
fn after_a_late_wake_a_peer_is_forgiven_the_stall() {
    // The machine stalled with the agent: heartbeats that reached it meanwhile are not in the
    // table. A stall over the tolerance less an interval is forgiven, up to two intervals.
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    for ms in (0..=20).step_by(2) {
        drive(&mut f, at(ms), &[peer(2, 200, NodeState::Active, at(ms))]);
    }
    let last = peer(2, 200, NodeState::Active, at(20));
    drive(&mut f, at(21), &[last]);
    // Woken 6.5 ms late (over an interval), 7.5 ms after the last look (under the tolerance,
    // so the gap guard does not act): past the plain limit already.
    let planned = f.poll_timeout();
    let woke = planned + Duration::from_micros(6_500);
    assert!(woke > at(20) + TOL && woke - at(21) < TOL);
    assert!(!drive(&mut f, woke, &[last]).contains(&Action::Take), "forgiven");
    let forgiven = at(20) + TOL + INTERVAL * 2 + Duration::from_nanos(1);
    assert!(!drive(&mut f, forgiven - Duration::from_nanos(1), &[last]).contains(&Action::Take));
    assert!(drive(&mut f, forgiven, &[last]).contains(&Action::Take), "at the limit plus two intervals");
}

#[test]
fn a_short_late_wake_forgives_nothing() {
    // Jitter (under a millisecond here): the holder is noticed at its plain limit.
    let mut f = Failover::new(config(1, 100), Instant::ZERO);
    for ms in (0..=20).step_by(2) {
        drive(&mut f, at(ms), &[peer(2, 200, NodeState::Active, at(ms))]);
    }
    let planned = f.poll_timeout();
    let last = peer(2, 200, NodeState::Active, at(20));
    let mut now = planned + Duration::from_micros(900);
    while !drive(&mut f, now, &[last]).contains(&Action::Take) {
        assert!(now < at(40), "never took over");
        now = f.poll_timeout();
    }
    assert_eq!(now, at(20) + TOL + Duration::from_nanos(1), "at the plain limit");
}

fn event_config(node_id: u32, priority: u32) -> FailoverConfig {
    // Stamps far apart, so that what is left of the wakes is visible.
    FailoverConfig {
        wake: Wake::Event,
        stamp_every: Duration::from_secs(10),
        watch_every: Duration::from_secs(10),
        ..config(node_id, priority)
    }
}

fn schedules(actions: &[Action]) -> Vec<(HeartbeatContent, Instant, Instant)> {
    actions
        .iter()
        .filter_map(|a| match *a {
            Action::ScheduleHeartbeats { content, first, until, .. } => Some((content, first, until)),
            _ => None,
        })
        .collect()
}

#[test]
fn event_mode_hands_out_a_schedule_not_heartbeats_and_renews_it_at_half_the_horizon() {
    let horizon = heartbeat_horizon(INTERVAL);
    assert_eq!(horizon, HORIZON_MIN, "4 intervals of 2 ms are under the minimum");
    let mut f = Failover::new(event_config(1, 100), Instant::ZERO);
    let (actions, _) = wake(&mut f, at(0), &[]);
    assert_eq!(sends(&actions), 0);
    let s = schedules(&actions);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].1, s[0].2), (at(0), at(0) + horizon), "from now, one horizon ahead");
    assert_eq!(s[0].0.state, NodeState::Standby);
    // Nothing to do until the listen ends (a tolerance): no tick, no heartbeat wake.
    assert_eq!(f.poll_timeout(), at(8), "the end of the first listen");
    let (actions, _) = wake(&mut f, at(8), &[]);
    assert_eq!(actions[0], Action::Take);
    let s = schedules(&actions);
    assert_eq!(s.len(), 1, "the new state goes out at once");
    assert_eq!((s[0].0.state, s[0].1), (NodeState::Active, at(8)));
    // Then the next wake is the renewal (or a repeat of the announcement before it), on the
    // last heartbeat time (8, 10, ...) at or before half the horizon: 8 + 50.
    let mut now = f.poll_timeout();
    while now < at(58) {
        assert!(schedules(&wake(&mut f, now, &[]).0).is_empty(), "renewed early at {now:?}");
        now = f.poll_timeout();
    }
    assert_eq!(now, at(58));
    let s = schedules(&wake(&mut f, now, &[]).0);
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].1, s[0].2), (at(58), at(58) + horizon), "a renewal keeps the cadence");
    assert!(heartbeat_horizon(Duration::from_secs(1)) >= Duration::from_secs(2), "two heartbeats at least");
}

#[test]
fn event_mode_does_not_wake_for_a_peers_expiry_the_kernel_reports_it() {
    let mut f = Failover::new(event_config(1, 100), Instant::ZERO);
    wake(&mut f, at(1), &[peer(2, 200, NodeState::Active, at(1))]);
    let h = peer(2, 200, NodeState::Active, at(7));
    wake(&mut f, at(8), &[h]);
    let silent = h.last_seen + TOL + Duration::from_nanos(1);
    assert!(f.poll_timeout() > silent, "woke for the expiry at {:?}", f.poll_timeout());
    // The kernel's timer fires at the limit: the decision is taken on that wake.
    let fired = h.last_seen + TOL + Duration::from_micros(20);
    f.handle_expired(fired, 2, h.last_seen);
    assert_eq!(wake(&mut f, fired, &[h]).0.first(), Some(&Action::Take));
}

#[test]
fn event_mode_wakes_itself_when_a_forgiven_absence_outlasts_the_kernels_timer() {
    // A standby looks every half tolerance, as it does by default: the wake planned before
    // the stall, which makes it late.
    let cfg = FailoverConfig { watch_every: TOL / 2, ..event_config(1, 100) };
    let mut f = Failover::new(cfg, Instant::ZERO);
    for ms in (0..=20).step_by(2) {
        drive(&mut f, at(ms), &[peer(2, 200, NodeState::Active, at(ms))]);
    }
    let last = peer(2, 200, NodeState::Active, at(20));
    // A late wake (over half an interval): the peer is forgiven the stall.
    let planned = f.poll_timeout().min(at(21));
    drive(&mut f, planned + Duration::from_micros(6_500), &[last]);
    // The kernel fires at the plain limit; this core still forgives, so it wakes itself later.
    let fired = at(20) + TOL + Duration::from_micros(10);
    f.handle_expired(fired, 2, last.last_seen);
    assert!(!drive(&mut f, fired, &[last]).contains(&Action::Take), "forgiven");
    let own = f.poll_timeout();
    assert!(own > fired && own <= at(20) + TOL + INTERVAL * 2 + Duration::from_nanos(1), "{own:?}");
    let mut now = own;
    while !drive(&mut f, now, &[last]).contains(&Action::Take) {
        assert!(now < at(40), "never took over");
        now = f.poll_timeout();
    }
}

#[test]
fn event_mode_hands_the_kernel_each_change_of_a_peers_limit() {
    let mut f = Failover::new(
        FailoverConfig {
            node: NodeConfig { max_tolerance: TOL * 4, ..event_config(1, 100).node },
            ..event_config(1, 100)
        },
        Instant::ZERO,
    );
    let mut limits = Vec::new();
    for ms in 0..200u64 {
        // Every third heartbeat lost.
        let sent = ms + 1;
        let beats = Beats { interval: INTERVAL, epoch: 1, sent, received: sent - sent / 3 };
        let p = Peer { beats, ..peer(2, 50, NodeState::Standby, at(ms)) };
        for a in drive(&mut f, at(ms), &[p]) {
            if let Action::SetSilenceLimit { node_id, limit } = a {
                limits.push((node_id, limit));
            }
        }
    }
    let (limit, _) = f.node().peer_liveness(2);
    assert!(limit > TOL, "the loss widened the limit");
    assert_eq!(limits.last(), Some(&(2, limit)), "the kernel has the current limit");
    assert!(limits.windows(2).all(|w| w[0] != w[1]), "handed out only on a change: {limits:?}");
}

#[test]
fn event_mode_owes_an_echo_again_when_its_schedule_is_replaced_before_it_left() {
    // Three new runs: each is owed a heartbeat echoing it. The second one's schedule starts at
    // the next slot; the priority changes before that slot, so the replacing schedule must
    // echo the same run, or that run waits a whole round robin (a split brain at start, since
    // decisions ignore unconfirmed peers).
    let mut f = Failover::new(event_config(1, 100), Instant::ZERO);
    wake(&mut f, at(0), &[]);
    let peers: Vec<Peer> = [2, 3, 4].map(|id| peer(id, 50, NodeState::Standby, at(1))).to_vec();
    let s = schedules(&wake(&mut f, at(1), &peers).0);
    assert_eq!((s[0].0.echo.node_id, s[0].1), (2, at(1)), "the first new run at once");
    let renewal = f.poll_timeout();
    assert!(renewal > at(1) && renewal < at(3), "half an interval after its slot: {renewal:?}");
    let s = schedules(&wake(&mut f, renewal, &peers).0);
    assert_eq!((s[0].0.echo.node_id, s[0].1), (3, at(3)), "the next run from the next slot");
    let before_its_slot = at(2) + MS / 2;
    f.handle_priority(before_its_slot, 150);
    f.handle_timeout(before_its_slot);
    let s = schedules(&std::iter::from_fn(|| f.poll_action()).collect::<Vec<_>>());
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].0.priority, s[0].0.echo.node_id), (150, 3), "run 3 still waits for its echo");
}

fn answer_config(node_id: u32, priority: u32) -> FailoverConfig {
    FailoverConfig { answer: true, stamp_every: TOL / 4, ..event_config(node_id, priority) }
}

fn answered(actions: &[Action]) -> Vec<bool> {
    actions
        .iter()
        .filter_map(|a| match *a {
            Action::ScheduleHeartbeats { content, answer, .. } => {
                assert_eq!(answer, content.flags & FLAG_ANSWERING != 0, "the flag says how it leaves");
                Some(answer)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_holder_with_one_standby_lets_its_kernel_answer_and_neither_stamps_nor_wakes_meanwhile() {
    let mut f = Failover::new(answer_config(1, 200), Instant::ZERO);
    let standby = |ms| peer(2, 100, NodeState::Standby, at(ms));
    assert_eq!(answered(&wake_all(&mut f, at(0), &[standby(0)]).0), vec![false], "a standby sends its own");
    let (actions, _) = wake_all(&mut f, at(8), &[standby(8)]);
    assert_eq!(actions.first(), Some(&Action::Stamp), "the fence is armed before the take");
    assert_eq!(answered(&actions), vec![true], "the holder's kernel answers");
    // No stamp and no wake until the renewal (or an announcement repeat): the schedule keeps
    // the fence down until its end.
    let mut now = f.poll_timeout();
    let mut stamps = 0;
    while now < at(40) {
        let (actions, events) = wake_all(&mut f, now, &[standby(now.as_nanos() / 1_000_000)]);
        stamps += actions.iter().filter(|a| **a == Action::Stamp).count();
        assert!(!events.iter().any(|e| matches!(e, Event::Resumed { .. })), "a planned quiet is no pause");
        now = f.poll_timeout();
    }
    assert_eq!(stamps, 0, "no stamps while answered");
}

#[test]
fn answers_stop_beside_a_second_peer_or_another_holder_and_stamps_resume_at_once() {
    let mut f = Failover::new(answer_config(1, 200), Instant::ZERO);
    wake_all(&mut f, at(0), &[]);
    assert_eq!(answered(&wake_all(&mut f, at(8), &[]).0), vec![true], "alone, nobody to send to");
    // Long after the last stamp (at the take), answered meanwhile.
    let two = [peer(2, 100, NodeState::Standby, at(30)), peer(3, 100, NodeState::Standby, at(30))];
    let (actions, _) = wake_all(&mut f, at(30), &two);
    assert_eq!(answered(&actions), vec![false], "answers to one would read as losses to the other");
    assert!(actions.contains(&Action::Stamp), "the fence is the stamps' again");
    let mut f = Failover::new(answer_config(1, 200), Instant::ZERO);
    wake_all(&mut f, at(0), &[]);
    wake_all(&mut f, at(8), &[]);
    let rival = peer(2, 100, NodeState::Active, at(9));
    assert_eq!(answered(&wake_all(&mut f, at(9), &[rival]).0), vec![false], "a split brain heals on heartbeats");
}

#[test]
fn answers_to_the_group_serve_any_number_of_standbys_but_not_beside_another_holder() {
    let cfg = FailoverConfig { answer_group: true, ..answer_config(1, 200) };
    let mut f = Failover::new(cfg.clone(), Instant::ZERO);
    let standbys = |ms| [2, 3, 4].map(|id| peer(id, 100, NodeState::Standby, at(ms)));
    wake_all(&mut f, at(0), &standbys(0));
    let (actions, _) = wake_all(&mut f, at(8), &standbys(8));
    assert_eq!(answered(&actions), vec![true], "every standby hears the group's answers");
    let mut f = Failover::new(cfg, Instant::ZERO);
    wake_all(&mut f, at(0), &[]);
    wake_all(&mut f, at(8), &[]);
    let with_rival = [peer(2, 100, NodeState::Standby, at(9)), peer(3, 100, NodeState::Active, at(9))];
    assert_eq!(answered(&wake_all(&mut f, at(9), &with_rival).0), vec![false], "a split brain heals on heartbeats");
}

#[test]
fn a_leaving_holder_sends_its_own_heartbeats_again() {
    let mut f = Failover::new(answer_config(1, 200), Instant::ZERO);
    let standby = |ms| peer(2, 100, NodeState::Standby, at(ms));
    wake_all(&mut f, at(0), &[standby(0)]);
    assert_eq!(answered(&wake_all(&mut f, at(8), &[standby(8)]).0), vec![true]);
    f.handle_command(at(9), Command::Leave);
    let (actions, _) = wake_all(&mut f, at(9), &[standby(9)]);
    assert_eq!(answered(&actions), vec![false], "the hand-over goes out every interval");
}

#[test]
fn a_peer_claiming_while_the_kernel_answers_ends_the_answers_for_the_run() {
    let mut f = Failover::new(answer_config(1, 200), Instant::ZERO);
    let standby = |ms| peer(2, 100, NodeState::Standby, at(ms));
    wake_all(&mut f, at(0), &[standby(0)]);
    assert_eq!(answered(&wake_all(&mut f, at(8), &[standby(8)]).0), vec![true]);
    // The standby did not hear the answers and took over.
    let (actions, events) = wake_all(&mut f, at(20), &[peer(2, 100, NodeState::Active, at(20))]);
    assert_eq!(answered(&actions), vec![false]);
    assert!(events.contains(&Event::AnswersUnheard { node_id: 2 }), "{events:?}");
    // It yields again; the answers do not come back with it.
    let (actions, events) = wake_all(&mut f, at(40), &[standby(40)]);
    assert!(answered(&actions).iter().all(|a| !a), "{actions:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::AnswersUnheard { .. })), "once");
    // A more worthy node preempting is no sign of unheard answers.
    let mut g = Failover::new(answer_config(1, 200), Instant::ZERO);
    wake_all(&mut g, at(0), &[standby(0)]);
    wake_all(&mut g, at(8), &[standby(8)]);
    let (_, events) = wake_all(&mut g, at(20), &[peer(3, 250, NodeState::Active, at(20))]);
    assert!(!events.iter().any(|e| matches!(e, Event::AnswersUnheard { .. })), "{events:?}");
    let mut now = f.poll_timeout();
    while now < at(200) {
        let (actions, _) = wake_all(&mut f, now, &[standby(now.as_nanos() / 1_000_000)]);
        assert!(answered(&actions).iter().all(|a| !a), "answers came back at {now:?}");
        now = f.poll_timeout();
    }
}
