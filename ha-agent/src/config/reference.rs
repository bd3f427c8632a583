//! The option reference in README.md and docs/operating.md, generated from the flags'
//! declarations so that it cannot drift from them (a test compares the two).
use clap::{Arg, CommandFactory};

use super::cli::Cli;

/// Marks the generated table in a markdown file; the lines between are replaced whole.
pub const BEGIN: &str = "<!-- BEGIN options: generated from ha-agent/src/config/cli.rs; \
                         HA_UPDATE_DOCS=1 cargo test -p ha-agent options_reference rewrites it -->";
pub const END: &str = "<!-- END options -->";

/// One row per `run` flag, then the global log flags: the flag, its default and its help.
pub fn markdown() -> String {
    let mut cli = Cli::command();
    cli.build();
    let run = cli.find_subcommand("run").map(|r| r.get_arguments().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let (globals, own): (Vec<Arg>, Vec<Arg>) = run.into_iter().partition(Arg::is_global_set);
    let mut out = String::from("| flag | default | meaning |\n|---|---|---|\n");
    for arg in own.iter().chain(&globals).filter(|a| a.get_long().is_some_and(|l| l != "help")) {
        let (default, meaning) = default_and_meaning(arg);
        out.push_str(&format!("| `{}` | {} | {} |\n", cell(&flag(arg)), cell(&default), cell(&meaning)));
    }
    out
}

/// `--rx auto|xdp|socket`, `--interval DUR`, `--realtime`.
fn flag(arg: &Arg) -> String {
    let long = arg.get_long().unwrap_or_default();
    if !arg.get_action().takes_values() {
        return format!("--{long}");
    }
    let choices: Vec<String> =
        arg.get_possible_values().iter().filter(|p| !p.is_hide_set()).map(|p| p.get_name().to_string()).collect();
    let value = if choices.is_empty() {
        arg.get_value_names().and_then(|n| n.first()).map(ToString::to_string).unwrap_or_else(|| "VALUE".into())
    } else {
        choices.join("|")
    };
    format!("--{long} {value}")
}

/// A default clap knows is shown as a value; one that depends on other options is written at
/// the end of the help as `[default: ...]` (or `[required]`) and moved to its column.
fn default_and_meaning(arg: &Arg) -> (String, String) {
    let help = arg.get_long_help().or(arg.get_help()).map(ToString::to_string).unwrap_or_default();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let (meaning, described) = match help.rfind(" [") {
        Some(i) if help.ends_with(']') => (help[..i].to_string(), Some(help[i + 2..help.len() - 1].to_string())),
        _ => (help, None),
    };
    let meaning = meaning.trim_end_matches('.').to_string();
    let defaults: Vec<String> = arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    let default = match (described, defaults.as_slice()) {
        (Some(d), _) if d.starts_with("required") => format!("({d})"),
        (Some(d), _) => d.strip_prefix("default: ").unwrap_or(&d).to_string(),
        (None, [v]) if !arg.get_action().takes_values() => if v == "true" { "on" } else { "off" }.to_string(),
        (None, []) => String::new(),
        (None, values) => format!("`{}`", values.join(", ")),
    };
    (default, meaning)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Replaces the generated block of `text`; `None` if it has none.
    fn with_table(text: &str, table: &str) -> Option<String> {
        let begin = text.find(BEGIN)? + BEGIN.len();
        let end = begin + text[begin..].find(END)?;
        Some(format!("{}\n{table}{}", &text[..begin], &text[end..]))
    }

    #[test]
    fn options_reference_in_the_docs_is_generated_from_the_flags() {
        let table = markdown();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for doc in ["README.md", "docs/operating.md"] {
            let path = root.join(doc);
            let text = std::fs::read_to_string(&path).expect("read doc");
            let wanted =
                with_table(&text, &table).unwrap_or_else(|| panic!("{doc} has no `{BEGIN}` ... `{END}` block"));
            if std::env::var_os("HA_UPDATE_DOCS").is_some() {
                std::fs::write(&path, &wanted).expect("write doc");
            } else {
                assert!(
                    text == wanted,
                    "{doc}'s option table is stale: run HA_UPDATE_DOCS=1 cargo test -p ha-agent options_reference"
                );
            }
        }
    }

    #[test]
    fn every_flag_has_a_row_with_its_default() {
        let table = markdown();
        for needle in [
            "| `--interval DUR` | `100ms` |",
            "| `--rx auto\\|xdp\\|socket` | `auto` |",
            "| `--realtime` | off |",
            "| `--iface IF` | (required) |",
            "| `--hold-down DUR` | 3 x tolerance |",
            "| `--log-level LEVEL` | `info` |",
        ] {
            assert!(table.contains(needle), "{needle} in\n{table}");
        }
        assert!(!table.contains("[default:"), "{table}");
    }
}
