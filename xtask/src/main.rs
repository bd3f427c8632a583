//! Developer tasks for `ha`: `cargo xtask <command>`. Dispatch only; see the modules.
mod bench;
mod chaos;
mod cmd;
mod demo;
mod ebpf;
mod package;
mod scenario;
mod setup;
mod simulate;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Build, test and demo tasks for ha")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check prerequisites (Rust toolchain, bpf-linker, lab tools) and install what is missing.
    Setup,
    /// Build the XDP object into target/bpf/bpfel-unknown-none/release/ha-ebpf.
    BuildEbpf {
        /// Skip the prerequisite checks.
        #[arg(long)]
        skip_setup: bool,
    },
    /// Setup, build-ebpf, build the workspace and run all tests (needs root for the lab tests).
    Test(test::TestArgs),
    /// Build everything and run the failover demo.
    Demo(demo::DemoArgs),
    /// Build everything and run benchmarks.
    Bench(bench::BenchArgs),
    /// Run the deterministic cluster simulator over many seeds, or one seed with its trace.
    Simulate(simulate::SimulateArgs),
    /// Random faults against a three-node lab, checked from the client's side; writes
    /// docs/chaos.md and fails on any violation.
    Chaos(chaos::ChaosArgs),
    /// Build the Debian package (target/package/ha-agent_<version>_<arch>.deb) and check it.
    Package(package::PackageArgs),
    /// The rest bench's floor sender, run by the bench inside a lab namespace.
    #[command(hide = true)]
    FloorSender {
        to: std::net::Ipv4Addr,
        #[arg(long)]
        period_us: u64,
        #[arg(long)]
        burst: u32,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup => setup::run().map(|()| ExitCode::SUCCESS),
        Command::BuildEbpf { skip_setup } => ebpf::build(skip_setup).map(|_| ExitCode::SUCCESS),
        Command::Test(args) => test::run(args),
        Command::Demo(args) => demo::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Simulate(args) => simulate::run(args),
        Command::Chaos(args) => chaos::run(args),
        Command::Package(args) => package::run(args).map(|()| ExitCode::SUCCESS),
        Command::FloorSender { to, period_us, burst } => {
            bench::floor_sender(to, std::time::Duration::from_micros(period_us), burst).map(|()| ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_passes_everything_after_double_dash() {
        let cli = Cli::parse_from(["xtask", "test", "--", "-p", "ha-common", "--", "--nocapture"]);
        let Command::Test(args) = cli.command else { panic!("not test") };
        assert_eq!(args.cargo_args, ["-p", "ha-common", "--", "--nocapture"]);
    }
}
