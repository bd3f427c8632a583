use clap::CommandFactory;

use super::*;
use crate::config::cli::{Cli, Command, parse_from};

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
            Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| FileConfig::keys().contains(&k)) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_parses_as_shipped_and_with_every_option_switched_on() {
    let shipped = parse(EXAMPLE).expect("examples/ha-agent.toml parses");
    assert_eq!(shipped.iface.as_deref(), Some("eth0"));
    let all = parse(&example_uncommented()).expect("every commented-out line is a valid value");
    assert_eq!(all.checks.as_ref().map(Vec::len), Some(2));
    assert_eq!(all.preempt, Some(Preempt::Always));
    assert_eq!(all.node_id, Some(NodeId(0xc000_0201)));
}

#[test]
fn the_example_documents_every_key() {
    for key in FileConfig::keys() {
        assert!(
            EXAMPLE.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = "))),
            "examples/ha-agent.toml does not mention `{key}`"
        );
    }
}

#[test]
fn every_run_flag_is_a_key_and_every_key_a_flag() {
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("run");
    let flags: Vec<String> = run
        .get_arguments()
        .chain(cli.get_arguments().filter(|a| a.is_global_set()))
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|l| !matches!(l.as_str(), "config" | "help"))
        .collect();
    let keys = FileConfig::keys();
    for flag in &flags {
        assert!(keys.contains(&flag.as_str()), "--{flag} cannot be set in the config file");
    }
    for key in keys {
        assert!(flags.iter().any(|f| f == key), "config key `{key}` is no `run` flag");
    }
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
    assert!(msg.contains("u32"), "{msg}");

    let (_, msg) = invalid("check-fall = 0\n");
    assert!(msg.contains("nonzero"), "{msg}");
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
    assert_eq!(one.vips.map(|v| v.len()), Some(1));
    assert_eq!(one.checks, Some(vec!["true".to_string()]));
    let node = parse("node-id = 7\n").expect("numeric node id");
    assert_eq!(node.node_id, Some(NodeId(7)));
}

#[test]
fn flags_on_the_command_line_win_over_the_file() {
    let argv = ["ha-agent", "run", "--config", "ha.toml", "--interval", "50ms", "--check", "flag-check"];
    let (cli, matches) = parse_from(argv).expect("parse");
    let Command::Run(mut args) = cli.command else { panic!("run") };
    let file = parse(
        "iface = \"eth1\"\nvip = \"192.0.2.200/24\"\ninterval = \"1s\"\ntolerance = \"5s\"\n\
         check = [\"file-check\"]\nrealtime = true\nnode-id = \"192.0.2.9\"\nkey-file = \"/etc/ha-agent/heartbeat.key\"\n",
    )
    .expect("file");
    let run = matches.subcommand_matches("run").expect("run matches");
    file.apply(&mut args, |id| crate::config::cli::given_on_command_line(run, id));
    assert_eq!(args.iface.as_deref(), Some("eth1"), "from the file");
    assert_eq!(args.interval, Duration::from_millis(50), "the flag wins");
    assert_eq!(args.tolerance, Duration::from_secs(5), "from the file, over the flag's default");
    assert_eq!(args.checks, vec!["flag-check".to_string()], "a repeated flag replaces the file's list");
    assert!(args.realtime);
    assert_eq!(args.node_id, Some(0xc000_0209));
    assert_eq!(args.key_file.as_deref(), Some(Path::new("/etc/ha-agent/heartbeat.key")));
    assert_eq!(args.priority, 100, "neither: the default");
}

#[test]
fn a_missing_file_says_which() {
    let err = FileConfig::load(Path::new("/nonexistent/ha.toml")).expect_err("missing");
    assert!(err.to_string().starts_with("reading config file /nonexistent/ha.toml:"), "{err}");
}
