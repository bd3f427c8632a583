//! A configuration change without a restart (issue 15, item 1): `check-config` says whether
//! `run` would start with a file; SIGHUP applies what can change live while the address stays,
//! names what needs a restart, and a bad file changes nothing.
use std::{net::IpAddr, thread, time::Duration};

use ha_lab::{AgentSet, AgentSettings, Prober, VIP};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu};

#[test]
fn check_config_says_whether_run_would_start_and_touches_nothing() {
    let lab = lab(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ha.toml");
    std::fs::write(&file, "iface = \"eth0\"\nvip = [\"192.0.2.200/24\"]\ninsecure-no-auth = true\npriority = 150\n")
        .expect("config");
    let out = lab.node(1).command(AGENT).args(["check-config", "--config"]).arg(&file).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("configuration OK") && stdout.contains("priority 150"), "{stdout}");
    std::fs::write(&file, "iface = \"eth0\"\nvip = [\"192.0.2.200/24\"]\ninsecure-no-auth = true\nport = 0\n")
        .expect("config");
    let out = lab.node(1).command(AGENT).args(["check-config", "--config"]).arg(&file).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(":4:") && stderr.lines().count() == 1, "{stderr}");
    assert!(!lab.node(1).has_addr(IpAddr::V4(VIP)).expect("addr"), "check-config added nothing");
}

#[test]
fn a_reload_that_raises_the_priority_moves_the_address_make_before_break() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ha.toml");
        std::fs::write(&file, "priority = 100\n").expect("config");
        let agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200])).expect("node 1");
        agents.wait_sole_holder(1, WAIT).expect("node 1 holds");
        // Node 2 as node 1 is run, but with its priority from the file only (a flag would win).
        let mut args = agents.args(1);
        let at = args.iter().position(|a| a == "--priority").expect("--priority");
        args.drain(at..at + 2);
        let pin = args.iter().position(|a| a == "--pin-dir").expect("--pin-dir") + 1;
        args[pin] = lab.pin_dir(2).display().to_string();
        args.extend(["--config".into(), file.display().to_string()]);
        let mut cmd = lab.node(2).command(AGENT);
        cmd.args(&args);
        let node2 = lab.node(2).spawn(cmd).expect("node 2");
        let output = || node2.output_so_far();
        let wait_for = |needle: &str| {
            let start = std::time::Instant::now();
            while !output().contains(needle) {
                assert!(start.elapsed() < WAIT, "node 2 never logged {needle:?}:\n{}", output());
                thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for("node 192.0.2.2 priority 100");
        thread::sleep(Duration::from_millis(200));
        assert_eq!(agents.holders().expect("holders"), vec![1]);

        // A bad file: nothing changes, one line says why.
        std::fs::write(&file, "priority = \"high\"\n").expect("config");
        node2.signal(libc::SIGHUP).expect("SIGHUP");
        wait_for("nothing changed");
        assert_eq!(agents.holders().expect("holders"), vec![1]);

        // Priority 300 and a port change: the priority applies live and node 2 preempts,
        // make-before-break; the port is named as needing a restart.
        let prober = Prober::start(lab.client(), IpAddr::V4(VIP), Duration::from_millis(1)).expect("prober");
        thread::sleep(Duration::from_millis(50));
        std::fs::write(&file, "priority = 300\nport = 7300\n").expect("config");
        node2.signal(libc::SIGHUP).expect("SIGHUP");
        let start = std::time::Instant::now();
        let holds = |i: usize| lab.node(i).has_addr(IpAddr::V4(VIP)).expect("addr");
        while holds(1) || !holds(2) {
            assert!(start.elapsed() < WAIT, "node 2 never took the address:\n{}\n{}", agents.diagnostics(), output());
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(200));
        let report = prober.stop();
        assert_eq!(report.lost, 0, "a reload's hand-over is make-before-break: {report:?}\n{}", agents.diagnostics());
        let out = output();
        assert!(out.contains("reload: applied priority 100 -> 300"), "{out}");
        assert!(out.contains("reload: port changed; it needs a restart"), "{out}");
    });
}
