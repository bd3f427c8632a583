//! A process started inside a lab namespace, owned by a guard: it is SIGKILLed (with its
//! process group) and reaped on drop, so a failing test never leaves an agent running.

use std::{
    fs::File,
    os::unix::{fs::FileExt, process::CommandExt},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{cleanup, netns};

pub struct Child {
    inner: std::process::Child,
    /// stdout and stderr both append here (one open file, so lines interleave in order).
    log: File,
    status: Option<ExitStatus>,
    token: u64,
    what: String,
}

impl Child {
    /// Spawns `cmd` as its own process group with stdin null and stdout+stderr captured to an
    /// unnamed temp file (any stdio set on `cmd` is replaced). Registered for signal cleanup.
    pub(crate) fn spawn(mut cmd: Command, where_: &str) -> Result<Child> {
        let what = format!("`{}` in {where_}", netns::command_line(&cmd));
        let log = tempfile::tempfile().context("creating child output file")?;
        let out = log.try_clone().context("cloning child output file")?;
        let err = log.try_clone().context("cloning child output file")?;
        // Own process group: a terminal's Ctrl-C reaches only us, and our cleanup can kill
        // the child's own children too.
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let inner = cmd.spawn().with_context(|| format!("spawning {what}"))?;
        let token = cleanup::register_child(inner.id() as i32);
        Ok(Child { inner, log, status: None, token, what })
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) to the child; an error once it has been reaped.
    pub fn signal(&self, sig: i32) -> Result<()> {
        if self.status.is_some() {
            bail!("{} already exited", self.what);
        }
        // SAFETY: plain syscall; the pid is unreaped so it is still our child.
        if unsafe { libc::kill(self.inner.id() as i32, sig) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sending signal {sig} to {}", self.what));
        }
        Ok(())
    }

    /// Exit status if it has exited (reaping it), without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(st)) = self.inner.try_wait()
        {
            self.reaped(st);
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }

    /// SIGKILLs the child and its group and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(st) = self.try_wait() {
            return Ok(st);
        }
        cleanup::kill_group(self.inner.id() as i32);
        let st = self.inner.wait().with_context(|| format!("reaping {}", self.what))?;
        self.reaped(st);
        Ok(st)
    }

    /// Everything the child wrote to stdout and stderr so far (lossy UTF-8).
    pub fn output_so_far(&self) -> String {
        let len = self.log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut buf = vec![0u8; len as usize];
        let mut done = 0;
        while done < buf.len() {
            match self.log.read_at(&mut buf[done..], done as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => done += n,
            }
        }
        buf.truncate(done);
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn reaped(&mut self, st: ExitStatus) {
        self.status = Some(st);
        cleanup::unregister_child(self.token);
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!("ha-lab: {e:#}");
        }
        cleanup::unregister_child(self.token);
    }
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child").field("pid", &self.pid()).field("what", &self.what).finish()
    }
}
