//! Application-steered worthiness: `ha-agent priority set|reset`, `drain`/`undrain`, and the
//! example service that embeds the agent and serves only while its node holds the address.
use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, TcpStream},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use ha_lab::{AgentSet, AgentSettings, Lab, Prober, VIP};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu, status_json};

const SERVE_PORT: u16 = 8080;

/// Runs `change` on node `node`'s agent while the client probes the address every 1 ms, waits
/// until node `successor` alone holds it, and returns the probes lost.
fn lost_during(lab: &Lab, agents: &AgentSet, node: usize, change: &[&str], successor: usize) -> u64 {
    let prober = Prober::start(lab.client(), IpAddr::V4(VIP), Duration::from_millis(1)).expect("prober");
    thread::sleep(Duration::from_millis(50));
    agents.control(node, change).unwrap_or_else(|e| panic!("{change:?}: {e:#}"));
    agents
        .wait_sole_holder(successor, WAIT)
        .unwrap_or_else(|e| panic!("after {change:?}: {e:#}\n{}", agents.diagnostics()));
    thread::sleep(Duration::from_millis(200));
    prober.stop().lost
}

#[test]
fn priority_set_reset_drain_and_undrain_move_the_address_make_before_break() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("node 1 holds");

        let lost = lost_during(&lab, &agents, 2, &["priority", "set", "300"], 2);
        assert_eq!(lost, 0, "a raised priority preempts make-before-break\n{}", agents.diagnostics());
        let status = status_json(&lab, 2);
        assert_eq!((status["priority"].as_u64(), status["priority_set"].as_u64()), (Some(300), Some(300)), "{status}");

        let lost = lost_during(&lab, &agents, 2, &["priority", "reset"], 1);
        assert_eq!(lost, 0, "back to the configured 100: node 1 preempts\n{}", agents.diagnostics());
        assert_eq!(status_json(&lab, 2)["priority_set"], serde_json::Value::Null);

        let lost = lost_during(&lab, &agents, 1, &["drain"], 2);
        assert_eq!(lost, 0, "drain hands over make-before-break\n{}", agents.diagnostics());
        assert_eq!(status_json(&lab, 1)["maintenance"], true);
        let lost = lost_during(&lab, &agents, 1, &["undrain"], 1);
        assert_eq!(lost, 0, "undrain: node 1 preempts again\n{}", agents.diagnostics());

        // Bad input: one line, and nothing changes.
        let err = agents.control(2, &["priority", "set", "high"]).expect_err("not a number");
        let text = format!("{err:#}");
        assert!(text.contains("\"high\" is not a whole number"), "{text}");
        let socket = ha_agent::ops::control::socket_path(&lab.pin_dir(2));
        let reply = ha_agent::ops::control::request(&socket, "priority set -1").expect("reply");
        assert!(reply.starts_with("error: priority must be a whole number"), "{reply}");
        thread::sleep(Duration::from_millis(100));
        assert_eq!(agents.holders().expect("holders"), vec![1]);
        assert_eq!(status_json(&lab, 2)["priority"].as_u64(), Some(100));
    });
}

/// The example beside the test binary: `cargo build --all-targets` (as `cargo xtask test` does)
/// builds it.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let debug = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = debug.join("examples").join(name);
    assert!(path.exists(), "{} is missing: run `cargo build -p ha-agent --examples`", path.display());
    path
}

/// Who answers on the shared address's service port, from the client.
fn served_by(lab: &Lab) -> Option<String> {
    lab.client()
        .run_in(|| {
            let addr = SocketAddr::new(IpAddr::V4(VIP), SERVE_PORT);
            let conn = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
            conn.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
            let mut line = String::new();
            BufReader::new(conn).read_line(&mut line).ok()?;
            Some(line.trim().to_string())
        })
        .expect("client namespace")
}

fn wait_served_by(lab: &Lab, agents: &AgentSet, want: &str) {
    let start = Instant::now();
    loop {
        let got = served_by(lab);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(start.elapsed() < WAIT, "served by {got:?}, want {want:?}\n{}", agents.diagnostics());
        thread::sleep(Duration::from_millis(20));
    }
}

/// `ha-agent drain|undrain` for the agent inside node i's service.
fn steer(lab: &Lab, i: usize, command: &str) {
    let out = std::process::Command::new(AGENT)
        .args([command, "--pin-dir"])
        .arg(lab.pin_dir(i))
        .output()
        .expect("run ha-agent");
    assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Whether anything on node `i` listens on the service port.
fn listens(lab: &Lab, i: usize) -> bool {
    let out = lab.node(i).exec("ss", &["-Hltn", &format!("sport = :{SERVE_PORT}")]).expect("ss");
    !out.trim().is_empty()
}

fn wait_not_listening(lab: &Lab, agents: &AgentSet, i: usize) {
    let start = Instant::now();
    while listens(lab, i) {
        assert!(start.elapsed() < WAIT, "node {i} still listens\n{}", agents.diagnostics());
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_example_service_serves_only_while_its_node_holds_the_address() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let mut settings = AgentSettings::new(&[200, 100]);
        settings.extra_args = vec!["--serve-port".into(), SERVE_PORT.to_string()];
        let mut services = AgentSet::start(&lab, example("serve_while_active"), settings).expect("services");
        services.wait_sole_holder(1, WAIT).expect("node 1 holds");
        wait_served_by(&lab, &services, "served by 192.0.2.1");
        assert!(!listens(&lab, 2), "the standby does not serve");

        // Steered from outside, as an operator or another process would.
        steer(&lab, 1, "drain");
        services.wait_sole_holder(2, WAIT).expect("node 2 holds");
        wait_served_by(&lab, &services, "served by 192.0.2.2");
        wait_not_listening(&lab, &services, 1);

        steer(&lab, 1, "undrain");
        services.wait_sole_holder(1, WAIT).expect("node 1 holds again");
        wait_served_by(&lab, &services, "served by 192.0.2.1");
        wait_not_listening(&lab, &services, 2);

        // A clean stop of the service hands the address over, and the successor serves.
        let status = services.stop(1, WAIT).unwrap_or_else(|e| panic!("{e:#}\n{}", services.diagnostics()));
        assert!(status.success(), "{status}\n{}", services.diagnostics());
        wait_served_by(&lab, &services, "served by 192.0.2.2");
    });
}
