//! The agent runs with only the capabilities it needs, not as full root, and says at once,
//! in one line, which it lacks. See the README's "Least privilege".
use std::{thread, time::Duration};

use ha_lab::{AgentSet, AgentSettings};

use crate::support::{AGENT, WAIT, lab, only_caps, shared_cpu, warnings};

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const XDP_CAPS: [&str; 4] = ["bpf", "perfmon", "net_admin", "net_raw"];
const SOCKET_CAPS: [&str; 2] = ["net_admin", "net_raw"];

fn mask(bits: &[u32]) -> u64 {
    bits.iter().map(|b| 1u64 << b).sum()
}

/// CapEff of a running process, once it has exec'd the agent.
fn effective_caps(pid: u32) -> u64 {
    for _ in 0..500 {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "ha-agent" {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff").trim();
            return u64::from_str_radix(hex, 16).expect("hex");
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("process {pid} never became ha-agent");
}

#[test]
fn the_documented_capabilities_suffice_for_each_receive_path() {
    let _cpu = shared_cpu();
    let lab = lab(2);
    let mut settings = AgentSettings::new(&[200, 100]);
    // XDP: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW; no locked-memory allowance either
    // (6.x charges BPF memory to the cgroup). bpffs is mounted already (by the lab).
    let mut xdp = vec!["prlimit".to_string(), "--memlock=0:0".into()];
    xdp.extend(only_caps(&XDP_CAPS));
    settings.node(1).prefix = xdp;
    settings.node(1).args = vec!["--rx".into(), "xdp".into()];
    // Socket: CAP_NET_ADMIN and CAP_NET_RAW.
    settings.node(2).prefix = only_caps(&SOCKET_CAPS);
    settings.node(2).args = vec!["--rx".into(), "socket".into()];
    let mut agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
    let pid = |i| agents.pid(i).expect("running");
    assert_eq!(effective_caps(pid(1)), mask(&[CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW]));
    assert_eq!(effective_caps(pid(2)), mask(&[CAP_NET_ADMIN, CAP_NET_RAW]));

    agents.wait_sole_holder(1, WAIT).expect("the XDP node takes the address");
    for i in 1..=2 {
        assert!(warnings(&agents.output(i)).is_empty(), "node {i}:\n{}", agents.output(i));
    }
    agents.stop(1, WAIT).expect("clean stop of node 1");
    agents.wait_sole_holder(2, WAIT).expect("the socket node takes the address");
    agents.start_node(1).expect("restart node 1");
    agents.wait_sole_holder(1, WAIT).expect("node 1 takes it back");
}

#[test]
fn without_cap_net_admin_the_agent_stops_at_once_with_one_line() {
    let _cpu = shared_cpu();
    let lab = lab(1);
    for (rx, caps, missing) in [
        ("auto", &["bpf", "perfmon", "net_raw"][..], "missing CAP_NET_ADMIN:"),
        ("socket", &["net_raw"][..], "missing CAP_NET_ADMIN:"),
        ("xdp", &["net_admin", "net_raw"][..], "missing CAP_BPF, CAP_PERFMON:"),
    ] {
        let prefix = only_caps(caps);
        let mut cmd = lab.node(1).command(&prefix[0]);
        cmd.args(&prefix[1..]).arg(AGENT);
        cmd.args(["run", "--iface", "eth0", "--vip", "192.0.2.200/24", "--insecure-no-auth", "--rx", rx, "--pin-dir"]);
        cmd.arg(lab.pin_dir(1));
        let mut child = lab.node(1).spawn(cmd).expect("spawn");
        let status = child.wait_timeout(Duration::from_secs(3)).expect("exits at once");
        let out = child.output_so_far();
        assert!(!status.success(), "--rx {rx}: {out}");
        assert_eq!(out.lines().count(), 1, "--rx {rx}: one line:\n{out}");
        assert!(out.starts_with(&format!("ha-agent: {missing}")), "--rx {rx}: {out}");
        assert!(!lab.pin_dir(1).exists(), "--rx {rx}: nothing created before the check");
    }
}
