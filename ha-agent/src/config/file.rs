//! The TOML config file (`--config FILE`). Its keys are not declared here: every `run` flag (and
//! the global log flags) is a key named as the flag without its dashes (`leave-timeout = "1s"`;
//! repeatable flags take a list or one value). Each value goes through its flag's own parser,
//! bounds included, so a bad value is reported at its line in the flag's words. The file's
//! values then become the flags' defaults: a flag given on the command line wins over the file,
//! and the file over the built-in default.
use std::{
    ops::Range,
    path::{Path, PathBuf},
};

use clap::{
    Arg, ArgAction, CommandFactory, FromArgMatches,
    error::{ContextKind, ContextValue, ErrorKind},
};
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::cli::{Cli, RunArgs};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    /// `path:line:column: message`, the way compilers point at a mistake.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
}

/// A config file's settings, each checked by its flag's parser.
#[derive(Debug, Default, Clone)]
pub struct FileConfig {
    settings: Vec<Setting>,
}

#[derive(Debug, Clone)]
struct Setting {
    /// The clap id of the flag.
    id: String,
    /// Declared on the top-level command (the log flags) rather than on `run`.
    global: bool,
    /// As they would be written after the flag.
    values: Vec<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path).map_err(|error| FileError::Read { path: path.to_owned(), error })?;
        Self::parse(&text, path)
    }

    /// `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, FileError> {
        let at = |span: Range<usize>, message: String| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            FileError::Invalid { path: path.to_owned(), line, column, message }
        };
        let table = DeTable::parse(text).map_err(|e| at(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
        let mut cli = Cli::command();
        cli.build();
        let mut settings = Vec::new();
        for (key, value) in table.get_ref() {
            if key.get_ref() == "group" && is_tables(value.get_ref()) {
                let arg = option(&cli, "vip-group").ok_or_else(|| at(key.span(), unknown_key("vip-group")))?;
                if table.get_ref().iter().any(|(k, _)| k.get_ref() == "vip-group") {
                    return Err(at(key.span(), "[[group]] tables and `vip-group`: give the groups one way".into()));
                }
                let DeValue::Array(items) = value.get_ref() else { continue };
                let mut values = Vec::new();
                for item in items {
                    let text = group_table(item, &at)?;
                    values.push(check(&cli, arg, text).map_err(|m| at(item.span(), m))?);
                }
                settings.push(Setting { id: arg.get_id().to_string(), global: false, values });
                continue;
            }
            let arg = option(&cli, key.get_ref()).ok_or_else(|| at(key.span(), unknown_key(key.get_ref())))?;
            let items: Vec<&Spanned<DeValue>> = match value.get_ref() {
                DeValue::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items.iter().collect(),
                DeValue::Array(_) => {
                    return Err(at(value.span(), format!("`{key}` takes one value, not a list", key = key.get_ref())));
                }
                _ => vec![value],
            };
            let mut values = Vec::new();
            for item in items {
                let text = scalar(item.get_ref()).and_then(|t| check(&cli, arg, t)).map_err(|m| at(item.span(), m))?;
                values.push(text);
            }
            settings.push(Setting { id: arg.get_id().to_string(), global: arg.is_global_set(), values });
        }
        Ok(Self { settings })
    }

    /// Every key the file accepts, as written in it.
    pub fn keys() -> Vec<String> {
        let mut cli = Cli::command();
        cli.build();
        run_command(&cli)
            .get_arguments()
            .filter(|a| is_key(a))
            .filter_map(|a| a.get_long())
            .map(str::to_string)
            .collect()
    }

    /// `cli` with the file's values as its flags' defaults.
    pub fn apply(&self, mut cli: clap::Command) -> clap::Command {
        for s in &self.settings {
            let set = |arg: Arg| arg.default_values(s.values.clone());
            cli = if s.global {
                cli.mut_arg(&s.id, set)
            } else {
                // `check-config` takes exactly what `run` takes.
                cli.mut_subcommand("run", |run| run.mut_arg(&s.id, set))
                    .mut_subcommand("check-config", |check| check.mut_arg(&s.id, set))
            };
        }
        cli
    }

    /// The `run` options as the file alone sets them (the rest at their defaults).
    pub fn run_args(&self) -> Result<RunArgs, clap::Error> {
        let matches = self.apply(Cli::command()).try_get_matches_from(["ha-agent", "run"])?;
        let run = matches.subcommand_matches("run").ok_or_else(|| clap::Error::new(ErrorKind::MissingSubcommand))?;
        RunArgs::from_arg_matches(run)
    }
}

fn run_command(cli: &clap::Command) -> &clap::Command {
    cli.find_subcommand("run").unwrap_or(cli)
}

/// `--config` names the file and cannot be in it.
fn is_key(arg: &Arg) -> bool {
    arg.get_long().is_some_and(|l| !matches!(l, "config" | "help"))
}

fn option<'a>(cli: &'a clap::Command, key: &str) -> Option<&'a Arg> {
    run_command(cli).get_arguments().find(|a| is_key(a) && a.get_long() == Some(key))
}

/// `[[group]]`: an array of tables (a string `group` is the multicast group).
fn is_tables(value: &DeValue) -> bool {
    matches!(value, DeValue::Array(items) if items.iter().all(|i| matches!(i.get_ref(), DeValue::Table(_))))
}

/// One `[[group]]` table as `--vip-group` takes it: `id`, `vip` (one or a list), `priority`
/// (default 100), `preempt` (default `preempt`).
fn group_table(item: &Spanned<DeValue>, at: &dyn Fn(Range<usize>, String) -> FileError) -> Result<String, FileError> {
    let DeValue::Table(t) = item.get_ref() else { return Err(at(item.span(), "expected a [[group]] table".into())) };
    let (mut id, mut vips, mut priority, mut preempt) = (None, Vec::new(), "100".to_string(), None);
    for (key, value) in t {
        let one = |v: &DeValue| scalar(v).map_err(|m| at(value.span(), m));
        match key.get_ref().as_ref() {
            "id" => id = Some(one(value.get_ref())?),
            "priority" => priority = one(value.get_ref())?,
            "preempt" => preempt = Some(one(value.get_ref())?),
            "vip" => match value.get_ref() {
                DeValue::Array(items) => {
                    for i in items {
                        vips.push(scalar(i.get_ref()).map_err(|m| at(i.span(), m))?);
                    }
                }
                v => vips.push(one(v)?),
            },
            other => {
                return Err(at(
                    key.span(),
                    format!("unknown key `{other}` in [[group]]: a group has id, vip, priority and preempt"),
                ));
            }
        }
    }
    let id = id.ok_or_else(|| at(item.span(), "[[group]] without `id` (1 to 255)".into()))?;
    if vips.is_empty() {
        return Err(at(item.span(), format!("[[group]] {id} without `vip`")));
    }
    let preempt = preempt.map_or(String::new(), |p| format!(":preempt={p}"));
    Ok(format!("{id}:{priority}:{}{preempt}", vips.join(",")))
}

/// A value as it would be written on the command line.
fn scalar(value: &DeValue) -> Result<String, String> {
    Ok(match value {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => {
            i128::from_str_radix(i.as_str(), i.radix()).map_err(|_| format!("{i} is too large"))?.to_string()
        }
        DeValue::Float(f) => f.as_str().to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) => return Err("expected one value, not a list".to_string()),
        DeValue::Table(_) => {
            return Err("expected a value: the file has no sections, only `key = value` lines".to_string());
        }
    })
}

/// Runs `text` through the flag's parser: what the command line would say, without the rest.
fn check(cli: &clap::Command, arg: &Arg, text: String) -> Result<String, String> {
    let long = arg.get_long().unwrap_or_default();
    if !arg.get_action().takes_values() {
        return match text.as_str() {
            "true" | "false" => Ok(text),
            _ => Err(format!("{text:?}: `{long}` is a switch: write true or false")),
        };
    }
    match cli.clone().try_get_matches_from(["ha-agent".to_string(), "run".to_string(), format!("--{long}={text}")]) {
        Ok(_) => Ok(text),
        Err(e) => Err(reason(&e, &text)),
    }
}

/// The parser's own words, without clap's framing.
fn reason(e: &clap::Error, text: &str) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("{text:?} is not one of: {}", valid.join(", "));
    }
    let rendered = e.render().to_string();
    rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
}

/// Names the likely key rather than listing them all.
fn unknown_key(key: &str) -> String {
    let closest = FileConfig::keys()
        .into_iter()
        .map(|k| (strsim::jaro_winkler(key, &k), k))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(score, _)| *score > 0.8);
    match closest {
        Some((_, k)) => format!("unknown key `{key}`: did you mean `{k}`?"),
        None => format!("unknown key `{key}`: keys are the long names of `ha-agent run --help` flags"),
    }
}

#[cfg(test)]
mod tests;
