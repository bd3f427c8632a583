use ha_common::wire::{FLAG_LEAVING, NodeState};

use super::*;
use crate::{
    failover::AnnounceCause,
    node::{Beats, Preempt},
    time::Duration,
};

const MS: Duration = Duration::from_millis(1);
const INTERVAL: Duration = Duration::from_millis(2);
const TOL: Duration = Duration::from_millis(8);

fn at(ms: u64) -> Instant {
    Instant::ZERO + MS * ms as u32
}

fn config(node_id: u32) -> FailoverConfig {
    FailoverConfig::new(
        NodeConfig {
            node_id,
            priority: 100,
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

fn group(id: u8, priority: u32) -> GroupConfig {
    GroupConfig { id, priority, preempt: Preempt::Always }
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

/// One wake: each group's peers, then the timeout; what it was told to do, less stamps.
fn wake(g: &mut Groups, now: Instant, peers: &[(u8, Vec<Peer>)]) -> (Vec<GroupsAction>, Vec<GroupsEvent>) {
    let ids: Vec<u8> = g.ids().collect();
    for id in ids {
        let ps = peers.iter().find(|(g, _)| *g == id).map(|(_, p)| p.as_slice()).unwrap_or(&[]);
        g.handle_peers(now, id, ps);
    }
    g.handle_timeout(now);
    let mut actions: Vec<GroupsAction> = std::iter::from_fn(|| g.poll_action()).collect();
    actions.retain(|a| !matches!(a, GroupsAction::Node(Action::Stamp | Action::Unfence)));
    (actions, std::iter::from_fn(|| g.poll_event()).collect())
}

/// Wakes as asked until `until`; every action on the way.
fn run(
    g: &mut Groups,
    from: Instant,
    until: Instant,
    peers: &dyn Fn(Instant) -> Vec<(u8, Vec<Peer>)>,
) -> Vec<GroupsAction> {
    let mut now = from;
    let mut all = Vec::new();
    while now < until {
        now = g.poll_timeout().max(now + Duration::from_nanos(1)).min(until);
        all.extend(wake(g, now, &peers(now)).0);
    }
    all
}

fn heartbeats(actions: &[GroupsAction]) -> Vec<Heartbeat> {
    actions
        .iter()
        .filter_map(|a| match a {
            GroupsAction::SendHeartbeat(hb) => Some(*hb),
            _ => None,
        })
        .collect()
}

fn takes(actions: &[GroupsAction]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            GroupsAction::Group { group, action: Action::Take } => Some(*group),
            _ => None,
        })
        .collect()
}

fn state_of(hb: &Heartbeat, group: u8) -> NodeState {
    hb.groups().iter().find(|g| g.group_id == group).map(|g| g.state).unwrap_or(NodeState::Standby)
}

#[test]
fn invalid_sets_of_groups_are_refused() {
    let cfg = config(1);
    let err = |gs: &[GroupConfig], cfg: &FailoverConfig| Groups::new(cfg, gs, Instant::ZERO).err();
    assert_eq!(err(&[], &cfg), Some(GroupsError::Empty));
    assert_eq!(err(&[group(1, 1), group(1, 2)], &cfg), Some(GroupsError::Duplicate(1)));
    assert_eq!(err(&[group(0, 1), group(1, 2)], &cfg), Some(GroupsError::GroupZeroAmongOthers));
    let many: Vec<GroupConfig> = (1..=17).map(|id| group(id, 1)).collect();
    assert_eq!(err(&many, &cfg), Some(GroupsError::TooMany(17)));
    assert!(err(&many[..16], &cfg).is_none());
    let mut event = config(1);
    event.wake = Wake::Event;
    assert_eq!(err(&[group(1, 1), group(2, 2)], &event), Some(GroupsError::EventWake));
    assert!(err(&[group(1, 1)], &event).is_none());
}

/// Group 0 alone is today's `Failover`: the same actions and events, in the same order, at the
/// same wakes.
#[test]
fn the_single_group_is_the_failover_it_wraps() {
    let mut f = Failover::new(config(1), Instant::ZERO);
    let mut g = Groups::single(config(1), Instant::ZERO);
    let script = |now: Instant| -> Vec<Peer> {
        let ms = now.since(Instant::ZERO).as_nanos() / 1_000_000;
        match ms {
            0..20 => vec![],
            20..60 => vec![peer(2, 200, NodeState::Active, now)],
            _ => vec![peer(2, 200, NodeState::Active, at(59))],
        }
    };
    let mut now = Instant::ZERO;
    let mut wakes = 0;
    while now < at(120) {
        let peers = script(now);
        if now >= at(90) && now < at(91) {
            f.handle_command(now, Command::Leave);
            g.handle_command(now, Command::Leave);
        }
        f.handle_peers(now, &peers);
        f.handle_timeout(now);
        g.handle_peers(now, DEFAULT_GROUP, &peers);
        g.handle_timeout(now);
        let fa: Vec<Action> = std::iter::from_fn(|| f.poll_action()).collect();
        let ga: Vec<Action> = std::iter::from_fn(|| g.poll_action())
            .map(|a| match a {
                GroupsAction::Group { group: 0, action } | GroupsAction::Node(action) => action,
                GroupsAction::SendHeartbeat(hb) => {
                    let (state, flags, priority) = hb.header().expect("group 0 in the header");
                    Action::SendHeartbeat { state, flags, priority, echo: hb.echo, scheduled: hb.scheduled }
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(fa, ga, "at {now:?}");
        let fe: Vec<Event> = std::iter::from_fn(|| f.poll_event()).collect();
        let ge: Vec<Event> = std::iter::from_fn(|| g.poll_event())
            .map(|e| match e {
                GroupsEvent::Group { group: 0, event } | GroupsEvent::Node(event) => event,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(fe, ge, "at {now:?}");
        assert_eq!(f.is_done(), g.is_done());
        let next = f.poll_timeout();
        assert_eq!(next, g.poll_timeout());
        now = next.max(now + Duration::from_nanos(1));
        wakes += 1;
        if f.is_done() {
            break;
        }
    }
    assert!(f.is_done(), "the script ends with a finished clean stop");
    assert!(wakes > 40);
}

/// Node 1 prefers group 1, node 2 group 2: each takes its own, and one heartbeat per interval
/// carries both groups.
#[test]
fn each_group_decides_alone_and_one_heartbeat_carries_them_all() {
    let cfg = config(1);
    let mut g = Groups::new(&cfg, &[group(1, 200), group(2, 100)], Instant::ZERO).expect("valid");
    let other = |now: Instant, g2: NodeState| {
        vec![(1, vec![peer(2, 100, NodeState::Standby, now)]), (2, vec![peer(2, 200, g2, now)])]
    };
    let (actions, _) = wake(&mut g, at(0), &other(at(0), NodeState::Standby));
    assert_eq!(heartbeats(&actions).len(), 1);
    let mut now = at(0);
    let mut took = Vec::new();
    while now < at(30) {
        now = g.poll_timeout().max(now + Duration::from_nanos(1));
        // The peer holds group 2 from 10 ms on.
        let g2 = if now >= at(10) { NodeState::Active } else { NodeState::Standby };
        let (actions, events) = wake(&mut g, now, &other(now, g2));
        assert!(heartbeats(&actions).len() <= 1, "one heartbeat per wake: {actions:?}");
        took.extend(takes(&actions));
        for e in events {
            if let GroupsEvent::Group { group, event: Event::Transition(t) } = e {
                assert_eq!(group, 1, "only group 1 changes here: {t:?}");
            }
        }
    }
    assert_eq!(took, vec![1], "takes its preferred group, not the other's");
    let (actions, _) = wake(&mut g, at(30) + INTERVAL, &other(at(30) + INTERVAL, NodeState::Active));
    let hb = heartbeats(&actions)[0];
    assert_eq!(hb.count, 2);
    assert_eq!(hb.header(), None, "numbered groups: the header is no group's");
    assert_eq!((state_of(&hb, 1), state_of(&hb, 2)), (NodeState::Active, NodeState::Standby));
    assert_eq!(hb.groups()[1].priority, 100);
    let sent = (0..20)
        .map(|i| {
            let now = at(40) + INTERVAL * i;
            heartbeats(&wake(&mut g, now, &other(now, NodeState::Active)).0).len()
        })
        .sum::<usize>();
    assert_eq!(sent, 20, "one heartbeat per interval for both groups");
}

/// A change of one group's state goes out at once, with every group's current state.
#[test]
fn a_take_in_one_group_is_followed_by_one_heartbeat_with_all_groups() {
    let cfg = config(1);
    let mut g = Groups::new(&cfg, &[group(1, 200), group(2, 200)], Instant::ZERO).expect("valid");
    wake(&mut g, at(0), &[]);
    let actions = run(&mut g, at(0), at(9), &|_| vec![]);
    let first = actions.iter().position(|a| matches!(a, GroupsAction::Group { action: Action::Take, .. }));
    let actions = actions[first.expect("took")..].to_vec();
    assert_eq!(takes(&actions), vec![1, 2], "both groups, nobody else: {actions:?}");
    let hbs = heartbeats(&actions);
    assert_eq!(hbs.len(), 1);
    assert_eq!((state_of(&hbs[0], 1), state_of(&hbs[0], 2)), (NodeState::Active, NodeState::Active));
    let last_take = actions.iter().rposition(|a| matches!(a, GroupsAction::Group { action: Action::Take, .. }));
    let hb_at = actions.iter().position(|a| matches!(a, GroupsAction::SendHeartbeat(_)));
    assert!(last_take < hb_at, "addresses announced before the ACTIVE heartbeat");
}

/// A clean stop hands every group over make-before-break and is done when the last group is.
#[test]
fn a_clean_stop_hands_over_every_group_and_is_done_after_the_last() {
    let cfg = config(1);
    let mut g = Groups::new(&cfg, &[group(1, 200), group(2, 200)], Instant::ZERO).expect("valid");
    wake(&mut g, at(0), &[]);
    assert_eq!(takes(&run(&mut g, at(0), at(20), &|_| vec![])), vec![1, 2]);
    let t = at(20);
    g.handle_command(t, Command::Leave);
    let standby =
        |now| vec![(1, vec![peer(2, 100, NodeState::Standby, now)]), (2, vec![peer(2, 100, NodeState::Standby, now)])];
    let (actions, _) = wake(&mut g, t, &standby(t));
    let hb = heartbeats(&actions)[0];
    assert!(hb.groups().iter().all(|e| e.flags & FLAG_LEAVING != 0 && e.state == NodeState::Active), "{hb:?}");
    assert!(!actions.iter().any(|a| matches!(a, GroupsAction::Group { action: Action::StopClaiming, .. })));
    // The successor claims group 1 first: only group 1 lets go.
    let t1 = t + MS;
    let one =
        |now| vec![(1, vec![peer(2, 100, NodeState::Active, now)]), (2, vec![peer(2, 100, NodeState::Standby, now)])];
    let (actions, _) = wake(&mut g, t1, &one(t1));
    assert!(actions.contains(&GroupsAction::Group { group: 1, action: Action::StopClaiming }));
    assert!(!actions.iter().any(|a| matches!(a, GroupsAction::Group { group: 2, action: Action::StopClaiming })));
    // Group 1's grace ends at t1 + TOL; group 2 is claimed at t1 + 5 ms: done at t1 + 5 + TOL.
    let t2 = t1 + MS * 5;
    let both =
        |now| vec![(1, vec![peer(2, 100, NodeState::Active, now)]), (2, vec![peer(2, 100, NodeState::Active, now)])];
    let mut now = t1;
    let mut done_events = 0;
    while !g.is_done() {
        now = g.poll_timeout().max(now + Duration::from_nanos(1));
        assert!(now <= t2 + TOL, "done by the end of the last grace");
        let peers = if now >= t2 { both(now) } else { one(now) };
        let (_, events) = wake(&mut g, now, &peers);
        done_events += events.iter().filter(|e| **e == GroupsEvent::Node(Event::Done)).count();
        assert!(now >= t2 + TOL || !g.is_done(), "not done while group 2 lingers: {now:?}");
    }
    assert_eq!(done_events, 1);
}

#[test]
fn maintenance_applies_to_every_group_and_a_priority_to_one() {
    let cfg = config(1);
    let mut g = Groups::new(&cfg, &[group(1, 200), group(2, 150)], Instant::ZERO).expect("valid");
    g.handle_priority(at(1), 2, 0);
    g.handle_command(at(1), Command::Maintenance(true));
    let (actions, _) = wake(&mut g, at(1), &[]);
    let hb = heartbeats(&actions)[0];
    assert_eq!(hb.groups().iter().map(|e| e.priority).collect::<Vec<_>>(), vec![200, 0]);
    assert!(hb.groups().iter().all(|e| e.flags & ha_common::wire::FLAG_MAINTENANCE != 0));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, GroupsAction::Group { action: Action::Announce(AnnounceCause::Refresh), .. }))
    );
}

#[test]
fn the_nodes_fence_is_stamped_while_any_group_holds_and_switched_off_only_once_none_does() {
    // Group 1 (the lead) has a more worthy holder elsewhere; group 2 is this node's to take.
    let mut g = Groups::new(&config(1), &[group(1, 100), group(2, 100)], Instant::ZERO).expect("groups");
    let peers = |now: Instant| vec![(1, vec![peer(2, 200, NodeState::Active, now)]), (2, vec![])];
    let mut now = Instant::ZERO;
    let mut all = Vec::new();
    while now < at(100) {
        for (id, ps) in peers(now) {
            g.handle_peers(now, id, &ps);
        }
        g.handle_timeout(now);
        all.extend(std::iter::from_fn(|| g.poll_action()).map(|a| (now, a)));
        now = g.poll_timeout().max(now + Duration::from_nanos(1));
    }
    let take = all.iter().position(|(_, a)| *a == GroupsAction::Group { group: 2, action: Action::Take });
    let take = take.expect("group 2 taken");
    let stamp_before = all[..take].iter().rposition(|(_, a)| *a == GroupsAction::Node(Action::Stamp));
    assert!(stamp_before.is_some_and(|s| all[s].0 == all[take].0), "a stamp right before the take: {all:?}");
    let after: Vec<Instant> =
        all[take..].iter().filter(|(_, a)| *a == GroupsAction::Node(Action::Stamp)).map(|(t, _)| *t).collect();
    assert!(after.windows(2).all(|w| w[1] - w[0] <= TOL / 4), "stamps every quarter tolerance: {after:?}");
    assert!(after.last().is_some_and(|&t| t + TOL / 4 >= at(100)), "{after:?}");
    assert!(
        !all[take..].iter().any(|(_, a)| *a == GroupsAction::Node(Action::Unfence)),
        "the lead group has no address, but group 2 has"
    );
}
