//! `cargo xtask test`: setup, eBPF build, workspace build, workspace tests.
use std::{env, process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    cmd::{self, Cmd},
    ebpf, package,
};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Skip the prerequisite checks.
    #[arg(long)]
    pub skip_setup: bool,
    /// Seeds of the cluster simulator run after the tests (0: none). Skipped when the extra
    /// arguments choose packages.
    #[arg(long, default_value_t = 3000)]
    pub sim_seeds: u64,
    /// Skip building and checking the Debian package (run after the tests when no cargo
    /// arguments are given).
    #[arg(long)]
    pub skip_package: bool,
    /// Extra arguments for `cargo test`, after `--` (e.g. `-- -p ha-agent failover -- --nocapture`).
    #[arg(last = true)]
    pub cargo_args: Vec<String>,
}

/// Test threads per test binary unless the caller chose (the lab tests are heavy; 2 cores).
const TEST_THREADS: &str = "2";

pub fn run(args: TestArgs) -> Result<ExitCode> {
    let start = Instant::now();
    let root = cmd::workspace_root()?;
    if !cmd::is_root() {
        eprintln!("test: warning: not root; the namespace integration tests need root");
    }
    report_namespaces("before");

    ebpf::build(args.skip_setup)?;

    Cmd::new("cargo")
        .current_dir(&root)
        .args(["build", "--workspace", "--exclude", "ha-ebpf", "--all-targets"])
        .run()
        .context("workspace build failed (see cargo's output above)")?;

    let mut test = Cmd::new("cargo").current_dir(&root).arg("test");
    // ha-ebpf only builds for the BPF target; keep it out unless the caller picks packages.
    if !selects_packages(&args.cargo_args) {
        test = test.args(["--workspace", "--exclude", "ha-ebpf"]);
    }
    test = test.args(&args.cargo_args);
    if env::var_os("RUST_TEST_THREADS").is_none() {
        test = test.env("RUST_TEST_THREADS", TEST_THREADS);
    }
    let status = test.status()?;

    report_namespaces("after");
    let mut code = cmd::exit_code(status);
    if args.sim_seeds > 0 && !selects_packages(&args.cargo_args) {
        let sim = crate::simulate::SimulateArgs {
            seeds: args.sim_seeds,
            first: 0,
            seed: None,
            trace: false,
            jobs: None,
            show: 3,
            list: false,
            no_fence: false,
        };
        let sim_code = crate::simulate::run(sim)?;
        if code == 0 && sim_code != ExitCode::SUCCESS {
            code = 1;
        }
    }

    // The package: a release build of its own (a few minutes), so only in the whole suite.
    if args.cargo_args.is_empty() && !args.skip_package {
        let started = Instant::now();
        let packaged = package::build(args.skip_setup).and_then(|deb| package::check(&deb));
        let took = started.elapsed().as_secs_f64();
        match packaged {
            Ok(()) => println!("test: package built and checked in {took:.0}s"),
            Err(e) => {
                eprintln!("test: package FAILED after {took:.0}s: {e:#}");
                code = if code == 0 { 1 } else { code };
            }
        }
    }
    println!(
        "test: {} in {:.1}s total wall time (exit code {code})",
        if code == 0 { "passed" } else { "FAILED" },
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Whether the extra args (before any `--` meant for the test binaries) choose packages.
fn selects_packages(args: &[String]) -> bool {
    args.iter().take_while(|a| *a != "--").any(|a| {
        matches!(a.as_str(), "-p" | "--package" | "--workspace" | "--all" | "--manifest-path")
            || a.starts_with("--package=")
            || a.starts_with("--manifest-path=")
            || (a.starts_with("-p") && !a.starts_with("--"))
    })
}

/// Reports (never deletes) leftover `halab-*` network namespaces.
fn report_namespaces(when: &str) {
    let out = match Cmd::new("ip").args(["netns", "list"]).quiet().read() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("test: cannot list network namespaces {when} the tests: {e:#}");
            return;
        }
    };
    let left: Vec<&str> =
        out.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with("halab-")).collect();
    if left.is_empty() {
        println!("test: no halab-* network namespaces {when} the tests");
    } else {
        println!(
            "test: {} leftover halab-* network namespace(s) {when} the tests: {} (remove with `ip netns del <name>`)",
            left.len(),
            left.join(" ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::selects_packages;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn readme_and_ci_install_the_toolchain_with_the_same_command() -> anyhow::Result<()> {
        let root = crate::cmd::workspace_root()?;
        let readme = std::fs::read_to_string(root.join("README.md"))?;
        let ci = std::fs::read_to_string(root.join(".ci/run"))?;
        let first = readme
            .lines()
            .skip_while(|l| *l != "## The two commands")
            .find(|l| l.starts_with("rustup ") || l.starts_with("cargo "))
            .unwrap_or_default();
        let command = first.split('#').next().unwrap_or_default().trim();
        assert_eq!(command, "rustup toolchain install", "README's first command: {first}");
        assert!(ci.lines().any(|l| l.trim() == command), ".ci/run does not run `{command}`");
        Ok(())
    }

    #[test]
    fn package_selection() {
        assert!(!selects_packages(&v(&[])));
        assert!(!selects_packages(&v(&["failover", "--", "-p"])));
        assert!(selects_packages(&v(&["-p", "ha-agent"])));
        assert!(selects_packages(&v(&["-pha-agent"])));
        assert!(selects_packages(&v(&["--package=ha-agent", "--", "--nocapture"])));
        assert!(!selects_packages(&v(&["--profile", "release"])));
    }
}
