//! Failover in the namespace lab with real agents, real addresses and real ARP: hard failure,
//! crash, clean stop, each preempt mode, and a single holder in steady state.
use std::{thread, time::Duration};

use ha_lab::{AgentSet, AgentSettings, Prober};

use crate::support::{AGENT, WAIT, lab, shared_cpu, vip, wait_client_points_at};

const PROBE: Duration = Duration::from_millis(1);

#[test]
fn hard_failure_moves_the_address_and_the_old_holder_returns_make_before_break() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
    lab.client().ping(vip(), Duration::from_secs(1)).expect("VIP answers");
    wait_client_points_at(&lab, lab.node(1).mac());

    let prober = Prober::start(lab.client(), vip(), PROBE).expect("prober");
    thread::sleep(Duration::from_millis(100));
    lab.cut_link(1).expect("cut node 1");
    agents.wait_sole_holder(2, WAIT).expect("node 2 takes over and node 1 lets go");
    wait_client_points_at(&lab, lab.node(2).mac());
    thread::sleep(Duration::from_millis(100));
    let report = prober.stop();
    assert!(report.lost > 0, "a pulled cable loses some probes: {report:?}");
    assert!(report.answered > 150, "the client is served again after the takeover: {report:?}");

    // The old holder comes back: preempt=always moves the address back with no gap.
    let prober = Prober::start(lab.client(), vip(), PROBE).expect("prober");
    lab.restore_link(1).expect("restore");
    agents.wait_sole_holder(1, WAIT).expect("node 1 takes the address back");
    wait_client_points_at(&lab, lab.node(1).mac());
    thread::sleep(Duration::from_millis(100));
    let report = prober.stop();
    assert!(report.lost <= 2, "make-before-break hand-over: {report:?}\n{}", agents.diagnostics());
}

#[test]
fn a_crashed_holder_is_replaced_and_its_stale_address_removed_on_restart() {
    let _cpu = shared_cpu();
    let lab = lab(3);
    let mut agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[300, 200, 100])).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
    lab.client().ping(vip(), Duration::from_secs(1)).expect("VIP answers");
    agents.kill(1).expect("SIGKILL node 1");
    // The dead agent cannot remove its copy; the next most worthy takes over and announces.
    agents.wait_for("node 2 takes over", WAIT, |h| h.contains(&2) && !h.contains(&3)).expect("takeover");
    wait_client_points_at(&lab, lab.node(2).mac());
    // Restarted, node 1 drops the stale copy, listens, and takes the address back.
    agents.start_node(1).expect("restart node 1");
    agents.wait_sole_holder(1, WAIT).expect("node 1 holds again, alone");
    wait_client_points_at(&lab, lab.node(1).mac());
}

#[test]
fn clean_stop_hands_over_without_a_gap_and_cleans_up() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let mut agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
    lab.client().ping(vip(), Duration::from_secs(1)).expect("VIP answers");
    let prober = Prober::start(lab.client(), vip(), PROBE).expect("prober");
    thread::sleep(Duration::from_millis(100));
    let status = agents.stop(1, WAIT).expect("clean stop");
    assert!(status.success(), "{status:?}");
    assert_eq!(agents.holders().expect("holders"), vec![2], "successor holds, leaver let go");
    wait_client_points_at(&lab, lab.node(2).mac());
    thread::sleep(Duration::from_millis(100));
    let report = prober.stop();
    assert!(report.lost <= 2, "clean stop is make-before-break: {report:?}\n{}", agents.diagnostics());
    assert!(!lab.pin_dir(1).exists(), "a cleanly stopped agent unpins its maps");
}

#[test]
fn preempt_never_keeps_the_address_where_it_is() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.preempt = "never".into();
    let mut agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds at first");
    agents.stop(1, WAIT).expect("stop node 1");
    agents.wait_sole_holder(2, WAIT).expect("node 2 holds");
    agents.start_node(1).expect("node 1 returns");
    thread::sleep(agents.settings.tolerance * 5);
    assert_eq!(agents.holders().expect("holders"), vec![2], "bi-stable: the holder keeps it\n{}", agents.diagnostics());
}

#[test]
fn preempt_delay_waits_before_taking_the_address_back() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.preempt = "delay=600ms".into();
    let mut agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
    agents.stop(1, WAIT).expect("stop node 1");
    agents.wait_sole_holder(2, WAIT).expect("node 2 holds");
    agents.start_node(1).expect("node 1 returns");
    thread::sleep(Duration::from_millis(400));
    assert_eq!(agents.holders().expect("holders"), vec![2], "not before the delay");
    let waited = agents.wait_sole_holder(1, WAIT).expect("node 1 takes it back after the delay");
    assert!(waited > Duration::from_millis(150), "took it back {waited:?} after 400 ms: delay ignored?");
}

#[test]
fn steady_state_has_exactly_one_holder_at_every_sample() {
    let _cpu = shared_cpu();
    let lab = lab(3);
    let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[100, 300, 200])).expect("agents");
    agents.wait_sole_holder(2, WAIT).expect("most worthy holds");
    for _ in 0..100 {
        assert_eq!(agents.holders().expect("holders"), vec![2], "{}", agents.diagnostics());
        thread::sleep(Duration::from_millis(10));
    }
}
