//! Starting a run, shared by the binary and by services that embed the agent
//! ([`crate::embed`]): the arguments checked against this system, the privileges checked, and
//! how SIGHUP reads them again. Nothing here changes the system.
use std::{ffi::OsString, net::Ipv4Addr};

use anyhow::Context as _;

use crate::{
    agent::{Reread, Rereader},
    config::{
        HostFacts, RunConfig,
        cli::{self, ArgsError, Command, RunArgs},
    },
    netlink::iface,
    privilege,
};

/// `run` arguments resolved against this system: the interface exists, and its addresses.
pub fn resolve(args: &RunArgs) -> anyhow::Result<RunConfig> {
    let Some(iface) = args.iface.first().map(String::as_str) else {
        anyhow::bail!("no interface: give --iface NAME (or iface in the config file)");
    };
    if iface::index(iface).is_err() {
        anyhow::bail!("no interface named {iface}: check `ip link`");
    }
    // Read once up front: a listing that fails is a refusal, not a missing interface.
    iface::own_ipv4_addrs(iface).context("listing interface addresses")?;
    let cfg = RunConfig::new(args, &ThisHost)?;
    if cfg.routed.is_some() && iface::index(cfg.vip_iface()).is_err() {
        anyhow::bail!(
            "no interface named {} for --vip-iface: create it (`ip link add {0} type dummy`) or use lo",
            cfg.vip_iface()
        );
    }
    Ok(cfg)
}

/// The interfaces of this system, as `RunConfig` checks them.
struct ThisHost;

impl HostFacts for ThisHost {
    fn own_ipv4(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        iface::index(name).ok()?;
        iface::own_ipv4_addrs(name).ok()
    }
}

/// Refuses a run this process lacks the capabilities for.
pub fn check_privileges(cfg: &RunConfig) -> anyhow::Result<()> {
    let missing = privilege::missing_capabilities(cfg.rx);
    if !missing.is_empty() {
        anyhow::bail!("missing {}: run as root or grant them (see README, least privilege)", missing.join(", "));
    }
    Ok(())
}

/// Parses a full command line (`ha-agent run ...`) as the binary does.
pub fn parse_run(argv: Vec<OsString>) -> anyhow::Result<(RunArgs, log::LevelFilter)> {
    let cli = cli::parse_from(argv).map_err(|e| match e {
        ArgsError::Usage(e) => anyhow::anyhow!("{}", cli::one_line(&e).unwrap_or_else(|| e.kind().to_string())),
        ArgsError::File(e) => e.into(),
    })?;
    let Command::Run(args) = cli.command else { anyhow::bail!("not a run command line") };
    Ok((*args, cli.log_level))
}

/// Reads the same command line (and the config file it names) again, for SIGHUP.
pub fn rereader(argv: Vec<OsString>) -> Rereader {
    Box::new(move || {
        let (args, log_level) = parse_run(argv.clone())?;
        Ok(Reread { cfg: resolve(&args)?, log_level })
    })
}
