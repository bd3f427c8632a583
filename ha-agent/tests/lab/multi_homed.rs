//! A shared address on another interface than the heartbeats' (`--vip ADDR/PREFIX@IFACE`), in
//! a subnet no node has: added, announced and fenced on that interface, moved with the others.
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    thread,
    time::{Duration, Instant},
};

use ha_lab::{AgentSet, AgentSettings, ArpWatcher, PREFIX, VIP};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu, wait_neighbour};

/// TEST-NET-3: no node has an address in it; the client reaches it by a route.
const ROUTED_VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const PING: Duration = Duration::from_secs(3);

#[test]
fn an_address_on_a_second_interface_in_another_subnet_moves_with_the_others_and_is_fenced_there() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = lab(2);
        let lan = lab.add_lan("eth1", "10.9.0", true).expect("second LAN");
        let client = lan.client().expect("the client is on the second LAN");
        client.ip(&["route", "add", &format!("{ROUTED_VIP}/32"), "dev", "eth1"]).expect("client's route");
        let routed = IpAddr::V4(ROUTED_VIP);
        let mut settings = AgentSettings::new(&[200, 100]);
        settings.vips = vec![format!("{VIP}/{PREFIX}"), format!("{ROUTED_VIP}/32@eth1")];
        let tolerance = settings.tolerance;
        let mut agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
        agents.wait_sole_holder_of(routed, 1, WAIT).expect("node 1 holds the routed address");
        agents.wait_sole_holder(1, WAIT).expect("and the one on eth0");
        for i in 1..=2 {
            let link = lab.node(i).ip(&["link", "show", "eth1"]).expect("ip link");
            assert!(link.contains("xdp"), "node {i}: no XDP on eth1, the fence would not cover it: {link}");
            assert!(agents.output(i).contains("XDP also on eth1"), "node {i}:\n{}", agents.output(i));
        }
        let on_eth1 = lab.node(1).ip(&["-o", "addr", "show", "dev", "eth1"]).expect("addresses");
        assert!(on_eth1.contains(&format!("{ROUTED_VIP}/32")), "not on eth1: {on_eth1}");
        let logs = || agents.diagnostics();
        client.ping(routed, PING).expect("the routed address answers");
        wait_neighbour(client, routed, lan.node(1).mac(), &logs);

        // Node 1's heartbeat link fails: both addresses move; the client on eth1's LAN follows.
        lab.cut_link(1).expect("cut node 1's eth0");
        agents.wait_sole_holder_of(routed, 2, WAIT).expect("node 2 takes the routed address");
        agents.wait_sole_holder(2, WAIT).expect("and the one on eth0");
        wait_neighbour(client, routed, lan.node(2).mac(), &logs);
        client.ping(routed, PING).expect("the routed address answers from node 2");
        lab.restore_link(1).expect("restore");
        agents.wait_sole_holder_of(routed, 1, WAIT).expect("back to node 1");
        wait_neighbour(client, routed, lan.node(1).mac(), &logs);

        // The holder's agent dies: its copy stays on eth1, and its XDP there stops ARP answers.
        let (old, new) = (lan.node(1).mac(), lan.node(2).mac());
        let watch = ArpWatcher::start(client, ROUTED_VIP, Duration::from_millis(1), Duration::from_secs(30))
            .expect("ARP watch");
        thread::sleep(Duration::from_millis(100));
        let killed = Instant::now();
        agents.kill(1).expect("SIGKILL node 1's agent");
        agents
            .wait_for_addr(routed, "node 2 takes over", WAIT, |h| h.contains(&2))
            .expect("node 2 takes the routed address");
        thread::sleep(tolerance * 3);
        let answers = watch.answers_since(killed - Duration::from_millis(50));
        watch.stop().expect("ARP watch");
        assert!(lab.node(1).has_addr(routed).expect("addresses"), "the dead agent's copy stays: the fence must act");
        let last_old = answers.iter().rev().find(|a| a.1 == old).expect("node 1 answered before the kill").0;
        let fenced_after = last_old.saturating_duration_since(killed);
        eprintln!("SIGKILL -> node 1 last answered ARP on eth1 {:.1} ms later", fenced_after.as_secs_f64() * 1e3);
        let slack = Duration::from_millis(25);
        assert!(fenced_after <= tolerance + slack, "node 1 answered ARP on eth1 {fenced_after:?} after its death");
        let settled = killed + tolerance + slack * 2;
        let after: BTreeSet<[u8; 6]> = answers.iter().filter(|a| a.0 >= settled).map(|a| a.1).collect();
        assert_eq!(
            after.into_iter().collect::<Vec<_>>(),
            vec![new],
            "only node 2 answers on eth1\n{}",
            agents.diagnostics()
        );

        // What the dead agent left, on both interfaces, goes with `ha-agent cleanup`.
        let mut cleanup = lab.node(1).command(AGENT);
        cleanup.args(["cleanup", "--iface", "eth0", "--vip", &format!("{VIP}/{PREFIX}")]);
        cleanup.args(["--vip", &format!("{ROUTED_VIP}/32@eth1"), "--pin-dir"]).arg(lab.pin_dir(1));
        let out = cleanup.output().expect("ha-agent cleanup");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && said.contains("2 shared address copies removed, XDP detached"), "{said}");
        assert!(!lab.node(1).has_addr(routed).expect("addresses"), "the copy on eth1 is gone");
        for dev in ["eth0", "eth1"] {
            let link = lab.node(1).ip(&["link", "show", dev]).expect("ip link");
            assert!(!link.contains("xdp"), "XDP still on {dev}: {link}");
        }
    });
}

#[test]
fn an_address_on_a_missing_interface_is_refused_before_anything_changes() {
    let _cpu = shared_cpu();
    let lab = lab(1);
    let mut cmd = lab.node(1).command(AGENT);
    cmd.args(["run", "--iface", "eth0", "--vip", &format!("{ROUTED_VIP}/32@eth7"), "--insecure-no-auth"]);
    cmd.arg("--pin-dir").arg(lab.pin_dir(1));
    let out = cmd.output().expect("run ha-agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines, ["ha-agent: --vip 203.0.113.10/32@eth7: no interface named eth7 (check `ip link`)"]);
    assert!(!lab.pin_dir(1).exists(), "nothing pinned");
    assert!(!lab.node(1).ip(&["link", "show", "eth0"]).expect("ip link").contains("xdp"), "nothing attached");
}
