//! Active/active as it runs today: two agents per node, one per address group (own cluster,
//! port and pin directory; the second on the socket path, as an interface takes one XDP
//! program), with opposite priorities. Each node holds one address; a node's death moves only
//! its address; a clean stop hands every address over.
use std::{
    net::{IpAddr, Ipv4Addr},
    thread,
    time::Duration,
};

use ha_lab::{AgentSet, AgentSettings, Prober};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu};

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 201);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 202);

#[test]
fn two_groups_with_opposite_preferences_share_the_load_and_move_alone() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = lab(2);
        let (a, b) = (IpAddr::V4(A), IpAddr::V4(B));
        let mut first = AgentSettings::new(&[200, 100]);
        first.vips = vec![format!("{A}/24")];
        let mut second = AgentSettings::new(&[100, 200]);
        second.vips = vec![format!("{B}/24")];
        second.extra_args = ["--cluster", "2", "--port", "7266", "--rx", "socket"].map(String::from).to_vec();
        second.instance = Some("b".into());
        let mut group_a = AgentSet::start(&lab, AGENT, first).expect("group A");
        let mut group_b = AgentSet::start(&lab, AGENT, second).expect("group B");
        group_a.wait_sole_holder_of(a, 1, WAIT).expect("node 1 holds A");
        group_b.wait_sole_holder_of(b, 2, WAIT).expect("node 2 holds B");

        // Node 1 dies (both its agents): A moves to node 2, B stays where it is.
        group_a.kill(1).expect("kill");
        group_b.kill(1).expect("kill");
        lab.cut_link(1).expect("and its cable");
        // (Node 1's copy stays with its dead agent, cut off.)
        group_a.wait_for_addr(a, "A moves to node 2", WAIT, |h| h.contains(&2)).expect("A moves to node 2");
        assert_eq!(group_b.holders_of(b).expect("holders"), vec![2], "B did not move\n{}", group_b.diagnostics());
        let transitions = group_b.output(2).lines().filter(|l| l.contains(" -> ")).count();
        assert_eq!(transitions, 1, "B on node 2: its first take only\n{}", group_b.output(2));
        lab.restore_link(1).expect("restore");
        group_a.start_node(1).expect("restart");
        group_b.start_node(1).expect("restart");
        group_a.wait_sole_holder_of(a, 1, WAIT).expect("A back to node 1");
        thread::sleep(Duration::from_millis(300));
        assert_eq!(group_b.holders_of(b).expect("holders"), vec![2], "B stays on node 2");

        // A clean stop of node 2 hands B over to node 1 make-before-break.
        lab.client().ping(b, Duration::from_secs(1)).expect("B answers");
        let prober = Prober::start(lab.client(), b, Duration::from_millis(1)).expect("prober");
        thread::sleep(Duration::from_millis(100));
        assert!(group_b.stop(2, WAIT).expect("clean stop").success());
        group_b.wait_sole_holder_of(b, 1, WAIT).expect("B moves to node 1");
        thread::sleep(Duration::from_millis(100));
        let report = prober.stop();
        assert!(report.lost <= 2, "clean stop is make-before-break: {report:?}\n{}", group_b.diagnostics());
        assert_eq!(group_a.holders_of(a).expect("holders"), vec![1], "A untouched");
    });
}
