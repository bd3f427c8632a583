//! `ha-agent`s running in a lab: start, stop cleanly, kill, and ask who holds the shared
//! address. Shared by the integration tests, `xtask demo` and `xtask bench`.
use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    net::IpAddr,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    process::ExitStatus,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{Child, Lab, PREFIX, VIP};

/// How every agent of a set is run; `priorities[i - 1]` is node i's.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub priorities: Vec<u32>,
    pub interval: Duration,
    pub tolerance: Duration,
    /// `always`, `never` or `delay=DUR`.
    pub preempt: String,
    /// Shared addresses as `ADDR/PREFIX`.
    pub vips: Vec<String>,
    /// Appended to every agent's command line.
    pub extra_args: Vec<String>,
    /// `--iface` of every agent (default: the node's eth0).
    pub iface: Option<String>,
    /// What differs for one node (1-based), e.g. its receive path or its capabilities.
    pub per_node: BTreeMap<usize, NodeOverrides>,
    /// How heartbeats are authenticated (default: every agent gets [`LAB_KEY`]).
    pub auth: LabAuth,
    /// A second set of agents on the same nodes (another group): its pin directories are
    /// `<node's>/<instance>`.
    pub instance: Option<String>,
}

/// One node's departures from the common settings.
#[derive(Clone, Debug, Default)]
pub struct NodeOverrides {
    /// Runs the agent through this, e.g. `["setpriv", "--bounding-set=...", "--"]`.
    pub prefix: Vec<String>,
    /// Appended after the common `extra_args`.
    pub args: Vec<String>,
}

/// How the agents of a set authenticate heartbeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabAuth {
    /// `--key-file` with [`LAB_KEY`] as key [`LAB_KEY_ID`], written for the set (mode 0600).
    LabKey,
    /// `--insecure-no-auth`.
    Insecure,
    /// Nothing added: the test passes its own flags in `extra_args`.
    Manual,
}

/// Key id of [`LAB_KEY`].
pub const LAB_KEY_ID: u8 = 1;
/// The key lab agents sign with by default (a test key: never use it on a real network).
pub const LAB_KEY: [u8; 16] = *b"ha-lab test key!";

/// Writes a key file (mode 0600) holding `keys` in order, the first one signing.
pub fn write_key_file(path: &Path, keys: &[(u8, [u8; 16])]) -> Result<()> {
    let text: String = keys
        .iter()
        .map(|(id, key)| format!("{id} {}\n", key.iter().map(|b| format!("{b:02x}")).collect::<String>()))
        .collect();
    let _ = fs::remove_file(path);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating key file {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing key file {}", path.display()))
}

impl AgentSettings {
    /// Settings generous enough for a loaded CI machine: 20 ms interval, 100 ms tolerance.
    pub fn new(priorities: &[u32]) -> Self {
        Self {
            priorities: priorities.to_vec(),
            interval: Duration::from_millis(20),
            tolerance: Duration::from_millis(100),
            preempt: "always".into(),
            vips: vec![format!("{VIP}/{PREFIX}")],
            extra_args: Vec::new(),
            iface: None,
            per_node: BTreeMap::new(),
            auth: LabAuth::LabKey,
            instance: None,
        }
    }

    /// Node i's overrides, created empty on first use.
    pub fn node(&mut self, i: usize) -> &mut NodeOverrides {
        self.per_node.entry(i).or_default()
    }
}

fn ms(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

pub struct AgentSet<'l> {
    lab: &'l Lab,
    binary: PathBuf,
    pub settings: AgentSettings,
    agents: Vec<Option<Child>>,
    /// Output of agents that were stopped or killed, kept for diagnostics.
    finished: Vec<String>,
    /// Holds the key file of [`LabAuth::LabKey`]; removed on drop.
    key_dir: tempfile::TempDir,
}

impl<'l> AgentSet<'l> {
    /// Starts one agent per priority on nodes 1..=n of `lab`.
    pub fn start(lab: &'l Lab, binary: impl Into<PathBuf>, settings: AgentSettings) -> Result<Self> {
        let n = settings.priorities.len();
        if n > lab.nodes().len() {
            bail!("{n} agents for a lab of {} nodes", lab.nodes().len());
        }
        // In the lab's scratch dir, so a signal's cleanup removes it too.
        let key_dir = tempfile::Builder::new()
            .prefix("agents-")
            .tempdir_in(lab.scratch_dir())
            .context("creating a directory for the lab's key file")?;
        if settings.auth == LabAuth::LabKey {
            write_key_file(&key_dir.path().join("keys"), &[(LAB_KEY_ID, LAB_KEY)])?;
        }
        let mut set = Self {
            lab,
            binary: binary.into(),
            settings,
            agents: (0..n).map(|_| None).collect(),
            finished: Vec::new(),
            key_dir,
        };
        // The more worthy first, each less worthy one once those run: an agent starts listening
        // only once its XDP program is verified and attached (about 0.3 s here, and not the same
        // for every node), so agents started side by side could find a less worthy one holding
        // before the most worthy runs (with preempt never, for good). Equals start together.
        let mut order: Vec<usize> = (1..=n).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(set.settings.priorities[i - 1]));
        let mut started: Vec<usize> = Vec::new();
        for i in order {
            let priority = set.settings.priorities[i - 1];
            if started.iter().any(|&j| set.settings.priorities[j - 1] > priority) {
                for j in std::mem::take(&mut started) {
                    set.wait_running(j, Duration::from_secs(10));
                }
            }
            set.start_node(i)?;
            started.push(i);
        }
        // Every agent runs and has listened once: peers have heard and confirmed each other,
        // as they would have started side by side.
        for j in started {
            set.wait_running(j, Duration::from_secs(10));
        }
        thread::sleep(set.settings.tolerance);
        Ok(set)
    }

    /// Waits until node i's agent logged its start line (its receive path is up and it
    /// listens), it exited, or `timeout` passed; a test that expects a refusal finds out itself.
    fn wait_running(&mut self, i: usize, timeout: Duration) {
        let started = |out: String| out.lines().any(|l| l.contains(" priority ") && l.contains(", tolerance "));
        let start = Instant::now();
        while !started(self.output(i)) && self.is_running(i) && start.elapsed() < timeout {
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The command line of node i's agent.
    pub fn args(&self, i: usize) -> Vec<String> {
        let s = &self.settings;
        let iface = s.iface.clone().unwrap_or_else(|| self.lab.node(i).iface().into());
        let mut args: Vec<String> = vec!["run".into(), "--iface".into(), iface];
        for vip in &s.vips {
            args.extend(["--vip".into(), vip.clone()]);
        }
        args.extend([
            "--priority".into(),
            s.priorities[i - 1].to_string(),
            "--interval".into(),
            ms(s.interval),
            "--tolerance".into(),
            ms(s.tolerance),
            "--preempt".into(),
            s.preempt.clone(),
            "--pin-dir".into(),
            self.pin_dir(i).display().to_string(),
        ]);
        match s.auth {
            LabAuth::LabKey => args.extend(["--key-file".into(), self.key_file().display().to_string()]),
            LabAuth::Insecure => args.push("--insecure-no-auth".into()),
            LabAuth::Manual => {}
        }
        args.extend(s.extra_args.iter().cloned());
        if let Some(node) = s.per_node.get(&i) {
            args.extend(node.args.iter().cloned());
        }
        args
    }

    /// Node i's pin directory for this set.
    pub fn pin_dir(&self, i: usize) -> PathBuf {
        match &self.settings.instance {
            Some(sub) => self.lab.pin_dir(i).join(sub),
            None => self.lab.pin_dir(i),
        }
    }

    /// The key file [`LabAuth::LabKey`] passes (rewrite it and SIGHUP the agents to rotate).
    pub fn key_file(&self) -> PathBuf {
        self.key_dir.path().join("keys")
    }

    /// (Re)starts node i's agent.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        self.reap(i);
        let prefix = self.settings.per_node.get(&i).map(|n| n.prefix.clone()).unwrap_or_default();
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut cmd = self.lab.node(i).command(program);
                cmd.args(rest).arg(&self.binary);
                cmd
            }
            None => self.lab.node(i).command(&self.binary),
        };
        cmd.args(self.args(i));
        self.agents[i - 1] = Some(self.lab.node(i).spawn(cmd)?);
        Ok(())
    }

    fn reap(&mut self, i: usize) {
        if let Some(child) = self.agents[i - 1].take() {
            self.finished.push(format!("node {i}: {}", child.output_so_far()));
        }
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.agents[i - 1].as_mut().is_some_and(|c| c.try_wait().is_none())
    }

    /// SIGTERM (clean stop) and wait for the exit.
    pub fn stop(&mut self, i: usize, timeout: Duration) -> Result<ExitStatus> {
        let child = self.agents[i - 1].as_mut().with_context(|| format!("node {i} has no agent"))?;
        child.signal(libc::SIGTERM)?;
        let status =
            child.wait_timeout(timeout).with_context(|| format!("node {i} did not stop within {timeout:?}"))?;
        self.reap(i);
        Ok(status)
    }

    /// SIGKILL: the agent dies without a word, as in a crash.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let child = self.agents[i - 1].as_mut().with_context(|| format!("node {i} has no agent"))?;
        child.kill()?;
        self.reap(i);
        Ok(())
    }

    /// Sends any signal (e.g. SIGSTOP) to node i's agent.
    pub fn signal(&self, i: usize, sig: i32) -> Result<()> {
        self.agents[i - 1].as_ref().with_context(|| format!("node {i} has no agent"))?.signal(sig)
    }

    /// Node i's agent process id (e.g. to change its scheduling or read its CPU time).
    pub fn pid(&self, i: usize) -> Result<u32> {
        Ok(self.agents[i - 1].as_ref().with_context(|| format!("node {i} has no agent"))?.pid())
    }

    /// Runs `ha-agent <args> --pin-dir <node i's pin dir>` inside node i: a control command
    /// such as `maintenance on` or `status --json`, talking to the agent's control socket.
    /// Its stdout, or an error quoting stderr.
    pub fn control(&self, i: usize, args: &[&str]) -> Result<String> {
        let pin = self.pin_dir(i).display().to_string();
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--pin-dir", pin.as_str()]);
        let program =
            self.binary.to_str().with_context(|| format!("agent path {} is not UTF-8", self.binary.display()))?;
        self.lab.node(i).exec(program, &full).with_context(|| format!("`ha-agent {}` on node {i}", args.join(" ")))
    }

    /// `ha-agent maintenance on|off` for node i's agent.
    pub fn set_maintenance(&self, i: usize, on: bool) -> Result<()> {
        self.control(i, &["maintenance", if on { "on" } else { "off" }]).map(drop)
    }

    /// Polls node i's control socket until its agent answers `status` (it has started); the
    /// time that took. Fails early if the agent exited.
    pub fn wait_ready(&mut self, i: usize, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let tried = self.control(i, &["status", "--json"]);
            if tried.is_ok() {
                return Ok(start.elapsed());
            }
            if !self.is_running(i) {
                bail!("node {i}'s agent exited while starting:\n{}", self.output(i));
            }
            if start.elapsed() > timeout {
                let why = tried.err().map(|e| format!("{e:#}")).unwrap_or_default();
                bail!("node {i}'s agent did not answer status within {timeout:?} ({why}):\n{}", self.output(i));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn output(&self, i: usize) -> String {
        self.agents[i - 1].as_ref().map(Child::output_so_far).unwrap_or_default()
    }

    /// Every agent's output, for a failing assertion's message.
    pub fn diagnostics(&self) -> String {
        let mut text = self.finished.join("\n");
        for i in 1..=self.agents.len() {
            text.push_str(&format!("\n--- node {i} ---\n{}", self.output(i)));
        }
        text
    }

    /// Nodes (1-based) that hold `addr` now.
    pub fn holders_of(&self, addr: IpAddr) -> Result<Vec<usize>> {
        let mut holders = Vec::new();
        for i in 1..=self.agents.len() {
            if self.lab.node(i).has_addr(addr)? {
                holders.push(i);
            }
        }
        Ok(holders)
    }

    /// Nodes that hold the lab's IPv4 shared address now.
    pub fn holders(&self) -> Result<Vec<usize>> {
        self.holders_of(IpAddr::V4(VIP))
    }

    /// Polls until `want(holders)`; returns the time it took, or an error with every agent's log.
    pub fn wait_for(&self, what: &str, timeout: Duration, want: impl Fn(&[usize]) -> bool) -> Result<Duration> {
        self.wait_for_addr(IpAddr::V4(VIP), what, timeout, want)
    }

    /// [`AgentSet::wait_for`] on the holders of `addr`.
    pub fn wait_for_addr(
        &self,
        addr: IpAddr,
        what: &str,
        timeout: Duration,
        want: impl Fn(&[usize]) -> bool,
    ) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let holders = self.holders_of(addr)?;
            if want(&holders) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > timeout {
                bail!("{what}: not within {timeout:?} (holders now {holders:?})\n{}", self.diagnostics());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until node i alone holds the address.
    pub fn wait_sole_holder(&self, i: usize, timeout: Duration) -> Result<Duration> {
        self.wait_for(&format!("node {i} alone holds the address"), timeout, |h| h == [i])
    }

    /// Waits until node i alone holds `addr`.
    pub fn wait_sole_holder_of(&self, addr: IpAddr, i: usize, timeout: Duration) -> Result<Duration> {
        self.wait_for_addr(addr, &format!("node {i} alone holds {addr}"), timeout, |h| h == [i])
    }
}
