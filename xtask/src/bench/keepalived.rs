//! keepalived (VRRPv3) in the lab's node namespaces, for the comparison: one foreground
//! daemon per node with its own config and pid files in a temp dir, multicast adverts on eth0.
use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use ha_lab::{Child, Lab, PREFIX, VIP};

use super::Daemons;
use crate::{
    cmd::{self, Cmd},
    scenario::Cluster,
};

/// keepalived's version line, installing it with apt-get first if allowed. Err says why it
/// cannot run (one line for the report).
pub fn ensure_installed(may_install: bool) -> Result<String, String> {
    if cmd::which("keepalived").is_none() {
        if !may_install {
            return Err("keepalived is not installed (and --no-install was given)".into());
        }
        println!("keepalived is not installed: apt-get install -y keepalived");
        let install = || {
            Cmd::new("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-q", "keepalived"])
                .run()
        };
        // A fresh machine may have no package lists yet.
        if install().is_err() && (Cmd::new("apt-get").args(["update", "-q"]).run().is_err() || install().is_err()) {
            return Err("keepalived is not installed and `apt-get install -y keepalived` failed".into());
        }
    }
    let bin = cmd::which("keepalived").ok_or("keepalived is still not in PATH after installing it")?;
    // keepalived prints its version on stderr.
    let out = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("running keepalived --version: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(text.lines().next().unwrap_or("keepalived (unknown version)").trim().to_string())
}

/// VRRP's silence before a backup takes over: 3 adverts plus a skew of (256 - priority)/256 of
/// an advert (RFC 5798); for the backup at priority 100.
pub fn master_down(advert: Duration, backup_priority: u32) -> Duration {
    advert * 3 + advert.mul_f64(f64::from(256u32.saturating_sub(backup_priority)) / 256.0)
}

pub struct Keepalived<'l> {
    lab: &'l Lab,
    binary: PathBuf,
    dir: tempfile::TempDir,
    advert: Duration,
    priorities: Vec<u32>,
    procs: Vec<Option<Child>>,
    finished: Vec<String>,
}

impl<'l> Keepalived<'l> {
    /// Writes one config per node and starts keepalived on nodes 1..=priorities.len().
    pub fn start(lab: &'l Lab, advert: Duration, priorities: &[u32]) -> Result<Self> {
        let binary = cmd::which("keepalived").context("keepalived is not installed")?;
        let dir = tempfile::Builder::new().prefix("ha-bench-keepalived-").tempdir().context("creating a temp dir")?;
        let mut set = Keepalived {
            lab,
            binary,
            dir,
            advert,
            priorities: priorities.to_vec(),
            procs: priorities.iter().map(|_| None).collect(),
            finished: Vec::new(),
        };
        for i in 1..=priorities.len() {
            std::fs::write(set.file(i, "conf"), set.config(i)).context("writing a keepalived config")?;
            set.start_node(i)?;
        }
        Ok(set)
    }

    fn file(&self, i: usize, ext: &str) -> PathBuf {
        self.dir.path().join(format!("node{i}.{ext}"))
    }

    /// Defaults except what the comparison needs: VRRPv3 (for sub-second adverts), the advert
    /// interval, our priorities, the lab's shared address. Preemption is keepalived's default.
    fn config(&self, i: usize) -> String {
        let mut c = String::new();
        let _ = write!(
            c,
            "global_defs {{\n  router_id node{i}\n  vrrp_version 3\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
             priority {}\n  advert_int {}\n  virtual_ipaddress {{\n    {VIP}/{PREFIX}\n  }}\n}}\n",
            self.priorities[i - 1],
            self.advert.as_secs_f64()
        );
        c
    }

    /// Node i's daemon output (log lines on the console).
    pub fn output(&self, i: usize) -> String {
        self.procs[i - 1].as_ref().map(Child::output_so_far).unwrap_or_default()
    }

    fn child(&self, i: usize) -> Result<&Child> {
        self.procs[i - 1].as_ref().with_context(|| format!("node {i} runs no keepalived"))
    }

    fn reap(&mut self, i: usize) {
        if let Some(child) = self.procs[i - 1].take() {
            self.finished.push(format!("node {i}: {}", child.output_so_far()));
        }
    }

    /// SIGTERM and wait (bounded) for the exit.
    pub fn stop_all(&mut self, timeout: Duration) {
        for i in 1..=self.procs.len() {
            if let Some(c) = self.procs[i - 1].as_mut() {
                let _ = c.signal(libc::SIGTERM);
                let _ = c.wait_timeout(timeout);
            }
            self.reap(i);
        }
    }
}

impl Cluster for Keepalived<'_> {
    fn holders(&self) -> Result<Vec<usize>> {
        let mut holders = Vec::new();
        for i in 1..=self.procs.len() {
            if self.lab.node(i).has_addr(std::net::IpAddr::V4(VIP))? {
                holders.push(i);
            }
        }
        Ok(holders)
    }

    fn diagnostics(&self) -> String {
        let mut text = self.finished.join("\n");
        for i in 1..=self.procs.len() {
            let _ = write!(text, "\n--- node {i} (keepalived) ---\n{}", self.output(i));
        }
        text
    }
}

impl Daemons for Keepalived<'_> {
    /// (Re)starts node i's keepalived in the foreground (-n), logging to the console (-l -D),
    /// VRRP only (-P), no syslog (-G), pid files in the temp dir (several run on one host).
    fn start_node(&mut self, i: usize) -> Result<()> {
        // A stopping keepalived is still shutting down after the handover; a new one would see
        // it alive through the pid file and refuse to start ("daemon is already running").
        if let Some(c) = self.procs[i - 1].as_mut() {
            let _ = c.wait_timeout(Duration::from_secs(5));
        }
        self.reap(i);
        for ext in ["pid", "vrrp.pid"] {
            let _ = std::fs::remove_file(self.file(i, ext));
        }
        let mut cmd = self.lab.node(i).command(&self.binary);
        cmd.args(["-n", "-l", "-D", "-G", "-P", "-f"])
            .arg(self.file(i, "conf"))
            .arg("-p")
            .arg(self.file(i, "pid"))
            .arg("-r")
            .arg(self.file(i, "vrrp.pid"));
        self.procs[i - 1] = Some(self.lab.node(i).spawn(cmd)?);
        Ok(())
    }

    fn clean_stop(&self, i: usize) -> Result<()> {
        self.child(i)?.signal(libc::SIGTERM)
    }

    /// SIGKILL to the process group: the parent and its VRRP child die together, as in a
    /// crash of the machine's software (the address stays on the node, as with ours).
    fn crash(&self, i: usize) -> Result<()> {
        let pid = self.child(i)?.pid() as i32;
        // SAFETY: plain syscall; the child leads its own process group (ha-lab spawns it so).
        if unsafe { libc::kill(-pid, libc::SIGKILL) } != 0 {
            return Err(std::io::Error::last_os_error()).context("killing keepalived");
        }
        Ok(())
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.procs[i - 1].as_ref().map(Child::pid)
    }

    fn transitions(&self, i: usize) -> Vec<Transition> {
        parse_transitions(&self.output(i))
    }
}

/// A state change as a daemon logged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to_active: bool,
}

/// keepalived logs `(VI_1) Entering MASTER STATE` (or BACKUP, FAULT); the first BACKUP at
/// start (`(init)`) is not a change.
pub fn parse_transitions(out: &str) -> Vec<Transition> {
    out.lines()
        .filter(|l| l.contains("Entering ") && l.contains(" STATE") && !l.contains("(init)"))
        .map(|l| Transition { to_active: l.contains("Entering MASTER STATE") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_transitions() {
        let log = "Wed: (VI_1) Entering BACKUP STATE (init)\nWed: (VI_1) Receive advertisement timeout\n\
                   Wed: (VI_1) Entering MASTER STATE\nWed: (VI_1) Entering BACKUP STATE\n";
        assert_eq!(parse_transitions(log), vec![Transition { to_active: true }, Transition { to_active: false }]);
    }

    #[test]
    fn vrrp_master_down() {
        let d = master_down(Duration::from_millis(10), 100);
        assert!((d.as_secs_f64() * 1e3 - 36.09).abs() < 0.01, "{d:?}");
    }
}
