//! The agent inside a service's own process, as the tool this project grew from was used: the
//! service starts it with a builder, watches whether it holds the address, steers its
//! worthiness, and stops it cleanly (the address handed over make-before-break).
//!
//! The builder takes the same options as `ha-agent run` and refuses what it refuses, before
//! anything on the system changes. The embedded agent reloads on SIGHUP to the process, as the
//! binary does. The caller sets up logging (the `log` crate) if it wants the agent's lines.
//!
//! ```no_run
//! use std::time::Duration;
//! let agent = ha_agent::embed::Builder::new("eth0")
//!     .vip("192.0.2.200/24")
//!     .priority(150)
//!     .interval(Duration::from_millis(10))
//!     .tolerance(Duration::from_millis(40))
//!     .key_file("/etc/ha-agent/key")
//!     .start()?;
//! for state in agent.client().watch()? {
//!     if state?.holds() { /* serve */ } else { /* stop serving */ }
//! }
//! agent.stop()?;
//! # Ok::<(), anyhow::Error>(())
//! ```
use std::{
    ffi::OsString,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{agent, client::Client, launch, ops::control};

/// How long a start may take before the agent answers on its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The options of `ha-agent run`, named; any other flag through [`Builder::arg`].
#[derive(Clone, Debug)]
pub struct Builder {
    argv: Vec<OsString>,
}

impl Builder {
    /// Heartbeats on `iface`.
    pub fn new(iface: &str) -> Self {
        Self::from_args(["--iface", iface])
    }

    /// The options of `ha-agent run` as on its command line, e.g. passed through from the
    /// service's own.
    pub fn from_args<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut argv: Vec<OsString> = vec!["ha-agent".into(), "run".into()];
        argv.extend(args.into_iter().map(Into::into));
        Self { argv }
    }

    /// A shared address, `ADDR/PREFIX`; repeat for several.
    pub fn vip(self, vip: &str) -> Self {
        self.arg("--vip", vip)
    }

    pub fn priority(self, priority: u32) -> Self {
        self.arg("--priority", priority.to_string())
    }

    pub fn interval(self, interval: Duration) -> Self {
        self.arg("--interval", format!("{}us", interval.as_micros()))
    }

    pub fn tolerance(self, tolerance: Duration) -> Self {
        self.arg("--tolerance", format!("{}us", tolerance.as_micros()))
    }

    pub fn key_file(self, path: impl AsRef<Path>) -> Self {
        self.arg("--key-file", path.as_ref())
    }

    pub fn cluster(self, cluster: u32) -> Self {
        self.arg("--cluster", cluster.to_string())
    }

    pub fn pin_dir(self, path: impl AsRef<Path>) -> Self {
        self.arg("--pin-dir", path.as_ref())
    }

    /// A TOML file as `ha-agent run --config` reads it (flags given here win).
    pub fn config_file(self, path: impl AsRef<Path>) -> Self {
        self.arg("--config", path.as_ref())
    }

    /// Any other `run` option with its value, e.g. `.arg("--preempt", "never")`.
    pub fn arg(mut self, flag: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.argv.push(flag.into());
        self.argv.push(value.as_ref().to_os_string());
        self
    }

    /// A `run` switch without a value, e.g. `.switch("--insecure-no-auth")`.
    pub fn switch(mut self, flag: &str) -> Self {
        self.argv.push(flag.into());
        self
    }

    /// Checks everything `ha-agent run` checks, then starts the agent on a thread of its own
    /// and returns once it answers on its control socket. Every refusal comes back here, with
    /// nothing on the system changed.
    pub fn start(self) -> anyhow::Result<RunningAgent> {
        let (args, _) = launch::parse_run(self.argv.clone())?;
        let cfg = launch::resolve(&args)?;
        for warning in cfg.warnings() {
            log::warn!("{warning}");
        }
        launch::check_privileges(&cfg)?;
        let socket = control::socket_path(&cfg.pin_dir);
        anyhow::ensure!(
            control::request(&socket, "status").is_err(),
            "an agent already runs for {}: give another --pin-dir or --cluster",
            cfg.pin_dir.display()
        );
        let client = Client::for_pin_dir(&cfg.pin_dir);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, rereader) = (Arc::clone(&stop), launch::rereader(self.argv));
            thread::Builder::new()
                .name("ha-agent".into())
                .spawn(move || agent::run(cfg, stop, rereader))
                .context("starting the agent's thread")?
        };
        let started = Instant::now();
        loop {
            if thread.is_finished() {
                return Err(match thread.join() {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => anyhow::anyhow!("the agent stopped as it started"),
                    Err(_) => anyhow::anyhow!("the agent's thread panicked as it started"),
                });
            }
            // The socket answers a moment before the agent has filled in its status.
            if client.status().is_ok_and(|s| !s.node_id.is_empty()) {
                return Ok(RunningAgent { stop, thread: Some(thread), client });
            }
            if started.elapsed() > START_TIMEOUT {
                stop.store(true, Ordering::Relaxed);
                anyhow::bail!("the agent did not answer on {} within {START_TIMEOUT:?}", socket.display());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

/// An agent running inside this process. Dropping it stops it cleanly, as [`RunningAgent::stop`].
pub struct RunningAgent {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    client: Client,
}

impl RunningAgent {
    /// Its state, its changes, and steering, as for an agent in its own process.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Whether it still runs (it ends on its own only on an error).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Clean stop: hands the address over make-before-break, then returns how the run ended.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.finish()
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => anyhow::bail!("the agent's thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::error!("embedded agent: {e:#}");
        }
    }
}
