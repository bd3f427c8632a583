//! An agent that cannot run must leave the system as it found it, and one shared address has
//! one agent: a refused start changes no address, attaches no XDP and pins nothing; a copy of
//! the address that no running agent holds (keepalived killed) is adopted; a clean stop leaves
//! no lock file behind.
use std::{
    net::TcpListener,
    os::unix::fs::MetadataExt,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use ha_lab::{AgentSet, AgentSettings, Host, PREFIX, VIP};

use crate::support::{AGENT, WAIT, bounded, lab, shared_cpu, vip};

/// Runs `ha-agent` with `args` in `host`'s namespace to its end (a refused start is quick).
fn run_to_end(host: &Host, args: &[String]) -> Output {
    let mut cmd: Command = host.command(AGENT);
    cmd.args(args);
    cmd.output().expect("run ha-agent")
}

/// `args` with the value of `flag` replaced.
fn with(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == flag).expect("flag present") + 1;
    args[at] = value.to_string();
    args
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_second_agent_for_a_held_address_is_refused_and_touches_nothing() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(2);
        let mut agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[200])).expect("agents");
        agents.wait_sole_holder(1, WAIT).expect("node 1 holds");
        let node = lab.node(1);
        // Every address change on the holder's interface while the second agent tries.
        let monitor = node.spawn({
            let mut cmd = node.command("ip");
            cmd.args(["-o", "monitor", "address", "dev", node.iface()]);
            cmd
        });
        let mut monitor = monitor.expect("ip monitor");
        std::thread::sleep(Duration::from_millis(100));

        let other_instance = with(agents.args(1), "--pin-dir", &lab.pin_dir(2).display().to_string());
        let out = run_to_end(node, &other_instance);
        assert!(!out.status.success(), "a second agent for {VIP} must be refused");
        assert!(stderr(&out).contains("already manages"), "{}", stderr(&out));
        let errors = stderr(&out).lines().filter(|l| l.starts_with("ha-agent:")).count();
        assert_eq!(errors, 1, "one error line: {}", stderr(&out));
        let same_instance = run_to_end(node, &agents.args(1));
        assert!(stderr(&same_instance).contains("already uses"), "{}", stderr(&same_instance));

        std::thread::sleep(Duration::from_millis(100));
        monitor.kill().expect("stop ip monitor");
        let changes = monitor.output_so_far();
        assert!(!changes.contains(&VIP.to_string()), "the held address was touched:\n{changes}");
        assert_eq!(agents.holders().expect("holders"), vec![1], "{}", agents.diagnostics());
        assert!(!lab.pin_dir(2).exists(), "the refused agent pinned nothing");
        agents.stop(1, WAIT).expect("clean stop");
    });
}

#[test]
fn a_busy_metrics_port_is_refused_before_xdp_is_attached() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(1);
        let node = lab.node(1);
        let busy: TcpListener = node.run_in(|| TcpListener::bind("127.0.0.1:0")).expect("netns").expect("bind");
        let port = busy.local_addr().expect("addr").port();
        let args = {
            let mut a = vec!["run".to_string(), "--iface".into(), node.iface().into()];
            a.extend(["--vip".into(), format!("{VIP}/{PREFIX}"), "--insecure-no-auth".into()]);
            a.extend(["--pin-dir".into(), lab.pin_dir(1).display().to_string()]);
            a.extend(["--metrics".into(), format!("127.0.0.1:{port}")]);
            a
        };
        let out = run_to_end(node, &args);
        assert!(!out.status.success(), "must be refused: {}", stderr(&out));
        assert!(stderr(&out).contains(&port.to_string()), "names the port: {}", stderr(&out));
        let link = node.ip(&["link", "show", node.iface()]).expect("ip link");
        assert!(!link.contains("xdp"), "XDP attached by a refused agent:\n{link}");
        assert!(!lab.pin_dir(1).exists(), "maps pinned by a refused agent");
        assert!(!node.has_addr(vip()).expect("addr"), "address added by a refused agent");
    });
}

#[test]
fn a_copy_left_by_keepalived_is_adopted_and_a_clean_stop_leaves_no_lock_file() {
    let _cpu = shared_cpu();
    bounded(|| {
        let lab = lab(1);
        let node = lab.node(1);
        // A namespace's inode is reused once it is gone: lock files that agents killed in an
        // earlier lab left under it are not this test's (they never block a start, see
        // `instance`, but would be counted below).
        let netns = std::fs::metadata(node.netns_path()).expect("netns").ino();
        for entry in std::fs::read_dir(Path::new("/run/ha-agent")).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&format!("address-{netns}-")) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        // What a killed keepalived leaves: the address as /32, without our label.
        node.ip(&["addr", "add", &format!("{VIP}/32"), "dev", node.iface()]).expect("ip addr add");
        let mut agents = AgentSet::start(&lab, AGENT, AgentSettings::new(&[100])).expect("agents");
        // The copy already answers to `has_addr`: wait for the agent's own transition instead.
        let started = std::time::Instant::now();
        while !agents.output(1).contains("-> ACTIVE") {
            assert!(started.elapsed() < WAIT, "node 1 never took the address:\n{}", agents.output(1));
            std::thread::sleep(Duration::from_millis(10));
        }
        let addrs = node.ip(&["-o", "addr", "show", "dev", node.iface()]).expect("ip addr");
        assert!(!addrs.contains(&format!("{VIP}/32")), "the leftover copy is gone:\n{addrs}\n{}", agents.output(1));
        assert!(addrs.contains(&format!("{VIP}/{PREFIX}")), "ours is there:\n{addrs}");
        assert!(agents.output(1).contains("not added by ha-agent"), "{}", agents.output(1));

        agents.stop(1, WAIT).expect("clean stop");
        let pin_name = lab.pin_dir(1).to_string_lossy().trim_matches('/').replace('/', "_");
        let left: Vec<String> = std::fs::read_dir(Path::new("/run/ha-agent"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let ours: Vec<&String> =
            left.iter().filter(|f| f.starts_with(&pin_name) || f.starts_with(&format!("address-{netns}-"))).collect();
        assert!(ours.is_empty(), "left after a clean stop: {ours:?}");
    });
}
