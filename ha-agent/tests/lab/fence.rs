//! The kernel-side fence: a holder whose agent dies (SIGKILL) stops answering ARP for the shared
//! address within a tolerance (or, while its kernel answers heartbeats for it, once those
//! answers end: within the heartbeat horizon), although the address stays on its interface; its
//! pinned XDP program is what refuses. The next start replaces that program, and `ha-agent cleanup`
//! (systemd's ExecStopPost=) removes what the dead agent left.
use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use ha_lab::{AgentSet, AgentSettings, ArpWatcher, VIP};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu, vip};

/// ARP requests for the address, one per millisecond, as a busy client's would be.
const ARP_EVERY: Duration = Duration::from_millis(1);

fn xdp_attached(lab: &ha_lab::Lab, i: usize) -> bool {
    lab.node(i).ip(&["link", "show", "eth0"]).expect("ip link").contains("xdp")
}

#[test]
fn a_killed_holders_node_stops_answering_arp_within_a_tolerance() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = lab(2);
        let settings = AgentSettings::new(&[200, 100]);
        let (tolerance, settings_interval) = (settings.tolerance, settings.interval);
        let mut agents = AgentSet::start(&lab, AGENT, settings).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
        let (old, new) = (lab.node(1).mac(), lab.node(2).mac());

        let watch = ArpWatcher::start(lab.client(), VIP, ARP_EVERY, Duration::from_secs(30)).expect("ARP watch");
        thread::sleep(Duration::from_millis(100));
        let killed = Instant::now();
        agents.kill(1).expect("SIGKILL node 1's agent");
        agents.wait_for("node 2 takes over", WAIT, |h| h.contains(&2)).expect("takeover");
        thread::sleep(tolerance * 3);
        let answers = watch.answers_since(killed - Duration::from_millis(50));
        let requests_window = killed.elapsed();
        watch.stop().expect("ARP watch");

        assert!(lab.node(1).has_addr(vip()).expect("addresses"), "the dead agent's copy stays: the fence must act");
        let last_old = answers.iter().rev().find(|a| a.1 == old).expect("node 1 answered before the kill").0;
        let first_new =
            answers.iter().find(|a| a.0 >= killed && a.1 == new).expect("node 2 answers after the takeover").0;
        let single = last_old.max(first_new).saturating_duration_since(killed);
        eprintln!(
            "SIGKILL -> single ARP answerer: {:.1} ms (node 1 last answered {:.1} ms after the kill, node 2 first {:.1} ms; tolerance {} ms; {} answers in {:.0} ms)",
            single.as_secs_f64() * 1e3,
            last_old.saturating_duration_since(killed).as_secs_f64() * 1e3,
            first_new.saturating_duration_since(killed).as_secs_f64() * 1e3,
            tolerance.as_millis(),
            answers.len(),
            requests_window.as_secs_f64() * 1e3,
        );
        let slack = Duration::from_millis(25);
        // At rest the holder's kernel answers for it, up to a horizon after its last renewal;
        // its fence waits for that, and its peer hears it until then.
        let horizon = ha_core::failover::heartbeat_horizon(settings_interval);
        assert!(
            last_old.saturating_duration_since(killed) <= tolerance.max(horizon) + slack,
            "node 1's kernel answered ARP {:?} after its agent died (tolerance {tolerance:?})\n{}",
            last_old.saturating_duration_since(killed),
            agents.diagnostics()
        );
        assert!(single <= tolerance + horizon + slack * 2, "one answerer after {single:?}\n{}", agents.diagnostics());
        let settled = killed + tolerance + horizon + slack * 2;
        let after: std::collections::BTreeSet<[u8; 6]> =
            answers.iter().filter(|a| a.0 >= settled).map(|a| a.1).collect();
        assert_eq!(after.into_iter().collect::<Vec<_>>(), vec![new], "only node 2 answers");

        // Restarted, node 1 replaces the dead agent's program and takes the address back.
        agents.start_node(1).expect("restart node 1");
        agents.wait_sole_holder(1, WAIT).expect("node 1 holds again");
        lab.client().ping(vip(), Duration::from_secs(1)).expect("the address answers from node 1");
        assert!(agents.output(1).contains("detached the XDP program a crashed agent left"), "{}", agents.output(1));
    });
}

#[test]
fn cleanup_removes_what_a_killed_agent_left_and_nothing_while_an_agent_runs() {
    bounded(|| {
        let _cpu = shared_cpu();
        let lab = lab(2);
        let mut agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200, 100])).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("most worthy holds");
        let cleanup = |i: usize| {
            let mut cmd = lab.node(i).command(AGENT);
            cmd.args(["cleanup", "--iface", "eth0", "--vip", &format!("{VIP}/24"), "--pin-dir"]);
            cmd.arg(lab.pin_dir(i));
            let out = cmd.output().expect("run ha-agent cleanup");
            assert!(out.status.success(), "cleanup: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stderr).into_owned()
        };

        let said = cleanup(1);
        assert!(said.contains("nothing to clean up"), "{said}");
        assert!(lab.node(1).has_addr(vip()).expect("addresses"), "a running agent's address stays");
        assert!(lab.pin_dir(1).exists() && xdp_attached(&lab, 1), "a running agent's XDP stays");
        agents.wait_sole_holder(1, Duration::from_millis(300)).expect("node 1 still the sole holder");

        agents.kill(1).expect("SIGKILL node 1's agent");
        assert!(xdp_attached(&lab, 1), "the pinned program outlives its agent");
        let said = cleanup(1);
        assert!(said.contains("1 shared address copies removed, XDP detached"), "{said}");
        assert!(!lab.node(1).has_addr(vip()).expect("addresses"), "the dead agent's copy is gone");
        assert!(!xdp_attached(&lab, 1), "its XDP program is detached");
        assert!(!lab.pin_dir(1).exists(), "its pins are gone");
        let said = cleanup(1);
        assert!(said.contains("0 shared address copies removed, XDP was not attached"), "idempotent: {said}");
    });
}

#[test]
fn the_systemd_unit_cleans_up_after_every_exit_with_the_same_config() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/ha-agent.service")).expect("unit");
    let value = |key: &str| {
        unit.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in the unit")).to_string()
    };
    let start = value("ExecStart=");
    let post = value("ExecStopPost=");
    assert_eq!(post, start.replacen(" run ", " cleanup ", 1), "cleanup reads the config the agent ran with");
    // The command line parses as given.
    let args: Vec<&str> = post.split_whitespace().skip(1).collect();
    let out = Command::new(AGENT).args(&args).arg("--help").output().expect("ha-agent cleanup --help");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
