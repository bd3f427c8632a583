//! Topologies operators run: unicast heartbeats where multicast does not pass, an IPv6 shared
//! address, several shared addresses moved together, heartbeats over a sub-interface (VLAN).
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    thread,
    time::Duration,
};

use ha_lab::{AgentSet, AgentSettings, Child, PREFIX, SUB_NET, VIP, VIP6};

use crate::support::{AGENT, WAIT, lab, shared_cpu, wait_neighbour, warnings};

const VIP2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 201);
const PING: Duration = Duration::from_secs(3);

#[test]
fn unicast_peers_fail_over_where_multicast_does_not_pass() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    lab.block_ipv4_multicast().expect("block multicast");
    // Control: with multicast heartbeats the nodes cannot hear each other, so both hold.
    {
        let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
        agents.wait_for("both hold: multicast is blocked", WAIT, |h| h == [1, 2]).expect("split");
    }
    // The same --peer list on both nodes: each skips its own address.
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.extra_args = ["--peer", "192.0.2.1", "--peer", "192.0.2.2"].map(String::from).to_vec();
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds, alone");
    let vip = IpAddr::V4(VIP);
    lab.client().ping(vip, PING).expect("VIP answers");
    let logs = || agents.diagnostics();
    wait_neighbour(lab.client(), vip, lab.node(1).mac(), &logs);

    lab.cut_link(1).expect("cut node 1");
    agents.wait_sole_holder(2, WAIT).expect("node 2 takes over");
    wait_neighbour(lab.client(), vip, lab.node(2).mac(), &logs);
    lab.restore_link(1).expect("restore");
    agents.wait_sole_holder(1, WAIT).expect("node 1 hears node 2 by unicast and takes it back");
    wait_neighbour(lab.client(), vip, lab.node(1).mac(), &logs);
}

#[test]
fn an_ipv6_shared_address_fails_over_by_unsolicited_na_and_is_never_tentative() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let vip6 = IpAddr::V6(VIP6);
    // The lab turns DAD off; on, an address added without nodad would be tentative for a while.
    for node in lab.nodes() {
        node.sysctl("net.ipv6.conf.eth0.accept_dad", "1").expect("DAD on");
    }
    let monitor = address_monitor(&lab, 2);
    // Control: the monitor sees the tentative flag of an address added with DAD.
    lab.node(2).ip(&["addr", "add", "2001:db8::1:2/64", "dev", "eth0"]).expect("control address");

    let mut settings = AgentSettings::new(&[200, 100]);
    settings.vips = vec![format!("{VIP6}/64")];
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder_of(vip6, 1, WAIT).expect("node 1 holds the IPv6 address");
    lab.client().ping(vip6, PING).expect("VIP6 answers");
    let logs = || agents.diagnostics();
    wait_neighbour(lab.client(), vip6, lab.node(1).mac(), &logs);

    // No client traffic from here on: only our unsolicited NA can move the client's entry.
    lab.cut_link(1).expect("cut node 1");
    agents.wait_sole_holder_of(vip6, 2, WAIT).expect("node 2 takes the IPv6 address");
    wait_neighbour(lab.client(), vip6, lab.node(2).mac(), &logs);
    lab.client().ping(vip6, PING).expect("VIP6 answers from node 2");

    let events = monitor.output_so_far();
    let control: Vec<&str> = events.lines().filter(|l| l.contains("2001:db8::1:2/64")).collect();
    assert!(control.iter().any(|l| l.contains("tentative")), "DAD is not active, the check is void: {events}");
    let vip_events: Vec<&str> = events.lines().filter(|l| l.contains("2001:db8::200/64")).collect();
    assert!(!vip_events.is_empty(), "the monitor saw no event for the VIP6: {events}");
    for line in vip_events {
        assert!(!line.contains("tentative") && !line.contains("dadfailed"), "VIP6 was tentative: {line}");
    }
}

#[test]
fn several_shared_addresses_move_together() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let addrs = [IpAddr::V4(VIP), IpAddr::V4(VIP2), IpAddr::V6(VIP6)];
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.vips = vec![format!("{VIP}/{PREFIX}"), format!("{VIP2}/{PREFIX}"), format!("{VIP6}/64")];
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    for addr in addrs {
        agents.wait_sole_holder_of(addr, 1, WAIT).expect("node 1 holds every address");
        lab.client().ping(addr, PING).expect("each address answers");
    }
    let logs = || agents.diagnostics();
    let monitor = address_monitor(&lab, 2);
    thread::sleep(Duration::from_millis(100)); // the monitor is listening

    lab.cut_link(1).expect("cut node 1");
    for addr in addrs {
        agents.wait_sole_holder_of(addr, 2, WAIT).expect("node 2 holds every address");
        wait_neighbour(lab.client(), addr, lab.node(2).mac(), &logs);
    }
    // All three were added in the same takeover: within a few ms by ip's clock (bound generous).
    let added = first_added(&monitor.output_so_far(), &["192.0.2.200/24", "192.0.2.201/24", "2001:db8::200/64"]);
    let times: Vec<f64> = added.values().copied().collect();
    let spread = times.iter().cloned().fold(f64::MIN, f64::max) - times.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 0.25, "addresses added {spread:.3} s apart: {added:?}\n{}", monitor.output_so_far());

    lab.restore_link(1).expect("restore");
    for addr in addrs {
        agents.wait_sole_holder_of(addr, 1, WAIT).expect("every address moves back to node 1");
    }
}

#[test]
fn heartbeats_over_a_sub_interface_fail_over() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    // eth0.100 (VLAN 100) where the kernel has 802.1Q, else a macvlan: both are stacked
    // devices without native XDP, where the agent must pick generic mode itself.
    let sub = lab.add_sub_interfaces(100).expect("sub-interfaces");
    eprintln!("sub-interface: {} ({})", sub.name, sub.kind);
    let vip: IpAddr = format!("{SUB_NET}.200").parse().expect("address");
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.iface = Some(sub.name.clone());
    settings.vips = vec![format!("{vip}/24")];
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder_of(vip, 1, WAIT).expect("node 1 holds the address on the sub-interface");
    for i in 1..=2 {
        let out = agents.output(i);
        assert!(out.contains("has no native XDP: attaching in generic mode"), "node {i}:\n{out}");
        assert!(out.contains("XDP Skb mode"), "node {i}:\n{out}");
        assert!(warnings(&out).is_empty(), "no warning for the expected mode, node {i}:\n{out}");
    }
    let mac = |i: usize| lab.node(i).link_mac(&sub.name).expect("sub-interface MAC");
    lab.client().ping(vip, PING).expect("VIP answers on the sub-interface");
    let logs = || agents.diagnostics();
    wait_neighbour(lab.client(), vip, mac(1), &logs);

    lab.cut_link(1).expect("cut node 1");
    agents.wait_sole_holder_of(vip, 2, WAIT).expect("node 2 takes over");
    wait_neighbour(lab.client(), vip, mac(2), &logs);
    lab.restore_link(1).expect("restore");
    agents.wait_sole_holder_of(vip, 1, WAIT).expect("node 1 takes it back");
}

/// `ip -ts -o monitor address` in node i: every address change, with its flags and a time.
fn address_monitor(lab: &ha_lab::Lab, i: usize) -> Child {
    let mut cmd = lab.node(i).command("ip");
    cmd.args(["-ts", "-o", "monitor", "address"]);
    let child = lab.node(i).spawn(cmd).expect("ip monitor");
    thread::sleep(Duration::from_millis(50)); // subscribed before anything happens
    child
}

/// Seconds of the day at which each address was first added, from `ip -ts monitor` lines like
/// `[2026-11-25T20:15:33.730123] 2: eth0    inet 192.0.2.200/24 ...`.
fn first_added(events: &str, addrs: &[&str]) -> BTreeMap<String, f64> {
    let mut first = BTreeMap::new();
    for line in events.lines().filter(|l| !l.contains("Deleted")) {
        let Some(addr) = addrs.iter().find(|a| line.contains(&format!(" {a} "))) else { continue };
        let Some(time) = line.split(']').next().and_then(|t| t.rsplit('T').next()) else { continue };
        let secs: Vec<f64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
        if let [h, m, s] = secs[..] {
            first.entry(addr.to_string()).or_insert(h * 3600.0 + m * 60.0 + s);
        }
    }
    assert_eq!(first.len(), addrs.len(), "not every address was seen added: {first:?}\n{events}");
    first
}
