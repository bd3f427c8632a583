//! Routed mode beyond one LAN: each node's agent puts the shared address's host route into a
//! kernel table, a BIRD beside it announces that route by eBGP to a router (BIRD too, BFD on),
//! and a client behind the router, on another subnet with no L2 to the nodes, probes the
//! address every millisecond through a clean stop, a preemption, a hard failure and the failed
//! node's return.
use std::{
    net::{IpAddr, Ipv4Addr},
    thread,
    time::Duration,
};

use ha_lab::{
    AgentSet, Lab, ProbeReport, Prober,
    bgp::{BgpSettings, ROUTED_VIP, Speakers},
};

use crate::support::{AGENT, WAIT, bounded, shared_cpu};

const PROBE: Duration = Duration::from_millis(1);
/// BGP sessions start after BIRD's connect delay (1 s in the lab) and come back after an error
/// within its error wait (1-2 s).
const SESSION_WAIT: Duration = Duration::from_secs(15);

fn addr(lab: &Lab, i: usize) -> Option<Ipv4Addr> {
    Some(lab.node(i).addr())
}

fn report(what: &str, r: &ProbeReport) {
    eprintln!("routed {what}: {r}");
}

#[test]
fn routed_mode_moves_the_host_route_make_before_break_and_on_hard_failure() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = ha_lab::install_signal_cleanup().and_then(|()| Lab::with_router(2)).expect("routed lab");
        let mut speakers = Speakers::start(&lab, 2, BgpSettings::default()).expect("speakers");
        speakers.wait_established(&[1, 2], SESSION_WAIT).expect("sessions");
        let settings = speakers.agent_settings(&[200, 100]).expect("settings");
        let mut agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
        let vip = IpAddr::V4(ROUTED_VIP);
        let remote = lab.remote_client().expect("remote client");
        let logs =
            |agents: &AgentSet, speakers: &Speakers| format!("{}\n{}", agents.diagnostics(), speakers.diagnostics());

        agents.wait_sole_holder_of(vip, 1, SESSION_WAIT).expect("most worthy holds");
        assert!(!agents.output(1).contains("XDP also on"), "no ARP fence on --vip-iface:\n{}", agents.output(1));
        speakers.wait_next_hop(ROUTED_VIP, addr(&lab, 1), WAIT).expect("the router routes to node 1");
        remote.ping(vip, Duration::from_secs(2)).expect("the remote client reaches the holder");
        assert!(
            remote.neigh_mac(vip).expect("neighbour table").is_none(),
            "the remote client must reach the address by route, not by ARP"
        );

        // Clean stop: node 2 announces before node 1 withdraws, and node 1 still answers
        // while the router moves over.
        let prober = Prober::start(remote, vip, PROBE).expect("prober");
        thread::sleep(Duration::from_millis(100));
        agents.stop(1, WAIT).expect("clean stop");
        speakers.wait_next_hop(ROUTED_VIP, addr(&lab, 2), WAIT).expect("the router routes to node 2");
        thread::sleep(Duration::from_millis(100));
        let r = prober.stop();
        report("clean stop", &r);
        assert!(r.lost <= 2, "clean stop is make-before-break: {r:?}\n{}", logs(&agents, &speakers));

        // Preemption: node 1 returns and takes the address back, make-before-break.
        let prober = Prober::start(remote, vip, PROBE).expect("prober");
        agents.start_node(1).expect("node 1 returns");
        speakers.wait_next_hop(ROUTED_VIP, addr(&lab, 1), WAIT).expect("the router routes to node 1 again");
        agents.wait_sole_holder_of(vip, 1, WAIT).expect("node 2 lets go after the grace");
        thread::sleep(Duration::from_millis(100));
        let r = prober.stop();
        report("preemption", &r);
        assert!(r.lost <= 2, "preemption is make-before-break: {r:?}\n{}", logs(&agents, &speakers));

        // Hard failure: node 1's cable is pulled. BFD takes its route off the router and node 2
        // takes over after the tolerance.
        let prober = Prober::start(remote, vip, PROBE).expect("prober");
        thread::sleep(Duration::from_millis(100));
        lab.cut_link(1).expect("cut node 1");
        speakers.wait_next_hop(ROUTED_VIP, addr(&lab, 2), WAIT).expect("the router routes to node 2");
        thread::sleep(Duration::from_millis(200));
        let r = prober.stop();
        report("hard failure", &r);
        assert!(r.lost > 0, "a pulled cable loses some probes: {r:?}");
        assert!(
            r.longest_outage < Duration::from_secs(1),
            "BFD should end the outage well before BGP's 3 s hold time: {r:?}\n{}",
            logs(&agents, &speakers)
        );
        assert!(r.answered > 200, "the client is served again after the takeover: {r:?}");

        // Node 1 returns: its priority stays 0 until its session is back, then it takes over
        // make-before-break.
        let prober = Prober::start(remote, vip, PROBE).expect("prober");
        lab.restore_link(1).expect("restore node 1");
        speakers.wait_established(&[1], SESSION_WAIT).expect("node 1's session is back");
        speakers.wait_next_hop(ROUTED_VIP, addr(&lab, 1), WAIT).expect("node 1 holds again");
        agents.wait_sole_holder_of(vip, 1, WAIT).expect("node 2 lets go");
        thread::sleep(Duration::from_millis(100));
        let r = prober.stop();
        report("return after hard failure", &r);
        assert!(r.lost <= 2, "the returning node waits for its session: {r:?}\n{}", logs(&agents, &speakers));
    });
}

#[test]
fn a_killed_agents_route_stays_announced_until_cleanup_removes_it() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = ha_lab::install_signal_cleanup().and_then(|()| Lab::with_router(1)).expect("routed lab");
        let mut speakers = Speakers::start(&lab, 1, BgpSettings::default()).expect("speakers");
        speakers.wait_established(&[1], SESSION_WAIT).expect("session");
        let mut agents =
            AgentSet::start(&lab, AGENT, speakers.agent_settings(&[100]).expect("settings")).expect("agent");
        let vip = IpAddr::V4(ROUTED_VIP);
        agents.wait_sole_holder_of(vip, 1, SESSION_WAIT).expect("node 1 holds");
        speakers.wait_next_hop(ROUTED_VIP, addr(&lab, 1), WAIT).expect("the router routes to node 1");

        agents.kill(1).expect("SIGKILL the agent");
        thread::sleep(Duration::from_millis(300));
        assert_eq!(speakers.next_hop(ROUTED_VIP).expect("route"), addr(&lab, 1), "nobody removed the route");

        // What systemd's ExecStopPost= runs, with the config the agent would have run with.
        let config = lab.scratch_dir().join("routed.toml");
        let text = format!(
            "mode = \"routed\"\nroute-table = {}\nvip = [\"{ROUTED_VIP}/32\"]\npin-dir = \"{}\"\n",
            speakers.settings.table,
            lab.pin_dir(1).display()
        );
        std::fs::write(&config, text).expect("config file");
        let mut cmd = lab.node(1).command(AGENT);
        cmd.args(["cleanup", "--config"]).arg(&config);
        let out = cmd.output().expect("run ha-agent cleanup");
        assert!(out.status.success(), "cleanup: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("1 shared address copies removed"), "{out:?}");
        speakers.wait_next_hop(ROUTED_VIP, None, WAIT).expect("the route is withdrawn");
        assert!(!lab.node(1).has_addr(vip).expect("addresses"), "the address is gone from lo");
    });
}
