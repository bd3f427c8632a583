//! One namespace of the lab (a node or the client) and the ways to run things inside it
//! without `ip netns exec` (which remounts /sys and hides the host's bpffs).

use std::{
    ffi::OsStr,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{fd::AsFd, unix::process::CommandExt},
    path::PathBuf,
    process::Command,
    thread,
    time::Duration,
};

use anyhow::{Context, Result};

use crate::{child::Child, netns, probe};

#[derive(Debug)]
pub struct Host {
    pub(crate) name: String,
    pub(crate) iface: String,
    pub(crate) addr: Ipv4Addr,
    pub(crate) addr6: Ipv6Addr,
    pub(crate) mac: [u8; 6],
}

impl Host {
    /// The netns name (`halab-<pid>-<seq>-n<i>` or `...-c`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: what tools and `setns` open.
    pub fn netns_path(&self) -> PathBuf {
        netns::path(&self.name)
    }

    /// The host's LAN interface, always `eth0`.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn addr6(&self) -> Ipv6Addr {
        self.addr6
    }

    /// eth0's MAC, `02:00:00:00:<lab byte>:<i>` (client: `<i>` = 0x64).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// A `Command` that runs `program` inside this namespace: the child `setns`es into it
    /// before exec. Only the network namespace changes, so /sys/fs/bpf stays the host's.
    /// Note `/sys/class/net` in the child still shows the host's devices (sysfs is per mount).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        // Opened before fork, so the child only needs the async-signal-safe setns.
        let ns = std::fs::File::open(self.netns_path()).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT));
        // SAFETY: the closure only calls setns and builds io::Errors without allocating.
        unsafe {
            cmd.pre_exec(move || match &ns {
                Ok(f) => netns::enter(f.as_fd()),
                Err(errno) => Err(std::io::Error::from_raw_os_error(*errno)),
            });
        }
        cmd
    }

    /// Spawns `cmd` (typically from [`Host::command`]) under a [`Child`] guard that kills it on
    /// drop; stdout and stderr go to a temp file, see [`Child::output_so_far`].
    pub fn spawn(&self, cmd: Command) -> Result<Child> {
        Child::spawn(cmd, &self.name)
    }

    /// Runs a one-shot program inside the namespace; stdout, or an error quoting stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut cmd = self.command(program);
        cmd.args(args);
        netns::output(cmd, None).with_context(|| format!("in namespace {}", self.name))
    }

    /// Runs `f` on a fresh thread that has entered this namespace, so sockets it creates
    /// belong here (they stay here when moved to other threads). A panic in `f` propagates.
    /// Inside, `/proc/self/net` is the process's view: use `/proc/thread-self/net`.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let fd = netns::open(&self.name)?;
        let name = &self.name;
        thread::scope(|s| {
            let h = thread::Builder::new()
                .name(format!("in-{name}"))
                .spawn_scoped(s, move || -> Result<T> {
                    netns::enter(fd.as_fd()).with_context(|| format!("entering namespace {name}"))?;
                    drop(fd);
                    Ok(f())
                })
                .context("starting namespace thread")?;
            match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// `ip -n <ns> <args>`; stdout or an error quoting stderr.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        netns::run("ip", &full)
    }

    /// Writes a sysctl inside this namespace (`net.ipv4.ping_group_range`, dots as in
    /// `sysctl`; only `net.*` keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run_in(|| std::fs::write(&path, value))?.with_context(|| format!("setting {key}={value} in {}", self.name))
    }

    /// Whether any interface in the namespace has `addr` assigned.
    pub fn has_addr(&self, addr: IpAddr) -> Result<bool> {
        let out = self.ip(&["-o", "addr", "show"])?;
        Ok(parse_has_addr(&out, addr))
    }

    /// The MAC the neighbour table holds for `addr` (None if absent, incomplete or failed).
    pub fn neigh_mac(&self, addr: IpAddr) -> Result<Option<[u8; 6]>> {
        let a = addr.to_string();
        let out = self.ip(&["neigh", "show", "to", &a])?;
        Ok(parse_neigh_mac(&out, addr))
    }

    /// The MAC of another device in the namespace (e.g. a sub-interface).
    pub fn link_mac(&self, dev: &str) -> Result<[u8; 6]> {
        let out = self.ip(&["-o", "link", "show", "dev", dev])?;
        let toks: Vec<&str> = out.split_whitespace().collect();
        toks.iter()
            .position(|t| *t == "link/ether")
            .and_then(|i| parse_mac(toks.get(i + 1)?))
            .with_context(|| format!("no MAC for {dev} in {}: {out}", self.name))
    }

    /// One ICMP echo to `target`; the round-trip time, or an error after `timeout`.
    pub fn ping(&self, target: IpAddr, timeout: Duration) -> Result<Duration> {
        let sock = self.run_in(|| probe::open_ping_socket(target))??;
        probe::ping_once(&sock, target, timeout).with_context(|| format!("pinging {target} from {}", self.name))
    }
}

pub(crate) fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `ip -o addr show` lines look like `2: eth0    inet 192.0.2.1/24 brd ... scope global eth0`.
fn parse_has_addr(out: &str, addr: IpAddr) -> bool {
    out.lines().any(|line| {
        let mut toks = line.split_whitespace();
        while let Some(t) = toks.next() {
            if t == "inet" || t == "inet6" {
                let found = toks.next().and_then(|a| a.split('/').next()).and_then(|a| a.parse::<IpAddr>().ok());
                if found == Some(addr) {
                    return true;
                }
            }
        }
        false
    })
}

/// `ip neigh show to A` lines: `192.0.2.1 dev eth0 lladdr 02:00:00:00:00:01 REACHABLE`.
fn parse_neigh_mac(out: &str, addr: IpAddr) -> Option<[u8; 6]> {
    out.lines().find_map(|line| {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.first()?.parse::<IpAddr>().ok()? != addr {
            return None;
        }
        if toks.iter().any(|t| *t == "FAILED" || *t == "INCOMPLETE") {
            return None;
        }
        let i = toks.iter().position(|t| *t == "lladdr")?;
        parse_mac(toks.get(i + 1)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                   2: eth0    inet 192.0.2.200/32 scope global eth0\n\
                   2: eth0    inet6 2001:db8::1/64 scope global nodad \n";
        assert!(parse_has_addr(out, "192.0.2.200".parse().unwrap()));
        assert!(parse_has_addr(out, "2001:db8::1".parse().unwrap()));
        assert!(!parse_has_addr(out, "192.0.2.20".parse().unwrap()));
    }

    #[test]
    fn parses_neighbours() {
        let out = "192.0.2.1 dev eth0 lladdr 02:00:00:00:07:01 REACHABLE\n";
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(parse_neigh_mac(out, a), Some([2, 0, 0, 0, 7, 1]));
        assert_eq!(parse_neigh_mac("192.0.2.1 dev eth0  FAILED\n", a), None);
        assert_eq!(parse_neigh_mac("192.0.2.1 dev eth0 lladdr 02:00:00:00:07:01 INCOMPLETE\n", a), None);
        assert_eq!(parse_neigh_mac("", a), None);
    }

    #[test]
    fn mac_roundtrip() {
        let m = [2, 0, 0, 0, 0xab, 100];
        assert_eq!(parse_mac(&format_mac(&m)), Some(m));
        assert_eq!(parse_mac("02:00"), None);
    }
}
