//! `ha-agent run --config FILE` as an operator meets it: a bad file is refused in one line that
//! names the file, the line and what is expected; the shipped example is accepted.
use std::process::Command;

use crate::support::AGENT;

fn run_with(args: &[&str]) -> (bool, String) {
    let out = Command::new(AGENT).arg("run").args(args).output().expect("run ha-agent");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_config_file_is_refused_with_its_file_line_and_what_is_expected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.toml");
    std::fs::write(&path, "iface = \"eth0\"\nvip = \"192.0.2.200/24\"\ninterval = \"fast\"\n").expect("write");
    let (ok, stderr) = run_with(&["--config", path.to_str().expect("utf-8 path")]);
    assert!(!ok);
    assert_eq!(
        stderr,
        format!("ha-agent: {}:3:12: \"fast\" is not a duration: write e.g. \"500ms\" or \"2s\"\n", path.display())
    );

    std::fs::write(&path, "iface = \"eth0\"\npriorty = 5\n").expect("write");
    let (ok, stderr) = run_with(&["--config", path.to_str().expect("utf-8 path")]);
    assert!(!ok);
    assert_eq!(stderr, format!("ha-agent: {}:2:1: unknown key `priorty`: did you mean `priority`?\n", path.display()));
}

/// The values of issue 12 item 9: each once panicked, wrapped or spun; now one line at its line.
#[test]
fn out_of_range_values_in_the_file_are_refused_at_their_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.toml");
    for (line, needle) in [
        ("tolerance = \"18446744073709551615s\"", "4:13: 18446744073709551615s is too long: 1h is the maximum"),
        ("tolerance = \"18446744074s\"", "4:13: 18446744074s is too long: 1h is the maximum"),
        ("port = 0", "4:8: 0 is out of range: 1 to 65535"),
        ("check-interval = \"0s\"", "4:18: 0s is too short: 10ms is the minimum"),
        ("hook-timeout = \"0s\"", "4:16: 0s is too short: 10ms is the minimum"),
    ] {
        let text = format!("iface = \"eth0\"\nvip = \"192.0.2.200/24\"\ninsecure-no-auth = true\n{line}\n");
        std::fs::write(&path, text).expect("write");
        let (ok, stderr) = run_with(&["--config", path.to_str().expect("utf-8 path")]);
        assert!(!ok);
        assert_eq!(stderr, format!("ha-agent: {}:{needle}\n", path.display()));
    }
}

#[test]
fn the_example_config_is_accepted_and_flags_win_over_it() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/ha-agent.toml");
    // The file names eth0; the flag's interface wins, and is then looked up (and missing).
    let (ok, stderr) = run_with(&["--config", example, "--iface", "halab-none0"]);
    assert!(!ok);
    assert_eq!(stderr, "ha-agent: no interface named halab-none0: check `ip link`\n");
}
