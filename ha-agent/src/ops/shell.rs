//! Runs an operator's shell command (a hook or a health check) with a deadline. The command runs
//! as `/bin/sh -c 'CMD "$@"' ha-agent ARGS...`, so ARGS follow it as `$1`, `$2`...; it gets its own
//! process group, which is killed whole when the deadline passes or the caller cancels.
use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::{
        fd::{FromRawFd, OwnedFd},
        unix::process::{CommandExt, ExitStatusExt},
    },
    process::{Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

/// How a command ended.
#[derive(Debug)]
pub enum Outcome {
    Exited(ExitStatus),
    /// Killed at the deadline.
    TimedOut,
    /// Killed because the caller is stopping.
    Cancelled,
    /// Could not be started at all.
    NotStarted(io::Error),
}

#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    /// The last line the command wrote (stdout and stderr), for the log.
    pub last_line: String,
    pub took: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        matches!(&self.outcome, Outcome::Exited(st) if st.success())
    }

    /// `exit 1`, `killed by signal 9`, `timed out after 10s`... with the last output line.
    pub fn describe(&self, timeout: Duration) -> String {
        let how = match &self.outcome {
            Outcome::Exited(st) => match (st.code(), st.signal()) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                (None, None) => "ended".to_string(),
            },
            Outcome::TimedOut => format!("timed out after {}", humantime::format_duration(timeout)),
            Outcome::Cancelled => "cancelled".to_string(),
            Outcome::NotStarted(e) => format!("could not start /bin/sh: {e}"),
        };
        if self.last_line.is_empty() { how } else { format!("{how}: {}", self.last_line) }
    }
}

/// Longest output tail kept for the log line.
const TAIL: u64 = 512;

pub fn run(script: &str, args: &[&str], env: &[(&str, String)], timeout: Duration, cancel: &AtomicBool) -> Finished {
    let start = Instant::now();
    let finished = |outcome, last_line| Finished { outcome, last_line, took: start.elapsed() };
    let output = match output_file() {
        Ok(f) => f,
        Err(e) => return finished(Outcome::NotStarted(e), String::new()),
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(format!("{script} \"$@\"")).arg("ha-agent").args(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null()).process_group(0);
    match (output.try_clone(), output.try_clone()) {
        (Ok(out), Ok(err)) => {
            cmd.stdout(out).stderr(err);
        }
        _ => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return finished(Outcome::NotStarted(e), String::new()),
    };
    let deadline = start + timeout;
    let mut pause = Duration::from_millis(1);
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Outcome::Exited(status),
            Ok(None) => {}
            Err(e) => break Outcome::NotStarted(e),
        }
        let cancelled = cancel.load(Ordering::Relaxed);
        if cancelled || Instant::now() >= deadline {
            // The whole group: `sh -c` may have children that would keep running.
            // SAFETY: plain syscall on the child's own process group.
            unsafe { libc::killpg(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
            break if cancelled { Outcome::Cancelled } else { Outcome::TimedOut };
        }
        thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    finished(outcome, last_line(output))
}

/// An anonymous in-memory file: a backgrounded grandchild holding it open cannot block us,
/// as it could a pipe.
fn output_file() -> io::Result<File> {
    // SAFETY: a valid C string; the returned descriptor is checked and then owned.
    let fd = unsafe { libc::memfd_create(c"ha-agent-command".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn last_line(mut file: File) -> String {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    if file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).is_ok() {
        let _ = file.take(TAIL).read_to_end(&mut tail);
    }
    let text = String::from_utf8_lossy(&tail);
    text.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, args: &[&str], timeout: Duration) -> Finished {
        run(script, args, &[("HA_TEST", "env works".into())], timeout, &AtomicBool::new(false))
    }

    #[test]
    fn arguments_env_output_and_exit_status_come_through() {
        let ok = sh("printf '%s|%s|%s\\n'", &["ACTIVE", "no_holder"], Duration::from_secs(10));
        assert!(ok.success(), "{ok:?}");
        assert_eq!(ok.last_line, "ACTIVE|no_holder|");
        let env = sh("echo \"$HA_TEST\"; true", &[], Duration::from_secs(10));
        assert_eq!(env.last_line, "env works");
        let bad = sh("echo first; echo oops >&2; exit 3", &[], Duration::from_secs(10));
        assert!(!bad.success());
        assert_eq!(bad.describe(Duration::ZERO), "exit 3: oops");
    }

    #[test]
    fn a_hanging_command_is_killed_with_its_children_at_the_deadline() {
        let start = Instant::now();
        let hung = sh("sleep 30 & sleep 30", &[], Duration::from_millis(200));
        assert!(matches!(hung.outcome, Outcome::TimedOut), "{hung:?}");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        assert!(hung.describe(Duration::from_millis(200)).starts_with("timed out after 200ms"));
    }

    #[test]
    fn cancelling_stops_a_running_command() {
        let cancel = AtomicBool::new(true);
        let done = run("sleep 30", &[], &[], Duration::from_secs(30), &cancel);
        assert!(matches!(done.outcome, Outcome::Cancelled), "{done:?}");
    }
}
