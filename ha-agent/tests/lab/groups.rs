//! Several groups in one agent (`--vip-group`, `[[group]]`): two nodes, one agent each, two
//! groups with opposite preferences carried by one heartbeat. Each node holds its preferred
//! group; a node's death (SIGKILL) moves only its group; a clean stop (SIGTERM) of the node
//! holding both hands both over make-before-break.
//!
//! Heartbeats come in through the XDP program (the default path), which records every group's
//! entry of the one heartbeat in the peer's record.
use std::{
    net::{IpAddr, Ipv4Addr},
    thread,
    time::Duration,
};

use ha_lab::{AgentSet, AgentSettings, Prober};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu};

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 211);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 212);

fn groups(prio_a: u32, prio_b: u32) -> Vec<String> {
    let g = |id: u8, prio: u32, vip: Ipv4Addr| format!("--vip-group={id}:{prio}:{vip}/24:preempt=never");
    vec![g(1, prio_a, A), g(2, prio_b, B)]
}

/// Node 1 prefers group 1 (A), node 2 group 2 (B); no flat `--vip`.
fn opposite_preferences() -> AgentSettings {
    let mut settings = AgentSettings::new(&[100, 100]);
    settings.vips.clear();
    settings.node(1).args = groups(200, 100);
    settings.node(2).args = groups(100, 200);
    settings
}

/// Starts the agents and waits until node 1 alone holds A and node 2 alone holds B.
fn start_each_holding_its_group<'l>(lab: &'l ha_lab::Lab, settings: AgentSettings) -> AgentSet<'l> {
    let agents = AgentSet::start(lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder_of(IpAddr::V4(A), 1, WAIT).expect("node 1 holds A");
    agents.wait_sole_holder_of(IpAddr::V4(B), 2, WAIT).expect("node 2 holds B");
    agents
}

/// Transitions of group `g` in an agent's log.
fn transitions(out: &str, g: u8) -> usize {
    out.lines().filter(|l| l.contains(&format!("group {g}: ")) && l.contains(" -> ")).count()
}

#[test]
fn one_agent_two_groups_opposite_preferences_move_alone_and_stop_cleanly() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = lab(2);
        let (a, b) = (IpAddr::V4(A), IpAddr::V4(B));
        let mut settings = opposite_preferences();
        settings.preempt = "never".into();
        // A long leave timeout: a stop that waits for it did not see its successors' claims.
        settings.extra_args = ["--leave-timeout", "5s"].map(String::from).to_vec();
        let mut agents = start_each_holding_its_group(&lab, settings);

        // Node 1 dies: A moves to node 2, B does not move. (Its copy of A stays with the dead
        // agent: cut off with its cable.)
        agents.kill(1).expect("kill");
        lab.cut_link(1).expect("cut");
        agents.wait_for_addr(a, "A moves to node 2", WAIT, |h| h.contains(&2)).expect("A moves to node 2");
        assert_eq!(agents.holders_of(b).expect("holders"), vec![2], "B did not move\n{}", agents.diagnostics());
        assert_eq!(transitions(&agents.output(2), 2), 1, "B on node 2: its first take only\n{}", agents.output(2));
        lab.restore_link(1).expect("restore");
        agents.start_node(1).expect("restart");
        thread::sleep(Duration::from_millis(500));
        assert!(agents.holders_of(a).expect("holders").contains(&2), "preempt never: node 2 keeps A");

        // Node 2 holds both and stops cleanly: both move to node 1, make-before-break.
        let client = lab.client();
        client.ping(a, Duration::from_secs(1)).expect("A answers");
        client.ping(b, Duration::from_secs(1)).expect("B answers");
        let probe_a = Prober::start(lab.client(), a, Duration::from_millis(1)).expect("prober A");
        let probe_b = Prober::start(lab.client(), b, Duration::from_millis(1)).expect("prober B");
        thread::sleep(Duration::from_millis(100));
        let stopping = std::time::Instant::now();
        assert!(agents.stop(2, WAIT).expect("clean stop").success(), "{}", agents.output(2));
        let took = stopping.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "each group let go on its successor's claim: {took:?}\n{}",
            agents.output(2)
        );
        agents.wait_sole_holder_of(a, 1, WAIT).expect("A moves to node 1");
        agents.wait_sole_holder_of(b, 1, WAIT).expect("B moves to node 1");
        thread::sleep(Duration::from_millis(100));
        let (ra, rb) = (probe_a.stop(), probe_b.stop());
        println!("clean stop: A {ra:?}, B {rb:?}");
        assert!(ra.lost <= 2 && rb.lost <= 2, "make-before-break: A {ra:?}, B {rb:?}\n{}", agents.diagnostics());
    });
}

#[test]
fn the_other_nodes_death_moves_only_its_group() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = lab(2);
        let (a, b) = (IpAddr::V4(A), IpAddr::V4(B));
        let mut agents = start_each_holding_its_group(&lab, opposite_preferences());

        // Node 2 dies with its cable: B moves to node 1, A makes no transition.
        agents.kill(2).expect("kill");
        lab.cut_link(2).expect("cut");
        agents.wait_for_addr(b, "B moves to node 1", WAIT, |h| h.contains(&1)).expect("B moves to node 1");
        assert_eq!(agents.holders_of(a).expect("holders"), vec![1], "A did not move\n{}", agents.diagnostics());
        assert_eq!(transitions(&agents.output(1), 1), 1, "A on node 1: its first take only\n{}", agents.output(1));
    });
}
