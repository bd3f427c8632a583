//! The receive path without eBPF (`--rx socket`): a whole cluster on it, a mixed cluster, and
//! `auto` falling back to it when the kernel refuses XDP.
use std::net::IpAddr;

use ha_lab::{AgentSet, AgentSettings, VIP};

use crate::support::{AGENT, WAIT, lab, only_caps, shared_cpu, status_json, wait_neighbour, wait_started, warnings};

fn rx(mode: &str) -> Vec<String> {
    vec!["--rx".into(), mode.into()]
}

#[test]
fn a_cluster_on_the_socket_path_fails_over() {
    let _cpu = shared_cpu();
    let lab = lab(3);
    let mut settings = AgentSettings::new(&[300, 200, 100]);
    settings.extra_args = rx("socket");
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds, alone");
    for i in 1..=3 {
        assert!(agents.output(i).contains("(UDP socket, no eBPF"), "node {i}:\n{}", agents.output(i));
    }
    assert!(!lab.pin_dir(1).join("PEERS").exists(), "no maps on the socket path");
    let status = status_json(&lab, 2);
    assert_eq!(status["peers"].as_array().map(Vec::len), Some(2), "{status}");
    assert!(status["heartbeats_recorded"].as_u64() > Some(0), "{status}");

    let vip = IpAddr::V4(VIP);
    let logs = || agents.diagnostics();
    lab.client().ping(vip, WAIT).expect("VIP answers");
    lab.cut_link(1).expect("cut node 1");
    agents.wait_sole_holder(2, WAIT).expect("the next most worthy takes over");
    wait_neighbour(lab.client(), vip, lab.node(2).mac(), &logs);
    lab.restore_link(1).expect("restore");
    agents.wait_sole_holder(1, WAIT).expect("node 1 takes it back");
    wait_neighbour(lab.client(), vip, lab.node(1).mac(), &logs);
}

#[test]
fn xdp_and_socket_nodes_fail_over_to_each_other() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let mut settings = AgentSettings::new(&[200, 100]);
    settings.node(1).args = rx("xdp");
    settings.node(2).args = rx("socket");
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("the XDP node holds");
    assert!(agents.output(1).contains("(XDP "), "{}", agents.output(1));
    assert!(agents.output(2).contains("(UDP socket"), "{}", agents.output(2));
    lab.cut_link(1).expect("cut node 1");
    agents.wait_sole_holder(2, WAIT).expect("the socket node takes over");
    // Back: node 1 hears node 2 holding through XDP, node 2 hears node 1 through its socket.
    lab.restore_link(1).expect("restore");
    agents.wait_sole_holder(1, WAIT).expect("hand-over between the two receive paths");
}

#[test]
fn auto_falls_back_to_the_socket_with_one_warning_when_xdp_is_refused() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let mut settings = AgentSettings::new(&[100, 200]);
    // No CAP_BPF or CAP_PERFMON: the kernel refuses to load the XDP program.
    settings.node(2).prefix = only_caps(&["net_admin", "net_raw"]);
    let mut agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    agents.wait_sole_holder(2, WAIT).expect("the node without eBPF holds");
    let out = agents.output(2);
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "exactly one warning line:\n{out}");
    assert!(warned[0].contains("XDP unavailable") && warned[0].contains("UDP socket"), "{out}");
    assert!(out.contains("(UDP socket, no eBPF"), "{out}");
    wait_started(&lab, 1);
    assert!(agents.output(1).contains("(XDP "), "node 1 keeps XDP:\n{}", agents.output(1));
    agents.kill(2).expect("crash node 2");
    // A crashed agent cannot remove its copy; the restarted one does.
    agents.wait_for("node 1 takes over", WAIT, |h| h.contains(&1)).expect("takeover");
    agents.start_node(2).expect("restart node 2");
    agents.wait_sole_holder(2, WAIT).expect("node 2 cleans up, then takes it back");
}

/// Datagrams the kernel drops for a full socket buffer show in status and metrics: the agent is
/// stopped while a burst arrives, so its buffer must overflow.
#[test]
fn datagrams_dropped_by_the_kernel_are_counted() {
    let _cpu = shared_cpu();
    let lab = lab(1);
    let mut settings = AgentSettings::new(&[100]);
    settings.extra_args = rx("socket");
    let agents = AgentSet::start(&lab, AGENT, settings).expect("agent");
    agents.wait_sole_holder(1, WAIT).expect("the only node holds");
    assert_eq!(status_json(&lab, 1)["socket_buffer_drops"].as_u64(), Some(0));
    let port = ha_common::DEFAULT_PORT;
    let target = std::net::SocketAddr::from((lab.node(1).addr(), port));
    let burst = |n: usize| {
        lab.client()
            .run_in(|| {
                let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("socket");
                for _ in 0..n {
                    let _ = socket.send_to(&[0u8; 64], target);
                }
            })
            .expect("namespace");
    };
    agents.signal(1, libc::SIGSTOP).expect("stop");
    burst(5_000);
    agents.signal(1, libc::SIGCONT).expect("continue");
    // The kernel tells the count with the next datagram queued after the drops.
    std::thread::sleep(std::time::Duration::from_millis(200));
    burst(1);
    let start = std::time::Instant::now();
    loop {
        let dropped = status_json(&lab, 1)["socket_buffer_drops"].as_u64().unwrap_or(0);
        if dropped > 1_000 {
            break;
        }
        assert!(start.elapsed() < WAIT, "{dropped} counted as dropped:\n{}", agents.output(1));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
