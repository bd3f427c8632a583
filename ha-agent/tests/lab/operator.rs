//! What operators do to a running agent: read its status, put it in maintenance (the address
//! moves make-before-break and stays away, even across a restart), follow its transitions.
use std::{path::Path, process::Command, time::Duration};

use ha_lab::{AgentSet, AgentSettings, Lab};

use crate::support::{AGENT, WAIT, shared_cpu};

fn agent_cli(args: &[&str], pin_dir: &Path) -> String {
    let out = Command::new(AGENT).args(args).arg("--pin-dir").arg(pin_dir).output().expect("run ha-agent");
    assert!(out.status.success(), "ha-agent {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_maintenance_and_events_through_the_control_socket() {
    let _cpu = shared_cpu();
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    let lab = Lab::new(2).expect("lab");
    let mut agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
    agents.wait_sole_holder(1, WAIT).expect("most worthy holds");

    let text = agent_cli(&["status"], &lab.pin_dir(1));
    assert!(text.contains("ACTIVE") && text.contains("192.0.2.2") && text.contains("priority 200"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&agent_cli(&["status", "--json"], &lab.pin_dir(2))).expect("json");
    assert_eq!(json["state"], "STANDBY");
    assert_eq!(json["peers"][0]["node_id"], "192.0.2.1");

    // Follow node 2's transitions while node 1 goes into maintenance.
    let mut follow = lab.node(2).command(AGENT);
    follow.args(["events", "--pin-dir"]).arg(lab.pin_dir(2));
    let follower = lab.node(2).spawn(follow).expect("events follower");
    std::thread::sleep(Duration::from_millis(100));
    agent_cli(&["maintenance", "on"], &lab.pin_dir(1));
    agents.wait_sole_holder(2, WAIT).expect("maintenance hands the address over");
    let line = wait_for_line(&follower, "\"to\":\"ACTIVE\"");
    assert!(line.contains("holder_maintenance"), "{line}");
    assert!(agent_cli(&["status"], &lab.pin_dir(1)).contains("[maintenance]"));

    // Maintenance survives a restart: node 1 comes back and still stays out.
    agents.stop(1, WAIT).expect("stop node 1");
    agents.start_node(1).expect("restart node 1");
    std::thread::sleep(agents.settings.tolerance * 4);
    assert_eq!(agents.holders().expect("holders"), vec![2], "{}", agents.diagnostics());
    agent_cli(&["maintenance", "off"], &lab.pin_dir(1));
    agents.wait_sole_holder(1, WAIT).expect("out of maintenance, the most worthy takes it back");
}

fn wait_for_line(child: &ha_lab::Child, needle: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        if let Some(line) = child.output_so_far().lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(start.elapsed() < WAIT, "no event with {needle}: {}", child.output_so_far());
        std::thread::sleep(Duration::from_millis(10));
    }
}
