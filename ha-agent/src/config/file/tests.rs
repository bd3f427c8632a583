use std::time::Duration;

use ha_core::Preempt;

use super::*;
use crate::config::cli::{Command, parse_from};

const EXAMPLE: &str = include_str!("../../../../examples/ha-agent.toml");

fn parse(text: &str) -> Result<FileConfig, FileError> {
    FileConfig::parse(text, Path::new("ha.toml"))
}

fn invalid(text: &str) -> (usize, String) {
    match parse(text) {
        Err(e @ FileError::Invalid { line, .. }) => (line, e.to_string()),
        other => panic!("expected an invalid-file error, got {other:?}"),
    }
}

/// The example with its commented-out `# key = value` lines switched on.
fn example_uncommented() -> String {
    EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| FileConfig::keys().iter().any(|key| key == k)) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_parses_as_shipped_and_with_every_option_switched_on() {
    let shipped = parse(EXAMPLE).expect("examples/ha-agent.toml parses").run_args().expect("run args");
    assert_eq!(shipped.iface, ["eth0"]);
    let all = parse(&example_uncommented()).expect("every commented-out line is a valid value");
    let all = all.run_args().expect("run args");
    assert_eq!(all.checks.len(), 2);
    assert_eq!(all.preempt, Preempt::Always);
    assert_eq!(all.node_id, Some(0xc000_0201));
}

#[test]
fn the_example_documents_every_key() {
    for key in &FileConfig::keys() {
        assert!(
            EXAMPLE.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
            "examples/ha-agent.toml does not mention `{key}`"
        );
    }
}

#[test]
fn every_run_flag_is_a_key_and_every_key_a_flag() {
    let keys = FileConfig::keys();
    for key in ["iface", "vip", "interval", "check", "insecure-no-auth", "log-level", "log-format"] {
        assert!(keys.iter().any(|k| k == key), "`{key}` in {keys:?}");
    }
    assert!(!keys.iter().any(|k| k == "config" || k == "help"), "{keys:?}");
    assert_eq!(keys.len(), 42, "a new flag is a new key: add it to examples/ha-agent.toml");
}

#[test]
fn a_bad_value_is_reported_at_its_line_with_what_is_expected() {
    let (line, msg) = invalid("iface = \"eth0\"\n\n# a comment\ninterval = \"fast\"\n");
    assert_eq!(line, 4, "{msg}");
    assert!(msg.starts_with("ha.toml:4:"), "{msg}");
    assert!(msg.contains("\"fast\" is not a duration"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");

    let (line, msg) = invalid("vip = [\"192.0.2.200/24\",\n       \"192.0.2.201/40\"]\n");
    assert_eq!(line, 2, "{msg}");
    assert!(msg.contains("/40") && msg.contains("out of range"), "{msg}");

    let (line, msg) = invalid("iface = \"eth0\"\npriority = \"high\"\n");
    assert_eq!(line, 2, "{msg}");
    assert!(msg.contains("\"high\" is not a whole number"), "{msg}");

    let (_, msg) = invalid("check-fall = 0\n");
    assert!(msg.contains("0 is out of range: 1 to 100"), "{msg}");
    let (_, msg) = invalid("preempt = \"sometimes\"\n");
    assert!(msg.contains("delay=DUR"), "{msg}");
    let (_, msg) = invalid("log-format = \"xml\"\n");
    assert!(msg.contains("human") && msg.contains("json"), "{msg}");
}

#[test]
fn an_unknown_key_is_reported_at_its_line_with_a_suggestion() {
    let (line, msg) = invalid("iface = \"eth0\"\nintervall = \"1s\"\n");
    assert_eq!(line, 2, "{msg}");
    assert!(msg.contains("unknown key `intervall`: did you mean `interval`?"), "{msg}");
    let (_, msg) = invalid("colour = \"blue\"\n");
    assert!(msg.contains("unknown key `colour`") && !msg.contains("did you mean"), "{msg}");
}

#[test]
fn repeatable_keys_take_one_value_or_a_list() {
    let one = parse("vip = \"192.0.2.200/24\"\ncheck = \"true\"\n").expect("single values");
    let one = one.run_args().expect("run args");
    assert_eq!(one.vips.len(), 1);
    let placed = parse("vip = [\"192.0.2.200/24\", \"198.51.100.10/32@eth1\"]\n").expect("@IF in the file");
    let placed = placed.run_args().expect("run args");
    assert_eq!(placed.vips[1].iface.as_deref(), Some("eth1"));
    let (line, msg) = invalid("\nvip = \"198.51.100.10/32@\"\n");
    assert_eq!((line, msg.contains("not an interface name")), (2, true), "{msg}");
    assert_eq!(one.checks, vec!["true".to_string()]);
    let node = parse("node-id = 7\n").expect("numeric node id").run_args().expect("run args");
    assert_eq!(node.node_id, Some(7));
    let two = parse("iface = [\"eth0\", \"eth1\"]\n").expect("redundant links").run_args().expect("run args");
    assert_eq!(two.iface, ["eth0", "eth1"]);
    let (line, msg) = invalid("\n\npriority = [1, 2]\n");
    assert_eq!((line, msg.contains("`priority` takes one value, not a list")), (3, true), "{msg}");
}

#[test]
fn flags_on_the_command_line_win_over_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ha.toml");
    std::fs::write(
        &path,
        "iface = \"eth1\"\nvip = \"192.0.2.200/24\"\ninterval = \"1s\"\ntolerance = \"5s\"\n\
         check = [\"file-check\"]\nrealtime = true\nnode-id = \"192.0.2.9\"\nkey-file = \"/etc/ha-agent/heartbeat.key\"\n\
         log-level = \"debug\"\n",
    )
    .expect("write");
    let path = path.to_str().expect("utf-8 path");
    let argv = ["ha-agent", "run", "--config", path, "--interval", "50ms", "--check", "flag-check"];
    let cli = parse_from(argv).expect("parse");
    assert_eq!(cli.log_level, log::LevelFilter::Debug, "a global flag from the file");
    let Command::Run(args) = cli.command else { panic!("run") };
    assert_eq!(args.iface, ["eth1"], "from the file");
    assert_eq!(args.interval, Duration::from_millis(50), "the flag wins");
    assert_eq!(args.tolerance, Duration::from_secs(5), "from the file, over the flag's default");
    assert_eq!(args.checks, vec!["flag-check".to_string()], "a repeated flag replaces the file's list");
    assert!(args.realtime);
    assert_eq!(args.node_id, Some(0xc000_0209));
    assert_eq!(args.key_file.as_deref(), Some(Path::new("/etc/ha-agent/heartbeat.key")));
    assert_eq!(args.priority, 100, "neither: the default");
}

#[test]
fn out_of_range_values_are_refused_at_their_line_in_the_flags_words() {
    for (text, needle) in [
        ("tolerance = \"18446744073709551615s\"", "18446744073709551615s is too long: 1h is the maximum"),
        ("tolerance = \"18446744074s\"", "is too long"),
        ("port = 0", "0 is out of range: 1 to 65535"),
        ("port = 65536", "not a whole number from 1 to 65535"),
        ("check-interval = \"0s\"", "0s is too short: 10ms is the minimum"),
        ("hook-timeout = \"0s\"", "0s is too short: 10ms is the minimum"),
        ("check-timeout = \"0s\"", "0s is too short: 10ms is the minimum"),
        ("interval = \"100us\"", "100us is too short: 500us is the minimum"),
        ("interval = \"2m\"", "2m is too long: 1m is the maximum"),
        ("tick = \"0s\"", "0s is too short: 100us is the minimum"),
        ("max-tolerance = \"2h\"", "2h is too long: 1h is the maximum"),
        ("hold-down = \"2h\"", "2h is too long: 1h is the maximum"),
        ("leave-timeout = \"11m\"", "11m is too long: 10m is the maximum"),
        ("garp-refresh = \"2days\"", "2days is too long: 1day is the maximum"),
        ("preempt = \"delay=2days\"", "2days is too long: 1day is the maximum"),
        ("check-rise = 101", "101 is out of range: 1 to 100"),
        ("group = \"192.0.2.1\"", "not a multicast address"),
        ("peer = [\"192.0.2.2\", \"239.1.1.1\"]", "239.1.1.1 is not a unicast address"),
        ("metrics = \"127.0.0.1:0\"", "port 0"),
        ("realtime = \"yes\"", "`realtime` is a switch: write true or false"),
    ] {
        let (line, msg) = invalid(&format!("iface = \"eth0\"\n{text}\n"));
        assert_eq!(line, 2, "{msg}");
        assert!(msg.contains(needle), "{needle:?} in {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}

#[test]
fn a_missing_file_says_which() {
    let err = FileConfig::load(Path::new("/nonexistent/ha.toml")).expect_err("missing");
    assert!(err.to_string().starts_with("reading config file /nonexistent/ha.toml:"), "{err}");
}

#[test]
fn group_tables_become_vip_groups() {
    let text = "iface = \"eth0\"\ninsecure-no-auth = true\npreempt = \"never\"\n\n[[group]]\nid = 7\nvip = [\"192.0.2.7/24\", \"192.0.2.8/24\"]\npriority = 200\n\n[[group]]\nid = 9\nvip = \"192.0.2.9/24\"\npreempt = \"always\"\n";
    let args = parse(text).expect("valid").run_args().expect("run args");
    let groups: Vec<String> = args.vip_groups.iter().map(ToString::to_string).collect();
    assert_eq!(groups, ["7:200:192.0.2.7/24,192.0.2.8/24", "9:100:192.0.2.9/24:preempt=always"]);
    assert!(args.vips.is_empty());
}

#[test]
fn a_bad_group_table_is_refused_at_its_line() {
    let (line, e) = invalid("iface = \"eth0\"\n\n[[group]]\nid = 7\nvips = \"192.0.2.7/24\"\n");
    assert_eq!(line, 5, "{e}");
    assert!(e.contains("unknown key `vips` in [[group]]"), "{e}");
    let (_, e) = invalid("[[group]]\nid = 0\nvip = \"192.0.2.7/24\"\n");
    assert!(e.contains("group id \"0\" must be 1 to 255"), "{e}");
    let (_, e) = invalid("[[group]]\nvip = \"192.0.2.7/24\"\n");
    assert!(e.contains("without `id`"), "{e}");
}
