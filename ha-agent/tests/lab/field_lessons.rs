//! What goes wrong around failover agents in the field, made a non-event (issue 7): another
//! program deleting the shared address from the holder, or adding a copy on a standby.
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use ha_lab::{AgentSet, AgentSettings, Lab, PREFIX, Prober, VIP};

use crate::support::{AGENT, WAIT, shared_cpu};

fn vip_arg() -> String {
    format!("{VIP}/{PREFIX}")
}

#[test]
fn an_address_deleted_by_another_program_is_restored_and_a_stray_copy_removed() {
    let _cpu = shared_cpu();
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    let lab = Lab::new(2).expect("lab");
    let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("node 1 holds");
    lab.client().ping(IpAddr::V4(VIP), Duration::from_secs(1)).expect("VIP answers");

    let prober = Prober::start(lab.client(), IpAddr::V4(VIP), Duration::from_millis(1)).expect("prober");
    std::thread::sleep(Duration::from_millis(50));
    let deleted = Instant::now();
    lab.node(1).ip(&["addr", "del", &vip_arg(), "dev", "eth0"]).expect("ip addr del");
    agents.wait_sole_holder(1, WAIT).expect("restored on node 1");
    let restored_after = deleted.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let report = prober.stop();
    eprintln!(
        "client outage {:?}, {} of {} probes lost (restore seen by polling `ip` after {restored_after:?})",
        report.longest_outage, report.lost, report.sent
    );
    // Alone it loses 1-2 probes; under the whole suite on 2 cores the guard's thread was once
    // 23 ms late. Without the guard nothing puts the address back, and the wait above fails.
    assert!(report.lost <= 50, "the client barely notices: {report:?}\n{}", agents.diagnostics());
    assert!(agents.output(1).contains("removed from eth0 by another program"), "{}", agents.output(1));

    // A copy appearing on the standby is removed.
    lab.node(2).ip(&["addr", "add", &vip_arg(), "dev", "eth0"]).expect("ip addr add");
    agents.wait_sole_holder(1, WAIT).expect("the stray copy on node 2 is removed");
    // The guard removes the copy, then says so: the line may come a moment after.
    let said = Instant::now();
    while !agents.output(2).contains("appeared on eth0 while this node does not hold it") {
        assert!(said.elapsed() < WAIT, "{}", agents.output(2));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_second_cluster_with_the_same_id_but_another_key_is_reported_not_mixed() {
    let _cpu = shared_cpu();
    use ha_lab::{LabAuth, write_key_file};
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    let lab = Lab::new(3).expect("lab");
    let keys = tempfile::tempdir().expect("tempdir");
    let (ours, theirs) = (keys.path().join("ours"), keys.path().join("theirs"));
    write_key_file(&ours, &[(1, ha_lab::LAB_KEY)]).expect("key");
    write_key_file(&theirs, &[(1, core::array::from_fn(|i| 0x30 + i as u8))]).expect("key");
    let mut settings = AgentSettings::new(&[200, 100, 300]);
    settings.auth = LabAuth::Manual;
    for i in 1..=2 {
        settings.node(i).args = vec!["--key-file".into(), ours.display().to_string()];
    }
    // The other cluster: same id (and, misconfigured, the same address), its own key, and more
    // worthy: without the key it can neither preempt ours nor be mistaken for one of ours.
    settings.node(3).args = vec!["--key-file".into(), theirs.display().to_string()];
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents
        .wait_for("node 1 holds for our cluster", WAIT, |h| h.contains(&1) && !h.contains(&2))
        .expect("node 1 does not yield to the more worthy stranger");
    let start = Instant::now();
    while !agents.output(1).contains("failed authentication") {
        assert!(start.elapsed() < WAIT, "no warning on node 1:\n{}", agents.diagnostics());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = ha_agent::rx::peers::PeerMaps::open_pinned(&lab.pin_dir(1)).expect("maps").stats().expect("stats");
    assert!(stats.bad_auth > 0, "{stats:?}");
    let holders = agents.holders().expect("holders");
    assert!(holders.contains(&1) && !holders.contains(&2), "not mixed: {holders:?}");
}
