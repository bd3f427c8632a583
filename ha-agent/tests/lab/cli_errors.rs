//! Operator mistakes get one line saying what is wrong and what to do, a non-zero exit, and
//! leave the system untouched.
use std::process::Command;

use ha_lab::Lab;

use crate::support::AGENT;

/// Runs `ha-agent run ...` in `lab`'s node 1; returns (success, stderr).
fn run_in_node(lab: &Lab, prefix: &[&str], args: &[&str]) -> (bool, String) {
    let mut cmd = lab.node(1).command(prefix.first().copied().unwrap_or(AGENT));
    if !prefix.is_empty() {
        cmd.args(&prefix[1..]).arg(AGENT);
    }
    cmd.arg("run").args(args).arg("--pin-dir").arg(lab.pin_dir(1));
    let out = cmd.output().expect("run ha-agent");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_line_error(ok: bool, stderr: &str, needle: &str) {
    assert!(!ok, "must fail: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains(needle), "{needle:?} in {stderr}");
}

#[test]
fn mistakes_are_one_clear_line_and_touch_nothing() {
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    let lab = Lab::new(1).expect("lab");
    let vip = ["--iface", "eth0", "--vip", "192.0.2.200/24"];

    let (ok, err) = run_in_node(&lab, &[], &[&vip[..], &["--interval", "10ms", "--tolerance", "10ms"]].concat());
    assert_one_line_error(ok, &err, "must exceed --interval");
    let (ok, err) = run_in_node(&lab, &[], &["--iface", "eth9", "--vip", "192.0.2.200/24"]);
    assert_one_line_error(ok, &err, "no interface named eth9");
    let (ok, err) = run_in_node(&lab, &[], &["--iface", "eth0", "--vip", "192.0.2.1/24"]);
    assert_one_line_error(ok, &err, "own address");
    let (ok, err) = run_in_node(&lab, &[], &["--iface", "eth0", "--vip", "192.0.2.200/33"]);
    assert!(!ok && err.contains("192.0.2.200/33"), "{err}");
    // Without privileges (an unprivileged uid with no capabilities).
    let (ok, err) = run_in_node(
        &lab,
        &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"],
        &[&vip[..], &["--insecure-no-auth"]].concat(),
    );
    assert_one_line_error(ok, &err, "missing CAP_");

    assert!(!lab.pin_dir(1).exists(), "nothing pinned");
    assert!(!lab.node(1).has_addr("192.0.2.200".parse().expect("ip")).expect("addr"), "nothing added");
}

#[test]
fn peers_and_status_without_an_agent_say_so() {
    let out = Command::new(AGENT).args(["status", "--pin-dir", "/sys/fs/bpf/halab-none"]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no running agent answers"), "{err}");
    let out = Command::new(AGENT).args(["peers", "--pin-dir", "/sys/fs/bpf/halab-none"]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is an ha-agent running"), "{err}");
}

#[test]
fn key_mistakes_are_one_clear_line_and_touch_nothing() {
    use std::os::unix::fs::PermissionsExt;
    ha_lab::install_signal_cleanup().expect("signal cleanup");
    let lab = Lab::new(1).expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("keys");
    let path = key_file.to_str().expect("utf-8 path");
    let vip = ["--iface", "eth0", "--vip", "192.0.2.200/24"];
    let with = |extra: &[&str]| run_in_node(&lab, &[], &[&vip[..], extra].concat());

    let (ok, err) = with(&[]);
    assert_one_line_error(ok, &err, "heartbeats need a key: pass --key-file PATH");
    let (ok, err) = with(&["--key-file", path, "--insecure-no-auth"]);
    assert_one_line_error(ok, &err, "contradict");
    let (ok, err) = with(&["--key-file", path]);
    assert_one_line_error(ok, &err, "cannot read key file");

    ha_lab::write_key_file(&key_file, &[(1, ha_lab::LAB_KEY)]).expect("key file");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, err) = with(&["--key-file", path]);
    assert_one_line_error(ok, &err, &format!("run `chmod 600 {path}`"));

    std::fs::write(&key_file, "1 not-a-key\n").expect("write");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (ok, err) = with(&["--key-file", path]);
    assert_one_line_error(ok, &err, "line 1: the key of id 1 is not 32 hex digits");

    assert!(!lab.pin_dir(1).exists(), "nothing pinned");
    assert!(!lab.node(1).has_addr("192.0.2.200".parse().expect("ip")).expect("addr"), "nothing added");
}

/// Every bounded option, just outside its bound: refused at parse time, before anything is
/// looked up or touched, in one line naming the flag and the bound.
#[test]
fn out_of_range_values_are_one_line_naming_the_flag() {
    let pin_dir = tempfile::tempdir().expect("tempdir").path().join("never-made");
    let base = ["run", "--iface", "lo", "--vip", "192.0.2.200/24", "--insecure-no-auth"];
    for (flag, value, needle) in [
        ("--tolerance", "18446744073709551615s", "18446744073709551615s is too long: 1h is the maximum"),
        ("--tolerance", "18446744074s", "is too long: 1h is the maximum"),
        ("--port", "0", "0 is out of range: 1 to 65535"),
        ("--check-interval", "0s", "0s is too short: 10ms is the minimum"),
        ("--check-timeout", "0s", "0s is too short: 10ms is the minimum"),
        ("--hook-timeout", "0s", "0s is too short: 10ms is the minimum"),
        ("--interval", "499us", "499us is too short: 500us is the minimum"),
        ("--interval", "61s", "61s is too long: 1m is the maximum"),
        ("--tick", "99us", "99us is too short: 100us is the minimum"),
        ("--max-tolerance", "61m", "61m is too long: 1h is the maximum"),
        ("--hold-down", "61m", "61m is too long: 1h is the maximum"),
        ("--leave-timeout", "601s", "601s is too long: 10m is the maximum"),
        ("--garp-refresh", "25h", "25h is too long: 1day is the maximum"),
        ("--preempt", "delay=25h", "25h is too long: 1day is the maximum"),
        ("--check-fall", "0", "0 is out of range: 1 to 100"),
        ("--check-rise", "101", "101 is out of range: 1 to 100"),
        ("--group", "192.0.2.1", "not a multicast address"),
        ("--peer", "0.0.0.0", "not a unicast address"),
        ("--metrics", "127.0.0.1:0", "port 0"),
    ] {
        let out = Command::new(AGENT)
            .args(base)
            .args([flag, value, "--pin-dir"])
            .arg(&pin_dir)
            .output()
            .expect("run ha-agent");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert_one_line_error(false, &stderr, needle);
        assert!(stderr.starts_with(&format!("ha-agent: invalid value '{value}' for '{flag} ")), "{stderr}");
    }
    assert!(!pin_dir.exists(), "nothing made");
}
