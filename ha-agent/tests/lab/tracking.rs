//! Interface tracking (`--track-iface`, keepalived's track_interface): a tracked link that goes
//! down puts the holder in FAULT (no weight) or lowers its priority (a weight); either way the
//! address moves make-before-break, and back when the link returns.
use std::{thread, time::Duration};

use ha_lab::{AgentSet, AgentSettings, Prober};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu, status_json, vip, wait_client_points_at};

const PROBE: Duration = Duration::from_millis(1);

fn tracked_link_down_moves_the_address(track: &str, want_priority: u64, want_state: &str) {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let lan = lab.add_lan("eth1", "10.9.0", false).expect("a second network");
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.extra_args = vec!["--track-iface".into(), track.into()];
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
    lab.client().ping(vip(), Duration::from_secs(1)).expect("VIP answers");
    wait_client_points_at(&lab, lab.node(1).mac());

    let prober = Prober::start(lab.client(), vip(), PROBE).expect("prober");
    thread::sleep(Duration::from_millis(100));
    lab.cut_lan_link(&lan, 1).expect("cut node 1's eth1");
    agents.wait_sole_holder(2, WAIT).expect("node 2 takes over");
    wait_client_points_at(&lab, lab.node(2).mac());
    thread::sleep(Duration::from_millis(100));
    let report = prober.stop();
    assert!(report.lost <= 2, "make-before-break: {report:?}\n{}", agents.diagnostics());
    let status = status_json(&lab, 1);
    assert_eq!(status["state"], want_state, "{status}");
    assert_eq!(status["priority"], want_priority, "{status}");
    let parts = status["priority_parts"].to_string();
    assert!(parts.contains("track eth1 down"), "{parts}");
    assert!(agents.output(1).contains("tracked interface eth1 is down"), "{}", agents.output(1));

    lab.restore_lan_link(&lan, 1).expect("restore");
    agents.wait_sole_holder(1, WAIT).expect("node 1 takes the address back");
    assert_eq!(status_json(&lab, 1)["priority"], 200);
}

#[test]
fn a_tracked_interface_down_without_a_weight_means_fault_and_hands_over() {
    bounded(|| tracked_link_down_moves_the_address("eth1", 0, "FAULT"));
}

#[test]
fn a_tracked_interface_down_with_a_weight_lowers_the_priority_below_the_peer() {
    bounded(|| tracked_link_down_moves_the_address("eth1:150", 50, "STANDBY"));
}
